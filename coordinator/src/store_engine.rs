//! Which storage engine keeps the coordinator's state: the one line
//! `[store] engine = ...` of the config (`config::StoreConfig`) chooses.
//!
//! - SQLite (the default): one file in the data directory, one coordinator
//!   (`ringi serve` holds the data directory's lock).
//! - PostgreSQL: one database any number of coordinators share. No process
//!   knows that the others are gone, which changes how a coordinator
//!   resumes signings at start: see [`OpenedStore::exclusive`].

use std::path::Path;
use std::sync::Arc;

use crate::config::{StoreConfig, StoreEngine};
use crate::error::Result;
use crate::postgres::PostgresStore;
use crate::request_store::RequestStore;
use crate::sqlite::SqliteStore;
use crate::store::KeyStore;

/// File name of the SQLite database inside the data directory.
pub const DATABASE_FILE: &str = "ringi.sqlite3";

/// An open engine, as both stores.
pub struct OpenedStore {
    pub keys: Arc<dyn KeyStore>,
    pub requests: Arc<dyn RequestStore>,
    /// Whether this coordinator is the only one using the store (SQLite,
    /// under the data directory's lock). Only then may it take over, at
    /// start, the signings an earlier process held whatever their leases
    /// (the holder is certainly dead); on a shared store a claim's holder
    /// may be another live coordinator, so its lease is waited out.
    pub exclusive: bool,
    /// Where the state lives, for logs (no password).
    pub location: String,
}

/// Opens (creating or migrating) the configured engine. Blocks on the
/// network for PostgreSQL: call it outside an async task, or in
/// `tokio::task::block_in_place`.
pub fn open(store: &StoreConfig, data_dir: &Path) -> Result<OpenedStore> {
    match store.engine {
        StoreEngine::Sqlite => {
            let path = data_dir.join(DATABASE_FILE);
            let engine = Arc::new(SqliteStore::open(&path)?);
            Ok(OpenedStore {
                keys: engine.clone(),
                requests: engine,
                exclusive: true,
                location: path.display().to_string(),
            })
        }
        StoreEngine::Postgres => {
            let engine = Arc::new(PostgresStore::open(store)?);
            let location = engine.describe();
            Ok(OpenedStore {
                keys: engine.clone(),
                requests: engine,
                exclusive: false,
                location,
            })
        }
    }
}
