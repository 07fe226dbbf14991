//! The coordinator's gRPC services (`ringi.coordinator.v1`): the edge.
//! Handlers check the caller's role, decode request messages into domain
//! values (a [`KeyId`] is parsed here, once), call the request flow
//! ([`crate::requests`]) or the key engine ([`crate::keygen`]), and encode
//! the results as views. Errors become statuses in one place
//! (`From<Error> for Status`, in [`crate::error`]).

use std::pin::Pin;
use std::sync::Arc;

use ringi_frost::KeyKind;
use ringi_policy::key_id::KeyId;
use ringi_policy::policy::Policy;
use ringi_policy::retirement::Retirement;
use ringi_policy::subject::KeyFacts;
use ringi_proto::coordinator::v1 as pb;
use ringi_psbt::{Derived, OwnKey};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::access;
use crate::config::Role;
use crate::coordinator::{Coordinator, Key};
use crate::error::{Error, RequestId};
use crate::keygen::{self, KeygenRequest, Progress};
use crate::metrics::KeyOperation;
use crate::request_state::State;
use crate::request_store::{self, ListFilter, Position, RequestRecord, TransitionRecord};
use crate::request_watch;
use crate::requests;
use crate::store::{KeyRecord, blocking};

fn key_id(text: &str) -> Result<KeyId, Error> {
    Ok(KeyId::parse(text)?)
}

/// A key kind as the API names it; empty is frost-secp256k1.
fn key_kind(text: &str) -> Result<KeyKind, Error> {
    match text {
        "" => Ok(KeyKind::FrostSecp256k1),
        name => KeyKind::parse(name).map_err(|e| Error::InvalidInput {
            field: "kind",
            reason: e.to_string(),
        }),
    }
}

/// The key's public data; for a bitcoin-taproot key also its x-only
/// internal and output keys, and its network and P2TR address under
/// `policy` (empty without a network).
fn public_key(policy: Option<&Policy>, r: &KeyRecord) -> pb::PublicKey {
    retired_key(policy, r, None)
}

/// [`public_key`], with the key's retirement if it is retired.
fn retired_key(
    policy: Option<&Policy>,
    r: &KeyRecord,
    retirement: Option<&Retirement>,
) -> pb::PublicKey {
    let mut key = plain_key(policy, r);
    if let Some(t) = retirement {
        key.retired_at = t.accepted_at;
        key.destroy_after = t.destroy_after;
        key.retirement_order_id = t.order_id.to_vec();
        key.retired_by = t.admins.clone();
        key.shares_destroyed_at = t.destroyed_at.unwrap_or(0);
    }
    key
}

fn plain_key(policy: Option<&Policy>, r: &KeyRecord) -> pb::PublicKey {
    let mut key = pb::PublicKey {
        key_id: r.key_id.to_string(),
        threshold: u32::from(r.threshold),
        signers: r
            .signers
            .iter()
            .map(|(name, id)| pb::KeySigner {
                name: name.clone(),
                identifier: u32::from(*id),
            })
            .collect(),
        group_public_key: r.group_public_key.clone(),
        public_key_package: r.public_key_package.clone(),
        created_at: r.created_at,
        kind: r.kind.as_str().to_string(),
        ..Default::default()
    };
    if r.kind == KeyKind::BitcoinTaproot
        && let Ok((internal_key, output_key)) = r.taproot_keys()
    {
        key.internal_key = internal_key.to_vec();
        key.output_key = output_key.to_vec();
        if let Some(network) = policy
            .and_then(|p| p.key(&r.key_id))
            .and_then(|rules| rules.bitcoin.network)
        {
            key.network = network.as_str().to_string();
            key.address = ringi_frost::taproot::address(&output_key, network);
        }
    }
    key
}

/// `KeyService`.
pub struct KeyService(pub Arc<Coordinator>);

/// A key operation's progress as a stream event.
fn progress_event(p: Progress, total_steps: u32) -> pb::CreateKeyEvent {
    let event = match p {
        Progress::Started { step, description } => {
            pb::create_key_event::Event::StepStarted(pb::StepStarted {
                step,
                total_steps,
                description: description.to_string(),
            })
        }
        Progress::Finished { step, elapsed_ms } => {
            pb::create_key_event::Event::StepFinished(pb::StepFinished {
                step,
                total_steps,
                elapsed_ms,
            })
        }
    };
    pb::CreateKeyEvent { event: Some(event) }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::CreateKeyEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::key_service_server::KeyService for KeyService {
    type CreateKeyStream = EventStream;

    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<EventStream>, Status> {
        access::require(&request, Role::Admin)?;
        let req = request.into_inner();
        let coordinator = self.0.clone();
        // Refuse bad input before opening the stream, so the caller gets the
        // status directly.
        let request = KeygenRequest {
            key_id: key_id(&req.key_id)?,
            kind: key_kind(&req.kind)?,
            threshold: req.threshold,
            signers: req.signers,
        };
        keygen::check_request(&coordinator.registry, &request).map_err(Error::from)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let key_id = request.key_id.clone();
            tracing::info!(key_id = %key_id, kind = %request.kind, threshold = request.threshold, signers = ?request.signers, "DKG started");
            let progress_tx = tx.clone();
            let result = keygen::run(
                &coordinator.registry,
                &coordinator.keys,
                request,
                move |p| {
                    let _ = progress_tx.send(Ok(progress_event(p, keygen::TOTAL_STEPS)));
                },
            )
            .await;
            crate::metrics::key_operation(KeyOperation::Keygen, result.is_ok());
            let last = match result {
                Ok(record) => {
                    tracing::info!(key_id = %key_id, group_key = %hex::encode(&record.group_public_key), "DKG finished; key stored");
                    let signers: Vec<String> =
                        record.signers.iter().map(|(n, _)| n.clone()).collect();
                    coordinator.audit(
                        "key_created",
                        &[
                            ("key_id", key_id.to_string()),
                            ("kind", record.kind.to_string()),
                            ("threshold", record.threshold.to_string()),
                            ("signers", signers.join(",")),
                            ("group_public_key", hex::encode(&record.group_public_key)),
                        ],
                    );
                    Ok(pb::CreateKeyEvent {
                        event: Some(pb::create_key_event::Event::Created(public_key(
                            coordinator.policy().ok().as_deref(),
                            &record,
                        ))),
                    })
                }
                Err(e) => {
                    tracing::warn!(key_id = %key_id, error = %e, "DKG failed");
                    coordinator.audit(
                        "key_creation_failed",
                        &[("key_id", key_id.to_string()), ("reason", e.to_string())],
                    );
                    Err(Status::from(e))
                }
            };
            let _ = tx.send(last);
        });
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    type RefreshKeyStream = EventStream;

    async fn refresh_key(
        &self,
        request: Request<pb::RefreshKeyRequest>,
    ) -> Result<Response<EventStream>, Status> {
        access::require(&request, Role::Admin)?;
        let req = request.into_inner();
        let key_id = key_id(&req.key_id)?;
        let coordinator = self.0.clone();
        // An unknown key is refused before the stream opens, and so is a
        // retired one, or one whose rules need an order it lacks (every
        // signer checks the order again under its own policy).
        coordinator.key(&key_id).await?;
        let order = match req.order.as_ref() {
            Some(o) => Some(
                ringi_proto::key_order::order_from_pb(o)
                    .map_err(|e| Status::invalid_argument(format!("refresh order: {}", e.0)))?,
            ),
            None => None,
        };
        let ordered_by = match coordinator.policy() {
            Ok(policy) => ringi_policy::key_order::check_refresh(
                &policy,
                &key_id,
                order.as_ref(),
                ringi_policy::clock::now(),
            )
            .map_err(|refused| {
                Status::new(
                    tonic::Code::from_i32(refused.grpc_code()),
                    format!("refresh order: {refused}"),
                )
            })?,
            // No policy here: the signers' own decide.
            Err(_) => Vec::new(),
        };
        let wire_order = req.order;
        {
            let store = coordinator.keys.clone();
            let id = key_id.clone();
            crate::retire::refuse_if_retired(blocking(move || store.key_retirement(&id)).await?)?;
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            // Alone with the key: signings in flight finish first.
            let gate = coordinator.key_gates.exclusive(&key_id).await;
            tracing::info!(key_id = %key_id, "refresh started");
            coordinator.audit(
                "key_refresh_started",
                &[
                    ("key_id", key_id.to_string()),
                    ("ordered_by", ordered_by.join(",")),
                ],
            );
            let progress_tx = tx.clone();
            let result = crate::refresh::run(
                &coordinator.registry,
                &coordinator.keys,
                &key_id,
                wire_order.as_ref(),
                move |p| {
                    let _ = progress_tx.send(Ok(progress_event(p, crate::refresh::TOTAL_STEPS)));
                },
            )
            .await;
            // The record may have changed whatever the outcome.
            coordinator.forget_key(&key_id);
            drop(gate);
            crate::metrics::key_operation(KeyOperation::Refresh, result.is_ok());
            let last = match result {
                Ok(done) => {
                    tracing::info!(key_id = %key_id, resumed = done.resumed, "refresh finished; refreshed shares in use on every signer");
                    coordinator.audit(
                        "key_refreshed",
                        &[
                            ("key_id", key_id.to_string()),
                            ("resumed", done.resumed.to_string()),
                            ("discarded_waiting_on", done.discarded.join(",")),
                            (
                                "public_key_package_sha256",
                                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                                    &done.record.public_key_package,
                                )),
                            ),
                        ],
                    );
                    Ok(pb::CreateKeyEvent {
                        event: Some(pb::create_key_event::Event::Created(public_key(
                            coordinator.policy().ok().as_deref(),
                            &done.record,
                        ))),
                    })
                }
                Err(e) => {
                    tracing::warn!(key_id = %key_id, error = %e, "refresh failed");
                    coordinator.audit(
                        "key_refresh_failed",
                        &[("key_id", key_id.to_string()), ("reason", e.to_string())],
                    );
                    Err(Status::from(e))
                }
            };
            let _ = tx.send(last);
        });
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn repair_key(
        &self,
        request: Request<pb::RepairKeyRequest>,
    ) -> Result<Response<pb::RepairKeyResponse>, Status> {
        access::require(&request, Role::Admin)?;
        let req = request.into_inner();
        let order = req
            .order
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("no repair order"))?;
        let order = ringi_proto::key_order::order_from_pb(order)
            .map_err(|e| Status::invalid_argument(format!("repair order: {}", e.0)))?;
        let coordinator = &self.0;
        let key_id = order.order.key_id.clone();
        // The coordinator holds itself to the order too: the admins' quorum
        // under its policy (the nodes check it again under theirs).
        let policy = coordinator.policy()?;
        if let Err(refused) =
            ringi_policy::key_order::check_order(&policy, &order, ringi_policy::clock::now())
        {
            return Err(Status::new(
                tonic::Code::from_i32(refused.grpc_code()),
                format!("repair order: {refused}"),
            ));
        }
        // A retired key is never repaired: that would hand out a share of it.
        {
            let store = coordinator.keys.clone();
            let id = key_id.clone();
            crate::retire::refuse_if_retired(blocking(move || store.key_retirement(&id)).await?)?;
        }
        let order_id = hex::encode(order.order.id());
        coordinator.audit(
            "key_repair_started",
            &[
                ("key_id", key_id.to_string()),
                ("signer", req.signer.clone()),
                ("order", order_id.clone()),
            ],
        );
        let gate = coordinator.key_gates.exclusive(&key_id).await;
        let result = crate::repair::run(
            &coordinator.registry,
            &coordinator.keys,
            crate::repair::RepairRequest {
                order,
                signer: req.signer.clone(),
            },
        )
        .await;
        coordinator.forget_key(&key_id);
        drop(gate);
        crate::metrics::key_operation(KeyOperation::Repair, result.is_ok());
        match result {
            Ok(done) => {
                tracing::info!(key_id = %key_id, identifier = done.identifier, signer = %req.signer, replaced = %done.replaced, "share repaired; the new node holds the identifier");
                coordinator.audit(
                    "key_repaired",
                    &[
                        ("key_id", key_id.to_string()),
                        ("identifier", done.identifier.to_string()),
                        ("signer", req.signer.clone()),
                        ("replaced_signer", done.replaced.clone()),
                        ("helpers", done.helpers.join(",")),
                        ("order", order_id),
                    ],
                );
                Ok(Response::new(pb::RepairKeyResponse {
                    key: Some(public_key(
                        coordinator.policy().ok().as_deref(),
                        &done.record,
                    )),
                    helpers: done.helpers,
                    replaced_signer: done.replaced,
                }))
            }
            Err(e) => {
                tracing::warn!(key_id = %key_id, error = %e, "repair failed");
                coordinator.audit(
                    "key_repair_failed",
                    &[("key_id", key_id.to_string()), ("reason", e.to_string())],
                );
                Err(e.into())
            }
        }
    }

    async fn import_key(
        &self,
        request: Request<pb::ImportKeyRequest>,
    ) -> Result<Response<pb::ImportKeyResponse>, Status> {
        access::require(&request, Role::Admin)?;
        let key_id = key_id(&request.into_inner().key_id)?;
        let coordinator = &self.0;
        let result = crate::import::run(&coordinator.registry, &coordinator.keys, &key_id).await;
        crate::metrics::key_operation(KeyOperation::Import, result.is_ok());
        match result {
            Ok(agreed) => {
                coordinator.forget_key(&key_id);
                let record = &agreed.record;
                tracing::info!(key_id = %key_id, agreeing = ?agreed.agreeing, "key imported from its signers");
                coordinator.audit(
                    "key_imported",
                    &[
                        ("key_id", key_id.to_string()),
                        ("kind", record.kind.to_string()),
                        ("threshold", record.threshold.to_string()),
                        (
                            "signers",
                            record
                                .signers
                                .iter()
                                .map(|(n, _)| n.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                        ),
                        ("group_public_key", hex::encode(&record.group_public_key)),
                        ("agreeing_signers", agreed.agreeing.join(",")),
                    ],
                );
                Ok(Response::new(pb::ImportKeyResponse {
                    key: Some(public_key(coordinator.policy().ok().as_deref(), record)),
                    agreeing_signers: agreed.agreeing,
                    other_signers: agreed.others,
                }))
            }
            Err(e) => {
                tracing::warn!(key_id = %key_id, error = %e, "key import refused");
                coordinator.audit(
                    "key_import_refused",
                    &[("key_id", key_id.to_string()), ("reason", e.to_string())],
                );
                Err(e.into())
            }
        }
    }

    async fn retire_key(
        &self,
        request: Request<pb::RetireKeyRequest>,
    ) -> Result<Response<pb::RetireKeyResponse>, Status> {
        access::require(&request, Role::Admin)?;
        let wire = request
            .into_inner()
            .order
            .ok_or_else(|| Error::InvalidInput {
                field: "order",
                reason: "is missing".into(),
            })?;
        let coordinator = &self.0;
        let key_text = wire.key_id.clone();
        let result = crate::retire::retire(coordinator, &wire).await;
        crate::metrics::key_operation(KeyOperation::Retire, result.is_ok());
        match result {
            Ok(done) => {
                let r = &done.retirement;
                if !done.already {
                    tracing::warn!(key_id = %r.key_id, destroy_after = r.destroy_after, admins = %r.admins.join(","), "key retired: no new request is taken for it");
                    coordinator.audit(
                        "key_retired",
                        &[
                            ("key_id", r.key_id.to_string()),
                            ("order_id", hex::encode(r.order_id)),
                            ("destroy_after", r.destroy_after.to_string()),
                            ("admins", r.admins.join(",")),
                        ],
                    );
                }
                Ok(Response::new(pb::RetireKeyResponse {
                    key: Some(retired_key(
                        coordinator.policy().ok().as_deref(),
                        &done.record,
                        Some(r),
                    )),
                    already: done.already,
                }))
            }
            Err(e) => {
                tracing::warn!(key_id = %key_text, error = %e, "key retirement refused");
                coordinator.audit(
                    "key_retire_refused",
                    &[("key_id", key_text), ("reason", e.to_string())],
                );
                Err(e.into())
            }
        }
    }

    async fn get_public_key(
        &self,
        request: Request<pb::GetPublicKeyRequest>,
    ) -> Result<Response<pb::GetPublicKeyResponse>, Status> {
        let key_id = key_id(&request.into_inner().key_id)?;
        let key = self.0.key(&key_id).await?;
        let store = self.0.keys.clone();
        let retirement = blocking(move || store.key_retirement(&key_id)).await?;
        Ok(Response::new(pb::GetPublicKeyResponse {
            key: Some(retired_key(
                self.0.policy().ok().as_deref(),
                key.record(),
                retirement.as_ref(),
            )),
        }))
    }

    async fn list_keys(
        &self,
        _request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let store = self.0.keys.clone();
        let (records, retirements) =
            blocking(move || Ok((store.keys()?, store.key_retirements()?))).await?;
        let policy = self.0.policy().ok();
        let policy = policy.as_deref();
        Ok(Response::new(pb::ListKeysResponse {
            keys: records
                .iter()
                .map(|r| {
                    let retirement = retirements.iter().find(|t| t.key_id == r.key_id);
                    retired_key(policy, r, retirement)
                })
                .collect(),
        }))
    }
}

/// `RequestService`.
pub struct RequestService(pub Arc<Coordinator>);

fn parse_request_id(text: &str) -> Result<RequestId, Error> {
    hex::decode(text)
        .ok()
        .and_then(|b| RequestId::try_from(b).ok())
        .ok_or_else(|| Error::InvalidInput {
            field: "request_id",
            reason: format!("{text:?} is not 64 hex digits"),
        })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::SigningRequestEvent, Status>> + Send>>;

fn transition(t: &TransitionRecord) -> pb::Transition {
    pb::Transition {
        from_state: t.from.clone(),
        to_state: t.to.as_str().to_string(),
        reason: t.reason.clone(),
        at: t.at,
    }
}

/// The API view of a stored request, with its key's facts if the key
/// loads (a key that does not leaves what needs it empty: still-needed
/// quorums, the transaction).
pub async fn view_of(c: &Coordinator, r: &RequestRecord) -> pb::SigningRequestView {
    let key = c.key(&r.request.key_id).await.ok();
    view(c, r, key.as_deref())
}

/// What a PSBT request's transaction does, derived with the key's output
/// key and the policy's network for it.
fn transaction(
    policy: Option<&Policy>,
    key: &KeyFacts,
    r: &RequestRecord,
) -> Option<pb::Transaction> {
    let psbt = r.request.psbt.as_ref()?;
    let KeyFacts::BitcoinTaproot {
        internal_key,
        output_key,
    } = *key
    else {
        return None;
    };
    let rules = policy?.key(&r.request.key_id)?;
    let network = rules.bitcoin.network?;
    let own = OwnKey {
        internal_key,
        output_key,
        network,
    };
    let derived = ringi_psbt::derive(psbt, &own, rules.bitcoin.allow_sighash_all).ok()?;
    Some(transaction_pb(&derived, network))
}

/// The API form of a derived transaction.
pub fn transaction_pb(d: &Derived, network: ringi_psbt::Network) -> pb::Transaction {
    let output = |o: &ringi_psbt::OutputView| pb::TxOutput {
        index: o.index as u32,
        address: o.address.clone(),
        value_sats: o.value,
    };
    pb::Transaction {
        txid: d.txid.clone(),
        network: network.as_str().to_string(),
        inputs: d
            .inputs
            .iter()
            .map(|i| pb::TxInput {
                outpoint: i.outpoint.clone(),
                value_sats: i.value,
                sighash_type: i.sighash.as_str().to_string(),
            })
            .collect(),
        payments: d.payments.iter().map(output).collect(),
        change: d.change.iter().map(output).collect(),
        fee_sats: d.fee,
        vsize: d.vsize,
        fee_rate_sat_vb: d.fee_rate(),
        total_paid_sats: d.total_paid(),
    }
}

/// The watch events of `record`'s transitions after the first `sent`, in
/// order, each showing the request as `shown` (the record's [`view`]).
///
/// One view per record read, not one per event: a watcher that joins late
/// is replayed the whole history at once, and building a view looks up
/// the policy, evaluates it while the request is pending and, for a PSBT
/// request, derives its transaction again. The last event takes the view
/// itself; the others a copy.
fn events_after(
    record: &RequestRecord,
    sent: usize,
    shown: pb::SigningRequestView,
) -> Vec<pb::SigningRequestEvent> {
    let last = record.transitions.len();
    let mut shown = Some(shown);
    record
        .transitions
        .iter()
        .enumerate()
        .skip(sent)
        .map(|(i, t)| pb::SigningRequestEvent {
            seq: i as u32 + 1,
            transition: Some(transition(t)),
            request: if i + 1 == last {
                shown.take()
            } else {
                shown.clone()
            },
        })
        .collect()
}

/// The API view of a stored request for `key` (if it loaded).
pub fn view(c: &Coordinator, r: &RequestRecord, key: Option<&Key>) -> pb::SigningRequestView {
    let now = requests::now();
    // The request is shown under the policy that judges it.
    let policy = c.policy_for(&r.request).ok();
    let approval_ttl_secs = policy
        .as_ref()
        .and_then(|p| p.key(&r.request.key_id))
        .map_or(0, |k| k.approval_ttl_secs);
    let facts = key.map(Key::facts);
    let signed = r.signed_transaction.as_ref();
    pb::SigningRequestView {
        request_id: hex::encode(r.id),
        request: Some(ringi_proto::bundle::request_to_pb(&r.request)),
        state: r.state.as_str().to_string(),
        state_reason: r.state_reason.clone(),
        content_digest: hex::encode(r.request.content_digest()),
        approvals: r
            .approvals
            .iter()
            .map(ringi_proto::bundle::approval_to_pb)
            .collect(),
        still_needed: facts
            .map(|facts| requests::still_needed(policy.as_deref(), &facts, r, now))
            .unwrap_or_default()
            .into_iter()
            .map(|(department, have, need)| pb::Needed {
                department,
                have,
                need,
            })
            .collect(),
        approval_ttl_secs,
        signature: r.signature.clone().unwrap_or_default(),
        decisions: r
            .approvals
            .iter()
            .map(|a| pb::DecisionSummary {
                approver: policy
                    .as_ref()
                    .and_then(|p| p.approver(&a.approver))
                    .map_or_else(|| a.approver.to_text(), |x| x.name.clone()),
                department: a.statement.department.clone(),
                decision: a.statement.decision.as_str().to_string(),
                reason: a.statement.reason.clone(),
                issued_at: a.statement.issued_at,
                expires_at: a.statement.expires_at,
            })
            .collect(),
        transitions: r.transitions.iter().map(transition).collect(),
        transaction: facts.and_then(|f| transaction(policy.as_deref(), &f, r)),
        signed_psbt: signed.map(|s| s.psbt.clone()).unwrap_or_default(),
        signed_transaction: signed.map(|s| s.tx.clone()).unwrap_or_default(),
        blind: r.request.psbt.is_none() && key.is_some_and(|k| k.kind() == KeyKind::BitcoinTaproot),
    }
}

/// `record`, if the caller's read scope holds its key; otherwise the very
/// answer a request that does not exist gets (NOT_FOUND, "request ... does
/// not exist"), so that a wallet cannot tell another key's request from
/// none.
fn readable(record: RequestRecord, scope: &access::ReadScope) -> Result<RequestRecord, Error> {
    if scope.may_read(record.request.key_id.as_str()) {
        Ok(record)
    } else {
        Err(Error::NotFound(crate::error::Missing::Request(record.id)))
    }
}

/// Runs a command that writes to completion even if the caller goes away.
/// A handler's future is dropped when its client disconnects or times out;
/// a command dropped between its commit and what must follow it (the audit
/// entry, the signing a quorum starts) would leave that undone while the
/// store says it happened. Spawned, it finishes whatever the client does.
async fn detached<T: Send + 'static>(
    command: impl std::future::Future<Output = crate::error::Result<T>> + Send + 'static,
) -> crate::error::Result<T> {
    tokio::spawn(command)
        .await
        .map_err(|e| Error::Internal(format!("request task ended abnormally: {e}")))?
}

#[tonic::async_trait]
impl pb::request_service_server::RequestService for RequestService {
    async fn submit_signing_request(
        &self,
        request: Request<pb::SubmitSigningRequestRequest>,
    ) -> Result<Response<pb::SigningRequestView>, Status> {
        access::require(&request, Role::Wallet)?;
        access::require_key(&request, &request.get_ref().key_id)?;
        // Under TLS the requester is the caller's certified identity.
        let certified = access::caller(&request).map(|c| c.name.clone());
        let mut r = request.into_inner();
        if let Some(name) = certified {
            if !r.requester.is_empty() && r.requester != name {
                return Err(Status::permission_denied(format!(
                    "requester {:?} is not the caller's identity {name:?}",
                    r.requester
                )));
            }
            r.requester = name;
        }
        let c = self.0.clone();
        let refused = |e: &Error| crate::metrics::refused("SubmitSigningRequest", e);
        let submission = requests::Submission {
            key_id: key_id(&r.key_id).inspect_err(refused)?,
            message: r.message,
            asset: r.asset,
            amount: r.amount,
            destination: r.destination,
            memo: r.memo,
            requester: r.requester,
            signers: r.signers,
            idempotency_key: r.idempotency_key,
            psbt: (!r.psbt.is_empty()).then_some(r.psbt),
        };
        let record = detached(async move { requests::submit(&c, submission).await })
            .await
            .inspect_err(refused)?;
        Ok(Response::new(view_of(&self.0, &record).await))
    }

    async fn get_signing_request(
        &self,
        request: Request<pb::GetSigningRequestRequest>,
    ) -> Result<Response<pb::SigningRequestView>, Status> {
        let scope = access::read_scope(&request)?;
        let id = parse_request_id(&request.into_inner().request_id)?;
        let record = readable(requests::get(&self.0, id).await?, &scope)?;
        Ok(Response::new(view_of(&self.0, &record).await))
    }

    async fn list_signing_requests(
        &self,
        request: Request<pb::ListSigningRequestsRequest>,
    ) -> Result<Response<pb::ListSigningRequestsResponse>, Status> {
        let scope = access::read_scope(&request)?;
        let caller = access::caller(&request).map(|c| c.name.clone());
        let r = request.into_inner();
        let state = match r.state.as_str() {
            "" => None,
            s => Some(State::parse(s).ok_or_else(|| Error::InvalidInput {
                field: "state",
                reason: format!("{s:?} is not a request state"),
            })?),
        };
        let after = match r.page_token.as_str() {
            "" => None,
            t => Some(Position::parse(t).ok_or_else(|| Error::InvalidInput {
                field: "page_token",
                reason: "is not one this server issued".into(),
            })?),
        };
        let page_size = match r.page_size {
            0 => 100,
            n => n as usize,
        };
        if page_size > request_store::LIST_LIMIT {
            return Err(Error::InvalidInput {
                field: "page_size",
                reason: format!("must be 1..={}", request_store::LIST_LIMIT),
            }
            .into());
        }
        let key_id = match r.key_id.as_str() {
            "" => None,
            k => Some(key_id(k)?),
        };
        if let Some(k) = &key_id {
            access::require_read_key(&scope, caller.as_deref().unwrap_or_default(), k.as_str())?;
        }
        // A wallet lists its own keys' requests, filtered in the store so
        // that pages stay full and page tokens stay valid.
        let key_ids = match scope {
            access::ReadScope::All => None,
            access::ReadScope::Keys(keys) => Some(
                keys.iter()
                    .filter_map(|k| KeyId::parse(k).ok())
                    .collect::<Vec<_>>(),
            ),
        };
        let store = self.0.requests.clone();
        let (records, next) = blocking(move || {
            store.list_requests(&ListFilter {
                pending_only: r.pending_only,
                key_id: key_id.as_ref(),
                key_ids: key_ids.as_deref(),
                state,
                page_size,
                after,
            })
        })
        .await?;
        let mut views = Vec::with_capacity(records.len());
        for r in &records {
            views.push(view_of(&self.0, r).await);
        }
        Ok(Response::new(pb::ListSigningRequestsResponse {
            requests: views,
            next_page_token: next.map(|p| p.token()).unwrap_or_default(),
        }))
    }

    type WatchSigningRequestStream = WatchStream;

    async fn watch_signing_request(
        &self,
        request: Request<pb::WatchSigningRequestRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let scope = access::read_scope(&request)?;
        let id = parse_request_id(&request.into_inner().request_id)?;
        // Subscribe before the first read, so no change falls in between.
        let mut changes = self.0.subscribe(id);
        let first = readable(requests::get(&self.0, id).await?, &scope)?;
        let coordinator = self.0.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut sent = 0usize;
            let mut record = first;
            let key = coordinator.key(&record.request.key_id).await.ok();
            loop {
                if record.transitions.len() > sent {
                    let shown = view(&coordinator, &record, key.as_deref());
                    for event in events_after(&record, sent, shown) {
                        if tx.send(Ok(event)).await.is_err() {
                            return; // the watcher went away
                        }
                    }
                }
                sent = record.transitions.len();
                if record.state.is_terminal() {
                    return;
                }
                // Pushed, not polled: wait for a change to this request
                // (crate::request_watch), for the request's expiry (which
                // is applied when it is read), or for the watcher to go
                // away, which ends this task at once.
                let until_expiry = record
                    .request
                    .expires_at
                    .saturating_sub(requests::now())
                    .max(1);
                let published = tokio::select! {
                    _ = tx.closed() => return,
                    published = changes.changed() => published,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(until_expiry)) => None,
                };
                // The record as its writer published it, if it is newer
                // than this one (crate::request_watch); else from the store.
                let loaded = match published {
                    Some(p) if request_watch::version(&p) > request_watch::version(&record) => {
                        requests::expire_if_due(&coordinator, Arc::unwrap_or_clone(p)).await
                    }
                    Some(_) => continue, // nothing newer than what was sent
                    None => requests::get(&coordinator, id).await,
                };
                record = match loaded {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::SigningRequestView>, Status> {
        // A requester's own signature on its request (decision "request")
        // comes from the wallet that made it; every other decision from an
        // approver. Either way the policy's evaluation decides whether the
        // signer may make it.
        let is_requester_signature = request
            .get_ref()
            .approval
            .as_ref()
            .is_some_and(|a| a.decision == ringi_policy::statement::Decision::Request.as_str());
        if is_requester_signature {
            access::require(&request, Role::Wallet)?;
        } else {
            access::require(&request, Role::Approver)?;
        }
        let approval = request
            .into_inner()
            .approval
            .ok_or_else(|| Error::InvalidInput {
                field: "approval",
                reason: "is missing".into(),
            })?;
        let result = match ringi_proto::bundle::approval_from_pb(&approval) {
            Ok(decoded) => {
                let c = self.0.clone();
                detached(async move { requests::decide(&c, decoded).await }).await
            }
            Err(e) => Err(Error::from(e)),
        };
        match result {
            Ok(record) => Ok(Response::new(view_of(&self.0, &record).await)),
            Err(e) => {
                crate::metrics::refused("Decide", &e);
                tracing::warn!(error = %e, department = %approval.department, "decision refused");
                Err(e.into())
            }
        }
    }

    async fn retry_signing_request(
        &self,
        request: Request<pb::RetrySigningRequestRequest>,
    ) -> Result<Response<pb::SigningRequestView>, Status> {
        access::require(&request, Role::Admin)?;
        let by = access::caller(&request)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "an operator on loopback".to_string());
        let id = parse_request_id(&request.into_inner().request_id)?;
        let c = self.0.clone();
        let record = detached(async move { requests::retry(&c, id, &by).await })
            .await
            .inspect_err(|e| crate::metrics::refused("RetrySigningRequest", e))?;
        Ok(Response::new(view_of(&self.0, &record).await))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::fixture::{NOW, fixture};

    fn record(states: &[State]) -> RequestRecord {
        let request = fixture().request();
        RequestRecord {
            id: request.id(),
            request,
            signers: Vec::new(),
            state: *states.last().unwrap(),
            state_reason: String::new(),
            signature: None,
            signed_transaction: None,
            approvals: Vec::new(),
            transitions: states
                .iter()
                .enumerate()
                .map(|(i, &to)| TransitionRecord {
                    from: if i == 0 {
                        String::new()
                    } else {
                        states[i - 1].as_str().to_string()
                    },
                    to,
                    reason: format!("step {i}"),
                    at: NOW + i as u64,
                })
                .collect(),
        }
    }

    fn shown(state: &str) -> pb::SigningRequestView {
        pb::SigningRequestView {
            state: state.to_string(),
            ..Default::default()
        }
    }

    /// A watcher joining late is replayed every transition after what it
    /// was sent, numbered from one in the record's order, each event with
    /// the same view of the request (the last one moved, not copied).
    #[test]
    fn events_after_replays_the_rest_of_the_history_with_one_view() {
        let r = record(&[
            State::PendingApproval,
            State::Approved,
            State::Signing,
            State::Signed,
        ]);
        let events = events_after(&r, 1, shown("SIGNED"));
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [2, 3, 4],
            "the first transition was sent already"
        );
        let to: Vec<&str> = events
            .iter()
            .map(|e| e.transition.as_ref().unwrap().to_state.as_str())
            .collect();
        assert_eq!(to, ["APPROVED", "SIGNING", "SIGNED"]);
        assert_eq!(
            events[0].transition.as_ref().unwrap().from_state,
            "PENDING_APPROVAL"
        );
        assert!(
            events
                .iter()
                .all(|e| e.request.as_ref().unwrap().state == "SIGNED"),
            "every event shows the view it was given"
        );
    }

    /// Nothing new, nothing sent; from the start, the whole history.
    #[test]
    fn events_after_sends_nothing_twice_and_everything_once() {
        let r = record(&[State::PendingApproval, State::Rejected]);
        assert!(events_after(&r, 2, shown("REJECTED")).is_empty());
        let all = events_after(&r, 0, shown("REJECTED"));
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    }
}
