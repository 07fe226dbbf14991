//! Hedged randomness for FROST nonces and DKG polynomials.
//!
//! Each use gets a fresh ChaCha20 CSPRNG seeded with
//! SHA-256(domain ‖ 32 bytes from the token's C_GenerateRandom ‖ 32 bytes
//! from the OS). Either source alone being weak or backdoored does not make
//! the output predictable. (FROST round 1 additionally hashes the signing
//! share into each nonce, RFC 9591 section 4.1.)

use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::token::{Token, TokenError};

const DOMAIN: &[u8] = b"ringi hedged rng v1\0";

/// A CSPRNG for one operation, seeded from the token and the OS.
pub fn hedged(token: &Token) -> Result<ChaCha20Rng, TokenError> {
    let mut from_token = Zeroizing::new([0u8; 32]);
    token.random(from_token.as_mut())?;
    Ok(mix(&from_token))
}

fn mix(from_token: &[u8; 32]) -> ChaCha20Rng {
    let mut from_os = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(from_os.as_mut());
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(from_token);
    hasher.update(&from_os[..]);
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&hasher.finalize());
    ChaCha20Rng::from_seed(*seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_token_bytes_still_give_different_streams() {
        // A token whose RNG is stuck must not make the output repeat.
        let stuck = [0u8; 32];
        let (mut a, mut b) = (mix(&stuck), mix(&stuck));
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
