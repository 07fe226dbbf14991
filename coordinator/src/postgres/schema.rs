//! The PostgreSQL schema, versioned: every version is one entry of
//! [`MIGRATIONS`], applied in order at start in one transaction that also
//! records it in `ringi_schema`, so a coordinator sees either the old
//! schema or the new one, never a half-migrated database.
//!
//! How the versions map to the embedded engine's (`sqlite.rs`, SQLite's
//! `user_version`): PostgreSQL version 1 is SQLite version 8 as a whole
//! (keys with kinds, requests with PSBTs and nonces, idempotency keys,
//! signing claims and plans, key retirements). The PostgreSQL schema
//! started there, so it has no steps for SQLite's 1 to 7; a later change
//! gets a new version in both engines, and the comment of each new
//! migration names the SQLite version it matches (version 2 is SQLite's
//! 10). SQLite's version 9 has
//! no PostgreSQL twin: it changed only how that engine's tables are keyed
//! (a request's row number instead of its hash id, for its page writes),
//! nothing either engine stores.
//!
//! Coordinators that start together on an empty database do not race: the
//! migration holds a transaction-scoped advisory lock first, so the second
//! finds the first's schema in place.

use postgres::Client;

/// One schema version.
pub struct Migration {
    pub version: i32,
    /// What it adds, for the `ringi_schema` record.
    pub what: &'static str,
    pub sql: &'static str,
}

/// The advisory lock migrations hold ("ringi-sc" as an integer): only
/// ringi's coordinators take it.
const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"ringi-sc");

/// Every schema version, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        what: "keys, requests, approvals, history, idempotency keys, signing claims and plans, key retirements (SQLite schema 8)",
        sql: "
        CREATE TABLE keys (
            key_id             TEXT PRIMARY KEY,
            kind               TEXT NOT NULL,
            threshold          INTEGER NOT NULL,
            group_public_key   BYTEA NOT NULL,
            public_key_package BYTEA NOT NULL,
            created_at         BIGINT NOT NULL
        );
        CREATE TABLE key_signers (
            key_id      TEXT NOT NULL REFERENCES keys(key_id),
            signer_name TEXT NOT NULL,
            identifier  INTEGER NOT NULL,
            PRIMARY KEY (key_id, signer_name),
            UNIQUE (key_id, identifier)
        );
        CREATE TABLE key_retirements (
            key_id              TEXT PRIMARY KEY REFERENCES keys(key_id),
            order_id            BYTEA NOT NULL,
            signed_order        BYTEA NOT NULL,
            destroy_after       BIGINT NOT NULL,
            admins              TEXT NOT NULL,
            retired_at          BIGINT NOT NULL,
            shares_destroyed_at BIGINT
        );
        -- Amounts are u128 in decimal text, as in SQLite: the caps add
        -- them up in Rust.
        CREATE TABLE requests (
            request_id     BYTEA PRIMARY KEY,
            key_id         TEXT NOT NULL,
            message        BYTEA NOT NULL,
            asset          TEXT NOT NULL,
            amount         TEXT NOT NULL,
            destination    TEXT NOT NULL,
            memo           TEXT NOT NULL,
            requester      TEXT NOT NULL,
            created_at     BIGINT NOT NULL,
            expires_at     BIGINT NOT NULL,
            policy_hash    BYTEA NOT NULL,
            signers        TEXT NOT NULL,
            state          TEXT NOT NULL,
            state_reason   TEXT NOT NULL,
            signature      BYTEA,
            psbt           BYTEA,
            counted_amount TEXT NOT NULL,
            signed_psbt    BYTEA,
            signed_tx      BYTEA,
            nonce          BYTEA NOT NULL
        );
        CREATE INDEX requests_by_state ON requests(state);
        CREATE INDEX requests_by_time ON requests(created_at DESC, request_id DESC);
        -- The caps' window count reads a range of this index: under
        -- SERIALIZABLE its predicate lock covers that key's window only,
        -- so submissions for other keys never conflict with it.
        CREATE INDEX requests_by_key_time ON requests(key_id, created_at);
        CREATE TABLE approvals (
            request_id     BYTEA NOT NULL REFERENCES requests(request_id),
            approver_key   BYTEA NOT NULL,
            department     TEXT NOT NULL,
            decision       TEXT NOT NULL,
            reason         TEXT NOT NULL,
            issued_at      BIGINT NOT NULL,
            expires_at     BIGINT NOT NULL,
            content_digest BYTEA NOT NULL,
            signature      BYTEA NOT NULL,
            received_at    BIGINT NOT NULL,
            -- The order decisions arrived in (SQLite's rowid).
            position       BIGINT GENERATED ALWAYS AS IDENTITY,
            PRIMARY KEY (request_id, approver_key)
        );
        CREATE INDEX approvals_by_time ON approvals(received_at);
        CREATE TABLE transitions (
            request_id BYTEA NOT NULL REFERENCES requests(request_id),
            seq        INTEGER NOT NULL,
            from_state TEXT NOT NULL,
            to_state   TEXT NOT NULL,
            reason     TEXT NOT NULL,
            at         BIGINT NOT NULL,
            PRIMARY KEY (request_id, seq)
        );
        CREATE INDEX transitions_by_time ON transitions(at);
        CREATE TABLE idempotency_keys (
            requester       TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            content_hash    BYTEA NOT NULL,
            request_id      BYTEA NOT NULL REFERENCES requests(request_id),
            PRIMARY KEY (requester, idempotency_key)
        );
        CREATE TABLE signing_claims (
            request_id  BYTEA PRIMARY KEY REFERENCES requests(request_id),
            fence       BIGINT NOT NULL,
            owner       TEXT NOT NULL,
            lease_until BIGINT NOT NULL
        );
        CREATE TABLE signing_plans (
            request_id BYTEA NOT NULL REFERENCES requests(request_id),
            input      INTEGER NOT NULL,
            seq        INTEGER NOT NULL,
            package    BYTEA NOT NULL,
            signers    TEXT NOT NULL,
            PRIMARY KEY (request_id, input, seq)
        );
    ",
    },
    Migration {
        version: 2,
        what: "running totals of each key's requests, for window caps (SQLite schema 10)",
        // As SQLite's schema 10 (`ringi_policy::running_totals`): each request gets
        // its key's running totals, in creation order, and is counted when it
        // was made. The amounts are u128 in decimal text; their sums are
        // made in `numeric`, saturated at u128's largest value as
        // `Usage::add` does. `requests_by_key_count` serves what
        // `requests_by_key_time` served (and the conflicts of two submissions
        // for one key, see the engine's module docs), so the latter goes.
        sql: "
        ALTER TABLE requests
            ADD COLUMN counted_at     BIGINT,
            ADD COLUMN running_amount TEXT,
            ADD COLUMN running_count  BIGINT;
        UPDATE requests r
        SET counted_at = t.created_at, running_amount = t.running_amount,
            running_count = t.running_count
        FROM (
            SELECT request_id, created_at,
                   LEAST(SUM(counted_amount::numeric) OVER w,
                         340282366920938463463374607431768211455)::text AS running_amount,
                   ROW_NUMBER() OVER w AS running_count
            FROM requests
            WINDOW w AS (PARTITION BY key_id ORDER BY created_at, request_id
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        ) t
        WHERE r.request_id = t.request_id;
        ALTER TABLE requests
            ALTER COLUMN counted_at SET NOT NULL,
            ALTER COLUMN running_amount SET NOT NULL,
            ALTER COLUMN running_count SET NOT NULL;
        CREATE INDEX requests_by_key_count ON requests(key_id, counted_at, running_count);
        CREATE INDEX requests_uncounted ON requests(key_id, counted_at)
            WHERE state IN ('REJECTED', 'EXPIRED', 'FAILED');
        DROP INDEX requests_by_key_time;
    ",
    },
];

/// The version this build writes.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the PostgreSQL store's schema is version {found}, newer than this ringi's ({latest}); upgrade ringi"
    )]
    Newer { found: i32, latest: i32 },
    #[error("PostgreSQL schema migration failed: {}", super::connect::describe_error(.0))]
    Sql(#[from] postgres::Error),
}

/// Creates or upgrades the schema in one transaction; returns the version
/// it was at.
pub fn migrate(client: &mut Client) -> Result<i32, MigrateError> {
    migrate_to(client, latest())
}

/// [`migrate`] up to version `target` only (tests that write a database
/// as an older ringi did).
pub fn migrate_to(client: &mut Client, target: i32) -> Result<i32, MigrateError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS ringi_schema (
             version    INTEGER PRIMARY KEY,
             what       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )?;
    let found: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM ringi_schema", &[])?
        .get(0);
    if found > latest() {
        return Err(MigrateError::Newer {
            found,
            latest: latest(),
        });
    }
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > found && m.version <= target)
    {
        tx.batch_execute(m.sql)?;
        tx.execute(
            "INSERT INTO ringi_schema (version, what) VALUES ($1, $2)",
            &[&m.version, &m.what],
        )?;
    }
    tx.commit()?;
    Ok(found)
}
