//! Round-1 nonces waiting for their round 2.
//!
//! FROST leaks the signing share if one nonce pair signs two different
//! messages, and the frost crate does not stop that (`SigningNonces` is
//! `Clone`). This store is what does:
//! - nonces live in process memory only, never on disk, so a crash or restart
//!   loses them instead of risking reuse after a restore;
//! - [`NonceStore::take`] removes the pair it returns, so a second round 2
//!   with the same commitments finds nothing;
//! - unused pairs expire after a TTL, and the store is bounded so a caller
//!   cannot exhaust memory with round-1 calls.
//!
//! `SigningNonces` zeroizes itself on drop, so removing an entry wipes it.
//! A store holds the nonces of one ciphersuite `S` ([`ringi_frost::Suite`]).
//!
//! Each store keeps the gauge of nonces waiting in its pool
//! ([`crate::metrics::NONCES_WAITING`]) by every pair it adds or removes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use frost_core::keys::SigningShare;
use frost_core::round1::{SigningCommitments, SigningNonces};
use rand_core::{CryptoRng, RngCore};
use ringi_frost::Suite;

use crate::metrics::{self, NoncePool};

/// How long an unused nonce pair stays valid.
pub const DEFAULT_TTL: Duration = Duration::from_secs(120);
/// The most nonce pairs waiting at once, across all keys.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// How long a preprocessed nonce pair ([`NonceStore::commit_batch`]) stays
/// valid: long enough for a coordinator's pool to be drawn down between
/// quiet periods, short enough that a forgotten pool does not linger.
pub const PREPROCESSED_TTL: Duration = Duration::from_secs(3600);
/// The most preprocessed nonce pairs waiting at once, across all keys.
pub const PREPROCESSED_CAPACITY: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NonceError {
    #[error("too many round-1 nonces are waiting for round 2 ({0}); retry later")]
    Full(usize),
    #[error("commitments cannot be serialized")]
    Encoding,
}

/// Every nonce pair a vault holds: those drawn by round 1 for one signing,
/// and those preprocessed ahead of any request (kept apart so that neither
/// can crowd the other out: each store has its own bound and TTL). A round
/// 2 takes its pair from whichever holds it; commitments are random points,
/// so they name one pair in one store.
pub struct VaultNonces<S: Suite> {
    pub round1: NonceStore<S>,
    pub preprocessed: NonceStore<S>,
}

impl<S: Suite> Default for VaultNonces<S> {
    fn default() -> Self {
        VaultNonces {
            round1: NonceStore::default(),
            preprocessed: NonceStore::new(PREPROCESSED_TTL, PREPROCESSED_CAPACITY)
                .counted_as(NoncePool::Preprocessed),
        }
    }
}

impl<S: Suite> VaultNonces<S> {
    /// Removes and returns the pair issued with `commitments` for `key_id`
    /// from either store (see [`NonceStore::take`]).
    pub fn take(
        &self,
        key_id: &str,
        commitments: &SigningCommitments<S>,
    ) -> Option<SigningNonces<S>> {
        self.round1
            .take(key_id, commitments)
            .or_else(|| self.preprocessed.take(key_id, commitments))
    }

    /// Deletes every expired pair of both stores. Returns how many.
    pub fn sweep_expired(&self) -> usize {
        self.round1.sweep_expired() + self.preprocessed.sweep_expired()
    }

    /// Pairs waiting in both stores.
    pub fn len(&self) -> usize {
        self.round1.len() + self.preprocessed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Hash, PartialEq, Eq)]
struct Slot {
    key_id: String,
    commitments: Vec<u8>,
}

struct Pending<S: Suite> {
    nonces: SigningNonces<S>,
    expires: Instant,
}

/// The nonce pairs of one ciphersuite's keys.
pub struct NonceStore<S: Suite> {
    pending: Mutex<HashMap<Slot, Pending<S>>>,
    ttl: Duration,
    capacity: usize,
    /// The pool its gauge counts in.
    pool: NoncePool,
}

/// Whatever is still waiting leaves the gauge with the store.
impl<S: Suite> Drop for NonceStore<S> {
    fn drop(&mut self) {
        let pending = self.pending.get_mut().unwrap_or_else(|p| p.into_inner());
        metrics::nonces_removed(self.pool, pending.len());
    }
}

impl<S: Suite> Default for NonceStore<S> {
    fn default() -> Self {
        Self::new(DEFAULT_TTL, DEFAULT_CAPACITY)
    }
}

impl<S: Suite> NonceStore<S> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        NonceStore {
            pending: Mutex::new(HashMap::new()),
            ttl,
            capacity,
            pool: NoncePool::Round1,
        }
    }

    /// Counts this store's pairs in `pool`'s gauge (default: round 1).
    pub fn counted_as(mut self, pool: NoncePool) -> Self {
        self.pool = pool;
        self
    }

    /// Drops the expired pairs of `pending`, counting them out.
    fn drop_expired(&self, pending: &mut HashMap<Slot, Pending<S>>, now: Instant) -> usize {
        let before = pending.len();
        pending.retain(|_, p| p.expires > now);
        let dropped = before - pending.len();
        metrics::nonces_removed(self.pool, dropped);
        dropped
    }

    /// Round 1 (RFC 9591 section 5.1): draws a fresh nonce pair for
    /// `share` from `rng`, keeps it here for round 2 and returns only its
    /// commitments, so a vault never holds the nonces it commits to.
    pub fn commit<R: RngCore + CryptoRng>(
        &self,
        key_id: &str,
        share: &SigningShare<S>,
        rng: &mut R,
    ) -> Result<SigningCommitments<S>, NonceError> {
        let (nonces, commitments) = frost_core::round1::commit(share, rng);
        self.insert(key_id, &commitments, nonces)?;
        Ok(commitments)
    }

    /// Preprocessing: draws `count` fresh nonce pairs for `share` at once
    /// (the share unsealed once for all of them), keeps them and returns
    /// their commitments. All or none: if the store has no room for
    /// `count` more, nothing is drawn ([`NonceError::Full`]).
    pub fn commit_batch<R: RngCore + CryptoRng>(
        &self,
        key_id: &str,
        share: &SigningShare<S>,
        count: usize,
        rng: &mut R,
    ) -> Result<Vec<SigningCommitments<S>>, NonceError> {
        let mut drawn = Vec::with_capacity(count);
        for _ in 0..count {
            let (nonces, commitments) = frost_core::round1::commit(share, rng);
            let slot = Slot {
                key_id: key_id.to_string(),
                commitments: commitments.serialize().map_err(|_| NonceError::Encoding)?,
            };
            drawn.push((slot, nonces, commitments));
        }
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() + count > self.capacity {
            self.drop_expired(&mut pending, now);
            if pending.len() + count > self.capacity {
                // `drawn` is dropped here: its nonces zeroize themselves.
                return Err(NonceError::Full(self.capacity));
            }
        }
        let before = pending.len();
        let commitments = drawn
            .into_iter()
            .map(|(slot, nonces, commitments)| {
                pending.insert(
                    slot,
                    Pending {
                        nonces,
                        expires: now + self.ttl,
                    },
                );
                commitments
            })
            .collect();
        metrics::nonces_added(self.pool, pending.len() - before);
        Ok(commitments)
    }

    /// Keeps `nonces` until round 2 asks for them by their commitments.
    pub fn insert(
        &self,
        key_id: &str,
        commitments: &SigningCommitments<S>,
        nonces: SigningNonces<S>,
    ) -> Result<(), NonceError> {
        let slot = Slot {
            key_id: key_id.to_string(),
            commitments: commitments.serialize().map_err(|_| NonceError::Encoding)?,
        };
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= self.capacity {
            self.drop_expired(&mut pending, now);
            if pending.len() >= self.capacity {
                return Err(NonceError::Full(self.capacity));
            }
        }
        let replaced = pending.insert(
            slot,
            Pending {
                nonces,
                expires: now + self.ttl,
            },
        );
        if replaced.is_none() {
            metrics::nonces_added(self.pool, 1);
        }
        Ok(())
    }

    /// Removes and returns the nonces issued with `commitments` for
    /// `key_id`, if they exist and have not expired. Whatever the outcome,
    /// those nonces can never be returned again.
    pub fn take(
        &self,
        key_id: &str,
        commitments: &SigningCommitments<S>,
    ) -> Option<SigningNonces<S>> {
        let slot = Slot {
            key_id: key_id.to_string(),
            commitments: commitments.serialize().ok()?,
        };
        let entry = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&slot)?;
        metrics::nonces_removed(self.pool, 1);
        if entry.expires > Instant::now() {
            Some(entry.nonces)
        } else {
            None
        }
    }

    /// Deletes (and so zeroizes) every expired nonce pair. Returns how many.
    pub fn sweep_expired(&self) -> usize {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        self.drop_expired(&mut pending, Instant::now())
    }

    /// Number of nonce pairs waiting (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_core::keys::SigningShare;
    use rand::rngs::OsRng;
    use ringi_frost::Secp256k1;

    type NonceStore = super::NonceStore<Secp256k1>;

    fn fresh() -> (SigningNonces<Secp256k1>, SigningCommitments<Secp256k1>) {
        let share = SigningShare::deserialize(&[1u8; 32]).unwrap();
        frost_core::round1::commit(&share, &mut OsRng)
    }

    /// The nonces-waiting gauge of `pool` after `f`, recorded in-process
    /// while what `f` returns (the stores still waiting) is alive.
    fn gauge_after<T>(pool: NoncePool, f: impl FnOnce() -> T) -> f64 {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _alive = ::metrics::with_local_recorder(&recorder, f);
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find(|(key, ..)| {
                key.key().name() == crate::metrics::NONCES_WAITING
                    && key.key().labels().any(|l| l.value() == pool.label())
            })
            .map_or(0.0, |(.., value)| match value {
                DebugValue::Gauge(v) => v.into_inner(),
                other => panic!("{other:?}"),
            })
    }

    #[test]
    fn the_gauge_counts_every_pair_in_and_out() {
        let share = SigningShare::deserialize(&[1u8; 32]).unwrap();
        let waiting = gauge_after(NoncePool::Round1, || {
            let store = NonceStore::default();
            let kept: Vec<_> = (0..3)
                .map(|_| store.commit("k", &share, &mut OsRng).unwrap())
                .collect();
            assert!(store.take("k", &kept[0]).is_some());
            assert!(store.take("k", &kept[0]).is_none());
            store
        });
        assert_eq!(waiting, 2.0);
        let waiting = gauge_after(NoncePool::Preprocessed, || {
            let store = NonceStore::new(Duration::ZERO, 10).counted_as(NoncePool::Preprocessed);
            store.commit_batch("k", &share, 4, &mut OsRng).unwrap();
            assert_eq!(store.sweep_expired(), 4);
            let live = NonceStore::new(DEFAULT_TTL, 10).counted_as(NoncePool::Preprocessed);
            live.commit_batch("k", &share, 3, &mut OsRng).unwrap();
            let dropped = NonceStore::new(DEFAULT_TTL, 10).counted_as(NoncePool::Preprocessed);
            dropped.commit_batch("k", &share, 5, &mut OsRng).unwrap();
            drop(dropped);
            live
        });
        assert_eq!(waiting, 3.0);
    }

    #[test]
    fn nonces_are_returned_once() {
        let store = NonceStore::default();
        let (nonces, commitments) = fresh();
        store.insert("k", &commitments, nonces.clone()).unwrap();
        assert!(store.take("k", &commitments) == Some(nonces));
        assert!(store.take("k", &commitments).is_none());
        assert!(store.is_empty());
    }

    #[test]
    fn nonces_are_bound_to_their_key_id() {
        let store = NonceStore::default();
        let (nonces, commitments) = fresh();
        store.insert("k1", &commitments, nonces).unwrap();
        assert!(store.take("k2", &commitments).is_none());
        assert!(store.take("k1", &commitments).is_some());
    }

    #[test]
    fn expired_nonces_are_not_returned() {
        let store = NonceStore::new(Duration::from_millis(0), 10);
        let (nonces, commitments) = fresh();
        store.insert("k", &commitments, nonces).unwrap();
        assert!(store.take("k", &commitments).is_none());
    }

    #[test]
    fn sweeping_deletes_only_expired_nonces() {
        let expired = NonceStore::new(Duration::from_millis(0), 10);
        let (n, c) = fresh();
        expired.insert("k", &c, n).unwrap();
        assert_eq!(expired.sweep_expired(), 1);
        assert!(expired.is_empty());
        let live = NonceStore::default();
        let (n, c) = fresh();
        live.insert("k", &c, n).unwrap();
        assert_eq!(live.sweep_expired(), 0);
        assert_eq!(live.len(), 1);
    }

    #[test]
    fn a_batch_is_taken_one_pair_at_a_time_and_once() {
        let store = NonceStore::new(DEFAULT_TTL, 10);
        let share = SigningShare::deserialize(&[1u8; 32]).unwrap();
        let batch = store.commit_batch("k", &share, 4, &mut OsRng).unwrap();
        assert_eq!(batch.len(), 4);
        assert_eq!(store.len(), 4);
        let distinct: std::collections::HashSet<Vec<u8>> =
            batch.iter().map(|c| c.serialize().unwrap()).collect();
        assert_eq!(distinct.len(), 4, "every pair is fresh");
        for c in &batch {
            assert!(store.take("k", c).is_some());
            assert!(store.take("k", c).is_none());
        }
        assert!(store.is_empty());
    }

    #[test]
    fn a_batch_that_does_not_fit_draws_nothing() {
        let store = NonceStore::new(DEFAULT_TTL, 5);
        let share = SigningShare::deserialize(&[1u8; 32]).unwrap();
        store.commit_batch("k", &share, 3, &mut OsRng).unwrap();
        assert_eq!(
            store.commit_batch("k", &share, 3, &mut OsRng),
            Err(NonceError::Full(5))
        );
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn vault_nonces_take_from_either_store_once() {
        let both = VaultNonces::<Secp256k1>::default();
        let share = SigningShare::deserialize(&[1u8; 32]).unwrap();
        let pre = both
            .preprocessed
            .commit_batch("k", &share, 1, &mut OsRng)
            .unwrap()[0];
        let fresh = both.round1.commit("k", &share, &mut OsRng).unwrap();
        assert_eq!(both.len(), 2);
        assert!(both.take("k", &pre).is_some());
        assert!(both.take("k", &fresh).is_some());
        assert!(both.take("k", &pre).is_none());
        assert!(both.is_empty());
    }

    #[test]
    fn store_is_bounded() {
        let store = NonceStore::new(DEFAULT_TTL, 2);
        for _ in 0..2 {
            let (n, c) = fresh();
            store.insert("k", &c, n).unwrap();
        }
        let (n, c) = fresh();
        assert_eq!(store.insert("k", &c, n), Err(NonceError::Full(2)));
    }
}
