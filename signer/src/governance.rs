//! The `ringi.signer.v1.Governance` gRPC service: decisions that reach this
//! node without the coordinator (a rejection, a freeze, an unfreeze).
//!
//! Thin handlers: decode the statement (`ringi_proto::freeze`,
//! `ringi_proto::bundle`), check it against the pinned policy with this
//! node's clock (`ringi_policy::veto`, `ringi_policy::freeze`, pure), record
//! it durably ([`HoldStore`]) and audit it, on a blocking thread. Any client
//! the CA certified may call: authority comes from the signed statement,
//! not from who delivers it (the coordinator-only interceptor of the
//! signing API does not apply here).

use std::sync::Arc;

use ringi_policy::clock::now;
use ringi_policy::freeze::{FreezeRefused, UnfreezeRefused, check_freeze, check_unfreeze};
use ringi_policy::holds::Frozen;
use ringi_policy::veto::{VetoRefused, check_veto};
use ringi_proto::signer::v1 as pb;
use tonic::{Code, Request, Response, Status};

use crate::holds::{HoldStore, HoldStoreError};
use crate::node_audit::{AuditSink, audited};
use ringi_policy::policy_store::{Applied, PolicyStore, PolicyStoreError};

pub struct GovernanceService {
    policies: Arc<PolicyStore>,
    holds: Arc<HoldStore>,
    audit: Arc<dyn AuditSink>,
}

impl GovernanceService {
    pub fn new(
        policies: Arc<PolicyStore>,
        holds: Arc<HoldStore>,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        GovernanceService {
            policies,
            holds,
            audit,
        }
    }
}

fn veto_code(e: &VetoRefused) -> Code {
    match e {
        VetoRefused::NotARejection => Code::InvalidArgument,
        VetoRefused::UnknownKey(_) => Code::NotFound,
        VetoRefused::BadSignature
        | VetoRefused::UnknownApprover
        | VetoRefused::WrongDepartment { .. } => Code::PermissionDenied,
        VetoRefused::IssuedInFuture { .. } | VetoRefused::Expired { .. } => {
            Code::FailedPrecondition
        }
    }
}

fn freeze_code(e: &FreezeRefused) -> Code {
    match e {
        FreezeRefused::UnknownKey(_) => Code::NotFound,
        FreezeRefused::NoOfficers
        | FreezeRefused::BadSignature
        | FreezeRefused::NotAnOfficer(_)
        | FreezeRefused::UnknownSigner => Code::PermissionDenied,
        FreezeRefused::Stale { .. }
        | FreezeRefused::IssuedInFuture { .. }
        | FreezeRefused::Lifted => Code::FailedPrecondition,
    }
}

fn unfreeze_code(e: &UnfreezeRefused) -> Code {
    match e {
        UnfreezeRefused::BadSignature { .. } | UnfreezeRefused::UnknownApprover { .. } => {
            Code::PermissionDenied
        }
        UnfreezeRefused::NotFrozen(_)
        | UnfreezeRefused::OtherFreeze { .. }
        | UnfreezeRefused::IssuedInFuture { .. }
        | UnfreezeRefused::QuorumNotMet { .. } => Code::FailedPrecondition,
    }
}

fn update_status(e: PolicyStoreError) -> Status {
    Status::new(Code::from(e.kind().grpc_code()), e.to_string())
}

impl GovernanceService {
    /// The answer to an accepted update: where the node stands now.
    fn status(&self, applied: Applied) -> ringi_proto::approval::v1::PolicyStatus {
        let (current, pending) = self.policies.status(now());
        let mut status = ringi_proto::policy_update::status_to_pb(
            &current,
            pending.as_ref().map(|(p, at)| (p.as_ref(), *at)),
        );
        status.change = applied.change.to_string();
        status.already = applied.already;
        status
    }
}

fn store_status(e: HoldStoreError) -> Status {
    match e {
        HoldStoreError::Refused(r) => Status::new(freeze_code(&r), r.to_string()),
        other => Status::unavailable(format!("the decision was not recorded: {other}")),
    }
}

/// Runs `f` on a blocking thread (SQLite commit and audit fsync).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("governance worker: {e}")))?
}

/// A refusal, logged with its rule (statements carry no secret).
fn refused(what: &str, status: Status) -> Status {
    tracing::warn!(call = what, code = ?status.code(), reason = status.message(), "governance decision refused");
    status
}

#[tonic::async_trait]
impl pb::governance_server::Governance for GovernanceService {
    async fn veto(
        &self,
        request: Request<pb::VetoRequest>,
    ) -> Result<Response<pb::VetoResponse>, Status> {
        let wire = request
            .into_inner()
            .rejection
            .ok_or_else(|| Status::invalid_argument("no rejection"))?;
        let rejection = ringi_proto::bundle::approval_from_pb(&wire)
            .map_err(|e| refused("veto", Status::invalid_argument(e.0)))?;
        let now = now();
        let veto = check_veto(&self.policies.current(now), &rejection, now)
            .map_err(|e| refused("veto", Status::new(veto_code(&e), e.to_string())))?;
        let statement = rejection.statement.signed_bytes(&rejection.approver);
        let (holds, audit) = (self.holds.clone(), self.audit.clone());
        let recorded = blocking(move || {
            let fields = [
                ("key_id", veto.key_id.to_string()),
                ("request_id", hex::encode(veto.request_id)),
                ("approver", veto.approver.clone()),
                ("department", veto.department.clone()),
                ("reason", veto.reason.clone()),
            ];
            let recorded = holds.veto(veto, &statement, now).map_err(store_status)?;
            if recorded {
                audited(audit.as_ref(), "veto_recorded", &fields)
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                tracing::warn!(request_id = %fields[1].1, approver = %fields[2].1, "rejection received directly: this node will not sign the request");
            }
            Ok(recorded)
        })
        .await?;
        Ok(Response::new(pb::VetoResponse { recorded }))
    }

    async fn freeze(
        &self,
        request: Request<pb::FreezeRequest>,
    ) -> Result<Response<pb::FreezeResponse>, Status> {
        let wire = request
            .into_inner()
            .freeze
            .ok_or_else(|| Status::invalid_argument("no freeze"))?;
        let freeze = ringi_proto::freeze::freeze_from_pb(&wire)
            .map_err(|e| refused("freeze", Status::invalid_argument(e.0)))?;
        let now = now();
        let officer = check_freeze(&self.policies.current(now), &freeze, now)
            .map_err(|e| refused("freeze", Status::new(freeze_code(&e), e.to_string())))?;
        let (holds, audit) = (self.holds.clone(), self.audit.clone());
        let (freeze_id, recorded) = blocking(move || {
            let id = freeze.id();
            let fields = [
                ("scope", freeze.statement.scope.to_text()),
                ("freeze_id", hex::encode(id)),
                ("officer", officer.clone()),
                ("reason", freeze.statement.reason.clone()),
            ];
            match holds.freeze(freeze, officer, now).map_err(store_status)? {
                Frozen::New => {
                    audited(audit.as_ref(), "frozen", &fields)
                        .map_err(|e| Status::unavailable(e.to_string()))?;
                    tracing::warn!(scope = %fields[0].1, officer = %fields[2].1, "frozen: this node signs nothing in scope until a quorum lifts it");
                    Ok((id, true))
                }
                Frozen::Already(first) => Ok((first, false)),
            }
        })
        .await
        .map_err(|s| refused("freeze", s))?;
        Ok(Response::new(pb::FreezeResponse {
            freeze_id: freeze_id.to_vec(),
            recorded,
        }))
    }

    async fn unfreeze(
        &self,
        request: Request<pb::UnfreezeRequest>,
    ) -> Result<Response<pb::UnfreezeResponse>, Status> {
        let request = request.into_inner();
        let scope = ringi_proto::freeze::scope_from_pb(&request.scope)
            .map_err(|e| refused("unfreeze", Status::invalid_argument(e.0)))?;
        let unfreezes = request
            .unfreezes
            .iter()
            .enumerate()
            .map(|(i, u)| {
                ringi_proto::freeze::unfreeze_from_pb(u)
                    .map_err(|e| Status::invalid_argument(format!("unfreeze #{i}: {}", e.0)))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|s| refused("unfreeze", s))?;
        let active = self.holds.active(&scope).ok_or_else(|| {
            let e = UnfreezeRefused::NotFrozen(scope.to_text());
            refused("unfreeze", Status::new(unfreeze_code(&e), e.to_string()))
        })?;
        let now = now();
        let approvers =
            check_unfreeze(&self.policies.current(now), &active.freeze, &unfreezes, now)
                .map_err(|e| refused("unfreeze", Status::new(unfreeze_code(&e), e.to_string())))?;
        let (holds, audit) = (self.holds.clone(), self.audit.clone());
        let by = approvers.clone();
        blocking(move || {
            let id = active.freeze.id();
            if !holds.lift(&scope, &id, &by, now).map_err(store_status)? {
                let e = UnfreezeRefused::NotFrozen(scope.to_text());
                return Err(Status::new(unfreeze_code(&e), e.to_string()));
            }
            audited(
                audit.as_ref(),
                "unfrozen",
                &[
                    ("scope", scope.to_text()),
                    ("freeze_id", hex::encode(id)),
                    ("approvers", by.join(",")),
                ],
            )
            .map_err(|e| Status::unavailable(e.to_string()))?;
            tracing::warn!(scope = %scope.to_text(), approvers = %by.join(","), "freeze lifted by a quorum");
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::UnfreezeResponse { approvers }))
    }

    async fn update_policy(
        &self,
        request: Request<pb::UpdatePolicyRequest>,
    ) -> Result<Response<ringi_proto::approval::v1::PolicyStatus>, Status> {
        let wire = request
            .into_inner()
            .update
            .ok_or_else(|| Status::invalid_argument("no update"))?;
        let update = ringi_proto::policy_update::update_from_pb(&wire)
            .map_err(|e| refused("update_policy", Status::invalid_argument(e.0)))?;
        let (policies, audit) = (self.policies.clone(), self.audit.clone());
        let applied = blocking(move || {
            let now = now();
            let applied = policies.apply(&update, now).map_err(update_status)?;
            if !applied.already {
                let change = applied.change.to_string();
                audited(
                    audit.as_ref(),
                    "policy_update_accepted",
                    &[
                        ("policy_sha256", hex::encode(applied.hash)),
                        ("previous_sha256", hex::encode(update.previous_hash)),
                        ("sequence", applied.sequence.to_string()),
                        ("effective_at", applied.effective_at.to_string()),
                        ("change", change),
                        ("admins", applied.admins.join(",")),
                    ],
                )
                .map_err(|e| Status::unavailable(e.to_string()))?;
                tracing::warn!(policy_sha256 = %hex::encode(applied.hash), sequence = applied.sequence, effective_at = applied.effective_at, "policy update accepted");
            }
            Ok(applied)
        })
        .await
        .map_err(|s| refused("update_policy", s))?;
        Ok(Response::new(self.status(applied)))
    }

    async fn get_policy(
        &self,
        _request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<ringi_proto::approval::v1::PolicyStatus>, Status> {
        let (current, pending) = self.policies.status(now());
        Ok(Response::new(ringi_proto::policy_update::status_to_pb(
            &current,
            pending.as_ref().map(|(p, at)| (p.as_ref(), *at)),
        )))
    }

    async fn get_holds(
        &self,
        _request: Request<pb::GetHoldsRequest>,
    ) -> Result<Response<pb::GetHoldsResponse>, Status> {
        let holds = self.holds.snapshot();
        Ok(Response::new(pb::GetHoldsResponse {
            freezes: holds
                .freezes()
                .map(|a| pb::ActiveFreeze {
                    freeze: Some(ringi_proto::freeze::freeze_to_pb(&a.freeze)),
                    freeze_id: a.freeze.id().to_vec(),
                    officer: a.officer.clone(),
                    recorded_at: a.recorded_at,
                })
                .collect(),
            vetoed_requests: holds.veto_count() as u64,
        }))
    }
}
