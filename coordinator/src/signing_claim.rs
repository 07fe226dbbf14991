//! Exactly one signature per request, across crashes and processes.
//!
//! Three things together make a request signed at most once and, once
//! signed by the signers, recorded with that one signature:
//!
//! 1. **A fenced claim in the store** ([`RequestStore::claim_signing`]):
//!    a signing run starts only by claiming the request (APPROVED →
//!    SIGNING, or taking over a SIGNING request whose holder is gone).
//!    Every claim has a larger fence than the one before, and a run's later
//!    writes (its round-2 plans, its outcome) are refused once a later claim
//!    took the request over, so a run that lost its claim can record
//!    nothing (in-process, [`crate::signing_runs`] also keeps a second task
//!    from even trying).
//! 2. **The round-2 plan recorded before round 2** ([`PlanLog`]): the
//!    signing package and the signers it goes to are durable before any
//!    share can be released. Each signer releases one share per request
//!    input and answers the same package with the same share
//!    (`signer/src/releases.rs`), so a run that resumes after a crash asks
//!    for that package again and aggregates the very signature the crashed
//!    run made (or could have made); the signers refuse any other package.
//! 3. **The outcome recorded before it is announced**: SIGNED (with the
//!    signature) is committed, under the claim, before the audit entry and
//!    before anyone is told ([`crate::requests::sign`]).
//!
//! A kill between aggregation and the commit therefore loses nothing: the
//! restarted coordinator takes the SIGNING request over (the single-instance
//! lock on the data directory tells it the old owner is gone), resumes from
//! the plan, and records the same signature. On a store that coordinators
//! share (PostgreSQL), no process can know that another is gone: a
//! surviving coordinator's sweep takes the request over once the dead
//! one's lease has passed (`signing_lease_secs`), and resumes the same way.
//!
//! [`RequestStore::claim_signing`]: crate::request_store::RequestStore::claim_signing

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{RequestId, Result};
use crate::request_store::{RequestStore, SigningClaim, SigningPlan};
use crate::store::blocking;

/// How long a claim holds without being renewed; a run renews it at every
/// attempt. Past it, another coordinator may take the request over.
pub const LEASE_SECS: u64 = 120;

/// This process's name as a claim owner: unique per start.
pub fn boot_owner() -> String {
    let mut nonce = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    format!("coordinator-{}-{}", std::process::id(), hex::encode(nonce))
}

/// Where a signing run records its round-2 plans, with the plans earlier
/// runs of the request left.
pub struct PlanLog {
    earlier: BTreeMap<u32, Vec<SigningPlan>>,
    sink: Option<Sink>,
}

struct Sink {
    store: Arc<dyn RequestStore>,
    id: RequestId,
    fence: u64,
}

impl PlanLog {
    /// The plans of the run holding `claim` on request `id`, recorded in
    /// `store`.
    pub fn for_claim(store: Arc<dyn RequestStore>, id: RequestId, claim: &SigningClaim) -> Self {
        let mut earlier: BTreeMap<u32, Vec<SigningPlan>> = BTreeMap::new();
        for p in &claim.plans {
            earlier.entry(p.input).or_default().push(p.clone());
        }
        PlanLog {
            earlier,
            sink: Some(Sink {
                store,
                id,
                fence: claim.fence,
            }),
        }
    }

    /// No record at all: for signings outside any request's life (the
    /// in-process bench), where nothing resumes.
    pub fn unrecorded() -> Self {
        PlanLog {
            earlier: BTreeMap::new(),
            sink: None,
        }
    }

    /// The plans earlier runs recorded for `input`, oldest first.
    pub fn earlier(&self, input: u32) -> &[SigningPlan] {
        self.earlier.get(&input).map_or(&[], Vec::as_slice)
    }

    /// Records `plan`, durably, under the run's claim (timed as
    /// [`crate::phases::Phase::PlanWrite`]; an unrecorded log writes, and
    /// times, nothing).
    pub async fn record(&self, plan: SigningPlan) -> Result<()> {
        let Some(sink) = &self.sink else {
            return Ok(());
        };
        let (store, id, fence) = (sink.store.clone(), sink.id, sink.fence);
        let write = blocking(move || store.record_signing_plan(&id, fence, &plan));
        crate::phases::timed(crate::phases::Phase::PlanWrite, write).await
    }
}
