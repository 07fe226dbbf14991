//! Every fuzz harness's seed corpus (and every saved crash under
//! `fuzz/regressions/TARGET/`) replayed as an ordinary test: no input
//! panics, and the seeds reach the deepest stage each harness names, so a
//! harness that cannot run, or stops short of the code it names, fails CI.

use std::path::Path;

fn replay(name: &str, deepest: &str) {
    let target = ringi_fuzz::targets()
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no harness named {name}"));
    let mut reached = Vec::new();
    for seed in (target.seeds)() {
        reached.push((target.run)(&seed));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(name);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let bytes = std::fs::read(entry.path()).expect("a readable regression input");
            (target.run)(&bytes);
        }
    }
    assert!(
        reached.contains(&deepest),
        "{name}: no seed reached {deepest}; seeds reached {reached:?}"
    );
}

#[test]
fn policy_toml() {
    replay("policy_toml", "Loaded");
}

#[test]
fn approval_bundle() {
    replay("approval_bundle", "Approved");
    // Every verdict is reachable from the seeds, not only the deepest.
    let reached: Vec<&str> = ringi_fuzz::approval_bundle::seeds()
        .iter()
        .map(|s| ringi_fuzz::approval_bundle::run(s).name())
        .collect();
    for stage in [
        "Approved",
        "Pending",
        "Rejected",
        "ApprovalRefused",
        "RequestRefused",
    ] {
        assert!(
            reached.contains(&stage),
            "no seed reached {stage}: {reached:?}"
        );
    }
}

#[test]
fn audit_log() {
    replay("audit_log", "VerifiedWithCheckpoint");
}

#[test]
fn sealed_share() {
    replay("sealed_share", "RoundTripV2");
    replay("sealed_share", "RoundTripV1");
}

#[test]
fn dkg_envelope() {
    replay("dkg_envelope", "RoundTrip");
    replay("dkg_envelope", "AlteredRefused");
}

#[test]
fn dkg_peer() {
    replay("dkg_peer", "Accepted");
    let reached: Vec<&str> = ringi_fuzz::dkg_peer::seeds()
        .iter()
        .map(|s| ringi_fuzz::dkg_peer::run(s).name())
        .collect();
    for stage in [
        "Accepted",
        "NotAPeer",
        "BadSignature",
        "Untrusted",
        "BadKey",
    ] {
        assert!(
            reached.contains(&stage),
            "no seed reached {stage}: {reached:?}"
        );
    }
}

#[test]
fn signer_round1() {
    replay("signer_round1", "Committed");
    replay("signer_round1", "Unauthorized");
}

#[test]
fn signer_round2() {
    replay("signer_round2", "Signed");
    let reached: Vec<&str> = ringi_fuzz::signer_rounds::round2_seeds()
        .iter()
        .map(|s| ringi_fuzz::signer_rounds::round2(s).name())
        .collect();
    for stage in [
        "Signed",
        "MessageMismatch",
        "MalformedPackage",
        "CapExceeded",
    ] {
        assert!(
            reached.contains(&stage),
            "no seed reached {stage}: {reached:?}"
        );
    }
}

#[test]
fn dkg_round() {
    replay("dkg_round", "Part2Done");
    replay("dkg_round", "Part2Refused");
    replay("dkg_round", "Round1Refused");
}

#[test]
fn request_view() {
    replay("request_view", "Signable");
    let reached: Vec<&str> = ringi_fuzz::request_view::seeds()
        .iter()
        .map(|s| ringi_fuzz::request_view::run(s).name())
        .collect();
    for stage in [
        "Signable",
        "WindowRefused",
        "RequestRefused",
        "StateRefused",
        "ApprovalRefused",
    ] {
        assert!(
            reached.contains(&stage),
            "no seed reached {stage}: {reached:?}"
        );
    }
}

#[test]
fn coordinator_flow() {
    replay("coordinator_flow", "Approved");
    let reached: Vec<&str> = ringi_fuzz::coordinator_flow::seeds()
        .iter()
        .map(|s| ringi_fuzz::coordinator_flow::run(s).name())
        .collect();
    for stage in [
        "Approved",
        "Rejected",
        "DecisionRefused",
        "SubmissionRefused",
    ] {
        assert!(
            reached.contains(&stage),
            "no seed reached {stage}: {reached:?}"
        );
    }
}

#[test]
fn signer_responses() {
    let reached: Vec<&str> = ringi_fuzz::signer_responses::seeds()
        .iter()
        .map(|s| ringi_fuzz::signer_responses::run(s).name())
        .collect();
    for stage in [
        "CommitmentsDecoded",
        "Signed",
        "CheaterNamed",
        "Agreed",
        "Refused",
    ] {
        assert!(
            reached.contains(&stage),
            "no seed reached {stage}: {reached:?}"
        );
    }
    replay("signer_responses", "Agreed");
}
