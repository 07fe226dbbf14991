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
    #[error("no nonce pair was drawn")]
    NothingDrawn,
}

/// Every nonce pair a vault holds: those drawn by round 1 for one signing,
/// and those preprocessed ahead of any request (kept apart so that neither
/// can crowd the other out: each store has its own bound and TTL); and the
/// reserve of pairs drawn ahead for live round 1s, not issued yet. A round
/// 2 takes its pair from whichever store holds it; commitments are random
/// points, so they name one pair in one store.
pub struct VaultNonces<S: Suite> {
    pub round1: NonceStore<S>,
    pub preprocessed: NonceStore<S>,
    pub reserve: NonceReserve<S>,
}

impl<S: Suite> Default for VaultNonces<S> {
    fn default() -> Self {
        VaultNonces {
            round1: NonceStore::default(),
            preprocessed: NonceStore::new(PREPROCESSED_TTL, PREPROCESSED_CAPACITY)
                .counted_as(NoncePool::Preprocessed),
            reserve: NonceReserve::default(),
        }
    }
}

/// A nonce pair just drawn, with its commitments (what a vault's drawing
/// function for [`VaultNonces::issue`] returns). Its nonces zeroize
/// themselves when dropped.
pub type Drawn<S> = (SigningNonces<S>, SigningCommitments<S>);

impl<S: Suite> VaultNonces<S> {
    /// Round 1 (RFC 9591 section 5.1) for `key_id`: issues a nonce pair
    /// (moves it into the round-1 store, where its round 2 finds it) and
    /// returns its commitments. The pair comes from the key's reserve; only
    /// when that is empty does `draw(n)` run: it unseals the share once and
    /// draws `n` = [`RESERVE_BATCH`] fresh pairs, of which one is issued
    /// and the others kept in the reserve for the next round 1s. So a live
    /// round 1 unseals the share once in [`RESERVE_BATCH`] instead of every
    /// time: the token's part of a two-round signing's first round
    /// (0.34 ms p50 in `bench.sh`) mostly leaves its critical path.
    pub fn issue<E: From<NonceError>>(
        &self,
        key_id: &str,
        draw: impl FnOnce(usize) -> Result<Vec<Drawn<S>>, E>,
    ) -> Result<SigningCommitments<S>, E> {
        let (nonces, commitments) = match self.reserve.take(key_id) {
            Some(pair) => pair,
            None => {
                let mut drawn = draw(RESERVE_BATCH)?;
                let pair = drawn.pop().ok_or(NonceError::NothingDrawn)?;
                self.reserve.keep(key_id, drawn);
                pair
            }
        };
        // Full: the pair is dropped here, zeroized, never seen by anyone.
        self.round1.insert(key_id, &commitments, nonces)?;
        Ok(commitments)
    }

    /// Removes and returns the pair issued with `commitments` for `key_id`
    /// from either store (see [`NonceStore::take`]).
    pub fn take(
        &self,
        key_id: &str,
        commitments: &SigningCommitments<S>,
    ) -> Option<SigningNonces<S>> {
        // One slot for both stores: a one-round signing misses the first.
        let slot = Slot::of(key_id, commitments)?;
        self.round1
            .take_slot(&slot)
            .or_else(|| self.preprocessed.take_slot(&slot))
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

/// Draws `n` fresh nonce pairs for `share` from `rng` (RFC 9591 section
/// 5.1, `commit`): the one place a vault's nonces come from.
pub fn draw<S: Suite, R: RngCore + CryptoRng>(
    share: &SigningShare<S>,
    n: usize,
    rng: &mut R,
) -> Vec<Drawn<S>> {
    (0..n)
        .map(|_| frost_core::round1::commit(share, rng))
        .collect()
}

/// How many nonce pairs a live round 1 draws when its key's reserve is
/// empty ([`VaultNonces::issue`]): one is issued, the rest wait.
pub const RESERVE_BATCH: usize = 8;
/// How long a reserved pair may wait to be issued. Nobody has seen its
/// commitments, so this bounds only how long unused secrets stay in
/// memory.
pub const RESERVE_TTL: Duration = PREPROCESSED_TTL;

/// Nonce pairs drawn ahead for live round 1s and not issued yet: nobody
/// has seen their commitments. A pair leaves the reserve once, by
/// [`NonceReserve::take`], which removes it: issued to one round 1 or
/// dropped (and zeroized), never both, never twice. Like the stores, it
/// lives in process memory only and is lost with the process. Bounded by
/// [`RESERVE_BATCH`] - 1 pairs per key, and only keys whose share the
/// vault holds draw into it; [`NonceReserve::forget`] drops a key's pairs
/// (its share destroyed).
pub struct NonceReserve<S: Suite> {
    drawn: Mutex<HashMap<String, Vec<Reserved<S>>>>,
    ttl: Duration,
}

struct Reserved<S: Suite> {
    nonces: SigningNonces<S>,
    commitments: SigningCommitments<S>,
    expires: Instant,
}

impl<S: Suite> Default for NonceReserve<S> {
    fn default() -> Self {
        Self::new(RESERVE_TTL)
    }
}

/// Whatever is still reserved leaves the gauge with the reserve.
impl<S: Suite> Drop for NonceReserve<S> {
    fn drop(&mut self) {
        let drawn = self.drawn.get_mut().unwrap_or_else(|p| p.into_inner());
        metrics::nonces_removed(NoncePool::Reserved, drawn.values().map(Vec::len).sum());
    }
}

impl<S: Suite> NonceReserve<S> {
    pub fn new(ttl: Duration) -> Self {
        NonceReserve {
            drawn: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Reserved<S>>>> {
        self.drawn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes and returns a pair reserved for `key_id` that has not
    /// expired (the expired ones are dropped on the way).
    pub fn take(&self, key_id: &str) -> Option<Drawn<S>> {
        let mut drawn = self.lock();
        let pairs = drawn.get_mut(key_id)?;
        let now = Instant::now();
        let mut taken = None;
        let mut removed = 0;
        while let Some(pair) = pairs.pop() {
            removed += 1;
            if pair.expires > now {
                taken = Some((pair.nonces, pair.commitments));
                break;
            }
        }
        if pairs.is_empty() {
            drawn.remove(key_id);
        }
        metrics::nonces_removed(NoncePool::Reserved, removed);
        taken
    }

    /// Keeps `pairs`, just drawn for `key_id`, for its next round 1s; at
    /// most [`RESERVE_BATCH`] - 1 wait per key (the rest are dropped).
    pub fn keep(&self, key_id: &str, pairs: Vec<Drawn<S>>) {
        let expires = Instant::now() + self.ttl;
        let mut drawn = self.lock();
        let waiting = drawn.entry(key_id.to_string()).or_default();
        let before = waiting.len();
        let room = (RESERVE_BATCH - 1).saturating_sub(before);
        waiting.extend(
            pairs
                .into_iter()
                .take(room)
                .map(|(nonces, commitments)| Reserved {
                    nonces,
                    commitments,
                    expires,
                }),
        );
        metrics::nonces_added(NoncePool::Reserved, waiting.len() - before);
    }

    /// Drops every pair reserved for `key_id`. Returns how many.
    pub fn forget(&self, key_id: &str) -> usize {
        let forgotten = self.lock().remove(key_id).map_or(0, |p| p.len());
        metrics::nonces_removed(NoncePool::Reserved, forgotten);
        forgotten
    }

    /// Pairs reserved for `key_id`.
    pub fn len_of(&self, key_id: &str) -> usize {
        self.lock().get(key_id).map_or(0, Vec::len)
    }
}

/// Where a nonce pair waits: its key and its commitments, encoded.
#[derive(Hash, PartialEq, Eq)]
struct Slot {
    key_id: String,
    commitments: Vec<u8>,
}

impl Slot {
    /// The slot of the pair issued with `commitments` for `key_id`. Encoding
    /// commitments costs two field inversions (affine coordinates): make it
    /// once per lookup, not once per store asked.
    fn of<S: Suite>(key_id: &str, commitments: &SigningCommitments<S>) -> Option<Slot> {
        Some(Slot {
            key_id: key_id.to_string(),
            commitments: commitments.serialize().ok()?,
        })
    }
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

    /// Draws one fresh nonce pair for `share` from `rng`, keeps it here
    /// and returns only its commitments (tests: the vaults issue round 1s
    /// through [`VaultNonces::issue`]).
    #[cfg(test)]
    pub(crate) fn commit<R: RngCore + CryptoRng>(
        &self,
        key_id: &str,
        share: &SigningShare<S>,
        rng: &mut R,
    ) -> Result<SigningCommitments<S>, NonceError> {
        let mut drawn = draw(share, 1, rng);
        let (nonces, commitments) = drawn.pop().ok_or(NonceError::NothingDrawn)?;
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
        for (nonces, commitments) in draw(share, count, rng) {
            let slot = Slot::of(key_id, &commitments).ok_or(NonceError::Encoding)?;
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
        let slot = Slot::of(key_id, commitments).ok_or(NonceError::Encoding)?;
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
        self.take_slot(&Slot::of(key_id, commitments)?)
    }

    /// [`NonceStore::take`] with the slot already made.
    fn take_slot(&self, slot: &Slot) -> Option<SigningNonces<S>> {
        let entry = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(slot)?;
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
    use std::collections::HashSet;

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
        let waiting = gauge_after(NoncePool::Reserved, || {
            let reserve = NonceReserve::<Secp256k1>::default();
            reserve.keep("a", draw(&share, 4, &mut OsRng));
            reserve.keep("b", draw(&share, 2, &mut OsRng));
            assert!(reserve.take("a").is_some());
            assert_eq!(reserve.forget("b"), 2);
            let dropped = NonceReserve::<Secp256k1>::default();
            dropped.keep("c", draw(&share, 5, &mut OsRng));
            drop(dropped);
            reserve
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

    /// A drawing function that counts its calls.
    fn counting(
        calls: &std::cell::Cell<usize>,
    ) -> impl FnOnce(usize) -> Result<Vec<Drawn<Secp256k1>>, NonceError> + '_ {
        move |n| {
            calls.set(calls.get() + 1);
            let share = SigningShare::deserialize(&[1u8; 32]).unwrap();
            Ok(draw(&share, n, &mut OsRng))
        }
    }

    #[test]
    fn round1_draws_a_batch_at_a_time_and_issues_each_pair_once() {
        let both = VaultNonces::<Secp256k1>::default();
        let calls = std::cell::Cell::new(0);
        let issued: Vec<_> = (0..RESERVE_BATCH + 1)
            .map(|_| both.issue("k", counting(&calls)).unwrap())
            .collect();
        // One draw for the first RESERVE_BATCH round 1s, a second for the
        // next one.
        assert_eq!(calls.get(), 2);
        assert_eq!(both.reserve.len_of("k"), RESERVE_BATCH - 1);
        assert_eq!(both.round1.len(), RESERVE_BATCH + 1);
        let distinct: HashSet<Vec<u8>> = issued.iter().map(|c| c.serialize().unwrap()).collect();
        assert_eq!(distinct.len(), issued.len(), "every round 1 its own pair");
        for c in &issued {
            assert!(both.take("k", c).is_some());
            assert!(both.take("k", c).is_none(), "a pair signs once");
        }
    }

    #[test]
    fn a_keys_reserve_serves_that_key_only() {
        let both = VaultNonces::<Secp256k1>::default();
        let calls = std::cell::Cell::new(0);
        let for_a = both.issue("a", counting(&calls)).unwrap();
        let for_b = both.issue("b", counting(&calls)).unwrap();
        assert_eq!(calls.get(), 2, "b draws its own pairs");
        assert!(both.take("b", &for_a).is_none());
        assert!(both.take("a", &for_b).is_none());
        assert_eq!(both.reserve.forget("a"), RESERVE_BATCH - 1);
        assert_eq!(both.reserve.len_of("a"), 0);
        assert_eq!(both.reserve.len_of("b"), RESERVE_BATCH - 1);
        both.issue("a", counting(&calls)).unwrap();
        assert_eq!(calls.get(), 3, "a forgotten reserve is drawn again");
    }

    #[test]
    fn expired_reserved_pairs_are_never_issued() {
        let reserve = NonceReserve::<Secp256k1>::new(Duration::ZERO);
        let share = SigningShare::deserialize(&[1u8; 32]).unwrap();
        reserve.keep("k", draw(&share, 3, &mut OsRng));
        assert_eq!(reserve.len_of("k"), 3);
        assert!(reserve.take("k").is_none());
        assert_eq!(reserve.len_of("k"), 0, "dropped on the way");
    }

    #[test]
    fn the_reserve_is_bounded_per_key() {
        let reserve = NonceReserve::<Secp256k1>::default();
        let share = SigningShare::deserialize(&[1u8; 32]).unwrap();
        reserve.keep("k", draw(&share, RESERVE_BATCH * 3, &mut OsRng));
        reserve.keep("k", draw(&share, 2, &mut OsRng));
        assert_eq!(reserve.len_of("k"), RESERVE_BATCH - 1);
    }

    #[test]
    fn a_round1_store_that_is_full_issues_nothing() {
        let both = VaultNonces {
            round1: NonceStore::new(DEFAULT_TTL, 1),
            ..VaultNonces::<Secp256k1>::default()
        };
        let calls = std::cell::Cell::new(0);
        let first = both.issue("k", counting(&calls)).unwrap();
        assert_eq!(both.issue("k", counting(&calls)), Err(NonceError::Full(1)));
        // The pair that found no room was dropped, not put back.
        assert_eq!(both.reserve.len_of("k"), RESERVE_BATCH - 2);
        assert!(both.take("k", &first).is_some());
    }

    #[test]
    fn a_draw_that_fails_or_draws_nothing_issues_nothing() {
        let both = VaultNonces::<Secp256k1>::default();
        let unsealed = both.issue("k", |_| {
            Err::<Vec<Drawn<Secp256k1>>, _>(NonceError::Encoding)
        });
        assert_eq!(unsealed, Err(NonceError::Encoding));
        let nothing = both.issue("k", |_| Ok::<_, NonceError>(Vec::new()));
        assert_eq!(nothing, Err(NonceError::NothingDrawn));
        assert!(both.round1.is_empty());
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
