//! The byte format of a key share sealed by the token's KEK.
//!
//! ```text
//! sealed v2 = version (1 byte, = 2)
//!           ‖ kind (1 byte: 1 frost-secp256k1, 2 bitcoin-taproot)
//!           ‖ identifier (u16, big-endian)     -- the node's FROST identifier
//!           ‖ group verifying key (33 bytes, SEC1 compressed)
//!           ‖ iv (12 bytes, fresh per seal)
//!           ‖ AES-256-GCM ciphertext of KeyPackage::serialize() ‖ tag (16 bytes)
//!
//! sealed v3 = version (1 byte, = 3) ‖ kind ‖ identifier ‖ group verifying key
//!           ‖ generation (u32, big-endian)   -- 0 from the DKG, +1 per refresh
//!           ‖ len(public) (u16, big-endian) ‖ public
//!                 -- the key's frost PublicKeyPackage::serialize() as of
//!                    this generation (every participant's verifying share)
//!           ‖ iv ‖ ciphertext ‖ tag          -- as in v2
//!
//! aad v2    = "ringi sealed share v2" ‖ 0x00
//!           ‖ len(kind name) (1 byte) ‖ kind name  -- e.g. "bitcoin-taproot"
//!           ‖ len(key_id) (1 byte) ‖ key_id
//!           ‖ identifier (u16, big-endian)
//!           ‖ group verifying key (33 bytes)
//!           ‖ len(kek_id) (1 byte) ‖ kek_id    -- CKA_ID of the KEK
//! ```
//!
//! aad v3    = "ringi sealed share v3" ‖ 0x00 ‖ the v2 fields up to the group
//!             key ‖ generation (u32, big-endian) ‖ SHA-256(public)
//!           ‖ len(kek_id) (1 byte) ‖ kek_id
//!
//! Version 3 keeps with the share what a coordinator that lost its database
//! needs to re-register the key (`keys import-from-signers`), and the
//! generation that lets a refresh store the next share next to the current
//! one before it destroys the old (see `vault.rs`). Version 2 shares read
//! as generation 0 without a public package.
//!
//! Version 1 (written before key kinds existed) has no kind byte and its
//! AAD starts `"ringi sealed share v1" ‖ 0x00` without the kind; it is read
//! as a `frost-secp256k1` share, so tokens sealed then keep working. New
//! shares are always sealed as version 2.
//!
//! The header is public and lets the node answer "which key, which kind,
//! which identifier" without touching the token. The AAD binds the
//! ciphertext to the kind, key id, identifier, group key and KEK, so a blob
//! moved to another key id or token, or relabelled as another kind or
//! version, fails to unseal instead of being used for the wrong key.

use ringi_frost::KeyKind;

use crate::token::GCM_IV_LEN;

/// The format version new shares are sealed with.
pub const VERSION: u8 = 3;
const AAD_DOMAIN_V1: &[u8] = b"ringi sealed share v1\0";
const AAD_DOMAIN_V2: &[u8] = b"ringi sealed share v2\0";
const AAD_DOMAIN_V3: &[u8] = b"ringi sealed share v3\0";
/// Longest public key package a v3 share can carry.
pub const MAX_PUBLIC_LEN: usize = u16::MAX as usize;
pub const GROUP_KEY_LEN: usize = 33;
const TAG_LEN: usize = 16;

/// A sealed-share format version, with the key kind it records. Version 1
/// can only mean `frost-secp256k1`: the type has no way to say otherwise,
/// so a header cannot claim another kind under an AAD that does not bind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// No kind in header or AAD: always `frost-secp256k1`.
    V1,
    /// The kind in header and AAD.
    V2(KeyKind),
    /// The kind, the generation and the public key package in header and
    /// AAD.
    V3(KeyKind),
}

impl Format {
    fn header_len(self) -> usize {
        match self {
            Format::V1 => 1 + 2 + GROUP_KEY_LEN + GCM_IV_LEN,
            Format::V2(_) => 1 + 1 + 2 + GROUP_KEY_LEN + GCM_IV_LEN,
            // Without the public package's bytes.
            Format::V3(_) => 1 + 1 + 2 + GROUP_KEY_LEN + 4 + 2 + GCM_IV_LEN,
        }
    }

    /// The kind of key the share holds.
    pub fn kind(self) -> KeyKind {
        match self {
            Format::V1 => KeyKind::FrostSecp256k1,
            Format::V2(kind) | Format::V3(kind) => kind,
        }
    }
}

/// The public part of a sealed share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareHeader {
    /// The format it was sealed in, and so its key kind (new shares:
    /// [`Format::V2`]).
    pub format: Format,
    pub identifier: u16,
    pub group_key: [u8; GROUP_KEY_LEN],
    /// Which refresh of the key this share belongs to: 0 from the DKG, one
    /// more per refresh. Always 0 before version 3.
    pub generation: u32,
    /// The key's frost `PublicKeyPackage` as of this generation; empty
    /// before version 3.
    pub public_key_package: Vec<u8>,
}

impl ShareHeader {
    /// The header of a share about to be sealed (always the current format).
    pub fn new(
        kind: KeyKind,
        identifier: u16,
        group_key: [u8; GROUP_KEY_LEN],
        generation: u32,
        public_key_package: Vec<u8>,
    ) -> Self {
        ShareHeader {
            format: Format::V3(kind),
            identifier,
            group_key,
            generation,
            public_key_package,
        }
    }

    /// The kind of key the share holds.
    pub fn kind(&self) -> KeyKind {
        self.format.kind()
    }
}

/// A sealed share, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedShare {
    pub header: ShareHeader,
    pub iv: [u8; GCM_IV_LEN],
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("sealed share is {0} bytes, shorter than any valid one")]
    TooShort(usize),
    #[error("sealed share has unknown format version {0}")]
    UnknownVersion(u8),
    #[error("sealed share has unknown key kind code {0}")]
    UnknownKind(u8),
    #[error("sealed share names identifier 0, which FROST does not allow")]
    ZeroIdentifier,
    #[error("sealed share's public key package is longer than {MAX_PUBLIC_LEN} bytes")]
    PublicTooLong,
}

impl SealedShare {
    /// Encodes in the header's format.
    /// Encodes in the header's format. Refuses a public key package longer
    /// than [`MAX_PUBLIC_LEN`] (never a truncated one).
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        let h = &self.header;
        let mut out = Vec::with_capacity(
            h.format.header_len() + h.public_key_package.len() + self.ciphertext.len(),
        );
        match h.format {
            Format::V1 => out.push(1),
            Format::V2(kind) => {
                out.push(2);
                out.push(kind.code());
            }
            Format::V3(kind) => {
                out.push(3);
                out.push(kind.code());
            }
        }
        out.extend_from_slice(&h.identifier.to_be_bytes());
        out.extend_from_slice(&h.group_key);
        if let Format::V3(_) = h.format {
            let len = u16::try_from(h.public_key_package.len())
                .map_err(|_| FormatError::PublicTooLong)?;
            out.extend_from_slice(&h.generation.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&h.public_key_package);
        }
        out.extend_from_slice(&self.iv);
        out.extend_from_slice(&self.ciphertext);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let (format, rest) = match bytes {
            [1, rest @ ..] => (Format::V1, rest),
            [2, code, rest @ ..] => (
                Format::V2(KeyKind::from_code(*code).map_err(|_| FormatError::UnknownKind(*code))?),
                rest,
            ),
            [3, code, rest @ ..] => (
                Format::V3(KeyKind::from_code(*code).map_err(|_| FormatError::UnknownKind(*code))?),
                rest,
            ),
            [2] | [3] | [] => return Err(FormatError::TooShort(bytes.len())),
            [v, ..] => return Err(FormatError::UnknownVersion(*v)),
        };
        if bytes.len() < format.header_len() + TAG_LEN {
            return Err(FormatError::TooShort(bytes.len()));
        }
        let (identifier, rest) = rest.split_at(2);
        let identifier = u16::from_be_bytes([identifier[0], identifier[1]]);
        if identifier == 0 {
            return Err(FormatError::ZeroIdentifier);
        }
        let (group_key, rest) = rest.split_at(GROUP_KEY_LEN);
        let (generation, public_key_package, rest) = match format {
            Format::V3(_) => {
                let (generation, rest) = rest.split_at(4);
                let (len, rest) = rest.split_at(2);
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                if rest.len() < len + GCM_IV_LEN + TAG_LEN {
                    return Err(FormatError::TooShort(bytes.len()));
                }
                let (public, rest) = rest.split_at(len);
                let generation = u32::from_be_bytes([
                    generation[0],
                    generation[1],
                    generation[2],
                    generation[3],
                ]);
                (generation, public.to_vec(), rest)
            }
            Format::V1 | Format::V2(_) => (0, Vec::new(), rest),
        };
        let (iv, ciphertext) = rest.split_at(GCM_IV_LEN);
        let mut key = [0u8; GROUP_KEY_LEN];
        key.copy_from_slice(group_key);
        let mut nonce = [0u8; GCM_IV_LEN];
        nonce.copy_from_slice(iv);
        Ok(SealedShare {
            header: ShareHeader {
                format,
                identifier,
                group_key: key,
                generation,
                public_key_package,
            },
            iv: nonce,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

/// The additional authenticated data for sealing `key_id`'s share, in the
/// header's format.
pub fn aad(key_id: &str, header: &ShareHeader, kek_id: &[u8]) -> Vec<u8> {
    let kind = header.kind().as_str().as_bytes();
    let mut aad = Vec::with_capacity(
        AAD_DOMAIN_V2.len() + 2 + kind.len() + key_id.len() + 2 + GROUP_KEY_LEN + 1 + kek_id.len(),
    );
    match header.format {
        Format::V1 => aad.extend_from_slice(AAD_DOMAIN_V1),
        Format::V2(_) => {
            aad.extend_from_slice(AAD_DOMAIN_V2);
            push_len_prefixed(&mut aad, kind);
        }
        Format::V3(_) => {
            aad.extend_from_slice(AAD_DOMAIN_V3);
            push_len_prefixed(&mut aad, kind);
        }
    }
    push_len_prefixed(&mut aad, key_id.as_bytes());
    aad.extend_from_slice(&header.identifier.to_be_bytes());
    aad.extend_from_slice(&header.group_key);
    if let Format::V3(_) = header.format {
        use sha2::Digest;
        aad.extend_from_slice(&header.generation.to_be_bytes());
        aad.extend_from_slice(&sha2::Sha256::digest(&header.public_key_package));
    }
    push_len_prefixed(&mut aad, kek_id);
    aad
}

/// Appends a 1-byte length and the bytes. Key ids (≤ 64), kind names and
/// CKA_IDs (16) always fit; longer input saturates the length, which no
/// caller's field can reach.
fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: KeyKind) -> SealedShare {
        SealedShare {
            header: ShareHeader::new(kind, 3, [2; GROUP_KEY_LEN], 5, vec![1, 2, 3]),
            iv: [7; GCM_IV_LEN],
            ciphertext: vec![9; 40],
        }
    }

    fn v1() -> SealedShare {
        let mut s = v2(KeyKind::FrostSecp256k1);
        s.header.format = Format::V1;
        s
    }

    fn v2(kind: KeyKind) -> SealedShare {
        let mut s = sample(kind);
        s.header.format = Format::V2(kind);
        s.header.generation = 0;
        s.header.public_key_package.clear();
        s
    }

    #[test]
    fn round_trips() {
        for s in [
            sample(KeyKind::FrostSecp256k1),
            sample(KeyKind::BitcoinTaproot),
            v2(KeyKind::FrostSecp256k1),
            v2(KeyKind::BitcoinTaproot),
            v1(),
        ] {
            assert_eq!(SealedShare::decode(&s.encode().unwrap()), Ok(s));
        }
    }

    /// A share sealed before key kinds (version 1) reads as frost-secp256k1
    /// with the version-1 AAD, byte for byte as that format defined it.
    #[test]
    fn version_1_shares_read_as_frost_secp256k1() {
        let mut bytes = vec![1, 0, 3];
        bytes.extend([2; GROUP_KEY_LEN]);
        bytes.extend([7; GCM_IV_LEN]);
        bytes.extend([9; 40]);
        let s = SealedShare::decode(&bytes).unwrap();
        assert_eq!(s, v1());
        assert_eq!(s.encode().unwrap(), bytes);
        assert_eq!(s.header.kind(), KeyKind::FrostSecp256k1);
        let mut expected = b"ringi sealed share v1\0".to_vec();
        expected.extend([2, b'k', b'1', 0, 3]);
        expected.extend([2; GROUP_KEY_LEN]);
        expected.extend([3, b'k', b'e', b'k']);
        assert_eq!(aad("k1", &s.header, b"kek"), expected);
    }

    #[test]
    fn refuses_malformed_bytes() {
        let bytes = sample(KeyKind::FrostSecp256k1).encode().unwrap();
        assert_eq!(
            SealedShare::decode(&bytes[..10]),
            Err(FormatError::TooShort(10))
        );
        assert_eq!(SealedShare::decode(&[]), Err(FormatError::TooShort(0)));
        assert_eq!(SealedShare::decode(&[2]), Err(FormatError::TooShort(1)));
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 4;
        assert_eq!(
            SealedShare::decode(&wrong_version),
            Err(FormatError::UnknownVersion(4))
        );
        let mut wrong_kind = bytes.clone();
        wrong_kind[1] = 9;
        assert_eq!(
            SealedShare::decode(&wrong_kind),
            Err(FormatError::UnknownKind(9))
        );
        let mut long_public = bytes.clone();
        // Claims a longer public package than the bytes hold.
        long_public[2 + 2 + GROUP_KEY_LEN + 4] = 0xff;
        assert!(matches!(
            SealedShare::decode(&long_public),
            Err(FormatError::TooShort(_))
        ));
        let mut zero_id = bytes;
        zero_id[2] = 0;
        zero_id[3] = 0;
        assert_eq!(
            SealedShare::decode(&zero_id),
            Err(FormatError::ZeroIdentifier)
        );
    }

    #[test]
    fn aad_binds_every_field() {
        let h = sample(KeyKind::FrostSecp256k1).header;
        let base = aad("k1", &h, b"kek");
        assert_ne!(base, aad("k2", &h, b"kek"));
        assert_ne!(base, aad("k1", &h, b"kek2"));
        for other in [
            ShareHeader {
                identifier: 4,
                ..h.clone()
            },
            ShareHeader {
                group_key: [3; GROUP_KEY_LEN],
                ..h.clone()
            },
            ShareHeader {
                format: Format::V2(KeyKind::BitcoinTaproot),
                ..h.clone()
            },
            ShareHeader {
                format: Format::V1,
                ..h.clone()
            },
            ShareHeader {
                format: Format::V2(KeyKind::FrostSecp256k1),
                ..h.clone()
            },
            ShareHeader {
                generation: 6,
                ..h.clone()
            },
            ShareHeader {
                public_key_package: vec![1, 2, 4],
                ..h.clone()
            },
        ] {
            assert_ne!(base, aad("k1", &other, b"kek"), "{other:?}");
        }
        let too_long = SealedShare {
            header: ShareHeader {
                public_key_package: vec![0; MAX_PUBLIC_LEN + 1],
                ..h.clone()
            },
            iv: [0; GCM_IV_LEN],
            ciphertext: vec![0; 20],
        };
        assert_eq!(too_long.encode(), Err(FormatError::PublicTooLong));
        // Length prefixes keep field boundaries unambiguous.
        assert_ne!(aad("k1", &h, b""), aad("k", &h, b"1"));
    }
}
