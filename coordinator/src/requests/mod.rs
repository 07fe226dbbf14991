//! The request flow on the coordinator, one module per command:
//! [`submit`](mod@submit) (record a request), [`decide`](mod@decide) (approve or reject), [`sign`]
//! (the signing round once the quorum is met), [`retry`](mod@retry) (an
//! administrator sends a FAILED request back), [`sweep`](mod@sweep) (the
//! periodic expiry and resumption), and here: reading a request (expiring
//! it first if its time has passed).
//!
//! Each command is a pure function over domain values — `submit::admit`,
//! `decide::apply`, [`expiry`] — that unit tests and fuzz targets call
//! without a network or a database, and an async function that loads what
//! it needs, applies the pure step, records the result through the stores
//! and tells watchers. Wire types stay at the edges (`service.rs` decodes
//! and encodes; the signing engine talks to signers).
//!
//! The coordinator checks every approval with the same
//! `ringi_policy::evaluate` the signers run, so a request it marks APPROVED
//! is one the signers will accept; but the signers do not trust that mark
//! and check again. A signing that a crash interrupted (APPROVED or SIGNING
//! at start) is run again under a new claim, resuming the round-2 plan the
//! crashed run recorded (`crate::signing_claim`): the same package, so the
//! same signature, never a second one.

pub mod decide;
#[cfg(test)]
pub(crate) mod fixture;
pub mod retry;
pub mod sign;
pub mod submit;
pub mod sweep;

use std::sync::Arc;

pub use decide::{decide, describe, still_needed};
pub use retry::retry;
/// The one clock (`ringi_policy::clock::now`), under its old name.
pub use ringi_policy::clock::now;
pub use sign::{run_signing, run_signing_approved};
pub use submit::{Submission, submit};
pub use sweep::{Sweeper, sweep};

use ringi_policy::policy::Policy;

use crate::coordinator::Coordinator;
use crate::error::{Error, RequestId, Result};
use crate::request_state::{Event, Transition, next};
use crate::request_store::RequestRecord;
use crate::store::blocking;
use crate::store_writer;

/// The expiry due for `record` at `now`, if any: a request still waiting
/// (PENDING_APPROVAL or APPROVED) whose time has passed. Pure.
pub fn expiry(record: &RequestRecord, now: u64) -> Option<Transition> {
    if now < record.request.expires_at {
        return None;
    }
    next(
        record.state,
        Event::Expired {
            at: record.request.expires_at,
        },
    )
    .ok()
}

/// The resolution due for `record` under `policy` (the policy the request
/// is judged by, `Coordinator::policy_for`), if any: a request still
/// waiting whose policy was replaced by one that re-approves pending
/// requests can never be signed; it expires, naming the new policy. Pure.
pub fn superseded(record: &RequestRecord, policy: &Policy) -> Option<Transition> {
    if record.request.policy_hash == policy.hash() {
        return None;
    }
    next(
        record.state,
        Event::PolicyReplaced {
            policy_sha256: hex::encode(policy.hash()),
            sequence: policy.sequence(),
        },
    )
    .ok()
}

/// Loads a request, expiring it first if its time has passed (or its
/// policy was replaced, see [`superseded`]).
pub async fn get(c: &Arc<Coordinator>, id: RequestId) -> Result<RequestRecord> {
    let store = c.requests.clone();
    let record = blocking(move || store.request(&id)).await?;
    expire_if_due(c, record).await
}

/// `record`, expired first if its time has passed (or its policy was
/// replaced): what [`get`] does after reading it.
pub async fn expire_if_due(c: &Arc<Coordinator>, record: RequestRecord) -> Result<RequestRecord> {
    let now = now();
    let replaced = c
        .policy_for(&record.request)
        .ok()
        .and_then(|p| superseded(&record, &p));
    let Some(expire) = expiry(&record, now).or(replaced) else {
        return Ok(record);
    };
    let store = c.requests.clone();
    let id = record.id;
    let (record, expired_here) = store_writer::write(&c.requests, move || {
        let expired_here = match store.transition(&id, &expire, now) {
            Ok(()) => true,
            // Another writer moved it first (signing started, or it expired
            // already): its state stands.
            Err(Error::StateConflict { .. }) => false,
            Err(e) => return Err(e),
        };
        Ok((store.request(&id)?, expired_here))
    })
    .await?;
    if expired_here {
        crate::metrics::transition(record.state);
        tracing::info!(request_id = %hex::encode(id), reason = %record.state_reason, "request expired");
        c.audit(
            "request_expired",
            &[
                ("request_id", hex::encode(id)),
                ("reason", record.state_reason.clone()),
            ],
        );
        c.publish(&record);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_state::State;
    use crate::store::contract;

    fn record(state: State) -> RequestRecord {
        RequestRecord {
            id: [1; 32],
            request: contract::request(),
            signers: Vec::new(),
            state,
            state_reason: String::new(),
            signature: None,
            signed_transaction: None,
            approvals: Vec::new(),
            transitions: Vec::new(),
        }
    }

    #[test]
    fn only_waiting_requests_expire_and_only_when_due() {
        let expires_at = contract::request().expires_at;
        for state in State::ALL {
            let r = record(state);
            assert!(expiry(&r, expires_at - 1).is_none());
            let due = expiry(&r, expires_at);
            if matches!(state, State::PendingApproval | State::Approved) {
                let t = due.expect("due");
                assert_eq!((t.from(), t.to()), (state, State::Expired));
                assert_eq!(t.reason(), format!("request expired at {expires_at}"));
            } else {
                assert!(due.is_none(), "{state}");
            }
        }
    }

    #[test]
    fn only_waiting_requests_of_another_policy_are_superseded() {
        let policy = ringi_policy::policy::Policy::from_bytes(
            b"version = 1\nsequence = 4\n[[departments]]\nname = \"t\"\napprovers = [{ name = \"a\", key = \"p256:036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296\" }]\n[keys.k]\nrequest_ttl_secs = 10\napproval_ttl_secs = 10\nrequire = { t = 1 }\n",
        )
        .unwrap();
        for state in State::ALL {
            let mut r = record(state);
            let replaced = superseded(&r, &policy);
            if matches!(state, State::PendingApproval | State::Approved) {
                let t = replaced.expect("superseded");
                assert_eq!((t.from(), t.to()), (state, State::Expired));
                assert!(
                    t.reason().contains(&format!(
                        "replaced by policy {} (sequence 4)",
                        hex::encode(policy.hash())
                    )),
                    "{}",
                    t.reason()
                );
            } else {
                assert!(replaced.is_none(), "{state}");
            }
            // A request made under the policy in force stays as it is.
            r.request.policy_hash = policy.hash();
            assert!(superseded(&r, &policy).is_none());
        }
    }
}
