//! Faults lose no human work (issue 12), on real processes.

mod support;

use std::sync::Arc;

use ringi_policy::statement::Decision;
use ringi_proto::coordinator::v1 as pb;
use support::*;

/// Two approvals arriving at the same moment: each Decide recomputes the
/// quorum inside the write that records it, so the second one written
/// always sees the first and the request moves to APPROVED and is signed.
/// (Before, each counted against a snapshot missing the other, and most
/// such requests stayed PENDING_APPROVAL with every department satisfied.)
#[tokio::test(flavor = "multi_thread")]
async fn simultaneous_approvals_complete_the_quorum() {
    let cluster = Arc::new(Cluster::start(3));
    let group_key = cluster.keygen("busy", 2, &["signer-1", "signer-2", "signer-3"]);
    let client = cluster.request_client().await;
    let tasks: Vec<_> = (0..32u32)
        .map(|i| {
            let mut client = client.clone();
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let message = format!("simultaneous approvals {i}").into_bytes();
                let view = client
                    .submit_signing_request(raw_submission(
                        "busy",
                        &message,
                        &format!("simultaneous-{i}"),
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                let request =
                    ringi_proto::bundle::request_from_pb(view.request.as_ref().unwrap()).unwrap();
                let decide = |who: &str, dept: &str| {
                    let mut client = client.clone();
                    let approval = cluster.approval(&request, who, dept, Decision::Approve);
                    async move {
                        client
                            .decide(pb::DecideRequest {
                                approval: Some(approval),
                            })
                            .await
                    }
                };
                let (a, b) =
                    tokio::join!(decide("alice", "treasury"), decide("carol", "compliance"));
                a.unwrap();
                b.unwrap();
                for _ in 0..400 {
                    let view = client
                        .get_signing_request(pb::GetSigningRequestRequest {
                            request_id: view.request_id.clone(),
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    match view.state.as_str() {
                        "SIGNED" => return (message, view.signature),
                        "APPROVED" | "SIGNING" => {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await
                        }
                        other => panic!(
                            "request {i} is {other} with both departments approved: {}",
                            view.state_reason
                        ),
                    }
                }
                panic!("request {i} not signed in time");
            })
        })
        .collect();
    for task in tasks {
        let (message, signature) = task.await.unwrap();
        assert!(frost_verify(&group_key, &message, &signature));
    }
}

/// A client that resends the very same signed approval (after a timeout,
/// say) gets the request's current view, not a conflict; a *different*
/// statement by the same approver is still refused (ALREADY_EXISTS).
#[tokio::test(flavor = "multi_thread")]
async fn resending_the_same_approval_is_idempotent() {
    let cluster = Cluster::start(3);
    cluster.keygen("busy", 2, &["signer-1", "signer-2", "signer-3"]);
    let mut client = cluster.request_client().await;
    let view = client
        .submit_signing_request(raw_submission("busy", b"resent", "resent"))
        .await
        .unwrap()
        .into_inner();
    let request = ringi_proto::bundle::request_from_pb(view.request.as_ref().unwrap()).unwrap();
    let alice = cluster.approval(&request, "alice", "treasury", Decision::Approve);
    for _ in 0..2 {
        let v = client
            .decide(pb::DecideRequest {
                approval: Some(alice.clone()),
            })
            .await
            .expect("the same statement again is answered with the current view")
            .into_inner();
        assert_eq!(v.state, "PENDING_APPROVAL");
        assert_eq!(v.approvals.len(), 1);
    }
    // Another statement by alice (issued later, another signature).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let other = cluster.approval(&request, "alice", "treasury", Decision::Approve);
    assert_ne!(other, alice);
    let err = client
        .decide(pb::DecideRequest {
            approval: Some(other),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
    // Once signed, the same approval again still answers with the view.
    let carol = cluster.approval(&request, "carol", "compliance", Decision::Approve);
    client
        .decide(pb::DecideRequest {
            approval: Some(carol),
        })
        .await
        .unwrap();
    let v = client
        .decide(pb::DecideRequest {
            approval: Some(alice),
        })
        .await
        .expect("resent after the quorum")
        .into_inner();
    assert_ne!(v.state, "PENDING_APPROVAL");
}

/// Watch is pushed, not polled: a watcher of a request nobody touches
/// again hears of its expiry (applied when due, by the one timer the
/// stream keeps), and many watchers that go away leave the coordinator
/// serving (their streams end when the client drops them).
#[tokio::test(flavor = "multi_thread")]
async fn a_watch_hears_of_expiry_and_dropped_watchers_go_away() {
    let cluster = Cluster::start(3);
    cluster.keygen("short-req", 2, &["signer-1", "signer-2", "signer-3"]);
    let mut client = cluster.request_client().await;
    let view = client
        .submit_signing_request(raw_submission("short-req", b"left alone", "left-alone"))
        .await
        .unwrap()
        .into_inner();
    // Many watchers that go away at once.
    for _ in 0..200 {
        let stream = client
            .watch_signing_request(pb::WatchSigningRequestRequest {
                request_id: view.request_id.clone(),
            })
            .await
            .unwrap();
        drop(stream);
    }
    let mut stream = client
        .watch_signing_request(pb::WatchSigningRequestRequest {
            request_id: view.request_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut states = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        states.push(event.transition.unwrap().to_state);
    }
    assert_eq!(states, ["PENDING_APPROVAL", "EXPIRED"]);
}

/// A signer's Sign response lost after it released its share (a fault
/// injected in the signer's debug build): the coordinator asks it again
/// with the very same signing package, the signer answers with the share
/// it recorded (audited `share_resent`), and the request is signed — no
/// second share, no second signature, no FAILED request.
#[test]
fn a_lost_sign_response_is_recovered_with_the_same_package() {
    let mut cluster = Cluster::start(3);
    let group_key = cluster.keygen("k", 2, &["signer-1", "signer-2", "signer-3"]);
    let node = &mut cluster.signers[1];
    node.stop();
    node.env
        .push(("RINGI_TEST_FAULT".into(), "lose-first-sign-response".into()));
    node.start();
    let signature = cluster.sign("k", b"lost response", &["signer-1", "signer-2"]);
    assert!(frost_verify(&group_key, b"lost response", &signature));
    let audit = std::fs::read_to_string(cluster.signers[1].dir.join("data/audit.jsonl")).unwrap();
    let released = audit.matches("\"share_released\"").count();
    let resent = audit.matches("\"share_resent\"").count();
    assert_eq!((released, resent), (1, 1), "{audit}");
}

/// A signer killed between committing a release (the spend, the share and
/// its `share_released` entry, one transaction in its ledger) and
/// appending that entry to its audit log (a crash point in its debug
/// build: it aborts as under `kill -9`). Restarted, it first appends the
/// entry it kept, marked recovered, and its log still verifies; the
/// coordinator, asking again with the same signing package, gets the share
/// it recorded (`share_resent`) and the request is signed once, with one
/// `share_released` entry per share released.
#[test]
fn a_signer_killed_before_its_audit_append_recovers_the_entry_from_its_ledger() {
    let mut cluster = Cluster::start(3);
    let group_key = cluster.keygen("k", 2, &["signer-1", "signer-2", "signer-3"]);
    let node = &mut cluster.signers[1];
    node.stop();
    node.env.push((
        "RINGI_TEST_FAULT".into(),
        "crash-after-release-commit".into(),
    ));
    node.start();
    let message = b"crash before the audit append".to_vec();
    let id = cluster.submit(
        "k",
        &message,
        1000,
        "wallet-service",
        &["signer-1", "signer-2"],
    );
    for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
        assert!(cluster.approve(&id, who, dept).status.success());
    }
    let node = &mut cluster.signers[1];
    let log_path = node.dir.join("data/audit.jsonl");
    let mut crashed = false;
    for _ in 0..300 {
        if let Ok(Some(_)) = node.child.as_mut().unwrap().try_wait() {
            crashed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(crashed, "signer-2 did not crash after its release commit");
    node.child = None;
    // The request's share entries (commitments are audited too).
    let of_request = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| {
                e["fields"]["request_id"] == id.as_str()
                    && e["event"].as_str().unwrap().starts_with("share_")
            })
            .collect()
    };
    let before = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        of_request(&before).is_empty(),
        "no share entry had reached the log: {before}"
    );

    node.env.retain(|(k, _)| k != "RINGI_TEST_FAULT");
    node.start();
    let signature = cluster.wait_signed(&id);
    assert!(frost_verify(&group_key, &message, &signature));

    let after = std::fs::read_to_string(&log_path).unwrap();
    ringi_policy::audit::verify_bytes(after.as_bytes(), None).expect("the log verifies");
    let entries = of_request(&after);
    let events: Vec<&str> = entries
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["share_released", "share_resent"], "{after}");
    assert_eq!(entries[0]["fields"]["recovered"], "ledger");
    assert!(entries[0]["fields"]["ledger_entry"].is_string());
    // The other signer's entry went straight to its log.
    let other = std::fs::read_to_string(cluster.signers[0].dir.join("data/audit.jsonl")).unwrap();
    let released: Vec<serde_json::Value> = of_request(&other)
        .into_iter()
        .filter(|e| e["event"] == "share_released")
        .collect();
    assert_eq!(released.len(), 1, "{other}");
    assert!(released[0]["fields"]["recovered"].is_null());
}

/// An approval that expired before the quorum was met no longer counts,
/// and its approver can renew it: the request completes instead of
/// deadlocking (a one-person department could never finish it otherwise).
#[tokio::test(flavor = "multi_thread")]
async fn an_approval_that_expired_before_quorum_can_be_renewed() {
    let cluster = Cluster::start(3);
    let group_key = cluster.keygen("short-appr", 2, &["signer-1", "signer-2", "signer-3"]);
    let mut client = cluster.request_client().await;
    let view = client
        .submit_signing_request(raw_submission("short-appr", b"renewed", "renewed"))
        .await
        .unwrap()
        .into_inner();
    let id = view.request_id.clone();
    assert!(cluster.approve(&id, "alice", "treasury").status.success());
    // short-appr approvals are valid 3 s: alice's lapses.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert!(cluster.approve(&id, "carol", "compliance").status.success());
    let v = client
        .get_signing_request(pb::GetSigningRequestRequest {
            request_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        v.state, "PENDING_APPROVAL",
        "an expired approval does not count"
    );
    assert_eq!(v.still_needed[0].department, "treasury");
    // alice renews hers; with carol's (still valid) the quorum is met.
    let out = cluster.approve(&id, "alice", "treasury");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signature = cluster.wait_signed(&id);
    assert!(frost_verify(&group_key, b"renewed", &signature));
}

/// The coordinator killed between aggregating a signature and committing
/// SIGNED (a crash point in its debug build: it aborts as under `kill -9`).
/// The restarted coordinator takes the SIGNING request over, asks the same
/// signers for the same signing package (recorded before round 2), gets
/// the shares they already released back, and records that signature:
/// the request is signed once, with exactly one share released per signer
/// that took part, and one `signature_produced` in the coordinator's audit
/// trail. (Before, the restart started a new signing, which the signers
/// that had released refused, and the request ended FAILED with a
/// signature made and lost; with more signers it was signed twice.)
#[test]
fn a_crash_between_aggregation_and_commit_signs_once() {
    let mut cluster = Cluster::start(3);
    let group_key = cluster.keygen("k", 2, &["signer-1", "signer-2", "signer-3"]);
    cluster.stop_coordinator();
    cluster.start_coordinator_with_env(&[("RINGI_TEST_FAULT", "crash-after-aggregate")]);
    let message = b"crash before the commit".to_vec();
    let id = cluster.submit("k", &message, 1000, "wallet-service", &[]);
    for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
        assert!(cluster.approve(&id, who, dept).status.success());
    }
    await_crash(&mut cluster, "after-aggregate");

    cluster.start_coordinator();
    let signature = cluster.wait_signed(&id);
    assert!(frost_verify(&group_key, &message, &signature));

    let mut released = 0;
    let mut resent = 0;
    for node in &cluster.signers {
        let audit = std::fs::read_to_string(node.dir.join("data/audit.jsonl")).unwrap();
        let of_request: Vec<&str> = audit.lines().filter(|l| l.contains(&id)).collect();
        let r = of_request
            .iter()
            .filter(|l| l.contains("\"share_released\""))
            .count();
        assert!(r <= 1, "{} released {r} shares", node.name);
        released += r;
        resent += of_request
            .iter()
            .filter(|l| l.contains("\"share_resent\""))
            .count();
    }
    assert_eq!(released, 2, "one share from each of two signers");
    assert_eq!(resent, 2, "both asked again for the same package");
    let audit =
        std::fs::read_to_string(cluster.dir.path().join("coordinator/audit.jsonl")).unwrap();
    let produced: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"signature_produced\"") && l.contains(&id))
        .collect();
    assert_eq!(produced.len(), 1, "{audit}");
    assert!(produced[0].contains(&hex::encode(&signature)));
}

/// Restarts signer `i` with the policy file `policy`.
fn restart_with_policy(cluster: &mut Cluster, i: usize, policy: &std::path::Path) {
    let node = &mut cluster.signers[i];
    node.stop();
    for (k, v) in node.env.iter_mut() {
        if k == "RINGI_POLICY_FILE" {
            *v = policy.display().to_string();
        }
    }
    node.start();
}

/// FAILED is for refusals, and an administrator can retry once the cause
/// is fixed: two signers pinning another policy refuse the request (FAILED,
/// naming the policy); with their policy put right, `ringi requests retry`
/// sends it back to APPROVED and it is signed, without approving it
/// again. A retry of anything but FAILED is refused.
#[test]
fn a_failed_request_is_retried_by_an_admin_once_the_cause_is_fixed() {
    let mut cluster = Cluster::start(3);
    let group_key = cluster.keygen("k", 2, &["signer-1", "signer-2", "signer-3"]);
    let pinned = cluster.policy_path.clone();
    let other = cluster.dir.path().join("other-policy.toml");
    let mut text = std::fs::read_to_string(&pinned).unwrap();
    text.push_str("\n# another version of the policy\n");
    std::fs::write(&other, text).unwrap();
    restart_with_policy(&mut cluster, 0, &other);
    restart_with_policy(&mut cluster, 1, &other);

    let message = b"refused, then retried".to_vec();
    let id = cluster.submit("k", &message, 1000, "wallet-service", &[]);
    for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
        assert!(cluster.approve(&id, who, dept).status.success());
    }
    let out = cluster.wait(&id);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is FAILED") && err.contains("polic"), "{err}");

    restart_with_policy(&mut cluster, 0, &pinned);
    restart_with_policy(&mut cluster, 1, &pinned);
    let out = cluster.ringi(&["requests", "retry", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signature = cluster.wait_signed(&id);
    assert!(frost_verify(&group_key, &message, &signature));

    let err = cluster.ringi_err(&["requests", "retry", &id]);
    assert!(
        err.contains("FailedPrecondition") && err.contains("is SIGNED, not FAILED"),
        "{err}"
    );
    let shown: serde_json::Value =
        serde_json::from_str(&cluster.ringi_ok(&["requests", "show", &id, "--output", "json"]))
            .unwrap();
    let history = shown["transitions"].to_string();
    assert!(history.contains("retried by"), "{shown}");
}

/// Waits for the coordinator to die at its fault point; forgets it.
fn await_crash(cluster: &mut Cluster, point: &str) {
    let child = cluster.coordinator.as_mut().unwrap();
    for _ in 0..300 {
        if let Ok(Some(_)) = child.try_wait() {
            cluster.coordinator = None;
            let log = std::fs::read_to_string(cluster.dir.path().join("coordinator.log")).unwrap();
            assert!(log.contains(&format!("crashing at {point}")), "{log}");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the coordinator did not crash at {point}");
}

/// The entries of the coordinator's audit trail for `event` and request `id`.
fn audited(cluster: &Cluster, event: &str, id: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(cluster.dir.path().join("coordinator/audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == event && e["fields"]["request_id"] == id)
        .collect()
}

/// A kill between a commit and its audit entry (crash points after a
/// submission and after a decision) loses no audit entry: at start the
/// coordinator appends, from its store, every entry the trail lacks,
/// marked `recovered`, exactly once; the trail still verifies.
#[tokio::test(flavor = "multi_thread")]
async fn audit_entries_lost_in_a_crash_are_recovered_at_start() {
    let mut cluster = Cluster::start(3);
    cluster.keygen("k", 2, &["signer-1", "signer-2", "signer-3"]);
    cluster.stop_coordinator();
    cluster.start_coordinator_with_env(&[("RINGI_TEST_FAULT", "crash-after-submit")]);
    let mut client = cluster.request_client().await;
    let submitted = client
        .submit_signing_request(raw_submission("k", b"audit after crash", "audit-crash"))
        .await;
    assert!(submitted.is_err(), "the coordinator died before answering");
    await_crash(&mut cluster, "after-submit");

    cluster.start_coordinator_with_env(&[("RINGI_TEST_FAULT", "crash-after-decision")]);
    let mut client = cluster.request_client().await;
    // The submission was committed: resubmitting with its idempotency key
    // returns it.
    let id = client
        .submit_signing_request(raw_submission("k", b"audit after crash", "audit-crash"))
        .await
        .unwrap()
        .into_inner()
        .request_id;
    let recovered = audited(&cluster, "request_submitted", &id);
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0]["fields"]["recovered"], "true");
    assert!(!cluster.approve(&id, "alice", "treasury").status.success());
    await_crash(&mut cluster, "after-decision");

    cluster.start_coordinator();
    let decisions = audited(&cluster, "decision_recorded", &id);
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0]["fields"]["recovered"], "true");
    assert_eq!(decisions[0]["fields"]["department"], "treasury");
    assert!(cluster.approve(&id, "carol", "compliance").status.success());
    assert!(cluster.wait(&id).status.success());
    // A clean restart recovers nothing more: each entry exactly once.
    cluster.stop_coordinator();
    cluster.start_coordinator();
    assert_eq!(audited(&cluster, "request_submitted", &id).len(), 1);
    assert_eq!(audited(&cluster, "decision_recorded", &id).len(), 2);
    assert_eq!(audited(&cluster, "signature_produced", &id).len(), 1);
    let verify = cluster.ringi(&[
        "audit",
        "verify",
        &cluster
            .dir
            .path()
            .join("coordinator/audit.jsonl")
            .display()
            .to_string(),
    ]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
