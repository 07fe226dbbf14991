//! Key lifecycle on real processes and SoftHSM tokens: refreshing a key's
//! shares (`ringi keys refresh`), with signers failing at each step;
//! re-importing a key into a coordinator that lost its database; repairing
//! a lost share onto a new node.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use frost_secp256k1::keys::PublicKeyPackage;
use frost_secp256k1::round1::SigningCommitments;
use frost_secp256k1::round2::SignatureShare;
use frost_secp256k1::{Identifier, SigningPackage};
use ringi_policy::key_order::{Action, KeyOrder};
use ringi_proto::approval::v1 as cpb_order;
use ringi_proto::coordinator::v1 as cpb;
use ringi_proto::signer::v1 as pb;
use support::*;

const SIGNERS: [&str; 3] = ["signer-1", "signer-2", "signer-3"];
const APPROVED: [(&str, &str); 2] = [("alice", "treasury"), ("carol", "compliance")];

/// What signer `i` reports of key `key_id`.
async fn share_info(cluster: &Cluster, i: usize, key_id: &str) -> pb::KeyShareInfo {
    cluster
        .node_info(i)
        .await
        .key_shares
        .into_iter()
        .find(|k| k.key_id == key_id)
        .unwrap_or_else(|| panic!("signer {i} holds no share of {key_id}"))
}

/// Signer round 1 and 2 called directly (as a coordinator would) on the
/// signers `who` (indices) for `message`; their signature shares.
async fn shares_from(
    cluster: &Cluster,
    key_id: &str,
    message: &[u8],
    who: &[usize],
) -> (SigningPackage, BTreeMap<Identifier, SignatureShare>) {
    let (_, bundle) = cluster.bundle(key_id, message, &APPROVED);
    let mut clients = Vec::new();
    let mut commitments = BTreeMap::new();
    for &i in who {
        let mut client = cluster.signer_client(i).await;
        let r = client
            .commit(pb::CommitRequest {
                key_id: key_id.into(),
                approval_bundle: Some(bundle.clone()),
            })
            .await
            .unwrap()
            .into_inner();
        commitments.insert(
            Identifier::try_from(r.identifier as u16).unwrap(),
            SigningCommitments::deserialize(&r.commitments).unwrap(),
        );
        clients.push((i, client));
    }
    let package = SigningPackage::new(commitments, message);
    let mut shares = BTreeMap::new();
    for (i, client) in &mut clients {
        let r = client
            .sign(pb::SignRequest {
                key_id: key_id.into(),
                signing_package: package.serialize().unwrap(),
                approval_bundle: Some(bundle.clone()),
                excluded_identifiers: Vec::new(),
            })
            .await
            .unwrap()
            .into_inner();
        shares.insert(
            Identifier::try_from(*i as u16 + 1).unwrap(),
            SignatureShare::deserialize(&r.signature_share).unwrap(),
        );
    }
    (package, shares)
}

/// The group key a successful key command printed, and what it said on
/// stderr.
fn printed_key(out: &std::process::Output) -> (Vec<u8>, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let key = hex::decode(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    (key, stderr)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_replaces_every_share_and_a_stolen_old_share_no_longer_combines() {
    let mut cluster = Cluster::start_tls(3);
    let group_key = cluster.keygen("k", 2, &SIGNERS);
    let before = cluster.coordinator_key("k").await;
    for i in 0..3 {
        let info = share_info(&cluster, i, "k").await;
        assert_eq!((info.generation, info.pending_generation), (0, 0));
        assert_eq!(info.public_key_package, before.public_key_package);
        assert_eq!(cluster.share_labels(i), vec!["ringi-share:k".to_string()]);
    }

    // The thief's copy of signer-1's token, taken before the refresh.
    let stolen = cluster.dir.path().join("stolen-signer-1-tokens");
    copy_dir(&cluster.signers[0].dir.join("tokens"), &stolen);

    let (key, stderr) = printed_key(&cluster.ringi(&["keys", "refresh", "k"]));
    assert_eq!(key, group_key, "the group key stays");
    assert!(stderr.contains("[7/7]"), "{stderr}");

    let after = cluster.coordinator_key("k").await;
    assert_eq!(after.group_public_key, group_key);
    assert_ne!(
        after.public_key_package, before.public_key_package,
        "every verifying share changed"
    );
    let old_package = PublicKeyPackage::deserialize(&before.public_key_package).unwrap();
    let new_package = PublicKeyPackage::deserialize(&after.public_key_package).unwrap();
    for (id, share) in new_package.verifying_shares() {
        assert_ne!(old_package.verifying_shares().get(id), Some(share));
    }
    for i in 0..3 {
        let info = share_info(&cluster, i, "k").await;
        assert_eq!((info.generation, info.pending_generation), (1, 0));
        assert_eq!(info.public_key_package, after.public_key_package);
        // The old share is destroyed in the token; only the new one is left.
        assert_eq!(cluster.share_labels(i), vec!["ringi-share:k@1".to_string()]);
    }

    // The refreshed shares sign, through the coordinator, with any two.
    for pair in [["signer-1", "signer-2"], ["signer-2", "signer-3"]] {
        let message = format!("after refresh {pair:?}");
        let signature = cluster.sign("k", message.as_bytes(), &pair);
        assert!(frost_verify(&group_key, message.as_bytes(), &signature));
    }

    // The audit trails name the refresh on both sides.
    let coordinator_log =
        std::fs::read_to_string(cluster.dir.path().join("coordinator/audit.jsonl")).unwrap();
    assert!(
        coordinator_log.contains("key_refreshed"),
        "{coordinator_log}"
    );
    for node in &cluster.signers {
        let log = std::fs::read_to_string(node.dir.join("data/audit.jsonl")).unwrap();
        for event in [
            "refresh_started",
            "refresh_share_stored",
            "refresh_activated",
        ] {
            assert!(log.contains(event), "{} lacks {event}", node.name);
        }
    }

    // The thief restores the stolen token under signer-1 (which now holds
    // the old share, generation 0) and signs with a refreshed signer: the
    // shares do not combine, whichever public package aggregates them.
    cluster.signers[0].stop();
    let live = cluster.dir.path().join("refreshed-signer-1-tokens");
    std::fs::rename(cluster.signers[0].dir.join("tokens"), &live).unwrap();
    copy_dir(&stolen, &cluster.signers[0].dir.join("tokens"));
    cluster.signers[0].start();
    assert_eq!(share_info(&cluster, 0, "k").await.generation, 0);
    let message = b"old share with a new one";
    let (package, shares) = shares_from(&cluster, "k", message, &[0, 1]).await;
    for public in [&old_package, &new_package] {
        assert!(
            frost_secp256k1::aggregate(&package, &shares, public).is_err(),
            "a pre-refresh share combined with a refreshed one"
        );
    }
    // The two refreshed shares together do combine.
    let (package, shares) = shares_from(&cluster, "k", b"two refreshed shares", &[1, 2]).await;
    let signature = frost_secp256k1::aggregate(&package, &shares, &new_package).unwrap();
    assert!(frost_verify(
        &group_key,
        b"two refreshed shares",
        &signature.serialize().unwrap()
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signer_failing_during_a_refresh_leaves_the_old_shares_in_use() {
    let mut cluster = Cluster::start(3);
    let group_key = cluster.keygen("k", 2, &SIGNERS);
    let recorded = cluster.coordinator_key("k").await.public_key_package;
    async fn unchanged(cluster: &Cluster, recorded: &[u8]) {
        assert_eq!(
            cluster.coordinator_key("k").await.public_key_package,
            recorded
        );
        for i in 0..2 {
            let info = share_info(cluster, i, "k").await;
            assert_eq!((info.generation, info.pending_generation), (0, 0));
        }
    }

    // 1. A signer down from the start: refused before anything is stored.
    cluster.signers[2].stop();
    let err = cluster.ringi_err(&["keys", "refresh", "k"]);
    assert!(err.contains("signer-3"), "{err}");
    assert!(err.contains("the old shares stay in use"), "{err}");
    unchanged(&cluster, &recorded).await;

    // 2. A signer failing at the store step, after the others stored
    // theirs: those are discarded, the old shares stay.
    cluster.signers[2]
        .env
        .push(("RINGI_TEST_FAULT".into(), "fail-dkg-commit".into()));
    cluster.signers[2].start();
    let err = cluster.ringi_err(&["keys", "refresh", "k"]);
    assert!(err.contains("failed at the store step"), "{err}");
    assert!(err.contains("discarded"), "{err}");
    unchanged(&cluster, &recorded).await;
    for i in 0..3 {
        assert_eq!(cluster.share_labels(i), vec!["ringi-share:k".to_string()]);
    }
    let signature = cluster.sign("k", b"old shares still sign", &["signer-1", "signer-2"]);
    assert!(frost_verify(
        &group_key,
        b"old shares still sign",
        &signature
    ));

    // 3. A signer failing to put its refreshed share in use, after the
    // coordinator recorded the refresh: reported, and finished by running
    // the refresh again once the signer is back.
    cluster.signers[2].stop();
    cluster.signers[2]
        .env
        .retain(|(k, _)| k != "RINGI_TEST_FAULT");
    cluster.signers[2]
        .env
        .push(("RINGI_TEST_FAULT".into(), "fail-share-activation".into()));
    cluster.signers[2].start();
    let out = cluster.ringi(&["keys", "refresh", "k"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not in use on every signer yet"), "{err}");
    assert!(err.contains("signer-3"), "{err}");
    let waiting = share_info(&cluster, 2, "k").await;
    assert_eq!((waiting.generation, waiting.pending_generation), (0, 1));
    assert_eq!(
        cluster.share_labels(2),
        vec!["ringi-share:k".to_string(), "ringi-share:k@1".to_string()],
        "the old and the refreshed share wait side by side"
    );
    // The refreshed signers sign meanwhile.
    let signature = cluster.sign("k", b"refreshed pair", &["signer-1", "signer-2"]);
    assert!(frost_verify(&group_key, b"refreshed pair", &signature));

    // The signer restarts (its waiting share survives) without the fault.
    cluster.signers[2].stop();
    cluster.signers[2]
        .env
        .retain(|(k, _)| k != "RINGI_TEST_FAULT");
    cluster.signers[2].start();
    let out = cluster.ringi(&["keys", "refresh", "k"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = share_info(&cluster, 2, "k").await;
    assert_eq!((info.generation, info.pending_generation), (1, 0));
    assert_eq!(cluster.share_labels(2), vec!["ringi-share:k@1".to_string()]);
    let signature = cluster.sign("k", b"finished refresh", &["signer-2", "signer-3"]);
    assert!(frost_verify(&group_key, b"finished refresh", &signature));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_that_lost_its_database_reimports_a_key_from_a_threshold_of_signers() {
    let mut cluster = Cluster::start_tls(3);
    let group_key = cluster.keygen("k", 2, &SIGNERS);
    // A refreshed key: the signers vouch for its current package.
    cluster.ringi_ok(&["keys", "refresh", "k"]);
    let recorded = cluster.coordinator_key("k").await;

    // Lifecycle operations are the admin's: a wallet is refused.
    let out = cluster.ringi_as("wallet-service", &["keys", "refresh", "k"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PermissionDenied")
            || String::from_utf8_lossy(&out.stderr).contains("permission"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The coordinator's disk is lost.
    cluster.stop_coordinator();
    std::fs::remove_dir_all(cluster.dir.path().join("coordinator")).unwrap();
    cluster.start_coordinator();
    let err = cluster.ringi_err(&["pubkey", "--key-id", "k"]);
    assert!(err.contains("does not exist"), "{err}");
    // A new DKG under the key id is refused by the signers that hold it.
    let err = cluster.ringi_err(&[
        "keygen",
        "--key-id",
        "k",
        "--threshold",
        "2",
        "--signers",
        "signer-1,signer-2,signer-3",
    ]);
    assert!(err.contains("already"), "{err}");
    let out = cluster.ringi_as("wallet-service", &["keys", "import-from-signers", "k"]);
    assert!(!out.status.success(), "a wallet cannot import a key");

    // One signer alone cannot vouch for the key.
    cluster.signers[1].stop();
    cluster.signers[2].stop();
    let err = cluster.ringi_err(&["keys", "import-from-signers", "k"]);
    assert!(err.contains("1 of the key's threshold of 2"), "{err}");
    assert!(err.contains("signer-2: unreachable"), "{err}");
    let err = cluster.ringi_err(&["pubkey", "--key-id", "k"]);
    assert!(err.contains("does not exist"), "nothing recorded: {err}");

    // Two do: the key is back, with all three signers and its package.
    cluster.signers[1].start();
    let (key, stderr) = printed_key(&cluster.ringi(&["keys", "import-from-signers", "k"]));
    assert_eq!(key, group_key);
    assert!(
        stderr.contains("vouched for by signer-1, signer-2"),
        "{stderr}"
    );
    assert!(stderr.contains("signer-3: unreachable"), "{stderr}");
    let imported = cluster.coordinator_key("k").await;
    assert_eq!(imported.public_key_package, recorded.public_key_package);
    assert_eq!(imported.threshold, 2);
    assert_eq!(imported.kind, "frost-secp256k1");
    assert_eq!(
        imported
            .signers
            .iter()
            .map(|s| (s.name.as_str(), s.identifier))
            .collect::<Vec<_>>(),
        vec![("signer-1", 1), ("signer-2", 2), ("signer-3", 3)]
    );
    let err = cluster.ringi_err(&["keys", "import-from-signers", "k"]);
    assert!(err.contains("exists already"), "{err}");

    // It signs, with any two, signer-3 included once it is back.
    let signature = cluster.sign("k", b"after recovery", &["signer-1", "signer-2"]);
    assert!(frost_verify(&group_key, b"after recovery", &signature));
    cluster.signers[2].start();
    let signature = cluster.sign("k", b"after recovery 2", &["signer-1", "signer-3"]);
    assert!(frost_verify(&group_key, b"after recovery 2", &signature));
    let log = std::fs::read_to_string(cluster.dir.path().join("coordinator/audit.jsonl")).unwrap();
    assert!(log.contains("key_import_refused"), "{log}");
    assert!(log.contains("key_imported"), "{log}");
}

/// A repair order for participant `identifier` of `key_id`, to the node
/// whose transport key is `recipient`, with `helpers` (identifier,
/// transport key), valid 10 minutes.
fn repair_order(
    key_id: &str,
    identifier: u16,
    recipient: &[u8],
    helpers: &[(u16, Vec<u8>)],
) -> KeyOrder {
    KeyOrder {
        key_id: key_id.parse().unwrap(),
        action: Action::Repair {
            identifier,
            recipient: recipient.to_vec(),
            helpers: helpers.iter().cloned().collect(),
        },
        expires_at: ringi::requests::now() + 600,
    }
}

async fn repair(
    cluster: &Cluster,
    order: cpb_order::KeyOrder,
    signer: &str,
) -> Result<cpb::RepairKeyResponse, tonic::Status> {
    let channel = cluster.channel_as("operator").await;
    cpb::key_service_client::KeyServiceClient::new(channel)
        .repair_key(cpb::RepairKeyRequest {
            order: Some(order),
            signer: signer.into(),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_share_is_repaired_onto_a_new_node_that_takes_over_its_identifier() {
    // Four nodes with certificates from their tokens; the key lives on the
    // first three, signer-4 is the spare.
    let mut cluster = Cluster::start_tls(4);
    let group_key = cluster.keygen("k", 2, &SIGNERS);
    let recorded = cluster.coordinator_key("k").await;

    // signer-1's token is lost for good.
    cluster.signers[0].stop();
    std::fs::remove_dir_all(cluster.signers[0].dir.join("tokens")).unwrap();
    // The operator registers the replacement under identifier 1 (and drops
    // the lost node), as docs/operations.md says.
    cluster.stop_coordinator();
    cluster.write_coordinator_config_with(&[(3, 1), (1, 2), (2, 3)]);
    cluster.start_coordinator();
    let recipient = cluster.node_info(3).await.dkg_public_key;
    let helper_keys = vec![
        (2, cluster.node_info(1).await.dkg_public_key),
        (3, cluster.node_info(2).await.dkg_public_key),
    ];
    let order = repair_order("k", 1, &recipient, &helper_keys);

    // One admin is not enough, and the nodes would refuse it too.
    let err = repair(&cluster, cluster.key_order(&order, &["alice"]), "signer-4")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("admin quorum not met"), "{err:?}");
    let mut s2 = cluster.signer_client(1).await;
    let mut participants = Vec::new();
    for (i, identifier) in [(1, 2), (2, 3), (3, 1)] {
        let info = cluster.node_info(i).await;
        participants.push(pb::DkgParticipant {
            identifier,
            dkg_public_key: info.dkg_public_key,
            dkg_key_certificate: info.dkg_key_certificate,
            dkg_key_signature: info.dkg_key_signature,
        });
    }
    let direct = s2
        .repair_help(pb::RepairHelpRequest {
            order: Some(cluster.key_order(&order, &["alice"])),
            session_id: vec![1; 16],
            helpers: participants[..2].to_vec(),
            recipient: Some(participants[2].clone()),
        })
        .await
        .unwrap_err();
    assert!(
        direct.message().contains("admin quorum not met"),
        "{direct:?}"
    );
    // A node the order does not name cannot pose as a helper, even with a
    // certified identity and a real participant's identifier: a helper's
    // deltas would otherwise reveal its share.
    let impostor = s2
        .repair_help(pb::RepairHelpRequest {
            order: Some(cluster.key_order(&order, &["alice", "carol"])),
            session_id: vec![2; 16],
            helpers: vec![
                participants[0].clone(),
                pb::DkgParticipant {
                    identifier: 3,
                    ..participants[2].clone()
                },
            ],
            recipient: Some(participants[2].clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(
        impostor.code(),
        tonic::Code::PermissionDenied,
        "{impostor:?}"
    );
    assert!(
        impostor.message().contains("not the ones the order names"),
        "{impostor:?}"
    );
    // An order for another transport key (an attacker's) does not let the
    // coordinator hand the share to signer-4.
    let stranger = {
        use k256::elliptic_curve::sec1::ToEncodedPoint;
        k256::SecretKey::from_slice(&[0x5a; 32])
            .unwrap()
            .public_key()
            .to_encoded_point(true)
            .as_bytes()
            .to_vec()
    };
    let elsewhere = repair_order("k", 1, &stranger, &helper_keys);
    let err = repair(
        &cluster,
        cluster.key_order(&elsewhere, &["alice", "carol"]),
        "signer-4",
    )
    .await
    .unwrap_err();
    assert!(err.message().contains("transport key"), "{err:?}");
    // A coordinator that relays the real helpers' sigmas but names another
    // public key package, or another kind, to the new node: each helper
    // sealed its sigma under the kind and package it holds, so the new
    // node refuses and stores nothing.
    {
        let signed = cluster.key_order(&order, &["alice", "carol"]);
        let session = vec![4; 16];
        let helpers = participants[..2].to_vec();
        let mut s3 = cluster.signer_client(2).await;
        let mut deltas = BTreeMap::new();
        for (id, client) in [(2u32, &mut s2), (3, &mut s3)] {
            let r = client
                .repair_help(pb::RepairHelpRequest {
                    order: Some(signed.clone()),
                    session_id: session.clone(),
                    helpers: helpers.clone(),
                    recipient: Some(participants[2].clone()),
                })
                .await
                .unwrap()
                .into_inner();
            deltas.insert(id, r.sealed_deltas);
        }
        let mut sigmas = BTreeMap::new();
        for (id, other, client) in [(2u32, 3u32, &mut s2), (3, 2, &mut s3)] {
            let r = client
                .repair_combine(pb::RepairCombineRequest {
                    key_id: "k".into(),
                    session_id: session.clone(),
                    sealed_deltas: [(other, deltas[&other][&id].clone())].into(),
                })
                .await
                .unwrap()
                .into_inner();
            sigmas.insert(id, r.sealed_sigma);
        }
        let (_, forged) = frost_secp256k1::keys::generate_with_dealer(
            3,
            2,
            frost_secp256k1::keys::IdentifierList::Default,
            rand::rngs::OsRng,
        )
        .unwrap();
        // The key's own package, re-encoded as a Taproot key's (same
        // points, another ciphersuite).
        let as_taproot = {
            use ringi_frost::frost_core::keys::{PublicKeyPackage, VerifyingShare};
            use ringi_frost::frost_core::{Identifier as Id, VerifyingKey};
            use ringi_frost::taproot::Secp256k1Tr as Tr;
            let real = PublicKeyPackage::<ringi_frost::Secp256k1>::deserialize(
                &recorded.public_key_package,
            )
            .unwrap();
            let shares = real
                .verifying_shares()
                .iter()
                .map(|(id, share)| {
                    (
                        Id::<Tr>::deserialize(&id.serialize()).unwrap(),
                        VerifyingShare::<Tr>::deserialize(&share.serialize().unwrap()).unwrap(),
                    )
                })
                .collect();
            let group = VerifyingKey::<Tr>::deserialize(&real.verifying_key().serialize().unwrap())
                .unwrap();
            PublicKeyPackage::<Tr>::new(shares, group, real.min_signers())
                .serialize()
                .unwrap()
        };
        let mut s4 = cluster.signer_client(3).await;
        for (package, kind) in [
            (forged.serialize().unwrap(), ""),
            (as_taproot, "bitcoin-taproot"),
        ] {
            let err = s4
                .repair_receive(pb::RepairReceiveRequest {
                    order: Some(signed.clone()),
                    session_id: session.clone(),
                    helpers: helpers.clone(),
                    public_key_package: package,
                    sealed_sigmas: sigmas.clone(),
                    kind: kind.into(),
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
            assert!(
                err.message()
                    .contains("does not open for this key's kind and public key package"),
                "{err:?}"
            );
        }
        assert!(
            cluster
                .node_info(3)
                .await
                .key_shares
                .iter()
                .all(|k| k.key_id != "k")
        );
    }

    // A helper down: too few helpers, nothing stored anywhere.
    cluster.signers[2].stop();
    let err = repair(
        &cluster,
        cluster.key_order(&order, &["alice", "carol"]),
        "signer-4",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("signer-3"), "{err:?}");
    assert!(
        cluster
            .node_info(3)
            .await
            .key_shares
            .iter()
            .all(|k| k.key_id != "k")
    );
    cluster.signers[2].start();

    // The repair, as an operator runs it: the order made and signed by two
    // admins with the CLI, then delivered. signer-2 and signer-3 help;
    // signer-4 holds participant 1.
    let order_file = cluster.repair_order_file(
        "repair-order.json",
        "k",
        1,
        &recipient,
        &helper_keys,
        &["alice", "carol"],
    );
    let order_path = order_file.to_str().unwrap();
    let (key, stderr) = printed_key(&cluster.ringi(&[
        "keys", "repair", "k", "--signer", "signer-4", "--order", order_path,
    ]));
    assert_eq!(key, group_key);
    assert!(
        stderr.contains("signer-4 now holds participant 1 of key k (replacing signer-1); helpers: signer-2, signer-3"),
        "{stderr}"
    );
    let share = share_info(&cluster, 3, "k").await;
    assert_eq!(share.identifier, 1);
    assert_eq!(share.group_public_key, group_key);
    assert_eq!(share.public_key_package, recorded.public_key_package);
    let key = cluster.coordinator_key("k").await;
    assert_eq!(
        key.signers
            .iter()
            .map(|s| (s.name.as_str(), s.identifier))
            .collect::<Vec<_>>(),
        vec![("signer-4", 1), ("signer-2", 2), ("signer-3", 3)]
    );

    // The repaired node signs with either other signer.
    for pair in [["signer-4", "signer-2"], ["signer-4", "signer-3"]] {
        let message = format!("repaired {pair:?}");
        let signature = cluster.sign("k", message.as_bytes(), &pair);
        assert!(frost_verify(&group_key, message.as_bytes(), &signature));
    }
    // The old identity is no signer of the key any more.
    let out = cluster.try_submit("k", &["signer-1", "signer-2"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signer-1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The order cannot be replayed onto the node that holds the share now.
    let err = repair(
        &cluster,
        cluster.key_order(&order, &["alice", "carol"]),
        "signer-4",
    )
    .await
    .unwrap_err();
    assert!(
        err.message().contains("holds a share of the key already"),
        "{err:?}"
    );

    // Audited on every node that took part.
    for (i, event) in [
        (1, "repair_helping"),
        (2, "repair_sigma_sealed"),
        (3, "share_repaired"),
    ] {
        let log = std::fs::read_to_string(cluster.signers[i].dir.join("data/audit.jsonl")).unwrap();
        assert!(
            log.contains(event),
            "{} lacks {event}",
            cluster.signers[i].name
        );
    }
    let log = std::fs::read_to_string(cluster.dir.path().join("coordinator/audit.jsonl")).unwrap();
    assert!(log.contains("key_repaired"), "{log}");

    // A refresh now includes the repaired node (and would leave a copy of
    // the lost token useless, had it been stolen).
    cluster.ringi_ok(&["keys", "refresh", "k"]);
    assert_eq!(share_info(&cluster, 3, "k").await.generation, 1);
    let signature = cluster.sign("k", b"refreshed after repair", &["signer-4", "signer-3"]);
    assert!(frost_verify(
        &group_key,
        b"refreshed after repair",
        &signature
    ));
}

#[test]
fn refreshes_while_requests_are_signed_lose_no_request() {
    let cluster = Cluster::start(3);
    let group_key = cluster.keygen("k", 2, &SIGNERS);
    std::thread::scope(|scope| {
        let signers: Vec<_> = (0..6)
            .map(|i| {
                let cluster = &cluster;
                scope.spawn(move || {
                    let message = format!("during refresh {i}");
                    let pair = [["signer-1", "signer-2"], ["signer-2", "signer-3"]][i % 2];
                    let signature = cluster.sign("k", message.as_bytes(), &pair);
                    (message, signature)
                })
            })
            .collect();
        for _ in 0..2 {
            cluster.ringi_ok(&["keys", "refresh", "k"]);
        }
        for handle in signers {
            let (message, signature) = handle.join().unwrap();
            assert!(
                frost_verify(&group_key, message.as_bytes(), &signature),
                "{message}"
            );
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn where_the_policy_says_so_a_refresh_needs_the_admins_order() {
    let cluster = Cluster::start_tls(3);
    let group_key = cluster.keygen("guarded", 2, &SIGNERS);
    // Without an order: refused by the coordinator...
    let out = cluster.ringi(&["keys", "refresh", "guarded"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refresh_needs_order"), "{err}");
    // ... and by every signer, were a coordinator to skip its own check.
    let participants = cluster.dkg_participants().await;
    let record = cluster.coordinator_key("guarded").await;
    for i in 0..3 {
        let err = cluster
            .signer_client(i)
            .await
            .dkg_round1(pb::DkgRound1Request {
                key_id: "guarded".into(),
                session_id: vec![3; 16],
                identifier: i as u32 + 1,
                min_signers: 2,
                participants: participants.clone(),
                refresh: true,
                public_key_package: record.public_key_package.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("refresh_needs_order"), "{err:?}");
    }
    // One admin's order is not enough.
    let order_file = cluster.dir.path().join("refresh-order.json");
    let order_path = order_file.to_str().unwrap();
    std::fs::write(
        &order_file,
        cluster.ringi_ok(&["keys", "order", "refresh", "guarded"]),
    )
    .unwrap();
    cluster.sign_order(&order_file, "alice");
    let err = cluster.ringi_err(&["keys", "refresh", "guarded", "--order", order_path]);
    assert!(err.contains("admin quorum not met"), "{err}");
    // Two admins: refreshed, audited with who ordered it.
    cluster.sign_order(&order_file, "erin");
    let out = cluster.ringi_ok(&["keys", "refresh", "guarded", "--order", order_path]);
    assert_eq!(hex::decode(out).unwrap(), group_key);
    for i in 0..3 {
        assert_eq!(share_info(&cluster, i, "guarded").await.generation, 1);
    }
    let log = std::fs::read_to_string(cluster.signers[0].dir.join("data/audit.jsonl")).unwrap();
    assert!(
        log.contains("alice,erin"),
        "the signer's audit names the admins"
    );
    // A key without the rule refreshes on the admin's word alone.
    cluster.keygen("k", 2, &SIGNERS);
    cluster.ringi_ok(&["keys", "refresh", "k"]);
}
