//! Deciding whether a request may be signed: the one function that the
//! coordinator (to know when a quorum is met) and every signer (before it
//! releases a signature share) both run.
//!
//! [`evaluate`] checks every approval in the bundle strictly — a forged,
//! misattributed, expired or foreign approval is an error, not something
//! silently skipped — then counts distinct approver keys per department
//! against the quorums of the request's amount tier. A valid rejection from
//! any approver is a veto.
//!
//! Signatures are verified through the process's
//! [`verified_signatures`] cache: one P-256
//! verification per approval signature, however many times a request is
//! evaluated; every other rule, the time rules included, is applied afresh
//! by each evaluation.

use std::collections::{BTreeMap, BTreeSet};

use crate::key_id::KeyId;
use crate::policy::{KeyRules, Policy, Quorums};
use crate::request::SigningRequest;
use crate::statement::{Approval, Decision};
use crate::subject::{KeyFacts, Subject, subject};
use crate::verified_signatures;

/// Largest clock difference tolerated for an approval issued "in the future".
pub const CLOCK_SKEW_SECS: u64 = 300;

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every department of the applicable rule has its quorum.
    Approved,
    /// Still needed: department → (distinct approvers so far, required).
    Pending {
        missing: BTreeMap<String, (u32, u32)>,
    },
    /// An approver rejected it; the request can never be signed.
    Rejected {
        approver: String,
        department: String,
        reason: String,
    },
}

/// A rule that a request or an approval breaks. The message names the rule.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Violation {
    #[error("request was made under policy {request}, but this node enforces policy {pinned}")]
    PolicyMismatch { pinned: String, request: String },
    #[error("the policy has no rules for key {0:?}")]
    UnknownKey(KeyId),
    #[error("request expired at {expires_at} (now {now})")]
    RequestExpired { expires_at: u64, now: u64 },
    #[error("request lifetime of {lifetime} s exceeds the policy's request_ttl_secs of {max} s")]
    RequestLifetimeTooLong { lifetime: u64, max: u64 },
    #[error("approval #{index}: signature does not verify")]
    BadSignature { index: usize },
    #[error("approval #{index}: it is for another request")]
    OtherRequest { index: usize },
    #[error(
        "approval #{index}: the approved content differs from this request's message and metadata"
    )]
    ContentMismatch { index: usize },
    #[error("approval #{index}: signed by a key that is not in the policy's roster")]
    UnknownApprover { index: usize },
    #[error("approval #{index}: {approver} belongs to {actual:?}, not {claimed:?}")]
    WrongDepartment {
        index: usize,
        approver: String,
        claimed: String,
        actual: String,
    },
    #[error("approval #{index} by {approver}: expired at {expires_at} (now {now})")]
    ApprovalExpired {
        index: usize,
        approver: String,
        expires_at: u64,
        now: u64,
    },
    #[error(
        "approval #{index} by {approver}: valid for {lifetime} s, more than the policy's approval_ttl_secs of {max} s"
    )]
    ApprovalLifetimeTooLong {
        index: usize,
        approver: String,
        lifetime: u64,
        max: u64,
    },
    #[error("approval #{index} by {approver}: issued in the future")]
    IssuedInFuture { index: usize, approver: String },
    #[error(
        "approval #{index}: {approver} made this request and may not approve it (separation of duties)"
    )]
    RequesterApproved { index: usize, approver: String },
    #[error("statement #{index}: a requester's signature must name no department")]
    RequesterDepartment { index: usize },
    #[error(
        "statement #{index}: the request is signed by a key that is not one of the policy's requesters"
    )]
    UnknownRequester { index: usize },
    #[error(
        "statement #{index}: the request names {claimed:?} as its requester, but it is signed by {signer:?}"
    )]
    RequesterMismatch {
        index: usize,
        claimed: String,
        signer: String,
    },
    #[error("destination {0:?} is not on the key's allowlist")]
    DestinationNotAllowed(String),
    #[error("{0}")]
    Shape(crate::request::ShapeError),
    #[error("key {0:?} is a frost-secp256k1 key: PSBT requests need a bitcoin-taproot key")]
    NotATaprootKey(KeyId),
    #[error("the policy sets no network for key {0:?}: PSBT requests need one")]
    NoNetwork(KeyId),
    #[error("PSBT: {0}")]
    Psbt(ringi_psbt::PsbtError),
    #[error(
        "key {0:?} is a bitcoin-taproot key and the request is a raw message, which would be signed blind; the policy allows no blind signing for this key"
    )]
    BlindSigningNotAllowed(KeyId),
    #[error("the fee of {fee} sat exceeds the key's max_sats of {cap} sat")]
    FeeTooHigh { fee: u64, cap: u64 },
    #[error(
        "the fee rate of {rate} sat/vB (over {vsize} vB) exceeds the key's max_sat_per_vbyte of {cap}"
    )]
    FeeRateTooHigh { rate: u64, vsize: u64, cap: u64 },
}

impl Violation {
    /// The rule's name, for counting refusals by rule (a metric label): a
    /// name from this code, never a value from the request.
    pub fn rule(&self) -> &'static str {
        match self {
            Violation::PolicyMismatch { .. } => "policy_mismatch",
            Violation::UnknownKey(_) => "unknown_key",
            Violation::RequestExpired { .. } => "request_expired",
            Violation::RequestLifetimeTooLong { .. } => "request_lifetime_too_long",
            Violation::BadSignature { .. } => "bad_signature",
            Violation::OtherRequest { .. } => "other_request",
            Violation::ContentMismatch { .. } => "content_mismatch",
            Violation::UnknownApprover { .. } => "unknown_approver",
            Violation::WrongDepartment { .. } => "wrong_department",
            Violation::ApprovalExpired { .. } => "approval_expired",
            Violation::ApprovalLifetimeTooLong { .. } => "approval_lifetime_too_long",
            Violation::IssuedInFuture { .. } => "issued_in_future",
            Violation::RequesterApproved { .. } => "requester_approved",
            Violation::RequesterDepartment { .. } => "requester_department",
            Violation::UnknownRequester { .. } => "unknown_requester",
            Violation::RequesterMismatch { .. } => "requester_mismatch",
            Violation::DestinationNotAllowed(_) => "destination_not_allowed",
            Violation::Shape(_) => "shape",
            Violation::NotATaprootKey(_) => "not_a_taproot_key",
            Violation::NoNetwork(_) => "no_network",
            Violation::Psbt(_) => "psbt",
            Violation::BlindSigningNotAllowed(_) => "blind_signing_not_allowed",
            Violation::FeeTooHigh { .. } => "fee_too_high",
            Violation::FeeRateTooHigh { .. } => "fee_rate_too_high",
        }
    }
}

/// Evaluates `request` for the key described by `key` with `approvals`
/// under `policy` at time `now`. The amount tier and the allowlist apply to
/// the request's [`Subject`]: what a PSBT pays is derived, not declared.
pub fn evaluate(
    policy: &Policy,
    request: &SigningRequest,
    key: &KeyFacts,
    approvals: &[Approval],
    now: u64,
) -> Result<Outcome, Violation> {
    evaluate_subject(policy, request, key, approvals, now).map(|(outcome, _)| outcome)
}

/// [`evaluate`], also returning the [`Subject`] it derived, for callers
/// that keep it (a signer's and the coordinator's approved request): a PSBT
/// is decoded once per evaluation.
pub fn evaluate_subject(
    policy: &Policy,
    request: &SigningRequest,
    key: &KeyFacts,
    approvals: &[Approval],
    now: u64,
) -> Result<(Outcome, Subject), Violation> {
    if request.policy_hash != policy.hash() {
        return Err(Violation::PolicyMismatch {
            pinned: hex::encode(policy.hash()),
            request: hex::encode(request.policy_hash),
        });
    }
    let rules = policy
        .key(&request.key_id)
        .ok_or_else(|| Violation::UnknownKey(request.key_id.clone()))?;
    let lifetime = request.expires_at.saturating_sub(request.created_at);
    if lifetime > rules.request_ttl_secs {
        return Err(Violation::RequestLifetimeTooLong {
            lifetime,
            max: rules.request_ttl_secs,
        });
    }
    if now >= request.expires_at {
        return Err(Violation::RequestExpired {
            expires_at: request.expires_at,
            now,
        });
    }
    let what = subject(rules, request, key)?;
    let quorums = quorums_for(rules, request, &what)?;
    let request_id = request.id();
    let content = request.content_digest();
    let mut approved_by: BTreeMap<&str, BTreeSet<Vec<u8>>> = BTreeMap::new();
    let mut veto = None;
    let mut signed_by_requester = false;
    for (index, approval) in approvals.iter().enumerate() {
        let s = &approval.statement;
        if s.request_id != request_id || s.key_id != request.key_id {
            return Err(Violation::OtherRequest { index });
        }
        if s.content_digest != content {
            return Err(Violation::ContentMismatch { index });
        }
        if s.decision == Decision::Request {
            check_requester_signature(policy, request, approval, index, now)?;
            signed_by_requester = true;
            continue;
        }
        // A roster key's verdict is remembered (one P-256 verification per
        // signature per process, however often the request is evaluated);
        // a stranger's is checked but not remembered, so it cannot evict
        // an approver's. Either way a bad signature is reported first.
        let approver = policy.approver(&approval.approver);
        let valid = match approver {
            Some(_) => approval.signature_valid_in(verified_signatures::shared()),
            None => approval.signature_valid(),
        };
        if !valid {
            return Err(Violation::BadSignature { index });
        }
        let approver = approver.ok_or(Violation::UnknownApprover { index })?;
        let name = approver.name.clone();
        if approver.department != s.department {
            return Err(Violation::WrongDepartment {
                index,
                approver: name,
                claimed: s.department.clone(),
                actual: approver.department.clone(),
            });
        }
        if rules.separation_of_duties && approver.name == request.requester {
            return Err(Violation::RequesterApproved {
                index,
                approver: name,
            });
        }
        if s.issued_at > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(Violation::IssuedInFuture {
                index,
                approver: name,
            });
        }
        let approval_lifetime = s.expires_at.saturating_sub(s.issued_at);
        if approval_lifetime > rules.approval_ttl_secs {
            return Err(Violation::ApprovalLifetimeTooLong {
                index,
                approver: name,
                lifetime: approval_lifetime,
                max: rules.approval_ttl_secs,
            });
        }
        if now >= s.expires_at {
            return Err(Violation::ApprovalExpired {
                index,
                approver: name,
                expires_at: s.expires_at,
                now,
            });
        }
        match s.decision {
            Decision::Reject => {
                veto.get_or_insert((name, approver.department.clone(), s.reason.clone()));
            }
            Decision::Approve => {
                // Counted by key: the same key twice counts once.
                approved_by
                    .entry(approver.department.as_str())
                    .or_default()
                    .insert(approval.approver.to_sec1());
            }
            // Handled before the approver checks.
            Decision::Request => {}
        }
    }
    if let Some((approver, department, reason)) = veto {
        let rejected = Outcome::Rejected {
            approver,
            department,
            reason,
        };
        return Ok((rejected, what));
    }
    let mut missing: BTreeMap<String, (u32, u32)> = quorums
        .iter()
        .filter_map(|(department, need)| {
            let have = approved_by
                .get(department.as_str())
                .map_or(0, |s| s.len() as u32);
            (have < *need).then(|| (department.clone(), (have, *need)))
        })
        .collect();
    if rules.signed_requests && !signed_by_requester {
        missing.insert(REQUESTER_SIGNATURE.to_string(), (0, 1));
    }
    let outcome = if missing.is_empty() {
        Outcome::Approved
    } else {
        Outcome::Pending { missing }
    };
    Ok((outcome, what))
}

/// What a pending request of a `signed_requests` key lacks until its
/// requester signs it (shown with the departments' quorums).
pub const REQUESTER_SIGNATURE: &str = "requester's signature";

/// Checks statement `index`, a `request` statement: signed (verified once
/// per process) by a key of the policy's requesters whose name is the
/// request's requester, naming no department, not issued in the future.
/// Its request id binds it to every field of the request, so its own
/// validity period is not a rule: it proves who asked for the request as
/// long as the request lives.
fn check_requester_signature(
    policy: &Policy,
    request: &SigningRequest,
    approval: &Approval,
    index: usize,
    now: u64,
) -> Result<(), Violation> {
    let s = &approval.statement;
    let requester = policy.requester(&approval.approver);
    let valid = match requester {
        Some(_) => approval.signature_valid_in(verified_signatures::shared()),
        None => approval.signature_valid(),
    };
    if !valid {
        return Err(Violation::BadSignature { index });
    }
    let requester = requester.ok_or(Violation::UnknownRequester { index })?;
    if !s.department.is_empty() {
        return Err(Violation::RequesterDepartment { index });
    }
    if requester.name != request.requester {
        return Err(Violation::RequesterMismatch {
            index,
            claimed: request.requester.clone(),
            signer: requester.name.clone(),
        });
    }
    if s.issued_at > now.saturating_add(CLOCK_SKEW_SECS) {
        return Err(Violation::IssuedInFuture {
            index,
            approver: requester.name.clone(),
        });
    }
    Ok(())
}

/// The quorums a request moving `what` needs under its key's `rules`: the
/// blind-signing quorum for a blind message, else the amount tier's,
/// raised for destinations off the allowlist.
pub fn quorums_for(
    rules: &KeyRules,
    request: &SigningRequest,
    what: &Subject,
) -> Result<Quorums, Violation> {
    match what {
        Subject::Blind => rules
            .blind_signing
            .clone()
            .ok_or_else(|| Violation::BlindSigningNotAllowed(request.key_id.clone())),
        spend => rules
            .quorums_for_all(spend.amount(), &spend.destinations())
            .map_err(Violation::DestinationNotAllowed),
    }
}

/// Describes what a pending request still needs, e.g.
/// "compliance 0 of 1, treasury 1 of 2".
pub fn describe_missing(missing: &BTreeMap<String, (u32, u32)>) -> String {
    missing
        .iter()
        .map(|(d, (have, need))| format!("{d} {have} of {need}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approver_key::ApproverKey;
    use crate::policy::tests::{HOT, Keys, keys, policy_text};
    use crate::request::tests::sample;
    use crate::statement::Statement;
    use p256::ecdsa::Signature;
    use p256::ecdsa::signature::Signer;

    const NOW: u64 = 1_800_000_100;

    struct Fixture {
        keys: Keys,
        policy: Policy,
        request: SigningRequest,
    }

    fn fixture() -> Fixture {
        let keys = keys();
        let policy = Policy::from_bytes(policy_text(&keys, HOT).as_bytes()).unwrap();
        let mut request = sample();
        request.policy_hash = policy.hash();
        request.metadata.amount = 1_000;
        Fixture {
            keys,
            policy,
            request,
        }
    }

    impl Fixture {
        fn sign(&self, who: &str, department: &str, decision: Decision) -> Approval {
            self.sign_statement(
                who,
                Statement::for_request(
                    &self.request,
                    department,
                    decision,
                    "",
                    NOW - 10,
                    NOW + 600,
                ),
            )
        }

        fn sign_statement(&self, who: &str, statement: Statement) -> Approval {
            let approver = ApproverKey::parse(&self.keys.public(who)).unwrap();
            let sig: Signature = self
                .keys
                .secret(who)
                .sign(&statement.signed_bytes(&approver));
            Approval {
                statement,
                approver,
                signature: sig.to_bytes().to_vec(),
            }
        }

        fn eval(&self, approvals: &[Approval]) -> Result<Outcome, Violation> {
            evaluate(
                &self.policy,
                &self.request,
                &KeyFacts::FrostSecp256k1,
                approvals,
                NOW,
            )
        }
    }

    #[test]
    fn approved_only_when_every_department_has_its_quorum() {
        let f = fixture();
        let alice = f.sign("alice", "treasury", Decision::Approve);
        let carol = f.sign("carol", "compliance", Decision::Approve);
        assert_eq!(f.eval(&[alice.clone(), carol]), Ok(Outcome::Approved));
        match f.eval(&[alice]) {
            Ok(Outcome::Pending { missing }) => {
                assert_eq!(describe_missing(&missing), "compliance 0 of 1")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(f.eval(&[]), Ok(Outcome::Pending { .. })));
    }

    #[test]
    fn only_a_roster_approvers_verified_signature_is_remembered() {
        let f = fixture();
        let shared = verified_signatures::shared();
        let remembered = |a: &Approval| {
            shared.remembers(
                &a.approver,
                &a.statement.signed_bytes(&a.approver),
                &a.signature,
            )
        };
        let alice = f.sign("alice", "treasury", Decision::Approve);
        assert!(!remembered(&alice), "a fresh signature");
        assert!(matches!(
            f.eval(std::slice::from_ref(&alice)),
            Ok(Outcome::Pending { .. })
        ));
        assert!(remembered(&alice));
        // Evaluated again, the verdict comes from memory (other tests share
        // the cache, so its hits grow by at least this one).
        let hits = shared.stats().hits;
        assert!(matches!(
            f.eval(std::slice::from_ref(&alice)),
            Ok(Outcome::Pending { .. })
        ));
        assert!(shared.stats().hits > hits);
        // The remembered verdict does not outlive the approval: the time
        // rules still apply at every evaluation.
        let late = alice.statement.expires_at;
        assert!(matches!(
            evaluate(
                &f.policy,
                &f.request,
                &KeyFacts::FrostSecp256k1,
                std::slice::from_ref(&alice),
                late
            ),
            Err(Violation::ApprovalExpired { .. })
        ));
        // A validly signed approval by a key outside the roster is refused
        // and not remembered.
        let mallory = f.sign("mallory", "treasury", Decision::Approve);
        assert!(mallory.signature_valid());
        assert_eq!(
            f.eval(std::slice::from_ref(&mallory)),
            Err(Violation::UnknownApprover { index: 0 })
        );
        assert!(!remembered(&mallory));
        // Nor is a bad signature by a roster key, however often presented.
        let mut forged = alice.clone();
        forged.statement.reason = "edited".into();
        for _ in 0..2 {
            assert_eq!(
                f.eval(std::slice::from_ref(&forged)),
                Err(Violation::BadSignature { index: 0 })
            );
            assert!(!remembered(&forged));
        }
    }

    #[test]
    fn the_same_key_twice_counts_once() {
        let mut f = fixture();
        f.request.metadata.amount = 200_000_000; // tier: treasury 2, compliance 1, security 1
        let a1 = f.sign("alice", "treasury", Decision::Approve);
        let a2 = f.sign("alice", "treasury", Decision::Approve);
        let carol = f.sign("carol", "compliance", Decision::Approve);
        let erin = f.sign("erin", "security", Decision::Approve);
        match f.eval(&[a1.clone(), a2, carol.clone(), erin.clone()]) {
            Ok(Outcome::Pending { missing }) => {
                assert_eq!(describe_missing(&missing), "treasury 1 of 2")
            }
            other => panic!("{other:?}"),
        }
        let bob = f.sign("bob", "treasury", Decision::Approve);
        assert_eq!(f.eval(&[a1, bob, carol, erin]), Ok(Outcome::Approved));
    }

    #[test]
    fn above_the_tier_the_base_quorum_is_not_enough() {
        let mut f = fixture();
        f.request.metadata.amount = 100_000_001;
        let approvals = [
            f.sign("alice", "treasury", Decision::Approve),
            f.sign("carol", "compliance", Decision::Approve),
        ];
        match f.eval(&approvals) {
            Ok(Outcome::Pending { missing }) => assert_eq!(
                describe_missing(&missing),
                "security 0 of 1, treasury 1 of 2"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_rejection_is_a_veto() {
        let f = fixture();
        let mut no = f.sign_statement(
            "dave",
            Statement::for_request(
                &f.request,
                "compliance",
                Decision::Reject,
                "unknown destination",
                NOW - 5,
                NOW + 60,
            ),
        );
        let approvals = [
            f.sign("alice", "treasury", Decision::Approve),
            f.sign("carol", "compliance", Decision::Approve),
            no.clone(),
        ];
        assert_eq!(
            f.eval(&approvals),
            Ok(Outcome::Rejected {
                approver: "dave".into(),
                department: "compliance".into(),
                reason: "unknown destination".into()
            })
        );
        // Changing the reason after signing breaks the signature.
        no.statement.reason = "ok after all".into();
        assert_eq!(f.eval(&[no]), Err(Violation::BadSignature { index: 0 }));
    }

    #[test]
    fn every_refusal_names_its_rule() {
        let f = fixture();
        // Forged: signed by mallory, who is not in the roster.
        let forged = f.sign("mallory", "treasury", Decision::Approve);
        assert_eq!(
            f.eval(&[forged]),
            Err(Violation::UnknownApprover { index: 0 })
        );
        // Signature from one key attributed to another.
        let mut stolen = f.sign("mallory", "treasury", Decision::Approve);
        stolen.approver = ApproverKey::parse(&f.keys.public("alice")).unwrap();
        assert_eq!(f.eval(&[stolen]), Err(Violation::BadSignature { index: 0 }));
        // Key in the wrong department.
        let wrong = f.sign("erin", "treasury", Decision::Approve);
        assert!(
            matches!(f.eval(&[wrong]), Err(Violation::WrongDepartment { ref actual, .. }) if actual == "security")
        );
        // Expired approval.
        let old = f.sign_statement(
            "alice",
            Statement::for_request(
                &f.request,
                "treasury",
                Decision::Approve,
                "",
                NOW - 700,
                NOW - 100,
            ),
        );
        assert!(matches!(
            f.eval(&[old]),
            Err(Violation::ApprovalExpired { .. })
        ));
        // Approval valid for longer than the policy allows.
        let long = f.sign_statement(
            "alice",
            Statement::for_request(
                &f.request,
                "treasury",
                Decision::Approve,
                "",
                NOW,
                NOW + 3601,
            ),
        );
        assert!(matches!(
            f.eval(&[long]),
            Err(Violation::ApprovalLifetimeTooLong { .. })
        ));
        // Approval issued in the future.
        let future = f.sign_statement(
            "alice",
            Statement::for_request(
                &f.request,
                "treasury",
                Decision::Approve,
                "",
                NOW + 1000,
                NOW + 1100,
            ),
        );
        assert!(matches!(
            f.eval(&[future]),
            Err(Violation::IssuedInFuture { .. })
        ));
        // Approval for another request, replayed.
        let mut other_request = f.request.clone();
        other_request.metadata.destination = "bc1qattacker".into();
        let other = f.sign_statement(
            "alice",
            Statement::for_request(
                &other_request,
                "treasury",
                Decision::Approve,
                "",
                NOW,
                NOW + 60,
            ),
        );
        assert_eq!(f.eval(&[other]), Err(Violation::OtherRequest { index: 0 }));
        // Message altered after approval: the request id changes.
        let approvals = [f.sign("alice", "treasury", Decision::Approve)];
        let mut altered = f.request.clone();
        altered.message[0] ^= 1;
        assert_eq!(
            evaluate(
                &f.policy,
                &altered,
                &KeyFacts::FrostSecp256k1,
                &approvals,
                NOW
            ),
            Err(Violation::OtherRequest { index: 0 })
        );
        // Expired request.
        assert!(matches!(
            evaluate(
                &f.policy,
                &f.request,
                &KeyFacts::FrostSecp256k1,
                &[],
                f.request.expires_at
            ),
            Err(Violation::RequestExpired { .. })
        ));
        // Another policy.
        let mut foreign = f.request.clone();
        foreign.policy_hash = [0; 32];
        assert!(matches!(
            evaluate(&f.policy, &foreign, &KeyFacts::FrostSecp256k1, &[], NOW),
            Err(Violation::PolicyMismatch { .. })
        ));
        // Unknown key.
        let mut unknown = f.request.clone();
        unknown.key_id = "cold-9".parse().unwrap();
        assert_eq!(
            evaluate(&f.policy, &unknown, &KeyFacts::FrostSecp256k1, &[], NOW),
            Err(Violation::UnknownKey("cold-9".parse().unwrap()))
        );
    }

    #[test]
    fn the_requester_cannot_approve() {
        let mut f = fixture();
        f.request.requester = "alice".into();
        let own = f.sign("alice", "treasury", Decision::Approve);
        assert!(
            matches!(f.eval(&[own]), Err(Violation::RequesterApproved { ref approver, .. }) if approver == "alice")
        );
    }

    /// Times at the end of the u64 range (a request a fuzzer or a broken
    /// clock can make) give verdicts, not an overflow.
    #[test]
    fn times_at_the_end_of_the_range_do_not_overflow() {
        let mut f = fixture();
        f.request.created_at = u64::MAX - 100;
        f.request.expires_at = u64::MAX;
        let now = u64::MAX - 50;
        let alice = f.sign_statement(
            "alice",
            Statement::for_request(
                &f.request,
                "treasury",
                Decision::Approve,
                "",
                u64::MAX - 60,
                u64::MAX,
            ),
        );
        let carol = f.sign_statement(
            "carol",
            Statement::for_request(
                &f.request,
                "compliance",
                Decision::Approve,
                "",
                u64::MAX - 60,
                u64::MAX,
            ),
        );
        assert_eq!(
            evaluate(
                &f.policy,
                &f.request,
                &KeyFacts::FrostSecp256k1,
                &[alice, carol],
                now
            ),
            Ok(Outcome::Approved)
        );
    }
}
