//! The Python example client (examples/python/wallet_client.py, stubs
//! generated from proto/ by grpcio-tools) against a real cluster: read the
//! public key, submit idempotently, watch while approvers approve with the
//! CLI, and verify the signature it receives.

mod support;

use std::process::{Command, Stdio};

use support::*;

/// The Python with grpcio installed: RINGI_PYTHON, or the virtualenv that
/// softhsm-setup/run-tests.sh creates in target/python.
fn python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("RINGI_PYTHON") {
        return p.into();
    }
    let venv = repo_root().join("target/python/bin/python");
    assert!(
        venv.exists(),
        "no Python with grpcio: run softhsm-setup/run-tests.sh (it creates target/python) or set RINGI_PYTHON"
    );
    venv
}

fn client(cluster: &Cluster) -> Command {
    client_as(cluster, "wallet-service")
}

/// The client with `identity`'s certificate when the cluster runs mutual TLS.
fn client_as(cluster: &Cluster, identity: &str) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("examples/python/wallet_client.py"))
        .args(["--coordinator", &cluster.coordinator_address]);
    for var in [
        "RINGI_TLS_CA",
        "RINGI_TLS_CLIENT_CERT",
        "RINGI_TLS_CLIENT_KEY",
    ] {
        cmd.env_remove(var);
    }
    if let Some(certs) = &cluster.certs {
        cmd.env("RINGI_TLS_CA", certs.join("ca.pem"))
            .env(
                "RINGI_TLS_CLIENT_CERT",
                certs.join(format!("{identity}.pem")),
            )
            .env(
                "RINGI_TLS_CLIENT_KEY",
                certs.join(format!("{identity}.key")),
            );
    }
    cmd
}

fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn python_wallet_submits_watches_and_verifies() {
    submit_watch_verify(&Cluster::start(3));
}

/// The same over mutual TLS, as a wallet service in production talks to the
/// coordinator: the wallet is known by its certificate; a client without a
/// certificate, or with one the coordinator gives no role, is refused.
#[test]
fn python_wallet_over_mutual_tls() {
    let cluster = Cluster::start_tls(3);
    submit_watch_verify(&cluster);

    let mut anonymous = client(&cluster);
    anonymous
        .env_remove("RINGI_TLS_CLIENT_CERT")
        .env_remove("RINGI_TLS_CLIENT_KEY")
        .env_remove("RINGI_TLS_CA")
        .args(["pubkey", "--key-id", "hot-1"]);
    let out = anonymous.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a plaintext client was served");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UNAVAILABLE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut stranger = client_as(&cluster, "stranger");
    stranger.args(["pubkey", "--key-id", "hot-1"]);
    let out = stranger.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PERMISSION_DENIED") || stderr.contains("UNAUTHENTICATED"),
        "{stderr}"
    );
}

fn submit_watch_verify(cluster: &Cluster) {
    let group_key = cluster.keygen("hot-1", 2, &["signer-1", "signer-2", "signer-3"]);

    let mut pubkey = client(cluster);
    pubkey.args(["pubkey", "--key-id", "hot-1"]);
    assert_eq!(run_ok(pubkey), hex::encode(&group_key));

    let message = "5f".repeat(32);
    let submit = || {
        let mut cmd = client(cluster);
        cmd.args([
            "submit",
            "--key-id",
            "hot-1",
            "--message-hex",
            &message,
            "--asset",
            "BTC",
            "--amount",
            "25000",
            "--destination",
            "bc1qpython",
            "--requester",
            "wallet-service",
            "--idempotency-key",
            "py-1",
        ]);
        run_ok(cmd)
    };
    let id = submit();
    assert_eq!(submit(), id, "a retry returns the same request");

    let watcher = client(cluster)
        .args(["watch", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
        assert!(cluster.approve(&id, who, dept).status.success());
    }
    let out = watcher.wait_with_output().unwrap();
    let transitions = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{transitions}");
    for state in ["PENDING_APPROVAL", "APPROVED", "SIGNING", "SIGNED"] {
        assert!(
            transitions.contains(&format!("-> {state}")),
            "{transitions}"
        );
    }
    let signature_hex = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let signature = hex::decode(&signature_hex).unwrap();
    assert!(independent_verify(
        &group_key,
        &hex::decode(&message).unwrap(),
        &signature
    ));
    let verified = Command::new(python())
        .arg(repo_root().join("softhsm-setup/verify_frost_signature.py"))
        .args([&hex::encode(&group_key), &message, &signature_hex])
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}

/// The Python wallet builds a PSBT with embit for a bitcoin-taproot key
/// (from the key's output key, which it checks against the internal key),
/// submits it, and after approval receives the signed transaction, which
/// Bitcoin Core's consensus code accepts; the txid it prints is the one
/// ringi's own derivation of the PSBT gives.
#[test]
fn python_wallet_spends_a_taproot_coin_with_a_psbt() {
    use ringi_psbt::bitcoin::ScriptBuf;
    let cluster = Cluster::start(3);
    let group_key = cluster.keygen_kind(
        "tr",
        "bitcoin-taproot",
        2,
        &["signer-1", "signer-2", "signer-3"],
    );
    let (internal_key, output_key) = ringi_frost::taproot::keys_of_group(&group_key).unwrap();
    let mut shown = client(&cluster);
    shown.args(["pubkey", "--key-id", "tr", "--show", "output-key"]);
    assert_eq!(run_ok(shown), hex::encode(output_key));

    let psbt_file = cluster.dir.path().join("spend.psbt");
    let prevout = format!("{}:0", "ab".repeat(32));
    let payee = listed_address(1);
    let spend = || {
        let mut cmd = client(&cluster);
        cmd.args([
            "spend",
            "--key-id",
            "tr",
            "--prevout",
            &prevout,
            "--prevout-amount",
            "60000",
            "--pay",
            &payee,
            "--pay-amount",
            "25000",
            "--fee",
            "1000",
            "--requester",
            "wallet-service",
            "--idempotency-key",
            "py-psbt-1",
            "--psbt-out",
            psbt_file.to_str().unwrap(),
        ]);
        run_ok(cmd)
    };
    let id = spend();
    assert_eq!(spend(), id, "a retry returns the same request");

    let watcher = client(&cluster)
        .args(["watch", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
        assert!(cluster.approve(&id, who, dept).status.success());
    }
    let out = watcher.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    let tx = hex::decode(lines.next().unwrap().trim()).unwrap();
    let txid = lines.next().unwrap().trim().to_string();

    // ringi's own derivation of what the Python wallet built.
    let own = ringi_psbt::OwnKey {
        internal_key,
        output_key,
        network: ringi_psbt::Network::Regtest,
    };
    let derived = ringi_psbt::derive(&std::fs::read(&psbt_file).unwrap(), &own, false).unwrap();
    assert_eq!(derived.txid, txid);
    assert_eq!(derived.total_paid(), 25_000);
    assert_eq!(derived.fee, 1_000);
    assert_eq!(derived.payments[0].address, payee);

    // Bitcoin Core 26's consensus code, every flag, the spent output given.
    let script: ScriptBuf = own.script();
    ringi_psbt::consensus::verify(&tx, &[(script, 60_000)])
        .expect("the Python wallet's spend is valid under consensus");
}
