//! The coordinator's keys in a PKCS#11 token (SoftHSM here), on real
//! processes: its TLS key (serving the CLI, dialling the signers under
//! mutual TLS) and the P-256 key that signs its audit checkpoints are the
//! token's; no key file is needed; a trail rewritten and re-chained by
//! someone who can write the file no longer verifies.

mod support;

use std::io::BufRead;
use std::process::Command;

use ringi_policy::audit::{AuditLog, CHECKPOINT, Entry};
use support::*;

fn entries(path: &std::path::Path) -> Vec<Entry> {
    std::io::BufReader::new(std::fs::File::open(path).unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

fn verify(path: &std::path::Path, key: &str) -> std::process::Output {
    Command::new(ringi_bin())
        .args(["audit", "verify"])
        .arg(path)
        .args(["--checkpoint-key", key])
        .output()
        .unwrap()
}

#[test]
fn the_coordinators_tls_and_audit_keys_live_in_its_token() {
    let mut cluster = Cluster::start_tls_token_coordinator(2);
    // No key file: the coordinator serves and dials with the token's key.
    let certs = cluster.certs.clone().unwrap();
    assert!(!certs.join("coordinator.key").exists());
    let config = std::fs::read_to_string(cluster.config_path()).unwrap();
    assert!(
        config.contains("[pkcs11]") && !config.contains("coordinator.key"),
        "{config}"
    );
    let group_key = cluster.keygen("k", 2, &["signer-1", "signer-2"]);
    let signature = cluster.sign("k", b"token-held coordinator", &["signer-1", "signer-2"]);
    assert!(frost_verify(
        &group_key,
        b"token-held coordinator",
        &signature
    ));

    // Its audit trail carries checkpoints signed by the token's audit key
    // (one at shutdown at least), named in its first entry.
    cluster.stop_coordinator();
    let trail = cluster.dir.path().join("coordinator/audit.jsonl");
    let log = entries(&trail);
    let started = log
        .iter()
        .find(|e| e.event == "coordinator_started")
        .expect("a coordinator_started entry");
    let key = started.fields["audit_key"].clone();
    assert!(key.starts_with("p256:"), "{key}");
    assert!(log.iter().any(|e| e.event == CHECKPOINT));
    let out = verify(&trail, &key);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&format!("by {key}")), "{said}");
    let coordinator_log =
        std::fs::read_to_string(cluster.dir.path().join("coordinator.log")).unwrap();
    assert!(
        !coordinator_log.contains("development only"),
        "no file-key warning with a token"
    );

    // Someone who can write the file rewrites an entry and re-chains the
    // rest, checkpoints copied as they were: they no longer verify.
    let forged_path = cluster.dir.path().join("forged.jsonl");
    let forged = AuditLog::open(&forged_path).unwrap();
    for (i, e) in log.iter().enumerate() {
        let mut fields = e.fields.clone();
        if i == 0 {
            fields.insert("rewritten".into(), "yes".into());
        }
        let fields: Vec<(&str, String)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        forged.append(e.at, &e.event, &fields).unwrap();
    }
    drop(forged);
    let out = verify(&forged_path, &key);
    assert!(!out.status.success(), "a re-chained trail passed");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("checkpoint"), "{said}");
}

/// The entries of a trail being written, up to the last whole line.
fn live_entries(path: &std::path::Path) -> Vec<Entry> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map_while(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A coordinator that keeps serving signs its trail on its own once 50
/// entries wait (`ringi_policy::audit::CHECKPOINTS`): its timer makes the
/// checkpoint, not the call that appends the 50th entry, and not only the
/// shutdown.
#[test]
fn a_busy_coordinator_checkpoints_its_trail_while_it_serves() {
    let cluster = Cluster::start_tls_token_coordinator(2);
    cluster.keygen("k", 2, &["signer-1", "signer-2"]);
    let trail = cluster.dir.path().join("coordinator/audit.jsonl");
    let key = live_entries(&trail)
        .iter()
        .find(|e| e.event == "coordinator_started")
        .expect("a coordinator_started entry")
        .fields["audit_key"]
        .clone();
    let mut signed = 0;
    while live_entries(&trail).len() <= 60 {
        cluster.sign(
            "k",
            format!("busy {signed}").as_bytes(),
            &["signer-1", "signer-2"],
        );
        signed += 1;
        assert!(signed < 40, "40 signings appended fewer than 60 entries");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let checkpoint = loop {
        let log = live_entries(&trail);
        if let Some(c) = log
            .iter()
            .find(|e| e.event == CHECKPOINT && e.fields["head_seq"].parse::<u64>().unwrap() >= 50)
        {
            break c.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint within 10 s of {} entries",
            log.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(checkpoint.fields["key"], key);
    // The live trail, up to what is written, verifies with its checkpoints.
    let copy = cluster.dir.path().join("live-copy.jsonl");
    let lines: Vec<String> = live_entries(&trail)
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    std::fs::write(&copy, lines.join("\n") + "\n").unwrap();
    let out = verify(&copy, &key);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains(" 0 signed checkpoints"), "{said}");
}
