//! Freezes: one officer stops a key (or every key) at every signer; a
//! quorum lifts it. The statements travel from the officer's CLI to each
//! signer directly (`ringi.signer.v1.Governance`), so a coordinator cannot
//! drop them.
//!
//! ```text
//! freeze   = Canonical("ringi freeze v1")
//!     ‖ scope ("all" | "key:" key_id) ‖ reason ‖ issued_at (u64)
//!     ‖ officer key (SEC1 compressed)
//! freeze_id = SHA-256(Canonical("ringi freeze id v2") ‖ freeze)
//! unfreeze = Canonical("ringi unfreeze v1")
//!     ‖ freeze_id (32) ‖ scope ‖ issued_at (u64) ‖ approver key (SEC1)
//! signature = ECDSA-P256-SHA256(statement), 64 bytes r ‖ s
//! ```
//!
//! Rules ([`check_freeze`], [`check_unfreeze`]), all pure:
//! - a freeze is signed by one of the policy's `freeze_officers`, names a
//!   key of the policy (or all), and is fresh: issued at most
//!   [`FREEZE_MAX_AGE_SECS`] ago and not in the future. A signer also
//!   refuses a freeze it has lifted before (`crate::holds`): a statement
//!   cannot be replayed to freeze again after its unfreeze;
//! - an unfreeze names the freeze it lifts by its id, so it cannot lift a
//!   later one; the statements must come from distinct approvers meeting
//!   the policy's `unfreeze` quorum per department (at least two people).

use std::collections::{BTreeMap, BTreeSet};

use crate::approver_key::ApproverKey;
use crate::encoding::{Canonical, sha256};
use crate::evaluate::{CLOCK_SKEW_SECS, describe_missing};
use crate::key_id::KeyId;
use crate::policy::Policy;

/// How old a freeze may be when a signer first sees it.
pub const FREEZE_MAX_AGE_SECS: u64 = 600;

/// What a freeze stops.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every key of the node.
    All,
    /// One key.
    Key(KeyId),
}

impl Scope {
    /// The scope's text: `all` or `key:<key_id>`.
    pub fn to_text(&self) -> String {
        match self {
            Scope::All => "all".to_string(),
            Scope::Key(k) => format!("key:{k}"),
        }
    }

    pub fn parse(text: &str) -> Result<Scope, String> {
        if text == "all" {
            return Ok(Scope::All);
        }
        let key = text
            .strip_prefix("key:")
            .ok_or_else(|| format!("scope {text:?} is neither \"all\" nor \"key:<key id>\""))?;
        KeyId::parse(key)
            .map(Scope::Key)
            .map_err(|e| format!("scope {text:?}: {e}"))
    }

    /// Whether the scope covers `key_id`.
    pub fn covers(&self, key_id: &KeyId) -> bool {
        match self {
            Scope::All => true,
            Scope::Key(k) => k == key_id,
        }
    }
}

/// What an officer signs to freeze.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeStatement {
    pub scope: Scope,
    pub reason: String,
    pub issued_at: u64,
}

impl FreezeStatement {
    pub fn signed_bytes(&self, officer: &ApproverKey) -> Vec<u8> {
        Canonical::new("ringi freeze v1")
            .str(&self.scope.to_text())
            .str(&self.reason)
            .u64(self.issued_at)
            .bytes(&officer.to_sec1())
            .finish()
    }
}

/// A freeze statement, its officer's key and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freeze {
    pub statement: FreezeStatement,
    pub officer: ApproverKey,
    /// 64 bytes, r ‖ s.
    pub signature: Vec<u8>,
}

impl Freeze {
    /// The freeze's id: what an unfreeze names. Over the signed statement
    /// only, not the signature: ECDSA signatures are malleable ((r, s) and
    /// (r, n - s) both verify), so an id over the signature would let anyone
    /// replay a lifted freeze under a new id.
    pub fn id(&self) -> [u8; 32] {
        sha256(
            &Canonical::new("ringi freeze id v2")
                .bytes(&self.statement.signed_bytes(&self.officer))
                .finish(),
        )
    }
}

/// What an approver signs to lift one freeze.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfreezeStatement {
    pub freeze_id: [u8; 32],
    pub scope: Scope,
    pub issued_at: u64,
}

impl UnfreezeStatement {
    pub fn signed_bytes(&self, approver: &ApproverKey) -> Vec<u8> {
        Canonical::new("ringi unfreeze v1")
            .bytes(&self.freeze_id)
            .str(&self.scope.to_text())
            .u64(self.issued_at)
            .bytes(&approver.to_sec1())
            .finish()
    }
}

/// An unfreeze statement, its approver's key and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfreeze {
    pub statement: UnfreezeStatement,
    pub approver: ApproverKey,
    pub signature: Vec<u8>,
}

/// Why a freeze or an unfreeze is refused. Each variant names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreezeRefused {
    #[error("the policy names no freeze officers: nobody may freeze")]
    NoOfficers,
    #[error("the freeze's signature does not verify")]
    BadSignature,
    #[error("the freeze is signed by {0}, who is not one of the policy's freeze officers")]
    NotAnOfficer(String),
    #[error("the freeze is signed by a key that is not in the policy's roster")]
    UnknownSigner,
    #[error("the policy has no rules for key {0:?}: nothing to freeze")]
    UnknownKey(KeyId),
    #[error(
        "the freeze was issued at {issued_at}, more than {FREEZE_MAX_AGE_SECS} s ago (now {now})"
    )]
    Stale { issued_at: u64, now: u64 },
    #[error("the freeze is issued in the future ({issued_at}, now {now})")]
    IssuedInFuture { issued_at: u64, now: u64 },
    #[error("this freeze was lifted already: a lifted freeze cannot be replayed")]
    Lifted,
}

/// Why an unfreeze is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnfreezeRefused {
    #[error("nothing to lift: {0} is not frozen")]
    NotFrozen(String),
    #[error("unfreeze #{index}: it lifts another freeze than the one in force for {scope}")]
    OtherFreeze { index: usize, scope: String },
    #[error("unfreeze #{index}: signature does not verify")]
    BadSignature { index: usize },
    #[error("unfreeze #{index}: signed by a key that is not in the policy's roster")]
    UnknownApprover { index: usize },
    #[error("unfreeze #{index} by {approver}: issued in the future")]
    IssuedInFuture { index: usize, approver: String },
    #[error("unfreeze quorum not met: {}", describe_missing(.missing))]
    QuorumNotMet {
        missing: BTreeMap<String, (u32, u32)>,
    },
}

/// Checks a freeze presented at `now` under `policy`; returns the
/// officer's name.
pub fn check_freeze(policy: &Policy, freeze: &Freeze, now: u64) -> Result<String, FreezeRefused> {
    let governance = policy.governance();
    if governance.freeze_officers.is_empty() {
        return Err(FreezeRefused::NoOfficers);
    }
    if !freeze.officer.verify(
        &freeze.statement.signed_bytes(&freeze.officer),
        &freeze.signature,
    ) {
        return Err(FreezeRefused::BadSignature);
    }
    let signer = policy
        .approver(&freeze.officer)
        .ok_or(FreezeRefused::UnknownSigner)?;
    if !governance.freeze_officers.contains(&signer.name) {
        return Err(FreezeRefused::NotAnOfficer(signer.name.clone()));
    }
    if let Scope::Key(k) = &freeze.statement.scope
        && policy.key(k).is_none()
    {
        return Err(FreezeRefused::UnknownKey(k.clone()));
    }
    let issued_at = freeze.statement.issued_at;
    if issued_at > now.saturating_add(CLOCK_SKEW_SECS) {
        return Err(FreezeRefused::IssuedInFuture { issued_at, now });
    }
    if now.saturating_sub(issued_at) > FREEZE_MAX_AGE_SECS {
        return Err(FreezeRefused::Stale { issued_at, now });
    }
    Ok(signer.name.clone())
}

/// Checks that `unfreezes` lift `freeze` (the freeze in force for its
/// scope) under `policy` at `now`; returns the names of the approvers
/// counted.
pub fn check_unfreeze(
    policy: &Policy,
    freeze: &Freeze,
    unfreezes: &[Unfreeze],
    now: u64,
) -> Result<Vec<String>, UnfreezeRefused> {
    let id = freeze.id();
    let scope = freeze.statement.scope.to_text();
    let mut by_department: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (index, u) in unfreezes.iter().enumerate() {
        if u.statement.freeze_id != id || u.statement.scope != freeze.statement.scope {
            return Err(UnfreezeRefused::OtherFreeze {
                index,
                scope: scope.clone(),
            });
        }
        if !u
            .approver
            .verify(&u.statement.signed_bytes(&u.approver), &u.signature)
        {
            return Err(UnfreezeRefused::BadSignature { index });
        }
        let approver = policy
            .approver(&u.approver)
            .ok_or(UnfreezeRefused::UnknownApprover { index })?;
        if u.statement.issued_at > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(UnfreezeRefused::IssuedInFuture {
                index,
                approver: approver.name.clone(),
            });
        }
        by_department
            .entry(approver.department.as_str())
            .or_default()
            .insert(approver.name.as_str());
    }
    let quorum = &policy.governance().unfreeze;
    let missing: BTreeMap<String, (u32, u32)> = quorum
        .iter()
        .filter_map(|(department, need)| {
            let have = by_department
                .get(department.as_str())
                .map_or(0, |s| s.len() as u32);
            (have < *need).then(|| (department.clone(), (have, *need)))
        })
        .collect();
    // A policy without an unfreeze quorum cannot have a freeze in force
    // (nobody may freeze); refuse rather than lift with nobody.
    if !missing.is_empty() || quorum.is_empty() {
        return Err(UnfreezeRefused::QuorumNotMet { missing });
    }
    Ok(by_department
        .into_values()
        .flatten()
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::tests::{GOVERNANCE, HOT, Keys, keys, policy_text};
    use p256::ecdsa::Signature;
    use p256::ecdsa::signature::Signer;

    pub const NOW: u64 = 1_800_000_000;

    fn key_of(keys: &Keys, who: &str) -> ApproverKey {
        ApproverKey::parse(&keys.public(who)).unwrap()
    }

    pub fn freeze(keys: &Keys, who: &str, scope: Scope, issued_at: u64) -> Freeze {
        let officer = key_of(keys, who);
        let statement = FreezeStatement {
            scope,
            reason: "suspicious withdrawals".into(),
            issued_at,
        };
        let sig: Signature = keys.secret(who).sign(&statement.signed_bytes(&officer));
        Freeze {
            statement,
            officer,
            signature: sig.to_bytes().to_vec(),
        }
    }

    pub fn unfreeze(keys: &Keys, who: &str, of: &Freeze) -> Unfreeze {
        let approver = key_of(keys, who);
        let statement = UnfreezeStatement {
            freeze_id: of.id(),
            scope: of.statement.scope.clone(),
            issued_at: NOW,
        };
        let sig: Signature = keys.secret(who).sign(&statement.signed_bytes(&approver));
        Unfreeze {
            statement,
            approver,
            signature: sig.to_bytes().to_vec(),
        }
    }

    fn governed(keys: &Keys) -> Policy {
        Policy::from_bytes(policy_text(keys, &format!("{HOT}{GOVERNANCE}")).as_bytes()).unwrap()
    }

    fn hot() -> Scope {
        Scope::Key(KeyId::parse("hot-1").unwrap())
    }

    #[test]
    fn scopes_round_trip_and_cover() {
        for s in [Scope::All, hot()] {
            assert_eq!(Scope::parse(&s.to_text()).unwrap(), s);
        }
        assert!(Scope::parse("everything").is_err());
        assert!(Scope::parse("key:").is_err());
        let other = KeyId::parse("cold-1").unwrap();
        assert!(Scope::All.covers(&other));
        assert!(!hot().covers(&other));
        assert!(hot().covers(&KeyId::parse("hot-1").unwrap()));
    }

    #[test]
    fn one_officer_freezes_alone() {
        let keys = keys();
        let policy = governed(&keys);
        let f = freeze(&keys, "erin", hot(), NOW);
        assert_eq!(check_freeze(&policy, &f, NOW + 1), Ok("erin".into()));
        assert_eq!(
            check_freeze(&policy, &freeze(&keys, "erin", Scope::All, NOW), NOW),
            Ok("erin".into())
        );
    }

    #[test]
    fn freezes_are_refused_by_rule() {
        let keys = keys();
        let policy = governed(&keys);
        assert_eq!(
            check_freeze(&policy, &freeze(&keys, "alice", hot(), NOW), NOW),
            Err(FreezeRefused::NotAnOfficer("alice".into()))
        );
        assert_eq!(
            check_freeze(&policy, &freeze(&keys, "mallory", hot(), NOW), NOW),
            Err(FreezeRefused::UnknownSigner)
        );
        let mut forged = freeze(&keys, "erin", hot(), NOW);
        forged.statement.scope = Scope::All;
        assert_eq!(
            check_freeze(&policy, &forged, NOW),
            Err(FreezeRefused::BadSignature)
        );
        let cold = Scope::Key(KeyId::parse("cold-1").unwrap());
        assert!(matches!(
            check_freeze(&policy, &freeze(&keys, "erin", cold, NOW), NOW),
            Err(FreezeRefused::UnknownKey(_))
        ));
        let old = freeze(&keys, "erin", hot(), NOW);
        assert!(matches!(
            check_freeze(&policy, &old, NOW + FREEZE_MAX_AGE_SECS + 1),
            Err(FreezeRefused::Stale { .. })
        ));
        let future = freeze(&keys, "erin", hot(), NOW + CLOCK_SKEW_SECS + 1);
        assert!(matches!(
            check_freeze(&policy, &future, NOW),
            Err(FreezeRefused::IssuedInFuture { .. })
        ));
        let ungoverned = Policy::from_bytes(policy_text(&keys, HOT).as_bytes()).unwrap();
        assert_eq!(
            check_freeze(&ungoverned, &freeze(&keys, "erin", hot(), NOW), NOW),
            Err(FreezeRefused::NoOfficers)
        );
    }

    #[test]
    fn one_person_cannot_lift_a_freeze_a_quorum_can() {
        let keys = keys();
        let policy = governed(&keys);
        let f = freeze(&keys, "erin", hot(), NOW);
        // The quorum is treasury 1 + compliance 1.
        let alice = unfreeze(&keys, "alice", &f);
        let err = check_unfreeze(&policy, &f, std::slice::from_ref(&alice), NOW).unwrap_err();
        assert!(
            matches!(&err, UnfreezeRefused::QuorumNotMet { missing } if missing.get("compliance") == Some(&(0, 1))),
            "{err:?}"
        );
        // The same person twice is still one person.
        let err = check_unfreeze(&policy, &f, &[alice.clone(), alice.clone()], NOW).unwrap_err();
        assert!(matches!(err, UnfreezeRefused::QuorumNotMet { .. }));
        // Two of the same department do not make up for the other.
        let bob = unfreeze(&keys, "bob", &f);
        assert!(matches!(
            check_unfreeze(&policy, &f, &[alice.clone(), bob], NOW),
            Err(UnfreezeRefused::QuorumNotMet { .. })
        ));
        let carol = unfreeze(&keys, "carol", &f);
        let mut names = check_unfreeze(&policy, &f, &[alice.clone(), carol.clone()], NOW).unwrap();
        names.sort();
        assert_eq!(names, vec!["alice".to_string(), "carol".to_string()]);
    }

    #[test]
    fn an_unfreeze_lifts_only_the_freeze_it_names() {
        let keys = keys();
        let policy = governed(&keys);
        let first = freeze(&keys, "erin", hot(), NOW);
        let second = freeze(&keys, "erin", hot(), NOW + 5);
        let old = [
            unfreeze(&keys, "alice", &first),
            unfreeze(&keys, "carol", &first),
        ];
        assert_eq!(
            check_unfreeze(&policy, &second, &old, NOW + 10),
            Err(UnfreezeRefused::OtherFreeze {
                index: 0,
                scope: "key:hot-1".into()
            })
        );
        let mut forged = unfreeze(&keys, "carol", &second);
        forged.statement.issued_at += 1;
        assert_eq!(
            check_unfreeze(
                &policy,
                &second,
                &[unfreeze(&keys, "alice", &second), forged],
                NOW + 10
            ),
            Err(UnfreezeRefused::BadSignature { index: 1 })
        );
    }

    #[test]
    fn a_malleated_signature_is_the_same_freeze() {
        use p256::elliptic_curve::ops::Neg;
        let keys = keys();
        let f = freeze(&keys, "erin", hot(), NOW);
        let sig = Signature::from_slice(&f.signature).unwrap();
        let (r, s) = sig.split_scalars();
        let flipped = Signature::from_scalars(r, s.neg()).unwrap();
        let mut twin = f.clone();
        twin.signature = flipped.to_bytes().to_vec();
        assert_ne!(twin.signature, f.signature);
        // Whether or not the high-S copy verifies, it names the same freeze,
        // so a lifted freeze cannot come back under another id.
        assert_eq!(twin.id(), f.id());
    }
}
