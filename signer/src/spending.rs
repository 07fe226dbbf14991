//! The signer's own spending ledger: what this node has signed, per key id,
//! in an embedded SQLite database of its own. Round 2 checks the key's caps
//! against it and records the request **in the same transaction**, before
//! the signature share leaves the node. A crash after the commit and before
//! the share is sent leaves the request counted but unsigned: the ledger can
//! only over-count, so a cap is never exceeded. A request already recorded
//! (a retried round) is not counted again.
//!
//! Bound under a compromised coordinator: each signer caps what it signs
//! itself, and a t-of-n signature needs t signers, so the total signed in a
//! window is at most n/t times the cap (each request uses t of the n
//! signers' budgets). Set the policy's caps with that in mind.

use std::path::Path;
use std::sync::Mutex;

use ringi_policy::limits::{CapExceeded, Limits, Usage, check};
use rusqlite::{Connection, OptionalExtension, params};

use crate::releases::ReleaseLog;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("spending cap: {0}")]
    Cap(#[from] CapExceeded),
    #[error("spending ledger: {0}")]
    Store(String),
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        LedgerError::Store(e.to_string())
    }
}

pub struct SpendingLedger {
    conn: Mutex<Connection>,
    /// The shares released per request input, in the same database file
    /// ([`crate::releases`]).
    releases: ReleaseLog,
}

impl SpendingLedger {
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| LedgerError::Store(format!("{}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The release log writes to the same file from its own connection.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS spent (
                request_id BLOB PRIMARY KEY,
                key_id     TEXT NOT NULL,
                amount     TEXT NOT NULL,
                at         INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS spent_by_key_time ON spent(key_id, at);",
        )?;
        Ok(SpendingLedger {
            conn: Mutex::new(conn),
            releases: ReleaseLog::open(path).map_err(|e| LedgerError::Store(e.to_string()))?,
        })
    }

    /// The node's record of released signature shares.
    pub fn releases(&self) -> &ReleaseLog {
        &self.releases
    }

    /// Checks `limits` for a request of `amount` and records it, atomically.
    /// A request id already recorded passes without being counted again.
    pub fn record(
        &self,
        key_id: &str,
        request_id: &[u8; 32],
        amount: u128,
        now: u64,
        limits: &Limits,
        daily_volume: Option<u128>,
    ) -> Result<(), LedgerError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        // Immediate: the write lock is taken before the read, so two
        // connections never both read and then fail to upgrade.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let known: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM spent WHERE request_id = ?1",
                [&request_id[..]],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_some() {
            return Ok(());
        }
        let since = now.saturating_sub(limits.window_secs) as i64;
        let mut usage = Usage::default();
        if limits.has_window() {
            let mut stmt = tx.prepare("SELECT amount FROM spent WHERE key_id = ?1 AND at > ?2")?;
            let amounts = stmt.query_map(params![key_id, since], |r| r.get::<_, String>(0))?;
            for a in amounts {
                let a: u128 = a?
                    .parse()
                    .map_err(|_| LedgerError::Store("malformed amount".into()))?;
                usage.amount = usage.amount.saturating_add(a);
                usage.requests += 1;
            }
        }
        check(limits, amount, usage, daily_volume)?;
        tx.execute(
            "INSERT INTO spent (request_id, key_id, amount, at) VALUES (?1, ?2, ?3, ?4)",
            params![&request_id[..], key_id, amount.to_string(), now as i64],
        )?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            window_secs: 100,
            max_amount_per_window: Some(25),
            ..Default::default()
        }
    }

    #[test]
    fn caps_hold_across_reopening_and_retries_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite3");
        let ledger = SpendingLedger::open(&path).unwrap();
        ledger
            .record("k", &[1; 32], 10, 1000, &limits(), None)
            .unwrap();
        ledger
            .record("k", &[1; 32], 10, 1001, &limits(), None)
            .unwrap(); // retried round
        drop(ledger);
        let ledger = SpendingLedger::open(&path).unwrap();
        ledger
            .record("k", &[2; 32], 10, 1002, &limits(), None)
            .unwrap();
        let err = ledger
            .record("k", &[3; 32], 10, 1003, &limits(), None)
            .unwrap_err();
        assert!(
            err.to_string().contains("max_amount_per_window 25"),
            "{err}"
        );
        // Other keys have their own budget; after the window, it passes.
        ledger
            .record("other", &[4; 32], 10, 1003, &limits(), None)
            .unwrap();
        ledger
            .record("k", &[3; 32], 10, 1101, &limits(), None)
            .unwrap();
    }
}
