//! Decisions the coordinator cannot drop (issue 14), on real processes over
//! mutual TLS: a rejection sent to the signers directly stops a request a
//! coordinator approved without it; one officer freezes a key at every
//! signer, one person cannot lift it, a quorum can; both survive a signer's
//! restart.

mod support;

use support::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn reject(cluster: &Cluster, id: &str, who: &str, department: &str, direct: bool) -> String {
    let key = cluster.key_file(who);
    let list = cluster.signer_list();
    let mut args = vec![
        "reject",
        id,
        "--department",
        department,
        "--reason",
        "unknown beneficiary",
        "--key-file",
        &key,
        "--yes",
    ];
    if direct {
        args.extend(["--signer", &list]);
    }
    let out = cluster.ringi(&args);
    assert!(out.status.success(), "reject: {}", stderr(&out));
    stderr(&out)
}

fn approve_both(cluster: &Cluster, id: &str) {
    for (who, dept) in [("alice", "treasury"), ("dave", "compliance")] {
        let out = cluster.approve(id, who, dept);
        assert!(out.status.success(), "approve: {}", stderr(&out));
    }
}

#[test]
fn a_rejection_the_coordinator_drops_still_stops_the_signers() {
    let mut cluster = Cluster::start_tls(3);
    // The insider: a coordinator that acknowledges rejections and drops them.
    cluster.stop_coordinator();
    cluster.start_coordinator_with_env(&[("RINGI_TEST_FAULT", "drop-rejections")]);
    let all = ["signer-1", "signer-2", "signer-3"];
    let group_key = cluster.keygen("hot-1", 2, &all);

    // Without the direct line the insider wins: carol's rejection is
    // dropped, two other approvers make the quorum, the request is signed.
    let control = cluster.submit("hot-1", b"control", 1000, "wallet-service", &[]);
    reject(&cluster, &control, "carol", "compliance", false);
    approve_both(&cluster, &control);
    let signature = cluster.wait_signed(&control);
    assert!(frost_verify(&group_key, b"control", &signature));

    // With it, the same rejection also reaches every signer.
    let id = cluster.submit("hot-1", b"vetoed", 1000, "wallet-service", &[]);
    let said = reject(&cluster, &id, "carol", "compliance", true);
    assert!(
        said.contains("rejection in force at 3 of 3 signers"),
        "{said}"
    );
    approve_both(&cluster, &id);
    let out = cluster.wait(&id);
    assert!(!out.status.success(), "a vetoed request was signed");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(text.contains("FAILED"), "{text}");
    assert!(
        text.contains("rejected by carol (compliance), sent to this signer directly"),
        "{text}"
    );

    // Every signer holds the veto, durably: after a restart too.
    let list = cluster.signer_list();
    cluster.signers[0].stop();
    cluster.signers[0].start();
    let holds = cluster.ringi_ok(&["holds", "--signer", &list]);
    for s in all {
        assert!(
            holds.contains(&format!("{s}: 1 vetoed request(s)")),
            "{holds}"
        );
    }
    // An administrator's retry cannot get around it.
    let out = cluster.ringi(&["requests", "retry", &id]);
    if out.status.success() {
        let out = cluster.wait(&id);
        assert!(
            !out.status.success(),
            "a vetoed request was signed on retry"
        );
    }

    // A coordinator showing the request as APPROVED (here: waiting out a
    // 30 s time rule) cannot keep a rejection from the signers.
    cluster.keygen("timed", 2, &all);
    let waiting = cluster.submit("timed", b"waiting", 2_000_000, "wallet-service", &[]);
    approve_both(&cluster, &waiting);
    let said = reject(&cluster, &waiting, "carol", "compliance", true);
    assert!(
        said.contains("the rejection goes to the signers only"),
        "{said}"
    );
    assert!(
        said.contains("rejection in force at 3 of 3 signers"),
        "{said}"
    );
    let holds = cluster.ringi_ok(&["holds", "--signer", &list]);
    for s in all {
        assert!(
            holds.contains(&format!("{s}: 2 vetoed request(s)")),
            "{holds}"
        );
    }
}

#[test]
fn one_officer_freezes_a_key_only_a_quorum_lifts_it() {
    let mut cluster = Cluster::start_tls(3);
    let all = ["signer-1", "signer-2", "signer-3"];
    let group_key = cluster.keygen("hot-1", 2, &all);
    let list = cluster.signer_list();

    // Only a freeze officer of the policy may freeze.
    let alice = cluster.key_file("alice");
    let err = cluster.ringi_err(&[
        "freeze",
        "--key-id",
        "hot-1",
        "--reason",
        "x",
        "--key-file",
        &alice,
        "--signer",
        &list,
    ]);
    assert!(
        err.contains("alice, who is not one of the policy's freeze officers"),
        "{err}"
    );
    assert!(err.contains("in force at 0 of 3"), "{err}");

    // erin freezes hot-1 at every signer.
    let erin = cluster.key_file("erin");
    let out = cluster.ringi(&[
        "freeze",
        "--key-id",
        "hot-1",
        "--reason",
        "incident 42",
        "--key-file",
        &erin,
        "--signer",
        &list,
    ]);
    assert!(out.status.success(), "freeze: {}", stderr(&out));
    assert!(stderr(&out).contains("in force at 3 of 3 signers"));
    let freeze_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(freeze_id.len(), 64, "{freeze_id}");

    // A request approved while frozen is refused by the signers.
    let id = cluster.submit("hot-1", b"frozen", 1000, "wallet-service", &[]);
    approve_both(&cluster, &id);
    let out = cluster.wait(&id);
    assert!(
        !out.status.success(),
        "a request of a frozen key was signed"
    );
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        text.contains("key:hot-1 is frozen by erin: incident 42"),
        "{text}"
    );

    // The freeze survives a signer's restart.
    cluster.signers[1].stop();
    cluster.signers[1].start();
    let holds = cluster.ringi_ok(&["holds", "--signer", &list]);
    for s in all {
        assert!(
            holds.contains(&format!("{s}: FROZEN key:hot-1 by erin")),
            "{holds}"
        );
    }
    assert!(holds.contains(&freeze_id), "{holds}");

    // One person cannot lift it.
    let sign = |who: &str| {
        let file = cluster.dir.path().join(format!("{who}.unfreeze.json"));
        let k = cluster.key_file(who);
        let text = cluster.ringi_ok(&[
            "unfreeze",
            "sign",
            "--key-id",
            "hot-1",
            "--freeze-id",
            &freeze_id,
            "--key-file",
            &k,
        ]);
        std::fs::write(&file, text).unwrap();
        file.display().to_string()
    };
    let by_alice = sign("alice");
    let err = cluster.ringi_err(&[
        "unfreeze", "submit", "--key-id", "hot-1", &by_alice, "--signer", &list,
    ]);
    assert!(
        err.contains("unfreeze quorum not met: compliance 0 of 1"),
        "{err}"
    );
    let holds = cluster.ringi_ok(&["holds", "--signer", &list]);
    assert_eq!(holds.matches("FROZEN key:hot-1").count(), 3, "{holds}");

    // A treasurer and a compliance officer together lift it.
    let by_carol = sign("carol");
    let out = cluster.ringi(&[
        "unfreeze", "submit", "--key-id", "hot-1", &by_alice, &by_carol, "--signer", &list,
    ]);
    assert!(out.status.success(), "unfreeze: {}", stderr(&out));
    assert!(stderr(&out).contains("in force at 3 of 3 signers"));
    let holds = cluster.ringi_ok(&["holds", "--signer", &list]);
    assert!(!holds.contains("FROZEN"), "{holds}");
    // The same statements cannot lift it twice: nothing is frozen.
    let err = cluster.ringi_err(&[
        "unfreeze", "submit", "--key-id", "hot-1", &by_alice, &by_carol, "--signer", &list,
    ]);
    assert!(err.contains("key:hot-1 is not frozen"), "{err}");

    // And the key signs again.
    let id = cluster.submit("hot-1", b"thawed", 1000, "wallet-service", &[]);
    approve_both(&cluster, &id);
    let signature = cluster.wait_signed(&id);
    assert!(frost_verify(&group_key, b"thawed", &signature));

    // A global freeze stops every key, and is lifted the same way.
    let out = cluster.ringi(&[
        "freeze",
        "--all",
        "--reason",
        "incident 43",
        "--key-file",
        &erin,
        "--signer",
        &list,
    ]);
    assert!(out.status.success(), "freeze --all: {}", stderr(&out));
    let all_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let id = cluster.submit("hot-1", b"all frozen", 1000, "wallet-service", &[]);
    approve_both(&cluster, &id);
    let out = cluster.wait(&id);
    assert!(
        !out.status.success(),
        "a request was signed during a global freeze"
    );
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        text.contains("all is frozen by erin: incident 43"),
        "{text}"
    );
    let lift = |who: &str| {
        let file = cluster.dir.path().join(format!("{who}.unfreeze-all.json"));
        let k = cluster.key_file(who);
        let text = cluster.ringi_ok(&[
            "unfreeze",
            "sign",
            "--all",
            "--freeze-id",
            &all_id,
            "--key-file",
            &k,
        ]);
        std::fs::write(&file, text).unwrap();
        file.display().to_string()
    };
    let (a, c) = (lift("alice"), lift("carol"));
    let out = cluster.ringi(&["unfreeze", "submit", "--all", &a, &c, "--signer", &list]);
    assert!(out.status.success(), "unfreeze --all: {}", stderr(&out));
    let id = cluster.submit("hot-1", b"thawed again", 1000, "wallet-service", &[]);
    approve_both(&cluster, &id);
    let signature = cluster.wait_signed(&id);
    assert!(frost_verify(&group_key, b"thawed again", &signature));
}
