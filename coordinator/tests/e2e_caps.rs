//! Spending caps and destination allowlists: enforced by the coordinator at
//! submission, and again by every signer at round 2 from its own durable
//! ledger, so bypassing the coordinator does not get past them.

mod support;

use std::collections::BTreeMap;

use frost_secp256k1::round1::SigningCommitments;
use frost_secp256k1::{Identifier, SigningPackage};
use ringi_proto::approval::v1::ApprovalBundle;
use ringi_proto::signer::v1 as pb;
use support::*;
use tonic::Code;

const APPROVED: [(&str, &str); 2] = [("alice", "treasury"), ("carol", "compliance")];

fn submit_args<'a>(
    key: &'a str,
    msg: &'a str,
    amount: &'a str,
    destination: &'a str,
) -> Vec<&'a str> {
    vec![
        "requests",
        "submit",
        "--key-id",
        key,
        "--message-hex",
        msg,
        "--asset",
        "BTC",
        "--amount",
        amount,
        "--destination",
        destination,
        "--requester",
        "wallet-service",
    ]
}

fn approve_and_wait(
    cluster: &Cluster,
    id: &str,
    approvers: &[(&str, &str)],
) -> std::process::Output {
    for (who, dept) in approvers {
        let out = cluster.approve(id, who, dept);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cluster.wait(id)
}

#[test]
fn the_coordinator_refuses_a_request_over_a_cap_until_the_window_passes() {
    let cluster = Cluster::start(3);
    cluster.keygen("capped", 2, &["signer-1", "signer-2", "signer-3"]);
    for msg in ["01", "02"] {
        let id = cluster.ringi_ok(&submit_args("capped", msg, "1000", "bc1q"));
        assert!(approve_and_wait(&cluster, &id, &APPROVED).status.success());
    }
    let err = cluster.ringi_err(&submit_args("capped", "03", "1000", "bc1q"));
    assert!(
        err.contains("ResourceExhausted")
            && err.contains("max_amount_per_window 2500")
            && err.contains("last 8 s"),
        "{err}"
    );
    let err = cluster.ringi_err(&submit_args("capped", "04", "2001", "bc1q"));
    assert!(err.contains("max_amount_per_request 2000"), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(8200));
    let id = cluster.ringi_ok(&submit_args("capped", "03", "1000", "bc1q"));
    assert!(
        approve_and_wait(&cluster, &id, &APPROVED).status.success(),
        "after the window it passes"
    );
}

fn id(n: u16) -> Identifier {
    Identifier::try_from(n).unwrap()
}

/// Both rounds on signers 1 and 2, as a coordinator would, with `bundle`.
async fn sign_directly(
    cluster: &Cluster,
    key: &str,
    message: &[u8],
    bundle: &ApprovalBundle,
) -> Result<(), tonic::Status> {
    let mut commitments = BTreeMap::new();
    for n in [1u16, 2] {
        let r = cluster
            .signer_client(n as usize - 1)
            .await
            .commit(pb::CommitRequest {
                key_id: key.into(),
                approval_bundle: Some(bundle.clone()),
            })
            .await?
            .into_inner();
        commitments.insert(
            id(n),
            SigningCommitments::deserialize(&r.commitments).unwrap(),
        );
    }
    let package = SigningPackage::new(commitments, message);
    for n in [0usize, 1] {
        cluster
            .signer_client(n)
            .await
            .sign(pb::SignRequest {
                excluded_identifiers: Vec::new(),
                key_id: key.into(),
                signing_package: package.serialize().unwrap(),
                approval_bundle: Some(bundle.clone()),
            })
            .await?;
    }
    Ok(())
}

/// With the coordinator bypassed, valid approvals are not enough to pass a
/// cap: each signer refuses from its own ledger, which survives a restart.
#[tokio::test(flavor = "multi_thread")]
async fn signers_enforce_caps_themselves_across_restarts() {
    let mut cluster = Cluster::start(3);
    cluster.keygen("capped", 2, &["signer-1", "signer-2", "signer-3"]);
    let (_, a) = cluster.bundle("capped", b"a", &APPROVED);
    sign_directly(&cluster, "capped", b"a", &a)
        .await
        .expect("within the cap");
    // A second signing of the same request (fresh nonces) that excludes
    // no signer of the first is refused, and is not counted again: with A
    // counted once, B still fits (1000 + 1000 <= 2500).
    let err = sign_directly(&cluster, "capped", b"a", &a)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("strict superset"), "{err:?}");
    let (_, b) = cluster.bundle("capped", b"b", &APPROVED);
    sign_directly(&cluster, "capped", b"b", &b)
        .await
        .expect("B fits: A was counted once");
    cluster.signers[0].stop();
    cluster.signers[0].start();
    let (_, third) = cluster.bundle("capped", b"c", &APPROVED);
    let err = sign_directly(&cluster, "capped", b"c", &third)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("max_amount_per_window 2500") && err.message().contains("last 8 s"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn destination_allowlists() {
    let cluster = Cluster::start(3);
    for key in ["listed", "listed-strict"] {
        cluster.keygen(key, 2, &["signer-1", "signer-2", "signer-3"]);
    }
    // Listed: the base quorum.
    let id = cluster.ringi_ok(&submit_args("listed-strict", "01", "5", "bc1qlisted"));
    assert!(approve_and_wait(&cluster, &id, &APPROVED).status.success());
    // Unlisted and no other route: refused at submission.
    let err = cluster.ringi_err(&submit_args("listed-strict", "02", "5", "bc1qelsewhere"));
    assert!(
        err.contains("PermissionDenied") && err.contains("not on the allowlist"),
        "{err}"
    );
    // Unlisted with a route: security must approve too.
    let id = cluster.ringi_ok(&submit_args("listed", "03", "5", "bc1qelsewhere"));
    for (who, dept) in APPROVED {
        assert!(cluster.approve(&id, who, dept).status.success());
    }
    let shown = cluster.ringi_ok(&["requests", "show", &id]);
    assert!(shown.contains("still needed security 0 of 1"), "{shown}");
    assert!(
        approve_and_wait(&cluster, &id, &[("erin", "security")])
            .status
            .success()
    );
    // The coordinator bypassed: a signer refuses an unlisted destination.
    let (_, bundle) = cluster.bundle("listed-strict", b"x", &APPROVED); // destination "bc1q"
    let err = sign_directly(&cluster, "listed-strict", b"x", &bundle)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("not on the key's allowlist"),
        "{}",
        err.message()
    );
}

/// A cap set as a share of the daily volume follows the figure operators
/// update, without a restart or a new policy.
#[test]
fn a_cap_as_a_share_of_the_daily_volume() {
    let cluster = Cluster::start(3);
    cluster.keygen("volume-capped", 2, &["signer-1", "signer-2", "signer-3"]);
    let id = cluster.ringi_ok(&submit_args("volume-capped", "01", "1500", "bc1q"));
    assert!(approve_and_wait(&cluster, &id, &APPROVED).status.success());
    let err = cluster.ringi_err(&submit_args("volume-capped", "02", "1000", "bc1q"));
    assert!(
        err.contains("above 10.00% of the daily volume 20000 (2000)"),
        "{err}"
    );
    std::fs::write(
        cluster.dir.path().join("volumes.toml"),
        "volume-capped = 40000\n",
    )
    .unwrap();
    let id = cluster.ringi_ok(&submit_args("volume-capped", "02", "1000", "bc1q"));
    assert!(
        approve_and_wait(&cluster, &id, &APPROVED).status.success(),
        "the signers read the new figure too"
    );
}
