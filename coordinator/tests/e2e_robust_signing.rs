//! Robust, one-round signing (issue 13) on real processes: preprocessed
//! commitments make an approved request one round; stale ones (a signer
//! restarted) still end in a signature; a signer that sends invalid
//! shares is named, excluded and replaced within the same request.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// How many entries of `event` the JSON-lines audit trail at `path` holds.
fn count(path: &Path, event: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == event)
        .count()
}

fn signer_audit(cluster: &Cluster, i: usize) -> std::path::PathBuf {
    cluster.signers[i].dir.join("data/audit.jsonl")
}

fn coordinator_audit(cluster: &Cluster) -> std::path::PathBuf {
    cluster.dir.path().join("coordinator/audit.jsonl")
}

/// Sum of `event` over every signer's trail.
fn signers_count(cluster: &Cluster, event: &str) -> usize {
    (0..cluster.signers.len())
        .map(|i| count(&signer_audit(cluster, i), event))
        .sum()
}

/// Each signer's count of preprocessed batches.
fn preprocessed(cluster: &Cluster) -> Vec<usize> {
    (0..cluster.signers.len())
        .map(|i| count(&signer_audit(cluster, i), "commitments_preprocessed"))
        .collect()
}

/// Waits until every signer has preprocessed a batch since `before` (its
/// counts then), signing filler requests while waiting: pools are refilled
/// after signings, and a refill that failed is tried again only after a
/// backoff.
fn wait_preprocessed(cluster: &Cluster, key_id: &str, before: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut filler = 0;
    loop {
        let now = preprocessed(cluster);
        if now.iter().zip(before).all(|(n, b)| n > b) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "signers did not preprocess commitments: {before:?} -> {now:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
        if filler % 4 == 3 {
            cluster.sign(key_id, format!("filler {filler}").as_bytes(), &[]);
        }
        filler += 1;
    }
}

const ALL: [&str; 3] = ["signer-1", "signer-2", "signer-3"];

/// After a first signing the coordinator fetches batches of preprocessed
/// commitments; the next approved request is signed with round 2 only: no
/// signer issues a live round-1 commitment for it.
#[test]
fn an_approved_request_is_signed_in_one_round() {
    let cluster = Cluster::start(3);
    let group_key = cluster.keygen("k", 2, &ALL);
    let before = preprocessed(&cluster);
    let first = cluster.sign("k", b"first: two rounds", &[]);
    assert!(frost_verify(&group_key, b"first: two rounds", &first));
    wait_preprocessed(&cluster, "k", &before);
    let commits = signers_count(&cluster, "commit_issued");
    let released = signers_count(&cluster, "share_released");
    for i in 0..3 {
        let message = format!("one round {i}").into_bytes();
        let signature = cluster.sign("k", &message, &[]);
        assert!(frost_verify(&group_key, &message, &signature));
        assert!(independent_verify(&group_key, &message, &signature));
    }
    assert_eq!(
        signers_count(&cluster, "commit_issued"),
        commits,
        "no live round 1 once commitments are pooled"
    );
    assert_eq!(signers_count(&cluster, "share_released"), released + 3 * 2);
}

/// Signers restart and forget their preprocessed nonces while the
/// coordinator still holds their commitments (the health watch that would
/// drop them is turned off): round 2 finds them stale, and the request is
/// still signed, once.
#[test]
fn stale_preprocessed_commitments_still_end_in_one_signature() {
    let mut cluster = Cluster::start(3);
    cluster.stop_coordinator();
    cluster.start_coordinator_with_env(&[("RINGI_TEST_FAULT", "no-signer-watch")]);
    let group_key = cluster.keygen("k", 2, &ALL);
    let before = preprocessed(&cluster);
    cluster.sign("k", b"fill the pools", &[]);
    wait_preprocessed(&cluster, "k", &before);

    // Every signer restarts: whichever two the coordinator picks, both
    // refuse for lost nonces; nobody released, so the same signers sign a
    // package from a live round 1.
    for s in cluster.signers.iter_mut() {
        s.stop();
        s.start();
    }
    // Counted now: the signing below voids the pools, so they are refilled
    // after it (a count taken later could already include that refill).
    let before = preprocessed(&cluster);
    let signature = cluster.sign("k", b"all restarted", &[]);
    assert!(frost_verify(&group_key, b"all restarted", &signature));
    wait_preprocessed(&cluster, "k", &before);
    // Two of three restart: the first package holds at least one stale
    // commitment; a co-signer may have released, so the next package
    // leaves the stale signer out.
    for i in [0, 1] {
        cluster.signers[i].stop();
        cluster.signers[i].start();
    }
    let signature = cluster.sign("k", b"two restarted", &[]);
    assert!(frost_verify(&group_key, b"two restarted", &signature));
    let trail = std::fs::read_to_string(coordinator_audit(&cluster)).unwrap();
    let produced = count(&coordinator_audit(&cluster), "signature_produced");
    let started = count(&coordinator_audit(&cluster), "signing_started");
    assert_eq!(produced, started, "one signature per request: {trail}");
}

/// A signer that answers round 2 with invalid shares: aggregation names it,
/// the coordinator excludes it (audited once, with the reason) and finishes
/// the request with another signer; it is not asked again. To make sure the
/// cheater takes part, the third signer is down when the first request is
/// signed (and comes back once the cheater has been named).
#[test]
fn a_cheating_signer_is_named_and_every_request_signed() {
    let mut cluster = Cluster::start(3);
    let cheater = &mut cluster.signers[2];
    cheater.stop();
    cheater
        .env
        .push(("RINGI_TEST_FAULT".into(), "bad-share".into()));
    cheater.start();
    let group_key = cluster.keygen("k", 2, &ALL);
    let audit = coordinator_audit(&cluster);

    cluster.signers[1].stop();
    let id = cluster.submit("k", b"first payment", 1000, "wallet-service", &[]);
    for (who, dept) in [("alice", "treasury"), ("carol", "compliance")] {
        assert!(cluster.approve(&id, who, dept).status.success());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&audit, "signer_excluded") == 0 {
        assert!(Instant::now() < deadline, "the cheater was not named");
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.signers[1].start();
    let signature = cluster.wait_signed(&id);
    assert!(frost_verify(&group_key, b"first payment", &signature));

    let trail = std::fs::read_to_string(&audit).unwrap();
    let excluded: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "signer_excluded")
        .collect();
    assert_eq!(excluded.len(), 1, "{trail}");
    assert_eq!(excluded[0]["fields"]["signer"], "signer-3");
    assert!(
        excluded[0]["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("invalid signature share"),
        "{}",
        excluded[0]
    );
    assert_eq!(signed_by(&audit, "signer-3"), 0);
    // From now on it is left out: every request signed by the other two.
    let cheats = count(&signer_audit(&cluster, 2), "share_released");
    for i in 0..4 {
        let message = format!("after exclusion {i}").into_bytes();
        let signature = cluster.sign("k", &message, &[]);
        assert!(frost_verify(&group_key, &message, &signature));
    }
    assert_eq!(count(&signer_audit(&cluster, 2), "share_released"), cheats);
    assert_eq!(count(&audit, "signer_excluded"), 1);
    assert_eq!(signed_by(&audit, "signer-1"), 5);
    assert_eq!(signed_by(&audit, "signer-2"), 5);
}

/// A signer that answers 300 ms late is never waited for: the live round 1
/// asks all three and keeps the first two answers, notes how late the
/// third came, and from then on the fast two are tried first.
#[test]
fn a_slow_signer_is_left_out() {
    let mut cluster = Cluster::start(3);
    let slow = &mut cluster.signers[2];
    slow.stop();
    slow.env.push(("RINGI_TEST_SLOW_MS".into(), "300".into()));
    slow.start();
    let group_key = cluster.keygen("k", 2, &ALL);
    let audit = coordinator_audit(&cluster);
    for i in 0..8 {
        let message = format!("payment {i}").into_bytes();
        assert!(frost_verify(
            &group_key,
            &message,
            &cluster.sign("k", &message, &[])
        ));
    }
    assert_eq!(signed_by(&audit, "signer-1"), 8);
    assert_eq!(signed_by(&audit, "signer-2"), 8);
    assert_eq!(signed_by(&audit, "signer-3"), 0);
}

/// How many signatures the coordinator's trail says `signer` took part in.
fn signed_by(audit: &Path, signer: &str) -> usize {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "signature_produced")
        .filter(|e| {
            e["fields"]["signers"]
                .as_str()
                .is_some_and(|s| s.split(',').any(|n| n == signer))
        })
        .count()
}

/// The coordinator keeps a health watch open on every signer; a signer
/// told to stop (SIGTERM) still stops by itself, cleanly, instead of
/// waiting for that stream forever, and the others sign meanwhile.
#[test]
fn a_watched_signer_stops_on_sigterm() {
    let mut cluster = Cluster::start(3);
    let group_key = cluster.keygen("k", 2, &ALL);
    assert!(frost_verify(
        &group_key,
        b"watched",
        &cluster.sign("k", b"watched", &[])
    ));
    let mut child = cluster.signers[2].child.take().unwrap();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "signer-3 did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "a clean stop, not a kill: {status:?}");
    assert!(frost_verify(
        &group_key,
        b"without signer-3",
        &cluster.sign("k", b"without signer-3", &[])
    ));
}
