//! Requests signed by their requester (issue 14), on real processes over
//! mutual TLS: for a key whose policy sets `signed_requests`, the signers
//! take who asked from the wallet's own signature, so a request written in
//! a wallet's name by someone else (an insider with the coordinator's
//! database) is never signed, and an approver cannot pass as the requester.

mod support;

use ringi_policy::statement::Decision;
use ringi_proto::signer::v1 as pb;
use support::*;
use tonic::Code;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn submit(cluster: &Cluster, message: &str, requester_key: Option<&str>) -> String {
    let mut args = vec![
        "requests",
        "submit",
        "--key-id",
        "signed",
        "--message-hex",
        message,
        "--asset",
        "BTC",
        "--amount",
        "1000",
        "--destination",
        "bc1qsigned",
    ];
    if let Some(k) = requester_key {
        args.extend(["--requester-key-file", k]);
    }
    let out = cluster.ringi_as("wallet-service", &args);
    assert!(out.status.success(), "submit: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn approve_both(cluster: &Cluster, id: &str) {
    for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
        let out = cluster.approve(id, who, dept);
        assert!(out.status.success(), "approve: {}", stderr(&out));
    }
}

#[test]
fn a_signed_request_is_signed_an_unsigned_one_waits_for_its_requester() {
    let cluster = Cluster::start_tls(3);
    let group_key = cluster.keygen("signed", 2, &["signer-1", "signer-2", "signer-3"]);
    let wallet_key = cluster.key_file("wallet-service");

    let id = submit(&cluster, "5167", Some(&wallet_key));
    approve_both(&cluster, &id);
    let signature = cluster.wait_signed(&id);
    assert!(frost_verify(&group_key, &[0x51, 0x67], &signature));
    // The approver's view lists the requester's signature with the
    // approvals, verified like them.
    let shown = cluster.ringi_ok(&["requests", "show", &id, "--output", "json"]);
    assert!(shown.contains("\"request\""), "{shown}");

    // Without the requester's signature both approvals are not enough.
    let unsigned = submit(&cluster, "7e57", None);
    approve_both(&cluster, &unsigned);
    let shown: serde_json::Value = serde_json::from_str(
        &cluster.ringi_ok(&["requests", "show", &unsigned, "--output", "json"]),
    )
    .unwrap();
    assert_eq!(shown["state"], "PENDING_APPROVAL", "{shown}");
    assert!(
        shown["still_needed"]
            .to_string()
            .contains("requester's signature"),
        "{shown}"
    );
}

#[test]
fn signers_refuse_an_unsigned_or_forged_requester() {
    let cluster = Cluster::start_tls(3);
    cluster.keygen("signed", 2, &["signer-1", "signer-2", "signer-3"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let commit = |bundle: ringi_proto::approval::v1::ApprovalBundle| {
        rt.block_on(async {
            cluster
                .signer_client(0)
                .await
                .commit(pb::CommitRequest {
                    key_id: "signed".into(),
                    approval_bundle: Some(bundle),
                })
                .await
        })
    };
    let quorum = [("alice", "treasury"), ("carol", "compliance")];

    // The insider's request: in wallet-service's name, fully approved,
    // never signed by the wallet.
    let (_, bundle) = cluster.bundle("signed", b"insider", &quorum);
    let status = commit(bundle).unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("approval quorum not met: requester's signature 0 of 1"),
        "{}",
        status.message()
    );

    // An approver's key cannot stand in for the requester's.
    let (request, mut bundle) = cluster.bundle("signed", b"forged", &quorum);
    bundle
        .approvals
        .push(cluster.approval(&request, "alice", "", Decision::Request));
    let status = commit(bundle).unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("signed by a key that is not one of the policy's requesters"),
        "{}",
        status.message()
    );

    // The wallet's key does not prove another requester's request.
    let (mut request, _) = cluster.bundle("signed", b"other", &quorum);
    request.requester = "limited-wallet".into();
    let approvals = [("alice", "treasury"), ("carol", "compliance")]
        .iter()
        .map(|(who, dept)| cluster.approval(&request, who, dept, Decision::Approve))
        .chain([cluster.approval(&request, "wallet-service", "", Decision::Request)])
        .collect();
    let status = commit(ringi_proto::approval::v1::ApprovalBundle {
        request: Some(ringi_proto::bundle::request_to_pb(&request)),
        approvals,
    })
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(
            "names \"limited-wallet\" as its requester, but it is signed by \"wallet-service\""
        ),
        "{}",
        status.message()
    );

    // And with the wallet's signature the same bundle passes round 1.
    let (request, mut bundle) = cluster.bundle("signed", b"genuine", &quorum);
    bundle
        .approvals
        .push(cluster.approval(&request, "wallet-service", "", Decision::Request));
    assert!(commit(bundle).is_ok());
}
