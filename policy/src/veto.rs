//! Direct rejections: an approver's rejection of a request, sent to every
//! signer by the approver's CLI as well as to the coordinator, so that a
//! coordinator which leaves the rejection out of the bundle still cannot
//! get the request signed (issue 14: "a rejection can be dropped").
//!
//! The statement is the approval statement of [`crate::statement`] with the
//! decision `reject`: the same bytes the coordinator receives. A signer
//! does not know the request (only its id, key and content digest), so it
//! checks what it can ([`check_veto`]) and then refuses, for good, any
//! bundle whose request has that id (`crate::holds`).

use crate::evaluate::CLOCK_SKEW_SECS;
use crate::key_id::KeyId;
use crate::policy::Policy;
use crate::statement::{Approval, Decision};

/// A rejection a signer has accepted: who vetoed which request, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veto {
    pub request_id: [u8; 32],
    pub key_id: KeyId,
    pub approver: String,
    pub department: String,
    pub reason: String,
}

/// Why a direct rejection is refused. Each variant names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VetoRefused {
    #[error("the statement approves: only a rejection can be sent to the signers")]
    NotARejection,
    #[error("the rejection's signature does not verify")]
    BadSignature,
    #[error("the rejection is signed by a key that is not in the policy's roster")]
    UnknownApprover,
    #[error("{approver} belongs to {actual:?}, not {claimed:?}")]
    WrongDepartment {
        approver: String,
        claimed: String,
        actual: String,
    },
    #[error("the policy has no rules for key {0:?}")]
    UnknownKey(KeyId),
    #[error("the rejection by {approver} is issued in the future")]
    IssuedInFuture { approver: String },
    #[error("the rejection by {approver} expired at {expires_at} (now {now})")]
    Expired {
        approver: String,
        expires_at: u64,
        now: u64,
    },
}

/// Checks a rejection presented directly at `now` under `policy`: a
/// rejection, signed by an approver of the roster for the department it
/// names, for a key of the policy, and within its validity when presented
/// (once accepted, a veto stands for good: a rejected request never
/// becomes signable, as with the coordinator).
pub fn check_veto(policy: &Policy, rejection: &Approval, now: u64) -> Result<Veto, VetoRefused> {
    let s = &rejection.statement;
    if s.decision != Decision::Reject {
        return Err(VetoRefused::NotARejection);
    }
    if !rejection.signature_valid() {
        return Err(VetoRefused::BadSignature);
    }
    let approver = policy
        .approver(&rejection.approver)
        .ok_or(VetoRefused::UnknownApprover)?;
    if approver.department != s.department {
        return Err(VetoRefused::WrongDepartment {
            approver: approver.name.clone(),
            claimed: s.department.clone(),
            actual: approver.department.clone(),
        });
    }
    if policy.key(&s.key_id).is_none() {
        return Err(VetoRefused::UnknownKey(s.key_id.clone()));
    }
    if s.issued_at > now.saturating_add(CLOCK_SKEW_SECS) {
        return Err(VetoRefused::IssuedInFuture {
            approver: approver.name.clone(),
        });
    }
    if now >= s.expires_at {
        return Err(VetoRefused::Expired {
            approver: approver.name.clone(),
            expires_at: s.expires_at,
            now,
        });
    }
    Ok(Veto {
        request_id: s.request_id,
        key_id: s.key_id.clone(),
        approver: approver.name.clone(),
        department: approver.department.clone(),
        reason: s.reason.clone(),
    })
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

    fn signed(keys: &Keys, who: &str, statement: Statement) -> Approval {
        let approver = ApproverKey::parse(&keys.public(who)).unwrap();
        let sig: Signature = keys.secret(who).sign(&statement.signed_bytes(&approver));
        Approval {
            statement,
            approver,
            signature: sig.to_bytes().to_vec(),
        }
    }

    #[test]
    fn an_approvers_fresh_rejection_is_a_veto() {
        let keys = keys();
        let policy = Policy::from_bytes(policy_text(&keys, HOT).as_bytes()).unwrap();
        let mut request = sample();
        request.policy_hash = policy.hash();
        let statement = |d, dept: &str, from, to| {
            Statement::for_request(&request, dept, d, "not ours", from, to)
        };
        let veto = check_veto(
            &policy,
            &signed(
                &keys,
                "carol",
                statement(Decision::Reject, "compliance", NOW, NOW + 60),
            ),
            NOW,
        )
        .unwrap();
        assert_eq!(veto.request_id, request.id());
        assert_eq!(veto.approver, "carol");
        assert_eq!(veto.department, "compliance");
        assert_eq!(veto.reason, "not ours");

        let approve = signed(
            &keys,
            "carol",
            statement(Decision::Approve, "compliance", NOW, NOW + 60),
        );
        assert_eq!(
            check_veto(&policy, &approve, NOW),
            Err(VetoRefused::NotARejection)
        );
        let mallory = signed(
            &keys,
            "mallory",
            statement(Decision::Reject, "compliance", NOW, NOW + 60),
        );
        assert_eq!(
            check_veto(&policy, &mallory, NOW),
            Err(VetoRefused::UnknownApprover)
        );
        let mut forged = signed(
            &keys,
            "carol",
            statement(Decision::Reject, "compliance", NOW, NOW + 60),
        );
        forged.statement.reason = "edited".into();
        assert_eq!(
            check_veto(&policy, &forged, NOW),
            Err(VetoRefused::BadSignature)
        );
        let wrong = signed(
            &keys,
            "carol",
            statement(Decision::Reject, "treasury", NOW, NOW + 60),
        );
        assert!(matches!(
            check_veto(&policy, &wrong, NOW),
            Err(VetoRefused::WrongDepartment { .. })
        ));
        let expired = signed(
            &keys,
            "carol",
            statement(Decision::Reject, "compliance", NOW - 120, NOW - 60),
        );
        assert!(matches!(
            check_veto(&policy, &expired, NOW),
            Err(VetoRefused::Expired { .. })
        ));
        let future = signed(
            &keys,
            "carol",
            statement(Decision::Reject, "compliance", NOW + 1000, NOW + 1060),
        );
        assert!(matches!(
            check_veto(&policy, &future, NOW),
            Err(VetoRefused::IssuedInFuture { .. })
        ));
    }
}
