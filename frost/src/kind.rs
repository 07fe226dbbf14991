//! Key kinds: which suite a key signs with, fixed when the key is generated
//! and recorded with it (each signer's sealed share and its AAD; later the
//! coordinator's record and the API).

use std::fmt;

/// The kind of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// RFC 9591 FROST(secp256k1, SHA-256): 65-byte signatures.
    FrostSecp256k1,
    /// BIP-340 Schnorr for Bitcoin Taproot key-path spends: 64-byte
    /// signatures under the BIP-341 output key.
    BitcoinTaproot,
}

/// Why a key kind was not recognised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    #[error("unknown key kind {0:?} (known: frost-secp256k1, bitcoin-taproot)")]
    Name(String),
    #[error("unknown key kind code {0}")]
    Code(u8),
}

impl KeyKind {
    pub const ALL: [KeyKind; 2] = [KeyKind::FrostSecp256k1, KeyKind::BitcoinTaproot];

    /// The kind's name, as the API, the CLI and the AAD of sealed shares
    /// write it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::FrostSecp256k1 => "frost-secp256k1",
            KeyKind::BitcoinTaproot => "bitcoin-taproot",
        }
    }

    pub fn parse(name: &str) -> Result<KeyKind, KindError> {
        KeyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| KindError::Name(name.to_string()))
    }

    /// The one-byte code in sealed-share headers.
    pub fn code(self) -> u8 {
        match self {
            KeyKind::FrostSecp256k1 => 1,
            KeyKind::BitcoinTaproot => 2,
        }
    }

    pub fn from_code(code: u8) -> Result<KeyKind, KindError> {
        KeyKind::ALL
            .into_iter()
            .find(|k| k.code() == code)
            .ok_or(KindError::Code(code))
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for k in KeyKind::ALL {
            assert_eq!(KeyKind::parse(k.as_str()), Ok(k));
            assert_eq!(KeyKind::from_code(k.code()), Ok(k));
        }
        assert!(KeyKind::parse("ed25519").is_err());
        assert_eq!(KeyKind::from_code(0), Err(KindError::Code(0)));
    }
}
