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

/// Runs `cmd` to its exit (a start that must be refused): kills it and
/// fails the test if it is still running after 30 s.
fn run_to_exit(mut cmd: Command) -> std::process::Output {
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("pid {pid} kept running: a broken audit log was not refused");
        }
    }
}

/// The command a refusal names: the text between "then run `" and "`".
fn named_command(stderr: &str) -> Vec<String> {
    let start = stderr
        .find("then run `")
        .unwrap_or_else(|| panic!("no command named in: {stderr}"))
        + "then run `".len();
    let len = stderr[start..].find('`').unwrap();
    stderr[start..start + len]
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn append(path: &std::path::Path, bytes: &[u8]) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// The files a repair kept broken tails in, next to `log`.
fn kept_tails(log: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut kept: Vec<_> = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("audit.jsonl.broken-"))
        .collect();
    kept.sort();
    kept
}

/// A coordinator whose audit log was torn (a crash mid-write) or edited
/// refuses to start, naming `ringi audit repair --config FILE`; that
/// command is refused while the coordinator runs, and once it is stopped
/// sets the broken tail aside (every byte kept) and records the gap; the
/// coordinator then starts and signs, and `ringi audit verify` passes and
/// names the gaps.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_coordinator_log_is_refused_then_repaired_by_the_named_command() {
    let mut cluster = Cluster::start(2);
    cluster.keygen("k", 2, &["signer-1", "signer-2"]);
    cluster.sign("k", b"before the crash", &["signer-1", "signer-2"]);
    let log = cluster.dir.path().join("coordinator/audit.jsonl");
    let config = cluster.config_path();
    let repair = || {
        Command::new(ringi_bin())
            .args(["audit", "repair", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };

    // Not while the coordinator runs: it holds the data directory's lock.
    let pid = cluster.coordinator.as_ref().unwrap().id();
    let out = repair();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot repair the audit log while the coordinator runs")
            && stderr.contains(&format!("another ringi (pid {pid})")),
        "{stderr}"
    );
    assert!(kept_tails(&log).is_empty());
    cluster.stop_coordinator();

    let refused_start = |expected: &str| {
        let mut cmd = Command::new(ringi_bin());
        cmd.args(["serve", "--config"]).arg(&config);
        let out = run_to_exit(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success());
        assert!(
            stderr.contains("is broken, refusing to append to it")
                && stderr.contains(expected)
                && stderr.contains(&format!(
                    "then run `ringi audit repair --config {}`",
                    config.display()
                )),
            "{stderr}"
        );
        stderr
    };
    // The command the refusal names, run as named.
    let run_named = |stderr: &str| {
        let command = named_command(stderr);
        assert_eq!(command[..3], ["ringi", "audit", "repair"]);
        let out = Command::new(ringi_bin())
            .args(&command[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    // A torn last write.
    let torn = b"{\"seq\":99,\"at\":17954";
    append(&log, torn);
    let lines = std::fs::read_to_string(&log).unwrap().lines().count();
    let stderr = refused_start(&format!("line {lines}: not a log entry"));
    let stdout = run_named(&stderr);
    assert!(
        stdout.starts_with("repaired: ") && stdout.contains("1 line(s) after them (20 bytes"),
        "{stdout}"
    );
    let kept = kept_tails(&log);
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(&kept[0]).unwrap(), torn);
    cluster.start_coordinator();
    cluster.sign("k", b"after the repair", &["signer-1", "signer-2"]);
    cluster.stop_coordinator();

    // An edited entry in the middle (of those after the first gap): it and
    // everything after it go aside.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let gap = lines
        .iter()
        .position(|l| l.contains("\"audit_gap\""))
        .unwrap();
    let middle = gap + (lines.len() - gap) / 2;
    assert!(middle > gap && middle < lines.len() - 1);
    lines[middle] = lines[middle].replacen("\"event\":\"", "\"event\":\"x", 1);
    let tail_lines = lines.len() - middle;
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let stderr = refused_start(&format!(
        "line {} (seq {}): the entry's content does not match its hash",
        middle + 1,
        middle + 1
    ));
    // Repairing is what the command does, whoever runs it: still refused
    // without it (the start above), accepted after.
    let stdout = run_named(&stderr);
    assert!(
        stdout.contains(&format!(
            "kept its first {middle} entries, moved the {tail_lines} line(s)"
        )),
        "{stdout}"
    );
    assert_eq!(kept_tails(&log).len(), 2);
    // Repairing again changes nothing.
    let out = repair();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("intact: "));
    cluster.start_coordinator();
    cluster.sign("k", b"after the second repair", &["signer-1", "signer-2"]);
    cluster.stop_coordinator();

    let out = audit(&["verify", log.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning: audit_gap at seq "))
        .collect();
    assert_eq!(warnings.len(), 2, "{stdout}");
    assert!(
        warnings[1].contains(&format!("at seq {}: {tail_lines} line(s)", middle + 1)),
        "{stdout}"
    );
}

/// A signer whose audit log was torn refuses to start, naming
/// `ringi-signer audit-repair --data-dir DIR`; that command (which needs no
/// token or PIN) is refused while the node runs, and once it is stopped
/// repairs the log; the node then serves and signs again, and its log
/// verifies against its checkpoint key with the gap named.
#[tokio::test(flavor = "multi_thread")]
async fn a_torn_signer_log_is_refused_then_repaired_by_the_named_command() {
    let mut cluster = Cluster::start(2);
    cluster.keygen("k", 2, &["signer-1", "signer-2"]);
    let data = cluster.signers[0].dir.join("data");
    let log = data.join("audit.jsonl");

    let pid = cluster.signers[0].child.as_ref().unwrap().id();
    let out = cluster.signers[0]
        .command()
        .arg("audit-repair")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot repair the audit log while the node runs")
            && stderr.contains(&format!("another ringi-signer (pid {pid})")),
        "{stderr}"
    );
    assert!(kept_tails(&log).is_empty());

    let info = cluster.signers[0].command().arg("info").output().unwrap();
    let audit_key = String::from_utf8(info.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("audit_key ").map(String::from))
        .expect("info prints the audit key");
    cluster.signers[0].stop();
    let torn = b"{\"seq\":99,\"at\":1795400000,\"event\":\"share_rel";
    append(&log, torn);

    let mut cmd = cluster.signers[0].command();
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    let out = run_to_exit(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is broken, refusing to append to it")
            && stderr.contains(&format!(
                "then run `ringi-signer audit-repair --data-dir {}`",
                data.display()
            )),
        "{stderr}"
    );
    // Run as named, with no token configuration at all.
    let command = named_command(&stderr);
    assert_eq!(command[0], "ringi-signer");
    let out = Command::new(signer_bin())
        .env_clear()
        .args(&command[1..])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("repaired: "), "{stdout}");
    let kept = kept_tails(&log);
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(&kept[0]).unwrap(), torn);

    cluster.signers[0].start();
    cluster.sign("k", b"after the repair", &["signer-1", "signer-2"]);
    cluster.signers[0].stop();
    let out = audit(&[
        "verify",
        log.to_str().unwrap(),
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
        stdout.contains("warning: audit_gap at seq ")
            && stdout.contains(&format!("({} bytes", torn.len())),
        "{stdout}"
    );
    assert!(
        events(&log).iter().any(|e| e == "share_released"),
        "the node signed after the repair"
    );
}
