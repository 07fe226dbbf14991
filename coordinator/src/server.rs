//! `ringi serve`: the coordinator daemon.

use std::sync::Arc;

use ringi_proto::coordinator::v1::key_service_server::KeyServiceServer;
use tokio::net::TcpListener;

use crate::access;
use crate::config::Config;
use crate::coordinator::Coordinator;
use crate::registry::Registry;
use crate::requests;
use crate::service::{KeyService, RequestService};
use ringi_net::tls::Reloadable;
use ringi_policy::policy::Policy;
use ringi_policy::policy_store::PolicyStore;
use ringi_proto::coordinator::v1::operations_service_server::OperationsServiceServer;
use ringi_proto::coordinator::v1::policy_service_server::PolicyServiceServer;
use ringi_proto::coordinator::v1::request_service_server::RequestServiceServer;

use crate::operations_service::OperationsService;
use crate::policy_service::PolicyService;

/// Signing runs at once per registered signer, unless `signing_concurrency`
/// says otherwise. Their round-2 calls reach a signer batched, at most two
/// calls at a time ([`crate::sign_batches`]): more runs make larger batches
/// (one unseal and one commit for more Signs), not more load per call.
const SIGNING_SLOTS_PER_SIGNER: usize = 16;

/// How often overdue requests are expired.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// File name of the audit log inside the data directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// File name of the SQLite database inside the data directory.
pub use crate::store_engine::DATABASE_FILE;
/// The policy updates the coordinator accepted, in its data directory.
pub const POLICY_STORE_FILE: &str = "policy.sqlite3";

/// The coordinator's TLS server (wallets, the CLI) and client (signers)
/// configurations, from one reading of the `[tls]` files, so a reload
/// during a rotation cannot pair files of two generations.
fn tls_configs(
    tls: &crate::config::TlsConfig,
    token: Option<&Arc<ringi_signer::token::Token>>,
) -> anyhow::Result<(rustls::ServerConfig, rustls::ClientConfig)> {
    let chain = ringi_net::tls::load_certs(&tls.cert)?;
    let key = crate::token_keys::tls_key(tls, token)?;
    let ca = ringi_net::tls::load_certs(&tls.ca)?;
    Ok((
        ringi_net::tls::server_config(chain.clone(), key.clone(), &ca)?,
        ringi_net::tls::client_config(chain, key, &ca)?,
    ))
}

/// The coordinator's TLS client configuration (for dialling signers as
/// the coordinator: tools such as the benches), with its token's key when
/// `[pkcs11]` names one, else its key file.
pub fn client_tls(config: &Config) -> anyhow::Result<Option<rustls::ClientConfig>> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let token = crate::token_keys::open(config)?;
    Ok(Some(tls_configs(tls, token.as_ref())?.1))
}

/// Builds the coordinator state from the config (registry checked, store
/// opened and migrated: SQLite in the data directory unless `[store]` names
/// PostgreSQL). Blocks on the store: from an async task, call it in
/// `tokio::task::block_in_place`.
pub fn coordinator(config: &Config, with_audit: bool) -> anyhow::Result<Arc<Coordinator>> {
    let token = crate::token_keys::open(config)?;
    coordinator_with(config, with_audit, token.as_ref())
}

/// [`coordinator`] with the token opened already.
fn coordinator_with(
    config: &Config,
    with_audit: bool,
    token: Option<&Arc<ringi_signer::token::Token>>,
) -> anyhow::Result<Arc<Coordinator>> {
    let registry = match &config.tls {
        Some(tls) => Registry::with_tls(&config.signers, Arc::new(tls_configs(tls, token)?.1))?,
        None => Registry::new(&config.signers)?,
    };
    crate::signer_watch::spawn(&registry);
    let policy = match &config.policy_file {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read policy file {}: {e}", path.display()))?;
            let policy = Policy::from_bytes(&bytes)
                .map_err(|e| anyhow::anyhow!("policy file {} refused: {e}", path.display()))?;
            tracing::info!(policy = %path.display(), policy_sha256 = %hex::encode(policy.hash()), "approval policy loaded");
            Some(Arc::new(policy))
        }
        None => {
            tracing::warn!("no policy_file configured: signing requests will be refused");
            None
        }
    };
    let store = crate::store_engine::open(&config.store, &config.data_dir()?)?;
    tracing::info!(signers = registry.len(), database = %store.location, shared = !store.exclusive, "coordinator state ready");
    let mut coordinator = Coordinator::new(registry, store.keys, store.requests, None);
    coordinator.store_exclusive = store.exclusive;
    if let Some(secs) = config.signing_lease_secs {
        coordinator.signing_lease_secs = secs.max(1);
    }
    // The policy, rolled forward by the admin-signed updates accepted
    // before (replayed from the configured file at each start).
    if let Some(policy) = policy {
        let path = config.data_dir()?.join(POLICY_STORE_FILE);
        let policies = PolicyStore::open(
            &path,
            Arc::unwrap_or_clone(policy),
            ringi_policy::clock::now(),
        )?;
        let current = policies.current(ringi_policy::clock::now());
        tracing::info!(policy_sha256 = %hex::encode(current.hash()), sequence = current.sequence(), "approval policy in force");
        coordinator.policies = Some(Arc::new(policies));
    }
    coordinator.daily_volume_file = config.daily_volume_file.clone();
    // Sized to the signers unless configured: a few rounds in flight per
    // signer keep each busy without queueing at its token.
    coordinator.set_signing_concurrency(
        config
            .signing_concurrency
            .unwrap_or(SIGNING_SLOTS_PER_SIGNER * coordinator.registry.len().max(1)),
    );
    if with_audit {
        let path = config.data_dir()?.join(AUDIT_FILE);
        coordinator.audit = Some(Arc::new(ringi_policy::audit::AuditLog::open(&path)?));
        tracing::info!(audit = %path.display(), "audit log opened");
        if let Some((public, sign)) = crate::token_keys::checkpoint_signer(token)? {
            tracing::info!(audit_key = %public, "audit checkpoints signed by the token's audit key");
            coordinator.audit_checkpoints = Some(sign);
            coordinator.audit("coordinator_started", &[("audit_key", public)]);
        }
        // Entries a crash lost between a commit and its audit entry.
        let recovered = crate::audit_reconcile::run(&coordinator)?;
        if recovered > 0 {
            tracing::warn!(recovered, "audit entries recovered from the store");
        }
    }
    Ok(Arc::new(coordinator))
}

/// Serves until SIGINT/SIGTERM. Prints `ringi listening on ADDR` on stdout
/// once bound.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // One `ringi serve` per data directory, before anything is written.
    let _lock = ringi_net::instance_lock::InstanceLock::data_dir(&config.data_dir()?, "ringi")?;
    let listen = config.listen();
    if config.tls.is_none() {
        ringi_net::transport::check_plaintext_listen(listen)?;
    }
    // Before the state is built: the signers' watches report at once.
    if let Some(address) = config.metrics_listen {
        ringi_net::metrics_endpoint::serve(address)?;
        crate::metrics::describe();
    }
    let token = crate::token_keys::open(&config)?;
    let server_tls = match &config.tls {
        Some(tls) => Some(Reloadable::new(Arc::new(
            tls_configs(tls, token.as_ref())?.0,
        ))),
        None => None,
    };
    // Opening the store may block on the network (PostgreSQL).
    let coordinator =
        tokio::task::block_in_place(|| coordinator_with(&config, true, token.as_ref()))?;
    // SIGHUP: read the [tls] files again, for new connections from clients
    // and to signers; established connections keep their certificates.
    if let (Some(tls), Some(server), Some(client)) = (
        config.tls.clone(),
        server_tls.clone(),
        coordinator.registry.client_tls().cloned(),
    ) {
        let token = token.clone();
        ringi_net::transport::on_hangup(move || match tls_configs(&tls, token.as_ref()) {
            Ok((s, c)) => {
                server.replace(Arc::new(s));
                client.replace(Arc::new(c));
                tracing::info!("TLS certificates reloaded");
            }
            Err(e) => tracing::error!(
                error = %e,
                "TLS certificate reload failed; keeping the current certificates"
            ),
        });
    }
    // Everything that can take time is built before the "listening" line:
    // callers (and the tests) take that line to mean the server is up, and
    // a plaintext server only takes SIGHUP once `serve` runs.
    let (health_reporter, health, reflection) = ringi_net::ops::health_and_reflection(&[
        "ringi.coordinator.v1.KeyService",
        "ringi.coordinator.v1.RequestService",
        "ringi.coordinator.v1.PolicyService",
        "ringi.coordinator.v1.OperationsService",
    ])
    .await?;
    // Under TLS, only configured client identities get in; handlers check
    // their roles and key ids (see access.rs).
    let clients = server_tls
        .as_ref()
        .map(|_| Arc::new(access::Clients::new(&config.clients)));
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health)
        .add_service(reflection)
        .add_service(KeyServiceServer::with_interceptor(
            KeyService(coordinator.clone()),
            access::interceptor(clients.clone()),
        ))
        .add_service(RequestServiceServer::with_interceptor(
            RequestService(coordinator.clone()),
            access::interceptor(clients.clone()),
        ))
        .add_service(PolicyServiceServer::with_interceptor(
            PolicyService(coordinator.clone()),
            access::interceptor(clients.clone()),
        ))
        .add_service(OperationsServiceServer::with_interceptor(
            OperationsService(coordinator.clone()),
            access::interceptor(clients),
        ));
    let listener = TcpListener::bind(listen).await?;
    // Retired keys: record when their shares are gone from every signer.
    crate::retire::spawn(coordinator.clone());
    // Ask every signer whether it can sign, now and periodically; set each
    // key's health.
    crate::preflight::spawn(
        coordinator.clone(),
        health_reporter,
        config.preflight_interval(),
    );
    // Expire overdue requests and resume signings a restart interrupted,
    // then keep expiring, and resume what a run (here, or in a coordinator
    // sharing the store that died) left: APPROVED requests no run took,
    // SIGNING ones whose claim's lease passed. At start, the only process
    // on an embedded store takes every interrupted signing over at once; on
    // a shared store another coordinator may be running them, so their
    // leases are waited out.
    let sweeper = coordinator.clone();
    tokio::spawn(async move {
        let mut sweeps = requests::Sweeper::new(sweeper.store_exclusive);
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            if let Err(e) = sweeps.sweep(&sweeper).await {
                tracing::warn!(error = %e, "request sweep failed");
            }
        }
    });
    // Signed checkpoints of the audit trail when due
    // (`ringi_policy::audit::CHECKPOINTS`), and once more at shutdown.
    if coordinator.audit_checkpoints.is_some() {
        let c = coordinator.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ringi_policy::audit::CHECKPOINTS.tick);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if c.audit_checkpoint_due() {
                    let c = c.clone();
                    let _ = tokio::task::spawn_blocking(move || c.checkpoint_audit()).await;
                }
            }
        });
    }
    let at_shutdown = coordinator.clone();
    // "listening" is printed once the SIGHUP handlers are installed.
    ringi_net::serve::serve(
        router,
        listener,
        server_tls,
        "ringi.coordinator.v1",
        |local| println!("ringi listening on {local}"),
    )
    .await?;
    let _ = tokio::task::spawn_blocking(move || at_shutdown.checkpoint_audit()).await;
    tracing::info!("stopped");
    Ok(())
}
