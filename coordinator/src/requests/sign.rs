//! Sign: the signing round of an APPROVED request (or of a SIGNING one a
//! restart interrupted), and its outcome recorded through the state
//! machine: APPROVED → SIGNING → SIGNED (with the signature) or FAILED
//! (with the reason).

use std::sync::Arc;

use crate::approved::ApprovedRequest;
use crate::coordinator::Coordinator;
use crate::error::{Error, RequestId, Result};
use crate::request_state::{Event, State, next};
use crate::request_store::RequestRecord;
use crate::signing::{self, Signed};
use crate::store::blocking;

/// Runs the signing round of an APPROVED (or interrupted SIGNING) request
/// and records the outcome. Errors are logged: nothing waits for them.
pub async fn run_signing(c: &Arc<Coordinator>, id: RequestId) {
    let result = sign_and_record(c, id).await;
    c.notify(id);
    if let Err(e) = result {
        tracing::warn!(request_id = %hex::encode(id), error = %e, "signing round could not be recorded");
    }
}

async fn sign_and_record(c: &Arc<Coordinator>, id: RequestId) -> Result<()> {
    let store = c.requests.clone();
    let record = blocking(move || store.request(&id)).await?;
    let short = hex::encode(id);
    match record.state {
        State::Approved => {
            let started = next(State::Approved, Event::SigningStarted)?;
            let store = c.requests.clone();
            match blocking(move || store.transition(&id, &started, super::now())).await {
                Ok(()) => {}
                Err(Error::StateConflict { actual, .. }) => {
                    // Another round started first (or the request expired):
                    // never sign twice.
                    tracing::info!(request_id = %short, state = %actual, "signing round not started: the request moved on");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        State::Signing => {} // resumed after a restart
        _ => return Ok(()),
    }
    c.notify(id);
    c.audit(
        "signing_started",
        &[
            ("request_id", short.clone()),
            ("approvals", record.approvals.len().to_string()),
        ],
    );
    let event = match sign(c, &record).await {
        Ok(signed) => {
            tracing::info!(request_id = %short, signers = ?signed.signers, "request signed");
            c.audit(
                "signature_produced",
                &[
                    ("request_id", short.clone()),
                    ("signers", signed.signers.join(",")),
                    ("signature", hex::encode(&signed.signature)),
                ],
            );
            Event::Signed {
                signature: signed.signature,
                signers: signed.signers,
            }
        }
        Err(e) => {
            tracing::warn!(request_id = %short, error = %e, code = ?e.code(), "signing failed");
            c.audit(
                "signing_failed",
                &[("request_id", short.clone()), ("reason", e.to_string())],
            );
            Event::SigningFailed {
                reason: e.to_string(),
            }
        }
    };
    let outcome = next(State::Signing, event)?;
    let store = c.requests.clone();
    blocking(move || store.transition(&id, &outcome, super::now())).await
}

/// The round itself: the record's approvals must still meet the quorum.
async fn sign(c: &Coordinator, record: &RequestRecord) -> Result<Signed> {
    let approved = ApprovedRequest::from_record(c.policy()?, record, super::now())?;
    let key = c.key(&approved.request().key_id).await?;
    Ok(signing::sign(&c.registry, &key, &approved).await?)
}
