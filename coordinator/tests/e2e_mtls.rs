//! The whole system over mutual TLS: signers' TLS keys in their tokens,
//! certificates from `ringi dev-certs`, the coordinator dialling signers by
//! name, wallets and the CLI identified by their certificates and authorized
//! per role and key id.

mod support;

use std::process::Command;

use support::*;

fn submit_as(
    cluster: &Cluster,
    identity: &str,
    key: &str,
    msg: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "requests",
        "submit",
        "--key-id",
        key,
        "--message-hex",
        msg,
        "--asset",
        "BTC",
        "--amount",
        "1000",
        "--destination",
        "bc1qtls",
    ];
    args.extend_from_slice(extra);
    cluster.ringi_as(identity, &args)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn sign_over_mutual_tls_with_callers_identified_and_authorized() {
    let cluster = Cluster::start_tls(3);
    let group_key = cluster.keygen("hot-1", 2, &["signer-1", "signer-2", "signer-3"]);
    cluster.keygen("cold-1", 2, &["signer-1", "signer-2", "signer-3"]);

    // A wallet submits; its certified identity is the requester.
    let out = submit_as(&cluster, "wallet-service", "hot-1", "aa", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let shown: serde_json::Value =
        serde_json::from_str(&cluster.ringi_ok(&["requests", "show", &id, "--output", "json"]))
            .unwrap();
    assert_eq!(shown["requester"], "wallet-service");
    for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
        assert!(cluster.approve(&id, who, dept).status.success());
    }
    let out = cluster.wait(&id);
    assert!(out.status.success(), "{}", stderr(&out));
    let signature = hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert!(independent_verify(&group_key, &[0xaa], &signature));

    // Claiming another requester than one's certificate: refused.
    let out = submit_as(
        &cluster,
        "wallet-service",
        "hot-1",
        "ab",
        &["--requester", "alice"],
    );
    assert!(
        stderr(&out).contains("is not the caller's identity")
            && stderr(&out).contains("PermissionDenied"),
        "{}",
        stderr(&out)
    );
    // A wallet allowed only hot-1 may not submit for cold-1.
    let out = submit_as(&cluster, "limited-wallet", "cold-1", "ac", &[]);
    assert!(
        stderr(&out).contains("may not submit requests for key \"cold-1\""),
        "{}",
        stderr(&out)
    );
    assert!(
        submit_as(&cluster, "limited-wallet", "hot-1", "ad", &[])
            .status
            .success()
    );
    // A certificate from the CA for an identity not configured: refused.
    let out = submit_as(&cluster, "stranger", "hot-1", "ae", &[]);
    assert!(
        stderr(&out).contains("\"stranger\" is not a configured client"),
        "{}",
        stderr(&out)
    );
    // A wallet may not create keys.
    let out = cluster.ringi_as(
        "wallet-service",
        &[
            "keygen",
            "--key-id",
            "k",
            "--threshold",
            "2",
            "--signers",
            "signer-1,signer-2",
        ],
    );
    assert!(
        stderr(&out).contains("lacks the Admin role"),
        "{}",
        stderr(&out)
    );

    // Plaintext to the coordinator: refused.
    let out = Command::new(ringi_bin())
        .env("RINGI_COORDINATOR", &cluster.coordinator_address)
        .args(["keys"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a plaintext client was served");

    // A client certificate from another CA: refused.
    let other = cluster.dir.path().join("other-ca");
    let made = Command::new(ringi_bin())
        .args([
            "dev-certs",
            "--out",
            other.to_str().unwrap(),
            "--signers",
            "0",
            "--clients",
            "operator",
        ])
        .output()
        .unwrap();
    assert!(made.status.success());
    let certs = cluster.certs.as_ref().unwrap();
    let out = Command::new(ringi_bin())
        .env("RINGI_COORDINATOR", &cluster.coordinator_address)
        .env("RINGI_TLS_CLIENT_CERT", other.join("operator.pem"))
        .env("RINGI_TLS_CLIENT_KEY", other.join("operator.key"))
        .env("RINGI_TLS_CA", certs.join("ca.pem"))
        .args(["keys"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a client from another CA was served");
}

/// A process with another certificate at a signer's address is not used:
/// the coordinator expects each signer's name in its certificate.
#[test]
fn an_impersonated_signer_is_not_used() {
    let mut cluster = Cluster::start_tls(3);
    let group_key = cluster.keygen("hot-1", 2, &["signer-1", "signer-2", "signer-3"]);
    // Replace signer-3 by a second instance of signer-2 (a real node, a
    // valid certificate from the same CA, but named signer-2) at signer-3's
    // address.
    let address = cluster.signers[2].address.clone();
    cluster.signers[2].stop();
    let impostor_data = cluster.dir.path().join("impostor-data");
    // The impostor stands for a copy of signer-2's token on another host:
    // its own temporary directory, where this host's lock on the token
    // (one serving process per token) is not seen.
    let impostor_tmp = cluster.dir.path().join("impostor-tmp");
    std::fs::create_dir_all(&impostor_tmp).unwrap();
    let mut cmd = cluster.signers[1].command();
    cmd.env("RINGI_SIGNER_DATA_DIR", &impostor_data)
        .env("TMPDIR", &impostor_tmp)
        .args(["serve", "--listen", &address]);
    let (mut impostor, _) = spawn_listening(cmd, &cluster.dir.path().join("impostor.log"));

    for round in 0..3 {
        let message = format!("impostor round {round}").into_bytes();
        let signature = cluster.sign("hot-1", &message, &[]);
        assert!(independent_verify(&group_key, &message, &signature));
    }
    // Routed to signer-3 on purpose: the round cannot complete. An
    // unreachable signer is not a refusal, so the request stays SIGNING,
    // retried with backoff until it expires, and the coordinator's log
    // names signer-3 as the one it cannot reach.
    let id = cluster.submit(
        "hot-1",
        b"routed to the impostor",
        1000,
        "wallet-service",
        &["signer-1", "signer-3"],
    );
    for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
        assert!(cluster.approve(&id, who, dept).status.success());
    }
    std::thread::sleep(std::time::Duration::from_secs(4));
    let shown: serde_json::Value =
        serde_json::from_str(&cluster.ringi_ok(&["requests", "show", &id, "--output", "json"]))
            .unwrap();
    assert_eq!(shown["state"], "SIGNING", "{shown}");
    let log = std::fs::read_to_string(cluster.dir.path().join("coordinator.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("signing again later") && l.contains("signer signer-3")),
        "{log}"
    );
    stop(&mut impostor);
    let audit = std::fs::read_to_string(impostor_data.join("audit.jsonl")).unwrap();
    assert!(
        !audit.contains("commit_issued") && !audit.contains("share_released"),
        "the impostor was asked to sign"
    );
    let log =
        std::fs::read_to_string(cluster.dir.path().join("coordinator.log")).unwrap_or_default();
    let _ = log;
}

/// `ringi health` (the Docker health check) asks grpc.health.v1 over mutual
/// TLS: the coordinator and each signer answer SERVING to any client of the
/// CA (here one with no role anywhere), by the name in their certificates;
/// an unknown service, a wrong server
/// name or a closed port exit non-zero.
#[test]
fn health_probe_over_mutual_tls() {
    let cluster = Cluster::start_tls(1);
    let signer = &cluster.signers[0];
    let health = |args: &[&str]| {
        let mut all = vec!["health"];
        all.extend_from_slice(args);
        cluster.ringi_as("stranger", &all)
    };

    let out = health(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "SERVING");
    let out = health(&["--service", "ringi.coordinator.v1.RequestService"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = health(&[
        "--address",
        &signer.address,
        "--server-name",
        "signer-1",
        "--service",
        "ringi.signer.v1.Signer",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "SERVING");

    let out = health(&["--service", "ringi.nothing.v1.Nothing"]);
    assert!(!out.status.success(), "an unknown service reported healthy");
    assert!(stderr(&out).contains("NotFound"), "{}", stderr(&out));

    let out = health(&["--address", &signer.address, "--server-name", "signer-2"]);
    assert!(!out.status.success(), "a wrong server name was accepted");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = health(&["--address", &address]);
    assert!(!out.status.success(), "a closed port reported healthy");
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
}
