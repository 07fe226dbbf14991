//! The sealed-share format read back from the token
//! (`ringi_signer::sealed_share`): what the vault decodes at start from
//! token objects that anyone logged in can write.
//!
//! Reaches: the version (1, 2 and 3), kind, length (of the whole and of
//! version 3's public package) and identifier checks of `decode`; for what decodes, `encode` gives the same bytes back (the
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
        /// A version-3 share (generation, public package) decoded,
        /// re-encoded identically, AAD computed.
        RoundTripV3,
    }
);

pub fn run(data: &[u8]) -> Reached {
    let Ok(share) = SealedShare::decode(data) else {
        return Reached::Refused;
    };
    assert_eq!(
        share.encode().as_deref(),
        Ok(data),
        "decode/encode is not the identity"
    );
    let bound = aad("k", &share.header, b"kek");
    // Relabelled as any other format or kind, the AAD differs: the blob
    // would not unseal.
    let formats = [Format::V1]
        .into_iter()
        .chain(KeyKind::ALL.into_iter().map(Format::V2))
        .chain(KeyKind::ALL.into_iter().map(Format::V3));
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
    if let Format::V3(_) = share.header.format {
        // The generation and the public package are bound too.
        let older = ShareHeader {
            generation: share.header.generation.wrapping_add(1),
            ..share.header.clone()
        };
        assert_ne!(
            aad("k", &older, b"kek"),
            bound,
            "the AAD ignores the generation"
        );
        let mut public = share.header.public_key_package.clone();
        public.push(0);
        let other = ShareHeader {
            public_key_package: public,
            ..share.header.clone()
        };
        assert_ne!(
            aad("k", &other, b"kek"),
            bound,
            "the AAD ignores the public package"
        );
    }
    match share.header.format {
        Format::V1 => Reached::RoundTripV1,
        Format::V2(_) => Reached::RoundTripV2,
        Format::V3(_) => Reached::RoundTripV3,
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let share = |kind| SealedShare {
        header: ShareHeader::new(kind, 3, [2; 33], 1, vec![0x22; 120]),
        iv: [5; 12],
        ciphertext: vec![0x11; 136 + 16],
    };
    let older = |format| {
        let mut s = share(KeyKind::FrostSecp256k1);
        s.header.format = format;
        s.header.generation = 0;
        s.header.public_key_package.clear();
        s
    };
    [
        older(Format::V1),
        older(Format::V2(KeyKind::FrostSecp256k1)),
        older(Format::V2(KeyKind::BitcoinTaproot)),
        share(KeyKind::FrostSecp256k1),
        share(KeyKind::BitcoinTaproot),
    ]
    .iter()
    .map(|s| s.encode().expect("a seed encodes"))
    .collect()
}
