//! The coordinator's gRPC services (`ringi.coordinator.v1`): thin handlers
//! over [`crate::keygen`], [`crate::signing`] and [`crate::store`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use ringi_proto::coordinator::v1 as pb;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::keygen::{self, KeygenRequest, Progress};
use crate::registry::Registry;
use crate::signing::{self, LoadedKey};
use crate::store::{KeyRecord, Store};

/// State shared by the services.
pub struct Coordinator {
    pub registry: Registry,
    pub store: Arc<Store>,
    /// Parsed keys, so a signing touches neither SQLite nor the decoder.
    keys: RwLock<HashMap<String, Arc<LoadedKey>>>,
}

impl Coordinator {
    pub fn new(registry: Registry, store: Arc<Store>) -> Self {
        Coordinator {
            registry,
            store,
            keys: RwLock::new(HashMap::new()),
        }
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
        ringi_proto::key_id::validate_key_id(key_id)
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
                    Ok(pb::CreateKeyEvent {
                        event: Some(pb::create_key_event::Event::Created(public_key(&record))),
                    })
                }
                Err(e) => {
                    tracing::warn!(key_id = %key_id, error = %e, "DKG failed");
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

/// `AdminSigningService` (temporary: signs without approvals).
pub struct AdminSigningService(pub Arc<Coordinator>);

#[tonic::async_trait]
impl pb::admin_signing_service_server::AdminSigningService for AdminSigningService {
    async fn sign_message(
        &self,
        request: Request<pb::SignMessageRequest>,
    ) -> Result<Response<pb::SignMessageResponse>, Status> {
        let req = request.into_inner();
        let key = self.0.key(&req.key_id).await?;
        match signing::sign(&self.0.registry, &key, &req.message, &req.signers, None).await {
            Ok(signed) => {
                tracing::info!(key_id = %req.key_id, signers = ?signed.signers, "signed");
                Ok(Response::new(pb::SignMessageResponse {
                    signature: signed.signature,
                    signers: signed.signers,
                }))
            }
            Err(e) => {
                tracing::warn!(key_id = %req.key_id, error = %e, "signing failed");
                Err(e.into())
            }
        }
    }
}
