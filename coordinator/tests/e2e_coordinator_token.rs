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

/// The audit key a trail's first entries name.
fn audit_key(path: &std::path::Path) -> String {
    live_entries(path)
        .iter()
        .find_map(|e| e.fields.get("audit_key").cloned())
        .expect("an entry naming the audit key")
}

/// Waits (10 s at most) for a checkpoint over at least 50 entries in the
/// live trail at `path`, signed by `key`; then checks that the trail, as
/// far as it is written, verifies.
fn live_checkpoint(dir: &std::path::Path, path: &std::path::Path, key: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let checkpoint = loop {
        let log = live_entries(path);
        if let Some(c) = log
            .iter()
            .find(|e| e.event == CHECKPOINT && e.fields["head_seq"].parse::<u64>().unwrap() >= 50)
        {
            break c.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: no checkpoint within 10 s of {} entries",
            path.display(),
            log.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(checkpoint.fields["key"], key);
    let copy = dir.join("live-copy.jsonl");
    let lines: Vec<String> = live_entries(path)
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    std::fs::write(&copy, lines.join("\n") + "\n").unwrap();
    let out = verify(&copy, key);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains(" 0 signed checkpoints"), "{said}");
}

/// Nodes that keep serving sign their trails on their own once 50 entries
/// wait (`ringi_policy::audit::CHECKPOINTS`): a timer makes the checkpoint,
/// not the call that appends the 50th entry, and not only the shutdown.
/// The coordinator (its token's key) and a signer, both still running.
#[test]
fn busy_nodes_checkpoint_their_trails_while_they_serve() {
    let cluster = Cluster::start_tls_token_coordinator(2);
    cluster.keygen("k", 2, &["signer-1", "signer-2"]);
    let coordinator = cluster.dir.path().join("coordinator/audit.jsonl");
    let signer = cluster.signers[0].dir.join("data/audit.jsonl");
    let mut signed = 0;
    while live_entries(&coordinator).len() <= 60 || live_entries(&signer).len() <= 60 {
        cluster.sign(
            "k",
            format!("busy {signed}").as_bytes(),
            &["signer-1", "signer-2"],
        );
        signed += 1;
        assert!(signed < 80, "80 signings appended fewer than 60 entries");
    }
    live_checkpoint(cluster.dir.path(), &coordinator, &audit_key(&coordinator));
    live_checkpoint(cluster.dir.path(), &signer, &audit_key(&signer));
}
