//! The signer API under a coordinator that misbehaves or is replaced by a
//! test client: nonce reuse, malformed packages, tampered DKG envelopes.

mod support;

use std::collections::BTreeMap;

use frost_secp256k1::round1::SigningCommitments;
use frost_secp256k1::{Identifier, SigningPackage};
use ringi_proto::approval::v1::ApprovalBundle;
use ringi_proto::signer::v1 as pb;
use support::*;
use tonic::Code;

fn id(n: u16) -> Identifier {
    Identifier::try_from(n).unwrap()
}

const APPROVED: [(&str, &str); 2] = [("alice", "treasury"), ("carol", "compliance")];

fn commit_req(key_id: &str, bundle: &ApprovalBundle) -> pb::CommitRequest {
    pb::CommitRequest {
        key_id: key_id.into(),
        approval_bundle: Some(bundle.clone()),
    }
}

fn sign_req(key_id: &str, package: &SigningPackage, bundle: &ApprovalBundle) -> pb::SignRequest {
    pb::SignRequest {
        excluded_identifiers: Vec::new(),
        key_id: key_id.into(),
        signing_package: package.serialize().unwrap(),
        approval_bundle: Some(bundle.clone()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nonce_is_refused_the_second_time() {
    let cluster = Cluster::start(3);
    cluster.keygen("k", 2, &["signer-1", "signer-2", "signer-3"]);
    let mut s1 = cluster.signer_client(0).await;
    let mut s2 = cluster.signer_client(1).await;
    let (_, first) = cluster.bundle("k", b"first message", &APPROVED);
    let (_, second) = cluster.bundle("k", b"second message", &APPROVED);

    let mut commitments = BTreeMap::new();
    for (n, client) in [(1u16, &mut s1), (2, &mut s2)] {
        let r = client
            .commit(commit_req("k", &first))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.identifier, u32::from(n));
        commitments.insert(
            id(n),
            SigningCommitments::deserialize(&r.commitments).unwrap(),
        );
    }
    let package = SigningPackage::new(commitments.clone(), b"first message");
    let share = s1
        .sign(sign_req("k", &package, &first))
        .await
        .expect("first round 2 succeeds")
        .into_inner();

    // The same package again (a retry after a lost response): the same
    // share, from the node's release log; no nonce is used again.
    let again = s1
        .sign(sign_req("k", &package, &first))
        .await
        .expect("the same package gets the same share")
        .into_inner();
    assert_eq!(again.signature_share, share.signature_share);

    // The same commitments for another, also approved, message (the attack
    // that leaks the share): refused.
    let other = SigningPackage::new(commitments.clone(), b"second message");
    let replay = s1.sign(sign_req("k", &other, &second)).await.unwrap_err();
    assert_eq!(replay.code(), Code::FailedPrecondition);
    assert!(
        replay.message().contains("used at most once"),
        "{}",
        replay.message()
    );

    // signer-2 never signed: its nonces are still usable exactly once.
    s2.sign(sign_req("k", &package, &first))
        .await
        .expect("signer-2 signs once");
    let err = s2.sign(sign_req("k", &other, &second)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("used at most once"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_misaddressed_requests_get_precise_statuses() {
    let cluster = Cluster::start(3);
    cluster.keygen("k", 2, &["signer-1", "signer-2", "signer-3"]);
    let mut s1 = cluster.signer_client(0).await;
    let (_, bundle) = cluster.bundle("k", b"m", &APPROVED);

    // A key the policy knows but this node holds no share of.
    let (_, cold) = cluster.bundle("cold-1", b"m", &APPROVED);
    let err = s1.commit(commit_req("cold-1", &cold)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("cold-1"));

    let err = s1.commit(commit_req("bad key", &bundle)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = s1
        .sign(pb::SignRequest {
            excluded_identifiers: Vec::new(),
            key_id: "k".into(),
            signing_package: vec![0xde, 0xad, 0xbe, 0xef],
            approval_bundle: Some(bundle.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("signing_package is malformed"),
        "{}",
        err.message()
    );

    // A package without signer-1's commitments.
    let mut s2 = cluster.signer_client(1).await;
    let mut s3 = cluster.signer_client(2).await;
    let mut commitments = BTreeMap::new();
    for (n, client) in [(2u16, &mut s2), (3, &mut s3)] {
        let r = client
            .commit(commit_req("k", &bundle))
            .await
            .unwrap()
            .into_inner();
        commitments.insert(
            id(n),
            SigningCommitments::deserialize(&r.commitments).unwrap(),
        );
    }
    let package = SigningPackage::new(commitments, b"m");
    let err = s1.sign(sign_req("k", &package, &bundle)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("no commitments from this node"),
        "{}",
        err.message()
    );

    // Commitments the node never issued.
    let r = s1
        .commit(commit_req("k", &bundle))
        .await
        .unwrap()
        .into_inner();
    let real = SigningCommitments::deserialize(&r.commitments).unwrap();
    let mut forged_map = BTreeMap::new();
    forged_map.insert(
        id(1),
        SigningCommitments::new(*real.binding(), *real.hiding()),
    );
    let r2 = s2
        .commit(commit_req("k", &bundle))
        .await
        .unwrap()
        .into_inner();
    forged_map.insert(
        id(2),
        SigningCommitments::deserialize(&r2.commitments).unwrap(),
    );
    let err = s1
        .sign(sign_req(
            "k",
            &SigningPackage::new(forged_map, b"m"),
            &bundle,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

/// Runs a DKG as the coordinator would, but from the test, and alters one
/// sealed round-2 package in transit.
#[tokio::test(flavor = "multi_thread")]
async fn the_relay_cannot_read_alter_or_redirect_dkg_shares() {
    let cluster = Cluster::start(3);
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(cluster.signer_client(i).await);
    }
    let participants = cluster.dkg_participants().await;
    let session_id = vec![7u8; 16];
    let mut round1 = BTreeMap::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c
            .dkg_round1(pb::DkgRound1Request {
                key_id: "k".into(),
                session_id: session_id.clone(),
                identifier: i as u32 + 1,
                min_signers: 2,
                participants: participants.clone(),
                kind: String::new(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        round1.insert(i as u32 + 1, r.round1_package);
    }
    let mut inbox: BTreeMap<u32, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let me = i as u32 + 1;
        let others = round1
            .iter()
            .filter(|(k, _)| **k != me)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let r = c
            .dkg_round2(pb::DkgRound2Request {
                key_id: "k".into(),
                session_id: session_id.clone(),
                round1_packages: others,
            })
            .await
            .unwrap()
            .into_inner();
        for (recipient, sealed) in r.sealed_round2_packages {
            inbox.entry(recipient).or_default().insert(me, sealed);
        }
    }
    // What the relay sees is not a round-2 package.
    for sealed in inbox.values().flat_map(|m| m.values()) {
        assert!(frost_secp256k1::keys::dkg::round2::Package::deserialize(sealed).is_err());
        assert!(frost_secp256k1::keys::dkg::round2::Package::deserialize(&sealed[13..]).is_err());
    }

    // Redirect: give signer-1 the package signer-2 sealed for signer-3.
    let mut redirected = inbox[&1].clone();
    redirected.insert(2, inbox[&3][&2].clone());
    let err = clients[0]
        .dkg_finish(pb::DkgFinishRequest {
            key_id: "k".into(),
            session_id: session_id.clone(),
            sealed_round2_packages: redirected,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("does not open"), "{}", err.message());

    // Tamper: flip one bit of the package signer-1 sealed for signer-2.
    let mut tampered = inbox[&2].clone();
    let bytes = tampered.get_mut(&1).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let err = clients[1]
        .dkg_finish(pb::DkgFinishRequest {
            key_id: "k".into(),
            session_id: session_id.clone(),
            sealed_round2_packages: tampered,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("participant 1"), "{}", err.message());

    // Neither victim stored a share.
    for c in clients.iter_mut().take(2) {
        let info = c
            .get_node_info(pb::GetNodeInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(info.key_shares.is_empty());
    }
    // signer-3 with honest packages finishes, but stores nothing until commit,
    // and refuses a commit for a group key it did not compute.
    let finished = clients[2]
        .dkg_finish(pb::DkgFinishRequest {
            key_id: "k".into(),
            session_id: session_id.clone(),
            sealed_round2_packages: inbox[&3].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(finished.group_public_key.len(), 33);
    let info = clients[2]
        .get_node_info(pb::GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        info.key_shares.is_empty(),
        "a share was stored before commit"
    );
    let mut wrong = finished.group_public_key.clone();
    wrong[5] ^= 1;
    let err = clients[2]
        .dkg_commit(pb::DkgCommitRequest {
            key_id: "k".into(),
            session_id,
            group_public_key: wrong,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let info = clients[2]
        .get_node_info(pb::GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(info.key_shares.is_empty());
}
