//! The signature shares this node released, per request input, and the
//! rule for releasing another.
//!
//! The coordinator may sign a request twice (a resumed run racing a live
//! one, a crash between aggregation and its commit), and robust signing
//! replaces a signer that failed after others released: each new signing
//! package draws new nonces, so several valid signatures of one input could
//! exist. Each signer therefore records every share it releases durably,
//! before the share leaves, with the set `E` of identifiers the coordinator
//! said it excluded for cause from that package
//! (`SignRequest.excluded_identifiers`):
//! - the same signing package again (a coordinator retrying after a lost
//!   response) gets the same share back, from this log, without touching a
//!   nonce;
//! - a new package for that input is signed only if its `E` holds none of
//!   its own signers and strictly includes the `E` of every package this
//!   node released for the input before ([`ReleaseError::AlreadyReleased`],
//!   FAILED_PRECONDITION, otherwise).
//!
//! What it guarantees: `E` grows by at least one identifier per package and
//! never holds more than `n - t` (the package's own `t` signers are outside
//! it), so this node releases at most `n - t + 1` shares per input, all
//! over the same approved message (whose approvals and caps were checked
//! for each). An honest coordinator makes one signature; a compromised one
//! can get a few signatures of the *same* approved message, never one of
//! another message. For 2-of-3: at most two signatures, and a third would
//! need a signer to sign a package whose `E` does not grow.
//!
//! What it costs (liveness): a signer that released for a package cannot
//! sign a new one with exactly the same signers; the coordinator completes
//! the same package (resume) or replaces the failed signer.
//!
//! A crash between signing and the log write loses nothing: the share was
//! never sent, and the nonces are gone. The log lives in the node's ledger
//! database (same file as [`crate::spending`], its own table); round 2
//! writes a release and the request's spend in one transaction, shared
//! with concurrent Signs (one fsync for many), and holds the claim until
//! it is committed.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ringi_policy::encoding::sha256;
use rusqlite::{Connection, params};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    #[error(
        "this node already released its signature share for input {input} of request {request} under another signing package (excluding {earlier:?}); a new package must exclude a strict superset of those signers, not {excluded:?}"
    )]
    AlreadyReleased {
        request: String,
        input: usize,
        /// The identifiers excluded from the earlier package it failed.
        earlier: Vec<u16>,
        /// The identifiers the new package excludes.
        excluded: Vec<u16>,
    },
    #[error("input {input} of request {request} is being signed by this node right now")]
    InProgress { request: String, input: usize },
    #[error("release log: {0}")]
    Store(String),
}

impl From<rusqlite::Error> for ReleaseError {
    fn from(e: rusqlite::Error) -> Self {
        ReleaseError::Store(e.to_string())
    }
}

type Slot = ([u8; 32], usize);

/// The identifiers a package excludes, as a set: sorted, no duplicates.
pub type Excluded = std::collections::BTreeSet<u16>;

/// The durable record of released shares.
pub struct ReleaseLog {
    conn: Mutex<Connection>,
    in_flight: Arc<Mutex<HashSet<Slot>>>,
}

/// What [`ReleaseLog::claim`] decided.
#[derive(Debug)]
pub enum Claim {
    /// Not released under this package: sign, then [`ReleaseLog::record`]
    /// before sending.
    Fresh(InFlight),
    /// Released already for this very package: send this share again.
    Again(Vec<u8>),
}

/// A claimed (request, input) being signed under one package; released
/// from the in-flight set when dropped, recorded or not.
#[derive(Debug)]
pub struct InFlight {
    slot: Slot,
    package: [u8; 32],
    excluded: Excluded,
    set: Arc<Mutex<HashSet<Slot>>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.slot);
    }
}

/// `excluded` as stored: big-endian u16s in ascending order.
fn encode(excluded: &Excluded) -> Vec<u8> {
    excluded.iter().flat_map(|id| id.to_be_bytes()).collect()
}

fn decode(bytes: &[u8]) -> Result<Excluded, ReleaseError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(ReleaseError::Store(
            "a stored excluded set has an odd length".into(),
        ));
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

impl ReleaseLog {
    pub fn open(path: &Path) -> Result<Self, ReleaseError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ReleaseError::Store(format!("{}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // `share_releases` holds every package released per input; a log
        // from before (one row per input, table `released`) is carried
        // over in the same transaction, each row with an empty excluded
        // set (what its package was sent with).
        let tx = conn.transaction()?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS share_releases (
                request_id BLOB NOT NULL,
                input      INTEGER NOT NULL,
                package    BLOB NOT NULL,
                excluded   BLOB NOT NULL,
                share      BLOB NOT NULL,
                at         INTEGER NOT NULL,
                PRIMARY KEY (request_id, input, package)
            );",
        )?;
        let old: bool = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'released'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        if old {
            tx.execute_batch(
                "INSERT OR IGNORE INTO share_releases (request_id, input, package, excluded, share, at)
                   SELECT request_id, input, package, X'', share, at FROM released;
                 DROP TABLE released;",
            )?;
        }
        tx.commit()?;
        Ok(ReleaseLog {
            conn: Mutex::new(conn),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Claims input `input` of `request_id` for the signing package whose
    /// serialization is `package`, sent with `excluded` (which the caller
    /// has checked holds none of the package's signers).
    pub fn claim(
        &self,
        request_id: &[u8; 32],
        input: usize,
        package: &[u8],
        excluded: &Excluded,
    ) -> Result<Claim, ReleaseError> {
        let digest = sha256(package);
        let slot = (*request_id, input);
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if in_flight.contains(&slot) {
            return Err(ReleaseError::InProgress {
                request: hex::encode(request_id),
                input,
            });
        }
        let earlier: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = {
            let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            let mut stmt = conn.prepare_cached(
                "SELECT package, excluded, share FROM share_releases
                  WHERE request_id = ?1 AND input = ?2",
            )?;
            stmt.query_map(params![&request_id[..], input as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?
        };
        for (released, _, share) in &earlier {
            if released[..] == digest[..] {
                return Ok(Claim::Again(share.clone()));
            }
        }
        for (_, before, _) in &earlier {
            let before = decode(before)?;
            if !(excluded.is_superset(&before) && excluded.len() > before.len()) {
                return Err(ReleaseError::AlreadyReleased {
                    request: hex::encode(request_id),
                    input,
                    earlier: before.into_iter().collect(),
                    excluded: excluded.iter().copied().collect(),
                });
            }
        }
        in_flight.insert(slot);
        Ok(Claim::Fresh(InFlight {
            slot,
            package: digest,
            excluded: excluded.clone(),
            set: self.in_flight.clone(),
        }))
    }

    /// Records `share` as released for the claimed package, durably; only
    /// then may it leave the node.
    pub fn record(&self, claim: InFlight, share: &[u8], now: u64) -> Result<(), ReleaseError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Self::insert(&conn, &claim, share, now)
    }

    /// Writes the release of `share` under `claim` on `conn`, inside the
    /// caller's transaction: round 2 writes it with the request's spend, in
    /// one commit ([`crate::spending::SpendingLedger::release`]), and keeps
    /// `claim` until that commit returned.
    pub(crate) fn insert(
        conn: &Connection,
        claim: &InFlight,
        share: &[u8],
        now: u64,
    ) -> Result<(), ReleaseError> {
        conn.prepare_cached(
            "INSERT INTO share_releases (request_id, input, package, excluded, share, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            &claim.slot.0[..],
            claim.slot.1 as i64,
            &claim.package[..],
            encode(&claim.excluded),
            share,
            now as i64
        ])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Excluded {
        Excluded::new()
    }

    fn set(ids: &[u16]) -> Excluded {
        ids.iter().copied().collect()
    }

    #[test]
    fn the_same_package_gets_the_same_share_and_another_must_exclude_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite3");
        let log = ReleaseLog::open(&path).unwrap();
        let Claim::Fresh(claim) = log.claim(&[1; 32], 0, b"package A", &none()).unwrap() else {
            panic!("fresh")
        };
        // While it is being signed, nothing else for that input.
        assert!(matches!(
            log.claim(&[1; 32], 0, b"package A", &none()),
            Err(ReleaseError::InProgress { input: 0, .. })
        ));
        // Another input of the same request is its own slot.
        assert!(matches!(
            log.claim(&[1; 32], 1, b"package B", &none()),
            Ok(Claim::Fresh(_))
        ));
        log.record(claim, b"share A", 10).unwrap();
        drop(log);
        // Durable: after reopening (a restart), the same package gets the
        // same share, whatever it is sent with, and another package that
        // excludes no more is refused.
        let log = ReleaseLog::open(&path).unwrap();
        for excluded in [none(), set(&[3])] {
            match log.claim(&[1; 32], 0, b"package A", &excluded).unwrap() {
                Claim::Again(share) => assert_eq!(share, b"share A"),
                other => panic!("{other:?}"),
            }
        }
        let err = log.claim(&[1; 32], 0, b"package C", &none()).unwrap_err();
        assert!(matches!(
            err,
            ReleaseError::AlreadyReleased { input: 0, .. }
        ));
        assert!(err.to_string().contains("strict superset"), "{err}");
        // Excluding one signer more, it is signed; then a third package
        // must exclude more than {2}.
        let Claim::Fresh(claim) = log.claim(&[1; 32], 0, b"package C", &set(&[2])).unwrap() else {
            panic!("fresh")
        };
        log.record(claim, b"share C", 11).unwrap();
        for excluded in [none(), set(&[2]), set(&[3]), set(&[1, 3])] {
            let err = log.claim(&[1; 32], 0, b"package D", &excluded).unwrap_err();
            assert!(
                matches!(err, ReleaseError::AlreadyReleased { .. }),
                "{excluded:?}: {err}"
            );
        }
        assert!(matches!(
            log.claim(&[1; 32], 0, b"package D", &set(&[2, 3])),
            Ok(Claim::Fresh(_))
        ));
        // And both earlier packages still get their own shares.
        assert!(matches!(
            log.claim(&[1; 32], 0, b"package C", &none()),
            Ok(Claim::Again(s)) if s == b"share C"
        ));
    }

    /// With `n` signers and threshold `t`, a coordinator that always
    /// excludes one more gets at most `n - t + 1` shares from one node.
    #[test]
    fn at_most_n_minus_t_plus_one_shares_per_input() {
        let dir = tempfile::tempdir().unwrap();
        let log = ReleaseLog::open(&dir.path().join("l.sqlite3")).unwrap();
        // 3-of-5, this node is 1: packages can exclude at most 2 of the
        // others (2..=5 holds four, three of them are co-signers).
        let mut released = 0;
        let mut excluded = none();
        for next in [None, Some(4), Some(5), Some(3)] {
            if let Some(id) = next {
                excluded.insert(id);
            }
            // A package of t = 3 signers disjoint from `excluded`.
            if 5 - excluded.len() < 3 {
                break;
            }
            let package = format!("package excluding {excluded:?}");
            if let Claim::Fresh(c) = log
                .claim(&[9; 32], 0, package.as_bytes(), &excluded)
                .unwrap()
            {
                log.record(c, b"s", 1).unwrap();
                released += 1;
            }
        }
        assert_eq!(released, 5 - 3 + 1);
    }

    #[test]
    fn a_claim_dropped_before_its_record_leaves_the_input_free() {
        let dir = tempfile::tempdir().unwrap();
        let log = ReleaseLog::open(&dir.path().join("l.sqlite3")).unwrap();
        let claim = log.claim(&[2; 32], 0, b"A", &none()).unwrap();
        drop(claim); // signing failed: no share left the node
        assert!(matches!(
            log.claim(&[2; 32], 0, b"B", &none()),
            Ok(Claim::Fresh(_))
        ));
    }

    /// A log written before excluded sets were kept (one row per input,
    /// table `released`) is carried over: its shares are sent again, and
    /// a new package must exclude someone.
    #[test]
    fn an_older_log_is_carried_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE released (request_id BLOB NOT NULL, input INTEGER NOT NULL,
                   package BLOB NOT NULL, share BLOB NOT NULL, at INTEGER NOT NULL,
                   PRIMARY KEY (request_id, input));",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO released VALUES (?1, 0, ?2, ?3, 5)",
                params![&[7u8; 32][..], &sha256(b"old package")[..], b"old share"],
            )
            .unwrap();
        }
        let log = ReleaseLog::open(&path).unwrap();
        assert!(matches!(
            log.claim(&[7; 32], 0, b"old package", &none()),
            Ok(Claim::Again(s)) if s == b"old share"
        ));
        assert!(matches!(
            log.claim(&[7; 32], 0, b"new", &none()),
            Err(ReleaseError::AlreadyReleased { .. })
        ));
        assert!(matches!(
            log.claim(&[7; 32], 0, b"new", &set(&[2])),
            Ok(Claim::Fresh(_))
        ));
        drop(log);
        // Opening again does not carry it twice (the old table is gone).
        ReleaseLog::open(&path).unwrap();
    }
}
