//! `ringi bench-load` (cli/src/bench_load.rs) against a real cluster over
//! mutual TLS: both modes run to the end with every request SIGNED and its
//! signature verified, which the coordinator's own listing confirms; a run
//! whose approvals are refused fails. The Python load client
//! (examples/python/load_client.py) does the same flow, its approval
//! statements encoded and signed in Python and verified by the coordinator.
//! Figures are not asserted.

mod support;

use std::process::Command;

use support::*;

/// `ringi bench-load` as `operator` (the approver), submitting as
/// `wallet-service`, watching the cluster's processes.
fn bench_load(cluster: &Cluster, extra: &[&str]) -> std::process::Output {
    let certs = cluster.certs.as_ref().expect("a TLS cluster");
    let coordinator = cluster.coordinator.as_ref().unwrap().id().to_string();
    let signers: Vec<String> = cluster
        .signers
        .iter()
        .map(|s| format!("{}={}", s.name, s.child.as_ref().unwrap().id()))
        .collect();
    let wallet_cert = certs.join("wallet-service.pem").display().to_string();
    let wallet_key = certs.join("wallet-service.key").display().to_string();
    let mut args = vec![
        "bench-load",
        "--key-id",
        "busy",
        "--wallet-tls-cert",
        &wallet_cert,
        "--wallet-tls-key",
        &wallet_key,
        "--coordinator-pid",
        &coordinator,
        "--timeout-secs",
        "120",
    ];
    for s in &signers {
        args.extend(["--signer-pid", s.as_str()]);
    }
    args.extend_from_slice(extra);
    cluster.ringi(&args)
}

/// How many requests the coordinator lists as SIGNED; each must have been
/// submitted by the wallet identity (the approvals go as `operator`).
fn signed_requests(cluster: &Cluster) -> usize {
    let listed: serde_json::Value = serde_json::from_str(
        &cluster.ringi_ok(&["requests", "list", "--state", "SIGNED", "--output", "json"]),
    )
    .unwrap();
    let listed = listed.as_array().unwrap();
    for r in listed {
        assert_eq!(r["requester"], "wallet-service", "{r}");
    }
    listed.len()
}

#[test]
fn both_modes_sign_and_verify_every_request() {
    let cluster = Cluster::start_tls(3);
    cluster.keygen("busy", 2, &["signer-1", "signer-2", "signer-3"]);
    let treasury = format!("treasury={}", cluster.key_file("alice"));
    let compliance = format!("compliance={}", cluster.key_file("carol"));
    let approvers = [
        "--approver",
        treasury.as_str(),
        "--approver",
        compliance.as_str(),
    ];

    // N = 12, C = 4: enough for requests to overlap in every phase.
    for (mode, total) in [("flow", 12), ("signing", 24)] {
        let mut args = vec!["--mode", mode, "-n", "12", "-c", "4"];
        args.extend_from_slice(&approvers);
        let out = bench_load(&cluster, &args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "bench-load {mode}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(
                "signed 12 of 12, signature verified 12; failed 0, rejected 0, expired 0, errors 0, timed out 0"
            ),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!(
                "mode {mode}, key \"busy\" (2-of-3), 12 requests, 4 in flight"
            )),
            "{stdout}"
        );
        // Latencies of all twelve, approved -> signed in both modes and
        // submit -> signed in flow.
        let rows: Vec<&str> = stdout
            .lines()
            .filter(|l| l.contains(" -> signed "))
            .collect();
        assert_eq!(rows.len(), if mode == "flow" { 2 } else { 1 }, "{stdout}");
        for row in rows {
            assert_eq!(row.split_whitespace().nth(3), Some("12"), "{row}");
        }
        // Every watched process is reported, with its CPU time and peak RSS
        // read, and the totals are there.
        for name in [
            "coordinator",
            "signer-1",
            "signer-2",
            "signer-3",
            "bench-load client",
            "signers total",
            "server total",
        ] {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no line for {name}: {stdout}"));
            assert!(!line.contains('?'), "{line}");
        }
        // The coordinator agrees: this run's requests are all SIGNED.
        assert_eq!(signed_requests(&cluster), total, "after {mode}");
    }
}

/// An approver the policy does not know: every Decide is refused, each
/// request counted as an error, and the run fails.
#[test]
fn refused_approvals_fail_the_run() {
    let cluster = Cluster::start_tls(3);
    cluster.keygen("busy", 2, &["signer-1", "signer-2", "signer-3"]);
    let stranger = cluster.dir.path().join("stranger.pem");
    ringi_cli::approver::generate_key_file(&stranger).unwrap();
    let treasury = format!("treasury={}", stranger.display());
    let compliance = format!("compliance={}", cluster.key_file("carol"));
    let out = bench_load(
        &cluster,
        &[
            "--mode",
            "flow",
            "-n",
            "4",
            "-c",
            "2",
            "--approver",
            &treasury,
            "--approver",
            &compliance,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("signed 0 of 4"), "{stdout}");
    assert!(stdout.contains("errors 4"), "{stdout}");
    assert!(stdout.contains("PermissionDenied"), "{stdout}");
    assert!(
        stderr.contains("4 of 4 requests did not end SIGNED"),
        "{stderr}"
    );
}

/// The Python with grpcio and cryptography installed: RINGI_PYTHON, or the
/// virtualenv that softhsm-setup/run-tests.sh creates in target/python.
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

/// The independent Python client: it recomputes each request's id and
/// content digest, signs both statements with `cryptography`, and the
/// coordinator accepts them and signs every request.
#[test]
fn python_load_client_signs_every_request() {
    let cluster = Cluster::start_tls(3);
    cluster.keygen("busy", 2, &["signer-1", "signer-2", "signer-3"]);
    let certs = cluster.certs.as_ref().unwrap();
    let out = Command::new(python())
        .arg(repo_root().join("examples/python/load_client.py"))
        .args(["--coordinator", &cluster.coordinator_address])
        .arg("--tls-ca")
        .arg(certs.join("ca.pem"))
        .arg("--tls-client-cert")
        .arg(certs.join("operator.pem"))
        .arg("--tls-client-key")
        .arg(certs.join("operator.key"))
        .arg("--wallet-tls-cert")
        .arg(certs.join("wallet-service.pem"))
        .arg("--wallet-tls-key")
        .arg(certs.join("wallet-service.key"))
        .args([
            "--key-id",
            "busy",
            "-n",
            "12",
            "-c",
            "4",
            "--timeout",
            "120",
        ])
        .args([
            "--approver",
            &format!("treasury={}", cluster.key_file("alice")),
        ])
        .args([
            "--approver",
            &format!("compliance={}", cluster.key_file("carol")),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "load_client.py: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "signed 12 of 12, signature verified 12; failed 0, rejected 0, expired 0, errors 0, timed out 0"
        ),
        "{stdout}"
    );
    assert_eq!(signed_requests(&cluster), 12);
}
