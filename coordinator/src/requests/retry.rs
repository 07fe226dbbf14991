//! Retry: an administrator sends a FAILED request back to be signed.
//!
//! FAILED is recorded only when signers refused for good (a policy the
//! signer does not pin, a share released under another package) or the
//! request's time ran out while they were unreachable: a transient cause
//! is retried by the signing run itself (`sign.rs`). Once an operator has
//! fixed the cause, `ringi requests retry ID` moves the request back to
//! APPROVED and a new signing run starts. The checks are the ones a
//! signing would make anyway, made first so the operator hears why now:
//! the request has not expired, its recorded approvals still meet the
//! quorum, and (in the same write as the state change) it fits the key's
//! caps again. A signing that released shares before it failed left its
//! plan in the store: the new run resumes it with the same package, so a
//! retry never makes a second signature.

use std::sync::Arc;

use crate::approved::ApprovedRequest;
use crate::coordinator::Coordinator;
use crate::error::{Error, RequestId, Result};
use crate::request_state::{Event, State, next};
use crate::request_store::RequestRecord;
use crate::store_writer;

/// Retries FAILED request `id` on behalf of `by`; returns the request as
/// it stands after the change.
pub async fn retry(c: &Arc<Coordinator>, id: RequestId, by: &str) -> Result<RequestRecord> {
    c.policy()?;
    let record = super::get(c, id).await?;
    let policy = c.policy_for(&record.request)?;
    if record.state != State::Failed {
        return Err(Error::StateConflict {
            request: id,
            expected: State::Failed,
            actual: record.state,
        });
    }
    let now = super::now();
    if now >= record.request.expires_at {
        return Err(Error::Expired {
            request: id,
            at: record.request.expires_at,
        });
    }
    let key = c.key(&record.request.key_id).await?;
    // The approvals must still carry it (they may have expired meanwhile).
    let as_retried = RequestRecord {
        state: State::Approved,
        ..record.clone()
    };
    ApprovedRequest::from_record(&policy, &key.facts(), &as_retried, now)?;
    let rules = policy
        .key(&record.request.key_id)
        .ok_or_else(|| Error::NoRules(record.request.key_id.clone()))?;
    let limits = rules.limits.clone();
    let daily_volume = ringi_policy::volumes::daily_volume(
        c.daily_volume_file.as_deref(),
        &record.request.key_id,
    )?;
    let retried = next(State::Failed, Event::Retried { by: by.to_string() })?;
    let store = c.requests.clone();
    let record = store_writer::write(&c.requests, move || {
        store.retry_failed(&id, &retried, &limits, daily_volume, now)?;
        store.request(&id)
    })
    .await?;
    let short = hex::encode(id);
    crate::metrics::transition(State::Approved);
    tracing::info!(request_id = %short, by, "failed request retried");
    c.audit(
        "request_retried",
        &[("request_id", short), ("by", by.to_string())],
    );
    c.publish(&record);
    let runner = c.clone();
    tokio::spawn(async move { super::run_signing(&runner, id, false).await });
    Ok(record)
}
