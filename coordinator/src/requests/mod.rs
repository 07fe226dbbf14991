//! The request flow on the coordinator: submit, decide (approve or reject),
//! sign once the quorum is met, expire.
//!
//! The coordinator checks every approval with the same `ringi_policy::evaluate`
//! the signers run, so a request it marks APPROVED is one the signers will
//! accept; but the signers do not trust that mark and check again.
//! A signing that a crash interrupted (APPROVED or SIGNING at start) is run
//! again: nonces are single-use, so a new round is always a fresh one.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ringi_policy::evaluate::{Outcome, describe_missing, evaluate};
use ringi_policy::policy::Policy;
use ringi_policy::request::{Metadata, SigningRequest};
use ringi_policy::statement::{Approval, Decision};
use ringi_proto::approval::v1 as apb;
use ringi_proto::bundle;

use crate::error::{Error, Result};
use crate::request_state::State;
use crate::request_store::{Change, RequestRecord};
use crate::service::Coordinator;
use crate::signing;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a wallet service (or the CLI) submits.
pub struct Submission {
    pub key_id: String,
    pub message: Vec<u8>,
    pub asset: String,
    pub amount: String,
    pub destination: String,
    pub memo: String,
    pub requester: String,
    pub signers: Vec<String>,
    pub idempotency_key: String,
}

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// What an idempotency key must always map to: every field the caller
/// chose (times excluded, since a retry comes later).
fn content_hash(s: &Submission, amount: u128) -> [u8; 32] {
    let mut c = ringi_policy::encoding::Canonical::new("ringi submission v1")
        .str(&s.key_id)
        .bytes(&s.message)
        .str(&s.asset)
        .u128(amount)
        .str(&s.destination)
        .str(&s.memo)
        .str(&s.requester);
    for signer in &s.signers {
        c = c.str(signer);
    }
    ringi_policy::encoding::sha256(&c.finish())
}

fn policy(c: &Coordinator) -> Result<&Arc<Policy>> {
    c.policy.as_ref().ok_or_else(|| {
        Error::FailedPrecondition(
            "the coordinator has no approval policy configured (policy_file)".into(),
        )
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

/// Records a new request in PENDING_APPROVAL.
pub async fn submit(c: &Arc<Coordinator>, s: Submission) -> Result<RequestRecord> {
    let policy = policy(c)?.clone();
    let key = c.key(&s.key_id).await?;
    let rules = policy.key(&s.key_id).ok_or_else(|| {
        Error::FailedPrecondition(format!(
            "the approval policy has no rules for key {:?}",
            s.key_id
        ))
    })?;
    if s.message.is_empty() || s.message.len() > signing::MAX_MESSAGE_LEN {
        return Err(Error::InvalidArgument(format!(
            "message must be 1..={} bytes, got {}",
            signing::MAX_MESSAGE_LEN,
            s.message.len()
        )));
    }
    let amount: u128 = s.amount.parse().map_err(|_| {
        Error::InvalidArgument(format!(
            "amount {:?} is not a non-negative integer",
            s.amount
        ))
    })?;
    if s.requester.is_empty() {
        return Err(Error::InvalidArgument("requester is empty".into()));
    }
    if s.idempotency_key.is_empty() || s.idempotency_key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "idempotency_key must be 1..={MAX_IDEMPOTENCY_KEY_LEN} characters"
        )));
    }
    let hash = content_hash(&s, amount);
    if rules.quorums_for(amount, &s.destination).is_none() {
        return Err(Error::PermissionDenied(format!(
            "destination {:?} is not on the allowlist of key {:?}",
            s.destination, s.key_id
        )));
    }
    let limits = rules.limits.clone();
    let daily_volume =
        ringi_policy::volumes::daily_volume(c.daily_volume_file.as_deref(), &s.key_id)
            .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
    if !s.signers.is_empty() {
        signing::candidates(&key.record, &s.signers)?;
    }
    let created_at = now();
    let request = SigningRequest {
        key_id: ringi_policy::key_id::KeyId::parse(&s.key_id)
            .map_err(|e| Error::InvalidArgument(format!("key_id: {e}")))?,
        message: s.message,
        metadata: Metadata {
            asset: s.asset,
            amount,
            destination: s.destination,
            memo: s.memo,
        },
        requester: s.requester,
        created_at,
        expires_at: created_at + rules.request_ttl_secs,
        policy_hash: policy.hash(),
    };
    let store = c.store.clone();
    let (record, created) = blocking(move || {
        let (id, created) = store.insert_request_idempotent(
            &request,
            &s.signers,
            &s.idempotency_key,
            &hash,
            &limits,
            daily_volume,
            created_at,
        )?;
        Ok((store.request(&id)?, created))
    })
    .await?;
    if created {
        tracing::info!(request_id = %hex::encode(record.id), key_id = %record.request.key_id, requester = %record.request.requester, "request submitted");
        let r = &record.request;
        c.audit(
            "request_submitted",
            &[
                ("request_id", hex::encode(record.id)),
                ("key_id", r.key_id.to_string()),
                (
                    "message_sha256",
                    hex::encode(ringi_policy::encoding::sha256(&r.message)),
                ),
                ("asset", r.metadata.asset.clone()),
                ("amount", r.metadata.amount.to_string()),
                ("destination", r.metadata.destination.clone()),
                ("requester", r.requester.clone()),
            ],
        );
        c.notify(record.id);
    } else {
        tracing::info!(request_id = %hex::encode(record.id), "request resubmitted with its idempotency key; returning it");
    }
    Ok(record)
}

/// Loads a request, expiring it first if its time has passed.
pub async fn get(c: &Arc<Coordinator>, id: [u8; 32]) -> Result<RequestRecord> {
    let store = c.store.clone();
    let record = blocking(move || store.request(&id)).await?;
    expire_if_due(c, record).await
}

async fn expire_if_due(c: &Arc<Coordinator>, record: RequestRecord) -> Result<RequestRecord> {
    let now = now();
    if !matches!(record.state, State::PendingApproval | State::Approved)
        || now < record.request.expires_at
    {
        return Ok(record);
    }
    let store = c.store.clone();
    let id = record.id;
    let from = record.state;
    blocking(move || {
        let reason = format!("request expired at {}", record.request.expires_at);
        match store.transition(
            &id,
            Change {
                from,
                to: State::Expired,
                reason: &reason,
            },
            None,
            now,
        ) {
            Ok(()) | Err(Error::FailedPrecondition(_)) => {}
            Err(e) => return Err(e),
        }
        store.request(&id)
    })
    .await
    .inspect(|r| {
        if r.state == State::Expired {
            tracing::info!(request_id = %hex::encode(id), "request expired");
            c.audit("request_expired", &[("request_id", hex::encode(id))]);
            c.notify(id);
        }
    })
}

/// Records a signed approval or rejection.
pub async fn decide(c: &Arc<Coordinator>, approval: &apb::Approval) -> Result<RequestRecord> {
    let policy = policy(c)?.clone();
    let approval =
        bundle::approval_from_pb(approval).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let id = approval.statement.request_id;
    let record = get(c, id).await?;
    let short = hex::encode(id);
    match record.state {
        State::PendingApproval => {}
        State::Expired => {
            return Err(Error::FailedPrecondition(format!(
                "request {short} has expired: {}",
                record.state_reason
            )));
        }
        other => {
            return Err(Error::FailedPrecondition(format!(
                "request {short} is {other}: already decided"
            )));
        }
    }
    if record
        .approvals
        .iter()
        .any(|a| a.approver == approval.approver)
    {
        return Err(Error::AlreadyExists(format!(
            "approver key {} has already decided on request {short}",
            approval.approver.to_text()
        )));
    }
    let now = now();
    // The new approval alone must pass every rule...
    evaluate(
        &policy,
        &record.request,
        std::slice::from_ref(&approval),
        now,
    )
    .map_err(|v| Error::PermissionDenied(v.to_string()))?;
    // ...then it counts with the earlier ones that are still valid.
    let mut valid: Vec<Approval> = record
        .approvals
        .iter()
        .filter(|a| a.statement.expires_at > now)
        .cloned()
        .collect();
    valid.push(approval.clone());
    let outcome = evaluate(&policy, &record.request, &valid, now)
        .map_err(|v| Error::Internal(v.to_string()))?;
    let (change_to, reason) = match &outcome {
        Outcome::Approved => (Some(State::Approved), "quorum met".to_string()),
        Outcome::Rejected {
            approver,
            department,
            reason,
        } => (
            Some(State::Rejected),
            format!("rejected by {approver} ({department}): {reason}"),
        ),
        Outcome::Pending { .. } => (None, String::new()),
    };
    let store = c.store.clone();
    let updated = {
        let approval = approval.clone();
        let reason = reason.clone();
        blocking(move || {
            let change = change_to.map(|to| Change {
                from: State::PendingApproval,
                to,
                reason: &reason,
            });
            store.record_decision(&id, State::PendingApproval, &approval, change, now)?;
            store.request(&id)
        })
        .await?
    };
    let who = policy
        .approver(&approval.approver)
        .map(|a| a.name.clone())
        .unwrap_or_default();
    c.notify(id);
    c.audit(
        "decision_recorded",
        &[
            ("request_id", short.clone()),
            ("approver", who.clone()),
            ("approver_key", approval.approver.to_text()),
            ("department", approval.statement.department.clone()),
            ("decision", approval.statement.decision.as_str().to_string()),
            ("reason", approval.statement.reason.clone()),
            ("state", updated.state.as_str().to_string()),
        ],
    );
    tracing::info!(
        request_id = %short,
        approver = %who,
        department = %approval.statement.department,
        decision = approval.statement.decision.as_str(),
        state = %updated.state,
        "decision recorded"
    );
    if approval.statement.decision == Decision::Approve && updated.state == State::Approved {
        let c = c.clone();
        tokio::spawn(async move { run_signing(&c, id).await });
    }
    Ok(updated)
}

/// The bundle the signers check: the request and its still-valid approvals.
pub fn bundle_of(record: &RequestRecord, now: u64) -> apb::ApprovalBundle {
    apb::ApprovalBundle {
        request: Some(bundle::request_to_pb(&record.request)),
        approvals: record
            .approvals
            .iter()
            .filter(|a| a.statement.expires_at > now)
            .map(bundle::approval_to_pb)
            .collect(),
    }
}

/// Runs the signing round of an APPROVED (or interrupted SIGNING) request
/// and records the outcome.
pub async fn run_signing(c: &Arc<Coordinator>, id: [u8; 32]) {
    if let Err(e) = try_run_signing(c, id).await {
        tracing::warn!(request_id = %hex::encode(id), error = %e, "signing round could not be recorded");
    }
}

async fn try_run_signing(c: &Arc<Coordinator>, id: [u8; 32]) -> Result<()> {
    let result = sign_and_record(c, id).await;
    c.notify(id);
    result
}

async fn sign_and_record(c: &Arc<Coordinator>, id: [u8; 32]) -> Result<()> {
    let store = c.store.clone();
    let record = blocking(move || {
        let record = store.request(&id)?;
        if record.state == State::Approved {
            store.transition(
                &id,
                Change {
                    from: State::Approved,
                    to: State::Signing,
                    reason: "signing round started",
                },
                None,
                now(),
            )?;
        }
        Ok(record)
    })
    .await?;
    if !matches!(record.state, State::Approved | State::Signing) {
        return Ok(());
    }
    c.notify(id);
    c.audit(
        "signing_started",
        &[
            ("request_id", hex::encode(id)),
            ("approvals", record.approvals.len().to_string()),
        ],
    );
    let outcome = match c.key(&record.request.key_id).await {
        Ok(key) => {
            let bundle = bundle_of(&record, now());
            signing::sign(
                &c.registry,
                &key,
                &record.request.message,
                &record.signers,
                Some(&bundle),
            )
            .await
        }
        Err(e) => Err(e),
    };
    let store = c.store.clone();
    let short = hex::encode(id);
    match outcome {
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
            let reason = format!("signed by {}", signed.signers.join(", "));
            blocking(move || {
                store.transition(
                    &id,
                    Change {
                        from: State::Signing,
                        to: State::Signed,
                        reason: &reason,
                    },
                    Some(&signed.signature),
                    now(),
                )
            })
            .await
        }
        Err(e) => {
            tracing::warn!(request_id = %short, error = %e, "signing failed");
            c.audit(
                "signing_failed",
                &[("request_id", short.clone()), ("reason", e.to_string())],
            );
            let reason = e.to_string();
            blocking(move || {
                store.transition(
                    &id,
                    Change {
                        from: State::Signing,
                        to: State::Failed,
                        reason: &reason,
                    },
                    None,
                    now(),
                )
            })
            .await
        }
    }
}

/// Expires overdue requests and resumes interrupted signings. Called at
/// start and then periodically.
pub async fn sweep(c: &Arc<Coordinator>, resume: bool) -> Result<()> {
    let store = c.store.clone();
    let ids = blocking(move || {
        store.requests_in(&[State::PendingApproval, State::Approved, State::Signing])
    })
    .await?;
    for id in ids {
        let record = get(c, id).await?;
        if resume && matches!(record.state, State::Approved | State::Signing) {
            tracing::info!(request_id = %hex::encode(id), state = %record.state, "resuming signing");
            let c = c.clone();
            tokio::spawn(async move { run_signing(&c, id).await });
        }
    }
    Ok(())
}

/// What a pending request still needs, per department.
pub fn still_needed(c: &Coordinator, record: &RequestRecord, now: u64) -> Vec<(String, u32, u32)> {
    let Some(policy) = c.policy.as_ref() else {
        return Vec::new();
    };
    if record.state != State::PendingApproval {
        return Vec::new();
    }
    let valid: Vec<Approval> = record
        .approvals
        .iter()
        .filter(|a| a.statement.expires_at > now)
        .cloned()
        .collect();
    match evaluate(policy, &record.request, &valid, now) {
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
