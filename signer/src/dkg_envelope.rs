//! End-to-end encryption of DKG round-2 packages between signer nodes.
//!
//! A round-2 package carries the sender's secret polynomial evaluated at the
//! recipient: whoever reads all of them addressed to one node learns that
//! node's share. The coordinator relays them, so they are sealed end to end:
//!
//! ```text
//! ikm    = ECDH(sender DKG key, recipient DKG key).x      -- inside each token
//! info   = domain ‖ len(key_id) ‖ key_id
//!          ‖ sender (u16 BE) ‖ recipient (u16 BE)
//! key    = HKDF-SHA256(salt = session_id, ikm, info), 32 bytes
//! sealed = version (1) ‖ nonce (12, random) ‖ AES-256-GCM(key, nonce, aad = info, package)
//! ```
//!
//! where domain is `"ringi dkg round2 v1" ‖ 0x00` for DKG round-2 packages
//! and `"ringi repair delta v1" ‖ 0x00` / `"ringi repair sigma v1" ‖ 0x00`
//! for a share repair's messages, `"ringi refresh stored v1" ‖ 0x00` /
//! `"ringi refresh aborted v1" ‖ 0x00` for a refresh's votes ([`Contents`]).
//!
//! Static-static ECDH authenticates both ends: only the two tokens can derive
//! the key, so the coordinator can neither read a package nor forge one in a
//! sender's name. The session id (fresh per DKG run) and the direction in the
//! info make every key single-use.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// What an envelope carries: each purpose has its own domain in the key
/// derivation, so an envelope of one can never be opened as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// A DKG (or refresh) round-2 package.
    DkgRound2,
    /// A repair helper's delta for another helper (frost `repairable`).
    RepairDelta,
    /// A repair helper's sigma for the node whose share is rebuilt.
    RepairSigma,
    /// A refresh vote: the sender holds a share of the refreshed package
    /// ([`crate::refresh_vote`]).
    RefreshStored,
    /// A refresh vote: the sender holds no share of the refreshed package
    /// and never will.
    RefreshAborted,
}

impl Contents {
    fn domain(self) -> &'static [u8] {
        match self {
            Contents::DkgRound2 => b"ringi dkg round2 v1\0",
            Contents::RepairDelta => b"ringi repair delta v1\0",
            Contents::RepairSigma => b"ringi repair sigma v1\0",
            Contents::RefreshStored => b"ringi refresh stored v1\0",
            Contents::RefreshAborted => b"ringi refresh aborted v1\0",
        }
    }
}

/// Who sends what to whom, in which DKG (or repair) run.
pub struct Binding<'a> {
    pub contents: Contents,
    pub key_id: &'a str,
    pub session_id: &'a [u8],
    pub sender: u16,
    pub recipient: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("sealed round-2 package is malformed ({0})")]
    Malformed(&'static str),
    #[error(
        "sealed round-2 package from participant {sender} does not open: it was not sealed by that participant for this node and this DKG run, or it was altered"
    )]
    Open { sender: u16 },
    #[error("round-2 package could not be sealed")]
    Seal,
}

impl Binding<'_> {
    fn info(&self) -> Vec<u8> {
        let domain = self.contents.domain();
        let mut info = Vec::with_capacity(domain.len() + 1 + self.key_id.len() + 4);
        info.extend_from_slice(domain);
        // Key ids are at most 64 bytes (checked by the callers).
        info.push(self.key_id.len().min(255) as u8);
        info.extend_from_slice(self.key_id.as_bytes());
        info.extend_from_slice(&self.sender.to_be_bytes());
        info.extend_from_slice(&self.recipient.to_be_bytes());
        info
    }

    fn cipher(&self, shared_x: &[u8], info: &[u8]) -> Aes256Gcm {
        let hk = Hkdf::<Sha256>::new(Some(self.session_id), shared_x);
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand(info, key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(&key[..]))
    }
}

/// Seals `package` (a serialized round-2 package) for the recipient.
pub fn seal(binding: &Binding, shared_x: &[u8], package: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let info = binding.info();
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = binding
        .cipher(shared_x, &info)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: package,
                aad: &info,
            },
        )
        .map_err(|_| EnvelopeError::Seal)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens a sealed round-2 package addressed to this node.
pub fn open(
    binding: &Binding,
    shared_x: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    if sealed.len() < 1 + NONCE_LEN + TAG_LEN {
        return Err(EnvelopeError::Malformed("too short"));
    }
    if sealed[0] != VERSION {
        return Err(EnvelopeError::Malformed("unknown version"));
    }
    let info = binding.info();
    let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
    binding
        .cipher(shared_x, &info)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &info,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| EnvelopeError::Open {
            sender: binding.sender,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(session: &[u8]) -> Binding<'_> {
        Binding {
            contents: Contents::DkgRound2,
            key_id: "k",
            session_id: session,
            sender: 1,
            recipient: 2,
        }
    }

    #[test]
    fn opens_what_it_sealed_and_hides_the_plaintext() {
        let secret = [5u8; 32];
        let package = b"a round-2 package with a secret scalar inside".to_vec();
        let sealed = seal(&binding(b"s1"), &secret, &package).unwrap();
        assert!(
            !sealed
                .windows(package.len())
                .any(|w| w == package.as_slice())
        );
        assert_eq!(
            open(&binding(b"s1"), &secret, &sealed).unwrap().as_slice(),
            package.as_slice()
        );
    }

    #[test]
    fn refuses_other_keys_sessions_directions_and_tampering() {
        let secret = [5u8; 32];
        let sealed = seal(&binding(b"s1"), &secret, b"pkg").unwrap();
        let open_err = Err(EnvelopeError::Open { sender: 1 });
        assert_eq!(
            open(&binding(b"s1"), &[6u8; 32], &sealed).map(|_| ()),
            open_err
        );
        assert_eq!(
            open(&binding(b"s2"), &secret, &sealed).map(|_| ()),
            open_err
        );
        let other_key = Binding {
            contents: Contents::DkgRound2,
            key_id: "k2",
            ..binding(b"s1")
        };
        assert_eq!(open(&other_key, &secret, &sealed).map(|_| ()), open_err);
        for contents in [
            Contents::RepairDelta,
            Contents::RepairSigma,
            Contents::RefreshStored,
            Contents::RefreshAborted,
        ] {
            let other_contents = Binding {
                contents,
                ..binding(b"s1")
            };
            assert_eq!(
                open(&other_contents, &secret, &sealed).map(|_| ()),
                open_err
            );
        }
        let reversed = Binding {
            contents: Contents::DkgRound2,
            sender: 2,
            recipient: 1,
            ..binding(b"s1")
        };
        assert!(open(&reversed, &secret, &sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            open(&binding(b"s1"), &secret, &tampered).map(|_| ()),
            open_err
        );
        assert_eq!(
            open(&binding(b"s1"), &secret, &sealed[..10]).map(|_| ()),
            Err(EnvelopeError::Malformed("too short"))
        );
    }
}
