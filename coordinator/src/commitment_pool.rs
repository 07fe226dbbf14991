//! Preprocessed round-1 commitments, per signer and key: what makes signing
//! one round.
//!
//! FROST lets round 1 run ahead of the message (RFC 9591 section 5.1): each
//! signer draws nonce pairs in batches (`Preprocess`, `signer/src/preprocess.rs`)
//! and keeps them in memory; the coordinator keeps their commitments here.
//! Once a request is approved, the engine takes one commitment of each of `t`
//! signers, builds the signing package and goes straight to round 2. A
//! signer whose pool is empty is asked for a live round 1 instead (the
//! two-round path), so an empty pool costs latency, never a signing.
//!
//! Each commitment is handed out once ([`CommitmentPools::take`] removes
//! it): two packages never carry the same commitment, which the signer
//! would only honour once anyway. The commitments are public; losing them
//! loses nothing but the nonces' use.
//!
//! A signer forgets its nonces when it restarts. Its pool is then void: the
//! batch answer carries the signer's boot epoch, and a batch under a new
//! epoch replaces whatever the pool held; a signer that fails a call (it may
//! be restarting) or says a pooled commitment has no nonces has its pools
//! dropped ([`CommitmentPools::forget`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Commitments asked for in one `Preprocess` call.
pub const BATCH: u32 = 64;
/// A pool is refilled when it holds fewer than this.
pub const LOW_WATER: usize = 32;
/// A pool never holds more than this (the signer bounds its own side).
pub const HIGH_WATER: usize = 192;
/// After a failed refill, the signer is not asked again for this long.
pub const REFILL_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pooled commitment is used: well inside the signer's own
/// expiry of preprocessed nonces (`PREPROCESSED_TTL`, one hour), so the
/// engine does not build packages around nonces the signer has dropped.
pub const USABLE_FOR: Duration = Duration::from_secs(45 * 60);

#[derive(Default)]
struct Pool {
    epoch: Vec<u8>,
    /// Serialized `SigningCommitments`, oldest first, with when they came.
    commitments: VecDeque<(Instant, Vec<u8>)>,
    refilling: bool,
    backoff_until: Option<Instant>,
}

/// The pools of every (signer, key).
pub struct CommitmentPools {
    pools: Mutex<HashMap<(String, String), Pool>>,
    /// Signers whose health watch failed ([`crate::signer_watch`]): their
    /// pools stay empty until they answer again.
    unreachable: Mutex<HashSet<String>>,
    enabled: AtomicBool,
}

impl Default for CommitmentPools {
    fn default() -> Self {
        CommitmentPools {
            pools: Mutex::new(HashMap::new()),
            unreachable: Mutex::new(HashSet::new()),
            enabled: AtomicBool::new(true),
        }
    }
}

/// What a refill should ask for, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refill {
    pub signer: String,
    pub key_id: String,
}

impl CommitmentPools {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Pool>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether one-round signing is used at all (the bench turns it off to
    /// measure the two-round path).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
        if !on {
            self.lock().clear();
        }
    }

    fn is_unreachable(&self, signer: &str) -> bool {
        self.unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(signer)
    }

    /// Records whether `signer` is reachable; an unreachable signer's
    /// pools are dropped and neither used nor refilled until it is
    /// reachable again. Returns whether this changed anything.
    pub fn set_reachable(&self, signer: &str, reachable: bool) -> bool {
        let changed = {
            let mut down = self.unreachable.lock().unwrap_or_else(|p| p.into_inner());
            if reachable {
                down.remove(signer)
            } else {
                down.insert(signer.to_string())
            }
        };
        if !reachable {
            self.forget(signer);
        }
        changed
    }

    /// How many usable commitments `signer` has pooled for `key_id`.
    pub fn available(&self, signer: &str, key_id: &str) -> usize {
        let now = Instant::now();
        self.lock()
            .get(&(signer.to_string(), key_id.to_string()))
            .map(|p| {
                p.commitments
                    .iter()
                    .filter(|(at, _)| now.duration_since(*at) < USABLE_FOR)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Removes and returns one usable commitment of `signer` for `key_id`
    /// (oldest first; stale ones are dropped on the way).
    pub fn take(&self, signer: &str, key_id: &str) -> Option<Vec<u8>> {
        if !self.enabled() || self.is_unreachable(signer) {
            return None;
        }
        let now = Instant::now();
        let mut pools = self.lock();
        let pool = pools.get_mut(&(signer.to_string(), key_id.to_string()))?;
        while let Some((at, c)) = pool.commitments.pop_front() {
            if now.duration_since(at) < USABLE_FOR {
                return Some(c);
            }
        }
        None
    }

    /// Marks a refill of `signer`'s pool for `key_id` as under way and says
    /// so, if the pool is below [`LOW_WATER`] and no refill is running or
    /// backing off. The caller must end it with [`CommitmentPools::refilled`]
    /// or [`CommitmentPools::refill_failed`].
    pub fn start_refill(&self, signer: &str, key_id: &str) -> Option<Refill> {
        if !self.enabled() || self.is_unreachable(signer) {
            return None;
        }
        let now = Instant::now();
        let mut pools = self.lock();
        let pool = pools
            .entry((signer.to_string(), key_id.to_string()))
            .or_default();
        if pool.refilling
            || pool.commitments.len() >= LOW_WATER
            || pool.backoff_until.is_some_and(|t| t > now)
        {
            return None;
        }
        pool.refilling = true;
        Some(Refill {
            signer: signer.to_string(),
            key_id: key_id.to_string(),
        })
    }

    /// Adds a batch `refill` fetched under the signer's `epoch`. A new epoch
    /// voids what the pool held (the signer restarted).
    pub fn refilled(&self, refill: &Refill, epoch: &[u8], batch: Vec<Vec<u8>>) {
        let now = Instant::now();
        let mut pools = self.lock();
        let pool = pools
            .entry((refill.signer.clone(), refill.key_id.clone()))
            .or_default();
        pool.refilling = false;
        pool.backoff_until = None;
        if pool.epoch != epoch {
            pool.epoch = epoch.to_vec();
            pool.commitments.clear();
        }
        let room = HIGH_WATER.saturating_sub(pool.commitments.len());
        pool.commitments
            .extend(batch.into_iter().take(room).map(|c| (now, c)));
    }

    /// Ends a refill that failed; the signer is left alone for
    /// [`REFILL_BACKOFF`] (a signer without the key, or down).
    pub fn refill_failed(&self, refill: &Refill) {
        let mut pools = self.lock();
        let pool = pools
            .entry((refill.signer.clone(), refill.key_id.clone()))
            .or_default();
        pool.refilling = false;
        pool.backoff_until = Some(Instant::now() + REFILL_BACKOFF);
    }

    /// Drops every pool of `signer`: it failed a call or lost nonces, so it
    /// may have restarted and forgotten them.
    pub fn forget(&self, signer: &str) {
        for ((name, _), pool) in self.lock().iter_mut() {
            if name == signer {
                pool.commitments.clear();
                pool.epoch.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(tag: u8, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![tag, i as u8]).collect()
    }

    #[test]
    fn each_commitment_is_taken_once_oldest_first() {
        let pools = CommitmentPools::default();
        let r = pools.start_refill("a", "k").unwrap();
        pools.refilled(&r, b"e1", batch(1, 3));
        assert_eq!(pools.available("a", "k"), 3);
        assert_eq!(pools.take("a", "k"), Some(vec![1, 0]));
        assert_eq!(pools.take("a", "k"), Some(vec![1, 1]));
        assert_eq!(pools.take("a", "k"), Some(vec![1, 2]));
        assert_eq!(pools.take("a", "k"), None);
        assert_eq!(pools.take("b", "k"), None);
        assert_eq!(pools.take("a", "other"), None);
    }

    #[test]
    fn one_refill_at_a_time_and_only_below_low_water() {
        let pools = CommitmentPools::default();
        let r = pools.start_refill("a", "k").unwrap();
        assert_eq!(pools.start_refill("a", "k"), None, "already refilling");
        assert!(pools.start_refill("b", "k").is_some(), "another signer");
        pools.refilled(&r, b"e1", batch(1, LOW_WATER));
        assert_eq!(pools.start_refill("a", "k"), None, "full enough");
        pools.take("a", "k").unwrap();
        assert!(pools.start_refill("a", "k").is_some());
    }

    #[test]
    fn a_failed_refill_backs_off() {
        let pools = CommitmentPools::default();
        let r = pools.start_refill("a", "k").unwrap();
        pools.refill_failed(&r);
        assert_eq!(pools.start_refill("a", "k"), None);
    }

    /// A batch under a new boot epoch voids the commitments of the old one:
    /// the signer restarted and their nonces are gone.
    #[test]
    fn a_new_epoch_voids_the_old_commitments() {
        let pools = CommitmentPools::default();
        let r = pools.start_refill("a", "k").unwrap();
        pools.refilled(&r, b"e1", batch(1, 2));
        let r = Refill {
            signer: "a".into(),
            key_id: "k".into(),
        };
        pools.refilled(&r, b"e2", batch(2, 1));
        assert_eq!(pools.available("a", "k"), 1);
        assert_eq!(pools.take("a", "k"), Some(vec![2, 0]));
    }

    #[test]
    fn forgetting_a_signer_empties_all_its_pools_only() {
        let pools = CommitmentPools::default();
        for (s, k) in [("a", "k1"), ("a", "k2"), ("b", "k1")] {
            let r = pools.start_refill(s, k).unwrap();
            pools.refilled(&r, b"e", batch(1, 2));
        }
        pools.forget("a");
        assert_eq!(pools.available("a", "k1"), 0);
        assert_eq!(pools.available("a", "k2"), 0);
        assert_eq!(pools.available("b", "k1"), 2);
    }

    #[test]
    fn pools_are_bounded_and_can_be_turned_off() {
        let pools = CommitmentPools::default();
        let r = pools.start_refill("a", "k").unwrap();
        pools.refilled(&r, b"e", batch(1, HIGH_WATER + 50));
        assert_eq!(pools.available("a", "k"), HIGH_WATER);
        pools.set_enabled(false);
        assert_eq!(pools.take("a", "k"), None);
        assert_eq!(pools.start_refill("a", "k"), None);
        assert_eq!(pools.available("a", "k"), 0);
    }

    #[test]
    fn an_unreachable_signer_has_no_pool_until_it_is_back() {
        let pools = CommitmentPools::default();
        let r = pools.start_refill("a", "k").unwrap();
        pools.refilled(&r, b"epoch-1", batch(1, 4));
        assert!(pools.set_reachable("a", false));
        assert!(
            !pools.set_reachable("a", false),
            "no change the second time"
        );
        assert_eq!(pools.available("a", "k"), 0);
        assert_eq!(pools.take("a", "k"), None);
        assert_eq!(pools.start_refill("a", "k"), None);
        assert!(pools.set_reachable("a", true));
        let r = pools.start_refill("a", "k").unwrap();
        pools.refilled(&r, b"epoch-2", batch(2, 2));
        assert_eq!(pools.take("a", "k"), Some(vec![2, 0]));
    }
}
