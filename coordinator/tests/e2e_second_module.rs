//! The whole flow with one signer on a second, independently written
//! PKCS#11 module: signer-3's token is kryoptic (a Rust soft token over
//! OpenSSL, built by softhsm-setup/build-kryoptic.sh), signers 1 and 2 run
//! on SoftHSM2, everything over mutual TLS (signer-3's TLS key and CSR in
//! kryoptic). kryoptic makes no secp256k1 keys, so signer-3 has a P-256
//! DKG transport key only and every run with it moves to P-256: a 2-of-3
//! DKG, signing with signer-3 and another, signer-3 restarted, signing
//! again, a refresh (its votes sealed over P-256), a Taproot key; a DKG
//! without signer-3 stays on secp256k1. And a lost share repaired onto a
//! kryoptic node, the repair's order and envelopes on P-256.
//!
//! Never skipped: without kryoptic the cluster does not start and the test
//! fails, naming the build script.

mod support;

use ringi_policy::transport_key::TransportCurve;
use support::*;

fn curves(info: &ringi_proto::signer::v1::GetNodeInfoResponse) -> Vec<TransportCurve> {
    info.dkg_transport_keys
        .iter()
        .map(|k| TransportCurve::of(&k.public_key).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signer_on_kryoptic_takes_part_in_dkg_signing_restart_and_refresh() {
    let mut cluster = Cluster::start_tls_with_kryoptic(3, &[3]);
    let all = ["signer-1", "signer-2", "signer-3"];
    assert!(
        cluster.signers[2]
            .module()
            .ends_with("libkryoptic_pkcs11.so"),
        "signer-3 runs on kryoptic"
    );

    // signer-3 offers a P-256 transport key only, attested under its
    // kryoptic-held TLS key; the SoftHSM2 signers offer both curves.
    let info3 = cluster.node_info(2).await;
    assert_eq!(curves(&info3), vec![TransportCurve::P256]);
    assert_eq!(info3.dkg_public_key, info3.dkg_transport_keys[0].public_key);
    assert!(!info3.dkg_key_certificate.is_empty());
    assert!(!info3.dkg_transport_keys[0].signature.is_empty());
    for i in 0..2 {
        assert_eq!(
            curves(&cluster.node_info(i).await),
            vec![TransportCurve::Secp256k1, TransportCurve::P256]
        );
    }

    // DKG 2-of-3 through the coordinator (the run on P-256), then signing
    // with signer-3 and each other signer.
    let group_key = cluster.keygen("hot-1", 2, &all);
    signs_with_each(
        &cluster,
        "hot-1",
        &group_key,
        &[["signer-1", "signer-3"], ["signer-3", "signer-2"]],
    );
    // Without signer-3 a DKG stays on secp256k1 (and still works).
    let pair_key = cluster.keygen("cold-1", 2, &["signer-1", "signer-2"]);
    let signature = cluster.sign("cold-1", b"softhsm only", &["signer-1", "signer-2"]);
    assert!(frost_verify(&pair_key, b"softhsm only", &signature));
    let log = std::fs::read_to_string(cluster.dir.path().join("coordinator.log")).unwrap();
    assert!(!log.contains("share no curve"), "{log}");

    // signer-3 restarts (a new process, a new login to its kryoptic
    // token, its share read back from it) and signs again.
    cluster.signers[2].stop();
    cluster.signers[2].start();
    let signature = cluster.sign("hot-1", b"after the restart", &["signer-2", "signer-3"]);
    assert!(frost_verify(&group_key, b"after the restart", &signature));
    let held = cluster.node_info(2).await.key_shares;
    assert_eq!(
        held.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        vec!["hot-1"]
    );

    // A refresh: every share changes, the votes are sealed between the
    // tokens over P-256, the group key stays and signer-3 signs with its
    // new share.
    let out = cluster.ringi(&["keys", "refresh", "hot-1"]);
    assert!(
        out.status.success(),
        "refresh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        hex::decode(String::from_utf8_lossy(&out.stdout).trim()).unwrap(),
        group_key
    );
    let held = cluster.node_info(2).await.key_shares;
    assert_eq!((held[0].generation, held[0].pending_generation), (1, 0));
    let signature = cluster.sign("hot-1", b"after the refresh", &["signer-3", "signer-1"]);
    assert!(frost_verify(&group_key, b"after the refresh", &signature));

    // A Taproot key with signer-3 (the DKG of that suite on P-256 too).
    let taproot = cluster.keygen_kind("hot", "bitcoin-taproot", 2, &all);
    assert_eq!(taproot.len(), 33);
    let held = cluster.node_info(2).await.key_shares;
    assert!(
        held.iter()
            .any(|k| k.key_id == "hot" && k.kind == "bitcoin-taproot")
    );
}

/// The P-256 transport key a node offers, in its wire form.
/// Each pair of signers signs a message with `key_id`, and the signature
/// verifies under `group_key`, by frost and by an independent verifier.
fn signs_with_each(cluster: &Cluster, key_id: &str, group_key: &[u8], pairs: &[[&str; 2]]) {
    for pair in pairs {
        let message = format!("{key_id} signed by {} and {}", pair[0], pair[1]);
        let signature = cluster.sign(key_id, message.as_bytes(), pair);
        assert!(frost_verify(group_key, message.as_bytes(), &signature));
        assert!(independent_verify(
            group_key,
            message.as_bytes(),
            &signature
        ));
    }
}

fn p256_key(info: &ringi_proto::signer::v1::GetNodeInfoResponse) -> Vec<u8> {
    info.dkg_transport_keys
        .iter()
        .find(|k| TransportCurve::of(&k.public_key) == Some(TransportCurve::P256))
        .expect("every node offers a P-256 transport key")
        .public_key
        .clone()
}

/// A lost share repaired onto a node whose token makes no secp256k1 keys:
/// the admins' order names every node's P-256 transport key, made with
/// the CLI from the keys as the nodes print them; the helpers, on SoftHSM2,
/// seal their parts to the kryoptic node over P-256; the repaired node
/// signs with either other signer.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_share_is_repaired_onto_a_kryoptic_node_over_p256() {
    let mut cluster = Cluster::start_tls_with_kryoptic(4, &[4]);
    let group_key = cluster.keygen("k", 2, &["signer-1", "signer-2", "signer-3"]);
    let info4 = cluster.node_info(3).await;
    assert_eq!(curves(&info4), vec![TransportCurve::P256]);

    // signer-1's token is lost for good; signer-4 takes its identifier.
    cluster.signers[0].stop();
    std::fs::remove_dir_all(cluster.signers[0].dir.join("tokens")).unwrap();
    cluster.stop_coordinator();
    cluster.write_coordinator_config_with(&[(3, 1), (1, 2), (2, 3)]);
    cluster.start_coordinator();

    let helpers = vec![
        (2, p256_key(&cluster.node_info(1).await)),
        (3, p256_key(&cluster.node_info(2).await)),
    ];
    let order_file = cluster.repair_order_file(
        "repair-order.json",
        "k",
        1,
        &p256_key(&info4),
        &helpers,
        &["alice", "carol"],
    );
    let out = cluster.ringi(&[
        "keys",
        "repair",
        "k",
        "--signer",
        "signer-4",
        "--order",
        order_file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        hex::decode(String::from_utf8_lossy(&out.stdout).trim()).unwrap(),
        group_key
    );
    assert!(
        stderr.contains("signer-4 now holds participant 1 of key k (replacing signer-1)"),
        "{stderr}"
    );
    let held = cluster.node_info(3).await.key_shares;
    let share = held.iter().find(|k| k.key_id == "k").unwrap();
    assert_eq!(share.identifier, 1);
    assert_eq!(share.group_public_key, group_key);

    signs_with_each(
        &cluster,
        "k",
        &group_key,
        &[["signer-4", "signer-2"], ["signer-3", "signer-4"]],
    );
    let log = std::fs::read_to_string(cluster.signers[3].dir.join("data/audit.jsonl")).unwrap();
    assert!(log.contains("share_repaired"), "{log}");
}
