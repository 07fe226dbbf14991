//! This node's vetoes, freezes and key retirements ([`ringi_policy::holds`]),
//! kept durably in `holds.sqlite3` under the data directory and in memory
//! for the rounds' check.
//!
//! A decision is in force once its call returns OK: it is committed (WAL,
//! `synchronous = FULL`) before the in-memory holds change and before the
//! answer, so an acknowledged veto, freeze or retirement survives
//! `kill -9`. The rounds
//! read the memory only ([`HoldStore::hold_on`]), a lock and a map lookup.
//! Writes are rare (a person decides), so each has its own transaction.

use std::path::Path;
use std::sync::{Mutex, RwLock};

use ringi_policy::freeze::{Freeze, FreezeRefused, Scope};
use ringi_policy::holds::{ActiveFreeze, Frozen, Hold, Holds, Retired};
use ringi_policy::key_id::KeyId;
use ringi_policy::request::SigningRequest;
use ringi_policy::retirement::Retirement;
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
             );
             CREATE TABLE IF NOT EXISTS retirements (
                 key_id TEXT PRIMARY KEY,
                 order_id BLOB NOT NULL,
                 -- the whole signed order (ringi.approval.v1.KeyOrder,
                 -- protobuf): the evidence, checked again at load
                 signed_order BLOB NOT NULL,
                 destroy_after INTEGER NOT NULL,
                 admins TEXT NOT NULL,
                 accepted_at INTEGER NOT NULL,
                 -- the share generations destroyed in the token, comma
                 -- separated, noted before destroyed_at is set
                 destroyed_generations TEXT NOT NULL DEFAULT '',
                 destroyed_at INTEGER
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
        if let Some(retired) = holds.retired(&request.key_id) {
            return Some(retired);
        }
        if holds.veto_count() > 0
            && let Some(hold) = holds.vetoed(&request.id())
        {
            return Some(hold);
        }
        holds.frozen(&request.key_id)
    }

    /// The retirement of `key_id` as a hold, if the key is retired: what
    /// every round, preprocessing and DKG step checks first.
    pub fn retired(&self, key_id: &KeyId) -> Option<Hold> {
        self.holds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .retired(key_id)
    }

    /// The retirement of `key_id`, if any.
    pub fn retirement(&self, key_id: &KeyId) -> Option<Retirement> {
        self.holds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .retirement(key_id)
            .cloned()
    }

    /// The retired keys whose shares are due for destruction at `now`.
    pub fn due(&self, now: u64) -> Vec<KeyId> {
        self.holds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .due(now)
    }

    /// Puts a checked retirement (`ringi_policy::retirement::check_retire`)
    /// in force, with the signed order as delivered (protobuf), unless the
    /// key is retired already (then the first retirement stands and is
    /// returned). Committed before the in-memory holds change.
    pub fn retire(
        &self,
        retirement: Retirement,
        signed_order: &[u8],
    ) -> Result<Retired, HoldStoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(first) = self
            .holds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .retirement(&retirement.key_id)
        {
            return Ok(Retired::Already(Box::new(first.clone())));
        }
        conn.execute(
            "INSERT INTO retirements
                 (key_id, order_id, signed_order, destroy_after, admins, accepted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                retirement.key_id.as_str(),
                &retirement.order_id[..],
                signed_order,
                retirement.destroy_after as i64,
                retirement.admins_text(),
                retirement.accepted_at as i64
            ],
        )?;
        let mut holds = self.holds.write().unwrap_or_else(|p| p.into_inner());
        Ok(holds.retire(retirement))
    }

    /// Notes durably that `generations` of `key_id`'s shares were destroyed
    /// in the token (before the destruction is audited and marked done, so
    /// a destruction interrupted after the token's is audited with what it
    /// destroyed); returns every generation noted for the key so far.
    pub fn note_destroyed(
        &self,
        key_id: &KeyId,
        generations: &[u32],
    ) -> Result<Vec<u32>, HoldStoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let noted: String = conn.query_row(
            "SELECT destroyed_generations FROM retirements WHERE key_id = ?1",
            [key_id.as_str()],
            |r| r.get(0),
        )?;
        let mut all = parse_generations(&noted)?;
        all.extend_from_slice(generations);
        all.sort_unstable();
        all.dedup();
        if !generations.is_empty() {
            conn.execute(
                "UPDATE retirements SET destroyed_generations = ?2 WHERE key_id = ?1",
                params![key_id.as_str(), join_generations(&all)],
            )?;
        }
        Ok(all)
    }

    /// Records that `key_id`'s shares are destroyed (at `now`); false if
    /// they were recorded destroyed already.
    pub fn mark_destroyed(&self, key_id: &KeyId, now: u64) -> Result<bool, HoldStoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute(
            "UPDATE retirements SET destroyed_at = ?2
             WHERE key_id = ?1 AND destroyed_at IS NULL",
            params![key_id.as_str(), now as i64],
        )?;
        let mut holds = self.holds.write().unwrap_or_else(|p| p.into_inner());
        Ok(holds.mark_destroyed(key_id, now))
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

/// Generations as stored: comma separated, possibly none.
fn parse_generations(text: &str) -> Result<Vec<u32>, HoldStoreError> {
    text.split(',')
        .filter(|g| !g.is_empty())
        .map(|g| {
            g.parse()
                .map_err(|_| HoldStoreError::Corrupt("retirement's destroyed generations"))
        })
        .collect()
}

fn join_generations(generations: &[u32]) -> String {
    generations
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Every retirement recorded; each stored order must decode to the
/// recorded key, id and time (a row edited by hand is refused, as a freeze
/// is).
fn load_retirements(conn: &Connection, holds: &mut Holds) -> Result<(), HoldStoreError> {
    use prost::Message;
    let mut stmt = conn.prepare(
        "SELECT key_id, order_id, signed_order, destroy_after, admins, accepted_at, destroyed_at
         FROM retirements ORDER BY accepted_at",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Vec<u8>>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, Option<i64>>(6)?,
        ))
    })?;
    for row in rows {
        let (key_id, order_id, signed, destroy_after, admins, accepted_at, destroyed_at) = row?;
        let corrupt = || HoldStoreError::Corrupt("retirement");
        let key_id = KeyId::parse(&key_id).map_err(|_| corrupt())?;
        let order_id: [u8; 32] = order_id.try_into().map_err(|_| corrupt())?;
        let wire = ringi_proto::approval::v1::KeyOrder::decode(signed.as_slice())
            .map_err(|_| corrupt())?;
        let order = ringi_proto::key_order::order_from_pb(&wire)
            .map_err(|_| corrupt())?
            .order;
        let matches = order.id() == order_id
            && order.key_id == key_id
            && order.action
                == (ringi_policy::key_order::Action::Retire {
                    destroy_after: destroy_after as u64,
                });
        if !matches {
            return Err(corrupt());
        }
        holds.retire(Retirement {
            key_id,
            order_id,
            destroy_after: destroy_after as u64,
            admins: Retirement::admins_from_text(&admins),
            accepted_at: accepted_at as u64,
            destroyed_at: destroyed_at.map(|t| t as u64),
        });
    }
    Ok(())
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
    load_retirements(conn, &mut holds)?;
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

/// Retires `key_id` in `store` as if a checked order (of no signatures)
/// had arrived at time 100: the rounds' and the sweeper's unit tests.
#[cfg(test)]
pub(crate) fn retire_for_test(store: &HoldStore, key_id: &KeyId, destroy_after: u64) {
    use prost::Message;
    use ringi_policy::key_order::{Action, KeyOrder, SignedOrder};
    let order = KeyOrder {
        key_id: key_id.clone(),
        action: Action::Retire { destroy_after },
        expires_at: destroy_after.saturating_add(600),
    };
    let wire = ringi_proto::key_order::order_to_pb(&SignedOrder {
        order: order.clone(),
        signatures: Vec::new(),
    })
    .encode_to_vec();
    let retirement = Retirement {
        key_id: key_id.clone(),
        order_id: order.id(),
        destroy_after,
        admins: vec!["alice".into(), "carol".into()],
        accepted_at: 100,
        destroyed_at: None,
    };
    store.retire(retirement, &wire).unwrap();
}

#[cfg(test)]
mod retirement_tests {
    use super::*;
    use prost::Message;
    use ringi_policy::key_order::{Action, KeyOrder, SignedOrder};

    fn order(key: &str, destroy_after: u64) -> (Retirement, Vec<u8>) {
        let order = KeyOrder {
            key_id: KeyId::parse(key).unwrap(),
            action: Action::Retire { destroy_after },
            expires_at: 2_000,
        };
        let wire = ringi_proto::key_order::order_to_pb(&SignedOrder {
            order: order.clone(),
            signatures: Vec::new(),
        })
        .encode_to_vec();
        let retirement = Retirement {
            key_id: order.key_id.clone(),
            order_id: order.id(),
            destroy_after,
            admins: vec!["alice".into(), "carol".into()],
            accepted_at: 1_000,
            destroyed_at: None,
        };
        (retirement, wire)
    }

    #[test]
    fn a_retirement_survives_a_reopen_with_its_destruction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("holds.sqlite3");
        let hot = KeyId::parse("hot-1").unwrap();
        let (first, wire) = order("hot-1", 1_030);
        {
            let store = HoldStore::open(&path).unwrap();
            assert_eq!(store.retire(first.clone(), &wire).unwrap(), Retired::New);
            let (second, wire2) = order("hot-1", 1_001);
            assert_eq!(
                store.retire(second, &wire2).unwrap(),
                Retired::Already(Box::new(first.clone()))
            );
            assert!(store.due(1_029).is_empty());
            assert_eq!(store.due(1_030), vec![hot.clone()]);
            assert_eq!(store.note_destroyed(&hot, &[2, 1]).unwrap(), vec![1, 2]);
        }
        // Reopened before the destruction was marked: still due, and the
        // generations noted are kept.
        let store = HoldStore::open(&path).unwrap();
        assert_eq!(store.due(1_030), vec![hot.clone()]);
        assert_eq!(store.note_destroyed(&hot, &[]).unwrap(), vec![1, 2]);
        assert!(store.mark_destroyed(&hot, 1_031).unwrap());
        assert!(!store.mark_destroyed(&hot, 1_032).unwrap());
        drop(store);
        let store = HoldStore::open(&path).unwrap();
        assert!(store.due(5_000).is_empty());
        let kept = store.retirement(&hot).unwrap();
        assert_eq!(kept.destroyed_at, Some(1_031));
        assert_eq!(kept.destroy_after, 1_030);
        assert!(matches!(store.retired(&hot), Some(Hold::Retired(_))));
        let request_hold = store.hold_on(&[1; 32], &hot);
        assert!(matches!(request_hold, Some(Hold::Retired(_))));
    }

    #[test]
    fn an_edited_retirement_row_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("holds.sqlite3");
        let (first, wire) = order("hot-1", 1_030);
        HoldStore::open(&path)
            .unwrap()
            .retire(first, &wire)
            .unwrap();
        // Someone moves the destruction time without a new order.
        let conn = Connection::open(&path).unwrap();
        conn.execute("UPDATE retirements SET destroy_after = 9999999", [])
            .unwrap();
        drop(conn);
        assert!(matches!(
            HoldStore::open(&path),
            Err(HoldStoreError::Corrupt("retirement"))
        ));
    }
}
