//! Certificate rotation without a restart: a new CA and new certificates
//! (the signers' again from CSRs their tokens sign) replace the files, SIGHUP
//! makes the signers and the coordinator read them, and every new
//! connection uses them: clients with the old CA's certificates are refused,
//! the coordinator dials a restarted signer with its new client certificate,
//! and a DKG runs on the new attestations.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn hangup(pid: u32) {
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_for_log(path: &Path, needle: &str) {
    for _ in 0..100 {
        if std::fs::read_to_string(path).is_ok_and(|log| log.contains(needle)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "{} never said {needle:?}:\n{}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

#[test]
fn certificates_rotate_on_sighup() {
    let mut cluster = Cluster::start_tls(3);
    let group_key = cluster.keygen("hot-1", 2, &["signer-1", "signer-2", "signer-3"]);
    assert!(independent_verify(
        &group_key,
        b"before",
        &cluster.sign("hot-1", b"before", &["signer-1", "signer-2"])
    ));
    let certs = cluster.certs.clone().unwrap();

    // Keep the old operator identity to show the old CA is no longer trusted.
    let old = cluster.dir.path().join("old-certs");
    std::fs::create_dir(&old).unwrap();
    for f in ["ca.pem", "operator.pem", "operator.key"] {
        std::fs::copy(certs.join(f), old.join(f)).unwrap();
    }

    // A new CA; the signers' keys stay in their tokens and sign new CSRs.
    let fresh = cluster.dir.path().join("new-certs");
    dev_certs_from_tokens(&cluster.signers, &fresh, "rotated.csr");
    for entry in std::fs::read_dir(&fresh).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), certs.join(entry.file_name())).unwrap();
    }

    for node in &cluster.signers {
        hangup(node.child.as_ref().unwrap().id());
        wait_for_log(&node.dir.join("log"), "TLS certificates reloaded");
    }
    hangup(cluster.coordinator.as_ref().unwrap().id());
    wait_for_log(
        &cluster.dir.path().join("coordinator.log"),
        "TLS certificates reloaded",
    );

    // New connections: the new operator certificate works (each CLI call is
    // a new connection), the old CA's is refused.
    let keys = cluster.ringi_ok(&["keys"]);
    assert!(keys.contains("hot-1"), "{keys}");
    let out = Command::new(ringi_bin())
        .env("RINGI_COORDINATOR", &cluster.coordinator_address)
        .env("RINGI_TLS_CLIENT_CERT", old.join("operator.pem"))
        .env("RINGI_TLS_CLIENT_KEY", old.join("operator.key"))
        .env("RINGI_TLS_CA", old.join("ca.pem"))
        .args(["keys"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a client certified by the old CA was served after rotation"
    );

    // The signers too: a new connection sees a certificate from the new CA
    // (the client trusts only that one) and the old CA's clients are refused.
    for node in &cluster.signers[..2] {
        let out = cluster.ringi(&[
            "health",
            "--address",
            &node.address,
            "--server-name",
            &node.name,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(ringi_bin())
            .env("RINGI_TLS_CLIENT_CERT", old.join("operator.pem"))
            .env("RINGI_TLS_CLIENT_KEY", old.join("operator.key"))
            .env("RINGI_TLS_CA", old.join("ca.pem"))
            .args([
                "health",
                "--address",
                &node.address,
                "--server-name",
                &node.name,
            ])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{} still serves the old CA's clients",
            node.name
        );
    }

    // signer-3 restarts (it now knows only the new CA): the coordinator must
    // dial it with its reloaded client certificate.
    cluster.signers[2].stop();
    cluster.signers[2].start();
    assert!(independent_verify(
        &group_key,
        b"after",
        &cluster.sign("hot-1", b"after", &["signer-1", "signer-3"])
    ));

    // A DKG after rotation: every signer hands out an attestation under its
    // new certificate, which signer-3 (new CA only) accepts.
    let second = cluster.keygen("k", 2, &["signer-1", "signer-2", "signer-3"]);
    assert!(independent_verify(
        &second,
        b"new key",
        &cluster.sign("k", b"new key", &["signer-2", "signer-3"])
    ));
}

/// A reload that cannot read its files keeps the certificates in use.
#[test]
fn a_failed_reload_keeps_the_current_certificates() {
    let cluster = Cluster::start_tls(1);
    let certs = cluster.certs.clone().unwrap();
    std::fs::write(certs.join("signer-1.pem"), "not a certificate").unwrap();
    std::fs::write(certs.join("coordinator.key"), "not a key").unwrap();
    let node = &cluster.signers[0];
    hangup(node.child.as_ref().unwrap().id());
    wait_for_log(&node.dir.join("log"), "TLS certificate reload failed");
    hangup(cluster.coordinator.as_ref().unwrap().id());
    wait_for_log(
        &cluster.dir.path().join("coordinator.log"),
        "TLS certificate reload failed",
    );
    // Still serving with what it had: new connections to both work.
    let out = cluster.ringi(&[
        "health",
        "--address",
        &node.address,
        "--server-name",
        "signer-1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.ringi_ok(&["keys"]);
}

/// Without TLS there is nothing to reload, and SIGHUP must not stop a server
/// (its default action would).
#[test]
fn plaintext_servers_survive_sighup() {
    let cluster = Cluster::start(2);
    let node = &cluster.signers[0];
    hangup(node.child.as_ref().unwrap().id());
    wait_for_log(&node.dir.join("log"), "no certificates to reload");
    hangup(cluster.coordinator.as_ref().unwrap().id());
    wait_for_log(
        &cluster.dir.path().join("coordinator.log"),
        "no certificates to reload",
    );
    // Both still serve: a DKG needs the signaled signer and the coordinator.
    let group_key = cluster.keygen("hot-1", 2, &["signer-1", "signer-2"]);
    assert_eq!(group_key.len(), 33);
}
