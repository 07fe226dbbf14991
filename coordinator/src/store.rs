//! The coordinator's durable state: an embedded SQLite database under the
//! data directory. It holds only public data (group keys, public key
//! packages, which signer holds which identifier); no share ever reaches the
//! coordinator.
//!
//! Every write is one transaction, so a failure leaves nothing half-written.
//! Calls are synchronous; async callers run them on a blocking thread.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};

/// Bumped when the schema changes; migrations run in [`Store::open`].
const SCHEMA_VERSION: i64 = 3;

/// A key's public record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: String,
    pub threshold: u16,
    /// (signer name, FROST identifier), ordered by identifier.
    pub signers: Vec<(String, u16)>,
    /// SEC1 compressed, 33 bytes.
    pub group_public_key: Vec<u8>,
    /// frost `PublicKeyPackage::serialize()`.
    pub public_key_package: Vec<u8>,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Internal(format!(
                    "cannot create data directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.lock();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::Internal(format!(
                "database schema version {version} is newer than this ringi ({SCHEMA_VERSION}); upgrade ringi"
            )));
        }
        if version < 1 {
            let tx = conn.transaction()?;
            tx.execute_batch(
                "CREATE TABLE keys (
                    key_id             TEXT PRIMARY KEY,
                    threshold          INTEGER NOT NULL,
                    group_public_key   BLOB NOT NULL,
                    public_key_package BLOB NOT NULL,
                    created_at         INTEGER NOT NULL
                );
                CREATE TABLE key_signers (
                    key_id      TEXT NOT NULL REFERENCES keys(key_id),
                    signer_name TEXT NOT NULL,
                    identifier  INTEGER NOT NULL,
                    PRIMARY KEY (key_id, signer_name),
                    UNIQUE (key_id, identifier)
                );
                PRAGMA user_version = 1;",
            )?;
            tx.commit()?;
        }
        if version < 2 {
            let tx = conn.transaction()?;
            tx.execute_batch(
                "CREATE TABLE requests (
                    request_id   BLOB PRIMARY KEY,
                    key_id       TEXT NOT NULL,
                    message      BLOB NOT NULL,
                    asset        TEXT NOT NULL,
                    amount       TEXT NOT NULL,
                    destination  TEXT NOT NULL,
                    memo         TEXT NOT NULL,
                    requester    TEXT NOT NULL,
                    created_at   INTEGER NOT NULL,
                    expires_at   INTEGER NOT NULL,
                    policy_hash  BLOB NOT NULL,
                    signers      TEXT NOT NULL,
                    state        TEXT NOT NULL,
                    state_reason TEXT NOT NULL,
                    signature    BLOB
                );
                CREATE INDEX requests_by_state ON requests(state);
                CREATE TABLE approvals (
                    request_id     BLOB NOT NULL REFERENCES requests(request_id),
                    approver_key   BLOB NOT NULL,
                    department     TEXT NOT NULL,
                    decision       TEXT NOT NULL,
                    reason         TEXT NOT NULL,
                    issued_at      INTEGER NOT NULL,
                    expires_at     INTEGER NOT NULL,
                    content_digest BLOB NOT NULL,
                    signature      BLOB NOT NULL,
                    received_at    INTEGER NOT NULL,
                    PRIMARY KEY (request_id, approver_key)
                );
                CREATE TABLE transitions (
                    request_id BLOB NOT NULL REFERENCES requests(request_id),
                    seq        INTEGER NOT NULL,
                    from_state TEXT NOT NULL,
                    to_state   TEXT NOT NULL,
                    reason     TEXT NOT NULL,
                    at         INTEGER NOT NULL,
                    PRIMARY KEY (request_id, seq)
                );
                PRAGMA user_version = 2;",
            )?;
            tx.commit()?;
        }
        if version < 3 {
            let tx = conn.transaction()?;
            tx.execute_batch(
                "CREATE TABLE idempotency_keys (
                    requester       TEXT NOT NULL,
                    idempotency_key TEXT NOT NULL,
                    content_hash    BLOB NOT NULL,
                    request_id      BLOB NOT NULL REFERENCES requests(request_id),
                    PRIMARY KEY (requester, idempotency_key)
                );
                CREATE INDEX requests_by_time ON requests(created_at DESC, request_id DESC);
                PRAGMA user_version = 3;",
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts a new key. ALREADY_EXISTS if the key id is taken.
    pub fn insert_key(&self, key: &KeyRecord) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM keys WHERE key_id = ?1", [&key.key_id], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_some() {
            return Err(Error::AlreadyExists(format!(
                "key id {:?} exists already",
                key.key_id
            )));
        }
        tx.execute(
            "INSERT INTO keys (key_id, threshold, group_public_key, public_key_package, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                key.key_id,
                key.threshold,
                key.group_public_key,
                key.public_key_package,
                key.created_at
            ],
        )?;
        for (name, identifier) in &key.signers {
            tx.execute(
                "INSERT INTO key_signers (key_id, signer_name, identifier) VALUES (?1, ?2, ?3)",
                params![key.key_id, name, identifier],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The key's record, or NOT_FOUND.
    pub fn key(&self, key_id: &str) -> Result<KeyRecord> {
        self.find_key(key_id)?
            .ok_or_else(|| Error::NotFound(format!("key id {key_id:?} does not exist")))
    }

    pub fn find_key(&self, key_id: &str) -> Result<Option<KeyRecord>> {
        let conn = self.lock();
        let row = conn
            .query_row(
                "SELECT threshold, group_public_key, public_key_package, created_at FROM keys WHERE key_id = ?1",
                [key_id],
                |r| Ok((r.get::<_, u16>(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((threshold, group_public_key, public_key_package, created_at)) = row else {
            return Ok(None);
        };
        let signers = key_signers(&conn, key_id)?;
        Ok(Some(KeyRecord {
            key_id: key_id.to_string(),
            threshold,
            signers,
            group_public_key,
            public_key_package,
            created_at,
        }))
    }

    /// Every key, ordered by key id.
    pub fn keys(&self) -> Result<Vec<KeyRecord>> {
        let ids: Vec<String> = {
            let conn = self.lock();
            let mut stmt = conn.prepare("SELECT key_id FROM keys ORDER BY key_id")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        ids.iter()
            .filter_map(|id| self.find_key(id).transpose())
            .collect()
    }
}

fn key_signers(conn: &Connection, key_id: &str) -> Result<Vec<(String, u16)>> {
    let mut stmt = conn.prepare(
        "SELECT signer_name, identifier FROM key_signers WHERE key_id = ?1 ORDER BY identifier",
    )?;
    let rows = stmt.query_map([key_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key_id: &str) -> KeyRecord {
        KeyRecord {
            key_id: key_id.into(),
            threshold: 2,
            signers: vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)],
            group_public_key: vec![2; 33],
            public_key_package: vec![1, 2, 3],
            created_at: 1_700_000_000,
        }
    }

    #[test]
    fn keys_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ringi.sqlite3");
        Store::open(&path)
            .unwrap()
            .insert_key(&record("k1"))
            .unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.key("k1").unwrap(), record("k1"));
        assert_eq!(store.keys().unwrap(), vec![record("k1")]);
    }

    #[test]
    fn duplicate_key_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store.insert_key(&record("k1")).unwrap();
        let mut other = record("k1");
        other.threshold = 3;
        assert!(matches!(
            store.insert_key(&other),
            Err(Error::AlreadyExists(_))
        ));
        assert_eq!(store.key("k1").unwrap().threshold, 2);
    }

    #[test]
    fn failed_insert_leaves_no_half_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let mut bad = record("k1");
        // Two signers with one identifier violate UNIQUE (key_id, identifier).
        bad.signers = vec![("a".into(), 1), ("b".into(), 1)];
        assert!(matches!(store.insert_key(&bad), Err(Error::Internal(_))));
        assert!(store.find_key("k1").unwrap().is_none());
    }

    #[test]
    fn unknown_key_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        assert!(matches!(store.key("nope"), Err(Error::NotFound(m)) if m.contains("nope")));
    }
}
