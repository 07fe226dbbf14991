//! The `ringi.coordinator.v1.PolicyService` gRPC service: the policy the
//! coordinator enforces, and its updates under the policy's own admin
//! quorum (`ringi_policy::policy_update`), checked here exactly as each
//! signer checks them (`ringi_policy::policy_store`, shared).
//!
//! Once an update is in force, requests made under the replaced policy are
//! resolved by the request flow (`crate::requests::superseded`): at their
//! next read, and by the periodic sweep, which this service starts at once.

use std::sync::Arc;

use ringi_policy::clock::now;
use ringi_policy::policy_store::{PolicyStore, PolicyStoreError};
use ringi_proto::approval::v1::PolicyStatus;
use ringi_proto::coordinator::v1 as pb;
use tonic::{Code, Request, Response, Status};

use crate::access;
use crate::config::Role;
use crate::coordinator::Coordinator;

pub struct PolicyService(pub Arc<Coordinator>);

fn store_of(c: &Coordinator) -> Result<&Arc<PolicyStore>, Status> {
    c.policies
        .as_ref()
        .ok_or_else(|| Status::failed_precondition("the coordinator has no policy"))
}

/// The status for an update's refusal: the rule's code and message.
pub fn refusal(e: PolicyStoreError) -> Status {
    Status::new(Code::from(e.kind().grpc_code()), e.to_string())
}

fn status_of(store: &PolicyStore) -> PolicyStatus {
    let (current, pending) = store.status(now());
    ringi_proto::policy_update::status_to_pb(
        &current,
        pending.as_ref().map(|(p, at)| (p.as_ref(), *at)),
    )
}

#[tonic::async_trait]
impl pb::policy_service_server::PolicyService for PolicyService {
    async fn update_policy(
        &self,
        request: Request<pb::UpdatePolicyRequest>,
    ) -> Result<Response<PolicyStatus>, Status> {
        access::require(&request, Role::Admin)?;
        let wire = request
            .into_inner()
            .update
            .ok_or_else(|| Status::invalid_argument("no update"))?;
        let update = ringi_proto::policy_update::update_from_pb(&wire)
            .map_err(|e| Status::invalid_argument(e.0))?;
        let store = store_of(&self.0)?.clone();
        let applied = tokio::task::spawn_blocking(move || store.apply(&update, now()))
            .await
            .map_err(|e| Status::internal(format!("policy worker: {e}")))?
            .map_err(|e| {
                tracing::warn!(error = %e, "policy update refused");
                refusal(e)
            })?;
        if !applied.already {
            self.0.audit(
                "policy_update_accepted",
                &[
                    ("policy_sha256", hex::encode(applied.hash)),
                    ("sequence", applied.sequence.to_string()),
                    ("effective_at", applied.effective_at.to_string()),
                    ("change", applied.change.to_string()),
                    ("admins", applied.admins.join(",")),
                ],
            );
            tracing::warn!(policy_sha256 = %hex::encode(applied.hash), sequence = applied.sequence, effective_at = applied.effective_at, "policy update accepted");
            // Requests under the replaced policy are resolved now, not at
            // the next periodic sweep.
            let c = self.0.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::requests::sweep(&c, false).await {
                    tracing::warn!(error = %e, "request sweep after a policy update failed");
                }
            });
        }
        let mut status = status_of(store_of(&self.0)?);
        status.change = applied.change.to_string();
        status.already = applied.already;
        Ok(Response::new(status))
    }

    async fn get_policy(
        &self,
        _request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<PolicyStatus>, Status> {
        Ok(Response::new(status_of(store_of(&self.0)?)))
    }
}
