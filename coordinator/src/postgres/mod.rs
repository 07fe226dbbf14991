//! The shared storage engine: one PostgreSQL database that any number of
//! coordinators use at once (`[store] engine = "postgres"`), implementing
//! [`KeyStore`] and [`RequestStore`] with the same contract, and the same
//! `store::contract` tests, as the embedded SQLite engine.
//!
//! # Isolation: SERIALIZABLE, retried on conflict
//!
//! Every write is one `SERIALIZABLE` transaction; one that PostgreSQL
//! aborts with a serialization failure (SQLSTATE 40001) or a deadlock
//! (40P01) is run again from the start, with a short random pause, up to
//! [`MAX_ATTEMPTS`] times. Reads are `REPEATABLE READ READ ONLY`: one
//! snapshot of committed data for a record and its approvals and history,
//! and a read-only snapshot never conflicts.
//!
//! Why SERIALIZABLE and not row locks (`SELECT ... FOR UPDATE`): the checks
//! a write makes are reads of rows that may not exist yet. The caps count
//! the key's requests in the window, so two submissions must see each
//! other's *new* rows (a phantom: there is no row to lock, and a key's row
//! need not even exist in `keys`); an idempotency key is looked up before
//! it is inserted; an approver's earlier decision likewise. Under row
//! locks each of these needs its own lock scheme (an advisory or dummy row
//! per key, per idempotency key), and a write that forgets one is silently
//! wrong. SERIALIZABLE gives every write what the SQLite engine gets from
//! its single writer (`BEGIN IMMEDIATE`): it behaves as if the writes of
//! every coordinator ran one after the other, so the engine's checks are
//! the SQLite engine's, statement for statement. The price is a retry when
//! two transactions touch the same thing: two submissions for one key (each
//! reads the key's last running totals, a range of the index
//! `requests_by_key_count`, so other keys do not conflict), or two writes
//! to one request. Those retries are cheap (the transactions are short)
//! and bounded; the HA test and the contract's racing tests run into them
//! on purpose.
//!
//! A conflict on a unique key between two transactions that both looked
//! for it first (an idempotency key, a request id, a key id) surfaces under
//! SERIALIZABLE as a serialization failure too, and the retry finds the
//! other's row: the same answers as one writer would give.
//!
//! Connections come from a small bounded pool (`pool.rs`), each keeping its
//! prepared statements. Commits are durable when PostgreSQL says so (its
//! own group commit shares WAL flushes between concurrent commits, what
//! the SQLite engine does by hand).

pub mod connect;
pub mod pool;
pub mod schema;

use std::collections::HashMap;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{IsolationLevel, Row, Statement};
use ringi_policy::approver_key::ApproverKey;
use ringi_policy::holds::Retired;
use ringi_policy::key_id::KeyId;
use ringi_policy::limits::{Limits, Usage, check};
use ringi_policy::request::{Metadata, NONCE_LEN, SigningRequest};
use ringi_policy::retirement::Retirement;
use ringi_policy::running_totals::{self, Counted, Reads as _};
use ringi_policy::statement::{Approval, Decision, Statement as ApprovalStatement};

use crate::config::StoreConfig;
use crate::error::{Error, Missing, RequestId, Result};
use crate::request_state::{Event, SignedTransaction, State, Transition, TransitionError, next};
use crate::request_store::{
    ClaimRequest, Inserted, LIST_LIMIT, ListFilter, NewRequest, PlannedClaim, Position,
    RequestRecord, RequestStore, SigningClaim, SigningPlan, TransitionRecord,
};
use crate::store::{KeyRecord, KeyStore};

use self::connect::Target;
use self::pool::{Conn, Pool};

/// How many times a write is tried when PostgreSQL aborts it for a
/// conflict with a concurrent write. Each round of conflicting
/// transactions lets at least one commit, so this is far more than any
/// burst the coordinators make (32 store calls in flight per two
/// coordinators); past it the caller gets an error, not a hang.
pub const MAX_ATTEMPTS: u32 = 100;

/// How many connections a call tries when the server dropped the ones it
/// got (each is replaced by a new one).
const RECONNECTS: u32 = 3;

/// Default size of the connection pool: as many as store calls run at once
/// (`store::blocking`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

pub struct PostgresStore {
    pool: Pool,
}

/// A failure inside one transaction: PostgreSQL's (kept whole, so the
/// retry loop can read its SQLSTATE) or the store's own answer.
enum TxError {
    Pg(postgres::Error),
    /// Boxed: the store's error is large, and this travels through every
    /// statement's result.
    Store(Box<Error>),
}

impl From<postgres::Error> for TxError {
    fn from(e: postgres::Error) -> Self {
        TxError::Pg(e)
    }
}

impl From<Error> for TxError {
    fn from(e: Error) -> Self {
        TxError::Store(Box::new(e))
    }
}

impl From<running_totals::TotalsDoNotAddUp> for TxError {
    fn from(e: running_totals::TotalsDoNotAddUp) -> Self {
        Error::from(e).into()
    }
}

impl From<Missing> for TxError {
    fn from(e: Missing) -> Self {
        TxError::Store(Box::new(e.into()))
    }
}

impl From<TransitionError> for TxError {
    fn from(e: TransitionError) -> Self {
        TxError::Store(Box::new(e.into()))
    }
}

type TxResult<T> = std::result::Result<T, TxError>;

/// PostgreSQL's error as the store's. Its text names the statement's
/// failure (PostgreSQL's message, a constraint), never connection
/// settings.
fn store_error(e: postgres::Error) -> Error {
    Error::Store(format!("postgres: {}", connect::describe_error(&e)))
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("database holds a malformed {what}"))
}

/// Whether running the transaction again may succeed.
fn is_conflict(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Whether the session may be in an unknown state (no answer from the
/// server, a broken connection): not to be reused.
fn is_connection_error(e: &postgres::Error) -> bool {
    e.as_db_error().is_none()
}

/// What a transaction does.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// SERIALIZABLE.
    Write,
    /// REPEATABLE READ READ ONLY: one snapshot, never a conflict.
    Read,
}

/// Where one run of a transaction failed.
enum Failure {
    /// Starting it: nothing was done.
    Begin(postgres::Error),
    /// A statement or the commit.
    Pg(postgres::Error),
    /// The store's own answer (a refusal, a corrupt row).
    Store(Box<Error>),
}

/// Runs `f` once in a transaction of `access` on `conn`, and commits.
fn run_once<T>(
    conn: &mut Conn,
    access: Access,
    f: &mut impl FnMut(&mut Tx<'_>) -> TxResult<T>,
) -> std::result::Result<T, Failure> {
    let Conn { client, statements } = conn;
    let builder = client.build_transaction();
    let builder = match access {
        Access::Write => builder.isolation_level(IsolationLevel::Serializable),
        Access::Read => builder
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true),
    };
    let tx = builder.start().map_err(Failure::Begin)?;
    let mut tx = Tx { tx, statements };
    let value = f(&mut tx).map_err(|e| match e {
        TxError::Pg(e) => Failure::Pg(e),
        TxError::Store(e) => Failure::Store(e),
    })?;
    tx.tx.commit().map_err(Failure::Pg)?;
    Ok(value)
}

/// One transaction, with the connection's prepared statements.
struct Tx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl Tx<'_> {
    /// `sql` prepared once per connection (a query by text costs a round
    /// trip more: PostgreSQL parses it each time).
    fn statement(&mut self, sql: &'static str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    fn query(&mut self, sql: &'static str, params: Params<'_>) -> TxResult<Vec<Row>> {
        let s = self.statement(sql)?;
        Ok(self.tx.query(&s, params)?)
    }

    fn query_opt(&mut self, sql: &'static str, params: Params<'_>) -> TxResult<Option<Row>> {
        let s = self.statement(sql)?;
        Ok(self.tx.query_opt(&s, params)?)
    }

    fn execute(&mut self, sql: &'static str, params: Params<'_>) -> TxResult<u64> {
        let s = self.statement(sql)?;
        Ok(self.tx.execute(&s, params)?)
    }
}

impl PostgresStore {
    /// Connects to the server the `[store]` section names and brings its
    /// schema up to date (`schema.rs`). Blocks: call it outside an async
    /// task (or in `block_in_place`).
    pub fn open(store: &StoreConfig) -> Result<Self> {
        let target = Target::from_config(store).map_err(|e| Error::Store(e.to_string()))?;
        let max = store
            .max_connections
            .unwrap_or(DEFAULT_MAX_CONNECTIONS)
            .max(1);
        let pool = Pool::new(target, max);
        {
            let mut conn = pool.get().map_err(|e| Error::Store(e.to_string()))?;
            schema::migrate(&mut conn.client).map_err(|e| Error::Store(e.to_string()))?;
        }
        Ok(PostgresStore { pool })
    }

    /// What logs may say about where the state lives (no password).
    pub fn describe(&self) -> String {
        self.pool.target().describe()
    }

    /// Runs `f` as one SERIALIZABLE transaction, again from the start when
    /// PostgreSQL aborts it for a conflict (see the module docs). `f` may
    /// thus run more than once; only its last run's writes are committed.
    fn write<T>(&self, f: impl FnMut(&mut Tx<'_>) -> TxResult<T>) -> Result<T> {
        self.transaction(Access::Write, f)
    }

    /// Runs `f` in a read-only snapshot of committed data.
    fn read<T>(&self, f: impl FnMut(&mut Tx<'_>) -> TxResult<T>) -> Result<T> {
        self.transaction(Access::Read, f)
    }

    fn transaction<T>(
        &self,
        access: Access,
        mut f: impl FnMut(&mut Tx<'_>) -> TxResult<T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.pool.get().map_err(|e| Error::Store(e.to_string()))?;
            let e = match run_once(&mut conn, access, &mut f) {
                Ok(value) => return Ok(value),
                Err(Failure::Store(e)) => return Err(*e),
                // An idle connection the server dropped (a restart, a
                // failover): nothing was sent yet, so another may try.
                Err(Failure::Begin(e)) if is_connection_error(&e) && attempt < RECONNECTS => {
                    conn.discard();
                    continue;
                }
                Err(Failure::Begin(e) | Failure::Pg(e)) => e,
            };
            if is_conflict(&e) && attempt < MAX_ATTEMPTS {
                drop(conn);
                std::thread::sleep(backoff(attempt));
                continue;
            }
            // A session in an unknown state, or whose statement cache
            // outlived its statements, is not reused.
            if is_connection_error(&e) || e.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) {
                conn.discard();
            }
            if is_conflict(&e) {
                return Err(Error::Store(format!(
                    "postgres: still conflicting with concurrent writes after {attempt} attempts: {}",
                    connect::describe_error(&e)
                )));
            }
            return Err(store_error(e));
        }
    }

    /// Runs `sql` outside the store's transactions (tests that tamper with
    /// rows).
    #[cfg(test)]
    fn raw(&self, sql: &str) -> Result<u64> {
        let mut conn = self.pool.get().map_err(|e| Error::Store(e.to_string()))?;
        conn.client.execute(sql, &[]).map_err(store_error)
    }
}

/// The pause before attempt `attempt + 1`: random, so the transactions
/// that collided do not collide again in step, and growing (to 64 ms).
fn backoff(attempt: u32) -> Duration {
    let ceiling_us = 1000u64 << attempt.min(6);
    Duration::from_micros(rand::Rng::gen_range(&mut rand::thread_rng(), 0..ceiling_us))
}

fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

impl KeyStore for PostgresStore {
    fn insert_key(&self, key: &KeyRecord) -> Result<()> {
        self.write(|tx| {
            if tx
                .query_opt(
                    "SELECT 1 FROM keys WHERE key_id = $1",
                    &[&key.key_id.as_str()],
                )?
                .is_some()
            {
                return Err(Error::KeyExists(key.key_id.clone()).into());
            }
            tx.execute(
                "INSERT INTO keys (key_id, threshold, group_public_key, public_key_package, created_at, kind)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &key.key_id.as_str(),
                    &i32::from(key.threshold),
                    &key.group_public_key,
                    &key.public_key_package,
                    &key.created_at,
                    &key.kind.as_str(),
                ],
            )?;
            for (name, identifier) in &key.signers {
                tx.execute(
                    "INSERT INTO key_signers (key_id, signer_name, identifier) VALUES ($1, $2, $3)",
                    &[&key.key_id.as_str(), name, &i32::from(*identifier)],
                )?;
            }
            Ok(())
        })
    }

    fn replace_key_package(&self, key_id: &KeyId, expected: &[u8], new: &[u8]) -> Result<()> {
        self.write(|tx| {
            let stored: Option<Vec<u8>> = tx
                .query_opt(
                    "SELECT public_key_package FROM keys WHERE key_id = $1",
                    &[&key_id.as_str()],
                )?
                .map(|r| r.try_get(0))
                .transpose()?;
            match stored {
                None => Err(Missing::Key(key_id.clone()).into()),
                Some(stored) if stored == new => Ok(()),
                Some(stored) if stored != expected => Err(Error::Corrupt(format!(
                    "key id {key_id:?}: the stored public key package changed while the refresh ran"
                ))
                .into()),
                Some(_) => {
                    tx.execute(
                        "UPDATE keys SET public_key_package = $2 WHERE key_id = $1",
                        &[&key_id.as_str(), &new],
                    )?;
                    Ok(())
                }
            }
        })
    }

    fn replace_key_signer(&self, key_id: &KeyId, identifier: u16, signer: &str) -> Result<()> {
        self.write(|tx| {
            let Some(key) = load_key(tx, key_id)? else {
                return Err(Missing::Key(key_id.clone()).into());
            };
            if !key.signers.iter().any(|(_, id)| *id == identifier) {
                return Err(Error::Corrupt(format!(
                    "key id {key_id:?} has no participant {identifier}"
                ))
                .into());
            }
            if key
                .signers
                .iter()
                .any(|(name, id)| name == signer && *id != identifier)
            {
                return Err(Error::Corrupt(format!(
                    "{signer} is another participant of key id {key_id:?}"
                ))
                .into());
            }
            tx.execute(
                "UPDATE key_signers SET signer_name = $3 WHERE key_id = $1 AND identifier = $2",
                &[&key_id.as_str(), &i32::from(identifier), &signer],
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
            if tx
                .query_opt("SELECT 1 FROM keys WHERE key_id = $1", &[&key_id.as_str()])?
                .is_none()
            {
                return Err(Missing::Key(key_id.clone()).into());
            }
            tx.execute(
                "INSERT INTO key_retirements
                     (key_id, order_id, signed_order, destroy_after, admins, retired_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &key_id.as_str(),
                    &&retirement.order_id[..],
                    &signed_order,
                    &(retirement.destroy_after as i64),
                    &retirement.admins_text(),
                    &(retirement.accepted_at as i64),
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
            let ids = tx.query("SELECT key_id FROM key_retirements ORDER BY key_id", &[])?;
            let mut all = Vec::with_capacity(ids.len());
            for row in ids {
                let id =
                    KeyId::try_from(row.try_get::<_, String>(0)?).map_err(|_| corrupt("key id"))?;
                all.extend(load_retirement(tx, &id)?);
            }
            Ok(all)
        })
    }

    fn mark_shares_destroyed(&self, key_id: &KeyId, at: u64) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE key_retirements SET shares_destroyed_at = $2
                 WHERE key_id = $1 AND shares_destroyed_at IS NULL",
                &[&key_id.as_str(), &(at as i64)],
            )? == 1)
        })
    }

    fn find_key(&self, key_id: &KeyId) -> Result<Option<KeyRecord>> {
        self.read(|tx| load_key(tx, key_id))
    }

    fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.read(|tx| {
            let ids = tx.query("SELECT key_id FROM keys ORDER BY key_id", &[])?;
            let mut keys = Vec::with_capacity(ids.len());
            for row in ids {
                let id =
                    KeyId::try_from(row.try_get::<_, String>(0)?).map_err(|_| corrupt("key id"))?;
                keys.extend(load_key(tx, &id)?);
            }
            Ok(keys)
        })
    }
}

fn load_retirement(tx: &mut Tx<'_>, key_id: &KeyId) -> TxResult<Option<Retirement>> {
    let Some(row) = tx.query_opt(
        "SELECT order_id, destroy_after, admins, retired_at, shares_destroyed_at
         FROM key_retirements WHERE key_id = $1",
        &[&key_id.as_str()],
    )?
    else {
        return Ok(None);
    };
    let order_id: Vec<u8> = row.try_get(0)?;
    let destroyed_at: Option<i64> = row.try_get(4)?;
    Ok(Some(Retirement {
        key_id: key_id.clone(),
        order_id: order_id
            .try_into()
            .map_err(|_| corrupt("retirement order id"))?,
        destroy_after: to_u64(row.try_get(1)?, "retirement time")?,
        admins: Retirement::admins_from_text(&row.try_get::<_, String>(2)?),
        accepted_at: to_u64(row.try_get(3)?, "retirement time")?,
        destroyed_at: destroyed_at
            .map(|t| to_u64(t, "retirement time"))
            .transpose()?,
    }))
}

fn load_key(tx: &mut Tx<'_>, key_id: &KeyId) -> TxResult<Option<KeyRecord>> {
    let Some(row) = tx.query_opt(
        "SELECT threshold, group_public_key, public_key_package, created_at, kind FROM keys WHERE key_id = $1",
        &[&key_id.as_str()],
    )?
    else {
        return Ok(None);
    };
    let threshold = u16::try_from(row.try_get::<_, i32>(0)?).map_err(|_| corrupt("threshold"))?;
    let kind = ringi_frost::KeyKind::parse(&row.try_get::<_, String>(4)?)
        .map_err(|_| corrupt("key kind"))?;
    let mut signers = Vec::new();
    for r in tx.query(
        "SELECT signer_name, identifier FROM key_signers WHERE key_id = $1 ORDER BY identifier",
        &[&key_id.as_str()],
    )? {
        let identifier =
            u16::try_from(r.try_get::<_, i32>(1)?).map_err(|_| corrupt("identifier"))?;
        signers.push((r.try_get(0)?, identifier));
    }
    Ok(Some(KeyRecord {
        key_id: key_id.clone(),
        kind,
        threshold,
        signers,
        group_public_key: row.try_get(1)?,
        public_key_package: row.try_get(2)?,
        created_at: row.try_get(3)?,
    }))
}

impl RequestStore for PostgresStore {
    fn insert_request(
        &self,
        new: &NewRequest,
        daily_volume: Option<u128>,
        now: u64,
    ) -> Result<Inserted> {
        let request = &new.request;
        self.write(|tx| {
            let known = tx.query_opt(
                "SELECT content_hash, request_id FROM idempotency_keys WHERE requester = $1 AND idempotency_key = $2",
                &[&request.requester, &new.idempotency_key],
            )?;
            if let Some(row) = known {
                let hash: Vec<u8> = row.try_get(0)?;
                if hash != new.content_hash {
                    return Err(Error::IdempotencyConflict {
                        requester: request.requester.clone(),
                        idempotency_key: new.idempotency_key.clone(),
                    }
                    .into());
                }
                let id: Vec<u8> = row.try_get(1)?;
                let id = id.try_into().map_err(|_| corrupt("request id"))?;
                return Ok(Inserted::Existing(id));
            }
            let key_id = request.key_id.as_str();
            let last = tx.totals_through(key_id, i64::MAX)?;
            let usage =
                running_totals::usage(tx, key_id, &new.limits, now, last.map(|(t, _)| t))?;
            check(&new.limits, new.counted_amount, usage, daily_volume).map_err(|cap| {
                Error::CapExceeded {
                    key: request.key_id.clone(),
                    cap,
                }
            })?;
            let id = insert_request_row(tx, new, last, now)?;
            tx.execute(
                "INSERT INTO idempotency_keys (requester, idempotency_key, content_hash, request_id) VALUES ($1, $2, $3, $4)",
                &[&request.requester, &new.idempotency_key, &&new.content_hash[..], &&id[..]],
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
            if let Some(t) = &transition
                && t.from() != State::PendingApproval
            {
                return Err(Error::IllegalTransition(TransitionError {
                    from: State::PendingApproval,
                    event: t.event().name(),
                })
                .into());
            }
            check_state(tx, id, State::PendingApproval)?;
            let key = approval.approver.to_sec1();
            // A decision of this approver still valid at `now` stands; one
            // that expired (an approval renewed) is replaced.
            let earlier = tx.query_opt(
                "SELECT expires_at FROM approvals WHERE request_id = $1 AND approver_key = $2",
                &[&&id[..], &key],
            )?;
            if let Some(row) = earlier {
                let expires_at: i64 = row.try_get(0)?;
                if expires_at as u64 > now {
                    return Err(Error::DuplicateDecision {
                        request: *id,
                        approver: approval.approver.to_text(),
                    }
                    .into());
                }
                tx.execute(
                    "DELETE FROM approvals WHERE request_id = $1 AND approver_key = $2",
                    &[&&id[..], &key],
                )?;
            }
            let s = &approval.statement;
            tx.execute(
                "INSERT INTO approvals (request_id, approver_key, department, decision, reason, issued_at, expires_at,
                                        content_digest, signature, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &&id[..],
                    &key,
                    &s.department,
                    &s.decision.as_str(),
                    &s.reason,
                    &(s.issued_at as i64),
                    &(s.expires_at as i64),
                    &&s.content_digest[..],
                    &approval.signature,
                    &(now as i64),
                ],
            )?;
            if let Some(t) = &transition {
                apply(tx, id, t, now)?;
            }
            // As written, without reading it again (the contract tests
            // hold the two equal).
            Ok(current.with_decision(approval, transition.as_ref(), now))
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
        let key_set: Option<Vec<&str>> = filter
            .key_ids
            .map(|keys| keys.iter().map(KeyId::as_str).collect());
        self.read(|tx| {
            let rows = tx.query(
                "SELECT request_id, created_at FROM requests
                 WHERE ($1 = FALSE OR state = 'PENDING_APPROVAL')
                   AND ($2::TEXT IS NULL OR key_id = $2)
                   AND ($3::TEXT IS NULL OR state = $3)
                   AND (created_at, request_id) < ($4, $5)
                   AND ($7::TEXT[] IS NULL OR key_id = ANY($7))
                 ORDER BY created_at DESC, request_id DESC LIMIT $6",
                &[
                    &filter.pending_only,
                    &filter.key_id.map(KeyId::as_str),
                    &filter.state.map(State::as_str),
                    &after_time,
                    &after_id,
                    &(page_size as i64),
                    &key_set,
                ],
            )?;
            let mut ids = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: Vec<u8> = row.try_get(0)?;
                let id = RequestId::try_from(id.as_slice()).map_err(|_| corrupt("request id"))?;
                ids.push((id, row.try_get::<_, i64>(1)?));
            }
            let next = (ids.len() == page_size)
                .then(|| ids.last())
                .flatten()
                .map(|(id, t)| Position {
                    created_at: *t as u64,
                    request_id: *id,
                });
            let mut records = Vec::with_capacity(ids.len());
            for (id, _) in &ids {
                records.extend(load_request(tx, id)?);
            }
            Ok((records, next))
        })
    }

    fn requests_in(&self, states: &[State]) -> Result<Vec<RequestId>> {
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        self.read(|tx| {
            let rows = tx.query(
                "SELECT request_id FROM requests WHERE state = ANY($1)",
                &[&states],
            )?;
            request_ids(&rows)
        })
    }

    fn waiting_due(&self, now: u64) -> Result<Vec<RequestId>> {
        self.read(|tx| {
            let rows = tx.query(
                "SELECT request_id FROM requests
                 WHERE state IN ('PENDING_APPROVAL', 'APPROVED') AND expires_at <= $1",
                &[&(now as i64)],
            )?;
            request_ids(&rows)
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
                tx.execute(
                    "DELETE FROM signing_plans WHERE request_id = $1",
                    &[&&id[..]],
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
            let row = tx
                .query_opt(
                    "SELECT key_id, counted_amount, created_at FROM requests WHERE request_id = $1",
                    &[&&id[..]],
                )?
                .ok_or(Missing::Request(*id))?;
            let key_id: String = row.try_get(0)?;
            let counted: u128 = row
                .try_get::<_, String>(1)?
                .parse()
                .map_err(|_| corrupt("amount"))?;
            // Counted as at submission: the window ending when it was made.
            let created_at = to_u64(row.try_get(2)?, "request time")?;
            let last = tx.totals_through(&key_id, i64::MAX)?.map(|(t, _)| t);
            let usage = running_totals::usage(tx, &key_id, limits, created_at, last)?;
            let key = KeyId::parse(&key_id).map_err(|_| corrupt("key id"))?;
            check(limits, counted, usage, daily_volume)
                .map_err(|cap| Error::CapExceeded { key, cap })?;
            apply(tx, id, transition, now)
        })
    }

    fn changed_since(&self, since: u64) -> Result<Vec<RequestId>> {
        self.read(|tx| {
            let rows = tx.query(
                "SELECT request_id FROM transitions WHERE at >= $1
                 UNION SELECT request_id FROM approvals WHERE received_at >= $1",
                &[&(since as i64)],
            )?;
            request_ids(&rows)
        })
    }

    fn live_claims(&self, now: u64) -> Result<Vec<(RequestId, String)>> {
        self.read(|tx| {
            let rows = tx.query(
                "SELECT c.request_id, c.owner FROM signing_claims c
                 JOIN requests r ON r.request_id = c.request_id
                 WHERE r.state = 'SIGNING' AND c.lease_until > $1",
                &[&(now as i64)],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: Vec<u8> = row.try_get(0)?;
                let id = RequestId::try_from(id.as_slice()).map_err(|_| corrupt("request id"))?;
                out.push((id, row.try_get(1)?));
            }
            Ok(out)
        })
    }
}

fn request_ids(rows: &[Row]) -> TxResult<Vec<RequestId>> {
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        let id: Vec<u8> = row.try_get(0)?;
        ids.push(RequestId::try_from(id.as_slice()).map_err(|_| corrupt("request id"))?);
    }
    Ok(ids)
}

/// The `requests` table, as the window caps read it
/// ([`running_totals::usage`]).
impl running_totals::Reads for Tx<'_> {
    type Error = TxError;

    fn totals_through(&mut self, key_id: &str, through: i64) -> TxResult<Option<(Usage, i64)>> {
        let Some(row) = self.query_opt(
            "SELECT running_amount, running_count, counted_at FROM requests
             WHERE key_id = $1 AND counted_at <= $2
             ORDER BY counted_at DESC, running_count DESC LIMIT 1",
            &[&key_id, &through],
        )?
        else {
            return Ok(None);
        };
        let amount: String = row.try_get(0)?;
        let totals = Usage::from_stored(&amount, row.try_get(1)?)
            .ok_or_else(|| corrupt("running totals"))?;
        Ok(Some((totals, row.try_get(2)?)))
    }

    fn sum_after(&mut self, key_id: &str, since: i64, which: Counted) -> TxResult<Usage> {
        let sql = match which {
            Counted::Live => {
                "SELECT counted_amount FROM requests WHERE key_id = $1 AND counted_at > $2
                 AND state NOT IN ('REJECTED', 'EXPIRED', 'FAILED')"
            }
            Counted::Ended => {
                "SELECT counted_amount FROM requests WHERE key_id = $1 AND counted_at > $2
                 AND state IN ('REJECTED', 'EXPIRED', 'FAILED')"
            }
        };
        let mut sum = Usage::default();
        for row in self.query(sql, &[&key_id, &since])? {
            let amount: String = row.try_get(0)?;
            sum.add(amount.parse().map_err(|_| corrupt("amount"))?);
        }
        Ok(sum)
    }
}

/// Writes `new`'s row, counted after `last` (the key's running totals
/// through its last request, and when that was counted).
fn insert_request_row(
    tx: &mut Tx<'_>,
    new: &NewRequest,
    last: Option<(Usage, i64)>,
    now: u64,
) -> TxResult<RequestId> {
    let request = &new.request;
    let id = request.id();
    if tx
        .query_opt("SELECT 1 FROM requests WHERE request_id = $1", &[&&id[..]])?
        .is_some()
    {
        return Err(Error::RequestExists(id).into());
    }
    let (counted_at, totals) =
        running_totals::counted_after(last, request.created_at, new.counted_amount);
    let m = &request.metadata;
    tx.execute(
        "INSERT INTO requests (request_id, key_id, message, asset, amount, destination, memo, requester,
                               created_at, expires_at, policy_hash, signers, state, state_reason,
                               psbt, counted_amount, nonce, counted_at, running_amount, running_count)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, '', $14, $15, $16, $17, $18, $19)",
        &[
            &&id[..],
            &request.key_id.as_str(),
            &request.message,
            &m.asset,
            &m.amount.to_string(),
            &m.destination,
            &m.memo,
            &request.requester,
            &(request.created_at as i64),
            &(request.expires_at as i64),
            &&request.policy_hash[..],
            &new.signers.join(","),
            &State::PendingApproval.as_str(),
            &request.psbt,
            &new.counted_amount.to_string(),
            &request.nonce,
            &counted_at,
            &totals.amount.to_string(),
            &(totals.requests as i64),
        ],
    )?;
    insert_history(tx, &id, "", State::PendingApproval, "submitted", now)?;
    Ok(id)
}

/// The request's state, or NOT_FOUND.
fn state_of(tx: &mut Tx<'_>, id: &RequestId) -> TxResult<State> {
    let row = tx
        .query_opt(
            "SELECT state FROM requests WHERE request_id = $1",
            &[&&id[..]],
        )?
        .ok_or(Missing::Request(*id))?;
    Ok(State::parse(&row.try_get::<_, String>(0)?).ok_or_else(|| corrupt("state"))?)
}

/// How many history records request `id` has.
fn transition_count(tx: &mut Tx<'_>, id: &RequestId) -> TxResult<usize> {
    let row = tx
        .query_opt(
            "SELECT COUNT(*) FROM transitions WHERE request_id = $1",
            &[&&id[..]],
        )?
        .ok_or_else(|| corrupt("transition count"))?;
    Ok(usize::try_from(row.try_get::<_, i64>(0)?).map_err(|_| corrupt("transition count"))?)
}

fn check_state(tx: &mut Tx<'_>, id: &RequestId, expected: State) -> TxResult<()> {
    match state_of(tx, id)? {
        actual if actual == expected => Ok(()),
        actual => Err(Error::StateConflict {
            request: *id,
            expected,
            actual,
        }
        .into()),
    }
}

/// Applies `t` only if the request is still in `t.from()`. A change to
/// SIGNED carries a signed transaction exactly when the request is a PSBT
/// request, else nothing is written.
fn apply(tx: &mut Tx<'_>, id: &RequestId, t: &Transition, now: u64) -> TxResult<()> {
    let reason = t.reason();
    let signed = t.signed_transaction();
    if t.to() == State::Signed {
        let is_psbt = tx.query_opt(
            "SELECT psbt IS NOT NULL FROM requests WHERE request_id = $1",
            &[&&id[..]],
        )?;
        if let Some(row) = is_psbt
            && row.try_get::<_, bool>(0)? != signed.is_some()
        {
            return Err(Error::Internal(format!(
                "request {}: a PSBT request is SIGNED with its signed transaction, any other without one",
                hex::encode(id)
            ))
            .into());
        }
    }
    let changed = tx.execute(
        "UPDATE requests SET state = $2, state_reason = $3, signature = $4, signed_psbt = $6, signed_tx = $7
         WHERE request_id = $1 AND state = $5",
        &[
            &&id[..],
            &t.to().as_str(),
            &reason,
            &t.signature(),
            &t.from().as_str(),
            &signed.map(|s| &s.psbt),
            &signed.map(|s| &s.tx),
        ],
    )?;
    if changed != 1 {
        // Names what the request is instead (or that it does not exist).
        check_state(tx, id, t.from())?;
        return Err(Error::Store(format!("request {} was not updated", hex::encode(id))).into());
    }
    insert_history(tx, id, t.from().as_str(), t.to(), &reason, now)
}

/// Refuses a write of a run whose claim `fence` no longer holds the
/// request (a later claim took it over).
/// The claim of [`RequestStore::claim_signing`], inside a write, and
/// whether the record it returns was built from `claim.known` (current).
fn claim_in(
    tx: &mut Tx<'_>,
    id: &RequestId,
    claim: &ClaimRequest<'_>,
) -> TxResult<(SigningClaim, bool)> {
    let held = match tx.query_opt(
        "SELECT fence, owner, lease_until FROM signing_claims WHERE request_id = $1",
        &[&&id[..]],
    )? {
        Some(row) => Some((
            to_u64(row.try_get(0)?, "claim fence")?,
            row.try_get::<_, String>(1)?,
            to_u64(row.try_get(2)?, "claim lease")?,
        )),
        None => None,
    };
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
            (held.map_or(1, |(fence, ..)| fence + 1), Some(started))
        }
        State::Signing => match held {
            Some((fence, owner, _)) if owner == claim.owner => (fence, None),
            Some((_, owner, until)) if !claim.takeover && until > claim.now => {
                return Err(Error::SigningClaimed {
                    request: *id,
                    owner,
                    until,
                }
                .into());
            }
            Some((fence, ..)) => (fence + 1, None),
            None => (1, None),
        },
        actual => {
            return Err(Error::StateConflict {
                request: *id,
                expected: State::Approved,
                actual,
            }
            .into());
        }
    };
    let lease_until = claim.now.saturating_add(claim.lease_secs);
    tx.execute(
            "INSERT INTO signing_claims (request_id, fence, owner, lease_until) VALUES ($1, $2, $3, $4)
             ON CONFLICT (request_id) DO UPDATE
             SET fence = EXCLUDED.fence, owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until",
            &[&&id[..], &(fence as i64), &claim.owner, &(lease_until as i64)],
        )?;
    let mut plans = Vec::new();
    for row in tx.query(
            "SELECT input, package, signers FROM signing_plans WHERE request_id = $1 ORDER BY input, seq",
            &[&&id[..]],
        )? {
            plans.push(SigningPlan {
                input: u32::try_from(row.try_get::<_, i32>(0)?)
                    .map_err(|_| corrupt("signing plan"))?,
                package: row.try_get(1)?,
                signers: split_names(&row.try_get::<_, String>(2)?),
            });
        }
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
fn insert_plan(tx: &mut Tx<'_>, id: &RequestId, plan: &SigningPlan) -> TxResult<()> {
    let input = i32::try_from(plan.input)
        .map_err(|_| Error::Internal(format!("input {} out of range", plan.input)))?;
    tx.execute(
        "INSERT INTO signing_plans (request_id, input, seq, package, signers)
         VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM signing_plans WHERE request_id = $1 AND input = $2), $3, $4)",
        &[&&id[..], &input, &plan.package, &plan.signers.join(",")],
    )?;
    Ok(())
}

fn check_claim(tx: &mut Tx<'_>, id: &RequestId, fence: u64) -> TxResult<()> {
    let current = tx.query_opt(
        "SELECT fence FROM signing_claims WHERE request_id = $1",
        &[&&id[..]],
    )?;
    match current {
        Some(row) if row.try_get::<_, i64>(0)? as u64 == fence => Ok(()),
        _ => Err(Error::ClaimLost {
            request: *id,
            fence,
        }
        .into()),
    }
}

fn split_names(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn insert_history(
    tx: &mut Tx<'_>,
    id: &RequestId,
    from: &str,
    to: State,
    reason: &str,
    now: u64,
) -> TxResult<()> {
    tx.execute(
        "INSERT INTO transitions (request_id, seq, from_state, to_state, reason, at)
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM transitions WHERE request_id = $1), $2, $3, $4, $5)",
        &[&&id[..], &from, &to.as_str(), &reason, &(now as i64)],
    )?;
    Ok(())
}

fn load_request(tx: &mut Tx<'_>, id: &RequestId) -> TxResult<Option<RequestRecord>> {
    let Some(row) = tx.query_opt(
        "SELECT key_id, message, asset, amount, destination, memo, requester, created_at, expires_at,
                policy_hash, signers, state, state_reason, signature, psbt, signed_psbt, signed_tx,
                nonce
         FROM requests WHERE request_id = $1",
        &[&&id[..]],
    )?
    else {
        return Ok(None);
    };
    let policy_hash: Vec<u8> = row.try_get(9)?;
    let request = SigningRequest {
        key_id: row
            .try_get::<_, String>(0)?
            .try_into()
            .map_err(|_| corrupt("key id"))?,
        message: row.try_get(1)?,
        metadata: Metadata {
            asset: row.try_get(2)?,
            amount: row
                .try_get::<_, String>(3)?
                .parse()
                .map_err(|_| corrupt("amount"))?,
            destination: row.try_get(4)?,
            memo: row.try_get(5)?,
        },
        psbt: row.try_get(14)?,
        requester: row.try_get(6)?,
        created_at: to_u64(row.try_get(7)?, "request time")?,
        expires_at: to_u64(row.try_get(8)?, "request time")?,
        policy_hash: policy_hash.try_into().map_err(|_| corrupt("policy hash"))?,
        nonce: row.try_get(17)?,
    };
    if !matches!(request.nonce.len(), 0 | NONCE_LEN) {
        return Err(corrupt("request nonce").into());
    }
    let signers: String = row.try_get(10)?;
    let state = State::parse(&row.try_get::<_, String>(11)?).ok_or_else(|| corrupt("state"))?;
    let state_reason: String = row.try_get(12)?;
    let signature: Option<Vec<u8>> = row.try_get(13)?;
    let signed_psbt: Option<Vec<u8>> = row.try_get(15)?;
    let signed_tx: Option<Vec<u8>> = row.try_get(16)?;

    let mut approvals = Vec::new();
    for r in tx.query(
        "SELECT approver_key, department, decision, reason, issued_at, expires_at, content_digest, signature
         FROM approvals WHERE request_id = $1 ORDER BY position",
        &[&&id[..]],
    )? {
        let key: Vec<u8> = r.try_get(0)?;
        let digest: Vec<u8> = r.try_get(6)?;
        let decision: String = r.try_get(2)?;
        approvals.push(Approval {
            statement: ApprovalStatement {
                request_id: *id,
                content_digest: digest.try_into().map_err(|_| corrupt("content digest"))?,
                key_id: request.key_id.clone(),
                department: r.try_get(1)?,
                decision: match decision.as_str() {
                    "approve" => Decision::Approve,
                    "reject" => Decision::Reject,
                    "request" => Decision::Request,
                    _ => return Err(corrupt("decision").into()),
                },
                reason: r.try_get(3)?,
                issued_at: to_u64(r.try_get(4)?, "approval time")?,
                expires_at: to_u64(r.try_get(5)?, "approval time")?,
            },
            approver: ApproverKey::from_sec1(&key).map_err(|_| corrupt("approver key"))?,
            signature: r.try_get(7)?,
        });
    }
    let mut transitions = Vec::new();
    for r in tx.query(
        "SELECT from_state, to_state, reason, at FROM transitions WHERE request_id = $1 ORDER BY seq",
        &[&&id[..]],
    )? {
        transitions.push(TransitionRecord {
            from: r.try_get(0)?,
            to: State::parse(&r.try_get::<_, String>(1)?).ok_or_else(|| corrupt("state"))?,
            reason: r.try_get(2)?,
            at: to_u64(r.try_get(3)?, "transition time")?,
        });
    }
    if (state == State::Signed) != signature.is_some() {
        return Err(corrupt("signature (SIGNED exactly when one is stored)").into());
    }
    let signed_transaction = match (signed_psbt, signed_tx) {
        (Some(psbt), Some(tx)) => Some(SignedTransaction { psbt, tx }),
        (None, None) => None,
        _ => {
            return Err(corrupt("signed transaction (its PSBT without it, or it alone)").into());
        }
    };
    if (state == State::Signed && request.psbt.is_some()) != signed_transaction.is_some() {
        return Err(corrupt(
            "signed transaction (a SIGNED PSBT request has one, nothing else does)",
        )
        .into());
    }
    Ok(Some(RequestRecord {
        id: *id,
        request,
        signers: split_names(&signers),
        state,
        state_reason,
        signature,
        signed_transaction,
        approvals,
        transitions,
    }))
}

#[cfg(test)]
#[path = "../../tests/support/pg_server.rs"]
pub(crate) mod test_server;

#[cfg(test)]
mod tests;
