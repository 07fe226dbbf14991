//! Sign: the signing round of an APPROVED request (or of a SIGNING one a
//! restart interrupted), and its outcome recorded through the state
//! machine: APPROVED → SIGNING → SIGNED (with the signature) or FAILED
//! (with the reason).
//!
//! A PSBT request is one FROST signing per input, all within the one
//! approved request and all or nothing: only when every input is signed is
//! the PSBT finalized (`ringi_psbt::finalize`, which verifies every
//! signature again under the key's output key) and recorded, with the
//! signed transaction, in the same change to SIGNED.

use std::sync::Arc;
use std::time::Duration;

use ringi_psbt::OwnKey;

use crate::approved::ApprovedRequest;
use crate::coordinator::Coordinator;
use crate::error::{Error, RequestId, Result, SigningError};
use crate::phases::{self, Phase};
use crate::request_state::{Event, SignedTransaction, State, next};
use crate::request_store::{ClaimRequest, RequestRecord, SigningClaim};
use crate::signing::{Key, Signed};
use crate::signing_claim::PlanLog;
use crate::store::blocking;
use crate::store_writer;

/// First pause before signing again after the signers were unreachable or
/// busy; doubled at each failure up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Runs the signing of an APPROVED (or interrupted SIGNING) request and
/// records the outcome. Errors are logged: nothing waits for them.
///
/// `takeover`: take a SIGNING request over whoever held it (only the
/// start-up sweep, which holds the data directory's lock, may: every
/// earlier holder is gone).
///
/// A run waits for one of the coordinator's signing slots before it claims
/// the request: the approved requests beyond the limit wait, APPROVED, in
/// the store. Signers that are unreachable or busy are tried again with
/// backoff until the request expires; FAILED is recorded only when the
/// signers refused for good or time ran out.
pub async fn run_signing(c: &Arc<Coordinator>, id: RequestId, takeover: bool) {
    run(c, id, takeover, None).await
}

/// [`run_signing`] of a request whose record the caller just wrote (the
/// decision that approved it): its time rules are judged on `record`
/// rather than on the record read again.
pub async fn run_signing_approved(c: &Arc<Coordinator>, record: RequestRecord) {
    run(c, record.id, false, Some(record)).await
}

async fn run(c: &Arc<Coordinator>, id: RequestId, takeover: bool, known: Option<RequestRecord>) {
    // One run per request in this process (crate::signing_runs).
    let Some(_run) = c.signing_runs.claim(id) else {
        tracing::debug!(request_id = %hex::encode(id), "a signing run for this request is in progress already");
        return;
    };
    let result = sign_and_record(c, id, takeover, known).await;
    // An outcome this run recorded was published with its record; any
    // other end (the request moved on, a claim refused, an error) may
    // leave watchers behind the store: they read it.
    if !matches!(result, Ok(Ended::Published)) {
        c.notify(id);
    }
    if let Err(e) = result {
        tracing::warn!(request_id = %hex::encode(id), error = %e, "signing could not be recorded");
    }
}

/// How a run ended, for its watchers.
enum Ended {
    /// Its outcome recorded and published with the record as written.
    Published,
    /// Without recording an outcome.
    Unrecorded,
}

async fn sign_and_record(
    c: &Arc<Coordinator>,
    id: RequestId,
    takeover: bool,
    known: Option<RequestRecord>,
) -> Result<Ended> {
    let short = hex::encode(id);
    let mut pause = RETRY_FIRST;
    let mut audited_fence = None;
    // The request as this run last had it: the claim returns it as claimed
    // without reading it again while it is current. The time rules are
    // judged on it the first time only (later, on the stored record).
    let mut last = known;
    let mut first = true;
    // The first attempt of a run that did not take over may claim with its
    // first plan (see below).
    let mut claim_with_plan = !takeover;
    loop {
        // The policy's time rules (a delay after full approval, signing
        // hours): wait, holding nothing, until the request may be signed;
        // the signers check the same rule with their own clocks.
        let judged_on = if std::mem::take(&mut first) {
            last.as_ref()
        } else {
            None
        };
        if let Some(wait) = time_rules_wait(c, id, judged_on).await {
            tracing::info!(request_id = %short, wait_secs = wait.as_secs(), "approved; waiting for the policy's time rules before signing");
            tokio::time::sleep(wait).await;
            continue;
        }
        // A slot per attempt, given back while waiting to try again: a key
        // whose signers are down does not hold up the others' requests.
        let waited = phases::timed(Phase::Queue, c.signing_slots.clone().acquire_owned()).await;
        let Ok(slot) = waited else {
            return Ok(Ended::Unrecorded); // the semaphore is never closed
        };
        // A fresh request, as the decision that approved it wrote it: the
        // claim goes with the first round-2 plan, in one write
        // (`PlanLog::claiming`). Tried once per run; any other case claims
        // first.
        let fresh = if std::mem::take(&mut claim_with_plan) {
            last.take_if(|r| r.state == State::Approved)
        } else {
            None
        };
        let (claim, outcome) = match fresh {
            Some(known) => {
                let known = Arc::new(known);
                let plans = PlanLog::claiming(
                    c.requests.clone(),
                    known.clone(),
                    c.owner.clone(),
                    c.signing_lease_secs,
                );
                let outcome = sign(c, &known, &plans).await;
                match plans.into_claim() {
                    Some(made) if made.planned => {
                        phases::count("claims_with_first_plan", 1);
                        started(c, &made.claim, &mut audited_fence);
                        (made.claim, outcome)
                    }
                    // Claimed without its plan (the request changed, or
                    // has plans to resume): nothing went out. Sign again
                    // under the claim, which is ours to renew.
                    Some(made) => {
                        tracing::debug!(request_id = %short, "claimed without a first plan; signing again under the claim");
                        last = Some(made.claim.record);
                        continue;
                    }
                    // No claim: nothing went out either (the signing
                    // stopped before its first plan, or the claim was
                    // refused). Claim as usual, which says why.
                    None => {
                        last = Some(Arc::unwrap_or_clone(known));
                        continue;
                    }
                }
            }
            None => {
                let Some(claim) = claim(c, id, takeover, last.take()).await? else {
                    return Ok(Ended::Unrecorded);
                };
                started(c, &claim, &mut audited_fence);
                let plans = PlanLog::for_claim(c.requests.clone(), id, &claim);
                let outcome = sign(c, &claim.record, &plans).await;
                (claim, outcome)
            }
        };
        let record = &claim.record;
        // A signer whose share failed aggregation was excluded for cause:
        // on the record, whatever became of this request.
        for (signer, reason) in c.registry.standings().take_unaudited() {
            c.audit(
                "signer_excluded",
                &[
                    ("request_id", short.clone()),
                    ("signer", signer),
                    ("reason", reason),
                ],
            );
        }
        match outcome {
            Ok(done) => {
                crate::fault::crash_point("after-aggregate");
                let event = Event::Signed {
                    signature: done.signature.clone(),
                    signers: done.signers.clone(),
                    transaction: done.transaction.clone(),
                };
                // Recorded before it is announced (audit, watchers).
                phases::timed(Phase::CommitWrite, finish(c, record, claim.fence, event)).await?;
                tracing::info!(request_id = %short, signers = ?done.signers, txid = done.txid.as_deref().unwrap_or(""), "request signed");
                let mut fields = vec![
                    ("request_id", short.clone()),
                    ("signers", done.signers.join(",")),
                    ("signature", hex::encode(&done.signature)),
                ];
                if let Some(txid) = &done.txid {
                    fields.push(("txid", txid.clone()));
                }
                phases::time(Phase::AuditWrite, || c.audit("signature_produced", &fields));
                return Ok(Ended::Published);
            }
            Err(e) => {
                let signers = c
                    .key(&record.request.key_id)
                    .await
                    .map(|k| k.record().signers.len())
                    .unwrap_or(0);
                let retryable = matches!(&e, Error::Signing(s) if s.is_retryable(signers));
                let now = super::now();
                if retryable && now + pause.as_secs() < record.request.expires_at {
                    drop(slot);
                    tracing::warn!(request_id = %short, error = %e, retry_in_secs = pause.as_secs(), "signers unavailable; signing again later");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                    last = Some(claim.record);
                    continue;
                }
                let reason = if retryable {
                    format!("signers unavailable until the request expired: {e}")
                } else {
                    e.to_string()
                };
                tracing::warn!(request_id = %short, error = %reason, code = ?e.code(), "signing failed");
                finish(
                    c,
                    record,
                    claim.fence,
                    Event::SigningFailed {
                        reason: reason.clone(),
                    },
                )
                .await?;
                phases::time(Phase::AuditWrite, || {
                    c.audit(
                        "signing_failed",
                        &[("request_id", short.clone()), ("reason", reason)],
                    )
                });
                return Ok(Ended::Published);
            }
        }
    }
}

/// Claims (or renews the claim on) request `id`: APPROVED → SIGNING. The
/// claim returns the record it claimed (the approvals the rounds present
/// are the ones of the request as claimed), in one hop to the store's
/// thread. `None` (logged) when the signing is not to start: the request
/// moved on (signed, failed or expired meanwhile: never sign twice) or
/// another coordinator holds it.
async fn claim(
    c: &Arc<Coordinator>,
    id: RequestId,
    takeover: bool,
    prior: Option<RequestRecord>,
) -> Result<Option<SigningClaim>> {
    let store = c.requests.clone();
    let owner = c.owner.clone();
    let lease_secs = c.signing_lease_secs;
    let claimed = store_writer::write(&c.requests, move || {
        store.claim_signing(
            &id,
            ClaimRequest {
                owner: &owner,
                takeover,
                now: super::now(),
                lease_secs,
                known: prior.as_ref(),
            },
        )
    })
    .await;
    match claimed {
        Ok(claimed) => Ok(Some(claimed)),
        Err(Error::StateConflict { actual, .. }) => {
            tracing::info!(request_id = %hex::encode(id), state = %actual, "signing not started: the request moved on");
            Ok(None)
        }
        Err(e @ Error::SigningClaimed { .. }) => {
            tracing::info!(request_id = %hex::encode(id), reason = %e, "signing not started");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// What a claim's run tells when it holds its claim: the transition's
/// metric, the watchers (the record as claimed) and, once per claim, the
/// audit trail (`signing_started`; a retry after a backoff renews the same
/// claim and is not a new start: a request whose signers are down for an
/// hour would otherwise fill the trail).
fn started(c: &Arc<Coordinator>, claim: &SigningClaim, audited_fence: &mut Option<u64>) {
    if claim.started {
        crate::metrics::transition(State::Signing);
    }
    let record = &claim.record;
    c.publish(record);
    if *audited_fence != Some(claim.fence) {
        *audited_fence = Some(claim.fence);
        phases::time(Phase::AuditWrite, || {
            c.audit(
                "signing_started",
                &[
                    ("request_id", hex::encode(record.id)),
                    ("approvals", record.approvals.len().to_string()),
                    ("fence", claim.fence.to_string()),
                    ("resumed_plans", claim.plans.len().to_string()),
                ],
            )
        });
    }
}

/// How long an approved request must still wait for the policy's time
/// rules, if it can be signed before it expires; `None` to go ahead now
/// (no wait, or a request the checks of the signing itself will refuse).
/// Judged on `known` if given (the record as its caller just wrote it),
/// else on the record read from the store.
async fn time_rules_wait(
    c: &Arc<Coordinator>,
    id: RequestId,
    known: Option<&RequestRecord>,
) -> Option<std::time::Duration> {
    let read;
    let record = match known {
        Some(record) => record,
        None => {
            let store = c.requests.clone();
            read = blocking(move || store.request(&id)).await.ok()?;
            &read
        }
    };
    let policy = c.policy_for(&record.request).ok()?;
    let key = c.key(&record.request.key_id).await.ok()?;
    let now = super::now();
    let approved = ApprovedRequest::from_record(&policy, &key.facts(), record, now).ok()?;
    let at = approved.signable_from(&policy, now);
    // One second more: the signers judge by their own clocks (and answer
    // UNAVAILABLE, retried with backoff, if still early).
    (at > now && at < record.request.expires_at)
        .then(|| std::time::Duration::from_secs(at - now + 1))
}

/// Records the run's outcome under its claim, and publishes the request
/// as written: `claimed` (the record the run claimed, SIGNING) with the
/// outcome applied, so its watchers need not read it back.
async fn finish(
    c: &Arc<Coordinator>,
    claimed: &RequestRecord,
    fence: u64,
    event: Event,
) -> Result<()> {
    let outcome = next(State::Signing, event)?;
    let to = outcome.to();
    let store = c.requests.clone();
    let id = claimed.id;
    let now = super::now();
    let outcome = store_writer::write(&c.requests, move || {
        store
            .finish_signing(&id, fence, &outcome, now)
            .map(|()| outcome)
    })
    .await?;
    crate::metrics::transition(to);
    c.publish(&claimed.clone().after(&outcome, now));
    Ok(())
}

/// A request's signings, assembled.
struct Done {
    /// The signature, or every input's (64 bytes each, in input order).
    signature: Vec<u8>,
    /// Every signer that contributed a share, in the order they first did.
    signers: Vec<String>,
    transaction: Option<SignedTransaction>,
    txid: Option<String>,
}

/// The round itself: the record's approvals must still meet the quorum.
async fn sign(c: &Coordinator, record: &RequestRecord, plans: &PlanLog) -> Result<Done> {
    let policy = c.policy_for(&record.request)?;
    // Held for the rounds: a refresh or repair of the key waits (and the
    // key is loaded after it, with its current package).
    let _gate = c.key_gates.signing(&record.request.key_id).await;
    let key = c.key(&record.request.key_id).await?;
    let approved = phases::time(Phase::ApprovalCheck, || {
        ApprovedRequest::from_record(&policy, &key.facts(), record, super::now())
    })?;
    let signed = key.sign(&c.registry, &approved, plans).await?;
    let rules = policy
        .key(&record.request.key_id)
        .ok_or_else(|| Error::NoRules(record.request.key_id.clone()))?;
    Ok(assemble(
        &key,
        &approved,
        rules.bitcoin.network,
        rules.bitcoin.allow_sighash_all,
        signed,
    )?)
}

/// The request's result from its signings: the one signature of a raw
/// request; for a PSBT request, the finalized PSBT and transaction. Pure.
fn assemble(
    key: &Key,
    approved: &ApprovedRequest,
    network: Option<ringi_psbt::Network>,
    allow_sighash_all: bool,
    signed: Vec<Signed>,
) -> std::result::Result<Done, SigningError> {
    let mut signers: Vec<String> = Vec::new();
    for name in signed.iter().flat_map(|s| &s.signers) {
        if !signers.contains(name) {
            signers.push(name.clone());
        }
    }
    let signature: Vec<u8> = signed.iter().flat_map(|s| s.signature.clone()).collect();
    let (Some(psbt), Some(_)) = (&approved.request().psbt, approved.subject().transaction()) else {
        return Ok(Done {
            signature,
            signers,
            transaction: None,
            txid: None,
        });
    };
    let (
        Key::BitcoinTaproot {
            internal_key,
            output_key,
            ..
        },
        Some(network),
    ) = (key, network)
    else {
        // The approval derived the transaction with a taproot key and a
        // network, and the key and policy are the same objects.
        return Err(SigningError::Encoding(
            "a PSBT request signed by a key that is not bitcoin-taproot, or without a network"
                .into(),
        ));
    };
    let own = OwnKey {
        internal_key: *internal_key,
        output_key: *output_key,
        network,
    };
    let signatures = signed
        .iter()
        .map(|s| <[u8; 64]>::try_from(s.signature.as_slice()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| SigningError::Encoding("a BIP-340 signature is not 64 bytes".into()))?;
    let finalized = ringi_psbt::finalize(psbt, &own, allow_sighash_all, &signatures)
        .map_err(SigningError::Finalize)?;
    Ok(Done {
        signature,
        signers,
        transaction: Some(SignedTransaction {
            psbt: finalized.psbt,
            tx: finalized.tx,
        }),
        txid: Some(finalized.txid),
    })
}
