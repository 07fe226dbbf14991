//! End to end over real processes: DKG and t-of-n signing with every subset,
//! a signer down, a coordinator restart. Signatures are checked with frost and
//! with an independent RFC 9591 verifier.

mod support;

use support::*;

fn check_signature(group_key: &[u8], message: &[u8], signature: &[u8]) {
    assert_eq!(signature.len(), 65);
    assert!(
        frost_verify(group_key, message, signature),
        "frost rejects the signature"
    );
    assert!(
        independent_verify(group_key, message, signature),
        "the RFC 9591 check rejects the signature"
    );
    let mut other = message.to_vec();
    other[0] ^= 1;
    assert!(
        !independent_verify(group_key, &other, signature),
        "the verifier accepts a wrong message"
    );
}

#[test]
fn two_of_three_every_subset_then_a_signer_down_then_a_restart() {
    let mut cluster = Cluster::start(3);
    let group_key = cluster.keygen("hot-1", 2, &["signer-1", "signer-2", "signer-3"]);
    assert_eq!(group_key.len(), 33);
    assert_eq!(
        cluster.ringi_ok(&["pubkey", "--key-id", "hot-1"]),
        hex::encode(&group_key)
    );

    for subset in subsets(3, 2) {
        let names: Vec<&str> = subset
            .iter()
            .map(|i| cluster.signers[*i].name.as_str())
            .collect();
        let message = format!("pay 1 BTC, signed by {names:?}").into_bytes();
        let signature = cluster.sign("hot-1", &message, &names);
        check_signature(&group_key, &message, &signature);
    }

    // One signer down: any two others still sign.
    cluster.signers[2].stop();
    for round in 0..4 {
        let message = format!("signer-3 is down, round {round}").into_bytes();
        let signature = cluster.sign("hot-1", &message, &[]);
        check_signature(&group_key, &message, &signature);
    }
    // Two down: the threshold cannot be met now. Being down is not a
    // refusal: the request stays SIGNING, retried with backoff, and is
    // signed once the signers are back, without approving it again.
    cluster.signers[1].stop();
    let message = b"two signers down".to_vec();
    let id = cluster.submit("hot-1", &message, 1000, "wallet-service", &[]);
    for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
        assert!(cluster.approve(&id, who, dept).status.success());
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    let shown: serde_json::Value =
        serde_json::from_str(&cluster.ringi_ok(&["requests", "show", &id, "--output", "json"]))
            .unwrap();
    assert_eq!(shown["state"], "SIGNING", "{shown}");
    cluster.signers[1].start();
    let out = cluster.wait(&id);
    assert!(
        out.status.success(),
        "signed once the signers are back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signature = hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    check_signature(&group_key, &message, &signature);

    // The coordinator keeps keys across a restart; the signers keep shares.
    cluster.signers[2].start();
    cluster.stop_coordinator();
    cluster.start_coordinator();
    assert_eq!(
        cluster.ringi_ok(&["pubkey", "--key-id", "hot-1"]),
        hex::encode(&group_key)
    );
    let message = b"after restarts".to_vec();
    check_signature(
        &group_key,
        &message,
        &cluster.sign("hot-1", &message, &["signer-2", "signer-3"]),
    );
}

#[test]
fn three_of_five_every_subset() {
    let cluster = Cluster::start(5);
    let all: Vec<&str> = cluster.signers.iter().map(|s| s.name.as_str()).collect();
    let group_key = cluster.keygen("cold-1", 3, &all);
    let subsets = subsets(5, 3);
    assert_eq!(subsets.len(), 10);
    for subset in subsets {
        let names: Vec<&str> = subset.iter().map(|i| all[*i]).collect();
        let message = format!("3-of-5 by {names:?}").into_bytes();
        check_signature(
            &group_key,
            &message,
            &cluster.sign("cold-1", &message, &names),
        );
    }
    let listed = cluster.ringi_ok(&["keys", "--output", "json"]);
    let keys: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(keys[0]["key_id"], "cold-1");
    assert_eq!(keys[0]["threshold"], 3);
    assert_eq!(keys[0]["signers"].as_array().unwrap().len(), 5);
}

/// Many requests approved at once: the coordinator runs their signings
/// concurrently, each signer serves concurrent rounds from one logged-in
/// token, and every signature verifies.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_signings_all_verify() {
    use ringi_policy::statement::Decision;
    use ringi_proto::coordinator::v1 as pb;
    let cluster = std::sync::Arc::new(Cluster::start(3));
    let group_key = cluster.keygen("busy", 2, &["signer-1", "signer-2", "signer-3"]);
    let client = cluster.request_client().await;
    let tasks: Vec<_> = (0..30u32)
        .map(|i| {
            let mut client = client.clone();
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let message = format!("concurrent payment {i}").into_bytes();
                let view = client
                    .submit_signing_request(pb::SubmitSigningRequestRequest {
                        key_id: "busy".into(),
                        message: message.clone(),
                        asset: "BTC".into(),
                        amount: "1000".into(),
                        destination: "bc1q".into(),
                        memo: String::new(),
                        requester: "wallet-service".into(),
                        signers: vec![],
                        idempotency_key: format!("concurrent-{i}"),
                        psbt: Vec::new(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let request =
                    ringi_proto::bundle::request_from_pb(view.request.as_ref().unwrap()).unwrap();
                for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
                    client
                        .decide(pb::DecideRequest {
                            approval: Some(cluster.approval(
                                &request,
                                who,
                                dept,
                                Decision::Approve,
                            )),
                        })
                        .await
                        .unwrap();
                }
                for _ in 0..300 {
                    let view = client
                        .get_signing_request(pb::GetSigningRequestRequest {
                            request_id: view.request_id.clone(),
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    match view.state.as_str() {
                        "SIGNED" => return (message, view.signature),
                        "PENDING_APPROVAL" | "APPROVED" | "SIGNING" => {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await
                        }
                        other => panic!("request ended {other}: {}", view.state_reason),
                    }
                }
                panic!("request not signed in time");
            })
        })
        .collect();
    for task in tasks {
        let (message, signature) = task.await.unwrap();
        check_signature(&group_key, &message, &signature);
    }
}
