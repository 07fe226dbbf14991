//! The signers judge a PSBT themselves (issue 11): with the coordinator's
//! own credentials (its mTLS certificate) a caller that bypasses the
//! coordinator's checks and calls the signers directly still cannot get a
//! share for what the approvals did not approve. Real signer processes,
//! SoftHSM tokens, mutual TLS; the key is a bitcoin-taproot key on regtest
//! whose policy (`tr` in tests/support) allows payments to two listed
//! addresses only, at most 100,000 sat a request, fees at most 20,000 sat
//! and 100 sat/vB.

mod support;

use std::collections::BTreeMap;

use ringi_frost::frost_core::SigningPackage;
use ringi_frost::frost_core::round1::SigningCommitments;
use ringi_frost::taproot::{Secp256k1Tr, keys_of_group};
use ringi_proto::approval::v1::ApprovalBundle;
use ringi_proto::signer::v1 as pb;
use ringi_psbt::bitcoin::ScriptBuf;
use ringi_psbt::build::{Coin, unsigned};
use ringi_psbt::{Network, OwnKey};
use support::*;
use tonic::{Code, Status};

const APPROVED: [(&str, &str); 2] = [("alice", "treasury"), ("carol", "compliance")];

/// A PSBT request for `tr` over `psbt`, approved by treasury and compliance.
fn psbt_bundle(cluster: &Cluster, psbt: Vec<u8>) -> ApprovalBundle {
    let policy =
        ringi_policy::policy::Policy::from_bytes(&std::fs::read(&cluster.policy_path).unwrap())
            .unwrap();
    let now = ringi::requests::now();
    let request = ringi_policy::request::SigningRequest {
        key_id: "tr".parse().unwrap(),
        message: Vec::new(),
        metadata: ringi_policy::request::Metadata {
            memo: "bypass".into(),
            ..Default::default()
        },
        psbt: Some(psbt),
        requester: "wallet-service".into(),
        created_at: now,
        expires_at: now + 600,
        policy_hash: policy.hash(),
        nonce: vec![0x42; ringi_policy::request::NONCE_LEN],
    };
    let approvals = APPROVED
        .iter()
        .map(|(who, dept)| {
            cluster.approval(
                &request,
                who,
                dept,
                ringi_policy::statement::Decision::Approve,
            )
        })
        .collect();
    ApprovalBundle {
        request: Some(ringi_proto::bundle::request_to_pb(&request)),
        approvals,
    }
}

/// Round 1 on signers 1 and 2 under `bundle`, then round 2 over
/// `message`: the first refusal, or the two shares.
async fn rounds(
    cluster: &Cluster,
    bundle: &ApprovalBundle,
    message: &[u8],
) -> Result<Vec<Vec<u8>>, Status> {
    let mut clients = Vec::new();
    let mut commitments = BTreeMap::new();
    for i in 0..2 {
        let mut client = cluster.signer_client(i).await;
        let r = client
            .commit(pb::CommitRequest {
                key_id: "tr".into(),
                approval_bundle: Some(bundle.clone()),
            })
            .await?
            .into_inner();
        commitments.insert(
            ringi_frost::identifier::<Secp256k1Tr>(r.identifier as u16).unwrap(),
            SigningCommitments::<Secp256k1Tr>::deserialize(&r.commitments).unwrap(),
        );
        clients.push(client);
    }
    let package = SigningPackage::new(commitments, message)
        .serialize()
        .unwrap();
    let mut shares = Vec::new();
    for client in &mut clients {
        let r = client
            .sign(pb::SignRequest {
                excluded_identifiers: Vec::new(),
                key_id: "tr".into(),
                signing_package: package.clone(),
                approval_bundle: Some(bundle.clone()),
            })
            .await?
            .into_inner();
        shares.push(r.signature_share);
    }
    Ok(shares)
}

fn coins(n: usize, tag: u8) -> Vec<Coin> {
    (0..n)
        .map(|i| Coin::synthetic(tag, i as u32, 60_000))
        .collect()
}

fn refused(result: Result<Vec<Vec<u8>>, Status>, code: Code, text: &str) {
    let status = result.expect_err("the signers refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(text), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn signers_refuse_what_the_approvals_did_not_approve_even_from_the_coordinator() {
    let cluster = Cluster::start_tls(3);
    let group = cluster.keygen_kind(
        "tr",
        "bitcoin-taproot",
        2,
        &["signer-1", "signer-2", "signer-3"],
    );
    let (internal_key, output_key) = keys_of_group(&group).unwrap();
    let own = OwnKey {
        internal_key,
        output_key,
        network: Network::Regtest,
    };
    let listed: ScriptBuf = listed_script(1);
    let psbt =
        |coins: &[Coin], outputs: &[(ScriptBuf, u64)]| unsigned(&own, coins, outputs).serialize();

    // Control: an approved PSBT within every rule gets both shares directly.
    let good = psbt(
        &coins(1, 1),
        &[(listed.clone(), 25_000), (own.script(), 34_000)],
    );
    let sighash = ringi_psbt::derive(&good, &own, false).unwrap().sighashes[0];
    let shares = rounds(&cluster, &psbt_bundle(&cluster, good), &sighash)
        .await
        .expect("an approved PSBT within the rules is signed");
    assert_eq!(shares.len(), 2);

    // 1. Approvals for a PSBT paying a listed address, a signing package
    //    over another transaction's sighash (the same coin swept to a
    //    stranger): round 2 refuses.
    let approved = psbt(
        &coins(1, 2),
        &[(listed.clone(), 25_000), (own.script(), 34_000)],
    );
    let stranger = ringi_psbt::bitcoin::ScriptBuf::new_p2tr_tweaked(
        ringi_psbt::bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(
            ringi_psbt::bitcoin::XOnlyPublicKey::from_slice(&own.internal_key).unwrap(),
        ),
    );
    let theft = psbt(&coins(1, 2), &[(stranger.clone(), 59_000)]);
    let theft_sighash = ringi_psbt::derive(&theft, &own, false).unwrap().sighashes[0];
    refused(
        rounds(&cluster, &psbt_bundle(&cluster, approved), &theft_sighash).await,
        Code::PermissionDenied,
        "not the message that was approved",
    );

    // 2. Payments over the cap (2 x 60,000 in, 110,000 to a listed address):
    //    every signer counts the derived payments, whatever is declared.
    let over = psbt(
        &coins(2, 3),
        &[(listed.clone(), 110_000), (own.script(), 9_000)],
    );
    let sighash = ringi_psbt::derive(&over, &own, false).unwrap().sighashes[0];
    refused(
        rounds(&cluster, &psbt_bundle(&cluster, over), &sighash).await,
        Code::ResourceExhausted,
        "max_amount_per_request 100000",
    );

    // 3. A payment to an unlisted address among listed ones.
    let mixed = psbt(
        &coins(1, 4),
        &[
            (listed.clone(), 10_000),
            (stranger, 10_000),
            (own.script(), 39_000),
        ],
    );
    refused(
        rounds(&cluster, &psbt_bundle(&cluster, mixed), &[0; 32]).await,
        Code::PermissionDenied,
        "not on the key's allowlist",
    );

    // 4. An input that is not the key's.
    let mut foreign = unsigned(&own, &coins(1, 5), &[(listed.clone(), 10_000)]);
    foreign.inputs[0]
        .witness_utxo
        .as_mut()
        .unwrap()
        .script_pubkey = listed_script(2);
    foreign.inputs[0].tap_internal_key = None;
    refused(
        rounds(
            &cluster,
            &psbt_bundle(&cluster, foreign.serialize()),
            &[0; 32],
        )
        .await,
        Code::InvalidArgument,
        "input 0: spends",
    );

    // A key id names one key of one kind: a DKG of another kind for it is
    // refused by the signer itself (and audited as a refusal).
    let err = cluster
        .signer_client(0)
        .await
        .dkg_round1(pb::DkgRound1Request {
            key_id: "tr".into(),
            kind: "frost-secp256k1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("(bitcoin-taproot)"), "{err:?}");

    // 5. An excessive fee: 60,000 in, 30,000 out.
    let greedy = psbt(&coins(1, 6), &[(listed, 30_000)]);
    refused(
        rounds(&cluster, &psbt_bundle(&cluster, greedy), &[0; 32]).await,
        Code::ResourceExhausted,
        "max_sats of 20000",
    );
}
