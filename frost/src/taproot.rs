//! Bitcoin Taproot keys (key kind `bitcoin-taproot`): FROST with BIP-340
//! Schnorr signatures (frost-secp256k1-tr), signing for the BIP-341
//! key-path output key with no script tree (as BIP-86 wallets do).
//!
//! Key roles, as Bitcoin names them:
//! - the **internal key** P is the group key a key's DKG produced. The
//!   -tr ciphersuite's `post_dkg` already tweaked the raw DKG key once (so a
//!   participant cannot hide a script path); that result is P, and it is
//!   what a PSBT's `tap_internal_key` and a `tr(P)` descriptor name. Never
//!   rebuild the group key from the DKG commitments: that gives another key.
//! - the **output key** Q = even(P) + TapTweak(P.x)·G (BIP-341, "Taproot
//!   key path spending", merkle root absent), the key a P2TR output
//!   (`OP_1 <Q.x>`) pays to, and the key the signatures must verify under.
//!
//! So every signer signs and the coordinator aggregates with the tweak
//! (`sign_with_tweak`, `aggregate_with_tweak`, merkle root `None`): a
//! mismatch between the two shows up as an invalid share naming the
//! signers, and plain `sign`/`aggregate` would give a signature valid under
//! P, which consensus rejects for an output paying Q.

use std::collections::BTreeMap;

use frost_core::keys::{KeyPackage, PublicKeyPackage};
use frost_core::round1::SigningNonces;
use frost_core::round2::SignatureShare;
use frost_core::{Error, Identifier, Signature, SigningPackage};
use frost_secp256k1_tr::keys::Tweak;

use crate::Suite;

/// FROST(secp256k1, SHA-256) with BIP-340 challenges and x-only keys: the
/// suite of `bitcoin-taproot` keys; 64-byte signatures (x-only R ‖ z).
pub type Secp256k1Tr = frost_secp256k1_tr::Secp256K1Sha256TR;

impl Suite for Secp256k1Tr {
    const KIND: crate::KeyKind = crate::KeyKind::BitcoinTaproot;

    /// Round 2 for the key-path output key: the share is computed with the
    /// key package tweaked by TapTweak(P.x) (no script tree).
    fn sign(
        package: &SigningPackage<Self>,
        nonces: &SigningNonces<Self>,
        key: &KeyPackage<Self>,
    ) -> Result<SignatureShare<Self>, Error<Self>> {
        frost_secp256k1_tr::round2::sign_with_tweak(package, nonces, key, None)
    }

    /// Aggregation under the same tweak: a BIP-340 signature valid under
    /// the output key Q.
    fn aggregate(
        package: &SigningPackage<Self>,
        shares: &BTreeMap<Identifier<Self>, SignatureShare<Self>>,
        public: &PublicKeyPackage<Self>,
    ) -> Result<Signature<Self>, Error<Self>> {
        frost_secp256k1_tr::aggregate_with_tweak(package, shares, public, None)
    }
}

/// Why a Taproot key could not be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaprootError {
    #[error("the group key does not encode as a SEC1 point: {0}")]
    Encoding(String),
}

fn x_only(public: &PublicKeyPackage<Secp256k1Tr>) -> Result<[u8; 32], TaprootError> {
    let sec1 = public
        .verifying_key()
        .serialize()
        .map_err(|e| TaprootError::Encoding(e.to_string()))?;
    sec1.get(1..33)
        .and_then(|x| <[u8; 32]>::try_from(x).ok())
        .ok_or_else(|| TaprootError::Encoding(format!("{} bytes, not 33", sec1.len())))
}

/// The internal key P (x-only), from a key's public key package.
pub fn internal_key(public: &PublicKeyPackage<Secp256k1Tr>) -> Result<[u8; 32], TaprootError> {
    x_only(public)
}

/// The key-path output key Q (x-only): what the key's P2TR address pays to
/// and what its signatures verify under.
pub fn output_key(public: &PublicKeyPackage<Secp256k1Tr>) -> Result<[u8; 32], TaprootError> {
    x_only(&public.clone().tweak(None::<&[u8]>))
}

/// The internal key P and output key Q (both x-only) of a key whose group
/// key is `group_key` (SEC1 compressed, as stored with a share or a key
/// record): what a signer or the coordinator needs to check a PSBT without
/// the verifying shares.
pub fn keys_of_group(group_key: &[u8]) -> Result<([u8; 32], [u8; 32]), TaprootError> {
    let verifying_key = frost_core::VerifyingKey::<Secp256k1Tr>::deserialize(group_key)
        .map_err(|e| TaprootError::Encoding(e.to_string()))?;
    let public = PublicKeyPackage::new(BTreeMap::new(), verifying_key, None);
    Ok((internal_key(&public)?, output_key(&public)?))
}

/// The Bitcoin networks a Taproot key can pay on (its address prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Bitcoin,
    Testnet,
    Signet,
    Regtest,
}

impl Network {
    pub const ALL: [Network; 4] = [
        Network::Bitcoin,
        Network::Testnet,
        Network::Signet,
        Network::Regtest,
    ];

    /// The name a policy gives (`network = "regtest"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Bitcoin => "bitcoin",
            Network::Testnet => "testnet",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
        }
    }

    pub fn parse(name: &str) -> Option<Network> {
        Network::ALL.into_iter().find(|n| n.as_str() == name)
    }

    /// The segwit human-readable part (BIP-173): signet shares testnet's.
    fn hrp(self) -> bech32::Hrp {
        match self {
            Network::Bitcoin => bech32::hrp::BC,
            Network::Testnet | Network::Signet => bech32::hrp::TB,
            Network::Regtest => bech32::hrp::BCRT,
        }
    }
}

/// The P2TR address (segwit v1, bech32m, BIP-350) paying to `output_key`
/// on `network`: the address whose scriptPubKey is `OP_1 <output_key>`.
pub fn address(output_key: &[u8; 32], network: Network) -> String {
    // A 32-byte version-1 program always encodes: the length checks of
    // `segwit::encode` cannot fail for it, and the result is well under the
    // 90-character limit.
    bech32::segwit::encode_v1(network.hrp(), output_key)
        .unwrap_or_else(|e| unreachable!("a 32-byte v1 program encodes: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_core::VerifyingKey;
    use frost_core::keys::IdentifierList;
    use rand::rngs::OsRng;

    /// A public key package holding only the group key `02 ‖ x`.
    fn package_for(x: &str) -> PublicKeyPackage<Secp256k1Tr> {
        let mut sec1 = vec![2u8];
        sec1.extend(hex::decode(x).unwrap());
        let key = VerifyingKey::<Secp256k1Tr>::deserialize(&sec1).unwrap();
        PublicKeyPackage::new(BTreeMap::new(), key, None)
    }

    /// BIP-341 `wallet-test-vectors.json`, scriptPubKey vector 0 (no
    /// script tree), and BIP-86's first two receiving addresses: internal
    /// key → output key.
    #[test]
    fn output_keys_match_bip341_and_bip86() {
        for (internal, output) in [
            (
                "d6889cb081036e0faefa3a35157ad71086b123b2b144b649798b494c300a961d",
                "53a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343",
            ),
            (
                "cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115",
                "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c",
            ),
            (
                "83dfe85a3151d2517290da461fe2815591ef69f2b18a2ce63f01697a8b313145",
                "a82f29944d65b86ae6b5e5cc75e294ead6c59391a1edc5e016e3498c67fc7bbb",
            ),
        ] {
            let package = package_for(internal);
            assert_eq!(hex::encode(internal_key(&package).unwrap()), internal);
            assert_eq!(hex::encode(output_key(&package).unwrap()), output);
            let group = package.verifying_key().serialize().unwrap();
            let (p, q) = keys_of_group(&group).unwrap();
            assert_eq!(
                (hex::encode(p), hex::encode(q)),
                (internal.into(), output.into())
            );
        }
    }

    /// BIP-341 scriptPubKey vector 0's `bip350Address`, BIP-86's first
    /// receiving address, BIP-350's testnet v1 vector; each decodes back
    /// to its network's prefix and the output key.
    #[test]
    fn addresses_match_bip341_bip86_and_bip350() {
        let key = |x: &str| -> [u8; 32] { hex::decode(x).unwrap().try_into().unwrap() };
        assert_eq!(
            address(
                &key("53a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343"),
                Network::Bitcoin
            ),
            "bc1p2wsldez5mud2yam29q22wgfh9439spgduvct83k3pm50fcxa5dps59h4z5"
        );
        assert_eq!(
            address(
                &key("a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c"),
                Network::Bitcoin
            ),
            "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"
        );
        assert_eq!(
            address(
                &key("000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
                Network::Testnet
            ),
            "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c"
        );
        let q = key("53a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343");
        for (network, prefix) in [(Network::Signet, "tb1p"), (Network::Regtest, "bcrt1p")] {
            let a = address(&q, network);
            assert!(a.starts_with(prefix), "{a}");
            let (_, version, program) = bech32::segwit::decode(&a).unwrap();
            assert_eq!((version.to_u8(), program), (1, q.to_vec()));
            assert_eq!(Network::parse(network.as_str()), Some(network));
        }
        assert_eq!(Network::parse("mainnet"), None);
    }

    /// Signs `message` with participants 1..=t of `keys` through the seam.
    fn sign_with(
        keys: &BTreeMap<Identifier<Secp256k1Tr>, KeyPackage<Secp256k1Tr>>,
        public: &PublicKeyPackage<Secp256k1Tr>,
        t: usize,
        message: &[u8],
    ) -> Signature<Secp256k1Tr> {
        let mut nonces = BTreeMap::new();
        let mut commitments = BTreeMap::new();
        for (id, k) in keys.iter().take(t) {
            let (n, c) = frost_core::round1::commit(k.signing_share(), &mut OsRng);
            nonces.insert(*id, n);
            commitments.insert(*id, c);
        }
        let package = SigningPackage::new(commitments, message);
        let shares = nonces
            .iter()
            .map(|(id, n)| (*id, Secp256k1Tr::sign(&package, n, &keys[id]).unwrap()))
            .collect();
        Secp256k1Tr::aggregate(&package, &shares, public).unwrap()
    }

    /// An independent BIP-340 verifier (RustCrypto's k256 `schnorr`, over
    /// the raw message as BIP-340 defines it: its `Verifier` trait would
    /// hash the message first).
    fn bip340_verifies(output: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
        let key = k256::schnorr::VerifyingKey::from_bytes(output).unwrap();
        let Ok(sig) = k256::schnorr::Signature::try_from(signature) else {
            return false;
        };
        key.verify_raw(message, &sig).is_ok()
    }

    /// A key from a DKG of this suite (already tweaked once by `post_dkg`;
    /// the result is the internal key) signs through the seam; the 64-byte
    /// signature verifies under the output key with an independent BIP-340
    /// verifier, and not under the internal key.
    #[test]
    fn dkg_keys_sign_bip340_signatures_for_the_output_key() {
        use frost_core::keys::dkg;
        let ids: Vec<Identifier<Secp256k1Tr>> =
            (1..=3).map(|n| crate::identifier(n).unwrap()).collect();
        let mut secrets1 = BTreeMap::new();
        let mut round1 = BTreeMap::new();
        for id in &ids {
            let (s, p) = dkg::part1::<Secp256k1Tr, _>(*id, 3, 2, &mut OsRng).unwrap();
            secrets1.insert(*id, s);
            round1.insert(*id, p);
        }
        let mut secrets2 = BTreeMap::new();
        let mut round2: BTreeMap<Identifier<Secp256k1Tr>, BTreeMap<_, _>> = BTreeMap::new();
        for id in &ids {
            let others = round1
                .iter()
                .filter(|(o, _)| *o != id)
                .map(|(o, p)| (*o, p.clone()))
                .collect();
            let (s, packages) = dkg::part2(secrets1.remove(id).unwrap(), &others).unwrap();
            secrets2.insert(*id, (s, others));
            for (to, p) in packages {
                round2.entry(to).or_default().insert(*id, p);
            }
        }
        let mut keys = BTreeMap::new();
        let mut public = None;
        for id in &ids {
            let (s, others) = &secrets2[id];
            let (k, p) = dkg::part3(s, others, &round2[id]).unwrap();
            keys.insert(*id, k);
            public = Some(p);
        }
        let public = public.unwrap();
        let message = [0x5a; 32];
        for _ in 0..4 {
            let signature = sign_with(&keys, &public, 2, &message);
            let bytes = signature.serialize().unwrap();
            assert_eq!(bytes.len(), 64);
            assert!(bip340_verifies(
                &output_key(&public).unwrap(),
                &message,
                &bytes
            ));
            assert!(!bip340_verifies(
                &internal_key(&public).unwrap(),
                &message,
                &bytes
            ));
        }
    }

    /// Dealer keys (not post-tweaked) follow the same rule: the group key is
    /// the internal key.
    #[test]
    fn dealer_keys_sign_for_the_output_key_too() {
        let (shares, public) = frost_core::keys::generate_with_dealer::<Secp256k1Tr, _>(
            3,
            2,
            IdentifierList::Default,
            &mut OsRng,
        )
        .unwrap();
        let keys = shares
            .into_iter()
            .map(|(id, s)| (id, KeyPackage::try_from(s).unwrap()))
            .collect();
        let message = b"any length message";
        let signature = sign_with(&keys, &public, 2, message).serialize().unwrap();
        assert!(bip340_verifies(
            &output_key(&public).unwrap(),
            message,
            &signature
        ));
        assert_eq!(Secp256k1Tr::KIND.as_str(), "bitcoin-taproot");
    }
}
