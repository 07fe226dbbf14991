//! The coordinator's state, shared by the request flow and the gRPC edge:
//! the signer registry, the stores, the approval policy, the audit trail, a
//! cache of parsed keys, and the change notifications watchers follow.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use ringi_policy::audit::AuditLog;
use ringi_policy::key_id::KeyId;
use ringi_policy::policy::Policy;
use ringi_policy::policy_store::PolicyStore;
use ringi_policy::request::SigningRequest;

use crate::error::{Error, RequestId, Result};
use crate::registry::Registry;
use crate::request_store::RequestStore;
/// A key of any kind, ready for signing: the generic engines
/// ([`crate::signing`], [`crate::keygen`]) are instantiated per kind there
/// and in [`crate::keygen::run`].
pub use crate::signing::Key;
use crate::store::{KeyStore, blocking};

/// Signing runs at once for a coordinator built in-process (the bench, unit
/// tests); `ringi serve` sizes it to its signers or to `signing_concurrency`
/// (`server.rs`).
pub const DEFAULT_SIGNING_CONCURRENCY: usize = 16;

/// How long a cached key is used on a store other coordinators share: one
/// of them may refresh or repair the key (a new public key package), which
/// this process hears of only from the store. Past this age the key is
/// read again; on the embedded store, this process makes every change and
/// forgets the key itself ([`Coordinator::forget_key`]).
pub const SHARED_KEY_CACHE_SECS: u64 = 5;

/// State shared by the request flow and the services.
pub struct Coordinator {
    pub registry: Registry,
    pub keys: Arc<dyn KeyStore>,
    pub requests: Arc<dyn RequestStore>,
    /// The approval policy, rolled forward by admin-signed updates
    /// (`ringi_policy::policy_store`); requests are refused without one.
    pub policies: Option<Arc<PolicyStore>>,
    /// Operators' daily-volume figures, if configured.
    pub daily_volume_file: Option<PathBuf>,
    /// The coordinator's audit trail (absent for tools such as the bench,
    /// which must not write to the daemon's log).
    pub audit: Option<Arc<AuditLog>>,
    /// What signs the trail's checkpoints: the token's audit key
    /// ([`crate::token_keys`]); none without a token.
    pub audit_checkpoints: Option<Arc<crate::token_keys::CheckpointSigner>>,
    /// Parsed keys, so a signing touches neither the store nor the decoder;
    /// with when each was loaded (see [`SHARED_KEY_CACHE_SECS`]).
    key_cache: RwLock<HashMap<KeyId, (Arc<Key>, std::time::Instant)>>,
    /// Signings share a key's gate; a refresh or repair holds it alone.
    pub key_gates: crate::key_gate::KeyGates,
    /// Bumped whenever a key's record changes ([`Coordinator::forget_key`]):
    /// a load that started before must not put its stale copy in the cache.
    key_epoch: std::sync::atomic::AtomicU64,
    /// The watched requests: a change to one wakes its watchers, who
    /// reload it from the store.
    watches: crate::request_watch::RequestWatches,
    /// The requests with a signing run in progress in this process.
    pub signing_runs: crate::signing_runs::SigningRuns,
    /// This process as the owner of signing claims (unique per start).
    pub owner: String,
    /// The signing runs that may talk to signers at once; the others wait
    /// (their requests stay APPROVED in the store: the queue is durable).
    pub signing_slots: Arc<tokio::sync::Semaphore>,
    /// The latest pre-flight check of the signers ([`crate::preflight`]).
    pub readiness: crate::preflight::Latest,
    /// How long a signing claim holds unrenewed
    /// ([`crate::signing_claim::LEASE_SECS`] unless configured).
    pub signing_lease_secs: u64,
    /// Whether this process is the only one on its store (the embedded
    /// engine): see `store_engine::OpenedStore::exclusive`.
    pub store_exclusive: bool,
}

impl Coordinator {
    pub fn new(
        registry: Registry,
        keys: Arc<dyn KeyStore>,
        requests: Arc<dyn RequestStore>,
        policy: Option<Arc<Policy>>,
    ) -> Self {
        Coordinator {
            registry,
            keys,
            requests,
            policies: policy.map(|p| Arc::new(PolicyStore::fixed(Arc::unwrap_or_clone(p)))),
            daily_volume_file: None,
            audit: None,
            audit_checkpoints: None,
            key_cache: RwLock::new(HashMap::new()),
            key_gates: crate::key_gate::KeyGates::default(),
            key_epoch: std::sync::atomic::AtomicU64::new(0),
            watches: Default::default(),
            signing_runs: Default::default(),
            owner: crate::signing_claim::boot_owner(),
            signing_slots: Arc::new(tokio::sync::Semaphore::new(DEFAULT_SIGNING_CONCURRENCY)),
            readiness: Default::default(),
            signing_lease_secs: crate::signing_claim::LEASE_SECS,
            store_exclusive: true,
        }
    }

    /// Sets how many signing runs may talk to signers at once.
    pub fn set_signing_concurrency(&mut self, n: usize) {
        self.signing_slots = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
    }

    /// One engine serving as both stores.
    pub fn with_store<S: KeyStore + RequestStore + 'static>(
        registry: Registry,
        store: Arc<S>,
        policy: Option<Arc<Policy>>,
    ) -> Self {
        Self::new(registry, store.clone(), store, policy)
    }

    /// The approval policy in force, or [`Error::NoPolicy`].
    pub fn policy(&self) -> Result<Arc<Policy>> {
        self.policies
            .as_ref()
            .map(|s| s.current(ringi_policy::clock::now()))
            .ok_or(Error::NoPolicy)
    }

    /// The policy `request` is judged by: the one in force, or the one it
    /// replaced where the policy in force keeps such requests
    /// (`pending_requests = "keep"`, `PolicyStore::for_request`).
    pub fn policy_for(&self, request: &SigningRequest) -> Result<Arc<Policy>> {
        self.policies
            .as_ref()
            .map(|s| s.for_request(request, ringi_policy::clock::now()))
            .ok_or(Error::NoPolicy)
    }

    /// Appends an entry to the audit trail. Failures are logged: the
    /// coordinator's trail is a record; the signers' trails, which they
    /// write before releasing a share, are the enforcement point.
    pub fn audit(&self, event: &str, fields: &[(&str, String)]) {
        let Some(log) = &self.audit else {
            return;
        };
        // Checkpoints are the server's timer's (`crate::server`), not this
        // call's: see `ringi_policy::audit::CheckpointSchedule`.
        if let Err(e) = log.append(ringi_policy::clock::now(), event, fields) {
            tracing::error!(error = %e, event, "audit log write failed");
        }
    }

    /// Whether the audit trail is due a signed checkpoint
    /// (`ringi_policy::audit::CHECKPOINTS`); never without a token.
    pub fn audit_checkpoint_due(&self) -> bool {
        match (&self.audit, &self.audit_checkpoints) {
            (Some(log), Some(_)) => log.checkpoint_due(&ringi_policy::audit::CHECKPOINTS),
            _ => false,
        }
    }

    /// Appends a checkpoint signed by the token's audit key (nothing
    /// without a token, or without new entries).
    pub fn checkpoint_audit(&self) {
        let (Some(log), Some(sign)) = (&self.audit, &self.audit_checkpoints) else {
            return;
        };
        if log.since_checkpoint() == 0 {
            return;
        }
        if let Err(e) = log.checkpoint(ringi_policy::clock::now(), |statement| sign(statement)) {
            tracing::error!(error = %e, "audit checkpoint failed");
        }
    }

    /// Tells request `id`'s watchers that it changed.
    pub fn notify(&self, id: RequestId) {
        self.watches.notify(id);
    }

    /// Tells `record`'s watchers that it changed, with the record as it was
    /// just written (they need not read it back).
    pub fn publish(&self, record: &crate::request_store::RequestRecord) {
        self.watches.publish(record);
    }

    /// Subscribes to request `id`'s changes.
    pub fn subscribe(&self, id: RequestId) -> crate::request_watch::Changes {
        self.watches.subscribe(id)
    }

    /// Drops `key_id` from the cache: its record changed (a refresh).
    pub fn forget_key(&self, key_id: &KeyId) {
        let mut cache = self.key_cache.write().unwrap_or_else(|p| p.into_inner());
        self.key_epoch
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.remove(key_id);
    }

    /// The key, from the cache or the store.
    pub async fn key(&self, key_id: &KeyId) -> Result<Arc<Key>> {
        if let Some((k, loaded_at)) = self
            .key_cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_id)
            && (self.store_exclusive || loaded_at.elapsed().as_secs() < SHARED_KEY_CACHE_SECS)
        {
            return Ok(k.clone());
        }
        let epoch = self.key_epoch.load(std::sync::atomic::Ordering::SeqCst);
        let store = self.keys.clone();
        let id = key_id.clone();
        let record = blocking(move || store.key(&id)).await?;
        let loaded = Arc::new(Key::load(record)?);
        let mut cache = self.key_cache.write().unwrap_or_else(|p| p.into_inner());
        // A record changed while this one loaded: use it once, cache nothing.
        if self.key_epoch.load(std::sync::atomic::Ordering::SeqCst) == epoch {
            cache.insert(key_id.clone(), (loaded.clone(), std::time::Instant::now()));
        }
        Ok(loaded)
    }
}
