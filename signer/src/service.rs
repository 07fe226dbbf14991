//! The `ringi.signer.v1.Signer` gRPC service: thin handlers that decode the
//! request, call the vault or the DKG runs on a blocking thread (the token
//! and FROST arithmetic are synchronous CPU/HSM work), and map errors to
//! statuses. Every refusal is logged with its reason.

use std::sync::Arc;

use frost_secp256k1::SigningPackage;
use ringi_policy::key_id::check_name as validate_key_id;
use ringi_proto::signer::v1 as pb;
use tonic::{Request, Response, Status};

use crate::authorize::{ApprovedBundles, check_message, now};
use crate::dkg::{DkgRuns, Participant, Round1Request};
use crate::dkg_peer::Attestation;
use crate::node_audit::NodeAudit;
use crate::spending::{LedgerError, SpendingLedger};
use crate::vault::ShareVault;
use ringi_policy::policy::Policy;

pub struct SignerService {
    vault: Arc<dyn ShareVault>,
    dkg: Arc<DkgRuns>,
    /// The pinned approval policy every signing request must satisfy.
    policy: Arc<Policy>,
    /// Bundles already found approved (round 1), so round 2 is cheaper.
    approved: Arc<ApprovedBundles>,
    /// What this node has signed, for its own check of the spending caps.
    ledger: Arc<SpendingLedger>,
    /// Operators' daily-volume figures for percentage caps, if configured.
    daily_volume_file: Option<Arc<std::path::PathBuf>>,
    /// The node's audit trail.
    audit: Arc<NodeAudit>,
}

impl SignerService {
    pub fn new(
        vault: Arc<dyn ShareVault>,
        dkg: Arc<DkgRuns>,
        policy: Arc<Policy>,
        ledger: Arc<SpendingLedger>,
        daily_volume_file: Option<std::path::PathBuf>,
        audit: Arc<NodeAudit>,
    ) -> Self {
        SignerService {
            vault,
            dkg,
            policy,
            approved: Arc::new(ApprovedBundles::default()),
            ledger,
            daily_volume_file: daily_volume_file.map(Arc::new),
            audit,
        }
    }
}

fn check_key_id(key_id: &str) -> Result<(), Status> {
    validate_key_id(key_id).map_err(|e| Status::invalid_argument(format!("key_id: {e}")))
}

/// Runs blocking token/FROST work off the async runtime, and logs and
/// audits refusals.
async fn blocking<T: Send + 'static>(
    audit: &Arc<NodeAudit>,
    rpc: &'static str,
    key_id: String,
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    let result = tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Status::internal(format!("worker failed: {e}"))));
    if let Err(status) = &result {
        tracing::warn!(rpc, key_id = %key_id, code = ?status.code(), reason = status.message(), "refused");
        let fields = [
            ("rpc", rpc.to_string()),
            ("key_id", key_id),
            ("code", format!("{:?}", status.code())),
            ("reason", status.message().to_string()),
        ];
        if let Err(e) = audit.record("refused", &fields) {
            tracing::error!(error = %e, "audit log write failed");
        }
    }
    result
}

/// Appends an audit entry from inside a handler; a failure refuses the call.
fn audited(audit: &NodeAudit, event: &str, fields: &[(&str, String)]) -> Result<(), Status> {
    audit
        .record(event, fields)
        .map_err(|e| Status::unavailable(format!("audit log unavailable, refusing: {e}")))
}

#[tonic::async_trait]
impl pb::signer_server::Signer for SignerService {
    async fn get_node_info(
        &self,
        _request: Request<pb::GetNodeInfoRequest>,
    ) -> Result<Response<pb::GetNodeInfoResponse>, Status> {
        let key_shares = self
            .vault
            .shares()
            .into_iter()
            .map(|s| pb::KeyShareInfo {
                key_id: s.key_id,
                identifier: u32::from(s.identifier),
                group_public_key: s.group_key.to_vec(),
            })
            .collect();
        let (dkg_key_certificate, dkg_key_signature) = self
            .dkg
            .attestation()
            .map(|a| (a.certificate, a.signature))
            .unwrap_or_default();
        Ok(Response::new(pb::GetNodeInfoResponse {
            dkg_public_key: self.dkg.public_key(),
            key_shares,
            dkg_key_certificate,
            dkg_key_signature,
        }))
    }

    async fn dkg_round1(
        &self,
        request: Request<pb::DkgRound1Request>,
    ) -> Result<Response<pb::DkgRound1Response>, Status> {
        let req = request.into_inner();
        let key_id = req.key_id.clone();
        let dkg = self.dkg.clone();
        let round1_package = blocking(&self.audit, "DkgRound1", key_id.clone(), move || {
            check_key_id(&req.key_id)?;
            let participants = req
                .participants
                .into_iter()
                .map(|p| Participant {
                    identifier: p.identifier,
                    dkg_public_key: p.dkg_public_key,
                    attestation: (!p.dkg_key_certificate.is_empty()
                        || !p.dkg_key_signature.is_empty())
                    .then_some(Attestation {
                        certificate: p.dkg_key_certificate,
                        signature: p.dkg_key_signature,
                    }),
                })
                .collect();
            Ok(dkg.round1(Round1Request {
                key_id: req.key_id,
                session_id: req.session_id,
                me: req.identifier,
                min_signers: req.min_signers,
                participants,
            })?)
        })
        .await?;
        tracing::info!(key_id = %key_id, "DKG round 1 done");
        Ok(Response::new(pb::DkgRound1Response { round1_package }))
    }

    async fn dkg_round2(
        &self,
        request: Request<pb::DkgRound2Request>,
    ) -> Result<Response<pb::DkgRound2Response>, Status> {
        let req = request.into_inner();
        let key_id = req.key_id.clone();
        let dkg = self.dkg.clone();
        let sealed_round2_packages =
            blocking(&self.audit, "DkgRound2", key_id.clone(), move || {
                check_key_id(&req.key_id)?;
                Ok(dkg.round2(&req.key_id, &req.session_id, &req.round1_packages)?)
            })
            .await?;
        tracing::info!(key_id = %key_id, "DKG round 2 done");
        Ok(Response::new(pb::DkgRound2Response {
            sealed_round2_packages,
        }))
    }

    async fn dkg_finish(
        &self,
        request: Request<pb::DkgFinishRequest>,
    ) -> Result<Response<pb::DkgFinishResponse>, Status> {
        let req = request.into_inner();
        let key_id = req.key_id.clone();
        let dkg = self.dkg.clone();
        let (public_key_package, group_public_key) =
            blocking(&self.audit, "DkgFinish", key_id.clone(), move || {
                check_key_id(&req.key_id)?;
                let public =
                    dkg.finish(&req.key_id, &req.session_id, &req.sealed_round2_packages)?;
                let encode_err = |e: frost_secp256k1::Error| {
                    Status::internal(format!("public key package: {e}"))
                };
                let group = public.verifying_key().serialize().map_err(encode_err)?;
                Ok((public.serialize().map_err(encode_err)?, group))
            })
            .await?;
        tracing::info!(key_id = %key_id, group_key = %hex::encode(&group_public_key), "DKG finished; share waits for commit");
        Ok(Response::new(pb::DkgFinishResponse {
            public_key_package,
            group_public_key,
        }))
    }

    async fn dkg_commit(
        &self,
        request: Request<pb::DkgCommitRequest>,
    ) -> Result<Response<pb::DkgCommitResponse>, Status> {
        let req = request.into_inner();
        let key_id = req.key_id.clone();
        let dkg = self.dkg.clone();
        let audit = self.audit.clone();
        let info = blocking(&self.audit, "DkgCommit", key_id.clone(), move || {
            check_key_id(&req.key_id)?;
            let info = dkg.commit(&req.key_id, &req.session_id, &req.group_public_key)?;
            audited(
                &audit,
                "dkg_share_stored",
                &[
                    ("key_id", info.key_id.clone()),
                    ("identifier", info.identifier.to_string()),
                    ("group_public_key", hex::encode(info.group_key)),
                ],
            )?;
            Ok(info)
        })
        .await?;
        tracing::info!(key_id = %key_id, identifier = info.identifier, "key share sealed in the token");
        Ok(Response::new(pb::DkgCommitResponse {}))
    }

    async fn dkg_abort(
        &self,
        request: Request<pb::DkgAbortRequest>,
    ) -> Result<Response<pb::DkgAbortResponse>, Status> {
        let req = request.into_inner();
        self.dkg.abort(&req.key_id, &req.session_id);
        tracing::info!(key_id = %req.key_id, "DKG run aborted by the coordinator");
        Ok(Response::new(pb::DkgAbortResponse {}))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let req = request.into_inner();
        let vault = self.vault.clone();
        let policy = self.policy.clone();
        let approved = self.approved.clone();
        let key_id = req.key_id.clone();
        let audit = self.audit.clone();
        let (identifier, commitments) = blocking(&self.audit, "Commit", key_id, move || {
            check_key_id(&req.key_id)?;
            let request =
                approved.authorize(&policy, &req.key_id, req.approval_bundle.as_ref(), now())?;
            let (id, commitments) = vault.commit(&req.key_id)?;
            audited(
                &audit,
                "commit_issued",
                &[
                    ("key_id", req.key_id.clone()),
                    ("request_id", hex::encode(request.id())),
                ],
            )?;
            let bytes = commitments
                .serialize()
                .map_err(|e| Status::internal(format!("commitments: {e}")))?;
            Ok((id, bytes))
        })
        .await?;
        Ok(Response::new(pb::CommitResponse {
            identifier: u32::from(identifier),
            commitments,
        }))
    }

    async fn sign(
        &self,
        request: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        let req = request.into_inner();
        let vault = self.vault.clone();
        let policy = self.policy.clone();
        let remembered = self.approved.clone();
        let ledger = self.ledger.clone();
        let volume_file = self.daily_volume_file.clone();
        let audit = self.audit.clone();
        let key_id = req.key_id.clone();
        let (signature_share, request_id) =
            blocking(&self.audit, "Sign", key_id.clone(), move || {
                check_key_id(&req.key_id)?;
                // Approvals first: nothing touches the token (or the nonces)
                // for a request this node has not seen approved.
                let approved = remembered.authorize(
                    &policy,
                    &req.key_id,
                    req.approval_bundle.as_ref(),
                    now(),
                )?;
                let package = SigningPackage::deserialize(&req.signing_package).map_err(|e| {
                    Status::invalid_argument(format!("signing_package is malformed: {e}"))
                })?;
                check_message(&approved, package.message())?;
                // The node's own caps, counted in its own ledger, in the same
                // transaction that records this request as signed.
                let now = now();
                let limits = policy
                    .key(&req.key_id)
                    .map(|k| k.limits.clone())
                    .unwrap_or_default();
                let volume = ringi_policy::volumes::daily_volume(
                    volume_file.as_deref().map(|p| p.as_path()),
                    &req.key_id,
                )
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
                ledger
                    .record(
                        &req.key_id,
                        &approved.id(),
                        approved.metadata.amount,
                        now,
                        &limits,
                        volume,
                    )
                    .map_err(|e| match e {
                        LedgerError::Cap(_) => Status::resource_exhausted(e.to_string()),
                        LedgerError::Store(_) => Status::unavailable(e.to_string()),
                    })?;
                let share = vault.sign(&req.key_id, &package)?;
                let request_id = hex::encode(approved.id());
                // Written before the share leaves: no audit entry, no share.
                audited(
                    &audit,
                    "share_released",
                    &[
                        ("key_id", req.key_id.clone()),
                        ("request_id", request_id.clone()),
                        ("asset", approved.metadata.asset.clone()),
                        ("amount", approved.metadata.amount.to_string()),
                        ("destination", approved.metadata.destination.clone()),
                        ("requester", approved.requester.clone()),
                    ],
                )?;
                Ok((share.serialize(), request_id))
            })
            .await?;
        tracing::info!(key_id = %key_id, request_id = %request_id, "signature share released for an approved request");
        Ok(Response::new(pb::SignResponse { signature_share }))
    }
}
