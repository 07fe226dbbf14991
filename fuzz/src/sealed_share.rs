//! The sealed-share format read back from the token
//! (`ringi_signer::sealed_share`): what the vault decodes at start from
//! token objects that anyone logged in can write.
//!
//! Reaches: the length, version and identifier checks of `decode`; for
//! what decodes, `encode` gives the same bytes back (the format has one
//! encoding per value) and the AAD is computed over its header.

use ringi_signer::sealed_share::{SealedShare, ShareHeader, aad};

crate::stages!(
    /// How far an input got.
    Reached {
        Refused,
        /// Decoded, re-encoded identically, AAD computed.
        RoundTrip,
    }
);

pub fn run(data: &[u8]) -> Reached {
    let Ok(share) = SealedShare::decode(data) else {
        return Reached::Refused;
    };
    assert_eq!(share.encode(), data, "decode/encode is not the identity");
    let _ = aad("k", &share.header, b"kek");
    Reached::RoundTrip
}

pub fn seeds() -> Vec<Vec<u8>> {
    let share = SealedShare {
        header: ShareHeader {
            identifier: 3,
            group_key: [2; 33],
        },
        iv: [5; 12],
        ciphertext: vec![0x11; 136 + 16],
    };
    vec![share.encode()]
}
