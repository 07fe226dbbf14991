//! Decide: an approver's signed approval or rejection. [`apply`] (pure)
//! checks it exactly as the signers will and says what it changes;
//! [`decide`] records the decision and that change as one compare-and-set,
//! and starts the signing round when the quorum is met.

use std::sync::Arc;

use ringi_policy::evaluate::{Outcome, describe_missing, evaluate};
use ringi_policy::policy::Policy;
use ringi_policy::statement::{Approval, Decision};
use ringi_policy::subject::KeyFacts;

use crate::coordinator::Coordinator;
use crate::error::{Error, Result};
use crate::phases::{self, Phase};
use crate::request_state::{Event, State, Transition, next};
use crate::request_store::RequestRecord;
use crate::store_writer;

/// What a valid decision does to its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionEffect {
    /// The decision, to record.
    pub approval: Approval,
    /// The state change it causes with the earlier valid approvals: the
    /// quorum met, or a veto; `None` while approvals are still missing.
    pub transition: Option<Transition>,
}

impl DecisionEffect {
    /// Whether this decision completes the quorum (the signing round
    /// starts).
    pub fn meets_quorum(&self) -> bool {
        // An approval, or the requester's signature arriving last.
        self.approval.statement.decision != Decision::Reject
            && self
                .transition
                .as_ref()
                .is_some_and(|t| t.to() == State::Approved)
    }
}

/// Checks `approval` against `record` (a request for the key described by
/// `key`) under `policy` at `now`: the request must still be
/// PENDING_APPROVAL and not past its expiry, the approver must not have
/// decided yet, and the approval alone must pass every rule of the policy
/// (signature, roster, department, separation of duties, times). Then it
/// counts with the earlier approvals still valid at `now`, and the outcome
/// says whether the request changes state.
pub fn apply(
    policy: &Policy,
    key: &KeyFacts,
    record: &RequestRecord,
    approval: Approval,
    now: u64,
) -> Result<DecisionEffect> {
    let request = record.id;
    match record.state {
        State::PendingApproval if now < record.request.expires_at => {}
        State::PendingApproval | State::Expired => {
            return Err(Error::Expired {
                request,
                at: record.request.expires_at,
            });
        }
        state => return Err(Error::AlreadyDecided { request, state }),
    }
    // One decision per approver at a time; an approval that expired before
    // the quorum was met can be renewed (it no longer counts), or a
    // one-person department could never complete the request.
    if record
        .approvals
        .iter()
        .any(|a| a.approver == approval.approver && a.statement.expires_at > now)
    {
        return Err(Error::DuplicateDecision {
            request,
            approver: approval.approver.to_text(),
        });
    }
    // The new approval alone must pass every rule...
    evaluate(
        policy,
        &record.request,
        key,
        std::slice::from_ref(&approval),
        now,
    )?;
    // ...then it counts with the earlier ones that are still valid.
    let mut valid = record.valid_approvals(now);
    valid.push(approval.clone());
    let outcome = evaluate(policy, &record.request, key, &valid, now)
        .map_err(|violation| Error::Inconsistent { request, violation })?;
    let event = match outcome {
        Outcome::Approved => Some(Event::QuorumMet),
        Outcome::Rejected {
            approver,
            department,
            reason,
        } => Some(Event::Vetoed {
            approver,
            department,
            reason,
        }),
        Outcome::Pending { .. } => None,
    };
    let transition = event.map(|e| next(State::PendingApproval, e)).transpose()?;
    Ok(DecisionEffect {
        approval,
        transition,
    })
}

/// Records a signed approval or rejection (decoded at the edge).
///
/// One hop to the store: the request is read inside the write, where the
/// decision is judged ([`apply`]) against it as it stands. Only a request
/// whose expiry is due (or whose policy was replaced), or an approval that
/// names another key than its request's, takes a second hop: the request
/// is read first, which expires it, and then judged as before.
pub async fn decide(c: &Arc<Coordinator>, approval: Approval) -> Result<RequestRecord> {
    c.policy()?;
    let id = approval.statement.request_id;
    if approval.statement.decision == Decision::Reject && crate::fault::drops_rejections() {
        tracing::warn!("RINGI_TEST_FAULT: dropping a rejection");
        return super::get(c, id).await;
    }
    // The key the statement names; a statement naming another key than its
    // request's is refused by the evaluation, on the slow path below.
    let mut key = c.key(&approval.statement.key_id).await.ok();
    let mut attempts = 0;
    let (effect, updated) = loop {
        attempts += 1;
        match record(c, &approval, key.clone()).await? {
            Recorded::Written(written) => break *written,
            // The very same signed statement again (a client retrying after
            // a timeout, or a concurrent copy written first): it is
            // recorded already; answer with the request as it is.
            Recorded::Already(current) => return Ok(*current),
            Recorded::ReadFirst if attempts == 1 => {
                let current = super::get(c, id).await?;
                key = Some(c.key(&current.request.key_id).await?);
            }
            Recorded::ReadFirst => {
                return Err(Error::Internal(format!(
                    "request {}: the decision could not be judged after the request was read",
                    hex::encode(id)
                )));
            }
        }
    };
    let policy = c.policy_for(&updated.request)?;
    let approval = &effect.approval;
    let short = hex::encode(id);
    let who = policy
        .approver(&approval.approver)
        .map(|a| a.name.clone())
        .or_else(|| policy.requester(&approval.approver).map(|r| r.name.clone()))
        .unwrap_or_default();
    c.publish(&updated);
    crate::metrics::approval(approval.statement.decision);
    if let Some(t) = &effect.transition {
        crate::metrics::transition(t.to());
    }
    crate::fault::crash_point("after-decision");
    phases::time(Phase::AuditWrite, || {
        c.audit(
            "decision_recorded",
            &[
                ("request_id", short.clone()),
                ("approver", who.clone()),
                ("approver_key", approval.approver.to_text()),
                ("issued_at", approval.statement.issued_at.to_string()),
                ("department", approval.statement.department.clone()),
                ("decision", approval.statement.decision.as_str().to_string()),
                ("reason", approval.statement.reason.clone()),
                ("state", updated.state.as_str().to_string()),
            ],
        )
    });
    tracing::info!(
        request_id = %short,
        approver = %who,
        department = %approval.statement.department,
        decision = approval.statement.decision.as_str(),
        state = %updated.state,
        "decision recorded"
    );
    if effect.meets_quorum() && updated.state == State::Approved {
        let c = c.clone();
        let approved = updated.clone();
        tokio::spawn(async move { super::run_signing_approved(&c, approved).await });
    }
    Ok(updated)
}

/// What one hop to the store did with a decision.
enum Recorded {
    /// Recorded, with its effect and the request as written.
    Written(Box<(DecisionEffect, RequestRecord)>),
    /// This very statement was recorded before: nothing was written.
    Already(Box<RequestRecord>),
    /// Nothing written: the request must be read (and so expired, if due)
    /// before the decision is judged, or the approval names another key.
    ReadFirst,
}

/// Records `approval` if it passes [`apply`] against the request as it
/// stands inside the write, judged by the request's policy and `key` (the
/// key the caller expects the request to be for).
async fn record(
    c: &Arc<Coordinator>,
    approval: &Approval,
    key: Option<Arc<crate::signing::Key>>,
) -> Result<Recorded> {
    let id = approval.statement.request_id;
    let now = super::now();
    let requests = c.requests.clone();
    let store = requests.clone();
    let c = c.clone();
    let approval = approval.clone();
    store_writer::write(&requests, move || {
        let mut effect = None;
        let mut instead = None;
        // Not an error of the decision: stops the write, and `instead`
        // says why.
        let stop = || Error::Internal("decision not written".into());
        let written = store.record_decision_with(
            &id,
            &mut |current| {
                // Called again if the engine retries the transaction: only
                // the last call's verdict counts.
                instead = None;
                if current.approvals.contains(&approval) {
                    instead = Some(Recorded::Already(Box::new(current.clone())));
                    return Err(stop());
                }
                let facts = match &key {
                    Some(k) if k.record().key_id == current.request.key_id => k.facts(),
                    _ => {
                        instead = Some(Recorded::ReadFirst);
                        return Err(stop());
                    }
                };
                // Judged by the policy the request is judged by (its own
                // where the policy in force keeps such requests).
                let policy = c.policy_for(&current.request)?;
                if super::expiry(current, now).is_some()
                    || super::superseded(current, &policy).is_some()
                {
                    instead = Some(Recorded::ReadFirst);
                    return Err(stop());
                }
                // Evaluated here, against the request as it is inside the
                // write: an approval recorded a moment ago by a concurrent
                // Decide counts, so a quorum completed by two simultaneous
                // approvals is always seen by the second one written.
                let e = phases::time(Phase::ApprovalCheck, || {
                    apply(&policy, &facts, current, approval.clone(), now)
                })?;
                let written = (e.approval.clone(), e.transition.clone());
                effect = Some(e);
                Ok(written)
            },
            now,
        );
        if let Some(instead) = instead {
            return Ok(instead);
        }
        let updated = written?;
        // The store calls `decide` once before it writes anything.
        let effect = effect.ok_or_else(|| {
            Error::Internal("the decision was recorded without being evaluated".into())
        })?;
        Ok(Recorded::Written(Box::new((effect, updated))))
    })
    .await
}

/// What a pending request for the key described by `key` still needs at
/// `now`, per department: (name, distinct approvers so far, required).
/// Empty without a policy or once the request is no longer pending.
pub fn still_needed(
    policy: Option<&Policy>,
    key: &KeyFacts,
    record: &RequestRecord,
    now: u64,
) -> Vec<(String, u32, u32)> {
    let Some(policy) = policy else {
        return Vec::new();
    };
    if record.state != State::PendingApproval {
        return Vec::new();
    }
    match evaluate(
        policy,
        &record.request,
        key,
        &record.valid_approvals(now),
        now,
    ) {
        Ok(Outcome::Pending { missing }) => missing
            .into_iter()
            .map(|(d, (have, need))| (d, have, need))
            .collect(),
        _ => Vec::new(),
    }
}

/// e.g. "compliance 0 of 1" for logs and the CLI.
pub fn describe(needed: &[(String, u32, u32)]) -> String {
    describe_missing(
        &needed
            .iter()
            .map(|(d, h, n)| (d.clone(), (*h, *n)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::fixture::{Fixture, NOW, fixture};
    use ringi_policy::statement::Statement;
    use tonic::Code;

    fn pending(f: &Fixture, approvals: Vec<Approval>) -> RequestRecord {
        let request = f.request();
        RequestRecord {
            id: request.id(),
            request,
            signers: Vec::new(),
            state: State::PendingApproval,
            state_reason: "submitted".into(),
            signature: None,
            signed_transaction: None,
            approvals,
            transitions: Vec::new(),
        }
    }

    #[test]
    fn the_last_missing_approval_meets_the_quorum() {
        let f = fixture();
        let r = f.request();
        let alice = f.decide(&r, "alice", "treasury", Decision::Approve);
        let effect = apply(
            &f.policy,
            &KeyFacts::FrostSecp256k1,
            &pending(&f, vec![]),
            alice.clone(),
            NOW,
        )
        .unwrap();
        assert_eq!(effect.transition, None);
        assert!(!effect.meets_quorum());
        assert_eq!(
            describe(&still_needed(
                Some(&f.policy),
                &KeyFacts::FrostSecp256k1,
                &pending(&f, vec![alice.clone()]),
                NOW
            )),
            "compliance 0 of 1"
        );

        let carol = f.decide(&r, "carol", "compliance", Decision::Approve);
        let effect = apply(
            &f.policy,
            &KeyFacts::FrostSecp256k1,
            &pending(&f, vec![alice]),
            carol.clone(),
            NOW,
        )
        .unwrap();
        let t = effect.transition.clone().unwrap();
        assert_eq!(
            (t.from(), t.to()),
            (State::PendingApproval, State::Approved)
        );
        assert_eq!(t.reason(), "quorum met");
        assert!(effect.meets_quorum());
        assert_eq!(effect.approval, carol);
    }

    #[test]
    fn a_rejection_is_a_veto_with_its_reason() {
        let f = fixture();
        let r = f.request();
        let mut statement = Statement::for_request(
            &r,
            "compliance",
            Decision::Reject,
            "sanctioned address",
            NOW - 5,
            NOW + 60,
        );
        statement.reason = "sanctioned address".into();
        let dave = f.sign("dave", statement);
        let alice = f.decide(&r, "alice", "treasury", Decision::Approve);
        let effect = apply(
            &f.policy,
            &KeyFacts::FrostSecp256k1,
            &pending(&f, vec![alice]),
            dave,
            NOW,
        )
        .unwrap();
        let t = effect.transition.clone().unwrap();
        assert_eq!(t.to(), State::Rejected);
        assert_eq!(
            t.reason(),
            "rejected by dave (compliance): sanctioned address"
        );
        assert!(!effect.meets_quorum());
    }

    #[test]
    fn expired_approvals_no_longer_count() {
        let f = fixture();
        let r = f.request();
        let old = f.sign(
            "alice",
            Statement::for_request(&r, "treasury", Decision::Approve, "", NOW - 700, NOW - 100),
        );
        let carol = f.decide(&r, "carol", "compliance", Decision::Approve);
        let effect = apply(
            &f.policy,
            &KeyFacts::FrostSecp256k1,
            &pending(&f, vec![old]),
            carol,
            NOW,
        )
        .unwrap();
        assert_eq!(effect.transition, None, "alice's approval expired");
    }

    #[test]
    fn an_expired_approval_can_be_renewed_and_no_longer_counts() {
        let f = fixture();
        let r = f.request();
        // alice's first approval lapsed at NOW - 1.
        let lapsed = f.sign(
            "alice",
            Statement::for_request(&r, "treasury", Decision::Approve, "", NOW - 100, NOW - 1),
        );
        let carol = f.decide(&r, "carol", "compliance", Decision::Approve);
        let record = pending(&f, vec![lapsed]);
        let effect = apply(
            &f.policy,
            &KeyFacts::FrostSecp256k1,
            &record,
            carol.clone(),
            NOW,
        )
        .unwrap();
        assert_eq!(
            effect.transition, None,
            "the lapsed approval does not count"
        );
        let record = pending(&f, vec![record.approvals[0].clone(), carol]);
        let renewed = f.decide(&r, "alice", "treasury", Decision::Approve);
        let effect = apply(&f.policy, &KeyFacts::FrostSecp256k1, &record, renewed, NOW).unwrap();
        assert!(effect.meets_quorum());
    }

    #[test]
    fn refusals_carry_meaning_and_their_codes() {
        let f = fixture();
        let r = f.request();
        let alice = f.decide(&r, "alice", "treasury", Decision::Approve);

        let e = apply(
            &f.policy,
            &KeyFacts::FrostSecp256k1,
            &pending(&f, vec![alice.clone()]),
            alice.clone(),
            NOW,
        )
        .unwrap_err();
        assert!(matches!(e, Error::DuplicateDecision { .. }), "{e}");
        assert_eq!(e.code(), Code::AlreadyExists);
        assert!(e.to_string().contains("has already decided"), "{e}");

        let mut decided = pending(&f, vec![]);
        decided.state = State::Approved;
        let e = apply(
            &f.policy,
            &KeyFacts::FrostSecp256k1,
            &decided,
            alice.clone(),
            NOW,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::AlreadyDecided {
                    state: State::Approved,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.to_string().contains("already decided"), "{e}");

        for state in [State::PendingApproval, State::Expired] {
            let mut expired = pending(&f, vec![]);
            expired.state = state;
            let at = expired.request.expires_at;
            let e = apply(
                &f.policy,
                &KeyFacts::FrostSecp256k1,
                &expired,
                alice.clone(),
                at,
            )
            .unwrap_err();
            assert!(matches!(e, Error::Expired { .. }), "{e}");
            assert_eq!(e.code(), Code::FailedPrecondition);
            assert!(e.to_string().contains("has expired"), "{e}");
        }

        let wrong_department = f.decide(&r, "alice", "compliance", Decision::Approve);
        let e = apply(
            &f.policy,
            &KeyFacts::FrostSecp256k1,
            &pending(&f, vec![]),
            wrong_department,
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(
            e.to_string()
                .contains("alice belongs to \"treasury\", not \"compliance\""),
            "{e}"
        );
        let stranger = f.decide(&r, "mallory", "treasury", Decision::Approve);
        let e = apply(
            &f.policy,
            &KeyFacts::FrostSecp256k1,
            &pending(&f, vec![]),
            stranger,
            NOW,
        )
        .unwrap_err();
        assert!(matches!(e, Error::PolicyViolation(_)), "{e}");
        assert!(e.to_string().contains("not in the policy's roster"), "{e}");
    }
}
