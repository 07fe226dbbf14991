//! Under mutual TLS a coordinator cannot read DKG shares by handing signers
//! a transport key of its own: every signer checks that each other
//! participant's transport key is signed by a certified signer identity
//! (`signer/src/dkg_peer.rs`). Real signers, real tokens, real mTLS; the test
//! plays a hostile coordinator with the coordinator's own certificate
//! (`Cluster::signer_client` dials as the coordinator).

mod support;

use ringi_proto::signer::v1 as pb;
use support::*;
use tonic::Code;

fn round1(participants: Vec<pb::DkgParticipant>) -> pb::DkgRound1Request {
    pb::DkgRound1Request {
        key_id: "k".into(),
        session_id: vec![7; 16],
        identifier: 1,
        min_signers: 2,
        participants,
        kind: String::new(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_cannot_slip_in_a_dkg_transport_key_of_its_own() {
    let cluster = Cluster::start_tls(3);
    let genuine = cluster.dkg_participants().await;
    for p in &genuine {
        assert!(
            !p.dkg_key_certificate.is_empty() && !p.dkg_key_signature.is_empty(),
            "signer-{} hands out no attestation of its DKG key",
            p.identifier
        );
    }

    // The hostile coordinator's transport key, and its own certificate and
    // key (all a stolen coordinator has), vouching for it.
    let mine = k256::SecretKey::random(&mut rand::rngs::OsRng)
        .public_key()
        .to_sec1_bytes()
        .to_vec();
    let certs = cluster.certs.as_ref().unwrap();
    let coordinator_cert =
        ringi_net::tls::load_certs(&certs.join("coordinator.pem")).unwrap()[0].to_vec();
    let coordinator_key = {
        use p256::pkcs8::DecodePrivateKey;
        let pem = std::fs::read_to_string(certs.join("coordinator.key")).unwrap();
        p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).unwrap()
    };
    let self_signed_by_coordinator = {
        use p256::ecdsa::signature::Signer;
        let compressed = ringi_signer::dkg_peer::compressed(&mine).unwrap();
        let sig: p256::ecdsa::Signature = coordinator_key.sign(&ringi_signer::dkg_peer::statement(
            "coordinator",
            &compressed,
        ));
        sig.to_der().as_bytes().to_vec()
    };

    let mut signer1 = cluster.signer_client(0).await;
    let refused = |participants: Vec<pb::DkgParticipant>| {
        let mut client = signer1.clone();
        async move {
            client
                .dkg_round1(round1(participants))
                .await
                .expect_err("signer-1 accepted a DKG with a key it cannot trust")
        }
    };

    // signer-2's key swapped for the coordinator's, signer-2's attestation kept.
    let mut swapped = genuine.clone();
    swapped[1].dkg_public_key = mine.clone();
    let status = refused(swapped.clone()).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("participant 2")
            && status
                .message()
                .contains("does not verify under the certificate of \"signer-2\""),
        "{}",
        status.message()
    );

    // The same with no attestation at all.
    let mut bare = swapped.clone();
    bare[1].dkg_key_certificate.clear();
    bare[1].dkg_key_signature.clear();
    let status = refused(bare).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("carries no certificate"),
        "{}",
        status.message()
    );

    // Vouched for by the coordinator's own certificate: not a DKG peer.
    let mut vouched = swapped.clone();
    vouched[1].dkg_key_certificate = coordinator_cert;
    vouched[1].dkg_key_signature = self_signed_by_coordinator;
    let status = refused(vouched).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("\"coordinator\" is not a DKG peer"),
        "{}",
        status.message()
    );

    // One genuine signer presented twice, under two identifiers.
    let mut twice = genuine.clone();
    twice[2] = pb::DkgParticipant {
        identifier: 3,
        ..genuine[1].clone()
    };
    let status = refused(twice).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("both \"signer-2\""),
        "{}",
        status.message()
    );

    // Nothing was started by the refusals; the genuine set is accepted, and
    // the coordinator's DKG (which relays the attestations) makes a key that
    // signs.
    signer1.dkg_round1(round1(genuine)).await.unwrap();
    let group_key = cluster.keygen("peers", 2, &["signer-1", "signer-2", "signer-3"]);
    assert_eq!(group_key.len(), 33);
}
