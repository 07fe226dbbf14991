//! Policy updates under the policy's own admin quorum (issue 14), on real
//! processes over mutual TLS: too few admins refused, a quorum's tightening
//! in force at once on every signer and on the coordinator without a
//! restart, the request made under the old policy resolved explicitly
//! (EXPIRED naming the new policy: re-approve), a rollback and an early
//! loosening refused, the chain kept across restarts.

mod support;

use std::path::Path;

use support::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `ringi policy approve` by `who`; the signature file's path.
fn approve(cluster: &Cluster, who: &str, new: &Path, current: &Path, effective_at: u64) -> String {
    let key = cluster.key_file(who);
    let out = cluster.ringi(&[
        "policy",
        "approve",
        &new.display().to_string(),
        "--current",
        &current.display().to_string(),
        "--effective-at",
        &effective_at.to_string(),
        "--key-file",
        &key,
    ]);
    assert!(out.status.success(), "approve: {}", stderr(&out));
    let file = cluster.dir.path().join(format!(
        "{who}-{}.sig.json",
        new.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&file, &out.stdout).unwrap();
    file.display().to_string()
}

fn submit(
    cluster: &Cluster,
    new: &Path,
    current: &Path,
    signatures: &[String],
) -> std::process::Output {
    let list = cluster.signer_list();
    let new = new.display().to_string();
    let current = current.display().to_string();
    let mut args = vec![
        "policy",
        "submit",
        &new,
        "--current",
        &current,
        "--signer",
        &list,
    ];
    for s in signatures {
        args.extend(["--signature", s]);
    }
    cluster.ringi(&args)
}

#[test]
fn an_admin_quorum_rolls_every_signer_forward_and_nothing_else_does() {
    let mut cluster = Cluster::start_tls(3);
    let all = ["signer-1", "signer-2", "signer-3"];
    let group_key = cluster.keygen("hot-1", 2, &all);
    let list = cluster.signer_list();
    let now = ringi::requests::now();

    // v1: hot-1 may pay only the destination the tests use (a tightening).
    let v0_path = cluster.dir.path().join("policy-v0.toml");
    let v0 = std::fs::read_to_string(&cluster.policy_path).unwrap();
    std::fs::write(&v0_path, &v0).unwrap();
    let v1 = format!(
        "{}\n[keys.hot-1.destinations]\nallowed = [\"bc1qdestination\"]\n",
        v0.replacen("version = 1\n", "version = 1\nsequence = 1\n", 1)
    );
    let v1_path = cluster.dir.path().join("policy-v1.toml");
    std::fs::write(&v1_path, &v1).unwrap();
    let checked = cluster.ringi(&[
        "policy",
        "check",
        &v1_path.display().to_string(),
        "--current",
        &v0_path.display().to_string(),
    ]);
    assert!(checked.status.success(), "{}", stderr(&checked));
    assert!(
        stderr(&checked).contains("tightening"),
        "{}",
        stderr(&checked)
    );
    let v1_hash = String::from_utf8(checked.stdout)
        .unwrap()
        .trim()
        .to_string();

    // A request made under v0, half approved.
    let before = cluster.submit("hot-1", b"under v0", 1000, "wallet-service", &[]);
    assert!(
        cluster
            .approve(&before, "alice", "treasury")
            .status
            .success()
    );

    // One admin is not a quorum; a non-admin cannot even sign.
    let by_alice = approve(&cluster, "alice", &v1_path, &v0_path, now);
    let out = submit(
        &cluster,
        &v1_path,
        &v0_path,
        std::slice::from_ref(&by_alice),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("admin quorum not met: 1 of 2 distinct admins signed"),
        "{}",
        stderr(&out)
    );
    let bob = cluster.key_file("bob");
    let err = cluster.ringi_err(&[
        "policy",
        "approve",
        &v1_path.display().to_string(),
        "--current",
        &v0_path.display().to_string(),
        "--key-file",
        &bob,
    ]);
    assert!(err.contains("not an admin of the current policy"), "{err}");

    // Two admins: every signer and the coordinator roll forward, at once,
    // without a restart.
    let by_carol = approve(&cluster, "carol", &v1_path, &v0_path, now);
    let out = submit(
        &cluster,
        &v1_path,
        &v0_path,
        &[by_alice.clone(), by_carol.clone()],
    );
    assert!(out.status.success(), "submit: {}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("in force at 3 of 3 signers"), "{said}");
    assert!(
        said.contains("coordinator: accepted sequence 1 (tightening)"),
        "{said}"
    );
    let status = cluster.ringi_ok(&["policy", "status", "--signer", &list]);
    assert!(
        status.contains(&format!("coordinator: policy {v1_hash} sequence 1")),
        "{status}"
    );
    for s in all {
        assert!(
            status.contains(&format!("{s}: policy {v1_hash} sequence 1")),
            "{status}"
        );
    }

    // The request made under v0 is resolved explicitly: v1 re-approves
    // pending requests (the default), so it ends EXPIRED naming v1, never
    // signed under rules no longer in force, never left hanging.
    let out = cluster.wait(&before);
    assert!(
        !out.status.success(),
        "a request under the replaced policy was signed"
    );
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(text.contains("EXPIRED"), "{text}");
    assert!(
        text.contains(&format!("replaced by policy {v1_hash} (sequence 1)")),
        "{text}"
    );
    assert!(
        !cluster
            .approve(&before, "carol", "compliance")
            .status
            .success(),
        "approved a request of the replaced policy"
    );

    // A rollback to v0, even signed by the quorum, is refused.
    let v0_again = cluster.dir.path().join("policy-v0-again.toml");
    std::fs::write(&v0_again, &v0).unwrap();
    let back = [
        approve(&cluster, "alice", &v0_again, &v1_path, now),
        approve(&cluster, "erin", &v0_again, &v1_path, now),
    ];
    let out = submit(&cluster, &v0_again, &v1_path, &back);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("a rollback"), "{}", stderr(&out));

    // A loosening (the allowlist removed again) cannot take effect before
    // the delay: an hour after its quorum.
    let v2 = v0.replacen("version = 1\n", "version = 1\nsequence = 2\n", 1);
    let v2_path = cluster.dir.path().join("policy-v2.toml");
    std::fs::write(&v2_path, &v2).unwrap();
    let early = [
        approve(&cluster, "alice", &v2_path, &v1_path, now),
        approve(&cluster, "carol", &v2_path, &v1_path, now),
    ];
    let out = submit(&cluster, &v2_path, &v1_path, &early);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("a loosening update"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("the allowlist grows or is removed"),
        "{}",
        stderr(&out)
    );

    // The chain survives a signer restart (it replays from its pin).
    cluster.signers[2].stop();
    cluster.signers[2].start();
    let status = cluster.ringi_ok(&["policy", "status", "--signer", &list]);
    assert!(
        status.contains(&format!("signer-3: policy {v1_hash} sequence 1")),
        "{status}"
    );

    // New requests are made under v1 and signed, also after the
    // coordinator restarts (it replays its accepted updates).
    cluster.stop_coordinator();
    cluster.start_coordinator();
    let status = cluster.ringi_ok(&["policy", "status", "--signer", &list]);
    assert!(
        status.contains(&format!("coordinator: policy {v1_hash} sequence 1")),
        "{status}"
    );
    let id = cluster.submit("hot-1", b"under v1", 1000, "wallet-service", &[]);
    assert!(cluster.approve(&id, "alice", "treasury").status.success());
    assert!(cluster.approve(&id, "carol", "compliance").status.success());
    let signature = cluster.wait_signed(&id);
    assert!(frost_verify(&group_key, b"under v1", &signature));
    // And a signer restarted with v1 as its pin (the operator updated the
    // file) keeps v1.
    std::fs::write(&cluster.policy_path, &v1).unwrap();
    cluster.signers[0].stop();
    cluster.signers[0].start();
    let status = cluster.ringi_ok(&["policy", "status", "--signer", &list]);
    assert!(
        status.contains(&format!("signer-1: policy {v1_hash} sequence 1")),
        "{status}"
    );
}
