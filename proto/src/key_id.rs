//! Key ids: the names under which keys live on the coordinator and on every
//! signer. Both sides apply the same rule, so a key id accepted by one is
//! accepted by the other, and a key id is always safe to use as a token
//! object label or in a log line.

/// Longest key id accepted.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Why a key id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyIdError {
    #[error("key id is empty")]
    Empty,
    #[error("key id is longer than {MAX_KEY_ID_LEN} characters")]
    TooLong,
    #[error("key id may only contain A-Z, a-z, 0-9, '.', '_' and '-'")]
    BadCharacter,
}

/// Checks a key id: 1..=64 characters of `[A-Za-z0-9._-]`.
pub fn validate_key_id(key_id: &str) -> Result<(), KeyIdError> {
    if key_id.is_empty() {
        return Err(KeyIdError::Empty);
    }
    if key_id.len() > MAX_KEY_ID_LEN {
        return Err(KeyIdError::TooLong);
    }
    if !key_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(KeyIdError::BadCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        assert_eq!(validate_key_id("hot-btc_1.v2"), Ok(()));
        assert_eq!(validate_key_id(&"a".repeat(64)), Ok(()));
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(validate_key_id(""), Err(KeyIdError::Empty));
        assert_eq!(validate_key_id(&"a".repeat(65)), Err(KeyIdError::TooLong));
        assert_eq!(validate_key_id("a b"), Err(KeyIdError::BadCharacter));
        assert_eq!(validate_key_id("a/b"), Err(KeyIdError::BadCharacter));
        assert_eq!(validate_key_id("ключ"), Err(KeyIdError::BadCharacter));
    }
}
