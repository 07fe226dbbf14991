//! Approver public keys and signature checks.
//!
//! Approvers sign with ECDSA P-256 over SHA-256, which every PKCS#11 smart
//! card and HSM supports (hash on the host, CKM_ECDSA in the token). Keys are
//! written `p256:` followed by the SEC1 point in hex (compressed or not);
//! signatures are the 64-byte raw `r ‖ s` that CKM_ECDSA returns.
//!
//! Parsing and encoding go through the `p256` crate; the verification
//! itself through `ring` (`ECDSA_P256_SHA256_FIXED`), whose P-256 field
//! arithmetic is assembly: about four times faster than `p256`'s on this
//! project's machines, and verifying approvals is the largest share of a
//! signer's work per signing (issue 13). Both accept exactly the
//! signatures ECDSA defines (`r`, `s` in `[1, n)`, either `s`); the test
//! `ring_and_p256_agree` holds them to it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use p256::ecdsa::VerifyingKey;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

/// Every [`ApproverKey::verify`] this process has made; read through
/// [`verifications`].
static VERIFICATIONS: AtomicU64 = AtomicU64::new(0);

/// Metric: P-256 signature verifications this process has made since it
/// started (a counter: it only grows, like a Prometheus `_total`), whatever
/// their outcome and whoever asked (approval statements, audit
/// checkpoints). An ECDSA verification is the most expensive step of an
/// evaluation, so this is what
/// [`crate::verified_signatures::VerifiedSignatures`] saves: a profile or a
/// test reads it around a flow to see how many it cost.
pub fn verifications() -> u64 {
    VERIFICATIONS.load(Ordering::Relaxed)
}

/// SEC1 encodings already decoded by [`ApproverKey::from_sec1`], and their
/// points; at most [`DECODED_MAX`].
static DECODED: LazyLock<Mutex<HashMap<Vec<u8>, ApproverKey>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
const DECODED_MAX: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("approver key must start with \"p256:\"")]
    UnknownAlgorithm,
    #[error("approver key is not hex")]
    NotHex,
    #[error("approver key is not a P-256 point")]
    NotAPoint,
}

/// An approver's public key. Equality is by the point, whatever the encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverKey {
    key: VerifyingKey,
    /// The same point, SEC1 uncompressed (65 bytes): the form `ring`
    /// verifies against, computed once at parse time.
    uncompressed: Vec<u8>,
}

impl ApproverKey {
    /// Parses `p256:<hex SEC1 point>`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let hex_point = text
            .strip_prefix("p256:")
            .ok_or(KeyError::UnknownAlgorithm)?;
        let bytes = hex::decode(hex_point).map_err(|_| KeyError::NotHex)?;
        Self::from_sec1(&bytes)
    }

    /// Parses a SEC1 point, compressed or not.
    ///
    /// Decompressing a point costs a field square root (about 40 µs), and
    /// the same few approver keys are decoded again with every stored
    /// request and every presented bundle (issue 13's profile: 2.5 % of
    /// the coordinator's CPU under load), so the points decoded are kept in
    /// [`DECODED`]: an encoding decodes to one point whatever the caller,
    /// and an encoding that is not a point is not kept.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, KeyError> {
        let mut decoded = DECODED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = decoded.get(bytes) {
            return Ok(key.clone());
        }
        let key = VerifyingKey::from_sec1_bytes(bytes).map_err(|_| KeyError::NotAPoint)?;
        let uncompressed = key.to_encoded_point(false).as_bytes().to_vec();
        let key = ApproverKey { key, uncompressed };
        if decoded.len() >= DECODED_MAX {
            // A policy names a few dozen approvers; this many distinct keys
            // means someone is presenting fresh ones: start over rather
            // than grow.
            decoded.clear();
        }
        decoded.insert(bytes.to_vec(), key.clone());
        Ok(key)
    }

    /// SEC1 compressed (33 bytes): the canonical form used in statements.
    pub fn to_sec1(&self) -> Vec<u8> {
        self.key.to_encoded_point(true).as_bytes().to_vec()
    }

    /// `p256:<hex compressed point>`.
    pub fn to_text(&self) -> String {
        format!("p256:{}", hex::encode(self.to_sec1()))
    }

    /// Checks a 64-byte `r ‖ s` ECDSA-SHA256 signature over `message`.
    /// Always verifies (and counts in [`verifications`]); an approval's
    /// signature is checked through
    /// [`crate::verified_signatures::VerifiedSignatures`], which calls this
    /// once per signature.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        VERIFICATIONS.fetch_add(1, Ordering::Relaxed);
        signature.len() == 64
            && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.uncompressed)
                .verify(message, signature)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer, Verifier};
    use p256::ecdsa::{Signature, SigningKey};

    #[test]
    fn parses_verifies_and_refuses() {
        let sk = SigningKey::random(&mut rand::rngs::OsRng);
        let text = format!(
            "p256:{}",
            hex::encode(sk.verifying_key().to_encoded_point(false).as_bytes())
        );
        let key = ApproverKey::parse(&text).unwrap();
        assert_eq!(ApproverKey::parse(&key.to_text()).unwrap(), key);
        let sig: Signature = sk.sign(b"statement");
        assert!(key.verify(b"statement", &sig.to_bytes()));
        assert!(!key.verify(b"statement!", &sig.to_bytes()));
        assert!(!key.verify(b"statement", &[0u8; 64]));
        assert!(!key.verify(b"statement", &[1u8; 10]));
        assert_eq!(
            ApproverKey::parse("ed25519:00"),
            Err(KeyError::UnknownAlgorithm)
        );
        assert_eq!(ApproverKey::parse("p256:zz"), Err(KeyError::NotHex));
        assert_eq!(ApproverKey::parse("p256:0102"), Err(KeyError::NotAPoint));
    }

    #[test]
    fn every_verification_is_counted_whatever_its_outcome() {
        let sk = SigningKey::random(&mut rand::rngs::OsRng);
        let key =
            ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes()).unwrap();
        let sig: Signature = sk.sign(b"statement");
        // Other tests verify concurrently: the counter grows by at least ours.
        let before = verifications();
        assert!(key.verify(b"statement", &sig.to_bytes()));
        assert!(!key.verify(b"other", &sig.to_bytes()));
        assert!(!key.verify(b"statement", &[1u8; 10]));
        assert!(verifications() >= before + 3);
    }

    /// A key decoded again (from the cache) is the same key, in either
    /// encoding, and a non-point is refused every time.
    #[test]
    fn decoding_again_gives_the_same_key() {
        let sk = SigningKey::random(&mut rand::rngs::OsRng);
        let compressed = sk.verifying_key().to_encoded_point(true);
        let uncompressed = sk.verifying_key().to_encoded_point(false);
        let first = ApproverKey::from_sec1(compressed.as_bytes()).unwrap();
        let again = ApproverKey::from_sec1(compressed.as_bytes()).unwrap();
        let long = ApproverKey::from_sec1(uncompressed.as_bytes()).unwrap();
        assert_eq!(first, again);
        assert_eq!(first, long);
        assert_eq!(again.to_sec1(), compressed.as_bytes());
        let sig: Signature = sk.sign(b"m");
        assert!(again.verify(b"m", &sig.to_bytes()));
        // x = 2^256 - 1, not a field element.
        let mut not_a_point = vec![0xff; 33];
        not_a_point[0] = 0x02;
        for _ in 0..2 {
            assert_eq!(
                ApproverKey::from_sec1(&not_a_point),
                Err(KeyError::NotAPoint)
            );
        }
    }

    /// `ring` (which verifies) and `p256` (the reference this module used
    /// before) give the same verdict on valid signatures, their high-`s`
    /// twins, tampered ones and out-of-range scalars.
    #[test]
    fn ring_and_p256_agree() {
        use p256::elliptic_curve::ops::Neg;
        // n, the order of P-256's group.
        let order = hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
            .unwrap();
        for i in 0..64u32 {
            let sk = SigningKey::random(&mut rand::rngs::OsRng);
            let key =
                ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(i % 2 == 0).as_bytes())
                    .unwrap();
            let message = format!("statement {i}");
            let sig: Signature = sk.sign(message.as_bytes());
            let (r, s) = sig.split_scalars();
            let high_s = Signature::from_scalars(r, s.neg()).unwrap();
            let mut tampered = sig.to_bytes().to_vec();
            tampered[(i as usize) % 64] ^= 1 << (i % 8);
            let mut r_is_n = order.clone();
            r_is_n.extend_from_slice(&sig.to_bytes()[32..]);
            let zero_s = [&sig.to_bytes()[..32], &[0u8; 32][..]].concat();
            for candidate in [
                sig.to_bytes().to_vec(),
                high_s.to_bytes().to_vec(),
                tampered,
                r_is_n,
                zero_s,
            ] {
                let reference = Signature::from_slice(&candidate)
                    .map(|s| sk.verifying_key().verify(message.as_bytes(), &s).is_ok())
                    .unwrap_or(false);
                assert_eq!(key.verify(message.as_bytes(), &candidate), reference);
            }
            assert!(key.verify(message.as_bytes(), &sig.to_bytes()));
            assert!(key.verify(message.as_bytes(), &high_s.to_bytes()));
        }
    }
}
