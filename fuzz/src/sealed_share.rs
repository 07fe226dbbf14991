//! The sealed-share format read back from the token
//! (`ringi_signer::sealed_share`): what the vault decodes at start from
//! token objects that anyone logged in can write.
//!
//! Reaches: the version (1 and 2), kind, length and identifier checks of
//! `decode`; for what decodes, `encode` gives the same bytes back (the
//! format has one encoding per value, in either version) and the AAD is
//! computed over its header, differing between versions and kinds.

use ringi_frost::KeyKind;
use ringi_signer::sealed_share::{Format, SealedShare, ShareHeader, aad};

crate::stages!(
    /// How far an input got.
    Reached {
        Refused,
        /// A version-1 share decoded, re-encoded identically, AAD computed.
        RoundTripV1,
        /// A version-2 share decoded, re-encoded identically, AAD computed.
        RoundTripV2,
    }
);

pub fn run(data: &[u8]) -> Reached {
    let Ok(share) = SealedShare::decode(data) else {
        return Reached::Refused;
    };
    assert_eq!(share.encode(), data, "decode/encode is not the identity");
    let bound = aad("k", &share.header, b"kek");
    // Relabelled as any other format or kind, the AAD differs: the blob
    // would not unseal.
    let formats = [Format::V1]
        .into_iter()
        .chain(KeyKind::ALL.into_iter().map(Format::V2));
    for format in formats.filter(|f| *f != share.header.format) {
        let relabelled = ShareHeader {
            format,
            ..share.header.clone()
        };
        assert_ne!(
            aad("k", &relabelled, b"kek"),
            bound,
            "the AAD ignores {format:?}"
        );
    }
    match share.header.format {
        Format::V1 => Reached::RoundTripV1,
        Format::V2(_) => Reached::RoundTripV2,
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let share = |kind| SealedShare {
        header: ShareHeader::new(kind, 3, [2; 33]),
        iv: [5; 12],
        ciphertext: vec![0x11; 136 + 16],
    };
    let mut v1 = share(KeyKind::FrostSecp256k1);
    v1.header.format = Format::V1;
    [
        v1,
        share(KeyKind::FrostSecp256k1),
        share(KeyKind::BitcoinTaproot),
    ]
    .iter()
    .map(SealedShare::encode)
    .collect()
}
