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

/// Asserts that `name`'s seeds, between them, reach every stage listed.
fn reaches_all(name: &str, stages: &[&str]) {
    let target = ringi_fuzz::targets()
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no harness named {name}"));
    let reached: Vec<&str> = (target.seeds)().iter().map(|s| (target.run)(s)).collect();
    for stage in stages {
        assert!(
            reached.contains(stage),
            "{name}: no seed reached {stage}: {reached:?}"
        );
    }
}

#[test]
fn policy_toml() {
    replay("policy_toml", "Loaded");
}

#[test]
fn key_order_file() {
    replay("key_order_file", "RoundTrips");
}

#[test]
fn approval_bundle() {
    replay("approval_bundle", "Approved");
    // Every verdict is reachable from the seeds, not only the deepest.
    reaches_all(
        "approval_bundle",
        &[
            "Approved",
            "Pending",
            "Rejected",
            "ApprovalRefused",
            "RequestRefused",
        ],
    );
}

#[test]
fn audit_log() {
    replay("audit_log", "VerifiedWithCheckpoint");
}

#[test]
fn key_lifecycle() {
    reaches_all("key_lifecycle", &["Imported", "Planned", "OrderAccepted"]);
}

#[test]
fn sealed_share() {
    replay("sealed_share", "RoundTripV3");
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
    reaches_all(
        "dkg_peer",
        &[
            "Accepted",
            "NotAPeer",
            "BadSignature",
            "Untrusted",
            "BadKey",
        ],
    );
}

#[test]
fn signer_round1() {
    replay("signer_round1", "Committed");
    replay("signer_round1", "Unauthorized");
}

#[test]
fn signer_round2() {
    replay("signer_round2", "Signed");
    reaches_all(
        "signer_round2",
        &[
            "Signed",
            "MessageMismatch",
            "MalformedPackage",
            "CapExceeded",
        ],
    );
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
    reaches_all(
        "request_view",
        &[
            "Signable",
            "WindowRefused",
            "RequestRefused",
            "StateRefused",
            "ApprovalRefused",
        ],
    );
}

#[test]
fn coordinator_flow() {
    replay("coordinator_flow", "Approved");
    reaches_all(
        "coordinator_flow",
        &[
            "Approved",
            "Rejected",
            "DecisionRefused",
            "SubmissionRefused",
        ],
    );
}

#[test]
fn signer_responses() {
    reaches_all(
        "signer_responses",
        &[
            "CommitmentsDecoded",
            "Signed",
            "CheaterNamed",
            "Agreed",
            "Refused",
        ],
    );
    replay("signer_responses", "Agreed");
}

#[test]
fn psbt_derive() {
    replay("psbt_derive", "Finalized");
    reaches_all("psbt_derive", &["Finalized", "Refused", "Undecodable"]);
}

#[test]
fn governance() {
    replay("governance", "Accepted");
    reaches_all("governance", &["Accepted", "Refused"]);
}
