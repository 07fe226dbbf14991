//! Approval signatures this process has already verified, so that each one
//! costs one P-256 verification however often its request is evaluated.
//!
//! [`evaluate`](crate::evaluate::evaluate) checks every approval's
//! signature, and a request is evaluated many times over its life: the
//! coordinator evaluates at each Decide (the new approval alone, then with
//! the others), at every view of a pending request (Get, List, each
//! Decide's answer, each watch event: what is still needed), when a signing
//! run starts or resumes and at a retry; a signer at each round. The
//! signatures do not change between those evaluations: only the clock does,
//! and the time rules are applied afresh by every evaluation, outside this
//! cache. A debug profile of the coordinator under load spent about half
//! its samples in P-256 arithmetic re-verifying the same signatures.
//!
//! # What is remembered, and why it cannot turn a bad signature good
//!
//! Only successful verifications, each under the SHA-256 of an unambiguous
//! encoding of the signed bytes, the approver's public key and the
//! signature (see [`VerifiedSignatures::verify`]). ECDSA verification is a
//! function of exactly those three inputs, so a remembered verdict is the
//! verdict a fresh check would give, for those very bytes only: a statement
//! or signature differing in one bit is another key, a miss, and is
//! verified. A failed verification is not remembered, so a bad signature is
//! checked again each time it is presented, and never answered from here.
//! The cache lives in the memory of the process that verified: nothing from
//! outside (a request, a bundle, the coordinator as seen by a signer) can
//! put an entry in it.
//!
//! # Where it is used
//!
//! By `evaluate` itself, through [`shared`], for approvers in the policy's
//! roster (a key outside it is still verified, to report a bad signature
//! before an unknown approver, but not remembered: a stranger's keys,
//! however validly they sign, cannot push a real approver's verdict out).
//! So the coordinator's decide, view, watch, signing, resume and retry
//! paths all share it, and so does each signer, in its own process: a
//! signer still verifies every approval itself, once, and remembers only
//! what it verified. (A signer's round 2 usually does not even evaluate:
//! it reuses round 1's verdict on the whole bundle, `ApprovedBundles`; this
//! cache serves it when a bundle differs but its signatures do not, e.g. a
//! retry whose set of still-valid approvals changed.)
//!
//! # Bounded, oldest first out
//!
//! [`CAPACITY`] entries; when full, the entry inserted longest ago is
//! dropped (first in, first out). A verdict is useful only while its
//! request is live, and verdicts are inserted about in the order requests
//! arrive, so the oldest entry is the one most likely to belong to a
//! request that has finished. Unlike least-recently-used, a hit needs only
//! a lookup, no reordering, which keeps the lock short on the hot path. A
//! verdict dropped while still in use costs one more verification, after
//! which it is remembered again: eviction costs time, never correctness.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::approver_key::ApproverKey;

/// Entries kept by [`shared`]. Each is a 32-byte digest held in a hash set
/// and a queue, about 100 bytes: at most 0.8 MiB. At 500 approved requests
/// a second with two approvals each, an entry still in use is dropped after
/// about eight seconds of new ones, and costs one verification then; with
/// 64 requests in flight the live approvals number in the hundreds.
pub const CAPACITY: usize = 8192;

/// The cache `evaluate` uses, one per process.
pub fn shared() -> &'static VerifiedSignatures {
    static SHARED: LazyLock<VerifiedSignatures> =
        LazyLock::new(|| VerifiedSignatures::new(CAPACITY));
    &SHARED
}

/// What one cache has done: how many checks it answered from memory and
/// how many it verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Checks answered from memory (no P-256 arithmetic).
    pub hits: u64,
    /// Checks that verified the signature (successfully or not).
    pub verifications: u64,
}

/// A bounded set of (signed bytes, key, signature) triples that verified.
/// Thread-safe: the lock is held only to look up or insert a digest, never
/// while verifying.
pub struct VerifiedSignatures {
    capacity: usize,
    remembered: Mutex<Remembered>,
    hits: AtomicU64,
    verifications: AtomicU64,
}

/// The digests, and the order they were inserted in (for eviction).
#[derive(Default)]
struct Remembered {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl VerifiedSignatures {
    /// An empty cache of at most `capacity` verdicts (0: remembers none).
    pub fn new(capacity: usize) -> Self {
        VerifiedSignatures {
            capacity,
            remembered: Mutex::new(Remembered::default()),
            hits: AtomicU64::new(0),
            verifications: AtomicU64::new(0),
        }
    }

    /// Whether `signature` is `key`'s valid signature over `message`, as
    /// [`ApproverKey::verify`] says: from memory if this exact triple
    /// verified before, else verified now (and remembered if valid).
    pub fn verify(&self, key: &ApproverKey, message: &[u8], signature: &[u8]) -> bool {
        let digest = digest(key, message, signature);
        if self.lock().set.contains(&digest) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.verifications.fetch_add(1, Ordering::Relaxed);
        if !key.verify(message, signature) {
            return false;
        }
        self.remember(digest);
        true
    }

    /// Whether this exact triple is remembered as verified (nothing is
    /// verified here).
    pub fn remembers(&self, key: &ApproverKey, message: &[u8], signature: &[u8]) -> bool {
        self.lock().set.contains(&digest(key, message, signature))
    }

    /// Verdicts held now.
    pub fn len(&self) -> usize {
        self.lock().set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What this cache has done since it was made.
    pub fn stats(&self) -> Stats {
        Stats {
            hits: self.hits.load(Ordering::Relaxed),
            verifications: self.verifications.load(Ordering::Relaxed),
        }
    }

    fn remember(&self, digest: [u8; 32]) {
        if self.capacity == 0 {
            return;
        }
        let mut r = self.lock();
        // Two threads may verify the same signature at once: one entry.
        if !r.set.insert(digest) {
            return;
        }
        r.order.push_back(digest);
        while r.order.len() > self.capacity {
            if let Some(oldest) = r.order.pop_front() {
                r.set.remove(&oldest);
            }
        }
    }

    /// The set and queue are updated together under the lock and nothing
    /// in between can panic short of an allocation failure (an abort), so
    /// a poisoned lock still guards a consistent state.
    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// SHA-256 over a domain and the three inputs of a verification, each
/// prefixed with its length (u64, big-endian), so no two different triples
/// encode alike. The key is its compressed SEC1 form: one point, one key,
/// whatever encoding it was given in.
fn digest(key: &ApproverKey, message: &[u8], signature: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"ringi verified approver signature v1\0");
    for field in [message, &key.to_sec1(), signature] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};

    struct Signed {
        key: ApproverKey,
        message: Vec<u8>,
        signature: Vec<u8>,
    }

    fn signed(message: &[u8]) -> Signed {
        let sk = SigningKey::random(&mut rand::rngs::OsRng);
        let sig: Signature = sk.sign(message);
        Signed {
            key: ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes())
                .unwrap(),
            message: message.to_vec(),
            signature: sig.to_bytes().to_vec(),
        }
    }

    impl VerifiedSignatures {
        fn check(&self, s: &Signed) -> bool {
            self.verify(&s.key, &s.message, &s.signature)
        }
    }

    #[test]
    fn a_valid_signature_is_verified_once_then_answered_from_memory() {
        let cache = VerifiedSignatures::new(4);
        let s = signed(b"statement");
        assert!(!cache.remembers(&s.key, &s.message, &s.signature));
        assert!(cache.check(&s));
        assert_eq!(
            cache.stats(),
            Stats {
                hits: 0,
                verifications: 1
            }
        );
        for _ in 0..3 {
            assert!(cache.check(&s));
        }
        assert_eq!(
            cache.stats(),
            Stats {
                hits: 3,
                verifications: 1
            }
        );
        assert!(cache.remembers(&s.key, &s.message, &s.signature));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_bad_signature_is_never_remembered_and_verified_every_time() {
        let cache = VerifiedSignatures::new(4);
        let s = signed(b"statement");
        let mut flipped = s.signature.clone();
        flipped[63] ^= 1;
        let cases: [(&[u8], &[u8]); 4] = [
            (b"statement!", &s.signature), // another message
            (&s.message, &flipped),        // a changed signature
            (&s.message, &[0u8; 64]),      // not a signature
            (&s.message, &s.signature[..10]),
        ];
        for round in 1..=2 {
            for (message, signature) in cases {
                assert!(!cache.verify(&s.key, message, signature));
                assert!(!cache.remembers(&s.key, message, signature));
            }
            assert_eq!(cache.stats().verifications, 4 * round);
        }
        assert_eq!(cache.stats().hits, 0);
        assert!(cache.is_empty());
        // Another key over the same bytes is another entry: a miss, refused.
        let other = signed(b"statement");
        assert!(cache.check(&s));
        assert!(!cache.verify(&other.key, &s.message, &s.signature));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn when_full_the_oldest_verdict_goes_first() {
        let cache = VerifiedSignatures::new(2);
        let [a, b, c] = [signed(b"a"), signed(b"b"), signed(b"c")];
        assert!(cache.check(&a) && cache.check(&b));
        // A hit does not make `a` younger: it still goes first.
        assert!(cache.check(&a));
        assert!(cache.check(&c));
        assert_eq!(cache.len(), 2);
        assert!(!cache.remembers(&a.key, &a.message, &a.signature));
        assert!(cache.remembers(&b.key, &b.message, &b.signature));
        assert!(cache.remembers(&c.key, &c.message, &c.signature));
        // Evicted, `a` is verified again (still valid) and comes back.
        let before = cache.stats().verifications;
        assert!(cache.check(&a));
        assert_eq!(cache.stats().verifications, before + 1);
        assert!(!cache.remembers(&b.key, &b.message, &b.signature));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_cache_of_no_capacity_verifies_every_time() {
        let cache = VerifiedSignatures::new(0);
        let s = signed(b"statement");
        assert!(cache.check(&s) && cache.check(&s));
        assert_eq!(
            cache.stats(),
            Stats {
                hits: 0,
                verifications: 2
            }
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn threads_share_one_verdict() {
        let cache = VerifiedSignatures::new(8);
        let s = signed(b"statement");
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..10 {
                        assert!(cache.check(&s));
                    }
                });
            }
        });
        let stats = cache.stats();
        assert_eq!(stats.hits + stats.verifications, 40);
        // Threads that missed together each verified, but one entry stays.
        assert!(stats.verifications <= 4, "{stats:?}");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        let s = signed(b"statement");
        let key = &s.key;
        assert_ne!(digest(key, b"ab", b"c"), digest(key, b"a", b"bc"));
        assert_ne!(digest(key, b"", b"abc"), digest(key, b"abc", b""));
    }
}
