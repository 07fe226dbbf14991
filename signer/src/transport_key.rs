//! A DKG transport public key, checked: its curve and its point
//! (`ringi_policy::transport_key` has the wire forms).
//!
//! A node holds a transport key on each curve its token can make
//! (secp256k1 where the token has it, P-256 always: every token ringi runs
//! on makes P-256 keys, its audit and TLS keys need them). A run (DKG,
//! refresh votes, repair) has all its participants' keys on one curve, and
//! each node derives with its own key on that curve
//! ([`crate::token::Token::dkg_shared_secret`]).

use k256::elliptic_curve::sec1::ToEncodedPoint as _;
pub use ringi_policy::transport_key::TransportCurve;

/// A transport key on a known curve, its point checked.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportKey {
    curve: TransportCurve,
    /// SEC1 uncompressed (65 bytes): what the token's ECDH takes.
    point: Vec<u8>,
}

impl std::fmt::Debug for TransportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TransportKey({} {})",
            self.curve,
            hex::encode(self.wire())
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportKeyError {
    #[error("not a DKG transport key (a secp256k1 SEC1 point or a P-256 SubjectPublicKeyInfo)")]
    Form,
    #[error("not a point on {0}")]
    NotOnCurve(TransportCurve),
}

impl TransportKey {
    /// A key in its wire form (a secp256k1 key also as any SEC1 point,
    /// for the callers that always sent it so).
    pub fn from_wire(wire: &[u8]) -> Result<Self, TransportKeyError> {
        match TransportCurve::of(wire) {
            Some(TransportCurve::P256) => Self::from_point(
                TransportCurve::P256,
                &wire[ringi_policy::transport_key::P256_SPKI_HEADER.len()..],
            ),
            Some(TransportCurve::Secp256k1) => Self::from_point(TransportCurve::Secp256k1, wire),
            None if matches!(wire.first(), Some(4)) && wire.len() == 65 => {
                Self::from_point(TransportCurve::Secp256k1, wire)
            }
            None => Err(TransportKeyError::Form),
        }
    }

    /// A SEC1 point (any form) on `curve`.
    pub fn from_point(curve: TransportCurve, sec1: &[u8]) -> Result<Self, TransportKeyError> {
        let point = match curve {
            TransportCurve::Secp256k1 => k256::PublicKey::from_sec1_bytes(sec1)
                .map(|k| k.to_encoded_point(false).as_bytes().to_vec()),
            TransportCurve::P256 => p256::PublicKey::from_sec1_bytes(sec1)
                .map(|k| k.to_encoded_point(false).as_bytes().to_vec()),
        }
        .map_err(|_| TransportKeyError::NotOnCurve(curve))?;
        Ok(TransportKey { curve, point })
    }

    pub fn curve(&self) -> TransportCurve {
        self.curve
    }

    /// The SEC1 uncompressed point (the ECDH's peer data).
    pub fn point(&self) -> &[u8] {
        &self.point
    }

    /// The canonical wire form (what GetNodeInfo hands out, what an
    /// attestation and a repair order name).
    pub fn wire(&self) -> Vec<u8> {
        let compressed = match self.curve {
            TransportCurve::Secp256k1 => k256::PublicKey::from_sec1_bytes(&self.point)
                .map(|k| k.to_encoded_point(true).as_bytes().to_vec()),
            TransportCurve::P256 => p256::PublicKey::from_sec1_bytes(&self.point)
                .map(|k| k.to_encoded_point(true).as_bytes().to_vec()),
        }
        // The point was checked when the key was made.
        .unwrap_or_default();
        self.curve.wire(&compressed)
    }
}

/// The one curve of a run's transport keys; `None` for no keys.
pub fn one_curve<'a>(
    keys: impl IntoIterator<Item = &'a TransportKey>,
) -> Result<Option<TransportCurve>, (TransportCurve, TransportCurve)> {
    let mut curve = None;
    for key in keys {
        match curve {
            None => curve = Some(key.curve()),
            Some(c) if c != key.curve() => return Err((c, key.curve())),
            Some(_) => {}
        }
    }
    Ok(curve)
}

/// A node's own transport keys, one per curve its token has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnKeys(Vec<TransportKey>);

impl OwnKeys {
    /// At least one key, at most one per curve, in [`TransportCurve::PREFERENCE`] order.
    pub fn new(mut keys: Vec<TransportKey>) -> Option<Self> {
        keys.sort_by_key(|k| k.curve());
        keys.dedup_by_key(|k| k.curve());
        (!keys.is_empty()).then_some(OwnKeys(keys))
    }

    /// This node's key on `curve`, if its token has one.
    pub fn on(&self, curve: TransportCurve) -> Option<&TransportKey> {
        self.0.iter().find(|k| k.curve() == curve)
    }

    /// The preferred key: what `dkg_public_key` names alone (secp256k1
    /// where the token has it, as before P-256 keys existed).
    pub fn primary(&self) -> &TransportKey {
        // `new` refuses an empty list.
        &self.0[0]
    }

    pub fn all(&self) -> &[TransportKey] {
        &self.0
    }

    /// Whether `key` is one of this node's.
    pub fn contains(&self, key: &TransportKey) -> bool {
        self.0.contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::{DecodePublicKey, EncodePublicKey};

    fn k1(seed: u8) -> Vec<u8> {
        k256::SecretKey::from_slice(&[seed; 32])
            .unwrap()
            .public_key()
            .to_sec1_bytes()
            .to_vec()
    }

    fn p256_key(seed: u8) -> p256::PublicKey {
        p256::SecretKey::from_slice(&[seed; 32])
            .unwrap()
            .public_key()
    }

    #[test]
    fn secp256k1_keys_keep_their_old_wire_form() {
        let key = TransportKey::from_wire(&k1(3)).unwrap();
        assert_eq!(key.curve(), TransportCurve::Secp256k1);
        assert_eq!(key.point().len(), 65);
        assert_eq!(key.wire().len(), 33);
        assert_eq!(TransportKey::from_wire(&key.wire()).unwrap(), key);
        assert_eq!(TransportKey::from_wire(key.point()).unwrap(), key);
    }

    #[test]
    fn p256_keys_travel_as_a_standard_spki() {
        let public = p256_key(5);
        let key = TransportKey::from_point(TransportCurve::P256, &public.to_sec1_bytes()).unwrap();
        let wire = key.wire();
        assert_eq!(wire.len(), 59);
        // Any DER parser reads the wire form as the same P-256 key.
        assert_eq!(p256::PublicKey::from_public_key_der(&wire).unwrap(), public);
        assert_eq!(TransportKey::from_wire(&wire).unwrap(), key);
        // p256's own (uncompressed) SPKI is not the wire form.
        let uncompressed = public.to_public_key_der().unwrap();
        assert_eq!(
            TransportKey::from_wire(uncompressed.as_bytes()),
            Err(TransportKeyError::Form)
        );
    }

    #[test]
    fn refuses_points_off_the_curve_and_garbage() {
        // x = 0 is on neither secp256k1 (0³ + 7 is no square mod p) nor,
        // x = 1, on P-256.
        let x = |v: u8| [[2u8].as_slice(), &[0u8; 31], &[v]].concat();
        assert_eq!(
            TransportKey::from_wire(&x(0)),
            Err(TransportKeyError::NotOnCurve(TransportCurve::Secp256k1))
        );
        let bad = TransportCurve::P256.wire(&x(1));
        assert_eq!(
            TransportKey::from_wire(&bad),
            Err(TransportKeyError::NotOnCurve(TransportCurve::P256))
        );
        assert_eq!(
            TransportKey::from_wire(&[9; 40]),
            Err(TransportKeyError::Form)
        );
        assert_eq!(TransportKey::from_wire(&[]), Err(TransportKeyError::Form));
    }

    #[test]
    fn one_curve_per_run() {
        let a = TransportKey::from_wire(&k1(1)).unwrap();
        let b = TransportKey::from_wire(&k1(2)).unwrap();
        let p =
            TransportKey::from_point(TransportCurve::P256, &p256_key(1).to_sec1_bytes()).unwrap();
        assert_eq!(one_curve([&a, &b]), Ok(Some(TransportCurve::Secp256k1)));
        assert_eq!(
            one_curve([&a, &p]),
            Err((TransportCurve::Secp256k1, TransportCurve::P256))
        );
        assert_eq!(one_curve([]), Ok(None));
        let own = OwnKeys::new(vec![p.clone(), a.clone()]).unwrap();
        assert_eq!(own.primary(), &a);
        assert_eq!(own.on(TransportCurve::P256), Some(&p));
        assert!(OwnKeys::new(vec![]).is_none());
    }
}
