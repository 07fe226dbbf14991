//! This node's vetoes and freezes ([`ringi_policy::holds`]), kept durably
//! in `holds.sqlite3` under the data directory and in memory for the
//! rounds' check.
//!
//! A decision is in force once its call returns OK: it is committed (WAL,
//! `synchronous = FULL`) before the in-memory holds change and before the
//! answer, so an acknowledged veto or freeze survives `kill -9`. The rounds
//! read the memory only ([`HoldStore::hold_on`]), a lock and a map lookup.
//! Writes are rare (a person decides), so each has its own transaction.

use std::path::Path;
use std::sync::{Mutex, RwLock};

use ringi_policy::freeze::{Freeze, FreezeRefused, Scope};
use ringi_policy::holds::{ActiveFreeze, Frozen, Hold, Holds};
use ringi_policy::key_id::KeyId;
use ringi_policy::request::SigningRequest;
use ringi_policy::veto::Veto;
use rusqlite::{Connection, params};

/// The hold store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HoldStoreError {
    #[error("hold store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("hold store: a stored {0} does not decode; refusing to start without it")]
    Corrupt(&'static str),
    #[error(transparent)]
    Refused(#[from] FreezeRefused),
}

pub struct HoldStore {
    conn: Mutex<Connection>,
    holds: RwLock<Holds>,
}

impl HoldStore {
    /// Opens (or creates) the store at `path` (`:memory:` for tests) and
    /// loads every hold.
    pub fn open(path: &Path) -> Result<Self, HoldStoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS vetoes (
                 request_id BLOB PRIMARY KEY,
                 key_id TEXT NOT NULL,
                 approver TEXT NOT NULL,
                 department TEXT NOT NULL,
                 reason TEXT NOT NULL,
                 statement BLOB NOT NULL,
                 recorded_at INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS freezes (
                 freeze_id BLOB PRIMARY KEY,
                 scope TEXT NOT NULL,
                 reason TEXT NOT NULL,
                 issued_at INTEGER NOT NULL,
                 officer_key BLOB NOT NULL,
                 officer TEXT NOT NULL,
                 signature BLOB NOT NULL,
                 recorded_at INTEGER NOT NULL,
                 lifted_at INTEGER,
                 lifted_by TEXT
             );",
        )?;
        let holds = load(&conn)?;
        Ok(HoldStore {
            conn: Mutex::new(conn),
            holds: RwLock::new(holds),
        })
    }

    /// What holds `request_id` of `key_id`, if anything.
    pub fn hold_on(&self, request_id: &[u8; 32], key_id: &KeyId) -> Option<Hold> {
        self.holds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .hold_on(request_id, key_id)
    }

    /// What holds `request` (of its key), if anything. Its id (a hash over
    /// the whole request, a PSBT included) is computed only when this node
    /// holds vetoes at all: the rounds ask this on every call.
    pub fn hold_on_request(&self, request: &SigningRequest) -> Option<Hold> {
        let holds = self.holds.read().unwrap_or_else(|p| p.into_inner());
        if holds.veto_count() > 0
            && let Some(hold) = holds.vetoed(&request.id())
        {
            return Some(hold);
        }
        holds.frozen(&request.key_id)
    }

    /// A copy of every hold (for `GetHolds`).
    pub fn snapshot(&self) -> Holds {
        self.holds.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records a checked veto (`ringi_policy::veto::check_veto`) with the
    /// statement's bytes; false if the request was vetoed already.
    pub fn veto(&self, veto: Veto, statement: &[u8], now: u64) -> Result<bool, HoldStoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let added = conn.execute(
            "INSERT OR IGNORE INTO vetoes
                 (request_id, key_id, approver, department, reason, statement, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                &veto.request_id[..],
                veto.key_id.as_str(),
                veto.approver,
                veto.department,
                veto.reason,
                statement,
                now as i64
            ],
        )?;
        let mut holds = self.holds.write().unwrap_or_else(|p| p.into_inner());
        holds.add_veto(veto);
        Ok(added == 1)
    }

    /// Puts a checked freeze (`ringi_policy::freeze::check_freeze`) in
    /// force, unless it was lifted before; a frozen scope keeps its first
    /// freeze.
    pub fn freeze(
        &self,
        freeze: Freeze,
        officer: String,
        now: u64,
    ) -> Result<Frozen, HoldStoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = self
            .holds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .admit(&freeze)?;
        if outcome != Frozen::New {
            return Ok(outcome);
        }
        let s = &freeze.statement;
        conn.execute(
            "INSERT INTO freezes
                 (freeze_id, scope, reason, issued_at, officer_key, officer, signature, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                &freeze.id()[..],
                s.scope.to_text(),
                s.reason,
                s.issued_at as i64,
                freeze.officer.to_sec1(),
                officer,
                freeze.signature,
                now as i64
            ],
        )?;
        let mut holds = self.holds.write().unwrap_or_else(|p| p.into_inner());
        Ok(holds.freeze(ActiveFreeze {
            freeze,
            officer,
            recorded_at: now,
        })?)
    }

    /// The freeze in force for `scope`.
    pub fn active(&self, scope: &Scope) -> Option<ActiveFreeze> {
        self.holds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .active(scope)
            .cloned()
    }

    /// Lifts the freeze with `freeze_id` in force for `scope` (its
    /// unfreeze checked by the caller); false if it is no longer in force.
    pub fn lift(
        &self,
        scope: &Scope,
        freeze_id: &[u8; 32],
        by: &[String],
        now: u64,
    ) -> Result<bool, HoldStoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let in_force = self
            .holds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .active(scope)
            .is_some_and(|a| a.freeze.id() == *freeze_id);
        if !in_force {
            return Ok(false);
        }
        conn.execute(
            "UPDATE freezes SET lifted_at = ?1, lifted_by = ?2
             WHERE freeze_id = ?3 AND lifted_at IS NULL",
            params![now as i64, by.join(","), &freeze_id[..]],
        )?;
        let mut holds = self.holds.write().unwrap_or_else(|p| p.into_inner());
        Ok(holds.lift(scope).is_some())
    }
}

/// Every hold recorded, in the order recorded.
fn load(conn: &Connection) -> Result<Holds, HoldStoreError> {
    use ringi_policy::approver_key::ApproverKey;
    use ringi_policy::freeze::FreezeStatement;
    let mut holds = Holds::default();
    let mut stmt = conn.prepare(
        "SELECT request_id, key_id, approver, department, reason FROM vetoes ORDER BY recorded_at",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    for row in rows {
        let (id, key_id, approver, department, reason) = row?;
        holds.add_veto(Veto {
            request_id: id.try_into().map_err(|_| HoldStoreError::Corrupt("veto"))?,
            key_id: KeyId::parse(&key_id).map_err(|_| HoldStoreError::Corrupt("veto"))?,
            approver,
            department,
            reason,
        });
    }
    let mut stmt = conn.prepare(
        "SELECT freeze_id, scope, reason, issued_at, officer_key, officer, signature,
                recorded_at, lifted_at
         FROM freezes ORDER BY recorded_at",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, Vec<u8>>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Vec<u8>>(6)?,
            r.get::<_, i64>(7)?,
            r.get::<_, Option<i64>>(8)?,
        ))
    })?;
    for row in rows {
        let (id, scope, reason, issued_at, officer_key, officer, signature, recorded_at, lifted) =
            row?;
        let corrupt = || HoldStoreError::Corrupt("freeze");
        let freeze = Freeze {
            statement: FreezeStatement {
                scope: Scope::parse(&scope).map_err(|_| corrupt())?,
                reason,
                issued_at: issued_at as u64,
            },
            officer: ApproverKey::from_sec1(&officer_key).map_err(|_| corrupt())?,
            signature,
        };
        let id: [u8; 32] = id.try_into().map_err(|_| corrupt())?;
        if freeze.id() != id {
            return Err(corrupt());
        }
        if lifted.is_some() {
            holds.remember_lifted(id);
        } else {
            holds.freeze(ActiveFreeze {
                freeze,
                officer,
                recorded_at: recorded_at as u64,
            })?;
        }
    }
    Ok(holds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;

    fn freeze_by(sk: &p256::ecdsa::SigningKey, scope: Scope, issued_at: u64) -> Freeze {
        let officer = ringi_policy::approver_key::ApproverKey::from_sec1(
            sk.verifying_key().to_encoded_point(true).as_bytes(),
        )
        .unwrap();
        let statement = ringi_policy::freeze::FreezeStatement {
            scope,
            reason: "incident".into(),
            issued_at,
        };
        let sig: p256::ecdsa::Signature = sk.sign(&statement.signed_bytes(&officer));
        Freeze {
            statement,
            officer,
            signature: sig.to_bytes().to_vec(),
        }
    }

    #[test]
    fn holds_survive_a_reopen_and_a_lifted_freeze_stays_lifted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("holds.sqlite3");
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let hot = KeyId::parse("hot-1").unwrap();
        let veto = Veto {
            request_id: [9; 32],
            key_id: hot.clone(),
            approver: "carol".into(),
            department: "compliance".into(),
            reason: "no".into(),
        };
        let first = freeze_by(&sk, Scope::Key(hot.clone()), 100);
        let global = freeze_by(&sk, Scope::All, 100);
        {
            let store = HoldStore::open(&path).unwrap();
            assert!(store.veto(veto.clone(), b"statement", 100).unwrap());
            assert!(!store.veto(veto.clone(), b"statement", 101).unwrap());
            assert_eq!(
                store.freeze(first.clone(), "erin".into(), 100).unwrap(),
                Frozen::New
            );
            assert_eq!(
                store.freeze(global.clone(), "erin".into(), 100).unwrap(),
                Frozen::New
            );
            assert!(
                store
                    .lift(&Scope::All, &global.id(), &["a".into(), "c".into()], 110)
                    .unwrap()
            );
            assert!(!store.lift(&Scope::All, &global.id(), &[], 111).unwrap());
        }
        let store = HoldStore::open(&path).unwrap();
        assert!(matches!(
            store.hold_on(&[9; 32], &hot),
            Some(Hold::Vetoed(v)) if v == veto
        ));
        assert!(matches!(
            store.hold_on(&[1; 32], &hot),
            Some(Hold::Frozen { scope, .. }) if scope == "key:hot-1"
        ));
        let cold = KeyId::parse("cold-1").unwrap();
        assert_eq!(store.hold_on(&[1; 32], &cold), None);
        // The lifted global freeze cannot be replayed after a restart.
        assert!(matches!(
            store.freeze(global, "erin".into(), 120),
            Err(HoldStoreError::Refused(FreezeRefused::Lifted))
        ));
        assert_eq!(store.snapshot().veto_count(), 1);
    }
}
