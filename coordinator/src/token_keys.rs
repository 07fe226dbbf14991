//! The coordinator's keys in a PKCS#11 token: its TLS identity key and the
//! P-256 key that signs its audit log's checkpoints, so that, like a
//! signer's, its log cannot be rewritten and re-chained undetected, and its
//! identity cannot be copied off the host. The token is opened, logged into
//! and used exactly as a signer's (`ringi_signer::token`,
//! `ringi_signer::tls_key`): one implementation of the PKCS#11 edge.
//!
//! Without `[pkcs11]` both stay possible as before, for development: the
//! TLS key is a file (`tls.key`) and the audit log has no signed
//! checkpoints; the coordinator says so at start, as a warning.

use std::sync::Arc;

use ringi_policy::approver_key::ApproverKey;
use ringi_signer::tls_key::TokenTlsKey;
use ringi_signer::token::Token;
use rustls::sign::SigningKey;
use zeroize::Zeroizing;

use crate::config::{Config, Pkcs11Config, TlsConfig};

/// The coordinator's token, shared by its TLS and audit keys.
pub type SharedToken = Arc<Token>;

/// Signs an audit checkpoint statement: the signer's key (`p256:...`) and
/// the signature.
pub type CheckpointSigner = dyn Fn(&[u8]) -> Result<(String, Vec<u8>), String> + Send + Sync;

#[derive(Debug, thiserror::Error)]
pub enum TokenKeysError {
    #[error(transparent)]
    Config(#[from] ringi_signer::config::ConfigError),
    #[error(transparent)]
    Token(#[from] ringi_signer::token::TokenError),
    #[error(
        "the coordinator's TLS key is configured twice: tls.key names a file and [pkcs11] a token; remove tls.key (the key is the token's)"
    )]
    TwoKeys,
    #[error(
        "the coordinator has no TLS key: configure [pkcs11] (the key in a token; `ringi token init`) or, for development, tls.key"
    )]
    NoKey,
    #[error("the token's audit key: {0}")]
    AuditKey(String),
    #[error(transparent)]
    Tls(#[from] ringi_net::tls::TlsError),
}

/// Opens the configured token (the PIN from `RINGI_PKCS11_PIN` or the PIN
/// file), or `None` without `[pkcs11]`.
pub fn open(config: &Config) -> Result<Option<Arc<Token>>, TokenKeysError> {
    let Some(p) = &config.pkcs11 else {
        return Ok(None);
    };
    let pin = std::env::var(ringi_signer::config::PIN_ENV)
        .ok()
        .map(Zeroizing::new);
    Ok(Some(Arc::new(Token::open(&token_config(p, pin)?)?)))
}

fn token_config(
    p: &Pkcs11Config,
    pin: Option<Zeroizing<String>>,
) -> Result<ringi_signer::token::TokenConfig, TokenKeysError> {
    let file = ringi_signer::config::FileConfig {
        pkcs11: ringi_signer::config::Pkcs11File {
            module: Some(p.module.clone()),
            token_label: Some(p.token_label.clone()),
            pin_file: p.pin_file.clone(),
        },
        ..Default::default()
    };
    Ok(ringi_signer::config::token_config(
        &file,
        &Default::default(),
        pin,
    )?)
}

/// The TLS key: the token's, or (development) the file's, with a warning.
pub fn tls_key(
    tls: &TlsConfig,
    token: Option<&Arc<Token>>,
) -> Result<Arc<dyn SigningKey>, TokenKeysError> {
    match (&tls.key, token) {
        (Some(_), Some(_)) => Err(TokenKeysError::TwoKeys),
        (None, None) => Err(TokenKeysError::NoKey),
        (None, Some(token)) => {
            token.tls_public_key()?;
            Ok(Arc::new(TokenTlsKey::new(token.clone())))
        }
        (Some(path), None) => {
            tracing::warn!(key = %path.display(), "the coordinator's TLS key is a file: development only; keep it in a token ([pkcs11])");
            Ok(ringi_net::tls::load_key(path)?)
        }
    }
}

/// What signs the audit log's checkpoints, and its public key
/// (`p256:...`), or `None` (with a warning) without a token.
pub fn checkpoint_signer(
    token: Option<&Arc<Token>>,
) -> Result<Option<(String, Arc<CheckpointSigner>)>, TokenKeysError> {
    let Some(token) = token else {
        tracing::warn!(
            "the coordinator's audit log gets no signed checkpoints without a token ([pkcs11]): anyone who can write the file can rewrite and re-chain it"
        );
        return Ok(None);
    };
    let public = ApproverKey::from_sec1(&token.audit_public_key()?)
        .map_err(|e| TokenKeysError::AuditKey(e.to_string()))?
        .to_text();
    let token = token.clone();
    let key = public.clone();
    let sign: Arc<CheckpointSigner> = Arc::new(move |statement: &[u8]| {
        let signature = token.audit_sign(statement).map_err(|e| e.to_string())?;
        Ok((key.clone(), signature))
    });
    Ok(Some((public, sign)))
}

/// Creates the token's keys if missing (a signer's token format: the same
/// `ringi-signer init` keys, of which the coordinator uses the TLS and
/// audit keys). Returns what it created.
pub fn initialize(token: &Token) -> Result<Vec<&'static str>, TokenKeysError> {
    Ok(token.initialize_keys()?.created)
}

/// A PEM certificate signing request for the token's TLS key, for `name`,
/// signed inside the token.
pub fn tls_csr_pem(token: &Arc<Token>, name: &str) -> anyhow::Result<String> {
    token.require_keys()?;
    Ok(ringi_signer::tls_key::TokenCsrKey::new(token.clone())?.csr_pem(name)?)
}
