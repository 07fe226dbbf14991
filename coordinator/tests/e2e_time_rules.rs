//! The policy's time rules on real processes (issue 14): a delay between
//! full approval and signing, and signing hours, enforced by each signer
//! with its own clock; the coordinator waits for them instead of failing
//! the request.

mod support;

use std::time::{Duration, Instant};

use ringi_proto::signer::v1 as pb;
use support::*;
use tonic::Code;

fn state(cluster: &Cluster, id: &str) -> String {
    let shown: serde_json::Value =
        serde_json::from_str(&cluster.ringi_ok(&["requests", "show", id, "--output", "json"]))
            .unwrap();
    shown["state"].as_str().unwrap().to_string()
}

fn approve_both(cluster: &Cluster, id: &str) {
    for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
        let out = cluster.approve(id, who, dept);
        assert!(
            out.status.success(),
            "approve: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_request_is_signed_only_after_the_policys_delay() {
    let cluster = Cluster::start_tls(3);
    let all = ["signer-1", "signer-2", "signer-3"];
    let group_key = cluster.keygen("timed", 2, &all);

    let id = cluster.submit("timed", b"after a pause", 1000, "wallet-service", &[]);
    approve_both(&cluster, &id);
    let approved_at = Instant::now();
    // Approved, not signed yet: the coordinator waits out the delay.
    assert_eq!(state(&cluster, &id), "APPROVED");
    let signature = cluster.wait_signed(&id);
    assert!(
        approved_at.elapsed() >= Duration::from_secs(2),
        "signed {:?} after the quorum, before the 3 s delay",
        approved_at.elapsed()
    );
    assert!(frost_verify(&group_key, b"after a pause", &signature));

    // Each signer refuses a bundle whose quorum is younger than the delay,
    // whoever sends it: here, straight after the approvals were signed.
    let (_, bundle) = cluster.bundle(
        "timed",
        b"too soon",
        &[("alice", "treasury"), ("carol", "compliance")],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        cluster
            .signer_client(0)
            .await
            .commit(pb::CommitRequest {
                key_id: "timed".into(),
                approval_bundle: Some(bundle),
            })
            .await
            .unwrap_err()
    });
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains("requires 3 s between full approval"),
        "{}",
        status.message()
    );
}

#[test]
fn outside_signing_hours_the_request_waits_and_signers_refuse() {
    let cluster = Cluster::start_tls(3);
    let all = ["signer-1", "signer-2", "signer-3"];
    cluster.keygen("closed", 2, &all);
    let id = cluster.submit("closed", b"after hours", 1000, "wallet-service", &[]);
    approve_both(&cluster, &id);
    // The coordinator holds it APPROVED (not FAILED) until the hours open.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state(&cluster, &id), "APPROVED");

    let (_, bundle) = cluster.bundle(
        "closed",
        b"after hours",
        &[("alice", "treasury"), ("carol", "compliance")],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    for i in 0..3 {
        let status = rt.block_on(async {
            cluster
                .signer_client(i)
                .await
                .commit(pb::CommitRequest {
                    key_id: "closed".into(),
                    approval_bundle: Some(bundle.clone()),
                })
                .await
                .unwrap_err()
        });
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("outside the key's signing hours"),
            "{}",
            status.message()
        );
    }
}
