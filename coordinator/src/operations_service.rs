//! The `ringi.coordinator.v1.OperationsService` gRPC service: the latest
//! pre-flight check of the signers ([`crate::preflight`]), for `ringi
//! status`. Thin: the judgement is [`crate::readiness`]'s.

use std::sync::Arc;

use ringi_proto::coordinator::v1 as pb;
use tonic::{Request, Response, Status};

use crate::access;
use crate::config::Role;
use crate::coordinator::Coordinator;
use crate::readiness::{Readiness, SignerProblem};

pub struct OperationsService(pub Arc<Coordinator>);

#[tonic::async_trait]
impl pb::operations_service_server::OperationsService for OperationsService {
    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        access::require(&request, Role::Admin)?;
        let checked = self.0.readiness.get().ok_or_else(|| {
            Status::unavailable("the first pre-flight check of the signers has not finished yet")
        })?;
        let policy_hash = self
            .0
            .policy()
            .map(|p| p.hash().to_vec())
            .unwrap_or_default();
        Ok(Response::new(status_to_pb(
            checked.at,
            policy_hash,
            &checked.readiness,
        )))
    }
}

/// The wire form of one check.
pub fn status_to_pb(at: u64, policy_hash: Vec<u8>, r: &Readiness) -> pb::GetStatusResponse {
    pb::GetStatusResponse {
        checked_at: at,
        policy_hash,
        signers: r
            .signers
            .iter()
            .map(|s| pb::SignerStatus {
                name: s.name.clone(),
                identifier: u32::from(s.identifier),
                reachable: !s
                    .problems
                    .iter()
                    .any(|p| matches!(p, SignerProblem::Unreachable(_))),
                token_serving: s.token_serving,
                policy_hash: s.policy_hash.clone(),
                key_ids: s.key_ids.clone(),
                problems: s.problems.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        keys: r
            .keys
            .iter()
            .map(|k| pb::KeyStatus {
                key_id: k.key_id.clone(),
                threshold: u32::from(k.threshold),
                able_signers: k.able.clone(),
                serving: k.serving(),
                retired: k.retired,
                problems: k.problems.iter().map(ToString::to_string).collect(),
            })
            .collect(),
    }
}
