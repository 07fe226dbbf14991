//! Bad input at every edge gives a precise error and writes nothing.

mod support;

use std::process::Command;

use support::*;

/// `ringi requests submit` expected to fail; returns stderr.
fn submit_err(cluster: &Cluster, key: &str, msg: &str, extra: &[&str]) -> String {
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
        "5",
        "--destination",
        "d",
    ];
    if !extra.contains(&"--requester") {
        args.extend(["--requester", "wallet-service"]);
    }
    args.extend_from_slice(extra);
    cluster.ringi_err(&args)
}

async fn assert_nothing_written(cluster: &Cluster) {
    assert_eq!(cluster.ringi_ok(&["keys", "--output", "json"]), "[]");
    for i in 0..cluster.signers.len() {
        let info = cluster.node_info(i).await;
        assert!(
            info.key_shares.is_empty(),
            "signer {i} holds {:?}",
            info.key_shares
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_keygen_sign_and_pubkey_requests() {
    let cluster = Cluster::start(3);
    let all = "signer-1,signer-2,signer-3";
    for (threshold, signers, expected) in [
        (
            "0",
            all,
            "threshold must be 2..=3 (the number of signers), got 0",
        ),
        ("1", all, "threshold must be 2..=3"),
        (
            "4",
            all,
            "threshold must be 2..=3 (the number of signers), got 4",
        ),
        (
            "2",
            "signer-1,signer-1,signer-2",
            "signer \"signer-1\" is listed twice",
        ),
        (
            "2",
            "signer-1,signer-9",
            "signer \"signer-9\" is not in the coordinator's registry",
        ),
        ("2", "signer-1", "a key needs 2..=255 signers, got 1"),
    ] {
        let err = cluster.ringi_err(&[
            "keygen",
            "--key-id",
            "k",
            "--threshold",
            threshold,
            "--signers",
            signers,
        ]);
        assert!(
            err.contains(expected),
            "threshold {threshold}, signers {signers}: {err}"
        );
        assert!(err.contains("InvalidArgument"), "{err}");
    }
    let err = cluster.ringi_err(&[
        "keygen",
        "--key-id",
        "no spaces",
        "--threshold",
        "2",
        "--signers",
        all,
    ]);
    assert!(
        err.contains("key_id") && err.contains("InvalidArgument"),
        "{err}"
    );
    assert_nothing_written(&cluster).await;

    let err = submit_err(&cluster, "ghost", "00ff", &[]);
    assert!(
        err.contains("key id \"ghost\" does not exist") && err.contains("NotFound"),
        "{err}"
    );
    let err = cluster.ringi_err(&["pubkey", "--key-id", "ghost"]);
    assert!(
        err.contains("does not exist") && err.contains("NotFound"),
        "{err}"
    );
    let err = submit_err(&cluster, "ghost", "zz", &[]);
    assert!(err.contains("--message-hex is not hex"), "{err}");
    assert_nothing_written(&cluster).await;

    // A DKG with one signer down fails as a whole and leaves nothing behind.
    let mut cluster = cluster;
    cluster.signers[2].stop();
    let err = cluster.ringi_err(&[
        "keygen",
        "--key-id",
        "k",
        "--threshold",
        "2",
        "--signers",
        all,
    ]);
    assert!(
        err.contains("signer-3") && err.contains("Unavailable"),
        "{err}"
    );
    cluster.signers[2].start();
    // signer-3 restarted on its old port; nothing was written anywhere.
    assert_nothing_written(&cluster).await;

    // The same key id twice.
    cluster.keygen("k", 2, &["signer-1", "signer-2", "signer-3"]);
    let err = cluster.ringi_err(&[
        "keygen",
        "--key-id",
        "k",
        "--threshold",
        "2",
        "--signers",
        all,
    ]);
    assert!(
        err.contains("exists already") && err.contains("AlreadyExists"),
        "{err}"
    );
    let err = submit_err(&cluster, "k", "00", &["--signers", "signer-1"]);
    assert!(err.contains("exactly 2 signers"), "{err}");
    let err = submit_err(&cluster, "k", "", &[]);
    assert!(err.contains("message must be 1..="), "{err}");
    let err = submit_err(&cluster, "k", "00", &["--requester", ""]);
    assert!(err.contains("requester is empty"), "{err}");
    assert_eq!(
        cluster.ringi_ok(&["requests", "list", "--output", "json"]),
        "[]",
        "nothing was recorded"
    );
}

fn signer_failure(node: &SignerNode, configure: impl FnOnce(&mut Command)) -> String {
    let mut cmd = node.command();
    configure(&mut cmd);
    let out = cmd
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "ringi-signer should have refused to start"
    );
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn signer_refuses_bad_token_configuration_without_leaking_the_pin() {
    let mut cluster = Cluster::start(1);
    cluster.signers[0].stop();
    let node = &cluster.signers[0];
    let real_pin = node.pin();

    let wrong_pin_file = cluster.dir.path().join("wrong-pin");
    std::fs::write(&wrong_pin_file, "not-the-pin-31337\n").unwrap();
    let err = signer_failure(node, |c| {
        c.env("RINGI_PKCS11_PIN_FILE", &wrong_pin_file);
    });
    assert!(
        err.contains("the token refused the PIN (PinIncorrect)"),
        "{err}"
    );
    assert!(
        !err.contains("31337") && !err.contains(&real_pin),
        "PIN leaked: {err}"
    );

    let err = signer_failure(node, |c| {
        c.env("RINGI_PKCS11_PIN", "424242");
    });
    assert!(
        err.contains("refused the PIN") && !err.contains("424242"),
        "{err}"
    );

    let err = signer_failure(node, |c| {
        c.env_remove("RINGI_PKCS11_MODULE");
    });
    assert!(err.contains("no PKCS#11 module configured"), "{err}");

    let err = signer_failure(node, |c| {
        c.env("RINGI_PKCS11_MODULE", "/nonexistent/libpkcs11.so");
    });
    assert!(
        err.contains("PKCS#11 module /nonexistent/libpkcs11.so: file not found"),
        "{err}"
    );

    let err = signer_failure(node, |c| {
        c.env("RINGI_TOKEN_LABEL", "no-such-token");
    });
    assert!(err.contains("no token labelled \"no-such-token\""), "{err}");

    let err = signer_failure(node, |c| {
        c.env_remove("RINGI_PKCS11_PIN_FILE");
    });
    assert!(err.contains("no PIN"), "{err}");

    // No policy: a signer never serves without one; a pinned hash must match.
    let err = signer_failure(node, |c| {
        c.env_remove("RINGI_POLICY_FILE");
    });
    assert!(err.contains("no approval policy"), "{err}");
    let err = signer_failure(node, |c| {
        c.env("RINGI_POLICY_SHA256", "00".repeat(32));
    });
    assert!(err.contains("but this node is pinned to 0000"), "{err}");
    let zero_quorum = cluster.dir.path().join("zero.toml");
    let text = std::fs::read_to_string(&cluster.policy_path)
        .unwrap()
        .replacen(
            "treasury = 1, compliance = 1",
            "treasury = 1, compliance = 0",
            1,
        );
    std::fs::write(&zero_quorum, text).unwrap();
    let err = signer_failure(node, |c| {
        c.env("RINGI_POLICY_FILE", &zero_quorum);
    });
    assert!(
        err.contains("sets a quorum of 0 for department \"compliance\""),
        "{err}"
    );

    // Plaintext outside loopback is refused before anything is opened.
    let out = node
        .command()
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("refusing to listen on 0.0.0.0:0 in plaintext")
    );

    // A token that was never given ringi's keys.
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", node.dir.join("softhsm2.conf"))
        .args([
            "--init-token",
            "--free",
            "--label",
            "blank",
            "--pin",
            "1111",
            "--so-pin",
            "2222",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = signer_failure(node, |c| {
        c.env("RINGI_TOKEN_LABEL", "blank")
            .env("RINGI_PKCS11_PIN", "1111");
    });
    assert!(err.contains("run `ringi-signer init`"), "{err}");
}

#[test]
fn coordinator_refuses_plaintext_to_non_loopback_signers() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[[signers]]\nname = \"far\"\naddress = \"192.0.2.10:7101\"\nidentifier = 1\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(ringi_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("signer \"far\": refusing to connect to 192.0.2.10:7101 in plaintext"),
        "{err}"
    );

    std::fs::write(
        &config,
        format!(
            "listen = \"0.0.0.0:0\"\ndata_dir = \"{}\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(ringi_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to listen on 0.0.0.0:0"));
    // Nothing was created for the refused configurations.
    assert!(!dir.path().join("ringi.sqlite3").exists());
}
