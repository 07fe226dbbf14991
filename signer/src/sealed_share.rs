//! The byte format of a key share sealed by the token's KEK.
//!
//! ```text
//! sealed = version (1 byte, = 1)
//!        ‖ identifier (u16, big-endian)        -- the node's FROST identifier
//!        ‖ group verifying key (33 bytes, SEC1 compressed)
//!        ‖ iv (12 bytes, fresh per seal)
//!        ‖ AES-256-GCM ciphertext of KeyPackage::serialize() ‖ tag (16 bytes)
//!
//! aad    = "ringi sealed share v1" ‖ 0x00
//!        ‖ len(key_id) (1 byte) ‖ key_id
//!        ‖ identifier (u16, big-endian)
//!        ‖ group verifying key (33 bytes)
//!        ‖ len(kek_id) (1 byte) ‖ kek_id       -- CKA_ID of the KEK
//! ```
//!
//! The header is public and lets the node answer "which key, which
//! identifier" without touching the token. The AAD binds the ciphertext to
//! the key id, identifier, group key and KEK, so a blob moved to another key
//! id or token fails to unseal instead of being used for the wrong key.

use crate::token::GCM_IV_LEN;

pub const VERSION: u8 = 1;
const AAD_DOMAIN: &[u8] = b"ringi sealed share v1\0";
pub const GROUP_KEY_LEN: usize = 33;
const HEADER_LEN: usize = 1 + 2 + GROUP_KEY_LEN + GCM_IV_LEN;
const TAG_LEN: usize = 16;

/// The public part of a sealed share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareHeader {
    pub identifier: u16,
    pub group_key: [u8; GROUP_KEY_LEN],
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
    #[error("sealed share names identifier 0, which FROST does not allow")]
    ZeroIdentifier,
}

impl SealedShare {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&self.header.identifier.to_be_bytes());
        out.extend_from_slice(&self.header.group_key);
        out.extend_from_slice(&self.iv);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < HEADER_LEN + TAG_LEN {
            return Err(FormatError::TooShort(bytes.len()));
        }
        if bytes[0] != VERSION {
            return Err(FormatError::UnknownVersion(bytes[0]));
        }
        let identifier = u16::from_be_bytes([bytes[1], bytes[2]]);
        if identifier == 0 {
            return Err(FormatError::ZeroIdentifier);
        }
        let mut group_key = [0u8; GROUP_KEY_LEN];
        group_key.copy_from_slice(&bytes[3..3 + GROUP_KEY_LEN]);
        let mut iv = [0u8; GCM_IV_LEN];
        iv.copy_from_slice(&bytes[3 + GROUP_KEY_LEN..HEADER_LEN]);
        Ok(SealedShare {
            header: ShareHeader {
                identifier,
                group_key,
            },
            iv,
            ciphertext: bytes[HEADER_LEN..].to_vec(),
        })
    }
}

/// The additional authenticated data for sealing `key_id`'s share.
pub fn aad(key_id: &str, header: &ShareHeader, kek_id: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(
        AAD_DOMAIN.len() + 1 + key_id.len() + 2 + GROUP_KEY_LEN + 1 + kek_id.len(),
    );
    aad.extend_from_slice(AAD_DOMAIN);
    push_len_prefixed(&mut aad, key_id.as_bytes());
    aad.extend_from_slice(&header.identifier.to_be_bytes());
    aad.extend_from_slice(&header.group_key);
    push_len_prefixed(&mut aad, kek_id);
    aad
}

/// Appends a 1-byte length and the bytes. Key ids (≤ 64) and CKA_IDs (16)
/// always fit; longer input is a programming error caught by the assert.
fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u8::try_from(bytes.len()).expect("field longer than 255 bytes");
    out.push(len);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SealedShare {
        SealedShare {
            header: ShareHeader {
                identifier: 3,
                group_key: [2; GROUP_KEY_LEN],
            },
            iv: [7; GCM_IV_LEN],
            ciphertext: vec![9; 40],
        }
    }

    #[test]
    fn round_trips() {
        let s = sample();
        assert_eq!(SealedShare::decode(&s.encode()), Ok(s));
    }

    #[test]
    fn refuses_malformed_bytes() {
        let bytes = sample().encode();
        assert_eq!(
            SealedShare::decode(&bytes[..10]),
            Err(FormatError::TooShort(10))
        );
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 2;
        assert_eq!(
            SealedShare::decode(&wrong_version),
            Err(FormatError::UnknownVersion(2))
        );
        let mut zero_id = bytes;
        zero_id[1] = 0;
        zero_id[2] = 0;
        assert_eq!(
            SealedShare::decode(&zero_id),
            Err(FormatError::ZeroIdentifier)
        );
    }

    #[test]
    fn aad_binds_every_field() {
        let h = sample().header;
        let base = aad("k1", &h, b"kek");
        assert_ne!(base, aad("k2", &h, b"kek"));
        assert_ne!(base, aad("k1", &h, b"kek2"));
        let other_id = ShareHeader {
            identifier: 4,
            ..h.clone()
        };
        assert_ne!(base, aad("k1", &other_id, b"kek"));
        let other_key = ShareHeader {
            group_key: [3; GROUP_KEY_LEN],
            ..h.clone()
        };
        assert_ne!(base, aad("k1", &other_key, b"kek"));
        // Length prefixes keep field boundaries unambiguous.
        assert_ne!(aad("k1", &h, b""), aad("k", &h, b"1"));
    }
}
