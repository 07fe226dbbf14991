//! The `ringi.signer.v1.Governance` gRPC service: decisions that reach this
//! node without the coordinator (a rejection, a freeze, an unfreeze, a
//! policy update, a key's retirement).
//!
//! Thin handlers: decode the statement (`ringi_proto::freeze`,
//! `ringi_proto::bundle`), check it against the pinned policy with this
//! node's clock (`ringi_policy::veto`, `ringi_policy::freeze`, pure), record
//! it durably ([`HoldStore`]) and audit it, on a blocking thread. Any client
//! the CA certified may call: authority comes from the signed statement,
//! not from who delivers it (the coordinator-only interceptor of the
//! signing API does not apply here).

use std::sync::Arc;

use ringi_frost::KeyKind;
use ringi_policy::clock::now;
use ringi_policy::freeze::{FreezeRefused, UnfreezeRefused, check_freeze, check_unfreeze};
use ringi_policy::holds::{Frozen, Retired};
use ringi_policy::key_id::KeyId;
use ringi_policy::retirement::{Retirement, check_retire};
use ringi_policy::veto::{VetoRefused, check_veto};
use ringi_proto::signer::v1 as pb;
use tonic::{Code, Request, Response, Status};

use crate::holds::{HoldStore, HoldStoreError};
use crate::node_audit::{AuditSink, audited};
use ringi_policy::policy_store::{Applied, PolicyStore, PolicyStoreError};

/// The kind of the share this node holds under a key id, if any.
pub type ShareLookup = Arc<dyn Fn(&KeyId) -> Option<KeyKind> + Send + Sync>;

pub struct GovernanceService {
    policies: Arc<PolicyStore>,
    holds: Arc<HoldStore>,
    audit: Arc<dyn AuditSink>,
    shares: ShareLookup,
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
            shares: Arc::new(|_| None),
        }
    }

    /// Tells the service which shares the node holds (for the answer to
    /// `RetireKey`).
    pub fn with_share_lookup(mut self, shares: ShareLookup) -> Self {
        self.shares = shares;
        self
    }
}

/// A retirement as the wire shows it.
pub fn retirement_to_pb(r: &Retirement) -> pb::KeyRetirement {
    pb::KeyRetirement {
        key_id: r.key_id.to_string(),
        order_id: r.order_id.to_vec(),
        destroy_after: r.destroy_after,
        admins: r.admins.clone(),
        accepted_at: r.accepted_at,
        destroyed_at: r.destroyed_at.unwrap_or(0),
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
            retirements: holds.retirements().map(retirement_to_pb).collect(),
        }))
    }

    async fn retire_key(
        &self,
        request: Request<pb::RetireKeyRequest>,
    ) -> Result<Response<pb::RetireKeyResponse>, Status> {
        let wire = request
            .into_inner()
            .order
            .ok_or_else(|| refused("retire_key", Status::invalid_argument("no order")))?;
        let signed = ringi_proto::key_order::order_from_pb(&wire)
            .map_err(|e| refused("retire_key", Status::invalid_argument(e.0)))?;
        let key_id = signed.order.key_id.clone();
        let kind = (self.shares)(&key_id).map(|k| k.as_str().to_string());
        let answer = |retirement: &Retirement, already| pb::RetireKeyResponse {
            retirement: Some(retirement_to_pb(retirement)),
            already,
            kind: kind.clone().unwrap_or_default(),
        };
        // The very order accepted before: in force, whatever its expiry now
        // (its signatures were checked when it was accepted).
        if let Some(first) = self.holds.retirement(&key_id)
            && first.order_id == signed.order.id()
            && matches!(
                signed.order.action,
                ringi_policy::key_order::Action::Retire { .. }
            )
        {
            return Ok(Response::new(answer(&first, true)));
        }
        let now = now();
        let retirement = check_retire(&self.policies.current(now), &signed, now).map_err(|e| {
            refused(
                "retire_key",
                Status::new(Code::from(e.grpc_code()), e.to_string()),
            )
        })?;
        let (holds, audit) = (self.holds.clone(), self.audit.clone());
        let signed_order = prost::Message::encode_to_vec(&wire);
        let held = kind.clone().unwrap_or_default();
        let (in_force, already) = blocking(move || {
            let fields = [
                ("key_id", retirement.key_id.to_string()),
                ("order_id", hex::encode(retirement.order_id)),
                ("destroy_after", retirement.destroy_after.to_string()),
                ("admins", retirement.admins.join(",")),
                ("kind", held),
            ];
            match holds
                .retire(retirement.clone(), &signed_order)
                .map_err(|e| Status::unavailable(format!("the retirement was not recorded: {e}")))?
            {
                Retired::New => {
                    audited(audit.as_ref(), "key_retired", &fields)
                        .map_err(|e| Status::unavailable(e.to_string()))?;
                    crate::metrics::key_op("retire", true);
                    tracing::warn!(key_id = %fields[0].1, destroy_after = retirement.destroy_after, admins = %fields[3].1, "key retired: this node signs nothing more with it and destroys its shares after the grace period");
                    Ok((retirement, false))
                }
                Retired::Already(first) => Ok((*first, true)),
            }
        })
        .await
        .map_err(|s| refused("retire_key", s))?;
        Ok(Response::new(answer(&in_force, already)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_doubles::{Approvers, MemoryAudit};
    use pb::governance_server::Governance;
    use ringi_policy::key_order::{Action, KeyOrder, SignedOrder};

    const GOVERNED: &str = "[keys.k]\nrequest_ttl_secs = 60\napproval_ttl_secs = 60\nrequire = { treasury = 1 }\n\n[governance]\nadmins = [\"alice\", \"carol\"]\nadmin_quorum = 2\n";

    struct Node {
        service: GovernanceService,
        holds: Arc<HoldStore>,
        audit: Arc<MemoryAudit>,
        approvers: Approvers,
        _dir: tempfile::TempDir,
    }

    fn node() -> Node {
        let approvers = Approvers::new(GOVERNED).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let holds = Arc::new(HoldStore::open(&dir.path().join("holds.sqlite3")).unwrap());
        let audit = Arc::new(MemoryAudit::new());
        let service = GovernanceService::new(
            Arc::new(PolicyStore::fixed(approvers.policy.clone())),
            holds.clone(),
            audit.clone(),
        )
        .with_share_lookup(Arc::new(|k: &KeyId| {
            (k.as_str() == "k").then_some(KeyKind::FrostSecp256k1)
        }));
        Node {
            service,
            holds,
            audit,
            approvers,
            _dir: dir,
        }
    }

    fn order(action: Action) -> KeyOrder {
        KeyOrder {
            key_id: KeyId::parse("k").unwrap(),
            action,
            expires_at: now() + 600,
        }
    }

    async fn retire(
        node: &Node,
        order: &KeyOrder,
        who: &[&str],
    ) -> Result<pb::RetireKeyResponse, Status> {
        let signed = SignedOrder {
            order: order.clone(),
            signatures: who
                .iter()
                .map(|w| node.approvers.order_signature(w, order, now()))
                .collect(),
        };
        node.service
            .retire_key(Request::new(pb::RetireKeyRequest {
                order: Some(ringi_proto::key_order::order_to_pb(&signed)),
            }))
            .await
            .map(Response::into_inner)
    }

    #[tokio::test]
    async fn a_quorum_retires_once_and_every_refusal_names_its_rule() {
        let node = node();
        let grace = now() + 30;
        let retirement = order(Action::Retire {
            destroy_after: grace,
        });
        for (who, code, words) in [
            (&["alice"][..], Code::FailedPrecondition, "1 of 2"),
            (
                &["alice", "bob"][..],
                Code::PermissionDenied,
                "not an admin",
            ),
            (
                &["alice", "mallory"][..],
                Code::PermissionDenied,
                "not an admin",
            ),
        ] {
            let err = retire(&node, &retirement, who).await.unwrap_err();
            assert_eq!(err.code(), code, "{who:?}: {err:?}");
            assert!(err.message().contains(words), "{}", err.message());
        }
        let repair = order(Action::Repair {
            identifier: 1,
            recipient: vec![2; 33],
            helpers: [(2, vec![3; 33])].into_iter().collect(),
        });
        let err = retire(&node, &repair, &["alice", "carol"])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = node
            .service
            .retire_key(Request::new(pb::RetireKeyRequest { order: None }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(node.holds.retirement(&KeyId::parse("k").unwrap()).is_none());
        assert!(node.audit.events().is_empty());

        let done = retire(&node, &retirement, &["carol", "alice"])
            .await
            .unwrap();
        assert!(!done.already);
        assert_eq!(done.kind, "frost-secp256k1");
        let r = done.retirement.unwrap();
        assert_eq!((r.key_id.as_str(), r.destroy_after), ("k", grace));
        assert_eq!(r.order_id, retirement.id().to_vec());
        assert_eq!(r.admins, vec!["alice".to_string(), "carol".to_string()]);
        assert_eq!(node.audit.events(), vec!["key_retired".to_string()]);

        // The same order again, or another: the first retirement stands.
        let again = retire(&node, &retirement, &["alice", "carol"])
            .await
            .unwrap();
        assert!(again.already);
        let sooner = order(Action::Retire {
            destroy_after: now(),
        });
        let other = retire(&node, &sooner, &["alice", "carol"]).await.unwrap();
        assert!(other.already);
        assert_eq!(other.retirement.unwrap().destroy_after, grace);
        assert_eq!(node.audit.events().len(), 1, "audited once");

        let holds = node
            .service
            .get_holds(Request::new(pb::GetHoldsRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(holds.retirements.len(), 1);
        assert_eq!(holds.retirements[0].destroyed_at, 0);
    }
}
