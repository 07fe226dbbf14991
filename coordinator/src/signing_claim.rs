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
//!    share can be released. A run that starts on a request just approved
//!    claims it with its first plan, in one transaction
//!    ([`PlanLog::claiming`]): the claim still precedes every round 2, and
//!    a signing costs one durable write fewer. Each signer releases one
//!    share per request input and answers the same package with the same
//!    share (`signer/src/releases.rs`), so a run that resumes after a crash asks
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
use std::sync::{Arc, Mutex};

use crate::error::{Error, RequestId, Result};
use crate::request_store::{
    ClaimRequest, PlannedClaim, RequestRecord, RequestStore, SigningClaim, SigningPlan,
};
use crate::store_writer;

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
    /// The run's claim: held from the start ([`PlanLog::for_claim`]), or
    /// made with the first plan ([`PlanLog::claiming`]).
    claim: Mutex<Claim>,
}

enum Claim {
    Held(u64),
    /// Not claimed yet: the first plan claims, in its own transaction.
    ToMake(Box<ToMake>),
    /// Made with the first plan: later plans go under its fence. Or made
    /// without it (`planned` false: the request had changed, or had earlier
    /// plans): nothing may go out under this log.
    Made(Box<PlannedClaim>),
    /// Taken out by [`PlanLog::into_claim`].
    Gone,
}

/// What [`PlanLog::record`] does with a plan.
enum Step {
    /// Records it under the claim with this fence.
    Plan(u64),
    /// Claims the request with it.
    Claim(Box<ToMake>),
    /// Nothing: the claim was made without its first plan.
    Deferred,
}

struct ToMake {
    owner: String,
    lease_secs: u64,
    /// Shared with the run, which signs from it meanwhile (not a copy).
    known: Arc<RequestRecord>,
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
                claim: Mutex::new(Claim::Held(claim.fence)),
            }),
        }
    }

    /// The plans of a run that has not claimed request `known` yet: a
    /// fresh APPROVED request, as the decision that approved it wrote it.
    /// The first plan recorded also claims the request for `owner`, in one
    /// transaction ([`RequestStore::claim_signing_with_plan`]): one durable
    /// write fewer per signing than a claim before the rounds. Nothing
    /// reaches a signer before that write but round 1 (which releases
    /// nothing) and the package's commitments: a plan is still durable,
    /// under a claim, before its round 2 goes out.
    ///
    /// If the claim is made without the plan (the request changed or an
    /// earlier run left plans: [`Error::PlanDeferred`]) or refused, the
    /// plan fails and no round 2 goes out; the run then claims as usual.
    /// [`PlanLog::into_claim`] says which, after the signing.
    pub fn claiming(
        store: Arc<dyn RequestStore>,
        known: Arc<RequestRecord>,
        owner: String,
        lease_secs: u64,
    ) -> Self {
        PlanLog {
            earlier: BTreeMap::new(),
            sink: Some(Sink {
                store,
                id: known.id,
                claim: Mutex::new(Claim::ToMake(Box::new(ToMake {
                    owner,
                    lease_secs,
                    known,
                }))),
            }),
        }
    }

    /// The claim a claiming log made, with whether its first plan was
    /// recorded; `None` if it made none (no plan was recorded, or the claim
    /// was refused), or for a log made [`PlanLog::for_claim`].
    pub fn into_claim(self) -> Option<PlannedClaim> {
        let sink = self.sink?;
        match sink.claim.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Claim::Made(made) => Some(*made),
            Claim::Held(_) | Claim::ToMake(_) | Claim::Gone => None,
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
        let (store, id) = (sink.store.clone(), sink.id);
        // What to do, decided under the lock (not held across a write).
        let step = {
            let mut claim = sink.claim.lock().unwrap_or_else(|p| p.into_inner());
            match std::mem::replace(&mut *claim, Claim::Gone) {
                Claim::ToMake(to_make) => Step::Claim(to_make),
                held => {
                    let step = match &held {
                        Claim::Held(fence) => Step::Plan(*fence),
                        Claim::Made(made) if made.planned => Step::Plan(made.claim.fence),
                        _ => Step::Deferred,
                    };
                    *claim = held;
                    step
                }
            }
        };
        let to_make = match step {
            Step::Plan(fence) => {
                let write = store_writer::write(&sink.store, move || {
                    store.record_signing_plan(&id, fence, &plan)
                });
                return crate::phases::timed(crate::phases::Phase::PlanWrite, write).await;
            }
            Step::Deferred => return Err(Error::PlanDeferred { request: id }),
            Step::Claim(to_make) => to_make,
        };
        let write = store_writer::write(&sink.store, move || {
            store.claim_signing_with_plan(
                &id,
                ClaimRequest {
                    owner: &to_make.owner,
                    takeover: false,
                    now: crate::requests::now(),
                    lease_secs: to_make.lease_secs,
                    known: Some(&to_make.known),
                },
                &plan,
            )
        });
        let made = crate::phases::timed(crate::phases::Phase::PlanWrite, write).await?;
        let planned = made.planned;
        *sink.claim.lock().unwrap_or_else(|p| p.into_inner()) = Claim::Made(Box::new(made));
        if planned {
            Ok(())
        } else {
            Err(Error::PlanDeferred { request: id })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_state::State;
    use crate::sqlite::SqliteStore;
    use crate::store::contract;

    fn store() -> (tempfile::TempDir, Arc<dyn RequestStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ringi.sqlite3")).unwrap();
        (dir, Arc::new(store))
    }

    fn plan(package: u8) -> SigningPlan {
        SigningPlan {
            input: 0,
            package: vec![package],
            signers: vec!["s1".into(), "s2".into()],
        }
    }

    fn claim_as(owner: &str) -> ClaimRequest<'_> {
        ClaimRequest {
            owner,
            takeover: false,
            now: crate::requests::now(),
            lease_secs: 60,
            known: None,
        }
    }

    #[tokio::test]
    async fn a_claiming_log_claims_with_its_first_plan() {
        let (_dir, store) = store();
        let id = contract::approved(&*store, "k1");
        let known = store.request(&id).unwrap();
        let log = PlanLog::claiming(store.clone(), Arc::new(known), "me".into(), 60);
        assert!(log.earlier(0).is_empty());
        log.record(plan(1)).await.unwrap();
        // A later package of the same run: under the claim just made.
        log.record(plan(2)).await.unwrap();
        let made = log.into_claim().unwrap();
        assert!(made.planned && made.claim.started);
        assert_eq!(made.claim.record, store.request(&id).unwrap());
        assert_eq!(made.claim.record.state, State::Signing);
        let renewed = store.claim_signing(&id, claim_as("me")).unwrap();
        assert_eq!(renewed.fence, made.claim.fence);
        assert_eq!(renewed.plans, vec![plan(1), plan(2)]);
    }

    #[tokio::test]
    async fn a_claiming_log_sends_nothing_when_its_first_plan_is_not_taken() {
        let (_dir, store) = store();
        let id = contract::approved(&*store, "k1");
        // An earlier run planned, then failed; an admin retried.
        let earlier = store.claim_signing(&id, claim_as("a")).unwrap();
        store
            .record_signing_plan(&id, earlier.fence, &plan(1))
            .unwrap();
        contract::fail_and_retry(&*store, &id, earlier.fence, crate::requests::now());
        let known = store.request(&id).unwrap();
        let log = PlanLog::claiming(store.clone(), Arc::new(known), "b".into(), 60);
        for _ in 0..2 {
            assert!(matches!(
                log.record(plan(9)).await,
                Err(Error::PlanDeferred { .. })
            ));
        }
        let made = log.into_claim().unwrap();
        assert!(!made.planned);
        assert_eq!(made.claim.plans, vec![plan(1)], "to resume first");
        let renewed = store.claim_signing(&id, claim_as("b")).unwrap();
        assert_eq!(renewed.plans, vec![plan(1)], "nothing of the log's written");
    }

    #[tokio::test]
    async fn a_refused_claiming_log_claims_and_plans_nothing() {
        let (_dir, store) = store();
        let id = contract::approved(&*store, "k1");
        let known = store.request(&id).unwrap();
        let other = store.claim_signing(&id, claim_as("other")).unwrap();
        let log = PlanLog::claiming(store.clone(), Arc::new(known), "me".into(), 60);
        assert!(matches!(
            log.record(plan(1)).await,
            Err(Error::SigningClaimed { .. })
        ));
        assert!(log.into_claim().is_none());
        let renewed = store.claim_signing(&id, claim_as("other")).unwrap();
        assert_eq!(renewed.fence, other.fence);
        assert!(renewed.plans.is_empty());
    }
}
