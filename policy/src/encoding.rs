//! The canonical encoding that request ids and approval statements are
//! computed over. A third party can reproduce it with a few lines of code:
//!
//! ```text
//! encoding = domain ‖ 0x00 ‖ field*
//! field    = length (u32, big-endian) ‖ bytes
//! ```
//!
//! Integers are fixed-width big-endian inside a field (u64: 8 bytes, u128: 16
//! bytes); strings are UTF-8. Every field is length-prefixed, so no two
//! different field lists encode to the same bytes.

pub struct Canonical {
    bytes: Vec<u8>,
}

impl Canonical {
    pub fn new(domain: &str) -> Self {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(domain.as_bytes());
        bytes.push(0);
        Canonical { bytes }
    }

    pub fn bytes(mut self, field: &[u8]) -> Self {
        // Fields longer than 4 GiB cannot occur: messages are capped at 1 MiB.
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(field);
        self
    }

    pub fn str(self, field: &str) -> Self {
        self.bytes(field.as_bytes())
    }

    pub fn u64(self, field: u64) -> Self {
        self.bytes(&field.to_be_bytes())
    }

    pub fn u128(self, field: u128) -> Self {
        self.bytes(&field.to_be_bytes())
    }

    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// SHA-256.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_domain_then_length_prefixed_fields() {
        let e = Canonical::new("d").str("ab").u64(1).finish();
        assert_eq!(
            e,
            vec![
                b'd', 0, 0, 0, 0, 2, b'a', b'b', 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1
            ]
        );
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let a = Canonical::new("d").str("ab").str("c").finish();
        let b = Canonical::new("d").str("a").str("bc").finish();
        assert_ne!(a, b);
    }
}
