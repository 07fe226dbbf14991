//! The coordinator's gRPC services (`ringi.coordinator.v1`): thin handlers
//! over [`crate::keygen`], [`crate::signing`] and [`crate::store`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use ringi_proto::coordinator::v1 as pb;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::access;
use crate::config::Role;
use crate::error::Error;
use crate::keygen::{self, KeygenRequest, Progress};
use crate::registry::Registry;
use crate::request_state::State;
use crate::request_store::{self, ListFilter, Position};
use crate::requests;
use crate::signing::LoadedKey;
use crate::store::{KeyRecord, Store};

/// State shared by the services.
pub struct Coordinator {
    pub registry: Registry,
    pub store: Arc<Store>,
    /// The approval policy; requests are refused without one.
    pub policy: Option<Arc<ringi_policy::policy::Policy>>,
    /// Operators' daily-volume figures, if configured.
    pub daily_volume_file: Option<std::path::PathBuf>,
    /// The coordinator's audit trail (absent for tools such as the bench,
    /// which must not write to the daemon's log).
    pub audit: Option<Arc<ringi_policy::audit::AuditLog>>,
    /// Parsed keys, so a signing touches neither SQLite nor the decoder.
    keys: RwLock<HashMap<String, Arc<LoadedKey>>>,
    /// The id of every request whose state or approvals just changed
    /// (watchers reload it from the store).
    changes: tokio::sync::broadcast::Sender<[u8; 32]>,
}

impl Coordinator {
    pub fn new(
        registry: Registry,
        store: Arc<Store>,
        policy: Option<Arc<ringi_policy::policy::Policy>>,
    ) -> Self {
        Coordinator {
            registry,
            store,
            policy,
            daily_volume_file: None,
            audit: None,
            keys: RwLock::new(HashMap::new()),
            changes: tokio::sync::broadcast::channel(1024).0,
        }
    }

    /// Appends an entry to the audit trail. Failures are logged: the
    /// coordinator's trail is a record; the signers' trails, which they
    /// write before releasing a share, are the enforcement point.
    pub fn audit(&self, event: &str, fields: &[(&str, String)]) {
        if let Some(log) = &self.audit
            && let Err(e) = log.append(crate::requests::now(), event, fields)
        {
            tracing::error!(error = %e, event, "audit log write failed");
        }
    }

    /// Tells watchers that request `id` changed.
    pub fn notify(&self, id: [u8; 32]) {
        let _ = self.changes.send(id);
    }

    /// Subscribes to request changes.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<[u8; 32]> {
        self.changes.subscribe()
    }

    /// The key, from the cache or the database.
    pub async fn key(&self, key_id: &str) -> Result<Arc<LoadedKey>, Error> {
        if let Some(k) = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_id)
        {
            return Ok(k.clone());
        }
        ringi_policy::key_id::check_name(key_id)
            .map_err(|e| Error::InvalidArgument(format!("key_id: {e}")))?;
        let store = self.store.clone();
        let id = key_id.to_string();
        let record = tokio::task::spawn_blocking(move || store.key(&id))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let loaded = Arc::new(LoadedKey::new(record)?);
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key_id.to_string(), loaded.clone());
        Ok(loaded)
    }
}

fn public_key(r: &KeyRecord) -> pb::PublicKey {
    pb::PublicKey {
        key_id: r.key_id.clone(),
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
            key_id: req.key_id,
            threshold: req.threshold,
            signers: req.signers,
        };
        keygen::check_request(&coordinator.registry, &request)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let key_id = request.key_id.clone();
            tracing::info!(key_id = %key_id, threshold = request.threshold, signers = ?request.signers, "DKG started");
            let progress_tx = tx.clone();
            let result = keygen::run(
                &coordinator.registry,
                &coordinator.store,
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
                            ("key_id", key_id.clone()),
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
                        &[("key_id", key_id.clone()), ("reason", e.to_string())],
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
        let key = self.0.key(&request.into_inner().key_id).await?;
        Ok(Response::new(pb::GetPublicKeyResponse {
            key: Some(public_key(&key.record)),
        }))
    }

    async fn list_keys(
        &self,
        _request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let store = self.0.store.clone();
        let records = tokio::task::spawn_blocking(move || store.keys())
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::ListKeysResponse {
            keys: records.iter().map(public_key).collect(),
        }))
    }
}

/// `RequestService`.
pub struct RequestService(pub Arc<Coordinator>);

fn parse_request_id(text: &str) -> Result<[u8; 32], Status> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            Status::invalid_argument(format!("request_id {text:?} is not 64 hex digits"))
        })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::SigningRequestEvent, Status>> + Send>>;

fn transition(t: &crate::request_store::TransitionRecord) -> pb::Transition {
    pb::Transition {
        from_state: t.from.clone(),
        to_state: t.to.as_str().to_string(),
        reason: t.reason.clone(),
        at: t.at,
    }
}

/// The API view of a stored request.
pub fn view(c: &Coordinator, r: &crate::request_store::RequestRecord) -> pb::SigningRequestView {
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
        still_needed: requests::still_needed(c, r, now)
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
                key_id: r.key_id,
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
            s => Some(State::parse(s).ok_or_else(|| {
                Status::invalid_argument(format!("state {s:?} is not a request state"))
            })?),
        };
        let after = match r.page_token.as_str() {
            "" => None,
            t => Some(Position::parse(t).ok_or_else(|| {
                Status::invalid_argument("page_token is not one this server issued")
            })?),
        };
        let page_size = match r.page_size {
            0 => 100,
            n => n as usize,
        };
        if page_size > request_store::LIST_LIMIT {
            return Err(Status::invalid_argument(format!(
                "page_size must be 1..={}",
                request_store::LIST_LIMIT
            )));
        }
        let store = self.0.store.clone();
        let (records, next) = tokio::task::spawn_blocking(move || {
            let key_id = (!r.key_id.is_empty()).then_some(r.key_id.as_str());
            store.list_requests(&ListFilter {
                pending_only: r.pending_only,
                key_id,
                state,
                page_size,
                after,
            })
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
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
            .ok_or_else(|| Status::invalid_argument("approval is missing"))?;
        match requests::decide(&self.0, &approval).await {
            Ok(record) => Ok(Response::new(view(&self.0, &record))),
            Err(e) => {
                tracing::warn!(error = %e, department = %approval.department, "decision refused");
                Err(e.into())
            }
        }
    }
}
