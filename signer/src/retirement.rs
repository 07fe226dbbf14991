//! The end of a retired key on this node: once its retirement's
//! `destroy_after` has passed, every share of the key (each generation, in
//! use or waiting) is destroyed in the token.
//!
//! [`Shredder::sweep`] runs once at start and then every
//! [`SWEEP_INTERVAL`] (`crate::server`); between sweeps it costs a read of
//! the in-memory holds. For each key due, in order:
//! 1. the generations about to be destroyed are noted durably in the hold
//!    store;
//! 2. the key's shares are destroyed in both suites' vaults
//!    ([`ShareVault::destroy`], idempotent: a key id names a key of one
//!    kind, and a retried destruction finds nothing left);
//! 3. a `key_shares_destroyed` audit entry (key id, order id, kind,
//!    generations) is written durably;
//! 4. the destruction is marked done (`destroyed_at`).
//!
//! A failure at any step leaves the key due: the next sweep starts again at
//! step 1 (which then finds nothing more to note or destroy) and audits
//! what step 1 noted, so an interruption between the token's destruction
//! and the audit entry still ends in one entry naming what was destroyed. A failing key is
//! retried no sooner than [`RETRY_AFTER_SECS`] later, so a broken token
//! does not flood the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringi_frost::KeyKind;
use ringi_frost::taproot::Secp256k1Tr;
use ringi_policy::key_id::KeyId;

use crate::holds::{HoldStore, HoldStoreError};
use crate::node_audit::{AuditSink, AuditUnavailable, audited};
use crate::vault::{ShareVault, VaultError};

/// How often the node looks for retired keys due for destruction.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How long a key whose destruction failed waits before the next attempt.
pub const RETRY_AFTER_SECS: u64 = 30;

/// What one key's destruction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destroyed {
    pub key_id: KeyId,
    /// The kind of the shares destroyed now; `None` if the token held none
    /// (never held, or destroyed by an interrupted earlier sweep).
    pub kind: Option<KeyKind>,
    /// Every generation destroyed for the key, this sweep's and an
    /// interrupted earlier one's.
    pub generations: Vec<u32>,
}

/// Why a key's destruction did not complete (it stays due).
#[derive(Debug, thiserror::Error)]
pub enum ShredError {
    #[error("key {key_id}: {source}")]
    Vault {
        key_id: KeyId,
        #[source]
        source: VaultError,
    },
    #[error("key {key_id}: {source}")]
    Store {
        key_id: KeyId,
        #[source]
        source: HoldStoreError,
    },
    #[error("key {key_id}: {source}")]
    Audit {
        key_id: KeyId,
        #[source]
        source: Box<AuditUnavailable>,
    },
}

/// Destroys the shares of retired keys when they are due.
pub struct Shredder {
    holds: Arc<HoldStore>,
    frost: Arc<dyn ShareVault<ringi_frost::Secp256k1>>,
    taproot: Arc<dyn ShareVault<Secp256k1Tr>>,
    audit: Arc<dyn AuditSink>,
    /// Keys whose last attempt failed: not before this time again.
    backoff: Mutex<HashMap<KeyId, u64>>,
}

impl Shredder {
    pub fn new(
        holds: Arc<HoldStore>,
        frost: Arc<dyn ShareVault<ringi_frost::Secp256k1>>,
        taproot: Arc<dyn ShareVault<Secp256k1Tr>>,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        Shredder {
            holds,
            frost,
            taproot,
            audit,
            backoff: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any retired key is due at `now` (a read of the in-memory
    /// holds: the async loop asks this before it takes a blocking thread).
    pub fn any_due(&self, now: u64) -> bool {
        !self.holds.due(now).is_empty()
    }

    /// Destroys the shares of every retired key due at `now` (see the
    /// module documentation); one result per key attempted. Blocking
    /// (token calls, fsyncs).
    pub fn sweep(&self, now: u64) -> Vec<Result<Destroyed, ShredError>> {
        let due = self.holds.due(now);
        let mut results = Vec::with_capacity(due.len());
        for key_id in due {
            let waiting = self
                .backoff
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key_id)
                .is_some_and(|until| now < *until);
            if waiting {
                continue;
            }
            let result = self.shred(&key_id, now);
            let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
            match &result {
                Ok(_) => backoff.remove(&key_id),
                Err(_) => backoff.insert(key_id.clone(), now.saturating_add(RETRY_AFTER_SECS)),
            };
            results.push(result);
        }
        results
    }

    fn shred(&self, key_id: &KeyId, now: u64) -> Result<Destroyed, ShredError> {
        let vault = |source| ShredError::Vault {
            key_id: key_id.clone(),
            source,
        };
        let store = |source| ShredError::Store {
            key_id: key_id.clone(),
            source,
        };
        // What is about to be destroyed is noted durably first: a kill -9
        // between the token's destruction and the audit entry still ends in
        // an entry naming every generation.
        let held = |info: Option<crate::vault::ShareInfo>| -> Vec<u32> {
            info.map(|i| {
                i.pending_generation
                    .into_iter()
                    .chain([i.generation])
                    .collect()
            })
            .unwrap_or_default()
        };
        let (kind, intended) = match (
            held(self.frost.info(key_id)),
            held(self.taproot.info(key_id)),
        ) {
            (frost, _) if !frost.is_empty() => (Some(KeyKind::FrostSecp256k1), frost),
            (_, taproot) if !taproot.is_empty() => (Some(KeyKind::BitcoinTaproot), taproot),
            _ => (None, Vec::new()),
        };
        let generations = self
            .holds
            .note_destroyed(key_id, &intended)
            .map_err(store)?;
        self.taproot.destroy(key_id).map_err(vault)?;
        self.frost.destroy(key_id).map_err(vault)?;
        let order_id = self
            .holds
            .retirement(key_id)
            .map(|r| hex::encode(r.order_id))
            .unwrap_or_default();
        audited(
            self.audit.as_ref(),
            "key_shares_destroyed",
            &[
                ("key_id", key_id.to_string()),
                ("order_id", order_id),
                (
                    "kind",
                    kind.map(|k| k.as_str().to_string()).unwrap_or_default(),
                ),
                (
                    "generations",
                    generations
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ],
        )
        .map_err(|source| ShredError::Audit {
            key_id: key_id.clone(),
            source: Box::new(source),
        })?;
        self.holds.mark_destroyed(key_id, now).map_err(store)?;
        Ok(Destroyed {
            key_id: key_id.clone(),
            kind,
            generations,
        })
    }
}

/// Logs one sweep's results (no secret: key ids, generations, errors).
pub fn log(results: &[Result<Destroyed, ShredError>]) {
    for result in results {
        match result {
            Ok(d) => {
                crate::metrics::key_op("shred", true);
                tracing::warn!(key_id = %d.key_id, kind = ?d.kind.map(|k| k.as_str()), generations = ?d.generations, "retired key: its shares are destroyed in the token")
            }
            Err(e) => {
                crate::metrics::key_op("shred", false);
                tracing::error!(error = %e, retry_in_secs = RETRY_AFTER_SECS, "retired key: destroying its shares failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holds::retire_for_test as retire;
    use crate::test_doubles::{MemoryAudit, MemoryVault};

    #[test]
    fn due_shares_are_destroyed_once_audited_and_a_failed_audit_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let holds = Arc::new(HoldStore::open(&dir.path().join("holds.sqlite3")).unwrap());
        let k = KeyId::parse("k").unwrap();
        let other = KeyId::parse("other").unwrap();
        let (mut frost, _) = MemoryVault::<ringi_frost::Secp256k1>::dealer(&k, 2, 3).unwrap();
        let (mut taproot, _) = MemoryVault::<Secp256k1Tr>::dealer(&other, 2, 3).unwrap();
        let frost: Arc<MemoryVault<ringi_frost::Secp256k1>> = Arc::new(frost.remove(0));
        let taproot: Arc<MemoryVault<Secp256k1Tr>> = Arc::new(taproot.remove(0));
        let audit = Arc::new(MemoryAudit::new());
        let shredder = Shredder::new(holds.clone(), frost.clone(), taproot.clone(), audit.clone());
        retire(&holds, &k, 200);
        // Not due yet: nothing destroyed.
        assert!(!shredder.any_due(199));
        assert!(shredder.sweep(199).is_empty());
        assert!(frost.contains("k"));
        // Due, but the audit log is down: destroyed in the vault, not
        // marked, retried after the backoff with the generations noted.
        audit.set_failing(true);
        let first = shredder.sweep(200);
        assert!(matches!(&first[..], [Err(ShredError::Audit { .. })]));
        assert!(!frost.contains("k"));
        assert!(shredder.any_due(201));
        assert!(shredder.sweep(201).is_empty(), "backing off");
        audit.set_failing(false);
        let again = shredder.sweep(200 + RETRY_AFTER_SECS);
        let [Ok(done)] = &again[..] else {
            panic!("{again:?}")
        };
        assert_eq!(done.kind, None, "destroyed by the first attempt");
        assert_eq!(done.generations, vec![0], "the dealt share is generation 0");
        let entries = audit.entries();
        let entry = entries
            .iter()
            .find(|e| e.event == "key_shares_destroyed")
            .unwrap();
        assert_eq!(entry.fields["generations"], "0", "{entry:?}");
        assert_eq!(entry.fields["key_id"], "k");
        assert!(!shredder.any_due(10_000));
        assert_eq!(
            holds.retirement(&k).unwrap().destroyed_at,
            Some(200 + RETRY_AFTER_SECS)
        );
        // A taproot key: destroyed in the taproot vault, named so.
        retire(&holds, &other, 300);
        let [Ok(done)] = &shredder.sweep(300)[..] else {
            panic!()
        };
        assert_eq!(done.kind, Some(KeyKind::BitcoinTaproot));
        assert!(!taproot.contains("other"));
    }
}
