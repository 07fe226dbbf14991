//! At most one signature share per request input, on this node.
//!
//! The coordinator may sign a request twice (a resumed run racing a live
//! one, a crash between aggregation and its commit): each attempt draws new
//! nonces, so two complete, different, valid signatures of one request
//! could exist. Each signer therefore releases **one** signature share per
//! (request, input) — the share for the first signing package it signs it
//! under — and records it durably before the share leaves:
//! - the same signing package again (a coordinator retrying after a lost
//!   response) gets the same share back, from this log, without touching a
//!   nonce;
//! - another signing package for that input is refused
//!   ([`ReleaseError::AlreadyReleased`], FAILED_PRECONDITION).
//!
//! What it guarantees: a complete signature needs `t` shares from `t`
//! distinct signers, each of whom releases one per input; so with
//! `n < 2t` (2-of-3, 3-of-5, ...) no second signature of any input can
//! ever be made, even by a compromised coordinator.
//!
//! What it costs (liveness): an attempt that fails *after* some signers
//! released (another signer failed between rounds) cannot use those
//! signers again for that input; the coordinator must complete with the
//! same signing package or with signers that have not released. With
//! `n < 2t` a request can then be stranded until it is resubmitted (a new
//! request id). The coordinator keeps such attempts rare by running round 2
//! only when round 1 succeeded on every chosen signer.
//!
//! A crash between signing and the log write loses nothing: the share was
//! never sent, and a new package is accepted. The log lives in the node's
//! ledger database (same file as [`crate::spending`], its own table).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ringi_policy::encoding::sha256;
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    #[error(
        "this node already released its signature share for input {input} of request {request} under another signing package; it releases one share per input (a second signature of the request is refused)"
    )]
    AlreadyReleased { request: String, input: usize },
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

/// The durable record of released shares.
pub struct ReleaseLog {
    conn: Mutex<Connection>,
    in_flight: Arc<Mutex<HashSet<Slot>>>,
}

/// What [`ReleaseLog::claim`] decided.
#[derive(Debug)]
pub enum Claim {
    /// Not released yet: sign, then [`ReleaseLog::record`] before sending.
    Fresh(InFlight),
    /// Released already for this very package: send this share again.
    Again(Vec<u8>),
}

/// A claimed (request, input) being signed; released from the in-flight
/// set when dropped, recorded or not.
#[derive(Debug)]
pub struct InFlight {
    slot: Slot,
    package: [u8; 32],
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

impl ReleaseLog {
    pub fn open(path: &Path) -> Result<Self, ReleaseError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ReleaseError::Store(format!("{}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS released (
                request_id BLOB NOT NULL,
                input      INTEGER NOT NULL,
                package    BLOB NOT NULL,
                share      BLOB NOT NULL,
                at         INTEGER NOT NULL,
                PRIMARY KEY (request_id, input)
            );",
        )?;
        Ok(ReleaseLog {
            conn: Mutex::new(conn),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Claims input `input` of `request_id` for the signing package whose
    /// serialization is `package`.
    pub fn claim(
        &self,
        request_id: &[u8; 32],
        input: usize,
        package: &[u8],
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
        let known: Option<(Vec<u8>, Vec<u8>)> = self
            .conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .query_row(
                "SELECT package, share FROM released WHERE request_id = ?1 AND input = ?2",
                params![&request_id[..], input as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match known {
            Some((released, share)) if released == digest => Ok(Claim::Again(share)),
            Some(_) => Err(ReleaseError::AlreadyReleased {
                request: hex::encode(request_id),
                input,
            }),
            None => {
                in_flight.insert(slot);
                Ok(Claim::Fresh(InFlight {
                    slot,
                    package: digest,
                    set: self.in_flight.clone(),
                }))
            }
        }
    }

    /// Records `share` as released for the claimed input, durably; only
    /// then may it leave the node.
    pub fn record(&self, claim: InFlight, share: &[u8], now: u64) -> Result<(), ReleaseError> {
        self.conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .execute(
                "INSERT INTO released (request_id, input, package, share, at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    &claim.slot.0[..],
                    claim.slot.1 as i64,
                    &claim.package[..],
                    share,
                    now as i64
                ],
            )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_share_per_input_and_the_same_package_gets_the_same_share() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite3");
        let log = ReleaseLog::open(&path).unwrap();
        let Claim::Fresh(claim) = log.claim(&[1; 32], 0, b"package A").unwrap() else {
            panic!("fresh")
        };
        // While it is being signed, nothing else for that input.
        assert!(matches!(
            log.claim(&[1; 32], 0, b"package A"),
            Err(ReleaseError::InProgress { input: 0, .. })
        ));
        // Another input of the same request is its own slot.
        assert!(matches!(
            log.claim(&[1; 32], 1, b"package B"),
            Ok(Claim::Fresh(_))
        ));
        log.record(claim, b"share A", 10).unwrap();
        drop(log);
        // Durable: after reopening (a restart), the same package gets the
        // same share and another package is refused.
        let log = ReleaseLog::open(&path).unwrap();
        match log.claim(&[1; 32], 0, b"package A").unwrap() {
            Claim::Again(share) => assert_eq!(share, b"share A"),
            other => panic!("{other:?}"),
        }
        let err = log.claim(&[1; 32], 0, b"package C").unwrap_err();
        assert!(matches!(
            err,
            ReleaseError::AlreadyReleased { input: 0, .. }
        ));
        assert!(err.to_string().contains("one share per input"), "{err}");
    }

    #[test]
    fn a_claim_dropped_before_its_record_leaves_the_input_free() {
        let dir = tempfile::tempdir().unwrap();
        let log = ReleaseLog::open(&dir.path().join("l.sqlite3")).unwrap();
        let claim = log.claim(&[2; 32], 0, b"A").unwrap();
        drop(claim); // signing failed: no share left the node
        assert!(matches!(log.claim(&[2; 32], 0, b"B"), Ok(Claim::Fresh(_))));
    }
}
