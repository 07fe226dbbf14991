//! What `ringi approve` shows and refuses, against a real coordinator and
//! signers: no confirmation from a script without `--yes`; the approver's
//! own policy file must be the request's policy (both hashes named); with
//! it, the amount with its decimals, the times, memo and requester, the
//! tier of the approver's policy and the approval validity checked against
//! it; another open request for the same message named; an approval that
//! expired before the quorum renewed, the request then signed.

mod support;

use std::process::Output;

use support::*;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `ringi approve` as `who` for `department` with `extra` arguments.
fn approve(cluster: &Cluster, id: &str, who: &str, department: &str, extra: &[&str]) -> Output {
    let key = cluster.key_file(who);
    let mut args = vec![
        "approve",
        id,
        "--department",
        department,
        "--key-file",
        &key,
    ];
    args.extend_from_slice(extra);
    cluster.ringi(&args)
}

fn decisions(cluster: &Cluster, id: &str) -> usize {
    let shown: serde_json::Value =
        serde_json::from_str(&cluster.ringi_ok(&["requests", "show", id, "--output", "json"]))
            .unwrap();
    shown["decisions"].as_array().unwrap().len()
}

#[test]
fn approve_shows_what_a_person_needs_and_refuses_what_it_cannot_check() {
    let cluster = Cluster::start(2);
    cluster.keygen("hot-1", 2, &["signer-1", "signer-2"]);
    cluster.keygen("short-appr", 2, &["signer-1", "signer-2"]);
    let policy = cluster.policy_path.to_str().unwrap().to_string();
    // 0.5 BTC: above the 1 000 000 sat tier.
    let id = cluster.submit("hot-1", b"pay once", 50_000_000, "wallet-service", &[]);

    // A script without --yes: refused, nothing recorded.
    let out = approve(&cluster, &id, "alice", "treasury", &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("stdin is not a terminal") && stderr(&out).contains("--yes"),
        "{}",
        stderr(&out)
    );
    assert_eq!(decisions(&cluster, &id), 0);

    // A copy of the policy that differs by one comment: another hash.
    let edited = cluster.dir.path().join("edited-policy.toml");
    let mut text = std::fs::read(&cluster.policy_path).unwrap();
    text.extend_from_slice(b"# edited\n");
    std::fs::write(&edited, &text).unwrap();
    let ours = ringi_policy::policy::Policy::from_bytes(&std::fs::read(&policy).unwrap())
        .unwrap()
        .hash();
    let theirs = ringi_policy::policy::Policy::from_bytes(&text)
        .unwrap()
        .hash();
    let out = approve(
        &cluster,
        &id,
        "alice",
        "treasury",
        &["--yes", "--policy", edited.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "request {id} was made under policy {}, but your policy file hashes to {}",
            hex::encode(ours),
            hex::encode(theirs)
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(decisions(&cluster, &id), 0);

    // The approver's own copy: everything shown, the tier checked, signed.
    let out = approve(
        &cluster,
        &id,
        "alice",
        "treasury",
        &["--yes", "--policy", &policy],
    );
    let shown = stderr(&out);
    assert!(out.status.success(), "{shown}");
    for line in [
        "amount       0.50000000 BTC (50000000 sat)".to_string(),
        "memo         test".into(),
        "requester    wallet-service".into(),
        format!("policy       {} (your copy)", hex::encode(ours)),
        "rule         the tier above 0.01000000 BTC (1000000 sat): compliance 1, security 1, treasury 2".into(),
        "the amount counted is 0.50000000 BTC (50000000 sat)".into(),
        "your policy  still needs compliance 0 of 1, security 0 of 1, treasury 0 of 2".into(),
        "other open   none for the same message".into(),
        "within the approval_ttl_secs of 600 s of your policy".into(),
    ] {
        assert!(shown.contains(&line), "{line:?} not in:\n{shown}");
    }
    let expires = shown
        .lines()
        .find(|l| l.starts_with("expires      "))
        .unwrap_or_default();
    // An hour's request: "(in 1h0m)" or "(in 59m59s)" as the second turns.
    assert!(
        expires.contains("Z (in 1h0m)") || expires.contains("Z (in 59m"),
        "{expires}"
    );
    assert_eq!(decisions(&cluster, &id), 1);

    // A second request for the same message: each names the other; the
    // first's decision is shown with when it was made and until when.
    let twin = cluster.submit("hot-1", b"pay once", 50_000_000, "wallet-service", &[]);
    let out = approve(&cluster, &twin, "carol", "compliance", &["--yes"]);
    let shown = stderr(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("other open   {id} PENDING_APPROVAL, created ")),
        "{shown}"
    );
    assert!(shown.contains(": the same message"), "{shown}");
    assert!(
        shown.contains("not checked against a policy (no --policy)")
            && shown.contains("the tier cannot be checked locally"),
        "{shown}"
    );
    let text = cluster.ringi_ok(&["requests", "show", &id]);
    assert!(
        text.contains("decision     alice (treasury) approve, issued ")
            && text.contains(", valid until ")
            && text.contains(&format!("other open   {twin} PENDING_APPROVAL")),
        "{text}"
    );

    // short-appr approvals are valid 3 s: alice's lapses before the
    // quorum, and her approving again renews it.
    let id = cluster.submit("short-appr", b"renewed", 1000, "wallet-service", &[]);
    assert!(
        approve(&cluster, &id, "alice", "treasury", &["--yes"])
            .status
            .success()
    );
    std::thread::sleep(std::time::Duration::from_millis(3200));
    assert!(
        approve(&cluster, &id, "carol", "compliance", &["--yes"])
            .status
            .success()
    );
    let out = approve(
        &cluster,
        &id,
        "alice",
        "treasury",
        &["--yes", "--policy", &policy],
    );
    let shown = stderr(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("renewing your approval that expired at ")
            && shown.contains("decision     alice (treasury) approve, issued ")
            && shown.contains(", EXPIRED at "),
        "{shown}"
    );
    assert!(!cluster.wait_signed(&id).is_empty());
}
