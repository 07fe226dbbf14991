//! `ringi bench --store-url`: the first key's signing latency as a
//! request's signing is run by the coordinator when a decision approves it
//! (`ringi::requests::run_signing_approved`, with the record the decision
//! wrote: claim the APPROVED request with its first round-2 plan, sign,
//! record SIGNED, each store write durable before the next step), through the
//! embedded SQLite store and through a PostgreSQL database, in one run.
//!
//! Each engine gets a coordinator of its own over the same signers (the
//! config's registry and TLS identity), with the key's public record copied
//! in: SQLite in a fresh temporary file, PostgreSQL in the database the
//! connection string names (schema migrated if empty; the bench's requests
//! stay there, so give it a scratch database). Requests and approvals are
//! recorded before the clock starts; the figure is approved → SIGNED. The
//! series run one after the other (SQLite first), each after a warm-up,
//! with its phase table: the plan and SIGNED writes are the stores' share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringi::config::{Config, StoreConfig, StoreEngine};
use ringi::coordinator::Coordinator;
use ringi::request_state::{Event, State, next};
use ringi::request_store::{NewRequest, RequestStore};
use ringi::store::KeyStore;
use ringi_policy::key_id::KeyId;
use ringi_policy::policy::Policy;

use crate::bench::{BenchApprover, Breakdown, Summary, approved_message, summarize};

/// The rows (name, figures, phases) of both engines.
pub(crate) async fn rows(
    config: &Config,
    source: &Coordinator,
    policy: &Policy,
    key_id: &str,
    url: &str,
    iterations: usize,
    approvers: &[BenchApprover],
) -> anyhow::Result<Vec<(String, Option<Summary>, Breakdown)>> {
    let id = KeyId::parse(key_id)?;
    // Store calls block: off the async threads, as the coordinator's are.
    let record = tokio::task::block_in_place(|| anyhow::Ok(source.keys.key(&id)?))?;
    let dir = tempfile::tempdir()?;
    let sqlite = Arc::new(ringi::sqlite::SqliteStore::open(
        &dir.path().join("bench.sqlite3"),
    )?);
    sqlite.insert_key(&record)?;
    let store = StoreConfig {
        engine: StoreEngine::Postgres,
        url: Some(url.to_string()),
        ..StoreConfig::default()
    };
    let postgres = tokio::task::block_in_place(|| -> anyhow::Result<_> {
        let engine = Arc::new(ringi::postgres::PostgresStore::open(&store)?);
        match engine.find_key(&id)? {
            None => engine.insert_key(&record)?,
            Some(found) if found.group_public_key == record.group_public_key => {}
            Some(_) => anyhow::bail!(
                "the PostgreSQL database holds another key {key_id:?}: give the bench a scratch database"
            ),
        }
        Ok(engine)
    })?;

    let mut out = Vec::new();
    for (engine, name, keys, requests) in [
        (
            "SQLite",
            "SQLite (embedded, group commit)",
            sqlite.clone() as Arc<dyn KeyStore>,
            sqlite.clone() as Arc<dyn RequestStore>,
        ),
        (
            "PostgreSQL",
            "PostgreSQL (SERIALIZABLE)",
            postgres.clone() as Arc<dyn KeyStore>,
            postgres.clone() as Arc<dyn RequestStore>,
        ),
    ] {
        let registry = match ringi::server::client_tls(config)? {
            Some(tls) => ringi::registry::Registry::with_tls(&config.signers, Arc::new(tls))?,
            None => ringi::registry::Registry::new(&config.signers)?,
        };
        ringi::signer_watch::spawn(&registry);
        let coordinator = Arc::new(Coordinator::new(
            registry,
            keys,
            requests,
            Some(Arc::new(policy.clone())),
        ));
        let samples = series(&coordinator, policy, key_id, iterations, approvers).await?;
        let size = format!("{}-of-{}", record.threshold, record.signers.len());
        out.push((
            format!("requests {key_id:?} {size} on {engine}: approved->SIGNED"),
            summarize(samples),
            Breakdown::taken(format!("key {key_id:?}, {size}, requests on {name}")),
        ));
    }
    Ok(out)
}

/// `iterations` requests signed through `c` after a warm-up; the phase
/// histograms are reset where the measured ones start.
async fn series(
    c: &Arc<Coordinator>,
    policy: &Policy,
    key_id: &str,
    iterations: usize,
    approvers: &[BenchApprover],
) -> anyhow::Result<Vec<Duration>> {
    let warmup = iterations.min(20);
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..warmup + iterations {
        if i == warmup {
            ringi::phases::reset();
        }
        let mut message = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut message);
        let (request, approvals) = approved_message(policy, key_id, &message, approvers)?;
        // Recorded as submit and decide would (untimed): APPROVED.
        let store = &c.requests;
        let record = tokio::task::block_in_place(|| -> anyhow::Result<_> {
            let now = ringi_policy::clock::now();
            let new = NewRequest {
                content_hash: ringi_policy::encoding::sha256(&request.canonical()),
                counted_amount: request.metadata.amount,
                request,
                signers: Vec::new(),
                idempotency_key: hex::encode(message),
                limits: Default::default(),
            };
            let id = store.insert_request(&new, None, now)?.id();
            let last = approvals.len().saturating_sub(1);
            for (n, approval) in approvals.iter().enumerate() {
                let quorum = (n == last).then(|| next(State::PendingApproval, Event::QuorumMet));
                let quorum = quorum.transpose()?;
                store.record_decision(&id, approval, quorum.as_ref(), now)?;
            }
            // The record as the approving decision wrote it (what decide
            // hands its signing run).
            Ok(store.request(&id)?)
        })?;
        let id = record.id;
        let start = Instant::now();
        ringi::requests::run_signing_approved(c, record).await;
        let elapsed = start.elapsed();
        let record = tokio::task::block_in_place(|| anyhow::Ok(c.requests.request(&id)?))?;
        if record.state != State::Signed {
            anyhow::bail!(
                "bench request {} ended {} ({})",
                hex::encode(id),
                record.state,
                record.state_reason
            );
        }
        if i >= warmup {
            samples.push(elapsed);
        }
    }
    Ok(samples)
}
