//! One serving process per signer data directory and token (issue 12): a
//! second `ringi-signer serve` on a running node's data directory, or on
//! its token with another data directory, is refused before it writes
//! anything, with a message naming the process to stop; the running node
//! is unaffected; after a `kill -9` the lock is free again.

mod support;

use std::process::Command;

use support::*;

fn second_serve(node: &SignerNode, data_dir: Option<&std::path::Path>) -> std::process::Output {
    let mut cmd: Command = node.command();
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    if let Some(dir) = data_dir {
        cmd.env("RINGI_SIGNER_DATA_DIR", dir);
    }
    cmd.output().unwrap()
}

fn node_started(audit: &std::path::Path) -> usize {
    std::fs::read_to_string(audit)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"node_started\""))
        .count()
}

#[test]
fn a_second_signer_on_one_data_directory_or_token_is_refused_before_it_writes() {
    let mut cluster = Cluster::start(2);
    let audit = cluster.signers[0].dir.join("data/audit.jsonl");
    assert_eq!(node_started(&audit), 1);
    let pid = cluster.signers[0].child.as_ref().unwrap().id();

    let out = second_serve(&cluster.signers[0], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("data directory") && stderr.contains(&format!("pid {pid}")),
        "{stderr}"
    );
    assert!(stderr.contains("stop that process first"), "{stderr}");
    assert_eq!(node_started(&audit), 1, "the refused process wrote nothing");

    // Another data directory, the same token.
    let elsewhere = cluster.dir.path().join("elsewhere");
    let out = second_serve(&cluster.signers[0], Some(&elsewhere));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("token \"signer-1\""), "{stderr}");
    assert!(!elsewhere.join("audit.jsonl").exists());

    // The running node still serves: the cluster signs.
    cluster.keygen("k", 2, &["signer-1", "signer-2"]);
    cluster.sign("k", b"still serving", &["signer-1", "signer-2"]);

    // kill -9 releases the lock: the node restarts on its data directory.
    let mut child = cluster.signers[0].child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    cluster.signers[0].address.clear();
    cluster.signers[0].start();
    assert_eq!(node_started(&audit), 2);
}

/// A second `ringi serve` on the running coordinator's data directory is
/// refused before it writes (its audit log would interleave with the live
/// one's), naming the process to stop.
#[test]
fn a_second_coordinator_on_one_data_directory_is_refused() {
    let cluster = Cluster::start(2);
    let audit = cluster.dir.path().join("coordinator/audit.jsonl");
    let before = std::fs::read_to_string(&audit).unwrap_or_default();
    let pid = cluster.coordinator.as_ref().unwrap().id();
    let out = Command::new(ringi_bin())
        .args(["serve", "--config"])
        .arg(cluster.config_path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("data directory")
            && stderr.contains(&format!("another ringi (pid {pid})"))
            && stderr.contains("stop that process first"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&audit).unwrap_or_default(),
        before,
        "the refused process wrote nothing"
    );
    // The running one still serves.
    cluster.ringi_ok(&["keys"]);
}
