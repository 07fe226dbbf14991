//! Key ids: the names under which keys live on the coordinator and on every
//! signer, and in the policy. Both sides apply the same rule, so a key id
//! accepted by one is accepted by the other, and a key id is always safe to
//! use as a token object label, a file name component or in a log line.
//!
//! A [`KeyId`] can only be made by [`KeyId::parse`]: once a value of this
//! type exists, it has been checked, so code past the edge (a gRPC handler,
//! a bundle decoder, the policy loader) never checks it again.
//!
//! The same character rule names signers ([`check_name`]).

use std::fmt;
use std::str::FromStr;

/// Longest key id accepted.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Why a key id (or a signer name) was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyIdError {
    #[error("key id is empty")]
    Empty,
    #[error("key id is longer than {MAX_KEY_ID_LEN} characters")]
    TooLong,
    #[error("key id may only contain A-Z, a-z, 0-9, '.', '_' and '-'")]
    BadCharacter,
}

/// Checks a name against the key-id rule: 1..=64 characters of
/// `[A-Za-z0-9._-]`. Signer names follow it too.
pub fn check_name(name: &str) -> Result<(), KeyIdError> {
    if name.is_empty() {
        return Err(KeyIdError::Empty);
    }
    if name.len() > MAX_KEY_ID_LEN {
        return Err(KeyIdError::TooLong);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(KeyIdError::BadCharacter);
    }
    Ok(())
}

/// A checked key id.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// The one way to make a key id: checks [`check_name`]'s rule.
    pub fn parse(text: &str) -> Result<KeyId, KeyIdError> {
        check_name(text)?;
        Ok(KeyId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = KeyIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyId::parse(s)
    }
}

impl TryFrom<String> for KeyId {
    type Error = KeyIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        check_name(&s)?;
        Ok(KeyId(s))
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for KeyId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for KeyId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for KeyId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<KeyId> for String {
    fn from(k: KeyId) -> String {
        k.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        assert_eq!(
            KeyId::parse("hot-btc_1.v2").unwrap().as_str(),
            "hot-btc_1.v2"
        );
        assert!(KeyId::parse(&"a".repeat(64)).is_ok());
        assert_eq!("k".parse::<KeyId>().unwrap(), "k");
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(KeyId::parse(""), Err(KeyIdError::Empty));
        assert_eq!(KeyId::parse(&"a".repeat(65)), Err(KeyIdError::TooLong));
        assert_eq!(KeyId::parse("a b"), Err(KeyIdError::BadCharacter));
        assert_eq!(KeyId::parse("a/b"), Err(KeyIdError::BadCharacter));
        assert_eq!(KeyId::parse("ключ"), Err(KeyIdError::BadCharacter));
        assert_eq!(
            KeyId::try_from("x\n".to_string()),
            Err(KeyIdError::BadCharacter)
        );
    }
}
