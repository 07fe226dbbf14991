//! Policy updates under the policy's own quorum: a new policy version is a
//! signed bundle (its text, the hash of the policy it replaces, and the
//! signatures of the current policy's admins), which each signer verifies
//! against the policy it enforces now and rolls forward to, without a
//! restart.
//!
//! ```text
//! update statement = Canonical("ringi policy update v1")
//!     ‖ previous_hash (32) ‖ new_hash (32) ‖ sequence (u64)
//!     ‖ effective_at (u64) ‖ issued_at (u64) ‖ admin key (SEC1)
//! signature = ECDSA-P256-SHA256(statement), 64 bytes r ‖ s
//! ```
//!
//! Rules ([`check_update`]), all pure:
//! - the new text is a valid policy whose `sequence` is exactly one more
//!   than the current policy's, and the bundle names the current policy's
//!   hash as the one it replaces: an older policy (a rollback) or another
//!   successor of the same policy (a fork, once one was applied) is
//!   refused;
//! - `admin_quorum` distinct admins of the *current* policy signed the
//!   same statement (so an update cannot name its own admins into power);
//! - a change that is not provably a tightening ([`classify`]) takes
//!   effect no earlier than `loosening_delay_secs` after its quorum was
//!   complete and after the node received it (the admins' times alone could
//!   be backdated); a tightening may take effect at once.

use std::collections::{BTreeMap, BTreeSet};

use crate::approver_key::ApproverKey;
use crate::encoding::Canonical;
use crate::evaluate::CLOCK_SKEW_SECS;
use crate::policy::{KeyRules, Policy, PolicyError, Quorums};

/// One admin's signature on an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSignature {
    pub admin: ApproverKey,
    pub issued_at: u64,
    /// 64 bytes, r ‖ s.
    pub signature: Vec<u8>,
}

/// A policy update as delivered to a signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyUpdate {
    /// The new policy file's bytes.
    pub text: Vec<u8>,
    /// The hash of the policy it replaces.
    pub previous_hash: [u8; 32],
    /// When it takes effect (seconds since the Unix epoch).
    pub effective_at: u64,
    pub signatures: Vec<AdminSignature>,
}

/// The bytes an admin signs for an update.
pub fn signed_bytes(
    previous_hash: &[u8; 32],
    new_hash: &[u8; 32],
    sequence: u64,
    effective_at: u64,
    issued_at: u64,
    admin: &ApproverKey,
) -> Vec<u8> {
    Canonical::new("ringi policy update v1")
        .bytes(previous_hash)
        .bytes(new_hash)
        .u64(sequence)
        .u64(effective_at)
        .u64(issued_at)
        .bytes(&admin.to_sec1())
        .finish()
}

/// Whether an update only restricts what may be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Every request the new policy lets through, the old one did too
    /// (as far as [`classify`] can tell).
    Tightening,
    /// Possibly lets through something the old one did not; the first
    /// reason found.
    Loosening(String),
}

/// An update that passed every rule: the new policy and when it takes
/// effect.
#[derive(Debug, Clone)]
pub struct AcceptedUpdate {
    pub policy: Policy,
    pub effective_at: u64,
    pub change: Change,
    /// The admins whose signatures counted.
    pub admins: Vec<String>,
}

/// Why an update is refused. Each variant names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateRefused {
    #[error("the new policy is not valid: {0}")]
    InvalidPolicy(PolicyError),
    #[error(
        "the current policy names no admins: it cannot be updated, only re-pinned by every operator"
    )]
    NoAdmins,
    #[error(
        "the update replaces policy {named}, but this node enforces {current}: a fork or a stale update"
    )]
    NotFromCurrent { current: String, named: String },
    #[error(
        "the new policy's sequence {new} is not {expected} (the current {current} plus one): {}",
        if .new <= .current { "a rollback" } else { "a gap in the chain" }
    )]
    Sequence {
        current: u64,
        new: u64,
        expected: u64,
    },
    #[error("the new policy is the current one")]
    Unchanged,
    #[error("signature #{index}: does not verify")]
    BadSignature { index: usize },
    #[error("signature #{index}: the key is not an admin of the current policy")]
    NotAnAdmin { index: usize },
    #[error("signature #{index} by {admin}: issued in the future")]
    IssuedInFuture { index: usize, admin: String },
    #[error("admin quorum not met: {have} of {need} distinct admins signed")]
    QuorumNotMet { have: u32, need: u32 },
    #[error(
        "a loosening update ({reason}) takes effect no earlier than {earliest} ({delay} s after its quorum), not {effective_at}"
    )]
    TooEarly {
        reason: String,
        earliest: u64,
        delay: u64,
        effective_at: u64,
    },
}

/// What kind of refusal an update met, for the gRPC edges (signer and
/// coordinator answer alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The new policy does not load (INVALID_ARGUMENT).
    Invalid,
    /// A signature does not verify or is not an admin's (PERMISSION_DENIED).
    NotPermitted,
    /// Well formed and signed, not applicable now: rollback, fork, quorum,
    /// delay, a pending update (FAILED_PRECONDITION).
    NotNow,
    /// The store failed (UNAVAILABLE).
    Unavailable,
}

impl RefusalKind {
    /// The gRPC status code both the signers and the coordinator answer.
    pub fn grpc_code(self) -> i32 {
        match self {
            RefusalKind::Invalid => 3,      // INVALID_ARGUMENT
            RefusalKind::NotPermitted => 7, // PERMISSION_DENIED
            RefusalKind::NotNow => 9,       // FAILED_PRECONDITION
            RefusalKind::Unavailable => 14, // UNAVAILABLE
        }
    }
}

impl UpdateRefused {
    pub fn kind(&self) -> RefusalKind {
        match self {
            UpdateRefused::InvalidPolicy(_) => RefusalKind::Invalid,
            UpdateRefused::BadSignature { .. } | UpdateRefused::NotAnAdmin { .. } => {
                RefusalKind::NotPermitted
            }
            _ => RefusalKind::NotNow,
        }
    }
}

impl std::fmt::Display for Change {
    /// As the APIs and the CLI name it: "tightening" or "loosening: why".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Tightening => f.write_str("tightening"),
            Change::Loosening(reason) => write!(f, "loosening: {reason}"),
        }
    }
}

/// Checks `update` against `current` at `now`.
pub fn check_update(
    current: &Policy,
    update: &PolicyUpdate,
    now: u64,
) -> Result<AcceptedUpdate, UpdateRefused> {
    let governance = current.governance();
    if governance.admins.is_empty() {
        return Err(UpdateRefused::NoAdmins);
    }
    if update.previous_hash != current.hash() {
        return Err(UpdateRefused::NotFromCurrent {
            current: hex::encode(current.hash()),
            named: hex::encode(update.previous_hash),
        });
    }
    let new = Policy::from_bytes(&update.text).map_err(UpdateRefused::InvalidPolicy)?;
    if new.hash() == current.hash() {
        return Err(UpdateRefused::Unchanged);
    }
    // A policy at the end of the sequence space has no successor.
    let expected = current.sequence().saturating_add(1);
    if new.sequence() != expected || current.sequence() == u64::MAX {
        return Err(UpdateRefused::Sequence {
            current: current.sequence(),
            new: new.sequence(),
            expected,
        });
    }
    let mut by_admin: BTreeMap<String, u64> = BTreeMap::new();
    for (index, s) in update.signatures.iter().enumerate() {
        let bytes = signed_bytes(
            &update.previous_hash,
            &new.hash(),
            new.sequence(),
            update.effective_at,
            s.issued_at,
            &s.admin,
        );
        if !s.admin.verify(&bytes, &s.signature) {
            return Err(UpdateRefused::BadSignature { index });
        }
        let name = current
            .approver(&s.admin)
            .map(|a| a.name.clone())
            .filter(|n| governance.admins.contains(n))
            .ok_or(UpdateRefused::NotAnAdmin { index })?;
        if s.issued_at > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(UpdateRefused::IssuedInFuture { index, admin: name });
        }
        let first = by_admin.entry(name).or_insert(s.issued_at);
        *first = (*first).min(s.issued_at);
    }
    let need = governance.admin_quorum;
    let have = by_admin.len() as u32;
    if have < need {
        return Err(UpdateRefused::QuorumNotMet { have, need });
    }
    let mut times: Vec<u64> = by_admin.values().copied().collect();
    times.sort_unstable();
    let quorum_at = times[need as usize - 1];
    let change = classify(current, &new);
    if let Change::Loosening(reason) = &change {
        let delay = governance.loosening_delay_secs;
        // From the quorum, but never from before this node saw the update:
        // the admins' own times could be backdated by whoever holds their
        // keys (a store replays with the time it accepted the update).
        let earliest = quorum_at.max(now).saturating_add(delay);
        if update.effective_at < earliest {
            return Err(UpdateRefused::TooEarly {
                reason: reason.clone(),
                earliest,
                delay,
                effective_at: update.effective_at,
            });
        }
    }
    Ok(AcceptedUpdate {
        policy: new,
        effective_at: update.effective_at,
        change,
        admins: by_admin.into_keys().collect(),
    })
}

/// Whether `new` only restricts what `old` allowed. Conservative: any
/// change it cannot prove to be a restriction is a loosening (the cost of
/// a wrong answer is a delay, never a loosening taking effect at once).
pub fn classify(old: &Policy, new: &Policy) -> Change {
    match loosening(old, new) {
        Some(reason) => Change::Loosening(reason),
        None => Change::Tightening,
    }
}

fn loosening(old: &Policy, new: &Policy) -> Option<String> {
    for a in new.approvers() {
        match old.approver(&a.key) {
            Some(o) if o.name == a.name && o.department == a.department => {}
            _ => return Some(format!("approver {:?} is added or changed", a.name)),
        }
    }
    for r in new.requesters() {
        if !old.requesters().contains(r) {
            return Some(format!("requester {:?} is added or changed", r.name));
        }
    }
    if new.governance() != old.governance() {
        return Some("the governance section changes".into());
    }
    for (key_id, n) in new.keys() {
        let Some(o) = old.key(key_id) else {
            return Some(format!("key {key_id:?} is added"));
        };
        if let Some(reason) = key_loosening(o, n) {
            return Some(format!("key {key_id:?}: {reason}"));
        }
    }
    None
}

/// `need` asks at least as much as `base` of every department.
fn dominates(need: &Quorums, base: &Quorums) -> bool {
    base.iter()
        .all(|(d, n)| need.get(d).is_some_and(|m| m >= n))
}

fn key_loosening(o: &KeyRules, n: &KeyRules) -> Option<String> {
    if n.request_ttl_secs > o.request_ttl_secs || n.approval_ttl_secs > o.approval_ttl_secs {
        return Some("a TTL grows".into());
    }
    if o.separation_of_duties && !n.separation_of_duties {
        return Some("separation of duties is turned off".into());
    }
    if o.signed_requests && !n.signed_requests {
        return Some("signed requests are turned off".into());
    }
    if o.refresh_needs_order && !n.refresh_needs_order {
        return Some("refreshes no longer need an order".into());
    }
    // The quorum at every amount where either policy changes tier.
    let amounts: BTreeSet<u128> = [0u128]
        .into_iter()
        .chain(o.tiers.iter().map(|(a, _)| a.saturating_add(1)))
        .chain(n.tiers.iter().map(|(a, _)| a.saturating_add(1)))
        .collect();
    for amount in amounts {
        if !dominates(n.amount_quorums(amount), o.amount_quorums(amount)) {
            return Some(format!("the quorum for an amount of {amount} is lower"));
        }
    }
    match (&o.blind_signing, &n.blind_signing) {
        (_, None) => {}
        (Some(ob), Some(nb)) if dominates(nb, ob) => {}
        _ => return Some("blind signing is allowed or its quorum lowered".into()),
    }
    match (&o.destinations, &n.destinations) {
        (None, _) => {}
        (Some(od), Some(nd)) if nd.allowed.is_subset(&od.allowed) => {
            match (&od.unlisted_require, &nd.unlisted_require) {
                (_, None) => {}
                (Some(oq), Some(nq)) if dominates(nq, oq) => {}
                _ => return Some("unlisted destinations are allowed more easily".into()),
            }
        }
        _ => return Some("the allowlist grows or is removed".into()),
    }
    if n.limits != o.limits {
        return Some("the spending caps change".into());
    }
    if n.bitcoin != o.bitcoin {
        return Some("the bitcoin rules change".into());
    }
    if n.time != o.time {
        return Some("the time rules change".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::{Keys, keys, policy_text};
    use p256::ecdsa::Signature;
    use p256::ecdsa::signature::Signer;

    const NOW: u64 = 1_800_000_000;

    fn text(keys: &Keys, sequence: u64, key_section: &str) -> String {
        format!(
            "{}\n[governance]\nadmins = [\"alice\", \"carol\", \"erin\"]\nadmin_quorum = 2\nloosening_delay_secs = 86400\n",
            policy_text(keys, key_section).replacen(
                "version = 1\n",
                &format!("version = 1\nsequence = {sequence}\n"),
                1
            )
        )
    }

    const STRICT: &str = "[keys.hot-1]\nrequest_ttl_secs = 86400\napproval_ttl_secs = 3600\nrequire = { treasury = 2, compliance = 1 }\n";
    const LAX: &str = "[keys.hot-1]\nrequest_ttl_secs = 86400\napproval_ttl_secs = 3600\nrequire = { treasury = 1, compliance = 1 }\n";

    fn sign(
        keys: &Keys,
        who: &str,
        current: &Policy,
        new: &[u8],
        effective_at: u64,
    ) -> AdminSignature {
        let admin = ApproverKey::parse(&keys.public(who)).unwrap();
        let new = Policy::from_bytes(new).unwrap();
        let bytes = signed_bytes(
            &current.hash(),
            &new.hash(),
            new.sequence(),
            effective_at,
            NOW,
            &admin,
        );
        let sig: Signature = keys.secret(who).sign(&bytes);
        AdminSignature {
            admin,
            issued_at: NOW,
            signature: sig.to_bytes().to_vec(),
        }
    }

    fn update(
        keys: &Keys,
        current: &Policy,
        new: &str,
        effective_at: u64,
        by: &[&str],
    ) -> PolicyUpdate {
        PolicyUpdate {
            text: new.as_bytes().to_vec(),
            previous_hash: current.hash(),
            effective_at,
            signatures: by
                .iter()
                .map(|w| sign(keys, w, current, new.as_bytes(), effective_at))
                .collect(),
        }
    }

    #[test]
    fn a_tightening_signed_by_the_quorum_takes_effect_at_once() {
        let keys = keys();
        let current = Policy::from_bytes(text(&keys, 0, LAX).as_bytes()).unwrap();
        let new = text(&keys, 1, STRICT);
        let accepted = check_update(
            &current,
            &update(&keys, &current, &new, NOW, &["alice", "carol"]),
            NOW,
        )
        .unwrap();
        assert_eq!(accepted.change, Change::Tightening);
        assert_eq!(accepted.effective_at, NOW);
        assert_eq!(accepted.policy.sequence(), 1);
        assert_eq!(
            accepted.admins,
            vec!["alice".to_string(), "carol".to_string()]
        );
    }

    #[test]
    fn a_loosening_waits_for_the_delay() {
        let keys = keys();
        let current = Policy::from_bytes(text(&keys, 0, STRICT).as_bytes()).unwrap();
        let new = text(&keys, 1, LAX);
        let err = check_update(
            &current,
            &update(&keys, &current, &new, NOW, &["alice", "carol"]),
            NOW,
        )
        .unwrap_err();
        assert!(
            matches!(&err, UpdateRefused::TooEarly { earliest, .. } if *earliest == NOW + 86400),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("quorum for an amount of 0 is lower"),
            "{err}"
        );
        let later = update(&keys, &current, &new, NOW + 86400, &["alice", "carol"]);
        let accepted = check_update(&current, &later, NOW).unwrap();
        assert!(matches!(accepted.change, Change::Loosening(_)));
        assert_eq!(accepted.effective_at, NOW + 86400);
    }

    #[test]
    fn too_few_admins_forks_and_rollbacks_are_refused() {
        let keys = keys();
        let v0 = Policy::from_bytes(text(&keys, 0, LAX).as_bytes()).unwrap();
        let v1_text = text(&keys, 1, STRICT);
        // One admin, or one admin twice, is not a quorum.
        let err =
            check_update(&v0, &update(&keys, &v0, &v1_text, NOW, &["alice"]), NOW).unwrap_err();
        assert_eq!(err, UpdateRefused::QuorumNotMet { have: 1, need: 2 });
        let err = check_update(
            &v0,
            &update(&keys, &v0, &v1_text, NOW, &["alice", "alice"]),
            NOW,
        )
        .unwrap_err();
        assert_eq!(err, UpdateRefused::QuorumNotMet { have: 1, need: 2 });
        // A non-admin's signature is refused, even with a quorum besides.
        let err = check_update(
            &v0,
            &update(&keys, &v0, &v1_text, NOW, &["alice", "bob"]),
            NOW,
        )
        .unwrap_err();
        assert_eq!(err, UpdateRefused::NotAnAdmin { index: 1 });
        // A signature over another effective time does not count.
        let mut moved = update(&keys, &v0, &v1_text, NOW, &["alice", "carol"]);
        moved.effective_at = NOW + 1;
        assert_eq!(
            check_update(&v0, &moved, NOW).unwrap_err(),
            UpdateRefused::BadSignature { index: 0 }
        );
        // Applied: v1 is current. The old policy back (a rollback)...
        let v1 = check_update(
            &v0,
            &update(&keys, &v0, &v1_text, NOW, &["alice", "carol"]),
            NOW,
        )
        .unwrap()
        .policy;
        let back = text(&keys, 0, LAX);
        let err = check_update(
            &v1,
            &update(&keys, &v1, &back, NOW, &["alice", "carol"]),
            NOW,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                UpdateRefused::Sequence {
                    new: 0,
                    expected: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("a rollback"), "{err}");
        // ...or another successor of v0 (a fork) is refused.
        let fork = text(&keys, 1, &STRICT.replace("86400", "43200"));
        let err = check_update(
            &v1,
            &update(&keys, &v0, &fork, NOW, &["alice", "carol"]),
            NOW,
        )
        .unwrap_err();
        assert!(
            matches!(err, UpdateRefused::NotFromCurrent { .. }),
            "{err:?}"
        );
        // An update cannot name new admins into power: the current ones sign.
        let err = check_update(
            &v1,
            &update(&keys, &v1, &text(&keys, 2, LAX), NOW, &["bob", "dave"]),
            NOW,
        )
        .unwrap_err();
        assert_eq!(err, UpdateRefused::NotAnAdmin { index: 0 });
    }

    #[test]
    fn classification_is_conservative() {
        let keys = keys();
        let p = |s: &str| Policy::from_bytes(text(&keys, 0, s).as_bytes()).unwrap();
        assert_eq!(classify(&p(LAX), &p(STRICT)), Change::Tightening);
        assert!(matches!(
            classify(&p(STRICT), &p(LAX)),
            Change::Loosening(_)
        ));
        // A longer TTL, a new key, a removed allowlist: loosenings.
        assert!(matches!(
            classify(&p(STRICT), &p(&STRICT.replace("approval_ttl_secs = 3600", "approval_ttl_secs = 7200"))),
            Change::Loosening(r) if r.contains("TTL")
        ));
        assert!(matches!(
            classify(&p(STRICT), &p(&format!("{STRICT}[keys.cold-1]\nrequest_ttl_secs = 60\napproval_ttl_secs = 60\nrequire = {{ treasury = 2 }}\n"))),
            Change::Loosening(r) if r.contains("added")
        ));
        let listed = format!("{STRICT}[keys.hot-1.destinations]\nallowed = [\"a\", \"b\"]\n");
        let narrower = format!("{STRICT}[keys.hot-1.destinations]\nallowed = [\"a\"]\n");
        assert_eq!(classify(&p(&listed), &p(&narrower)), Change::Tightening);
        assert!(matches!(
            classify(&p(&narrower), &p(&listed)),
            Change::Loosening(_)
        ));
        assert!(matches!(
            classify(&p(&listed), &p(STRICT)),
            Change::Loosening(_)
        ));
        // Removing a key only restricts.
        assert_eq!(
            classify(
                &p(&format!(
                    "{STRICT}[keys.cold-1]\nrequest_ttl_secs = 60\napproval_ttl_secs = 60\nrequire = {{ treasury = 2 }}\n"
                )),
                &p(STRICT)
            ),
            Change::Tightening
        );
    }
}
