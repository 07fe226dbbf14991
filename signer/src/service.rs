//! The `ringi.signer.v1.Signer` gRPC service: the edge between the wire and
//! the node's plain functions. Each handler decodes the request into domain
//! types (the key id through [`KeyId::parse`], once; the approval bundle
//! through `ringi_proto::bundle::bundle_from_pb`), calls the plain function
//! ([`round1::commit`], [`round2::sign`], the DKG steps) on a blocking
//! thread (the token and FROST arithmetic are synchronous CPU/HSM work),
//! encodes the result, and maps errors to statuses (`crate::error`). Every
//! refusal is logged with its reason and audited as a `refused` entry.

use std::sync::Arc;

use ringi_frost::taproot::Secp256k1Tr;
use ringi_frost::{KeyKind, Secp256k1, Suite};
use ringi_policy::clock::now;
use ringi_policy::holds::Hold;
use ringi_policy::key_id::KeyId;
use ringi_proto::bundle::bundle_from_pb;
use ringi_proto::signer::v1 as pb;
use tonic::{Request, Response, Status};

use crate::authorize::{AuthorizationError, PresentedBundle};
use crate::dkg::{DkgRuns, Participant, Purpose, Round1Request};
use crate::dkg_peer::Attestation;
use crate::error::EdgeError;
use crate::node_audit::{AuditSink, audited};
use crate::repair::{HelpRequest, ReceiveRequest, RepairRuns};
use crate::signing::SigningContext;
use crate::{phases, round1, round2};

/// One key kind's part of the node: the signing rounds' context and the
/// DKG runs of that kind's ciphersuite, over the node's one token.
pub struct SuiteService<S: Suite> {
    /// What the signing rounds depend on (vault, policy, ledger, audit...).
    pub signing: Arc<SigningContext<S>>,
    pub dkg: Arc<DkgRuns<S>>,
    pub repair: Arc<RepairRuns<S>>,
}

impl<S: Suite> SuiteService<S> {
    pub fn new(signing: SigningContext<S>, dkg: Arc<DkgRuns<S>>) -> Self {
        SuiteService {
            signing: Arc::new(signing),
            repair: Arc::new(RepairRuns::new(dkg.clone())),
            dkg,
        }
    }

    fn holds(&self, key_id: &str) -> bool {
        self.signing.vault.contains(key_id)
    }
}

/// The node's gRPC service: both key kinds, dispatched by the kind of the
/// key a call names (a key id names one key of one kind on a node), or for
/// a new DKG run by the kind it asks for.
pub struct SignerService {
    frost: SuiteService<Secp256k1>,
    taproot: SuiteService<Secp256k1Tr>,
}

impl SignerService {
    pub fn new(frost: SuiteService<Secp256k1>, taproot: SuiteService<Secp256k1Tr>) -> Self {
        SignerService { frost, taproot }
    }

    fn audit(&self) -> &Arc<dyn AuditSink> {
        &self.frost.signing.audit
    }

    /// The kind of the stored key `key_id`, if this node holds it.
    fn kind_of(&self, key_id: &str) -> Option<KeyKind> {
        if self.taproot.holds(key_id) {
            Some(KeyKind::BitcoinTaproot)
        } else if self.frost.holds(key_id) {
            Some(KeyKind::FrostSecp256k1)
        } else {
            None
        }
    }

    /// The retirement of `key_id` as a hold, if it parses and is retired.
    fn retired(&self, key_id: &str) -> Option<Hold> {
        let key_id = KeyId::parse(key_id).ok()?;
        self.frost.signing.holds.retired(&key_id)
    }

    /// The kind of the DKG run in progress for `key_id`: a run is kept by
    /// the suite its round 1 asked for.
    fn run_kind(&self, key_id: &str) -> KeyKind {
        match KeyId::parse(key_id) {
            Ok(k) if self.taproot.dkg.has_run(&k) => KeyKind::BitcoinTaproot,
            _ => KeyKind::FrostSecp256k1,
        }
    }
}

/// Runs blocking token/FROST work off the async runtime, counts the call
/// (`crate::metrics`), and logs and audits refusals.
async fn blocking<T: Send + 'static>(
    audit: &Arc<dyn AuditSink>,
    rpc: &'static str,
    key_id: String,
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(EdgeError::Worker(e.to_string()).into()));
    answered(audit, rpc, key_id, &result, started.elapsed());
    result
}

/// Counts an answer of `rpc` and, if it is a refusal, logs and audits it
/// (a `refused` entry with its code and reason).
fn answered<T>(
    audit: &Arc<dyn AuditSink>,
    rpc: &'static str,
    key_id: String,
    result: &Result<T, Status>,
    elapsed: std::time::Duration,
) {
    crate::metrics::rpc(rpc, result, elapsed);
    if let Err(status) = result {
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
}

/// The key id of a request, checked once, here.
fn key_id(text: &str) -> Result<KeyId, EdgeError> {
    Ok(KeyId::parse(text)?)
}

/// The approval bundle a Commit or Sign carried, decoded.
fn presented(bundle: Option<&ringi_proto::approval::v1::ApprovalBundle>) -> PresentedBundle {
    PresentedBundle::from(bundle.map(bundle_from_pb))
}

/// Commit: round 1 ([`round1::commit`]); the answer carries the round's
/// time per phase ([`phases`]).
async fn commit<S: Suite>(
    ctx: Arc<SigningContext<S>>,
    req: pb::CommitRequest,
) -> Result<Response<pb::CommitResponse>, Status> {
    if let Some(late) = crate::fault::slow() {
        tokio::time::sleep(late).await;
    }
    let audit = ctx.audit.clone();
    let (answer, timings) = blocking(&audit, "Commit", req.key_id.clone(), move || {
        let key_id = key_id(&req.key_id)?;
        let bundle = presented(req.approval_bundle.as_ref());
        let (out, timings) = phases::measured(|| round1::commit(&ctx, &key_id, &bundle, now()));
        let out = out?;
        let commitments = out.commitments.serialize().map_err(|e| EdgeError::Encode {
            what: "commitments",
            reason: e.to_string(),
        })?;
        let answer = pb::CommitResponse {
            identifier: u32::from(out.identifier),
            commitments,
        };
        Ok((answer, timings))
    })
    .await?;
    Ok(timings.respond(answer))
}

/// Sign: round 2 ([`round2::sign`]); the answer carries the round's time
/// per phase ([`phases`]).
async fn sign<S: Suite>(
    ctx: Arc<SigningContext<S>>,
    req: pb::SignRequest,
) -> Result<Response<pb::SignResponse>, Status> {
    if let Some(late) = crate::fault::slow() {
        tokio::time::sleep(late).await;
    }
    let audit = ctx.audit.clone();
    let (signature_share, key_id, request_id, timings) =
        blocking(&audit, "Sign", req.key_id.clone(), move || {
            let key_id = key_id(&req.key_id)?;
            let bundle = presented(req.approval_bundle.as_ref());
            let (out, timings) = phases::measured(|| {
                round2::sign(
                    &ctx,
                    &key_id,
                    &bundle,
                    &req.signing_package,
                    &req.excluded_identifiers,
                    now(),
                )
            });
            let out = out?;
            Ok((
                out.signature_share.serialize(),
                key_id,
                hex::encode(out.request_id),
                timings,
            ))
        })
        .await?;
    let signature_share = leaving(key_id.as_ref(), &request_id, signature_share)?;
    Ok(timings.respond(pb::SignResponse { signature_share }))
}

/// A released share on its way out of a Sign (alone or in a batch): logged,
/// and put through the test faults that lose or corrupt it.
fn leaving(
    key_id: &str,
    request_id: &str,
    mut signature_share: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    if crate::fault::lose_sign_response() {
        tracing::warn!(key_id = %key_id, request_id = %request_id, "test fault: the Sign response is lost");
        return Err(Status::unavailable("test fault: response lost"));
    }
    if crate::fault::corrupt_share(&mut signature_share) {
        tracing::warn!(key_id = %key_id, request_id = %request_id, "test fault: the signature share sent is corrupted");
    }
    tracing::info!(key_id = %key_id, request_id = %request_id, "signature share released for an approved request");
    Ok(signature_share)
}

/// SignBatch: several Signs of one key ([`round2::sign_each`]), each
/// answered (and counted, logged, audited if refused) as its own Sign
/// would be; the answer's phases are the whole batch's.
async fn sign_batch<S: Suite>(
    ctx: Arc<SigningContext<S>>,
    req: pb::SignBatchRequest,
) -> Result<Response<pb::SignBatchResponse>, Status> {
    if let Some(late) = crate::fault::slow() {
        tokio::time::sleep(late).await;
    }
    let audit = ctx.audit.clone();
    let batch_key = req.key_id.clone();
    let started = std::time::Instant::now();
    let shape = if req.items.is_empty() || req.items.len() > round2::MAX_SIGN_BATCH {
        Err(Status::invalid_argument(format!(
            "a SignBatch holds 1..={} items, not {}",
            round2::MAX_SIGN_BATCH,
            req.items.len()
        )))
    } else if let Some(other) = req
        .items
        .iter()
        .find(|i| !i.key_id.is_empty() && i.key_id != req.key_id)
    {
        Err(Status::invalid_argument(format!(
            "a SignBatch item names key id {:?}, the batch {:?}",
            other.key_id, req.key_id
        )))
    } else {
        Ok(())
    };
    if let Err(status) = shape {
        let refused = Err(status);
        answered(&audit, "SignBatch", batch_key, &refused, started.elapsed());
        return refused;
    }
    let (results, timings) = blocking(&audit, "SignBatch", req.key_id.clone(), move || {
        let key_id = key_id(&req.key_id)?;
        let bundles: Vec<PresentedBundle> = req
            .items
            .iter()
            .map(|i| presented(i.approval_bundle.as_ref()))
            .collect();
        let items: Vec<round2::SignItem<'_>> = req
            .items
            .iter()
            .zip(&bundles)
            .map(|(item, bundle)| round2::SignItem {
                bundle,
                signing_package: &item.signing_package,
                excluded: &item.excluded_identifiers,
            })
            .collect();
        let (out, timings) = phases::measured(|| round2::sign_each(&ctx, &key_id, &items, now()));
        let results: Vec<Result<(Vec<u8>, String), Status>> = out
            .into_iter()
            .map(|r| {
                r.map(|o| (o.signature_share.serialize(), hex::encode(o.request_id)))
                    .map_err(Status::from)
            })
            .collect();
        Ok((results, timings))
    })
    .await?;
    let elapsed = started.elapsed();
    tracing::info!(key_id = %batch_key, items = results.len(), "a batch of Signs answered");
    let results = results
        .into_iter()
        .map(|result| {
            let result = result.and_then(|(signature_share, request_id)| {
                leaving(&batch_key, &request_id, signature_share)
            });
            answered(&audit, "Sign", batch_key.clone(), &result, elapsed);
            pb::SignResult {
                outcome: Some(match result {
                    Ok(signature_share) => {
                        pb::sign_result::Outcome::Response(pb::SignResponse { signature_share })
                    }
                    Err(status) => pb::sign_result::Outcome::Refusal(pb::SignRefusal {
                        code: status.code() as i32,
                        message: status.message().to_string(),
                    }),
                }),
            }
        })
        .collect();
    Ok(timings.respond(pb::SignBatchResponse { results }))
}

/// Preprocess: round 1 ahead of time ([`crate::preprocess::preprocess`]);
/// the answer carries the batch's time per phase ([`phases`]).
async fn preprocess<S: Suite>(
    ctx: Arc<SigningContext<S>>,
    req: pb::PreprocessRequest,
) -> Result<Response<pb::PreprocessResponse>, Status> {
    if let Some(late) = crate::fault::slow() {
        tokio::time::sleep(late).await;
    }
    let audit = ctx.audit.clone();
    let (answer, timings) = blocking(&audit, "Preprocess", req.key_id.clone(), move || {
        let key_id = key_id(&req.key_id)?;
        let (out, timings) =
            phases::measured(|| crate::preprocess::preprocess(&ctx, &key_id, req.count));
        let out = out?;
        let commitments = out
            .commitments
            .iter()
            .map(|c| {
                c.serialize().map_err(|e| EdgeError::Encode {
                    what: "commitments",
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let answer = pb::PreprocessResponse {
            identifier: u32::from(out.identifier),
            commitments,
            boot_epoch: crate::preprocess::boot_epoch().to_vec(),
        };
        Ok((answer, timings))
    })
    .await?;
    Ok(timings.respond(answer))
}

fn participants(participants: Vec<pb::DkgParticipant>) -> Vec<Participant> {
    participants
        .into_iter()
        .map(|p| Participant {
            identifier: p.identifier,
            dkg_public_key: p.dkg_public_key,
            attestation: (!p.dkg_key_certificate.is_empty() || !p.dkg_key_signature.is_empty())
                .then_some(Attestation {
                    certificate: p.dkg_key_certificate,
                    signature: p.dkg_key_signature,
                }),
        })
        .collect()
}

/// The key's kind a DKG round 1 asks for ("" is frost-secp256k1).
fn requested_kind(kind: &str) -> Result<KeyKind, Status> {
    if kind.is_empty() {
        return Ok(KeyKind::FrostSecp256k1);
    }
    KeyKind::parse(kind).map_err(|e| Status::invalid_argument(format!("kind: {e}")))
}

/// A retired key id's refusal (FAILED_PRECONDITION, naming the
/// retirement): no DKG, a refresh's included, runs under it again.
fn refuse_retired(retired: Option<Hold>) -> Result<(), Status> {
    match retired {
        Some(hold) => Err(AuthorizationError::Held(Box::new(hold)).into()),
        None => Ok(()),
    }
}

/// Round 1 of a DKG of suite `S`; `existing` is the kind of a key this
/// node already holds under the key id, if any (of either suite);
/// `retired`, the key id's retirement, if any.
async fn dkg_round1<S: Suite>(
    audit: &Arc<dyn AuditSink>,
    dkg: Arc<DkgRuns<S>>,
    policies: Arc<ringi_policy::policy_store::PolicyStore>,
    req: pb::DkgRound1Request,
    existing: Option<KeyKind>,
    retired: Option<Hold>,
) -> Result<Vec<u8>, Status> {
    let sink = audit.clone();
    blocking(audit, "DkgRound1", req.key_id.clone(), move || {
        refuse_retired(retired)?;
        let mut ordered_by = Vec::new();
        if req.refresh {
            // The admins' order, where the key's rules ask for one.
            let order = match req.order.as_ref() {
                Some(o) => Some(
                    ringi_proto::key_order::order_from_pb(o)
                        .map_err(|e| Status::invalid_argument(format!("refresh order: {}", e.0)))?,
                ),
                None => None,
            };
            let at = now();
            ordered_by = ringi_policy::key_order::check_refresh(
                &policies.current(at),
                &key_id(&req.key_id)?,
                order.as_ref(),
                at,
            )
            .map_err(|refused| {
                Status::new(
                    tonic::Code::from_i32(refused.grpc_code()),
                    format!("refresh order: {refused}"),
                )
            })?;
        }
        let purpose = if req.refresh {
            Purpose::Refresh {
                current_public: (!req.public_key_package.is_empty())
                    .then_some(req.public_key_package),
            }
        } else {
            // A key id names one key of one kind.
            if let Some(kind) = existing {
                return Err(Status::already_exists(format!(
                    "a key share for key id {:?} exists on this node already ({kind})",
                    req.key_id
                )));
            }
            Purpose::Create
        };
        let refresh = matches!(purpose, Purpose::Refresh { .. });
        let package = dkg.round1(
            Round1Request {
                key_id: key_id(&req.key_id)?,
                session_id: req.session_id,
                me: req.identifier,
                min_signers: req.min_signers,
                participants: participants(req.participants),
            },
            purpose,
        )?;
        if refresh {
            audited(
                sink.as_ref(),
                "refresh_started",
                &[
                    ("key_id", req.key_id.clone()),
                    ("kind", S::KIND.as_str().to_string()),
                    ("ordered_by", ordered_by.join(",")),
                ],
            )?;
        }
        Ok(package)
    })
    .await
}

async fn dkg_round2<S: Suite>(
    audit: &Arc<dyn AuditSink>,
    dkg: Arc<DkgRuns<S>>,
    req: pb::DkgRound2Request,
) -> Result<std::collections::BTreeMap<u32, Vec<u8>>, Status> {
    blocking(audit, "DkgRound2", req.key_id.clone(), move || {
        let key_id = key_id(&req.key_id)?;
        Ok(dkg.round2(&key_id, &req.session_id, &req.round1_packages)?)
    })
    .await
}

async fn dkg_finish<S: Suite>(
    audit: &Arc<dyn AuditSink>,
    dkg: Arc<DkgRuns<S>>,
    req: pb::DkgFinishRequest,
) -> Result<(Vec<u8>, Vec<u8>), Status> {
    blocking(audit, "DkgFinish", req.key_id.clone(), move || {
        let key_id = key_id(&req.key_id)?;
        let public = dkg.finish(&key_id, &req.session_id, &req.sealed_round2_packages)?;
        let encode_err = |e: frost_core::Error<S>| EdgeError::Encode {
            what: "public key package",
            reason: e.to_string(),
        };
        let group = public.verifying_key().serialize().map_err(encode_err)?;
        Ok((public.serialize().map_err(encode_err)?, group))
    })
    .await
}

async fn dkg_commit<S: Suite>(
    audit: &Arc<dyn AuditSink>,
    dkg: Arc<DkgRuns<S>>,
    req: pb::DkgCommitRequest,
    retired: Option<Hold>,
) -> Result<crate::dkg::Committed, Status> {
    let sink = audit.clone();
    blocking(audit, "DkgCommit", req.key_id.clone(), move || {
        let key_id = key_id(&req.key_id)?;
        if retired.is_some() {
            // A run under way when the key was retired stores nothing.
            dkg.forget(&key_id);
        }
        refuse_retired(retired)?;
        if crate::fault::fail_dkg_commit() {
            return Err(Status::unavailable(
                "test fault: this node fails its DKG commit (RINGI_TEST_FAULT=fail-dkg-commit)",
            ));
        }
        let committed = dkg.commit(&key_id, &req.session_id, &req.group_public_key)?;
        let info = &committed.info;
        audited(
            sink.as_ref(),
            if committed.refresh {
                "refresh_share_stored"
            } else {
                "dkg_share_stored"
            },
            &[
                ("key_id", info.key_id.clone()),
                ("kind", S::KIND.as_str().to_string()),
                ("identifier", info.identifier.to_string()),
                ("group_public_key", hex::encode(info.group_key)),
                ("generation", committed.generation.to_string()),
            ],
        )?;
        Ok(committed)
    })
    .await
}

/// A repair order off the wire.
fn order(
    order: Option<&ringi_proto::approval::v1::KeyOrder>,
) -> Result<ringi_policy::key_order::SignedOrder, Status> {
    let order = order.ok_or_else(|| Status::invalid_argument("no repair order"))?;
    ringi_proto::key_order::order_from_pb(order)
        .map_err(|e| Status::invalid_argument(format!("repair order: {}", e.0)))
}

/// RepairHelp for a key of suite `S`, audited.
async fn repair_help<S: Suite>(
    audit: &Arc<dyn AuditSink>,
    suite: &SuiteService<S>,
    req: pb::RepairHelpRequest,
) -> Result<pb::RepairHelpResponse, Status> {
    let sink = audit.clone();
    let repair = suite.repair.clone();
    let policies = suite.signing.policies.clone();
    let key = req
        .order
        .as_ref()
        .map(|o| o.key_id.clone())
        .unwrap_or_default();
    let holds = suite.signing.holds.clone();
    blocking(audit, "RepairHelp", key, move || {
        let signed = order(req.order.as_ref())?;
        // A retired key's share helps no repair.
        refuse_retired(holds.retired(&signed.order.key_id))?;
        let recipient = req
            .recipient
            .ok_or_else(|| Status::invalid_argument("no recipient"))?;
        let at = now();
        let policy = policies.current(at);
        let key_id = signed.order.key_id.to_string();
        let order_id = hex::encode(signed.order.id());
        let repaired = recipient.identifier;
        let recipient_key = hex::encode(&recipient.dkg_public_key);
        let sealed_deltas = repair.help(
            HelpRequest {
                order: signed,
                session_id: req.session_id,
                helpers: participants(req.helpers),
                recipient: participants(vec![recipient]).remove(0),
            },
            &policy,
            at,
        )?;
        audited(
            sink.as_ref(),
            "repair_helping",
            &[
                ("key_id", key_id),
                ("repaired_identifier", repaired.to_string()),
                ("recipient_transport_key", recipient_key),
                ("order", order_id),
            ],
        )?;
        Ok(pb::RepairHelpResponse { sealed_deltas })
    })
    .await
}

/// RepairCombine for a key of suite `S`.
async fn repair_combine<S: Suite>(
    audit: &Arc<dyn AuditSink>,
    repair: Arc<RepairRuns<S>>,
    holds: Arc<crate::holds::HoldStore>,
    req: pb::RepairCombineRequest,
) -> Result<pb::RepairCombineResponse, Status> {
    let sink = audit.clone();
    blocking(audit, "RepairCombine", req.key_id.clone(), move || {
        let key_id = key_id(&req.key_id)?;
        refuse_retired(holds.retired(&key_id))?;
        let sealed_sigma = repair.combine(&key_id, &req.session_id, &req.sealed_deltas)?;
        audited(
            sink.as_ref(),
            "repair_sigma_sealed",
            &[("key_id", req.key_id.clone())],
        )?;
        Ok(pb::RepairCombineResponse { sealed_sigma })
    })
    .await
}

/// RepairReceive into the vault of suite `S`, audited.
async fn repair_receive<S: Suite>(
    audit: &Arc<dyn AuditSink>,
    suite: &SuiteService<S>,
    req: pb::RepairReceiveRequest,
) -> Result<pb::RepairReceiveResponse, Status> {
    let sink = audit.clone();
    let repair = suite.repair.clone();
    let policies = suite.signing.policies.clone();
    let key = req
        .order
        .as_ref()
        .map(|o| o.key_id.clone())
        .unwrap_or_default();
    let holds = suite.signing.holds.clone();
    blocking(audit, "RepairReceive", key, move || {
        let signed = order(req.order.as_ref())?;
        // A retired key id takes no share on this node again.
        refuse_retired(holds.retired(&signed.order.key_id))?;
        let at = now();
        let policy = policies.current(at);
        let order_id = hex::encode(signed.order.id());
        let info = repair.receive(
            ReceiveRequest {
                order: signed,
                session_id: req.session_id,
                helpers: participants(req.helpers),
                public_key_package: req.public_key_package,
                sealed_sigmas: req.sealed_sigmas,
            },
            &policy,
            at,
        )?;
        audited(
            sink.as_ref(),
            "share_repaired",
            &[
                ("key_id", info.key_id.clone()),
                ("kind", S::KIND.as_str().to_string()),
                ("identifier", info.identifier.to_string()),
                ("group_public_key", hex::encode(info.group_key)),
                ("order", order_id),
            ],
        )?;
        tracing::info!(key_id = %info.key_id, identifier = info.identifier, "repaired share sealed in the token");
        Ok(pb::RepairReceiveResponse {
            share: Some(pb::KeyShareInfo {
                key_id: info.key_id,
                identifier: u32::from(info.identifier),
                group_public_key: info.group_key.to_vec(),
                kind: S::KIND.as_str().to_string(),
                generation: info.generation,
                pending_generation: 0,
                public_key_package: info.public_key_package,
                pending_public_key_package: Vec::new(),
            }),
        })
    })
    .await
}

/// ActivateShare on the vault of suite `S`, on the other participants'
/// votes, audited.
async fn activate_share<S: Suite>(
    audit: &Arc<dyn AuditSink>,
    dkg: Arc<DkgRuns<S>>,
    req: pb::ActivateShareRequest,
) -> Result<pb::ActivateShareResponse, Status> {
    let sink = audit.clone();
    blocking(audit, "ActivateShare", req.key_id.clone(), move || {
        let key_id = key_id(&req.key_id)?;
        if crate::fault::fail_share_activation() {
            return Err(Status::unavailable(
                "test fault: this node fails ActivateShare (RINGI_TEST_FAULT=fail-share-activation)",
            ));
        }
        let (activation, voters) = dkg.activate(
            &key_id,
            req.generation,
            &participants(req.participants),
            &req.stored_votes,
        )?;
        Ok(match activation {
            crate::vault::Activation::AlreadyActive => pb::ActivateShareResponse {
                already_active: true,
                retired_generation: 0,
            },
            crate::vault::Activation::Activated { retired } => {
                audited(
                    sink.as_ref(),
                    "refresh_activated",
                    &[
                        ("key_id", req.key_id.clone()),
                        ("generation", req.generation.to_string()),
                        ("destroyed_generation", retired.to_string()),
                        ("stored_votes_from", numbers(&voters)),
                    ],
                )?;
                tracing::info!(key_id = %req.key_id, generation = req.generation, destroyed = retired, "refreshed share in use; the previous share is destroyed");
                pb::ActivateShareResponse {
                    already_active: false,
                    retired_generation: retired,
                }
            }
        })
    })
    .await
}

/// DiscardShare on the vault of suite `S`, on another participant's
/// aborted vote, audited.
async fn discard_share<S: Suite>(
    audit: &Arc<dyn AuditSink>,
    dkg: Arc<DkgRuns<S>>,
    req: pb::DiscardShareRequest,
) -> Result<pb::DiscardShareResponse, Status> {
    let sink = audit.clone();
    blocking(audit, "DiscardShare", req.key_id.clone(), move || {
        let key_id = key_id(&req.key_id)?;
        let (discarded, voters) = dkg.discard(
            &key_id,
            req.generation,
            &participants(req.participants),
            &req.aborted_votes,
        )?;
        if discarded {
            audited(
                sink.as_ref(),
                "refresh_discarded",
                &[
                    ("key_id", req.key_id.clone()),
                    ("generation", req.generation.to_string()),
                    ("aborted_votes_from", numbers(&voters)),
                ],
            )?;
            tracing::info!(key_id = %req.key_id, generation = req.generation, "refreshed share discarded; the share in use stays");
        }
        Ok(pb::DiscardShareResponse { discarded })
    })
    .await
}

/// RefreshVote on the vault of suite `S`, audited.
async fn refresh_vote<S: Suite>(
    audit: &Arc<dyn AuditSink>,
    dkg: Arc<DkgRuns<S>>,
    req: pb::RefreshVoteRequest,
) -> Result<pb::RefreshVoteResponse, Status> {
    let sink = audit.clone();
    blocking(audit, "RefreshVote", req.key_id.clone(), move || {
        let key_id = key_id(&req.key_id)?;
        let (vote, votes) = dkg.vote(
            &key_id,
            &req.public_key_package,
            &participants(req.participants),
        )?;
        audited(
            sink.as_ref(),
            "refresh_vote",
            &[
                ("key_id", req.key_id.clone()),
                ("vote", vote.as_str().to_string()),
                (
                    "package_sha256",
                    hex::encode(crate::refresh_vote::digest(&req.public_key_package)),
                ),
            ],
        )?;
        Ok(pb::RefreshVoteResponse {
            vote: match vote {
                crate::refresh_vote::Vote::Stored => pb::RefreshVoteKind::RefreshVoteStored,
                crate::refresh_vote::Vote::Aborted => pb::RefreshVoteKind::RefreshVoteAborted,
            } as i32,
            votes,
        })
    })
    .await
}

/// Participant numbers for an audit entry: "1,3".
fn numbers(list: &[u16]) -> String {
    list.iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[tonic::async_trait]
impl pb::signer_server::Signer for SignerService {
    async fn get_node_info(
        &self,
        _request: Request<pb::GetNodeInfoRequest>,
    ) -> Result<Response<pb::GetNodeInfoResponse>, Status> {
        let info = |kind: KeyKind| {
            move |s: crate::vault::ShareInfo| pb::KeyShareInfo {
                key_id: s.key_id,
                identifier: u32::from(s.identifier),
                group_public_key: s.group_key.to_vec(),
                kind: kind.as_str().to_string(),
                generation: s.generation,
                pending_generation: s.pending_generation.unwrap_or(0),
                public_key_package: s.public_key_package,
                pending_public_key_package: s.pending_public_key_package,
            }
        };
        let mut key_shares: Vec<pb::KeyShareInfo> = self
            .frost
            .signing
            .vault
            .shares()
            .into_iter()
            .map(info(KeyKind::FrostSecp256k1))
            .chain(
                self.taproot
                    .signing
                    .vault
                    .shares()
                    .into_iter()
                    .map(info(KeyKind::BitcoinTaproot)),
            )
            .collect();
        key_shares.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        let (dkg_key_certificate, dkg_key_signature) = self
            .frost
            .dkg
            .attestation()
            .map(|a| (a.certificate, a.signature))
            .unwrap_or_default();
        let dkg_transport_keys = self
            .frost
            .dkg
            .own_keys()
            .all()
            .iter()
            .map(|key| {
                let public_key = key.wire();
                pb::DkgTransportKey {
                    signature: self
                        .frost
                        .dkg
                        .attestation_of(&public_key)
                        .map(|a| a.signature)
                        .unwrap_or_default(),
                    public_key,
                }
            })
            .collect();
        Ok(Response::new(pb::GetNodeInfoResponse {
            dkg_public_key: self.frost.dkg.public_key(),
            key_shares,
            dkg_key_certificate,
            dkg_key_signature,
            dkg_transport_keys,
        }))
    }

    async fn dkg_round1(
        &self,
        request: Request<pb::DkgRound1Request>,
    ) -> Result<Response<pb::DkgRound1Response>, Status> {
        let req = request.into_inner();
        let key_id_text = req.key_id.clone();
        let existing = self.kind_of(&req.key_id);
        let kind = match (req.refresh, existing) {
            // A refresh runs in the suite of the key it refreshes.
            (true, Some(held)) => {
                if !req.kind.is_empty() && requested_kind(&req.kind)? != held {
                    return Err(Status::failed_precondition(format!(
                        "key id {:?} is a {held} key on this node, not {}",
                        req.key_id, req.kind
                    )));
                }
                held
            }
            _ => requested_kind(&req.kind)?,
        };
        // A new round 1 abandons a run of the other kind for the key id.
        if let Ok(k) = KeyId::parse(&req.key_id) {
            match kind {
                KeyKind::FrostSecp256k1 => self.taproot.dkg.forget(&k),
                KeyKind::BitcoinTaproot => self.frost.dkg.forget(&k),
            }
        }
        let retired = self.retired(&req.key_id);
        let round1_package = match kind {
            KeyKind::FrostSecp256k1 => {
                dkg_round1(
                    self.audit(),
                    self.frost.dkg.clone(),
                    self.frost.signing.policies.clone(),
                    req,
                    existing,
                    retired,
                )
                .await
            }
            KeyKind::BitcoinTaproot => {
                dkg_round1(
                    self.audit(),
                    self.taproot.dkg.clone(),
                    self.taproot.signing.policies.clone(),
                    req,
                    existing,
                    retired,
                )
                .await
            }
        }?;
        tracing::info!(key_id = %key_id_text, kind = %kind, "DKG round 1 done");
        Ok(Response::new(pb::DkgRound1Response { round1_package }))
    }

    async fn dkg_round2(
        &self,
        request: Request<pb::DkgRound2Request>,
    ) -> Result<Response<pb::DkgRound2Response>, Status> {
        let req = request.into_inner();
        let key_id_text = req.key_id.clone();
        let sealed_round2_packages = match self.run_kind(&req.key_id) {
            KeyKind::FrostSecp256k1 => dkg_round2(self.audit(), self.frost.dkg.clone(), req).await,
            KeyKind::BitcoinTaproot => {
                dkg_round2(self.audit(), self.taproot.dkg.clone(), req).await
            }
        }?;
        tracing::info!(key_id = %key_id_text, "DKG round 2 done");
        Ok(Response::new(pb::DkgRound2Response {
            sealed_round2_packages,
        }))
    }

    async fn dkg_finish(
        &self,
        request: Request<pb::DkgFinishRequest>,
    ) -> Result<Response<pb::DkgFinishResponse>, Status> {
        let req = request.into_inner();
        let key_id_text = req.key_id.clone();
        let (public_key_package, group_public_key) = match self.run_kind(&req.key_id) {
            KeyKind::FrostSecp256k1 => dkg_finish(self.audit(), self.frost.dkg.clone(), req).await,
            KeyKind::BitcoinTaproot => {
                dkg_finish(self.audit(), self.taproot.dkg.clone(), req).await
            }
        }?;
        tracing::info!(key_id = %key_id_text, group_key = %hex::encode(&group_public_key), "DKG finished; share waits for commit");
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
        let key_id_text = req.key_id.clone();
        let retired = self.retired(&req.key_id);
        let committed = match self.run_kind(&req.key_id) {
            KeyKind::FrostSecp256k1 => {
                dkg_commit(self.audit(), self.frost.dkg.clone(), req, retired).await
            }
            KeyKind::BitcoinTaproot => {
                dkg_commit(self.audit(), self.taproot.dkg.clone(), req, retired).await
            }
        }?;
        tracing::info!(key_id = %key_id_text, identifier = committed.info.identifier, generation = committed.generation, refresh = committed.refresh, "key share sealed in the token");
        Ok(Response::new(pb::DkgCommitResponse {
            generation: committed.generation,
            stored_votes: committed.stored_votes,
        }))
    }

    async fn repair_help(
        &self,
        request: Request<pb::RepairHelpRequest>,
    ) -> Result<Response<pb::RepairHelpResponse>, Status> {
        let req = request.into_inner();
        let key = req
            .order
            .as_ref()
            .map(|o| o.key_id.clone())
            .unwrap_or_default();
        let answer = match self.kind_of(&key) {
            Some(KeyKind::BitcoinTaproot) => repair_help(self.audit(), &self.taproot, req).await,
            _ => repair_help(self.audit(), &self.frost, req).await,
        }?;
        Ok(Response::new(answer))
    }

    async fn repair_combine(
        &self,
        request: Request<pb::RepairCombineRequest>,
    ) -> Result<Response<pb::RepairCombineResponse>, Status> {
        let req = request.into_inner();
        let answer = match self.kind_of(&req.key_id) {
            Some(KeyKind::BitcoinTaproot) => {
                repair_combine(
                    self.audit(),
                    self.taproot.repair.clone(),
                    self.taproot.signing.holds.clone(),
                    req,
                )
                .await
            }
            _ => {
                repair_combine(
                    self.audit(),
                    self.frost.repair.clone(),
                    self.frost.signing.holds.clone(),
                    req,
                )
                .await
            }
        }?;
        Ok(Response::new(answer))
    }

    async fn repair_receive(
        &self,
        request: Request<pb::RepairReceiveRequest>,
    ) -> Result<Response<pb::RepairReceiveResponse>, Status> {
        let req = request.into_inner();
        let key = req
            .order
            .as_ref()
            .map(|o| o.key_id.clone())
            .unwrap_or_default();
        // A retired key id first: whether or not its share is still here,
        // that is why nothing will be stored.
        refuse_retired(self.retired(&key))?;
        if let Some(held) = self.kind_of(&key) {
            return Err(Status::already_exists(format!(
                "a key share for key id {key:?} exists on this node already ({held}): nothing to repair here"
            )));
        }
        let answer = match requested_kind(&req.kind)? {
            KeyKind::BitcoinTaproot => repair_receive(self.audit(), &self.taproot, req).await,
            KeyKind::FrostSecp256k1 => repair_receive(self.audit(), &self.frost, req).await,
        }?;
        Ok(Response::new(answer))
    }

    async fn activate_share(
        &self,
        request: Request<pb::ActivateShareRequest>,
    ) -> Result<Response<pb::ActivateShareResponse>, Status> {
        let req = request.into_inner();
        let answer = match self.kind_of(&req.key_id) {
            Some(KeyKind::BitcoinTaproot) => {
                activate_share(self.audit(), self.taproot.dkg.clone(), req).await
            }
            // Either the frost key, or no key: the frost vault answers
            // NOT_FOUND (or INVALID_ARGUMENT for a malformed key id).
            _ => activate_share(self.audit(), self.frost.dkg.clone(), req).await,
        }?;
        Ok(Response::new(answer))
    }

    async fn refresh_vote(
        &self,
        request: Request<pb::RefreshVoteRequest>,
    ) -> Result<Response<pb::RefreshVoteResponse>, Status> {
        let req = request.into_inner();
        let answer = match self.kind_of(&req.key_id) {
            Some(KeyKind::BitcoinTaproot) => {
                refresh_vote(self.audit(), self.taproot.dkg.clone(), req).await
            }
            _ => refresh_vote(self.audit(), self.frost.dkg.clone(), req).await,
        }?;
        Ok(Response::new(answer))
    }

    async fn discard_share(
        &self,
        request: Request<pb::DiscardShareRequest>,
    ) -> Result<Response<pb::DiscardShareResponse>, Status> {
        let req = request.into_inner();
        let answer = match self.kind_of(&req.key_id) {
            Some(KeyKind::BitcoinTaproot) => {
                discard_share(self.audit(), self.taproot.dkg.clone(), req).await
            }
            _ => discard_share(self.audit(), self.frost.dkg.clone(), req).await,
        }?;
        Ok(Response::new(answer))
    }

    async fn dkg_abort(
        &self,
        request: Request<pb::DkgAbortRequest>,
    ) -> Result<Response<pb::DkgAbortResponse>, Status> {
        let req = request.into_inner();
        // A key id that does not parse names no run: nothing to abort.
        if let Ok(key_id) = KeyId::parse(&req.key_id) {
            self.frost.dkg.abort(&key_id, &req.session_id);
            self.taproot.dkg.abort(&key_id, &req.session_id);
        }
        tracing::info!(key_id = %req.key_id, "DKG run aborted by the coordinator");
        Ok(Response::new(pb::DkgAbortResponse {}))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let req = request.into_inner();
        match self.kind_of(&req.key_id) {
            Some(KeyKind::BitcoinTaproot) => commit(self.taproot.signing.clone(), req).await,
            // Unknown keys too: round 1 checks the approvals first, then
            // the vault answers NOT_FOUND, as it always has.
            _ => commit(self.frost.signing.clone(), req).await,
        }
    }

    async fn sign(
        &self,
        request: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        let req = request.into_inner();
        match self.kind_of(&req.key_id) {
            Some(KeyKind::BitcoinTaproot) => sign(self.taproot.signing.clone(), req).await,
            _ => sign(self.frost.signing.clone(), req).await,
        }
    }

    async fn sign_batch(
        &self,
        request: Request<pb::SignBatchRequest>,
    ) -> Result<Response<pb::SignBatchResponse>, Status> {
        let req = request.into_inner();
        match self.kind_of(&req.key_id) {
            Some(KeyKind::BitcoinTaproot) => sign_batch(self.taproot.signing.clone(), req).await,
            _ => sign_batch(self.frost.signing.clone(), req).await,
        }
    }

    async fn preprocess(
        &self,
        request: Request<pb::PreprocessRequest>,
    ) -> Result<Response<pb::PreprocessResponse>, Status> {
        let req = request.into_inner();
        match self.kind_of(&req.key_id) {
            Some(KeyKind::BitcoinTaproot) => preprocess(self.taproot.signing.clone(), req).await,
            _ => preprocess(self.frost.signing.clone(), req).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::testkit::{Cluster, S, k};
    use crate::test_doubles::AuditEntry;
    use frost_core::round1::SigningCommitments;
    use tonic::Code;

    fn wire(bundle: &PresentedBundle) -> Option<ringi_proto::approval::v1::ApprovalBundle> {
        let PresentedBundle::Decoded(b) = bundle else {
            return None;
        };
        Some(ringi_proto::approval::v1::ApprovalBundle {
            request: Some(ringi_proto::bundle::request_to_pb(&b.request)),
            approvals: b
                .approvals
                .iter()
                .map(ringi_proto::bundle::approval_to_pb)
                .collect(),
        })
    }

    /// The phases a response's `ringi-phases` metadata names, each with
    /// a decimal number of microseconds.
    fn phase_names(metadata: &tonic::metadata::MetadataMap) -> Vec<String> {
        let value = metadata
            .get(phases::METADATA_KEY)
            .unwrap()
            .to_str()
            .unwrap();
        value
            .split(';')
            .map(|item| {
                let (name, micros) = item.split_once('=').unwrap();
                micros.parse::<u64>().unwrap();
                name.to_string()
            })
            .collect()
    }

    fn refused(entry: &AuditEntry, rpc: &str, key_id: &str, status: &Status) {
        assert_eq!(entry.event, "refused");
        assert_eq!(entry.fields["rpc"], rpc);
        assert_eq!(entry.fields["key_id"], key_id);
        assert_eq!(entry.fields["code"], format!("{:?}", status.code()));
        assert_eq!(entry.fields["reason"], status.message());
    }

    /// SignBatch: each item answered (and a refused one audited) as its
    /// own Sign; a batch that is empty, too large or names two keys is
    /// refused whole before any item runs.
    #[tokio::test]
    async fn a_sign_batch_answers_each_item_and_refuses_a_bad_batch_whole() {
        let cluster = Cluster::new();
        let node = &cluster.nodes[0];
        let ctx = Arc::new(node.ctx.clone());
        let (_, bundle) = cluster.approved(b"m", 10);
        let package = cluster.package(&[0, 1], &bundle, b"m").serialize().unwrap();
        let item = |bundle: Option<ringi_proto::approval::v1::ApprovalBundle>| pb::SignRequest {
            key_id: String::new(),
            signing_package: package.clone(),
            approval_bundle: bundle,
            excluded_identifiers: Vec::new(),
        };
        let answer = sign_batch(
            ctx.clone(),
            pb::SignBatchRequest {
                key_id: "k".into(),
                items: vec![item(None), item(wire(&bundle))],
            },
        )
        .await
        .unwrap()
        .into_inner();
        let outcomes: Vec<_> = answer
            .results
            .into_iter()
            .map(|r| r.outcome.unwrap())
            .collect();
        match &outcomes[..] {
            [
                pb::sign_result::Outcome::Refusal(refusal),
                pb::sign_result::Outcome::Response(response),
            ] => {
                assert_eq!(refusal.code, Code::PermissionDenied as i32);
                assert!(refusal.message.contains("no approval bundle"));
                assert!(!response.signature_share.is_empty());
            }
            other => panic!("expected a refusal, then a share: {other:?}"),
        }
        let entries = node.audit.entries();
        let refusal = entries.iter().find(|e| e.event == "refused").unwrap();
        assert_eq!(refusal.fields["rpc"], "Sign");
        assert_eq!(refusal.fields["code"], "PermissionDenied");
        assert!(node.audit.events().contains(&"share_released".to_string()));

        for (items, key_id, reason) in [
            (vec![], "k", "1..=64 items, not 0"),
            (vec![item(None); 65], "k", "1..=64 items, not 65"),
            (
                vec![pb::SignRequest {
                    key_id: "other".into(),
                    ..item(None)
                }],
                "k",
                "names key id \"other\"",
            ),
        ] {
            let before = node.audit.entries().len();
            let status = sign_batch(
                ctx.clone(),
                pb::SignBatchRequest {
                    key_id: key_id.into(),
                    items,
                },
            )
            .await
            .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert!(status.message().contains(reason), "{status:?}");
            // Refused whole: one entry, for the batch, no item run.
            let entries = node.audit.entries();
            assert_eq!(entries.len(), before + 1);
            refused(&entries[before], "SignBatch", "k", &status);
        }
    }

    #[tokio::test]
    async fn refusals_are_audited() {
        let cluster = Cluster::new();
        let node = &cluster.nodes[0];
        let ctx = Arc::new(node.ctx.clone());
        let status = sign(
            ctx.clone(),
            pb::SignRequest {
                excluded_identifiers: Vec::new(),
                key_id: "k".into(),
                signing_package: vec![],
                approval_bundle: None,
            },
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(status.message().contains("no approval bundle"));
        refused(&node.audit.entries()[0], "Sign", "k", &status);

        let status = commit(
            ctx.clone(),
            pb::CommitRequest {
                key_id: "bad key".into(),
                approval_bundle: None,
            },
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("key_id: "), "{status:?}");
        refused(&node.audit.entries()[1], "Commit", "bad key", &status);

        let malformed = ringi_proto::approval::v1::ApprovalBundle::default();
        let status = commit(
            ctx,
            pb::CommitRequest {
                key_id: "k".into(),
                approval_bundle: Some(malformed),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        refused(&node.audit.entries()[2], "Commit", "k", &status);
        assert_eq!(node.vault.nonces_waiting(), 0);
    }

    #[tokio::test]
    async fn the_edge_decodes_calls_and_encodes() {
        let cluster = Cluster::now();
        let (_, bundle) = cluster.approved(b"m", 10);
        let mut commitments = std::collections::BTreeMap::new();
        for (i, node) in cluster.nodes.iter().enumerate().take(2) {
            let out = commit(
                Arc::new(node.ctx.clone()),
                pb::CommitRequest {
                    key_id: "k".into(),
                    approval_bundle: wire(&bundle),
                },
            )
            .await
            .unwrap();
            // Round 1 checks the approvals, commits in the token, audits.
            assert_eq!(phase_names(out.metadata()), ["verify", "token", "audit"]);
            let out = out.into_inner();
            assert_eq!(out.identifier, i as u32 + 1);
            commitments.insert(
                ringi_frost::identifier::<S>(i as u16 + 1).unwrap(),
                SigningCommitments::<S>::deserialize(&out.commitments).unwrap(),
            );
        }
        let package = frost_core::SigningPackage::new(commitments, b"m");
        let node = &cluster.nodes[0];
        let out = sign(
            Arc::new(node.ctx.clone()),
            pb::SignRequest {
                excluded_identifiers: Vec::new(),
                key_id: k().to_string(),
                signing_package: package.serialize().unwrap(),
                approval_bundle: wire(&bundle),
            },
        )
        .await
        .unwrap();
        assert_eq!(
            phase_names(out.metadata()),
            ["verify", "token", "ledger", "audit"]
        );
        frost_core::round2::SignatureShare::<S>::deserialize(&out.into_inner().signature_share)
            .unwrap();
        assert_eq!(node.audit.events(), ["commit_issued", "share_released"]);

        // Preprocessing draws nonces in the token and audits; no approvals.
        let out = preprocess(
            Arc::new(cluster.nodes[2].ctx.clone()),
            pb::PreprocessRequest {
                key_id: "k".into(),
                count: 2,
            },
        )
        .await
        .unwrap();
        assert_eq!(phase_names(out.metadata()), ["token", "audit"]);
        assert_eq!(out.into_inner().commitments.len(), 2);

        // No audit entry, no share: the refusal is UNAVAILABLE (and its own
        // audit entry cannot be written either).
        let (_, bundle) = cluster.approved(b"m2", 10);
        let package = cluster.package(&[0, 1], &bundle, b"m2");
        node.audit.set_failing(true);
        let status = sign(
            Arc::new(node.ctx.clone()),
            pb::SignRequest {
                excluded_identifiers: Vec::new(),
                key_id: "k".into(),
                signing_package: package.serialize().unwrap(),
                approval_bundle: wire(&bundle),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
}
