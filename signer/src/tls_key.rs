//! The node's TLS identity key, used by rustls without ever leaving the
//! token: a [`rustls::sign::SigningKey`] whose signatures are made by
//! CKM_ECDSA inside the PKCS#11 token (SHA-256 on the host; SoftHSM has no
//! CKM_ECDSA_SHA256), converted from the token's raw `r ‖ s` to the DER
//! that TLS expects.
//!
//! Groundwork for mutual TLS (issue 5): not yet wired into the servers.

use std::sync::Arc;

use p256::pkcs8::EncodePublicKey;
use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::token::{Token, TokenError};

/// The token's TLS key, as rustls sees it.
#[derive(Clone)]
pub struct TokenTlsKey {
    token: Arc<Token>,
}

impl std::fmt::Debug for TokenTlsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenTlsKey(ECDSA P-256, in the PKCS#11 token)")
    }
}

impl TokenTlsKey {
    pub fn new(token: Arc<Token>) -> Self {
        TokenTlsKey { token }
    }

    /// The public key as SubjectPublicKeyInfo DER (what a CA certifies).
    pub fn public_key_spki_der(&self) -> Result<Vec<u8>, TokenError> {
        let point = self.token.tls_public_key()?;
        p256::PublicKey::from_sec1_bytes(&point)
            .ok()
            .and_then(|k| k.to_public_key_der().ok())
            .map(|der| der.as_bytes().to_vec())
            .ok_or(TokenError::Unexpected {
                what: "TLS public key",
            })
    }

    /// The public key as a PEM "PUBLIC KEY" block.
    pub fn public_key_pem(&self) -> Result<String, TokenError> {
        let point = self.token.tls_public_key()?;
        p256::PublicKey::from_sec1_bytes(&point)
            .ok()
            .and_then(|k| k.to_public_key_pem(p256::pkcs8::LineEnding::LF).ok())
            .ok_or(TokenError::Unexpected {
                what: "TLS public key",
            })
    }
}

impl SigningKey for TokenTlsKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(self.clone()) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl Signer for TokenTlsKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let raw = self
            .token
            .tls_sign(message)
            .map_err(|e| rustls::Error::General(format!("token signing failed: {e}")))?;
        let signature = p256::ecdsa::Signature::from_slice(&raw).map_err(|_| {
            rustls::Error::General("token returned a malformed ECDSA signature".into())
        })?;
        Ok(signature.to_der().as_bytes().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

/// The token's TLS key as rcgen sees it, to sign a certificate signing
/// request for it (the CSR proves possession; the key never leaves).
pub struct TokenCsrKey {
    token: Arc<Token>,
    point: Vec<u8>,
}

impl TokenCsrKey {
    pub fn new(token: Arc<Token>) -> Result<Self, TokenError> {
        let point = token.tls_public_key()?;
        Ok(TokenCsrKey { token, point })
    }

    /// A PEM CSR for `name` (its DNS subject alternative name and common
    /// name), signed inside the token.
    pub fn csr_pem(&self, name: &str) -> Result<String, rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.serialize_request(self)?.pem()
    }
}

impl rcgen::PublicKeyData for TokenCsrKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for TokenCsrKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let raw = self
            .token
            .tls_sign(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)?;
        let signature =
            p256::ecdsa::Signature::from_slice(&raw).map_err(|_| rcgen::Error::RemoteKeyError)?;
        Ok(signature.to_der().as_bytes().to_vec())
    }
}
