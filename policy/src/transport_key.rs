//! The curves of a signer's DKG transport keys and their wire forms, which
//! the coordinator (to pick a run's curve), the signers (to run the ECDH)
//! and repair orders (which name transport keys) agree on.
//!
//! A transport key is an EC key pair generated in the node's PKCS#11 token
//! whose private half can only derive (ECDH). Two nodes can only derive a
//! shared secret on one curve, so every transport key of a DKG run (or a
//! repair, or a refresh's votes) is on one curve. A node has a key on each
//! curve its token can make:
//!
//! - **secp256k1** (preferred: every node had one before P-256 keys
//!   existed), sent as the SEC1 compressed point, 33 bytes `02|03 ‖ x`;
//! - **P-256**, for tokens without secp256k1 (kryoptic has none), sent as
//!   a DER SubjectPublicKeyInfo (id-ecPublicKey, prime256v1) around the
//!   SEC1 compressed point, 59 bytes: a form that cannot be taken for a
//!   SEC1 point (it starts with 0x30, a SEC1 point with 02, 03 or 04).
//!
//! [`TransportCurve::of`] tells the curve from the form alone; whether the
//! bytes are a point on it is the signer's check (it holds the curve
//! arithmetic).

/// The DER header of a P-256 SubjectPublicKeyInfo whose key is a SEC1
/// compressed point: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 },
/// BIT STRING (33 bytes) }.
pub const P256_SPKI_HEADER: [u8; 26] = [
    0x30, 0x39, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x22, 0x00,
];

/// Length of a SEC1 compressed point on either curve.
pub const COMPRESSED_POINT_LEN: usize = 33;

/// A curve DKG transport keys can be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransportCurve {
    Secp256k1,
    P256,
}

impl TransportCurve {
    /// Every curve, in the order a run's curve is chosen: the first one
    /// every participant has a key on.
    pub const PREFERENCE: [TransportCurve; 2] = [TransportCurve::Secp256k1, TransportCurve::P256];

    pub fn name(self) -> &'static str {
        match self {
            TransportCurve::Secp256k1 => "secp256k1",
            TransportCurve::P256 => "P-256",
        }
    }

    /// The curve of a transport key in its wire form, from the form alone
    /// (not a check that the point is on the curve); `None` for neither form.
    pub fn of(wire: &[u8]) -> Option<TransportCurve> {
        let compressed = |p: &[u8]| p.len() == COMPRESSED_POINT_LEN && matches!(p[0], 2 | 3);
        if compressed(wire) {
            Some(TransportCurve::Secp256k1)
        } else if let Some(point) = wire.strip_prefix(&P256_SPKI_HEADER[..])
            && compressed(point)
        {
            Some(TransportCurve::P256)
        } else {
            None
        }
    }

    /// The wire form of the SEC1 compressed point `point` on this curve.
    pub fn wire(self, point: &[u8]) -> Vec<u8> {
        match self {
            TransportCurve::Secp256k1 => point.to_vec(),
            TransportCurve::P256 => [&P256_SPKI_HEADER[..], point].concat(),
        }
    }
}

impl std::fmt::Display for TransportCurve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_curve_from_the_form() {
        let point = [[2u8].as_slice(), &[7u8; 32]].concat();
        assert_eq!(TransportCurve::of(&point), Some(TransportCurve::Secp256k1));
        let p256 = TransportCurve::P256.wire(&point);
        assert_eq!(p256.len(), 59);
        assert_eq!(TransportCurve::of(&p256), Some(TransportCurve::P256));
        assert_eq!(TransportCurve::Secp256k1.wire(&point), point);
        // Uncompressed points, other lengths and headers are neither.
        assert_eq!(TransportCurve::of(&[4u8; 65]), None);
        assert_eq!(TransportCurve::of(&[2u8; 32]), None);
        assert_eq!(TransportCurve::of(&p256[..58]), None);
        let mut other_curve = p256.clone();
        other_curve[22] ^= 1;
        assert_eq!(TransportCurve::of(&other_curve), None);
        assert_eq!(TransportCurve::of(&[]), None);
    }

    #[test]
    fn the_header_is_the_der_of_a_p256_spki() {
        // SEQUENCE of 57 bytes = 19 (algorithm) + 2 + 36 (bit string).
        assert_eq!(P256_SPKI_HEADER[1] as usize, 59 - 2);
        assert_eq!(P256_SPKI_HEADER[3] as usize, 19);
        assert_eq!(P256_SPKI_HEADER[24] as usize, 1 + COMPRESSED_POINT_LEN);
    }
}
