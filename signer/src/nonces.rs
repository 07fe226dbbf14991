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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use frost_core::keys::SigningShare;
use frost_core::round1::{SigningCommitments, SigningNonces};
use rand_core::{CryptoRng, RngCore};
use ringi_frost::Suite;

/// How long an unused nonce pair stays valid.
pub const DEFAULT_TTL: Duration = Duration::from_secs(120);
/// The most nonce pairs waiting at once, across all keys.
pub const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NonceError {
    #[error("too many round-1 nonces are waiting for round 2 ({0}); retry later")]
    Full(usize),
    #[error("commitments cannot be serialized")]
    Encoding,
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
        }
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
            pending.retain(|_, p| p.expires > now);
            if pending.len() >= self.capacity {
                return Err(NonceError::Full(self.capacity));
            }
        }
        pending.insert(
            slot,
            Pending {
                nonces,
                expires: now + self.ttl,
            },
        );
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
        if entry.expires > Instant::now() {
            Some(entry.nonces)
        } else {
            None
        }
    }

    /// Deletes (and so zeroizes) every expired nonce pair. Returns how many.
    pub fn sweep_expired(&self) -> usize {
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let before = pending.len();
        pending.retain(|_, p| p.expires > now);
        before - pending.len()
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
