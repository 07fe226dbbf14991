//! The embedded storage engine: one SQLite database under the data
//! directory (`server::DATABASE_FILE`), implementing [`KeyStore`]
//! and [`RequestStore`].
//!
//! How it meets the stores' atomicity contract: every write runs inside a
//! `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock before its
//! first read, so a write's checks (the state a compare-and-set expects, an
//! idempotency key, the window usage a cap counts) cannot be invalidated by
//! another writer before it commits — whether that writer shares this
//! process's connection or opened the file separately. State changes are
//! conditional updates (`WHERE state = expected`).
//!
//! Group commit ([`GroupCommit`]): writers that arrive together share one
//! transaction and its one durable `COMMIT` (with a commit per write, the
//! fsync bounded this store at 300 to 2,500 writes a second, depending on
//! the disk, whatever the number of writers).
//! Each write runs in its own savepoint: it sees the writes before it in
//! the batch (so the checks above still see every earlier write), and one
//! that fails is undone alone. Every caller is answered only once the
//! batch's `COMMIT` returned: nothing is acknowledged before it is durable,
//! and if the commit fails, every writer of the batch gets the error.
//!
//! Reads run on a second connection, in a read transaction: a record and
//! its approvals and history come from one snapshot of *committed* data
//! (never a batch's writes before its commit), and reads do not wait for a
//! commit's fsync.
//!
//! The writer thread ([`crate::store_writer`]): the async side's writes
//! come as jobs to one thread, which runs the jobs queued together as one
//! write each of a group-commit batch and answers them after its commit.
//! While it runs a job, the batch's connection is lent to the store's calls
//! on that thread ([`IN_BATCH`]): their writes go into the open batch (a
//! savepoint each), and their reads see the batch, so a job that reads
//! after it writes sees its own write and those before it.

use std::cell::Cell;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ringi_policy::approver_key::ApproverKey;
use ringi_policy::group_commit::sqlite::SqliteBatch;
use ringi_policy::group_commit::{DEFAULT_MAX_BATCH, GroupCommit, GroupCommitError};
use ringi_policy::key_id::KeyId;
use ringi_policy::limits::{Limits, Usage, check};
use ringi_policy::request::{Metadata, NONCE_LEN, SigningRequest};
use ringi_policy::running_totals::{self, Counted, Reads as _};
use ringi_policy::statement::{Approval, Decision, Statement};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::{Error, Missing, RequestId, Result};
use crate::store_writer::{self, StoreWriter};

/// How many parsed statements each connection keeps: more than the store
/// has distinct statement texts (the group commit's BEGIN, SAVEPOINT,
/// RELEASE and COMMIT among them), so none is ever parsed twice.
const STATEMENT_CACHE: usize = 96;

/// Every statement of the store runs through the connection's statement
/// cache: parsing the SQL text again for each call was ~4% of the
/// coordinator's CPU under load (a profile of `ringi bench-load`).
trait CachedStatements {
    fn execute_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl CachedStatements for Connection {
    fn execute_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}
use crate::request_state::{Event, SignedTransaction, State, Transition, TransitionError, next};
use crate::request_store::{
    ClaimRequest, Inserted, LIST_LIMIT, ListFilter, NewRequest, PlannedClaim, Position,
    RequestRecord, RequestStore, SigningClaim, SigningPlan, TransitionRecord,
};
use crate::store::{KeyRecord, KeyStore};
use ringi_policy::holds::Retired;
use ringi_policy::retirement::Retirement;

/// Bumped when the schema changes; migrations run in [`SqliteStore::open`].
const SCHEMA_VERSION: i64 = 10;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(e.to_string())
    }
}

/// A write not kept because its batch was not (see [`GroupCommit`]).
impl From<GroupCommitError> for Error {
    fn from(e: GroupCommitError) -> Self {
        Error::Store(e.to_string())
    }
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("database holds a malformed {what}"))
}

scoped_tls::scoped_thread_local! {
    /// The batch the writer thread is running a job in: set only on that
    /// thread, only while the job runs.
    static IN_BATCH: SqliteBatch
}

thread_local! {
    /// Which store's writer this thread is (its [`SqliteStore::id`]); 0
    /// on every other thread.
    static WRITER_OF: Cell<usize> = const { Cell::new(0) };
}

pub struct SqliteStore {
    /// The writer thread (dropped first: it stops once every job queued
    /// is answered).
    jobs: StoreWriter,
    /// Every write, batched (see the module docs).
    writer: Arc<GroupCommit<SqliteBatch>>,
    /// Every read: committed data only.
    reader: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_batching(path, DEFAULT_MAX_BATCH)
    }

    /// [`SqliteStore::open`] with at most `max_batch` writes per commit (1:
    /// a commit per write, as before group commit; the benchmark's
    /// baseline).
    fn open_batching(path: &Path, max_batch: usize) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Store(format!(
                    "cannot create data directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A COMMIT returns once the WAL is on disk: what group commit
        // answers its writers after.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // With foreign keys off (this SQLite has them on by default):
        // version 9 rebuilds the tables they join (SQLite's procedure for
        // a table's new shape), and checks them itself.
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        migrate(&mut conn)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let reader = Connection::open(path)?;
        reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        reader.pragma_update(None, "query_only", "ON")?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        let writer = Arc::new(GroupCommit::new(SqliteBatch(conn)).with_max_batch(max_batch));
        let batches = writer.clone();
        let jobs = StoreWriter::start("ringi-sqlite-writer", move |jobs| {
            WRITER_OF.with(|of| of.set(Arc::as_ptr(&batches) as usize));
            store_writer::serve(jobs, |taken| {
                store_writer::run_batch(&batches, taken, |batch, job| {
                    IN_BATCH.set(batch, || job.run())
                })
            });
        })?;
        Ok(SqliteStore {
            jobs,
            writer,
            reader: Mutex::new(reader),
        })
    }

    /// This store's identity for [`WRITER_OF`].
    fn id(&self) -> usize {
        Arc::as_ptr(&self.writer) as usize
    }

    /// Whether this call runs in a job on this store's writer thread.
    fn in_batch(&self) -> bool {
        IN_BATCH.is_set() && WRITER_OF.with(Cell::get) == self.id()
    }

    /// Runs `f` as one write of a batch (its own savepoint, see the module
    /// docs); returns once the batch is durably committed. An error of `f`
    /// undoes its changes only. In a job of the writer thread, `f` runs in
    /// the batch the job is part of (a savepoint of its own inside the
    /// job's), committed after the job.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.in_batch() {
            return IN_BATCH.with(|batch| in_savepoint(batch, f));
        }
        self.writer.write(|batch| f(batch))
    }

    /// Runs `f` in a read transaction: one snapshot for all its queries.
    /// In a job of the writer thread, inside the job's batch instead: it
    /// sees the writes made before it in the batch, which are committed
    /// before the job is answered.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.in_batch() {
            return IN_BATCH.with(|batch| f(batch));
        }
        let mut conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let value = f(&tx)?;
        tx.finish()?;
        Ok(value)
    }

    /// Runs `f` on the write connection outside any batch (tests that
    /// tamper with rows).
    #[cfg(test)]
    fn raw<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        self.writer.peek(|batch| f(batch))
    }
}

/// `f` in a savepoint of the open transaction: undone alone if it fails.
fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_cached("SAVEPOINT one_call", [])?;
    match f(conn) {
        Ok(value) => {
            conn.execute_cached("RELEASE one_call", [])?;
            Ok(value)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO one_call; RELEASE one_call")?;
            Err(e)
        }
    }
}

/// Version 9: every table of a request's history is keyed by the
/// request's row number (`req`, assigned in arrival order) instead of its
/// hash id. With hash keys, each of a request's writes (submission, each
/// decision, the claim and its plan, the result) landed on a random page
/// of every child table's index, and the requests in flight shared none:
/// the coordinator wrote 80-125 KiB to disk per request for rows under
/// 2 KiB (docs/bench.md, eighth session; `docs/experiments/wal-pages.py`
/// models the difference). With the row number, the requests in flight
/// write to the last pages of each table. `requests` gets its row number as
/// an explicit column: an implicit rowid may be renumbered by `VACUUM`.
/// `idempotency_keys` loses its separate primary-key index (WITHOUT
/// ROWID: the table is that index). Approvals keep a rowid: a request's
/// approvals are read in the order they arrived.
///
/// The old tables are renamed aside (`_v8`; their references follow
/// them), the new ones made under the old names and filled, the old ones
/// dropped. Run with foreign keys off (the rebuild drops tables joined by
/// them); `migrate` checks every reference before and after.
const SCHEMA_9: &str = "
    DROP INDEX IF EXISTS requests_by_state;
    DROP INDEX IF EXISTS requests_by_time;
    DROP INDEX IF EXISTS transitions_by_time;
    DROP INDEX IF EXISTS approvals_by_time;
    ALTER TABLE requests RENAME TO requests_v8;
    ALTER TABLE approvals RENAME TO approvals_v8;
    ALTER TABLE transitions RENAME TO transitions_v8;
    ALTER TABLE signing_claims RENAME TO signing_claims_v8;
    ALTER TABLE signing_plans RENAME TO signing_plans_v8;
    ALTER TABLE idempotency_keys RENAME TO idempotency_keys_v8;
    CREATE TABLE requests (
        req            INTEGER PRIMARY KEY,
        request_id     BLOB NOT NULL UNIQUE,
        key_id         TEXT NOT NULL,
        message        BLOB NOT NULL,
        asset          TEXT NOT NULL,
        amount         TEXT NOT NULL,
        destination    TEXT NOT NULL,
        memo           TEXT NOT NULL,
        requester      TEXT NOT NULL,
        created_at     INTEGER NOT NULL,
        expires_at     INTEGER NOT NULL,
        policy_hash    BLOB NOT NULL,
        signers        TEXT NOT NULL,
        state          TEXT NOT NULL,
        state_reason   TEXT NOT NULL,
        signature      BLOB,
        psbt           BLOB,
        counted_amount TEXT NOT NULL,
        signed_psbt    BLOB,
        signed_tx      BLOB,
        nonce          BLOB NOT NULL
    );
    INSERT INTO requests (req, request_id, key_id, message, asset, amount, destination, memo,
                             requester, created_at, expires_at, policy_hash, signers, state,
                             state_reason, signature, psbt, counted_amount, signed_psbt, signed_tx,
                             nonce)
        SELECT rowid, request_id, key_id, message, asset, amount, destination, memo,
               requester, created_at, expires_at, policy_hash, signers, state,
               state_reason, signature, psbt, counted_amount, signed_psbt, signed_tx, nonce
        FROM requests_v8 ORDER BY rowid;
    CREATE TABLE approvals (
        req            INTEGER NOT NULL REFERENCES requests(req),
        approver_key   BLOB NOT NULL,
        department     TEXT NOT NULL,
        decision       TEXT NOT NULL,
        reason         TEXT NOT NULL,
        issued_at      INTEGER NOT NULL,
        expires_at     INTEGER NOT NULL,
        content_digest BLOB NOT NULL,
        signature      BLOB NOT NULL,
        received_at    INTEGER NOT NULL,
        PRIMARY KEY (req, approver_key)
    );
    INSERT INTO approvals
        SELECT r.rowid, a.approver_key, a.department, a.decision, a.reason, a.issued_at,
               a.expires_at, a.content_digest, a.signature, a.received_at
        FROM approvals_v8 a JOIN requests_v8 r ON r.request_id = a.request_id ORDER BY a.rowid;
    CREATE TABLE transitions (
        req        INTEGER NOT NULL REFERENCES requests(req),
        seq        INTEGER NOT NULL,
        from_state TEXT NOT NULL,
        to_state   TEXT NOT NULL,
        reason     TEXT NOT NULL,
        at         INTEGER NOT NULL,
        PRIMARY KEY (req, seq)
    ) WITHOUT ROWID;
    INSERT INTO transitions
        SELECT r.rowid, t.seq, t.from_state, t.to_state, t.reason, t.at
        FROM transitions_v8 t JOIN requests_v8 r ON r.request_id = t.request_id;
    CREATE TABLE signing_claims (
        req         INTEGER PRIMARY KEY REFERENCES requests(req),
        fence       INTEGER NOT NULL,
        owner       TEXT NOT NULL,
        lease_until INTEGER NOT NULL
    );
    INSERT INTO signing_claims
        SELECT r.rowid, c.fence, c.owner, c.lease_until
        FROM signing_claims_v8 c JOIN requests_v8 r ON r.request_id = c.request_id;
    CREATE TABLE signing_plans (
        req     INTEGER NOT NULL REFERENCES requests(req),
        input   INTEGER NOT NULL,
        seq     INTEGER NOT NULL,
        package BLOB NOT NULL,
        signers TEXT NOT NULL,
        PRIMARY KEY (req, input, seq)
    ) WITHOUT ROWID;
    INSERT INTO signing_plans
        SELECT r.rowid, p.input, p.seq, p.package, p.signers
        FROM signing_plans_v8 p JOIN requests_v8 r ON r.request_id = p.request_id;
    CREATE TABLE idempotency_keys (
        requester       TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        content_hash    BLOB NOT NULL,
        request_id      BLOB NOT NULL REFERENCES requests(request_id),
        PRIMARY KEY (requester, idempotency_key)
    ) WITHOUT ROWID;
    INSERT INTO idempotency_keys
        SELECT requester, idempotency_key, content_hash, request_id FROM idempotency_keys_v8;
    DROP TABLE idempotency_keys_v8;
    DROP TABLE signing_plans_v8;
    DROP TABLE signing_claims_v8;
    DROP TABLE transitions_v8;
    DROP TABLE approvals_v8;
    DROP TABLE requests_v8;
    CREATE INDEX requests_by_state ON requests(state);
    CREATE INDEX requests_by_time ON requests(created_at DESC, request_id DESC);
    CREATE INDEX transitions_by_time ON transitions(at);
    CREATE INDEX approvals_by_time ON approvals(received_at);
    PRAGMA user_version = 9;
";

/// Version 10: each request carries its key's running totals (the amount
/// and number of the key's requests through it) and the time it is counted
/// at, so a window cap's usage is two index lookups instead of a sum over
/// the window (`ringi_policy::running_totals`; docs/bench.md, tenth session). The
/// columns are filled by [`fill_running_totals`] between the two halves.
const SCHEMA_10_COLUMNS: &str = "
    ALTER TABLE requests ADD COLUMN counted_at INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE requests ADD COLUMN running_amount TEXT NOT NULL DEFAULT '0';
    ALTER TABLE requests ADD COLUMN running_count INTEGER NOT NULL DEFAULT 0;
";
const SCHEMA_10_INDEXES: &str = "
    CREATE INDEX requests_by_key_count ON requests(key_id, counted_at, running_count);
    CREATE INDEX requests_uncounted ON requests(key_id, counted_at)
        WHERE state IN ('REJECTED', 'EXPIRED', 'FAILED');
    PRAGMA user_version = 10;
";

/// Gives every request its key's running totals, in the order a store
/// would have counted them (by key, creation time, then arrival): the
/// amounts are u128 in decimal text, which SQLite cannot add exactly, so
/// the sums are made here.
fn fill_running_totals(tx: &Connection) -> Result<()> {
    let rows: Vec<(i64, String, i64, String)> = tx
        .prepare("SELECT req, key_id, created_at, counted_amount FROM requests ORDER BY key_id, created_at, req")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = tx.prepare(
        "UPDATE requests SET counted_at = ?2, running_amount = ?3, running_count = ?4 WHERE req = ?1",
    )?;
    let mut key: Option<String> = None;
    let mut totals = Usage::default();
    for (req, key_id, created_at, counted) in rows {
        if key.as_ref() != Some(&key_id) {
            totals = Usage::default();
            key = Some(key_id);
        }
        totals.add(counted.parse().map_err(|_| corrupt("amount"))?);
        update.execute(params![
            req,
            created_at,
            totals.amount.to_string(),
            totals.requests as i64
        ])?;
    }
    Ok(())
}

/// Refuses a database where a row refers to a request or key that is not
/// there (checked by the migration that runs with foreign keys off).
fn orphans(tx: &Connection) -> Result<()> {
    let orphans: i64 = tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
        r.get(0)
    })?;
    match orphans {
        0 => Ok(()),
        n => Err(corrupt(&format!(
            "history: {n} rows refer to no request or key (nothing was migrated)"
        ))),
    }
}

/// Creates or upgrades the schema, in one transaction.
fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// [`migrate`] up to schema version `target` only (tests that write a
/// database as an older ringi did).
fn migrate_to(conn: &mut Connection, target: i64) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Store(format!(
            "database schema version {version} is newer than this ringi ({SCHEMA_VERSION}); upgrade ringi"
        )));
    }
    if version < 1 && 1 <= target {
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
    }
    if version < 2 && 2 <= target {
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
    }
    if version < 3 && 3 <= target {
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
    }
    if version < 4 && 4 <= target {
        // Every key made before key kinds is an RFC 9591 key.
        tx.execute_batch(
            "ALTER TABLE keys ADD COLUMN kind TEXT NOT NULL DEFAULT 'frost-secp256k1';
            PRAGMA user_version = 4;",
        )?;
    }
    if version < 5 && 5 <= target {
        // PSBT requests: the PSBT itself, what the caps count (the
        // derived payments; for every request made before, its declared
        // amount), and the finalized PSBT and transaction of a SIGNED
        // one.
        tx.execute_batch(
            "ALTER TABLE requests ADD COLUMN psbt BLOB;
            ALTER TABLE requests ADD COLUMN counted_amount TEXT NOT NULL DEFAULT '0';
            UPDATE requests SET counted_amount = amount;
            ALTER TABLE requests ADD COLUMN signed_psbt BLOB;
            ALTER TABLE requests ADD COLUMN signed_tx BLOB;
            PRAGMA user_version = 5;",
        )?;
    }
    if version < 6 && 6 <= target {
        // Request nonces: every request made before them has none (an
        // empty one), and keeps its v1 id.
        tx.execute_batch(
            "ALTER TABLE requests ADD COLUMN nonce BLOB NOT NULL DEFAULT x'';
            PRAGMA user_version = 6;",
        )?;
    }
    if version < 7 && 7 <= target {
        // Exactly-once signing across crashes and processes: the
        // claim a signing run holds (fenced), and the round-2 plans it
        // recorded before asking for shares.
        tx.execute_batch(
            "CREATE TABLE signing_claims (
                request_id  BLOB PRIMARY KEY REFERENCES requests(request_id),
                fence       INTEGER NOT NULL,
                owner       TEXT NOT NULL,
                lease_until INTEGER NOT NULL
            );
            CREATE TABLE signing_plans (
                request_id BLOB NOT NULL REFERENCES requests(request_id),
                input      INTEGER NOT NULL,
                seq        INTEGER NOT NULL,
                package    BLOB NOT NULL,
                signers    TEXT NOT NULL,
                PRIMARY KEY (request_id, input, seq)
            );
            CREATE INDEX transitions_by_time ON transitions(at);
            CREATE INDEX approvals_by_time ON approvals(received_at);
            PRAGMA user_version = 7;",
        )?;
    }
    if version < 8 && 8 <= target {
        // Key retirements: the admins' order (kept whole, as evidence),
        // when it was accepted, and when no signer held a share any more.
        // The key's row stays: its requests and history refer to it.
        tx.execute_batch(
            "CREATE TABLE key_retirements (
                key_id              TEXT PRIMARY KEY REFERENCES keys(key_id),
                order_id            BLOB NOT NULL,
                signed_order        BLOB NOT NULL,
                destroy_after       INTEGER NOT NULL,
                admins              TEXT NOT NULL,
                retired_at          INTEGER NOT NULL,
                shares_destroyed_at INTEGER
            );
            PRAGMA user_version = 8;",
        )?;
    }
    if version < 9 && 9 <= target {
        // Checked before (the rebuild copies only the rows it can join to
        // their request, so it would drop an orphan unnoticed) and after.
        orphans(&tx)?;
        tx.execute_batch(SCHEMA_9)?;
        orphans(&tx)?;
    }
    if version < 10 && 10 <= target {
        tx.execute_batch(SCHEMA_10_COLUMNS)?;
        fill_running_totals(&tx)?;
        tx.execute_batch(SCHEMA_10_INDEXES)?;
    }
    tx.commit()?;
    Ok(())
}

impl KeyStore for SqliteStore {
    fn insert_key(&self, key: &KeyRecord) -> Result<()> {
        self.write(|tx| {
            let exists: Option<i64> = tx
                .query_row_cached(
                    "SELECT 1 FROM keys WHERE key_id = ?1",
                    [key.key_id.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_some() {
                return Err(Error::KeyExists(key.key_id.clone()));
            }
            tx.execute_cached(
                "INSERT INTO keys (key_id, threshold, group_public_key, public_key_package, created_at, kind)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key.key_id.as_str(),
                    key.threshold,
                    key.group_public_key,
                    key.public_key_package,
                    key.created_at,
                    key.kind.as_str()
                ],
            )?;
            for (name, identifier) in &key.signers {
                tx.execute_cached(
                    "INSERT INTO key_signers (key_id, signer_name, identifier) VALUES (?1, ?2, ?3)",
                    params![key.key_id.as_str(), name, identifier],
                )?;
            }
            Ok(())
        })
    }

    fn replace_key_package(&self, key_id: &KeyId, expected: &[u8], new: &[u8]) -> Result<()> {
        self.write(|tx| {
            let stored: Option<Vec<u8>> = tx
                .query_row_cached(
                    "SELECT public_key_package FROM keys WHERE key_id = ?1",
                    [key_id.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            match stored {
                None => Err(crate::error::Missing::Key(key_id.clone()).into()),
                Some(stored) if stored == new => Ok(()),
                Some(stored) if stored != expected => Err(Error::Corrupt(format!(
                    "key id {key_id:?}: the stored public key package changed while the refresh ran"
                ))),
                Some(_) => {
                    tx.execute_cached(
                        "UPDATE keys SET public_key_package = ?2 WHERE key_id = ?1",
                        params![key_id.as_str(), new],
                    )?;
                    Ok(())
                }
            }
        })
    }

    fn replace_key_signer(&self, key_id: &KeyId, identifier: u16, signer: &str) -> Result<()> {
        self.write(|tx| {
            let Some(key) = load_key(tx, key_id)? else {
                return Err(crate::error::Missing::Key(key_id.clone()).into());
            };
            if !key.signers.iter().any(|(_, id)| *id == identifier) {
                return Err(Error::Corrupt(format!(
                    "key id {key_id:?} has no participant {identifier}"
                )));
            }
            if key
                .signers
                .iter()
                .any(|(name, id)| name == signer && *id != identifier)
            {
                return Err(Error::Corrupt(format!(
                    "{signer} is another participant of key id {key_id:?}"
                )));
            }
            tx.execute_cached(
                "UPDATE key_signers SET signer_name = ?3 WHERE key_id = ?1 AND identifier = ?2",
                params![key_id.as_str(), identifier, signer],
            )?;
            Ok(())
        })
    }

    fn retire_key(&self, retirement: &Retirement, signed_order: &[u8]) -> Result<Retired> {
        let key_id = &retirement.key_id;
        self.write(|tx| {
            if let Some(first) = load_retirement(tx, key_id)? {
                return Ok(Retired::Already(Box::new(first)));
            }
            let exists: Option<i64> = tx
                .query_row_cached(
                    "SELECT 1 FROM keys WHERE key_id = ?1",
                    [key_id.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_none() {
                return Err(crate::error::Missing::Key(key_id.clone()).into());
            }
            tx.execute_cached(
                "INSERT INTO key_retirements
                     (key_id, order_id, signed_order, destroy_after, admins, retired_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key_id.as_str(),
                    &retirement.order_id[..],
                    signed_order,
                    retirement.destroy_after as i64,
                    retirement.admins_text(),
                    retirement.accepted_at as i64
                ],
            )?;
            Ok(Retired::New)
        })
    }

    fn key_retirement(&self, key_id: &KeyId) -> Result<Option<Retirement>> {
        self.read(|tx| load_retirement(tx, key_id))
    }

    fn key_retirements(&self) -> Result<Vec<Retirement>> {
        self.read(|tx| {
            let ids: Vec<String> = tx
                .prepare_cached("SELECT key_id FROM key_retirements ORDER BY key_id")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut all = Vec::with_capacity(ids.len());
            for id in ids {
                let id = KeyId::try_from(id).map_err(|_| corrupt("key id"))?;
                all.extend(load_retirement(tx, &id)?);
            }
            Ok(all)
        })
    }

    fn mark_shares_destroyed(&self, key_id: &KeyId, at: u64) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute_cached(
                "UPDATE key_retirements SET shares_destroyed_at = ?2
                 WHERE key_id = ?1 AND shares_destroyed_at IS NULL",
                params![key_id.as_str(), at as i64],
            )? == 1)
        })
    }

    fn find_key(&self, key_id: &KeyId) -> Result<Option<KeyRecord>> {
        self.read(|tx| load_key(tx, key_id))
    }

    fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.read(|tx| {
            let ids: Vec<String> = tx
                .prepare_cached("SELECT key_id FROM keys ORDER BY key_id")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut keys = Vec::with_capacity(ids.len());
            for id in ids {
                let id = KeyId::try_from(id).map_err(|_| corrupt("key id"))?;
                keys.extend(load_key(tx, &id)?);
            }
            Ok(keys)
        })
    }
}

fn load_retirement(conn: &Connection, key_id: &KeyId) -> Result<Option<Retirement>> {
    let row = conn
        .query_row_cached(
            "SELECT order_id, destroy_after, admins, retired_at, shares_destroyed_at
             FROM key_retirements WHERE key_id = ?1",
            [key_id.as_str()],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((order_id, destroy_after, admins, retired_at, destroyed_at)) = row else {
        return Ok(None);
    };
    Ok(Some(Retirement {
        key_id: key_id.clone(),
        order_id: order_id
            .try_into()
            .map_err(|_| corrupt("retirement order id"))?,
        destroy_after: destroy_after as u64,
        admins: Retirement::admins_from_text(&admins),
        accepted_at: retired_at as u64,
        destroyed_at: destroyed_at.map(|t| t as u64),
    }))
}

fn load_key(conn: &Connection, key_id: &KeyId) -> Result<Option<KeyRecord>> {
    let row = conn
        .query_row_cached(
            "SELECT threshold, group_public_key, public_key_package, created_at, kind FROM keys WHERE key_id = ?1",
            [key_id.as_str()],
            |r| {
                Ok((
                    r.get::<_, u16>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((threshold, group_public_key, public_key_package, created_at, kind)) = row else {
        return Ok(None);
    };
    let kind = ringi_frost::KeyKind::parse(&kind).map_err(|_| corrupt("key kind"))?;
    let signers = conn
        .prepare_cached(
            "SELECT signer_name, identifier FROM key_signers WHERE key_id = ?1 ORDER BY identifier",
        )?
        .query_map([key_id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Some(KeyRecord {
        key_id: key_id.clone(),
        kind,
        threshold,
        signers,
        group_public_key,
        public_key_package,
        created_at,
    }))
}

impl RequestStore for SqliteStore {
    fn writer(&self) -> Option<&StoreWriter> {
        Some(&self.jobs)
    }

    fn insert_request(
        &self,
        new: &NewRequest,
        daily_volume: Option<u128>,
        now: u64,
    ) -> Result<Inserted> {
        let request = &new.request;
        self.write(|tx| {
            let known: Option<(Vec<u8>, Vec<u8>)> = tx
                .query_row_cached(
                    "SELECT content_hash, request_id FROM idempotency_keys WHERE requester = ?1 AND idempotency_key = ?2",
                    params![request.requester, new.idempotency_key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((hash, id)) = known {
                if hash != new.content_hash {
                    return Err(Error::IdempotencyConflict {
                        requester: request.requester.clone(),
                        idempotency_key: new.idempotency_key.clone(),
                    });
                }
                let id = id.try_into().map_err(|_| corrupt("request id"))?;
                return Ok(Inserted::Existing(id));
            }
            let key_id = request.key_id.as_str();
            let last = last_totals(tx, key_id)?;
            let usage = running_totals::usage(
                &mut Requests(tx),
                key_id,
                &new.limits,
                now,
                last.map(|(t, _)| t),
            )?;
            check(&new.limits, new.counted_amount, usage, daily_volume).map_err(|cap| {
                Error::CapExceeded {
                    key: request.key_id.clone(),
                    cap,
                }
            })?;
            let id = insert_request_row(tx, new, last, now)?;
            tx.execute_cached(
                "INSERT INTO idempotency_keys (requester, idempotency_key, content_hash, request_id) VALUES (?1, ?2, ?3, ?4)",
                params![request.requester, new.idempotency_key, &new.content_hash[..], &id[..]],
            )?;
            Ok(Inserted::Created(id))
        })
    }

    fn record_decision_with(
        &self,
        id: &RequestId,
        decide: &mut crate::request_store::Decision<'_>,
        now: u64,
    ) -> Result<RequestRecord> {
        self.write(|tx| {
            let current = load_request(tx, id)?.ok_or(Missing::Request(*id))?;
            let (approval, transition) = decide(&current)?;
            let (approval, transition) = (&approval, transition.as_ref());
            if let Some(t) = transition
                && t.from() != State::PendingApproval
            {
                return Err(Error::IllegalTransition(TransitionError {
                    from: State::PendingApproval,
                    event: t.event().name(),
                }));
            }
            check_state(tx, id, State::PendingApproval)?;
            let key = approval.approver.to_sec1();
            // A decision of this approver still valid at `now` stands; one
            // that expired (an approval renewed) is replaced.
            let earlier: Option<i64> = tx
                .query_row_cached(
                    "SELECT expires_at FROM approvals WHERE req = (SELECT req FROM requests WHERE request_id = ?1) AND approver_key = ?2",
                    params![&id[..], key],
                    |r| r.get(0),
                )
                .optional()?;
            match earlier {
                Some(expires_at) if expires_at as u64 > now => {
                    return Err(Error::DuplicateDecision {
                        request: *id,
                        approver: approval.approver.to_text(),
                    });
                }
                Some(_) => {
                    tx.execute_cached(
                        "DELETE FROM approvals WHERE req = (SELECT req FROM requests WHERE request_id = ?1) AND approver_key = ?2",
                        params![&id[..], key],
                    )?;
                }
                None => {}
            }
            let s = &approval.statement;
            tx.execute_cached(
                "INSERT INTO approvals (req, approver_key, department, decision, reason, issued_at, expires_at,
                                        content_digest, signature, received_at)
                 VALUES ((SELECT req FROM requests WHERE request_id = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    &id[..],
                    key,
                    s.department,
                    s.decision.as_str(),
                    s.reason,
                    s.issued_at as i64,
                    s.expires_at as i64,
                    &s.content_digest[..],
                    approval.signature,
                    now as i64,
                ],
            )?;
            if let Some(t) = transition {
                apply(tx, id, t, now)?;
            }
            // As written, without reading it again (the contract tests
            // hold the two equal).
            Ok(current.with_decision(approval.clone(), transition, now))
        })
    }

    fn transition(&self, id: &RequestId, transition: &Transition, now: u64) -> Result<()> {
        self.write(|tx| apply(tx, id, transition, now))
    }

    fn request(&self, id: &RequestId) -> Result<RequestRecord> {
        self.read(|tx| load_request(tx, id))?
            .ok_or_else(|| Missing::Request(*id).into())
    }

    fn list_requests(
        &self,
        filter: &ListFilter<'_>,
    ) -> Result<(Vec<RequestRecord>, Option<Position>)> {
        let page_size = filter.page_size.clamp(1, LIST_LIMIT);
        let (after_time, after_id) = match &filter.after {
            Some(p) => (p.created_at as i64, p.request_id.to_vec()),
            None => (i64::MAX, vec![0xff; 33]),
        };
        // The key set as ",k1,k2,": a key id never holds a comma
        // (`[A-Za-z0-9._-]`), so `,key_id,` is found only for a member.
        let key_set = filter.key_ids.map(|keys| {
            let mut set = String::from(",");
            for k in keys {
                set.push_str(k.as_str());
                set.push(',');
            }
            set
        });
        self.read(|tx| {
            let rows: Vec<(Vec<u8>, i64)> = tx
                .prepare_cached(
                    "SELECT request_id, created_at FROM requests
                     WHERE (?1 = 0 OR state = 'PENDING_APPROVAL') AND (?2 IS NULL OR key_id = ?2) AND (?3 IS NULL OR state = ?3)
                       AND (created_at, request_id) < (?4, ?5)
                       AND (?7 IS NULL OR instr(?7, ',' || key_id || ',') > 0)
                     ORDER BY created_at DESC, request_id DESC LIMIT ?6",
                )?
                .query_map(
                    params![
                        filter.pending_only as i64,
                        filter.key_id.map(KeyId::as_str),
                        filter.state.map(State::as_str),
                        after_time,
                        after_id,
                        page_size as i64,
                        key_set
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect::<Result<_, _>>()?;
            let next = (rows.len() == page_size)
                .then(|| rows.last())
                .flatten()
                .and_then(|(id, t)| {
                    Some(Position {
                        created_at: *t as u64,
                        request_id: <RequestId>::try_from(id.as_slice()).ok()?,
                    })
                });
            let mut records = Vec::with_capacity(rows.len());
            for (id, _) in &rows {
                let id = <RequestId>::try_from(id.as_slice()).map_err(|_| corrupt("request id"))?;
                records.extend(load_request(tx, &id)?);
            }
            Ok((records, next))
        })
    }

    fn claim_signing(&self, id: &RequestId, claim: ClaimRequest<'_>) -> Result<SigningClaim> {
        self.write(|tx| claim_in(tx, id, &claim).map(|(claim, _)| claim))
    }

    fn record_signing_plan(&self, id: &RequestId, fence: u64, plan: &SigningPlan) -> Result<()> {
        self.write(|tx| {
            check_claim(tx, id, fence)?;
            insert_plan(tx, id, plan)
        })
    }

    fn claim_signing_with_plan(
        &self,
        id: &RequestId,
        claim: ClaimRequest<'_>,
        plan: &SigningPlan,
    ) -> Result<PlannedClaim> {
        self.write(|tx| {
            let (claim, current) = claim_in(tx, id, &claim)?;
            let planned = claim.takes_first_plan(current);
            if planned {
                insert_plan(tx, id, plan)?;
            }
            Ok(PlannedClaim { claim, planned })
        })
    }

    fn finish_signing(
        &self,
        id: &RequestId,
        fence: u64,
        transition: &Transition,
        now: u64,
    ) -> Result<()> {
        self.write(|tx| {
            check_claim(tx, id, fence)?;
            apply(tx, id, transition, now)?;
            if transition.to() == State::Signed {
                tx.execute_cached(
                    "DELETE FROM signing_plans WHERE req = (SELECT req FROM requests WHERE request_id = ?1)",
                    [&id[..]],
                )?;
            }
            Ok(())
        })
    }

    fn retry_failed(
        &self,
        id: &RequestId,
        transition: &Transition,
        limits: &Limits,
        daily_volume: Option<u128>,
        now: u64,
    ) -> Result<()> {
        self.write(|tx| {
            check_state(tx, id, State::Failed)?;
            let (key_id, counted, created_at): (String, String, i64) = tx.query_row_cached(
                "SELECT key_id, counted_amount, created_at FROM requests WHERE request_id = ?1",
                [&id[..]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let counted: u128 = counted.parse().map_err(|_| corrupt("amount"))?;
            // Counted as at submission: the window ending when it was made.
            let last = last_totals(tx, &key_id)?.map(|(t, _)| t);
            let usage =
                running_totals::usage(&mut Requests(tx), &key_id, limits, created_at as u64, last)?;
            let key = KeyId::parse(&key_id).map_err(|_| corrupt("key id"))?;
            check(limits, counted, usage, daily_volume)
                .map_err(|cap| Error::CapExceeded { key, cap })?;
            apply(tx, id, transition, now)
        })
    }

    fn changed_since(&self, since: u64) -> Result<Vec<RequestId>> {
        self.read(|tx| {
            request_ids(
                tx,
                "SELECT r.request_id FROM transitions t JOIN requests r ON r.req = t.req WHERE t.at >= ?1
                 UNION SELECT r.request_id FROM approvals a JOIN requests r ON r.req = a.req
                 WHERE a.received_at >= ?1",
                [since as i64],
            )
        })
    }

    fn live_claims(&self, now: u64) -> Result<Vec<(RequestId, String)>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT r.request_id, c.owner FROM signing_claims c
                 JOIN requests r ON r.req = c.req
                 WHERE r.state = 'SIGNING' AND c.lease_until > ?1",
            )?;
            let rows = stmt
                .query_map([now as i64], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get(1)?)))?
                .map(|row| {
                    let (id, owner) = row?;
                    Ok((id.try_into().map_err(|_| corrupt("request id"))?, owner))
                })
                .collect::<Result<Vec<(RequestId, String)>>>()?;
            Ok(rows)
        })
    }

    fn requests_in(&self, states: &[State]) -> Result<Vec<RequestId>> {
        self.read(|tx| {
            let mut ids = Vec::new();
            for state in states {
                ids.extend(request_ids(
                    tx,
                    "SELECT request_id FROM requests WHERE state = ?1",
                    [state.as_str()],
                )?);
            }
            Ok(ids)
        })
    }

    fn waiting_due(&self, now: u64) -> Result<Vec<RequestId>> {
        self.read(|tx| {
            request_ids(
                tx,
                "SELECT request_id FROM requests
                 WHERE state IN ('PENDING_APPROVAL', 'APPROVED') AND expires_at <= ?1",
                [now as i64],
            )
        })
    }
}

/// The request ids `sql` selects (its first column) with `params`.
fn request_ids<P: rusqlite::Params>(
    tx: &Connection,
    sql: &str,
    params: P,
) -> Result<Vec<RequestId>> {
    tx.prepare_cached(sql)?
        .query_map(params, |r| r.get::<_, Vec<u8>>(0))?
        .map(|id| id?.try_into().map_err(|_| corrupt("request id")))
        .collect()
}

/// The `requests` table, as the window caps read it
/// ([`running_totals::usage`]).
struct Requests<'c>(&'c Connection);

impl running_totals::Reads for Requests<'_> {
    type Error = Error;

    fn totals_through(&mut self, key_id: &str, through: i64) -> Result<Option<(Usage, i64)>> {
        let row = self
            .0
            .query_row_cached(
                "SELECT running_amount, running_count, counted_at FROM requests
                 WHERE key_id = ?1 AND counted_at <= ?2
                 ORDER BY counted_at DESC, running_count DESC LIMIT 1",
                params![key_id, through],
                |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        row.map(|(amount, count, at)| {
            let totals =
                Usage::from_stored(&amount, count).ok_or_else(|| corrupt("running totals"))?;
            Ok((totals, at))
        })
        .transpose()
    }

    fn sum_after(&mut self, key_id: &str, since: i64, which: Counted) -> Result<Usage> {
        let sql = match which {
            Counted::Live => {
                "SELECT counted_amount FROM requests WHERE key_id = ?1 AND counted_at > ?2
                 AND state NOT IN ('REJECTED', 'EXPIRED', 'FAILED')"
            }
            Counted::Ended => {
                "SELECT counted_amount FROM requests WHERE key_id = ?1 AND counted_at > ?2
                 AND state IN ('REJECTED', 'EXPIRED', 'FAILED')"
            }
        };
        let mut sum = Usage::default();
        let mut stmt = self.0.prepare_cached(sql)?;
        for amount in stmt.query_map(params![key_id, since], |r| r.get::<_, String>(0))? {
            sum.add(amount?.parse().map_err(|_| corrupt("amount"))?);
        }
        Ok(sum)
    }
}

/// The key's running totals through its last request, and when that was
/// counted.
fn last_totals(tx: &Connection, key_id: &str) -> Result<Option<(Usage, i64)>> {
    Requests(tx).totals_through(key_id, i64::MAX)
}

/// Writes `new`'s row, counted after `last` (the key's running totals
/// through its last request, and when that was counted).
fn insert_request_row(
    tx: &Connection,
    new: &NewRequest,
    last: Option<(Usage, i64)>,
    now: u64,
) -> Result<RequestId> {
    let request = &new.request;
    let id = request.id();
    let exists: Option<i64> = tx
        .query_row_cached(
            "SELECT 1 FROM requests WHERE request_id = ?1",
            [&id[..]],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        return Err(Error::RequestExists(id));
    }
    let (counted_at, totals) =
        running_totals::counted_after(last, request.created_at, new.counted_amount);
    let m = &request.metadata;
    tx.execute_cached(
        "INSERT INTO requests (request_id, key_id, message, asset, amount, destination, memo, requester,
                               created_at, expires_at, policy_hash, signers, state, state_reason,
                               psbt, counted_amount, nonce, counted_at, running_amount, running_count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, '', ?14, ?15, ?16, ?17, ?18, ?19)",
        params![
            &id[..],
            request.key_id.as_str(),
            request.message,
            m.asset,
            m.amount.to_string(),
            m.destination,
            m.memo,
            request.requester,
            request.created_at as i64,
            request.expires_at as i64,
            &request.policy_hash[..],
            new.signers.join(","),
            State::PendingApproval.as_str(),
            request.psbt,
            new.counted_amount.to_string(),
            request.nonce,
            counted_at,
            totals.amount.to_string(),
            totals.requests as i64,
        ],
    )?;
    insert_history(tx, &id, "", State::PendingApproval, "submitted", now)?;
    Ok(id)
}

/// The request's state, or NOT_FOUND.
fn state_of(tx: &Connection, id: &RequestId) -> Result<State> {
    let state: Option<String> = tx
        .query_row_cached(
            "SELECT state FROM requests WHERE request_id = ?1",
            [&id[..]],
            |r| r.get(0),
        )
        .optional()?;
    let state = state.ok_or(Missing::Request(*id))?;
    State::parse(&state).ok_or_else(|| corrupt("state"))
}

/// How many history records request `id` has.
fn transition_count(tx: &Connection, id: &RequestId) -> Result<usize> {
    let n: i64 = tx.query_row_cached(
        "SELECT COUNT(*) FROM transitions WHERE req = (SELECT req FROM requests WHERE request_id = ?1)",
        [&id[..]],
        |r| r.get(0),
    )?;
    usize::try_from(n).map_err(|_| corrupt("transition count"))
}

fn check_state(tx: &Connection, id: &RequestId, expected: State) -> Result<()> {
    match state_of(tx, id)? {
        actual if actual == expected => Ok(()),
        actual => Err(Error::StateConflict {
            request: *id,
            expected,
            actual,
        }),
    }
}

/// Applies `t` only if the request is still in `t.from()`. A change to
/// SIGNED carries a signed transaction exactly when the request is a PSBT
/// request, else nothing is written.
fn apply(tx: &Connection, id: &RequestId, t: &Transition, now: u64) -> Result<()> {
    let reason = t.reason();
    let signed = t.signed_transaction();
    if t.to() == State::Signed {
        let is_psbt: Option<bool> = tx
            .query_row_cached(
                "SELECT psbt IS NOT NULL FROM requests WHERE request_id = ?1",
                [&id[..]],
                |r| r.get(0),
            )
            .optional()?;
        if is_psbt.is_some_and(|p| p != signed.is_some()) {
            return Err(Error::Internal(format!(
                "request {}: a PSBT request is SIGNED with its signed transaction, any other without one",
                hex::encode(id)
            )));
        }
    }
    let changed = tx.execute_cached(
        "UPDATE requests SET state = ?2, state_reason = ?3, signature = ?4, signed_psbt = ?6, signed_tx = ?7
         WHERE request_id = ?1 AND state = ?5",
        params![
            &id[..],
            t.to().as_str(),
            reason,
            t.signature(),
            t.from().as_str(),
            signed.map(|s| &s.psbt),
            signed.map(|s| &s.tx),
        ],
    )?;
    if changed != 1 {
        // Names what the request is instead (or that it does not exist).
        check_state(tx, id, t.from())?;
        return Err(Error::Store(format!(
            "request {} was not updated",
            hex::encode(id)
        )));
    }
    insert_history(tx, id, t.from().as_str(), t.to(), &reason, now)
}

/// Refuses a write of a run whose claim `fence` no longer holds the
/// request (a later claim took it over).
/// The claim of [`RequestStore::claim_signing`], inside a write, and
/// whether the record it returns was built from `claim.known` (current).
fn claim_in(
    tx: &Connection,
    id: &RequestId,
    claim: &ClaimRequest<'_>,
) -> Result<(SigningClaim, bool)> {
    let held: Option<(i64, String, i64)> = tx
        .query_row_cached(
            "SELECT fence, owner, lease_until FROM signing_claims WHERE req = (SELECT req FROM requests WHERE request_id = ?1)",
            [&id[..]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let state = state_of(tx, id)?;
    // Counted before the claim adds its own history record.
    let transitions = match claim.known {
        Some(_) => transition_count(tx, id)?,
        None => 0,
    };
    let (fence, started) = match state {
        State::Approved => {
            let started = next(State::Approved, Event::SigningStarted)?;
            apply(tx, id, &started, claim.now)?;
            (
                held.map_or(1, |(fence, ..)| fence as u64 + 1),
                Some(started),
            )
        }
        State::Signing => match held {
            Some((fence, owner, _)) if owner == claim.owner => (fence as u64, None),
            Some((_, owner, until)) if !claim.takeover && until as u64 > claim.now => {
                return Err(Error::SigningClaimed {
                    request: *id,
                    owner,
                    until: until as u64,
                });
            }
            Some((fence, ..)) => (fence as u64 + 1, None),
            // SIGNING from before claims existed (schema < 7).
            None => (1, None),
        },
        actual => {
            return Err(Error::StateConflict {
                request: *id,
                expected: State::Approved,
                actual,
            });
        }
    };
    let lease_until = claim.now.saturating_add(claim.lease_secs);
    tx.execute_cached(
        "INSERT INTO signing_claims (req, fence, owner, lease_until) VALUES ((SELECT req FROM requests WHERE request_id = ?1), ?2, ?3, ?4)
             ON CONFLICT (req) DO UPDATE SET fence = ?2, owner = ?3, lease_until = ?4",
        params![&id[..], fence as i64, claim.owner, lease_until as i64],
    )?;
    let mut stmt = tx.prepare_cached(
        "SELECT input, package, signers FROM signing_plans
             WHERE req = (SELECT req FROM requests WHERE request_id = ?1) ORDER BY input, seq",
    )?;
    let plans = stmt
        .query_map([&id[..]], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .map(|row| {
            let (input, package, signers) = row?;
            Ok(SigningPlan {
                input: u32::try_from(input).map_err(|_| corrupt("signing plan"))?,
                package,
                signers: split_names(&signers),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let as_claimed =
        RequestRecord::as_claimed(claim.known, state, transitions, started.as_ref(), claim.now);
    let current = as_claimed.is_some();
    let record = match as_claimed {
        Some(record) => record,
        None => load_request(tx, id)?.ok_or(Missing::Request(*id))?,
    };
    Ok((
        SigningClaim {
            fence,
            started: started.is_some(),
            owner: claim.owner.to_string(),
            lease_until,
            plans,
            record,
        },
        current,
    ))
}

/// Appends `plan` after the input's earlier plans.
fn insert_plan(tx: &Connection, id: &RequestId, plan: &SigningPlan) -> Result<()> {
    let inserted = tx.execute_cached(
        "INSERT INTO signing_plans (req, input, seq, package, signers)
         SELECT r.req, ?2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM signing_plans WHERE req = r.req AND input = ?2), ?3, ?4
         FROM requests r WHERE r.request_id = ?1",
        params![&id[..], plan.input as i64, plan.package, plan.signers.join(",")],
    )?;
    one_row_for(inserted, id)
}

/// A row written for request `id` by an `INSERT ... SELECT` that finds the
/// request by its id: none means there is no such request.
fn one_row_for(inserted: usize, id: &RequestId) -> Result<()> {
    match inserted {
        1 => Ok(()),
        0 => Err(Missing::Request(*id).into()),
        n => Err(Error::Store(format!(
            "request {}: {n} rows written for one",
            hex::encode(id)
        ))),
    }
}

fn check_claim(tx: &Connection, id: &RequestId, fence: u64) -> Result<()> {
    let current: Option<i64> = tx
        .query_row_cached(
            "SELECT fence FROM signing_claims WHERE req = (SELECT req FROM requests WHERE request_id = ?1)",
            [&id[..]],
            |r| r.get(0),
        )
        .optional()?;
    match current {
        Some(f) if f as u64 == fence => Ok(()),
        _ => Err(Error::ClaimLost {
            request: *id,
            fence,
        }),
    }
}

fn split_names(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn insert_history(
    tx: &Connection,
    id: &RequestId,
    from: &str,
    to: State,
    reason: &str,
    now: u64,
) -> Result<()> {
    let inserted = tx.execute_cached(
        "INSERT INTO transitions (req, seq, from_state, to_state, reason, at)
         SELECT r.req, (SELECT COALESCE(MAX(seq), 0) + 1 FROM transitions WHERE req = r.req), ?2, ?3, ?4, ?5
         FROM requests r WHERE r.request_id = ?1",
        params![&id[..], from, to.as_str(), reason, now as i64],
    )?;
    one_row_for(inserted, id)
}

fn load_request(conn: &Connection, id: &RequestId) -> Result<Option<RequestRecord>> {
    let row = conn
        .query_row_cached(
            "SELECT key_id, message, asset, amount, destination, memo, requester, created_at, expires_at,
                    policy_hash, signers, state, state_reason, signature, psbt, signed_psbt, signed_tx,
                    nonce, req
             FROM requests WHERE request_id = ?1",
            [&id[..]],
            |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?),
                    (r.get::<_, String>(4)?, r.get::<_, String>(5)?, r.get::<_, String>(6)?),
                    (r.get::<_, i64>(7)?, r.get::<_, i64>(8)?, r.get::<_, Vec<u8>>(9)?),
                    (r.get::<_, String>(10)?, r.get::<_, String>(11)?, r.get::<_, String>(12)?, r.get::<_, Option<Vec<u8>>>(13)?),
                    (r.get::<_, Option<Vec<u8>>>(14)?, r.get::<_, Option<Vec<u8>>>(15)?, r.get::<_, Option<Vec<u8>>>(16)?),
                    (r.get::<_, Vec<u8>>(17)?, r.get::<_, i64>(18)?),
                ))
            },
        )
        .optional()?;
    let Some((
        (key_id, message, asset, amount),
        (destination, memo, requester),
        (created_at, expires_at, policy_hash),
        (signers, state, state_reason, signature),
        (psbt, signed_psbt, signed_tx),
        (nonce, req),
    )) = row
    else {
        return Ok(None);
    };
    let request = SigningRequest {
        key_id: key_id.try_into().map_err(|_| corrupt("key id"))?,
        message,
        metadata: Metadata {
            asset,
            amount: amount.parse().map_err(|_| corrupt("amount"))?,
            destination,
            memo,
        },
        psbt,
        requester,
        created_at: created_at as u64,
        expires_at: expires_at as u64,
        policy_hash: policy_hash.try_into().map_err(|_| corrupt("policy hash"))?,
        nonce,
    };
    if !matches!(request.nonce.len(), 0 | NONCE_LEN) {
        return Err(corrupt("request nonce"));
    }
    let approvals = conn
        .prepare_cached(
            "SELECT approver_key, department, decision, reason, issued_at, expires_at, content_digest, signature
             FROM approvals WHERE req = ?1 ORDER BY rowid",
        )?
        .query_map([req], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Vec<u8>>(6)?,
                r.get::<_, Vec<u8>>(7)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(
            |(key, department, decision, reason, issued_at, expires_at, digest, signature)| {
                Ok(Approval {
                    statement: Statement {
                        request_id: *id,
                        content_digest: digest.try_into().map_err(|_| corrupt("content digest"))?,
                        key_id: request.key_id.clone(),
                        department,
                        decision: match decision.as_str() {
                            "approve" => Decision::Approve,
                            "reject" => Decision::Reject,
                            "request" => Decision::Request,
                            _ => return Err(corrupt("decision")),
                        },
                        reason,
                        issued_at: issued_at as u64,
                        expires_at: expires_at as u64,
                    },
                    approver: ApproverKey::from_sec1(&key).map_err(|_| corrupt("approver key"))?,
                    signature,
                })
            },
        )
        .collect::<Result<Vec<_>>>()?;
    let transitions = conn
        .prepare_cached(
            "SELECT from_state, to_state, reason, at FROM transitions WHERE req = ?1 ORDER BY seq",
        )?
        .query_map([req], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|(from, to, reason, at)| {
            Ok(TransitionRecord {
                from,
                to: State::parse(&to).ok_or_else(|| corrupt("state"))?,
                reason,
                at: at as u64,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let state = State::parse(&state).ok_or_else(|| corrupt("state"))?;
    if (state == State::Signed) != signature.is_some() {
        return Err(corrupt("signature (SIGNED exactly when one is stored)"));
    }
    let signed_transaction = match (signed_psbt, signed_tx) {
        (Some(psbt), Some(tx)) => Some(SignedTransaction { psbt, tx }),
        (None, None) => None,
        _ => {
            return Err(corrupt(
                "signed transaction (its PSBT without it, or it alone)",
            ));
        }
    };
    if (state == State::Signed && request.psbt.is_some()) != signed_transaction.is_some() {
        return Err(corrupt(
            "signed transaction (a SIGNED PSBT request has one, nothing else does)",
        ));
    }
    Ok(Some(RequestRecord {
        id: *id,
        request,
        signers: signers
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        state,
        state_reason,
        signature,
        signed_transaction,
        approvals,
        transitions,
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ringi_policy::statement::Decision;

    use super::*;
    use crate::request_state::{Event, next};
    use crate::store::contract;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("sub/ringi.sqlite3")).unwrap();
        (dir, store)
    }

    #[test]
    fn key_store_contract() {
        contract::keys(&store().1);
        contract::retirements(&store().1);
    }

    /// A database written before key kinds (schema 3) opens, migrates, and
    /// its keys read as frost-secp256k1; keys of another kind keep theirs.
    #[test]
    fn keys_from_schema_3_are_frost_secp256k1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate_to(&mut conn, 3).unwrap();
            conn.execute_batch(
                "INSERT INTO keys VALUES ('old', 2, x'02', x'01', 1700000000);
                INSERT INTO key_signers VALUES ('old', 'a', 1), ('old', 'b', 2);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let old = store.key(&KeyId::parse("old").unwrap()).unwrap();
        assert_eq!(old.kind, ringi_frost::KeyKind::FrostSecp256k1);
        assert_eq!(
            old.signers,
            vec![("a".to_string(), 1), ("b".to_string(), 2)]
        );
        let mut taproot = contract::key_record("tr");
        taproot.kind = ringi_frost::KeyKind::BitcoinTaproot;
        store.insert_key(&taproot).unwrap();
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.key(&KeyId::parse("tr").unwrap()).unwrap().kind,
            ringi_frost::KeyKind::BitcoinTaproot
        );
    }

    /// A database of schema 4 (before PSBT requests) opens and migrates:
    /// its requests keep what they were, count their declared amounts, and
    /// a SIGNED one reads without a signed transaction.
    #[test]
    fn requests_from_schema_4_count_their_declared_amounts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4.sqlite3");
        let mut r = contract::request();
        // Made before nonces.
        r.nonce.clear();
        let pending = r.id();
        let mut signed_request = r.clone();
        signed_request.message = vec![2; 32];
        let signed = signed_request.id();
        {
            // Schema 4 as `migrate` made it before version 5.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE requests (
                    request_id BLOB PRIMARY KEY, key_id TEXT NOT NULL, message BLOB NOT NULL,
                    asset TEXT NOT NULL, amount TEXT NOT NULL, destination TEXT NOT NULL,
                    memo TEXT NOT NULL, requester TEXT NOT NULL, created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL, policy_hash BLOB NOT NULL, signers TEXT NOT NULL,
                    state TEXT NOT NULL, state_reason TEXT NOT NULL, signature BLOB);
                CREATE TABLE approvals (request_id BLOB NOT NULL, approver_key BLOB NOT NULL,
                    department TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL,
                    issued_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
                    content_digest BLOB NOT NULL, signature BLOB NOT NULL,
                    received_at INTEGER NOT NULL, PRIMARY KEY (request_id, approver_key));
                CREATE TABLE transitions (request_id BLOB NOT NULL, seq INTEGER NOT NULL,
                    from_state TEXT NOT NULL, to_state TEXT NOT NULL, reason TEXT NOT NULL,
                    at INTEGER NOT NULL, PRIMARY KEY (request_id, seq));
                CREATE TABLE idempotency_keys (requester TEXT NOT NULL,
                    idempotency_key TEXT NOT NULL, content_hash BLOB NOT NULL,
                    request_id BLOB NOT NULL, PRIMARY KEY (requester, idempotency_key));
                CREATE TABLE keys (key_id TEXT PRIMARY KEY, threshold INTEGER NOT NULL,
                    group_public_key BLOB NOT NULL, public_key_package BLOB NOT NULL,
                    created_at INTEGER NOT NULL, kind TEXT NOT NULL DEFAULT 'frost-secp256k1');
                CREATE TABLE key_signers (key_id TEXT NOT NULL, signer_name TEXT NOT NULL,
                    identifier INTEGER NOT NULL, PRIMARY KEY (key_id, signer_name));
                PRAGMA user_version = 4;",
            )
            .unwrap();
            for (id, request, state, signature) in [
                (pending, &r, "PENDING_APPROVAL", None),
                (signed, &signed_request, "SIGNED", Some(vec![5u8; 65])),
            ] {
                conn.execute(
                    "INSERT INTO requests VALUES (?1, 'hot-1', ?2, 'BTC', ?3, 'bc1q', 'rebalance',
                     'wallet', 100, 200, ?4, '', ?5, '', ?6)",
                    params![
                        &id[..],
                        request.message,
                        request.metadata.amount.to_string(),
                        &request.policy_hash[..],
                        state,
                        signature
                    ],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        let rec = store.request(&pending).unwrap();
        assert_eq!(rec.request, r);
        assert_eq!(rec.request.psbt, None);
        // Without a nonce, the id it was stored (and approved) under.
        assert!(rec.request.nonce.is_empty());
        assert_eq!(rec.request.id(), pending);
        let version: i64 = store
            .read(|c| Ok(c.pragma_query_value(None, "user_version", |row| row.get(0))?))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let rec = store.request(&signed).unwrap();
        assert_eq!(rec.state, State::Signed);
        assert_eq!(rec.signature, Some(vec![5; 65]));
        assert_eq!(rec.signed_transaction, None);
        let counted: Vec<String> = store
            .read(|c| {
                Ok(c.prepare("SELECT counted_amount FROM requests")?
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<_, _>>()?)
            })
            .unwrap();
        assert_eq!(counted, vec![r.metadata.amount.to_string(); 2]);
    }

    /// A schema-9 file's requests get their keys' running totals when it
    /// opens as schema 10: requests made out of order, of two keys, a
    /// third of them ended unsigned. The usage read from the totals equals
    /// a sum of what was written, for every window start, before and
    /// after the store adds a request made before the key's last.
    #[test]
    fn requests_from_schema_9_get_running_totals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v9.sqlite3");
        let states = [
            "PENDING_APPROVAL",
            "SIGNED",
            "EXPIRED",
            "APPROVED",
            "REJECTED",
            "SIGNING",
            "FAILED",
        ];
        // (key, created_at, amount, live)
        let mut written: Vec<(&str, i64, u128, bool)> = Vec::new();
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate_to(&mut conn, 9).unwrap();
            for i in 0..70u32 {
                let key = if i % 3 == 0 { "k2" } else { "k1" };
                let created_at = 1000 + i64::from(i * 37 % 50);
                let amount = u128::from(i) * 1_000_000_000_000_000_000_007;
                let state = states[i as usize % states.len()];
                conn.execute(
                    "INSERT INTO requests (request_id, key_id, message, asset, amount, destination,
                        memo, requester, created_at, expires_at, policy_hash, signers, state,
                        state_reason, counted_amount, nonce)
                     VALUES (?1, ?2, x'', 'BTC', '0', '', '', 'w', ?3, 9999, x'', '', ?4, '', ?5, x'')",
                    params![&[i as u8; 32][..], key, created_at, state, amount.to_string()],
                )
                .unwrap();
                let live = !matches!(state, "EXPIRED" | "REJECTED" | "FAILED");
                written.push((key, created_at, amount, live));
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        let limits = Limits {
            window_secs: 10_000,
            max_requests_per_window: Some(1),
            ..Limits::default()
        };
        let holds_the_sum = |written: &[(&str, i64, u128, bool)]| {
            store
                .read(|tx| {
                    for key in ["k1", "k2"] {
                        let last = last_totals(tx, key)?.map(|(t, _)| t);
                        for since in 995..1055 {
                            let mut expected = Usage::default();
                            for &(k, at, amount, live) in written {
                                if k == key && at > since && live {
                                    expected.add(amount);
                                }
                            }
                            let now = since as u64 + limits.window_secs;
                            let usage =
                                running_totals::usage(&mut Requests(tx), key, &limits, now, last)?;
                            assert_eq!(usage, expected, "{key} since {since}");
                        }
                    }
                    Ok(())
                })
                .unwrap()
        };
        holds_the_sum(&written);

        // Made before the key's last request: counted at that one's time.
        let mut r = contract::request();
        r.key_id = KeyId::parse("k1").unwrap();
        r.created_at = 1010;
        r.metadata.amount = 5;
        store
            .insert_request(&contract::new_request(r, "late"), None, 1010)
            .unwrap();
        let last_k1 = written.iter().filter(|w| w.0 == "k1").map(|w| w.1).max();
        written.push(("k1", last_k1.unwrap(), 5, true));
        holds_the_sum(&written);
    }

    /// A database of schema 8 (child tables keyed by the request's hash
    /// id) opens as schema 9 (keyed by the request's row number) with
    /// nothing lost: a request's approvals in the order they arrived (not
    /// their keys' order), its history, a live claim with its fence and
    /// plans, the idempotency keys; and the store goes on writing.
    #[test]
    fn history_from_schema_8_is_rekeyed_by_row_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v8.sqlite3");
        let pending = contract::request();
        let mut signing = pending.clone();
        signing.message = vec![2; 32];
        let (pending_id, signing_id) = (pending.id(), signing.id());
        let mut approvals: Vec<Approval> = (0..3)
            .map(|_| contract::approval(&pending, Decision::Approve))
            .collect();
        approvals.sort_by_key(|a| std::cmp::Reverse(a.approver.to_sec1()));
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate_to(&mut conn, 8).unwrap();
            conn.pragma_update(None, "foreign_keys", "ON").unwrap();
            for (id, r, state, key) in [
                (signing_id, &signing, "SIGNING", "k-signing"),
                (pending_id, &pending, "PENDING_APPROVAL", "k-pending"),
            ] {
                conn.execute(
                    "INSERT INTO requests (request_id, key_id, message, asset, amount, destination,
                        memo, requester, created_at, expires_at, policy_hash, signers, state,
                        state_reason, counted_amount, nonce)
                     VALUES (?1, 'hot-1', ?2, 'BTC', ?3, 'bc1q', 'rebalance', 'wallet', 100, 200,
                        ?4, 'a,b', ?5, '', ?3, ?6)",
                    params![
                        &id[..],
                        r.message,
                        r.metadata.amount.to_string(),
                        &r.policy_hash[..],
                        state,
                        r.nonce
                    ],
                )
                .unwrap();
                let new = contract::new_request(r.clone(), key);
                conn.execute(
                    "INSERT INTO idempotency_keys VALUES ('wallet', ?1, ?2, ?3)",
                    params![key, &new.content_hash[..], &id[..]],
                )
                .unwrap();
                conn.execute(
                    "INSERT INTO transitions VALUES (?1, 1, '', 'PENDING_APPROVAL', 'submitted', 100)",
                    [&id[..]],
                )
                .unwrap();
            }
            for (i, a) in approvals.iter().enumerate() {
                let s = &a.statement;
                conn.execute(
                    "INSERT INTO approvals VALUES (?1, ?2, ?3, 'approve', ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        &pending_id[..],
                        a.approver.to_sec1(),
                        s.department,
                        s.reason,
                        s.issued_at as i64,
                        s.expires_at as i64,
                        &s.content_digest[..],
                        a.signature,
                        120 + i as i64
                    ],
                )
                .unwrap();
            }
            conn.execute(
                "INSERT INTO transitions VALUES
                    (?1, 2, 'PENDING_APPROVAL', 'APPROVED', 'quorum', 130),
                    (?1, 3, 'APPROVED', 'SIGNING', '', 140)",
                [&signing_id[..]],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO signing_claims VALUES (?1, 3, 'old', 500)",
                [&signing_id[..]],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO signing_plans VALUES (?1, 0, 1, x'01', 'a,b'), (?1, 0, 2, x'02', 'a,c')",
                [&signing_id[..]],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let version: i64 = store
            .read(|c| Ok(c.pragma_query_value(None, "user_version", |row| row.get(0))?))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let rows: Vec<(i64, Vec<u8>)> = store
            .read(|c| {
                Ok(
                    c.prepare("SELECT req, request_id FROM requests ORDER BY req")?
                        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                        .collect::<Result<_, _>>()?,
                )
            })
            .unwrap();
        assert_eq!(
            rows,
            vec![(1, signing_id.to_vec()), (2, pending_id.to_vec())]
        );

        let rec = store.request(&pending_id).unwrap();
        assert_eq!(rec.request, pending);
        assert_eq!(rec.approvals, approvals);
        let rec = store.request(&signing_id).unwrap();
        assert_eq!(rec.state, State::Signing);
        let history: Vec<(State, u64)> = rec.transitions.iter().map(|t| (t.to, t.at)).collect();
        assert_eq!(
            history,
            vec![
                (State::PendingApproval, 100),
                (State::Approved, 130),
                (State::Signing, 140)
            ]
        );

        assert_eq!(
            store.live_claims(400).unwrap(),
            vec![(signing_id, "old".to_string())]
        );
        let claim = |owner, now| ClaimRequest {
            owner,
            takeover: false,
            now,
            lease_secs: 100,
            known: None,
        };
        match store.claim_signing(&signing_id, claim("new", 450)) {
            Err(Error::SigningClaimed { owner, until, .. }) => {
                assert_eq!((owner.as_str(), until), ("old", 500))
            }
            other => panic!("{other:?}"),
        }
        let resumed = store.claim_signing(&signing_id, claim("old", 450)).unwrap();
        assert_eq!(resumed.fence, 3);
        let plans: Vec<(u32, Vec<u8>, Vec<String>)> = resumed
            .plans
            .iter()
            .map(|p| (p.input, p.package.clone(), p.signers.clone()))
            .collect();
        assert_eq!(
            plans,
            vec![
                (0, vec![1], vec!["a".to_string(), "b".to_string()]),
                (0, vec![2], vec!["a".to_string(), "c".to_string()])
            ]
        );

        match store
            .insert_request(
                &contract::new_request(pending.clone(), "k-pending"),
                None,
                300,
            )
            .unwrap()
        {
            Inserted::Existing(id) => assert_eq!(id, pending_id),
            other => panic!("{other:?}"),
        }
        let mut changed = store.changed_since(0).unwrap();
        changed.sort();
        let mut both = vec![pending_id, signing_id];
        both.sort();
        assert_eq!(changed, both);

        // Written after the migration: a decision that meets the quorum
        // (its approval and history row under the old request's number).
        let fourth = contract::approval(&pending, Decision::Approve);
        let quorum = next(State::PendingApproval, Event::QuorumMet).unwrap();
        store
            .record_decision(&pending_id, &fourth, Some(&quorum), 300)
            .unwrap();
        let rec = store.request(&pending_id).unwrap();
        assert_eq!(rec.approvals.last(), Some(&fourth));
        assert_eq!(rec.approvals.len(), 4);
        assert_eq!(rec.state, State::Approved);
        assert_eq!(rec.transitions.len(), 2);
    }

    /// A schema-8 row that refers to no request (possible only in a
    /// damaged file: schema 8 enforced the reference) stops the migration
    /// before anything is changed, rather than being dropped unnoticed.
    #[test]
    fn an_orphan_row_stops_the_migration_to_schema_9() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v8.sqlite3");
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate_to(&mut conn, 8).unwrap();
            conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
            conn.execute(
                "INSERT INTO transitions VALUES (x'00', 1, '', 'PENDING_APPROVAL', 'submitted', 100)",
                [],
            )
            .unwrap();
        }
        match SqliteStore::open(&path) {
            Err(Error::Corrupt(m)) => assert!(m.contains("1 rows refer to no request"), "{m}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a damaged database migrated"),
        }
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, 8);
        let kept: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM transitions WHERE request_id = x'00'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, 1);
    }

    #[test]
    fn request_store_contract() {
        contract::decisions_and_history(&store().1);
        contract::records_as_written(&store().1);
        contract::one_decision_per_approver(&store().1);
        contract::pages(&store().1);
        contract::idempotency(&store().1);
        contract::compare_and_set(&store().1);
        contract::caps(&store().1);
        contract::window_usage_is_the_sum(&store().1);
        contract::signed_transactions(&store().1);
        contract::signing_claims(&store().1);
        contract::retries(&store().1);
        contract::claims_return_the_record_as_claimed(&store().1);
        contract::claims_with_a_first_plan(&store().1);
        contract::sweep_candidates(&store().1);
    }

    /// Two connections to one file, as two processes would have: the
    /// compare-and-set and the cap count hold without the mutex.
    #[test]
    fn writers_on_separate_connections_are_serialized() {
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| Arc::new(SqliteStore::open(&dir.path().join(name)).unwrap());
        contract::racing_transitions(vec![open("a"), open("a")]);
        contract::racing_caps(vec![open("b"), open("b"), open("b")]);
    }

    #[test]
    fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = SqliteStore::open(&path).unwrap();
        store.insert_key(&contract::key_record("k1")).unwrap();
        let r = contract::request();
        let id = store
            .insert_request(&contract::new_request(r.clone(), "k"), None, 100)
            .unwrap()
            .id();
        let a = contract::approval(&r, Decision::Approve);
        let quorum = next(State::PendingApproval, Event::QuorumMet).unwrap();
        store.record_decision(&id, &a, Some(&quorum), 120).unwrap();
        drop(store);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.key(&KeyId::parse("k1").unwrap()).unwrap(),
            contract::key_record("k1")
        );
        let rec = store.request(&id).unwrap();
        assert_eq!(rec.request, r);
        assert_eq!(rec.state, State::Approved);
        assert_eq!(rec.approvals, vec![a]);
    }

    /// A request's nonce is stored with it and read back; a stored nonce
    /// of another length is a corrupt record, never a request read.
    #[test]
    fn a_request_keeps_its_nonce() {
        let (_dir, store) = store();
        let r = contract::request();
        assert_eq!(r.nonce.len(), NONCE_LEN);
        let id = store
            .insert_request(&contract::new_request(r.clone(), "k"), None, 100)
            .unwrap()
            .id();
        assert_eq!(store.request(&id).unwrap().request.nonce, r.nonce);
        store
            .raw(|c| {
                c.execute(
                    "UPDATE requests SET nonce = x'0102' WHERE request_id = ?1",
                    [&id[..]],
                )
            })
            .unwrap();
        match store.request(&id) {
            Err(Error::Corrupt(m)) => assert!(m.contains("nonce"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_decision_with_a_transition_from_elsewhere_is_refused() {
        let (_dir, store) = store();
        let r = contract::request();
        let id = store
            .insert_request(&contract::new_request(r.clone(), "k"), None, 100)
            .unwrap()
            .id();
        let started = next(State::Approved, Event::SigningStarted).unwrap();
        let a = contract::approval(&r, Decision::Approve);
        assert!(matches!(
            store.record_decision(&id, &a, Some(&started), 120),
            Err(Error::IllegalTransition(_))
        ));
        assert!(store.request(&id).unwrap().approvals.is_empty());
    }
}

/// How many writes per second the store takes from concurrent writers
/// (each an `insert_request`, so each its own durable write), with a commit
/// per write (as before group commit) and with group commit, in the same
/// run (an fsync's cost on a shared disk varies from run to run). Printed,
/// not asserted: `cargo test -p ringi --lib sqlite::bench -- --ignored
/// --nocapture`.
/// The writer thread on a real database: the async side's writes
/// ([`store_writer::write`]).
#[cfg(test)]
mod writer_thread {
    use std::pin::pin;
    use std::sync::mpsc;

    use futures::poll;

    use super::*;
    use crate::store::contract;

    fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ringi.sqlite3")).unwrap();
        (dir, Arc::new(store))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// The `i`th request, under idempotency key `k<i>`.
    fn nth(i: u64) -> NewRequest {
        let mut r = contract::request();
        r.message = i.to_be_bytes().repeat(4);
        contract::new_request(r, &format!("k{i}"))
    }

    fn found(store: &SqliteStore, i: u64) -> bool {
        match store.request(&nth(i).request.id()) {
            Ok(_) => true,
            Err(Error::NotFound(_)) => false,
            Err(e) => panic!("reading request {i}: {e}"),
        }
    }

    /// Jobs queued while a batch is open become the next batch, one
    /// commit for all; each is answered after its commit (a job still in
    /// its batch is neither answered nor visible to readers); a job that
    /// fails or panics is undone alone; a job that reads after it writes
    /// sees the writes of its batch (a second submission with one
    /// idempotency key finds the first, written a moment before in the
    /// same uncommitted batch).
    #[test]
    fn jobs_queued_together_share_one_commit_and_are_answered_after_it() {
        let (_dir, store) = store();
        let requests: Arc<dyn RequestStore> = store.clone();
        let (at_gate, reached) = mpsc::channel();
        let (open_gate, gate) = mpsc::channel::<()>();
        runtime().block_on(async {
            let s = store.clone();
            let mut first = pin!(store_writer::write(&requests, move || {
                let inserted = s.insert_request(&nth(0), None, 100)?;
                at_gate.send(()).unwrap();
                gate.recv().unwrap();
                Ok(inserted)
            }));
            assert!(poll!(first.as_mut()).is_pending());
            reached.recv().unwrap();
            // Written in the open batch, not committed: not answered, and
            // not visible to a reader.
            assert!(!found(&store, 0));
            assert!(poll!(first.as_mut()).is_pending());
            let before = store.writer.stats();

            let mut kept = Vec::new();
            for i in 1..=8 {
                let s = store.clone();
                let mut job = Box::pin(store_writer::write(&requests, move || {
                    s.insert_request(&nth(i), None, 100)
                }));
                assert!(poll!(job.as_mut()).is_pending());
                kept.push(job);
            }
            let s = store.clone();
            let mut refused = pin!(store_writer::write(&requests, move || {
                s.insert_request(&nth(100), None, 100)?;
                Err::<(), _>(Error::Internal("refused after writing".into()))
            }));
            assert!(poll!(refused.as_mut()).is_pending());
            let s = store.clone();
            let mut panicking = pin!(store_writer::write(&requests, move || {
                s.insert_request(&nth(101), None, 100)?;
                if s.id() != 0 {
                    panic!("a bug in a store call");
                }
                Ok(())
            }));
            assert!(poll!(panicking.as_mut()).is_pending());
            let s = store.clone();
            let mut written = pin!(store_writer::write(&requests, move || {
                s.insert_request(&nth(50), None, 100)
            }));
            assert!(poll!(written.as_mut()).is_pending());
            let s = store.clone();
            let mut again = pin!(store_writer::write(&requests, move || {
                match s.insert_request(&nth(50), None, 100)? {
                    Inserted::Existing(id) => s.request(&id),
                    Inserted::Created(_) => Err(Error::Internal("created twice".into())),
                }
            }));
            assert!(poll!(again.as_mut()).is_pending());

            open_gate.send(()).unwrap();
            assert!(matches!(first.await, Ok(Inserted::Created(_))));
            assert!(found(&store, 0), "answered, so committed");
            for job in kept {
                assert!(matches!(job.await, Ok(Inserted::Created(_))));
            }
            assert!(
                matches!(refused.await, Err(Error::Internal(m)) if m == "refused after writing")
            );
            assert!(
                matches!(panicking.await, Err(Error::Internal(m)) if m.contains("a bug in a store call"))
            );
            assert!(matches!(written.await, Ok(Inserted::Created(_))));
            let again = again.await.expect("the batch's own write is read back");
            assert_eq!(again.id, nth(50).request.id());

            let after = store.writer.stats();
            assert_eq!(after.writes - before.writes, 12, "the queued jobs");
            assert_eq!(
                after.commits - before.commits,
                2,
                "the first job's batch, then one for the twelve queued behind it"
            );
        });
        for i in (0..=8).chain([50]) {
            assert!(found(&store, i), "request {i}");
        }
        assert!(!found(&store, 100), "a refused job keeps nothing");
        assert!(!found(&store, 101), "a panicking job keeps nothing");
    }

    /// Every contract of the stores holds for calls made in a job: writes
    /// in savepoints of the job's batch, reads inside it. Each contract
    /// runs as one job (its many calls in one batch).
    #[test]
    fn the_contracts_hold_inside_the_writer_thread() {
        type Contract = fn(&SqliteStore);
        let contracts: [(&str, Contract); 16] = [
            ("keys", |s| contract::keys(s)),
            ("retirements", |s| contract::retirements(s)),
            ("decisions_and_history", |s| {
                contract::decisions_and_history(s)
            }),
            ("records_as_written", |s| contract::records_as_written(s)),
            ("one_decision_per_approver", |s| {
                contract::one_decision_per_approver(s)
            }),
            ("pages", |s| contract::pages(s)),
            ("idempotency", |s| contract::idempotency(s)),
            ("compare_and_set", |s| contract::compare_and_set(s)),
            ("caps", |s| contract::caps(s)),
            ("window_usage_is_the_sum", |s| {
                contract::window_usage_is_the_sum(s)
            }),
            ("signed_transactions", |s| contract::signed_transactions(s)),
            ("signing_claims", |s| contract::signing_claims(s)),
            ("retries", |s| contract::retries(s)),
            ("claims_return_the_record_as_claimed", |s| {
                contract::claims_return_the_record_as_claimed(s)
            }),
            ("claims_with_a_first_plan", |s| {
                contract::claims_with_a_first_plan(s)
            }),
            ("sweep_candidates", |s| contract::sweep_candidates(s)),
        ];
        let runtime = runtime();
        for (name, check) in contracts {
            let (_dir, store) = store();
            let requests: Arc<dyn RequestStore> = store.clone();
            let s = store.clone();
            let ran = runtime.block_on(store_writer::write(&requests, move || {
                assert!(s.in_batch(), "on the writer thread, in a batch");
                check(&s);
                Ok(())
            }));
            if let Err(e) = ran {
                panic!("contract {name} inside a job: {e}");
            }
        }
    }

    /// Writers on blocking threads (the sync calls) and jobs of the writer
    /// thread on one store at once: they take turns in batches, nothing
    /// is lost or refused.
    #[test]
    fn blocking_writers_and_jobs_share_the_store() {
        let (_dir, store) = store();
        let requests: Arc<dyn RequestStore> = store.clone();
        std::thread::scope(|scope| {
            for w in 0..4u64 {
                let store = store.clone();
                scope.spawn(move || {
                    for i in 0..50 {
                        store.insert_request(&nth(w * 1000 + i), None, 100).unwrap();
                    }
                });
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap();
            runtime.block_on(async {
                let jobs = (0..200u64).map(|i| {
                    let s = store.clone();
                    let requests = requests.clone();
                    tokio::spawn(async move {
                        store_writer::write(&requests, move || {
                            s.insert_request(&nth(100_000 + i), None, 100)
                        })
                        .await
                    })
                });
                for job in futures::future::join_all(jobs).await {
                    assert!(matches!(job.unwrap(), Ok(Inserted::Created(_))));
                }
            });
        });
        for i in (0..4u64).flat_map(|w| (0..50).map(move |i| w * 1000 + i)) {
            assert!(found(&store, i), "blocking write {i}");
        }
        for i in 0..200 {
            assert!(found(&store, 100_000 + i), "job {i}");
        }
    }
}

#[cfg(test)]
mod bench {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::store::contract;

    /// `n` inserts from `writers` threads, at most `max_batch` per commit;
    /// (writes per second, writes per commit).
    fn inserts(writers: usize, n: usize, max_batch: usize) -> (f64, f64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.sqlite3");
        let store = Arc::new(SqliteStore::open_batching(&path, max_batch).unwrap());
        let start = Instant::now();
        std::thread::scope(|scope| {
            for w in 0..writers {
                let store = store.clone();
                scope.spawn(move || {
                    for i in (w..n).step_by(writers) {
                        let mut r = contract::request();
                        r.message = (i as u64).to_be_bytes().repeat(4);
                        let new = contract::new_request(r, &format!("k{i}"));
                        assert!(matches!(
                            store.insert_request(&new, None, 100),
                            Ok(Inserted::Created(_))
                        ));
                    }
                });
            }
        });
        let secs = start.elapsed().as_secs_f64();
        let stats = store.writer.stats();
        (
            n as f64 / secs,
            stats.writes as f64 / stats.commits.max(1) as f64,
        )
    }

    /// How long the first start of this ringi takes on a schema-8 file of
    /// `RINGI_BENCH_REQUESTS` requests (default 100,000), each with two
    /// approvals, four history records, a claim and an idempotency key,
    /// step by step: schema 9 rewrites all of them, schema 10 gives every
    /// request its running totals (docs/operations.md).
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn migration() {
        let n: i64 = std::env::var("RINGI_BENCH_REQUESTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v8.sqlite3");
        {
            let mut conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            migrate_to(&mut conn, 8).unwrap();
            conn.execute_batch("BEGIN").unwrap();
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                 INSERT INTO requests (request_id, key_id, message, asset, amount, destination,
                    memo, requester, created_at, expires_at, policy_hash, signers, state,
                    state_reason, signature, counted_amount, nonce)
                 SELECT randomblob(32), 'hot-1', randomblob(32), 'BTC', '100000', 'bc1qdestination',
                    'memo', 'wallet-service', 1700000000 + i, 1700003600 + i, randomblob(32),
                    'signer-1,signer-2,signer-3', 'SIGNED', '', randomblob(64), '100000',
                    randomblob(16) FROM n",
                [n],
            )
            .unwrap();
            conn.execute_batch(
                "INSERT INTO approvals SELECT request_id, randomblob(33), 'treasury', 'approve', '',
                    created_at, created_at + 600, randomblob(32), randomblob(72), created_at
                    FROM requests;
                 INSERT INTO approvals SELECT request_id, randomblob(33), 'compliance', 'approve',
                    '', created_at, created_at + 600, randomblob(32), randomblob(72), created_at
                    FROM requests;
                 INSERT INTO transitions SELECT request_id, s.seq, '', 'SIGNED', '', created_at
                    FROM requests, (SELECT 1 AS seq UNION SELECT 2 UNION SELECT 3 UNION SELECT 4) s;
                 INSERT INTO signing_claims SELECT request_id, 1, 'coordinator', created_at + 10
                    FROM requests;
                 INSERT INTO idempotency_keys SELECT requester, hex(randomblob(16)),
                    randomblob(32), request_id FROM requests;
                 COMMIT;",
            )
            .unwrap();
            conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
                .unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / 1048576.0;
        let wal_path = path.with_extension("sqlite3-wal");
        let before = size(&path);
        let start = Instant::now();
        let mut conn = Connection::open(&path).unwrap();
        migrate_to(&mut conn, 9).unwrap();
        let secs = start.elapsed().as_secs_f64();
        // The WAL holds the migration's pages until the last connection
        // closes: the extra disk it needs.
        let wal = size(&wal_path);
        drop(conn);
        let after = size(&path);
        println!(
            "schema 8 -> 9, {n} requests: {secs:.2} s; file {before:.1} MiB before, {after:.1} MiB after; WAL {wal:.1} MiB at the end"
        );
        let start = Instant::now();
        let store = SqliteStore::open(&path).unwrap();
        let secs = start.elapsed().as_secs_f64();
        let wal = size(&wal_path);
        drop(store);
        println!(
            "schema 9 -> 10, {n} requests: {secs:.2} s; file {after:.1} MiB before, {:.1} MiB after; WAL {wal:.1} MiB at the end",
            size(&path)
        );
    }

    #[test]
    #[ignore = "a measurement, run by hand"]
    fn concurrent_inserts() {
        for writers in [1, 4, 16, 64] {
            let (before, _) = inserts(writers, 2000, 1);
            let (after, per_commit) = inserts(writers, 2000, DEFAULT_MAX_BATCH);
            println!(
                "sqlite store, 2000 inserts, {writers:>2} writers: a commit each {before:>5.0}/s; grouped {after:>5.0}/s ({per_commit:.1} per commit)"
            );
        }
    }
}

/// `kill -9` in the middle of group commits loses nothing acknowledged: a
/// child process (this test binary, running [`kill9::acknowledging_writer`])
/// inserts from 32 threads, or 32 tasks through the writer thread, or
/// both, and prints each insert it got `Ok` for; the test kills it with
/// SIGKILL while batches are in flight, reopens the database and finds
/// every acknowledged request. Three rounds on one file (threads, jobs,
/// both), each opening what the kill before left.
#[cfg(test)]
mod kill9 {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::store::contract;

    const DB: &str = "RINGI_TEST_KILL9_DB";
    const FROM: &str = "RINGI_TEST_KILL9_FROM";
    /// Who writes: `threads` (blocking calls), `jobs` (the writer thread)
    /// or `both`.
    const VIA: &str = "RINGI_TEST_KILL9_VIA";
    const ROUNDS: [&str; 3] = ["threads", "jobs", "both"];

    /// The `i`th request the writer inserts.
    fn nth(i: u64) -> NewRequest {
        let mut r = contract::request();
        r.message = i.to_be_bytes().repeat(4);
        contract::new_request(r, &format!("k{i}"))
    }

    /// The child: inserts until killed (or 200,000 inserts), printing
    /// `acked <i>` after each `Ok`. Does nothing unless run by
    /// [`acknowledged_writes_survive_kill_9`].
    #[test]
    #[ignore = "the child process of acknowledged_writes_survive_kill_9"]
    fn acknowledging_writer() {
        let (Ok(path), Ok(from), Ok(via)) =
            (std::env::var(DB), std::env::var(FROM), std::env::var(VIA))
        else {
            return;
        };
        let store = Arc::new(SqliteStore::open(Path::new(&path)).unwrap());
        let next = Arc::new(AtomicU64::new(from.parse().unwrap()));
        let end = next.load(Ordering::SeqCst) + 200_000;
        let acked = |i: u64| {
            let mut out = std::io::stdout().lock();
            writeln!(out, "acked {i}").unwrap();
            out.flush().unwrap();
        };
        let (threads, jobs) = match via.as_str() {
            "threads" => (32, 0),
            "jobs" => (0, 32),
            _ => (16, 16),
        };
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let (store, next) = (store.clone(), next.clone());
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= end {
                            return;
                        }
                        store.insert_request(&nth(i), None, 100).unwrap();
                        acked(i);
                    }
                });
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap();
            let requests: Arc<dyn RequestStore> = store.clone();
            runtime.block_on(futures::future::join_all((0..jobs).map(|_| {
                let (requests, next) = (requests.clone(), next.clone());
                runtime.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= end {
                            return;
                        }
                        let store = requests.clone();
                        crate::store_writer::write(&requests, move || {
                            store.insert_request(&nth(i), None, 100)
                        })
                        .await
                        .unwrap();
                        acked(i);
                    }
                })
            })));
        });
    }

    #[test]
    fn acknowledged_writes_survive_kill_9() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringi.sqlite3");
        let mut total = 0;
        for (round, via) in (0u64..).zip(ROUNDS) {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "sqlite::kill9::acknowledging_writer",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                ])
                .env(DB, &path)
                .env(FROM, (round * 1_000_000).to_string())
                .env(VIA, via)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut acked = Vec::new();
            // Killed after 300 acknowledgements, with writers in flight.
            while acked.len() < 300 {
                let line = lines.next().expect("the writer ended early").unwrap();
                if let Some(i) = line.strip_prefix("acked ") {
                    acked.push(i.parse::<u64>().unwrap());
                }
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            // What it acknowledged before dying is still in the pipe.
            for line in lines {
                if let Some(i) = line.unwrap().strip_prefix("acked ") {
                    acked.push(i.parse().unwrap());
                }
            }
            let store = SqliteStore::open(&path).unwrap();
            for &i in &acked {
                let id = nth(i).request.id();
                assert!(
                    store.request(&id).is_ok(),
                    "round {round} ({via}): acknowledged insert {i} was lost"
                );
            }
            total += acked.len();
        }
        assert!(total >= 900);
    }
}
