//! The end checks. Each one compares what the driver recorded with what the
//! coordinator shows once the run is over (its API: one `GetSigningRequest`
//! per request; its store: the `ListSigningRequests` listing of the key) and
//! with the audit logs, and names every request that breaks it.

use std::collections::{BTreeMap, BTreeSet};

use ringi::request_state::State;
use ringi_cli::view::RequestView;
use ringi_frost::frost_core as frost;

use crate::faults::Fault;
use crate::flow::{Outcome, Record};

/// The length of R, the group commitment, at the head of an RFC 9591
/// secp256k1 signature (SEC1 compressed point), before z.
const R_LEN: usize = 33;

/// One check's verdict.
pub struct Check {
    pub label: &'static str,
    pub title: &'static str,
    pub summary: String,
    /// One line per offending request (or log), naming it.
    pub failures: Vec<String>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// What the coordinator shows at the end, and the logs.
pub struct Evidence<'a> {
    pub records: &'a [Record],
    /// The key's group public key, SEC1 compressed.
    pub group_key: &'a [u8],
    /// `GetSigningRequest` of every request id the driver got, or the error.
    pub api: &'a BTreeMap<[u8; 32], Result<RequestView, String>>,
    /// Every request of the key in the store's listing, and its state.
    pub listing: &'a BTreeMap<[u8; 32], String>,
    pub coordinator_audit: &'a [String],
    /// Per signer name, its audit log's lines.
    pub signer_audits: &'a [(String, Vec<String>)],
    pub faults: &'a [Fault],
    /// Per process name to kill, the kills it should have had.
    pub kills_expected: &'a [(String, usize)],
}

pub fn all(e: &Evidence<'_>) -> Vec<Check> {
    vec![
        terminal_and_signed(e),
        signatures_verify(e),
        no_repeated_r(e),
        approvals_kept(e),
        audit_chains(e),
        audit_agrees(e),
        decisions_audited(e),
        shares_released_under_the_rule(e),
        faults_done(e),
    ]
}

fn short(id: &[u8; 32]) -> String {
    hex::encode(id)
}

/// (a) Every request the driver made ended SIGNED, and the driver's watch,
/// the API and the store's listing agree on it; nothing else is listed.
fn terminal_and_signed(e: &Evidence<'_>) -> Check {
    let mut failures = Vec::new();
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let (mut lost, mut unsubmitted) = (0, 0);
    for r in e.records {
        let Some(id) = r.id else {
            unsubmitted += 1;
            let why = match &r.outcome {
                Outcome::NotSubmitted(why) => why.as_str(),
                _ => "",
            };
            failures.push(format!("request #{}: never submitted: {why}", r.index));
            continue;
        };
        let api = match e.api.get(&id) {
            Some(Ok(v)) => v,
            Some(Err(why)) => {
                lost += 1;
                failures.push(format!("{}: LOST: the API answers {why}", short(&id)));
                continue;
            }
            None => {
                failures.push(format!("{}: never asked of the API", short(&id)));
                continue;
            }
        };
        *states.entry(api.state.to_string()).or_default() += 1;
        if api.state != State::Signed {
            let stuck = if api.state.is_terminal() {
                ""
            } else {
                " (stuck)"
            };
            // A retried Decide is the likeliest cause of a request stuck
            // APPROVED: name it.
            let retried: Vec<&str> = r
                .approvals
                .iter()
                .flat_map(|a| a.retried_after.iter().map(String::as_str))
                .collect();
            let hint = match retried.as_slice() {
                [] => String::new(),
                some => format!(" [approval sent again after: {}]", some.join("; ")),
            };
            failures.push(format!(
                "{}: {}{stuck} {}{hint}",
                short(&id),
                api.state,
                api.state_reason
            ));
        }
        match &r.outcome {
            Outcome::Terminal(seen) if seen.state != api.state => failures.push(format!(
                "{}: the watch ended {}, the API now says {}",
                short(&id),
                seen.state,
                api.state
            )),
            Outcome::Terminal(seen) if seen.signature != api.signature => failures.push(format!(
                "{}: the watch and the API show different signatures",
                short(&id)
            )),
            Outcome::Terminal(_) => {}
            Outcome::TimedOut(last) => failures.push(format!(
                "{}: not terminal within the request timeout (last seen {}); the API now says {}",
                short(&id),
                last.map_or("nothing".into(), |s| s.to_string()),
                api.state
            )),
            Outcome::Lost => {
                failures.push(format!("{}: LOST: a watch answered NOT_FOUND", short(&id)))
            }
            Outcome::Error(why) | Outcome::NotSubmitted(why) => {
                failures.push(format!("{}: {why}", short(&id)))
            }
        }
        match e.listing.get(&id) {
            None => failures.push(format!("{}: missing from the store's listing", short(&id))),
            Some(listed) if *listed != api.state.as_str() => failures.push(format!(
                "{}: listed {listed}, the API says {}",
                short(&id),
                api.state
            )),
            Some(_) => {}
        }
    }
    let known: BTreeSet<[u8; 32]> = e.records.iter().filter_map(|r| r.id).collect();
    for id in e.listing.keys().filter(|id| !known.contains(*id)) {
        failures.push(format!(
            "{}: listed, but no submission of the driver returned it (a duplicate?)",
            short(id)
        ));
    }
    let stuck: usize = e
        .api
        .values()
        .filter(|v| matches!(v, Ok(v) if !v.state.is_terminal()))
        .count();
    let states: Vec<String> = states.iter().map(|(s, n)| format!("{s} {n}")).collect();
    Check {
        label: "a",
        title: "every request ends SIGNED (driver, API and store agree)",
        summary: format!(
            "{} requests: {}; {stuck} stuck, {lost} lost, {unsubmitted} never submitted; the store lists {}",
            e.records.len(),
            if states.is_empty() {
                "none answered".to_string()
            } else {
                states.join(", ")
            },
            e.listing.len()
        ),
        failures,
    }
}

/// Whether `signature` (RFC 9591, 65 bytes) is valid for `message` under
/// `group_key` (SEC1 compressed), by FROST's own verification.
pub fn verify_signature(group_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), String> {
    type C = ringi_frost::Secp256k1;
    let key =
        frost::VerifyingKey::<C>::deserialize(group_key).map_err(|e| format!("group key: {e}"))?;
    let signature =
        frost::Signature::<C>::deserialize(signature).map_err(|e| format!("signature: {e}"))?;
    key.verify(message, &signature)
        .map_err(|e| format!("does not verify: {e}"))
}

/// (b) Every signature verifies against the group key, for the message the
/// driver asked to sign.
fn signatures_verify(e: &Evidence<'_>) -> Check {
    let mut failures = Vec::new();
    let mut verified = 0;
    for r in e.records {
        let Some(Some(Ok(view))) = r.id.map(|id| e.api.get(&id)) else {
            continue;
        };
        let Some(signature) = &view.signature else {
            continue;
        };
        let id = short(&view.id);
        if view.request.message != r.message {
            failures.push(format!("{id}: signed another message than submitted"));
        } else {
            match verify_signature(e.group_key, &r.message, signature) {
                Ok(()) => verified += 1,
                Err(why) => failures.push(format!("{id}: {why}")),
            }
        }
    }
    Check {
        label: "b",
        title: "every signature verifies against the group key",
        summary: format!("{verified} verified"),
        failures,
    }
}

/// Signatures sharing R, the nonce commitment: `(R hex, request ids)`.
pub fn repeated_r(signatures: &[([u8; 32], &[u8])]) -> Vec<(String, Vec<[u8; 32]>)> {
    let mut by_r: BTreeMap<&[u8], Vec<[u8; 32]>> = BTreeMap::new();
    for (id, sig) in signatures {
        by_r.entry(&sig[..R_LEN.min(sig.len())])
            .or_default()
            .push(*id);
    }
    by_r.into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(r, ids)| (hex::encode(r), ids))
        .collect()
}

/// (c) No two signatures share R: a repeated R means a nonce was used
/// twice, which gives the key away. Every signature counts: the API's and
/// any other the coordinator's audit shows it produced.
fn no_repeated_r(e: &Evidence<'_>) -> Check {
    let mut signatures: BTreeSet<([u8; 32], Vec<u8>)> = e
        .api
        .iter()
        .filter_map(|(id, v)| Some((*id, v.as_ref().ok()?.signature.clone()?)))
        .collect();
    for (id, produced) in produced_signatures(e.coordinator_audit) {
        let Ok(id) = ringi_cli::view::parse_request_id(&id) else {
            continue;
        };
        signatures.extend(
            produced
                .iter()
                .filter_map(|sig| hex::decode(sig).ok())
                .map(|sig| (id, sig)),
        );
    }
    let signatures: Vec<([u8; 32], &[u8])> = signatures
        .iter()
        .map(|(id, sig)| (*id, sig.as_slice()))
        .collect();
    let failures = repeated_r(&signatures)
        .into_iter()
        .map(|(r, ids)| {
            let ids: Vec<String> = ids.iter().map(short).collect();
            format!("R {r} in {}", ids.join(", "))
        })
        .collect();
    Check {
        label: "c",
        title: "no two signatures share R",
        summary: format!(
            "{} distinct signatures compared (the API's and the audit's)",
            signatures.len()
        ),
        failures,
    }
}

/// (d) Every approval the coordinator acknowledged (answered OK) is in the
/// request's final view.
fn approvals_kept(e: &Evidence<'_>) -> Check {
    let mut failures = Vec::new();
    let (mut acknowledged, mut refused) = (0, 0);
    for r in e.records {
        let Some(Some(Ok(view))) = r.id.map(|id| e.api.get(&id)) else {
            continue;
        };
        for sent in &r.approvals {
            if sent.answer.is_err() {
                refused += 1;
                continue;
            }
            acknowledged += 1;
            if !view.approvals.contains(&sent.approval) {
                failures.push(format!(
                    "{}: the {} approval was acknowledged, and is not in the request",
                    short(&view.id),
                    sent.approval.statement.department
                ));
            }
        }
    }
    Check {
        label: "d",
        title: "no acknowledged approval lost",
        summary: format!("{acknowledged} acknowledged, {refused} never acknowledged"),
        failures,
    }
}

fn entries(lines: &[String]) -> impl Iterator<Item = ringi_policy::audit::Entry> + '_ {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
}

/// (e) Every audit log's hash chain (and every signed checkpoint) verifies.
fn audit_chains(e: &Evidence<'_>) -> Check {
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    let logs = std::iter::once(("coordinator", e.coordinator_audit)).chain(
        e.signer_audits
            .iter()
            .map(|(name, lines)| (name.as_str(), lines.as_slice())),
    );
    for (name, lines) in logs {
        match ringi_policy::audit::verify(lines, None) {
            Ok(v) => summary.push(format!("{name} {} entries", v.entries)),
            Err(broken) => failures.push(format!("{name}: {broken}")),
        }
    }
    Check {
        label: "e",
        title: "every audit chain verifies",
        summary: summary.join(", "),
        failures,
    }
}

/// Per request id (hex), the signatures of its `signature_produced`
/// entries in a coordinator's audit log.
pub fn produced_signatures(lines: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut produced: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in entries(lines).filter(|e| e.event == "signature_produced") {
        let id = entry.fields.get("request_id").cloned().unwrap_or_default();
        let signature = entry.fields.get("signature").cloned().unwrap_or_default();
        produced.entry(id).or_default().push(signature);
    }
    produced
}

/// A request as the API shows it, for the audit comparison: its id, its
/// state, and its signature once SIGNED.
pub type Shown = ([u8; 32], State, Option<Vec<u8>>);

/// Where the coordinator's audit and the API disagree: a SIGNED request
/// needs exactly one `signature_produced` entry, with its signature; any
/// other request none.
pub fn audit_disagreements(
    shown: &[Shown],
    produced: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (id, state, signature) in shown {
        let id = short(id);
        let entries = produced.get(&id).map(Vec::as_slice).unwrap_or_default();
        let Some(signature) = signature else {
            if !entries.is_empty() {
                failures.push(format!(
                    "{id}: {} signature_produced in the audit, and the API says {state} (a signature exists that the API does not show)",
                    entries.len()
                ));
            }
            continue;
        };
        let signature = hex::encode(signature);
        match entries {
            [] => failures.push(format!(
                "{id}: AUDIT GAP: SIGNED in the API, no signature_produced entry"
            )),
            [one] if *one == signature => {}
            [_] => failures.push(format!(
                "{id}: the signature_produced entry has another signature than the API"
            )),
            many => failures.push(format!(
                "{id}: {} signature_produced entries (signed more than once?){}",
                many.len(),
                if many.contains(&signature) {
                    ""
                } else {
                    "; none with the API's signature"
                }
            )),
        }
    }
    failures
}

/// (e) The coordinator's audit agrees with the API: exactly one
/// `signature_produced` per signed request, with its signature, and none
/// for any other.
fn audit_agrees(e: &Evidence<'_>) -> Check {
    let shown: Vec<Shown> = e
        .api
        .iter()
        .filter_map(|(id, v)| {
            let v = v.as_ref().ok()?;
            Some((*id, v.state, v.signature.clone()))
        })
        .collect();
    let produced = produced_signatures(e.coordinator_audit);
    let known: BTreeSet<String> = e
        .records
        .iter()
        .filter_map(|r| r.id)
        .map(|id| short(&id))
        .collect();
    let mut failures = audit_disagreements(&shown, &produced);
    for id in produced.keys().filter(|id| !known.contains(*id)) {
        failures.push(format!(
            "{id}: signature_produced for a request the driver never made"
        ));
    }
    let gaps = failures.iter().filter(|f| f.contains("AUDIT GAP")).count();
    Check {
        label: "e",
        title: "the coordinator's audit agrees with the API (one signature_produced per SIGNED request, none otherwise)",
        summary: format!(
            "{} signature_produced entries for {} signed requests; {gaps} audit gaps",
            produced.values().map(Vec::len).sum::<usize>(),
            shown.iter().filter(|s| s.2.is_some()).count()
        ),
        failures,
    }
}

/// Per (request id, approver key, department), the `decision_recorded`
/// entries of a coordinator's audit log.
pub fn recorded_decisions(lines: &[String]) -> BTreeMap<(String, String, String), usize> {
    let mut recorded = BTreeMap::new();
    for entry in entries(lines).filter(|e| e.event == "decision_recorded") {
        let field = |name: &str| entry.fields.get(name).cloned().unwrap_or_default();
        *recorded
            .entry((
                field("request_id"),
                field("approver_key"),
                field("department"),
            ))
            .or_default() += 1;
    }
    recorded
}

/// (e) Every decision the API shows has its one `decision_recorded` entry
/// in the coordinator's audit.
fn decisions_audited(e: &Evidence<'_>) -> Check {
    let recorded = recorded_decisions(e.coordinator_audit);
    let mut failures = Vec::new();
    let mut shown = 0;
    for view in e.api.values().filter_map(|v| v.as_ref().ok()) {
        for approval in &view.approvals {
            shown += 1;
            let key = (
                short(&view.id),
                approval.approver.to_text(),
                approval.statement.department.clone(),
            );
            match recorded.get(&key).copied().unwrap_or(0) {
                1 => {}
                0 => failures.push(format!(
                    "{}: AUDIT GAP: the {} decision is in the API, no decision_recorded entry",
                    key.0, key.2
                )),
                n => failures.push(format!(
                    "{}: {n} decision_recorded entries for the one {} decision",
                    key.0, key.2
                )),
            }
        }
    }
    Check {
        label: "e",
        title: "the coordinator's audit records every decision the API shows (one decision_recorded each)",
        summary: format!(
            "{} decision_recorded entries for {shown} decisions",
            recorded.values().sum::<usize>()
        ),
        failures,
    }
}

/// `(request id, input)` pairs a signer released more than one share for
/// without following the release rule (`signer/src/releases.rs`): each
/// further release must name, in its `excluded` field, a strict superset of
/// the signers every earlier release of the input excluded. With how many
/// releases. (`share_resent`, the same stored share sent again, is not a
/// release.)
pub fn releases_breaking_the_rule(lines: &[String]) -> Vec<((String, String), usize)> {
    let mut released: BTreeMap<(String, String), Vec<BTreeSet<String>>> = BTreeMap::new();
    for entry in entries(lines).filter(|e| e.event == "share_released") {
        let field = |name: &str| entry.fields.get(name).cloned().unwrap_or_default();
        let excluded: BTreeSet<String> = field("excluded")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        released
            .entry((field("request_id"), field("input")))
            .or_default()
            .push(excluded);
    }
    released
        .into_iter()
        .filter(|(_, sets)| {
            sets.iter().enumerate().any(|(i, later)| {
                sets[..i]
                    .iter()
                    .any(|earlier| !(later.is_superset(earlier) && later.len() > earlier.len()))
            })
        })
        .map(|(k, sets)| (k, sets.len()))
        .collect()
}

/// (e) Every signer released a further share for an input only under the
/// release rule.
fn shares_released_under_the_rule(e: &Evidence<'_>) -> Check {
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for (name, lines) in e.signer_audits {
        let released = entries(lines)
            .filter(|e| e.event == "share_released")
            .count();
        let further = entries(lines)
            .filter(|e| e.event == "share_released" && e.fields.contains_key("excluded"))
            .count();
        summary.push(format!("{name} {released} ({further} further)"));
        for ((id, input), n) in releases_breaking_the_rule(lines) {
            let input = if input.is_empty() {
                String::new()
            } else {
                format!(" input {input}")
            };
            failures.push(format!(
                "{name}: {n} share_released for {id}{input} without a growing excluded set"
            ));
        }
    }
    Check {
        label: "e",
        title: "each signer released a further share for an input only with a strictly larger excluded set",
        summary: format!("share_released entries: {}", summary.join(", ")),
        failures,
    }
}

/// Every planned kill happened and every killed process came back.
fn faults_done(e: &Evidence<'_>) -> Check {
    let mut failures = Vec::new();
    for (name, expected) in e.kills_expected {
        let done = e
            .faults
            .iter()
            .filter(|f| f.process == *name && f.restarted.is_some())
            .count();
        if done < *expected {
            failures.push(format!(
                "{name}: {done} of {expected} kills and restarts done"
            ));
        }
    }
    for f in e.faults.iter().filter(|f| f.error.is_some()) {
        failures.push(format!(
            "{} at {} requests: {}",
            f.process,
            f.at,
            f.error.as_deref().unwrap_or_default()
        ));
    }
    let done: Vec<String> = e
        .kills_expected
        .iter()
        .map(|(name, _)| {
            format!(
                "{name} {}",
                e.faults.iter().filter(|f| f.process == *name).count()
            )
        })
        .collect();
    Check {
        label: "k",
        title: "every planned kill -9 and restart happened",
        summary: format!("kills: {}", done.join(", ")),
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringi_frost::Suite;
    use std::collections::BTreeMap as Map;

    /// A 2-of-3 dealer key and a signature of `message` by it.
    fn sign(message: &[u8]) -> (Vec<u8>, Vec<u8>) {
        type C = ringi_frost::Secp256k1;
        let mut rng = rand::rngs::OsRng;
        let (shares, public) = frost::keys::generate_with_dealer::<C, _>(
            3,
            2,
            frost::keys::IdentifierList::Default,
            &mut rng,
        )
        .unwrap();
        let packages: Map<_, _> = shares
            .into_iter()
            .take(2)
            .map(|(id, s)| (id, frost::keys::KeyPackage::try_from(s).unwrap()))
            .collect();
        let mut nonces = Map::new();
        let mut commitments = Map::new();
        for (id, kp) in &packages {
            let (n, c) = frost::round1::commit(kp.signing_share(), &mut rng);
            nonces.insert(*id, n);
            commitments.insert(*id, c);
        }
        let package = frost::SigningPackage::new(commitments, message);
        let shares: Map<_, _> = nonces
            .iter()
            .map(|(id, n)| (*id, C::sign(&package, n, &packages[id]).unwrap()))
            .collect();
        let signature = C::aggregate(&package, &shares, &public).unwrap();
        (
            public.verifying_key().serialize().unwrap(),
            signature.serialize().unwrap(),
        )
    }

    #[test]
    fn a_signature_verifies_only_for_its_key_and_message() {
        let (key, signature) = sign(b"soak message");
        assert_eq!(signature.len(), 65);
        verify_signature(&key, b"soak message", &signature).unwrap();
        assert!(verify_signature(&key, b"another message", &signature).is_err());
        let (other_key, _) = sign(b"x");
        assert!(verify_signature(&other_key, b"soak message", &signature).is_err());
        assert!(verify_signature(&key, b"soak message", &signature[..64]).is_err());
    }

    #[test]
    fn a_repeated_r_is_named_with_its_requests() {
        let mut a = vec![2u8; 65];
        let mut b = vec![2u8; 65];
        b[64] = 9; // same R, another z
        let c = vec![3u8; 65];
        let found = repeated_r(&[([1; 32], &a), ([2; 32], &b), ([3; 32], &c)]);
        assert_eq!(found, vec![(hex::encode(&a[..33]), vec![[1; 32], [2; 32]])]);
        a[1] = 7; // R differs now
        assert!(repeated_r(&[([1; 32], &a), ([2; 32], &b), ([3; 32], &c)]).is_empty());
    }

    fn log(events: &[(&str, &[(&str, &str)])]) -> Vec<String> {
        let dir = std::env::temp_dir().join(format!("ringi-soak-test-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let audit = ringi_policy::audit::AuditLog::open(&path).unwrap();
        for (event, fields) in events {
            let fields: Vec<(&str, String)> =
                fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
            audit.append(1, event, &fields).unwrap();
        }
        let lines = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        lines
    }

    #[test]
    fn a_signed_request_without_its_audit_entry_is_an_audit_gap() {
        let (a, b, c) = ([0xaa; 32], [0xbb; 32], [0xcc; 32]);
        let lines = log(&[
            ("signing_started", &[("request_id", &hex::encode(a))]),
            (
                "signature_produced",
                &[("request_id", &hex::encode(a)), ("signature", "0102")],
            ),
            (
                "signature_produced",
                &[("request_id", &hex::encode(c)), ("signature", "0506")],
            ),
            (
                "signature_produced",
                &[("request_id", &hex::encode(c)), ("signature", "0708")],
            ),
        ]);
        let produced = produced_signatures(&lines);
        let signed = |id, sig: &[u8]| (id, State::Signed, Some(sig.to_vec()));
        let shown = vec![signed(a, &[1, 2]), signed(b, &[3, 4]), signed(c, &[5, 6])];
        let failures = audit_disagreements(&shown, &produced);
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].starts_with(&format!("{}: AUDIT GAP", hex::encode(b))));
        assert!(failures[1].contains("2 signature_produced entries"));
        // All in order: no failure.
        assert!(audit_disagreements(&[signed(a, &[1, 2])], &produced).is_empty());
        // Another signature in the audit than in the API.
        assert!(
            audit_disagreements(&[signed(a, &[9, 9])], &produced)[0].contains("another signature")
        );
        // A signature produced for a request the API shows FAILED.
        let failed = audit_disagreements(&[(a, State::Failed, None)], &produced);
        assert!(failed[0].contains("the API says FAILED"), "{failed:?}");
        assert!(audit_disagreements(&[(b, State::Failed, None)], &produced).is_empty());
    }

    #[test]
    fn decisions_are_counted_per_request_approver_and_department() {
        let decision = |id: &'static str, key: &'static str, dept: &'static str| {
            (
                "decision_recorded",
                vec![
                    ("request_id", id),
                    ("approver_key", key),
                    ("department", dept),
                ],
            )
        };
        let events = [
            decision("aa", "p256:01", "treasury"),
            decision("aa", "p256:02", "compliance"),
            decision("bb", "p256:01", "treasury"),
            decision("bb", "p256:01", "treasury"),
        ];
        let events: Vec<(&str, &[(&str, &str)])> =
            events.iter().map(|(e, f)| (*e, f.as_slice())).collect();
        let recorded = recorded_decisions(&log(&events));
        let count = |id: &str, key: &str, dept: &str| {
            recorded.get(&(id.into(), key.into(), dept.into())).copied()
        };
        assert_eq!(count("aa", "p256:01", "treasury"), Some(1));
        assert_eq!(count("aa", "p256:02", "compliance"), Some(1));
        assert_eq!(count("bb", "p256:01", "treasury"), Some(2));
        assert_eq!(count("bb", "p256:02", "compliance"), None);
    }

    #[test]
    fn a_second_release_of_a_share_is_found_and_a_resend_is_not() {
        let lines = log(&[
            ("share_released", &[("request_id", "aa")]),
            ("share_resent", &[("request_id", "aa")]),
            ("share_released", &[("request_id", "bb"), ("input", "0")]),
            ("share_released", &[("request_id", "bb"), ("input", "1")]),
        ]);
        assert!(releases_breaking_the_rule(&lines).is_empty());
        let mut twice = lines.clone();
        twice.extend(log(&[("share_released", &[("request_id", "aa")])]));
        assert_eq!(
            releases_breaking_the_rule(&twice),
            vec![(("aa".to_string(), String::new()), 2)]
        );
        // A further release that excludes a signer follows the rule; one
        // more that excludes no more than it does not.
        let mut further = lines.clone();
        further.extend(log(&[(
            "share_released",
            &[("request_id", "aa"), ("excluded", "3")],
        )]));
        assert!(releases_breaking_the_rule(&further).is_empty());
        further.extend(log(&[(
            "share_released",
            &[("request_id", "aa"), ("excluded", "2")],
        )]));
        assert_eq!(
            releases_breaking_the_rule(&further),
            vec![(("aa".to_string(), String::new()), 3)]
        );
    }
}
