//! The approver's signing key, used by `ringi approve` and `ringi reject`.
//!
//! Two places a key can live:
//! - a PKCS#11 token (a department's smart card, or SoftHSM in tests): an EC
//!   P-256 key pair found by label; the statement is hashed with SHA-256 on
//!   the host and signed with CKM_ECDSA inside the token, so the private key
//!   never leaves it;
//! - a key file (PKCS#8 PEM), for development only: anyone who copies the
//!   file can approve in that person's name. Using one prints a warning.

use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use ringi_policy::approver_key::ApproverKey;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

pub const DEV_KEY_WARNING: &str = "WARNING: approving with a key FILE. Key files are for development only: \
anyone who copies the file can approve in its owner's name. Use a PKCS#11 token in production.";

#[derive(Debug, thiserror::Error)]
pub enum ApproverError {
    #[error("cannot read key file {path}: {reason}")]
    ReadKey { path: PathBuf, reason: String },
    #[error("key file {0} is not a PKCS#8 PEM P-256 private key")]
    BadKeyFile(PathBuf),
    #[error("cannot write key file {path}: {reason}")]
    WriteKey { path: PathBuf, reason: String },
    #[error("PKCS#11 module {0}: file not found")]
    ModuleNotFound(PathBuf),
    #[error("no token labelled {0:?}")]
    TokenNotFound(String),
    #[error("token has no EC key pair labelled {0:?} (private and public key objects)")]
    KeyNotFound(String),
    #[error("the token refused the PIN")]
    BadPin,
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
}

fn ck(e: cryptoki::error::Error) -> ApproverError {
    ApproverError::Pkcs11(e.to_string())
}

/// A key that can sign approval statements.
pub enum ApproverSigner {
    File(SigningKey),
    Token {
        session: Session,
        private: ObjectHandle,
        public: ApproverKey,
    },
}

impl ApproverSigner {
    pub fn from_file(path: &Path) -> Result<Self, ApproverError> {
        let pem = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            ApproverError::ReadKey {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })?);
        SigningKey::from_pkcs8_pem(&pem)
            .map(ApproverSigner::File)
            .map_err(|_| ApproverError::BadKeyFile(path.to_path_buf()))
    }

    /// Opens the token labelled `token`, logs in, and finds the key pair
    /// labelled `label`.
    pub fn from_token(
        module: &Path,
        token: &str,
        label: &str,
        pin: &SecretString,
    ) -> Result<Self, ApproverError> {
        if !module.exists() {
            return Err(ApproverError::ModuleNotFound(module.to_path_buf()));
        }
        let ctx = Pkcs11::new(module).map_err(ck)?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(ck)?;
        let slot = ctx
            .get_slots_with_token()
            .map_err(ck)?
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .is_ok_and(|i| i.label().trim_end() == token)
            })
            .ok_or_else(|| ApproverError::TokenNotFound(token.to_string()))?;
        let session = ctx.open_ro_session(slot).map_err(ck)?;
        session
            .login(UserType::User, Some(pin))
            .map_err(|e| match e {
                cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::PinIncorrect, _) => {
                    ApproverError::BadPin
                }
                other => ck(other),
            })?;
        let find = |class| {
            session
                .find_objects(&[
                    Attribute::Class(class),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])
                .map_err(ck)?
                .first()
                .copied()
                .ok_or_else(|| ApproverError::KeyNotFound(label.to_string()))
        };
        let private = find(ObjectClass::PRIVATE_KEY)?;
        let public_handle = find(ObjectClass::PUBLIC_KEY)?;
        let point = match session
            .get_attributes(public_handle, &[AttributeType::EcPoint])
            .map_err(ck)?
            .into_iter()
            .next()
        {
            Some(Attribute::EcPoint(der)) => der,
            _ => return Err(ApproverError::KeyNotFound(label.to_string())),
        };
        // CKA_EC_POINT is a DER OCTET STRING around the SEC1 point.
        let sec1 = match point.as_slice() {
            [0x04, len, rest @ ..] if *len as usize == rest.len() => rest.to_vec(),
            other => other.to_vec(),
        };
        let public = ApproverKey::from_sec1(&sec1)
            .map_err(|_| ApproverError::KeyNotFound(label.to_string()))?;
        Ok(ApproverSigner::Token {
            session,
            private,
            public,
        })
    }

    pub fn public_key(&self) -> ApproverKey {
        match self {
            ApproverSigner::File(sk) => {
                ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes())
                    .expect("a P-256 signing key has a valid public key")
            }
            ApproverSigner::Token { public, .. } => public.clone(),
        }
    }

    /// ECDSA P-256 over SHA-256(`bytes`), 64 bytes r ‖ s.
    pub fn sign(&self, bytes: &[u8]) -> Result<Vec<u8>, ApproverError> {
        match self {
            ApproverSigner::File(sk) => {
                let sig: Signature = sk.sign(bytes);
                Ok(sig.to_bytes().to_vec())
            }
            ApproverSigner::Token {
                session, private, ..
            } => {
                let digest = Sha256::digest(bytes);
                session
                    .sign(&Mechanism::Ecdsa, *private, &digest)
                    .map_err(ck)
            }
        }
    }
}

/// Writes a new development key file (mode 0600) and returns its public key.
pub fn generate_key_file(path: &Path) -> Result<ApproverKey, ApproverError> {
    let sk = SigningKey::random(&mut rand::rngs::OsRng);
    let pem = sk
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| ApproverError::WriteKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let write_err = |e: std::io::Error| ApproverError::WriteKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_err)?;
    file.write_all(pem.as_bytes()).map_err(write_err)?;
    Ok(ApproverSigner::File(sk).public_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_sign_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.pem");
        let public = generate_key_file(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let signer = ApproverSigner::from_file(&path).unwrap();
        assert_eq!(signer.public_key(), public);
        let sig = signer.sign(b"statement").unwrap();
        assert!(public.verify(b"statement", &sig));
        assert!(
            matches!(
                generate_key_file(&path),
                Err(ApproverError::WriteKey { .. })
            ),
            "never overwrites"
        );
        std::fs::write(dir.path().join("bad.pem"), "nope").unwrap();
        assert!(matches!(
            ApproverSigner::from_file(&dir.path().join("bad.pem")),
            Err(ApproverError::BadKeyFile(_))
        ));
    }
}
