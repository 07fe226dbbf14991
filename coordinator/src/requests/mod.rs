//! The request flow on the coordinator, one module per command:
//! [`submit`](mod@submit) (record a request), [`decide`](mod@decide) (approve or reject), [`sign`]
//! (the signing round once the quorum is met), [`retry`](mod@retry) (an
//! administrator sends a FAILED request back), and here: reading a request
//! (expiring it first if its time has passed) and the periodic sweep.
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

use std::sync::Arc;

pub use decide::{decide, describe, still_needed};
pub use retry::retry;
/// The one clock (`ringi_policy::clock::now`), under its old name.
pub use ringi_policy::clock::now;
pub use sign::run_signing;
pub use submit::{Submission, submit};

use crate::coordinator::Coordinator;
use crate::error::{Error, RequestId, Result};
use crate::request_state::{Event, State, Transition, next};
use crate::request_store::RequestRecord;
use crate::store::blocking;

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

/// Loads a request, expiring it first if its time has passed.
pub async fn get(c: &Arc<Coordinator>, id: RequestId) -> Result<RequestRecord> {
    let store = c.requests.clone();
    let record = blocking(move || store.request(&id)).await?;
    expire_if_due(c, record).await
}

async fn expire_if_due(c: &Arc<Coordinator>, record: RequestRecord) -> Result<RequestRecord> {
    let now = now();
    let Some(expire) = expiry(&record, now) else {
        return Ok(record);
    };
    let store = c.requests.clone();
    let id = record.id;
    let (record, expired_here) = blocking(move || {
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
        tracing::info!(request_id = %hex::encode(id), "request expired");
        c.audit("request_expired", &[("request_id", hex::encode(id))]);
        c.notify(id);
    }
    Ok(record)
}

/// Expires overdue requests and resumes signings that no run holds: at
/// start (`takeover`: this process holds the data directory, so every
/// earlier claim's holder is gone) and then periodically (a run whose
/// task died, or a claim whose holder stopped renewing it).
pub async fn sweep(c: &Arc<Coordinator>, takeover: bool) -> Result<()> {
    let store = c.requests.clone();
    let ids = blocking(move || {
        store.requests_in(&[State::PendingApproval, State::Approved, State::Signing])
    })
    .await?;
    for id in ids {
        let record = get(c, id).await?;
        if matches!(record.state, State::Approved | State::Signing)
            && !c.signing_runs.is_running(&id)
        {
            tracing::info!(request_id = %hex::encode(id), state = %record.state, "resuming signing");
            let c = c.clone();
            tokio::spawn(async move { run_signing(&c, id, takeover).await });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
