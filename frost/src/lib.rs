//! The ciphersuite seam: everything ringi does with FROST is written once,
//! generic over [`Suite`], and instantiated per kind of key.
//!
//! frost-core is already generic over its `Ciphersuite` trait (key
//! generation, round 1, the signing package, serialization); what differs
//! between the suites ringi needs is how round 2 signs and how the
//! coordinator aggregates: RFC 9591 FROST(secp256k1, SHA-256) uses
//! frost-core's `round2::sign` and `aggregate` as they are, while a BIP-340
//! Taproot key must sign and aggregate *with the BIP-341 tweak* on every
//! signer and at the aggregator alike. [`Suite`] names those two steps, with
//! RFC 9591's as the default, so adding a suite means one `impl Suite`.
//!
//! Names used elsewhere:
//! - [`Secp256k1`]: RFC 9591 FROST(secp256k1, SHA-256), key kind
//!   `frost-secp256k1`, 65-byte signatures (SEC1 R ‖ z).
//! - [`taproot::Secp256k1Tr`]: BIP-340 FROST for Bitcoin Taproot key-path
//!   spends, key kind `bitcoin-taproot`, 64-byte signatures (x-only R ‖ z),
//!   with the internal and output keys of [`taproot`].
//! - [`identifier`] / [`Suite::participant_number`]: FROST identifiers from
//!   and to the participant numbers (1..=65535) that ringi's registry,
//!   sealed shares and wire messages use.

use std::collections::BTreeMap;

pub mod kind;
pub mod taproot;

pub use kind::KeyKind;

pub use frost_core;
use frost_core::keys::{KeyPackage, PublicKeyPackage};
use frost_core::round1::SigningNonces;
use frost_core::round2::SignatureShare;
use frost_core::{Ciphersuite, Error, Identifier, Signature, SigningPackage};

/// RFC 9591 FROST(secp256k1, SHA-256): the suite of `frost-secp256k1` keys.
pub type Secp256k1 = frost_secp256k1::Secp256K1Sha256;

/// A FROST ciphersuite as ringi uses it.
pub trait Suite: Ciphersuite {
    /// The key kind this suite signs for, as recorded with every key
    /// (sealed shares; later the coordinator store and the API).
    const KIND: KeyKind;

    /// Round 2 (RFC 9591 section 5.2): this signer's signature share.
    fn sign(
        package: &SigningPackage<Self>,
        nonces: &SigningNonces<Self>,
        key: &KeyPackage<Self>,
    ) -> Result<SignatureShare<Self>, Error<Self>> {
        frost_core::round2::sign(package, nonces, key)
    }

    /// Aggregation (RFC 9591 section 5.3): the group signature, verified
    /// against the group key; on failure the error names the culprits
    /// (`Error::culprits`).
    fn aggregate(
        package: &SigningPackage<Self>,
        shares: &BTreeMap<Identifier<Self>, SignatureShare<Self>>,
        public: &PublicKeyPackage<Self>,
    ) -> Result<Signature<Self>, Error<Self>> {
        frost_core::aggregate(package, shares, public)
    }

    /// The participant number of an identifier made by [`identifier`], or
    /// `None` for one that was not (a derived or out-of-range identifier).
    /// Scalars of the secp256k1 suites serialize big-endian.
    fn participant_number(id: &Identifier<Self>) -> Option<u16> {
        let bytes = id.serialize();
        if bytes.len() < 2 {
            return None;
        }
        let (high, low) = bytes.split_at(bytes.len() - 2);
        high.iter()
            .all(|b| *b == 0)
            .then(|| u16::from_be_bytes([low[0], low[1]]))
            .filter(|n| *n != 0)
    }
}

impl Suite for Secp256k1 {
    const KIND: KeyKind = KeyKind::FrostSecp256k1;
}

/// The FROST identifier of participant number `n`; `None` for 0, which
/// FROST does not allow.
pub fn identifier<C: Ciphersuite>(n: u16) -> Option<Identifier<C>> {
    Identifier::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participant_numbers_round_trip() {
        for n in [1u16, 2, 255, 256, 65535] {
            let id = identifier::<Secp256k1>(n).unwrap();
            assert_eq!(Secp256k1::participant_number(&id), Some(n));
        }
        assert!(identifier::<Secp256k1>(0).is_none());
        let derived = Identifier::<Secp256k1>::derive(b"not a number").unwrap();
        assert_eq!(Secp256k1::participant_number(&derived), None);
    }

    #[test]
    fn the_default_steps_are_rfc_9591() {
        use rand::rngs::OsRng;
        let (shares, public) = frost_core::keys::generate_with_dealer::<Secp256k1, _>(
            3,
            2,
            frost_core::keys::IdentifierList::Default,
            &mut OsRng,
        )
        .unwrap();
        let keys: Vec<KeyPackage<Secp256k1>> = shares
            .into_values()
            .take(2)
            .map(|s| s.try_into().unwrap())
            .collect();
        let mut nonces = BTreeMap::new();
        let mut commitments = BTreeMap::new();
        for k in &keys {
            let (n, c) = frost_core::round1::commit(k.signing_share(), &mut OsRng);
            nonces.insert(*k.identifier(), n);
            commitments.insert(*k.identifier(), c);
        }
        let package = SigningPackage::new(commitments, b"message");
        let shares = keys
            .iter()
            .map(|k| {
                let share = Secp256k1::sign(&package, &nonces[k.identifier()], k).unwrap();
                (*k.identifier(), share)
            })
            .collect();
        let signature = Secp256k1::aggregate(&package, &shares, &public).unwrap();
        assert_eq!(signature.serialize().unwrap().len(), 65);
        public
            .verifying_key()
            .verify(b"message", &signature)
            .unwrap();
    }
}
