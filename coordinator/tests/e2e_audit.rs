//! The audit trail over real processes: coordinator and signers append every
//! decision to hash-chained logs, signers checkpoint theirs with their token's
//! audit key, `ringi audit verify` checks a log offline and catches an edited,
//! deleted or reordered entry, and `ringi audit export` emits JSON lines.

mod support;

use std::process::Command;

use ringi_proto::signer::v1 as pb;
use support::*;

fn audit(args: &[&str]) -> std::process::Output {
    Command::new(ringi_bin())
        .arg("audit")
        .args(args)
        .output()
        .unwrap()
}

fn events(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_are_complete_verifiable_and_tamper_evident() {
    let mut cluster = Cluster::start(3);
    cluster.keygen("hot-1", 2, &["signer-1", "signer-2", "signer-3"]);
    cluster.sign("hot-1", b"audited payment", &["signer-1", "signer-2"]);
    // A refusal, to be audited too.
    let refused = cluster
        .signer_client(0)
        .await
        .commit(pb::CommitRequest {
            key_id: "hot-1".into(),
            approval_bundle: None,
        })
        .await;
    assert!(refused.is_err());

    let info = cluster.signers[0].command().arg("info").output().unwrap();
    let info = String::from_utf8(info.stdout).unwrap();
    let audit_key = info
        .lines()
        .find_map(|l| l.strip_prefix("audit_key "))
        .expect("info prints the audit key")
        .to_string();
    cluster.signers[0].stop(); // writes a final checkpoint
    cluster.stop_coordinator();

    let signer_log = cluster.signers[0].dir.join("data/audit.jsonl");
    let coordinator_log = cluster.dir.path().join("coordinator/audit.jsonl");
    let signer_events = events(&signer_log);
    for e in [
        "node_started",
        "dkg_share_stored",
        "commit_issued",
        "share_released",
        "refused",
        "checkpoint",
    ] {
        assert!(
            signer_events.iter().any(|x| x == e),
            "{e} missing from {signer_events:?}"
        );
    }
    let coordinator_events = events(&coordinator_log);
    for e in [
        "key_created",
        "request_submitted",
        "decision_recorded",
        "signing_started",
        "signature_produced",
    ] {
        assert!(
            coordinator_events.iter().any(|x| x == e),
            "{e} missing from {coordinator_events:?}"
        );
    }

    let out = audit(&[
        "verify",
        signer_log.to_str().unwrap(),
        "--checkpoint-key",
        &audit_key,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("ok: ") && !stdout.contains(" 0 signed checkpoints"),
        "{stdout}"
    );
    let out = audit(&["verify", coordinator_log.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Another node's key did not sign these checkpoints.
    let other_info = cluster.signers[1].command().arg("info").output().unwrap();
    let other_key = String::from_utf8(other_info.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("audit_key ").map(String::from))
        .unwrap();
    let out = audit(&[
        "verify",
        signer_log.to_str().unwrap(),
        "--checkpoint-key",
        &other_key,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the expected key"));

    // Tampering with a copy: edit, delete, reorder.
    let original: Vec<String> = std::fs::read_to_string(&signer_log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let released = original
        .iter()
        .position(|l| l.contains("\"share_released\""))
        .unwrap();
    let copy = cluster.dir.path().join("tampered.jsonl");
    let check = |lines: &[String], expected: &str| {
        std::fs::write(&copy, lines.join("\n") + "\n").unwrap();
        let out = audit(&["verify", copy.to_str().unwrap()]);
        assert!(!out.status.success(), "tampering not detected");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    };
    let mut edited = original.clone();
    edited[released] = edited[released].replace("\"amount\":\"1000\"", "\"amount\":\"1\"");
    assert_ne!(edited[released], original[released]);
    check(
        &edited,
        &format!(
            "line {} (seq {}): the entry's content does not match its hash",
            released + 1,
            released + 1
        ),
    );
    let mut deleted = original.clone();
    deleted.remove(released);
    check(
        &deleted,
        &format!(
            "line {}: entry seq {}, expected {}",
            released + 1,
            released + 2,
            released + 1
        ),
    );
    let mut reordered = original.clone();
    reordered.swap(released - 1, released);
    check(&reordered, &format!("line {}: entry seq", released));

    // Export: one flat JSON object per entry, named after the node.
    let out = audit(&["export", signer_log.to_str().unwrap(), "--node", "signer-1"]);
    assert!(out.status.success());
    let exported: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported.len(), original.len());
    assert!(exported.iter().all(|e| e["node"] == "signer-1"));
    assert!(
        exported
            .iter()
            .any(|e| e["event"] == "share_released" && e["amount"] == "1000")
    );
    let out = audit(&["export", copy.to_str().unwrap()]);
    assert!(!out.status.success(), "a broken log is not exported");
    // `ringi audit export LOG | head`: the reader goes away before the
    // export writes; the export stops quietly (exit 0, no panic).
    let mut child = Command::new(ringi_bin())
        .args(["audit", "export", signer_log.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // No PIN in any entry.
    let pin = cluster.signers[0].pin();
    for log in [&signer_log, &coordinator_log] {
        assert!(!std::fs::read_to_string(log).unwrap().contains(&pin));
    }
}
