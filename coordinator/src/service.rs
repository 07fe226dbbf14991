//! The coordinator's gRPC services (`ringi.coordinator.v1`): the edge.
//! Handlers check the caller's role, decode request messages into domain
//! values (a [`KeyId`] is parsed here, once), call the request flow
//! ([`crate::requests`]) or the key engine ([`crate::keygen`]), and encode
//! the results as views. Errors become statuses in one place
//! (`From<Error> for Status`, in [`crate::error`]).

use std::pin::Pin;
use std::sync::Arc;

use ringi_policy::key_id::KeyId;
use ringi_proto::coordinator::v1 as pb;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::access;
use crate::config::Role;
use crate::coordinator::{Coordinator, KeySuite};
use crate::error::{Error, RequestId};
use crate::keygen::{self, KeygenRequest, Progress};
use crate::request_state::State;
use crate::request_store::{self, ListFilter, Position, RequestRecord, TransitionRecord};
use crate::requests;
use crate::store::{KeyRecord, blocking};

fn key_id(text: &str) -> Result<KeyId, Error> {
    Ok(KeyId::parse(text)?)
}

fn public_key(r: &KeyRecord) -> pb::PublicKey {
    pb::PublicKey {
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
    }
}

/// `KeyService`.
pub struct KeyService(pub Arc<Coordinator>);

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
            threshold: req.threshold,
            signers: req.signers,
        };
        keygen::check_request(&coordinator.registry, &request).map_err(Error::from)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let key_id = request.key_id.clone();
            tracing::info!(key_id = %key_id, threshold = request.threshold, signers = ?request.signers, "DKG started");
            let progress_tx = tx.clone();
            let result = keygen::run::<KeySuite>(
                &coordinator.registry,
                &coordinator.keys,
                request,
                move |p| {
                    let event = match p {
                        Progress::Started { step, description } => {
                            pb::create_key_event::Event::StepStarted(pb::StepStarted {
                                step,
                                total_steps: keygen::TOTAL_STEPS,
                                description: description.to_string(),
                            })
                        }
                        Progress::Finished { step, elapsed_ms } => {
                            pb::create_key_event::Event::StepFinished(pb::StepFinished {
                                step,
                                total_steps: keygen::TOTAL_STEPS,
                                elapsed_ms,
                            })
                        }
                    };
                    let _ = progress_tx.send(Ok(pb::CreateKeyEvent { event: Some(event) }));
                },
            )
            .await;
            let last = match result {
                Ok(record) => {
                    tracing::info!(key_id = %key_id, group_key = %hex::encode(&record.group_public_key), "DKG finished; key stored");
                    let signers: Vec<String> =
                        record.signers.iter().map(|(n, _)| n.clone()).collect();
                    coordinator.audit(
                        "key_created",
                        &[
                            ("key_id", key_id.to_string()),
                            ("threshold", record.threshold.to_string()),
                            ("signers", signers.join(",")),
                            ("group_public_key", hex::encode(&record.group_public_key)),
                        ],
                    );
                    Ok(pb::CreateKeyEvent {
                        event: Some(pb::create_key_event::Event::Created(public_key(&record))),
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

    async fn get_public_key(
        &self,
        request: Request<pb::GetPublicKeyRequest>,
    ) -> Result<Response<pb::GetPublicKeyResponse>, Status> {
        let key_id = key_id(&request.into_inner().key_id)?;
        let key = self.0.key(&key_id).await?;
        Ok(Response::new(pb::GetPublicKeyResponse {
            key: Some(public_key(&key.record)),
        }))
    }

    async fn list_keys(
        &self,
        _request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let store = self.0.keys.clone();
        let records = blocking(move || store.keys()).await?;
        Ok(Response::new(pb::ListKeysResponse {
            keys: records.iter().map(public_key).collect(),
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

/// The API view of a stored request.
pub fn view(c: &Coordinator, r: &RequestRecord) -> pb::SigningRequestView {
    let now = requests::now();
    let approval_ttl_secs = c
        .policy
        .as_ref()
        .and_then(|p| p.key(&r.request.key_id))
        .map_or(0, |k| k.approval_ttl_secs);
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
        still_needed: requests::still_needed(c.policy.as_deref(), r, now)
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
                approver: c
                    .policy
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
    }
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
        let record = requests::submit(
            &self.0,
            requests::Submission {
                key_id: key_id(&r.key_id)?,
                message: r.message,
                asset: r.asset,
                amount: r.amount,
                destination: r.destination,
                memo: r.memo,
                requester: r.requester,
                signers: r.signers,
                idempotency_key: r.idempotency_key,
            },
        )
        .await?;
        Ok(Response::new(view(&self.0, &record)))
    }

    async fn get_signing_request(
        &self,
        request: Request<pb::GetSigningRequestRequest>,
    ) -> Result<Response<pb::SigningRequestView>, Status> {
        let id = parse_request_id(&request.into_inner().request_id)?;
        let record = requests::get(&self.0, id).await?;
        Ok(Response::new(view(&self.0, &record)))
    }

    async fn list_signing_requests(
        &self,
        request: Request<pb::ListSigningRequestsRequest>,
    ) -> Result<Response<pb::ListSigningRequestsResponse>, Status> {
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
        let store = self.0.requests.clone();
        let (records, next) = blocking(move || {
            store.list_requests(&ListFilter {
                pending_only: r.pending_only,
                key_id: key_id.as_ref(),
                state,
                page_size,
                after,
            })
        })
        .await?;
        Ok(Response::new(pb::ListSigningRequestsResponse {
            requests: records.iter().map(|r| view(&self.0, r)).collect(),
            next_page_token: next.map(|p| p.token()).unwrap_or_default(),
        }))
    }

    type WatchSigningRequestStream = WatchStream;

    async fn watch_signing_request(
        &self,
        request: Request<pb::WatchSigningRequestRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let id = parse_request_id(&request.into_inner().request_id)?;
        // Subscribe before the first read, so no change falls in between.
        let mut changes = self.0.subscribe();
        let first = requests::get(&self.0, id).await?;
        let coordinator = self.0.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut sent = 0usize;
            let mut record = first;
            loop {
                for (i, t) in record.transitions.iter().enumerate().skip(sent) {
                    let event = pb::SigningRequestEvent {
                        seq: i as u32 + 1,
                        transition: Some(transition(t)),
                        request: Some(view(&coordinator, &record)),
                    };
                    if tx.send(Ok(event)).await.is_err() {
                        return; // the watcher went away
                    }
                }
                sent = record.transitions.len();
                if record.state.is_terminal() {
                    return;
                }
                // Wait for a change to this request; reload at least every
                // second in case a notification was missed.
                let wait = async {
                    loop {
                        match changes.recv().await {
                            Ok(changed) if changed == id => return,
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        }
                    }
                };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), wait).await;
                record = match requests::get(&coordinator, id).await {
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
        access::require(&request, Role::Approver)?;
        let approval = request
            .into_inner()
            .approval
            .ok_or_else(|| Error::InvalidInput {
                field: "approval",
                reason: "is missing".into(),
            })?;
        let result = match ringi_proto::bundle::approval_from_pb(&approval) {
            Ok(decoded) => requests::decide(&self.0, decoded).await,
            Err(e) => Err(Error::from(e)),
        };
        match result {
            Ok(record) => Ok(Response::new(view(&self.0, &record))),
            Err(e) => {
                tracing::warn!(error = %e, department = %approval.department, "decision refused");
                Err(e.into())
            }
        }
    }
}
