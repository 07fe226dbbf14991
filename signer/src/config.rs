//! The node's configuration: a TOML file, overridden by environment
//! variables and command-line options.
//!
//! The PIN is never a command-line argument (`ps` shows those to every user):
//! it comes from `RINGI_PKCS11_PIN`, or from a file named by `--pin-file`,
//! `RINGI_PKCS11_PIN_FILE` or `pkcs11.pin_file`. It is held in a
//! [`SecretString`] and never logged.
//!
//! ```toml
//! listen = "127.0.0.1:7101"
//! metrics_listen = "127.0.0.1:9464"   # optional: Prometheus metrics (off by default)
//! log_format = "json"                 # optional: text (default) or json
//! [pkcs11]
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "signer-1"
//! pin_file = "/etc/ringi/signer-1.pin"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::token::TokenConfig;

pub const PIN_ENV: &str = "RINGI_PKCS11_PIN";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7101";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    /// The approval policy this node enforces.
    pub policy_file: Option<PathBuf>,
    /// Optional pin: hex SHA-256 the policy file must have.
    pub policy_sha256: Option<String>,
    /// Where the node keeps its spending ledger.
    pub data_dir: Option<PathBuf>,
    /// Operators' daily-volume figures (for percentage caps).
    pub daily_volume_file: Option<PathBuf>,
    /// Where to serve Prometheus metrics (plain HTTP); none: no endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// `text` (default) or `json`.
    pub log_format: Option<ringi_net::logging::LogFormat>,
    #[serde(default)]
    pub pkcs11: Pkcs11File,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11File {
    pub module: Option<PathBuf>,
    pub token_label: Option<String>,
    pub pin_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("config file {path} is invalid: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error(
        "no PKCS#11 module configured: set RINGI_PKCS11_MODULE, --module, or pkcs11.module in the config file"
    )]
    NoModule,
    #[error(
        "no token label configured: set RINGI_TOKEN_LABEL, --token-label, or pkcs11.token_label in the config file"
    )]
    NoTokenLabel,
    #[error(
        "no PIN: set RINGI_PKCS11_PIN, or name a PIN file with RINGI_PKCS11_PIN_FILE, --pin-file or pkcs11.pin_file"
    )]
    NoPin,
    #[error("cannot read PIN file {path}: {reason}")]
    PinFile { path: PathBuf, reason: String },
    #[error("PIN file {0} is empty")]
    EmptyPin(PathBuf),
    #[error("no data directory: set RINGI_SIGNER_DATA_DIR, --data-dir or data_dir, or HOME")]
    NoDataDir,
    #[error(
        "no approval policy: set RINGI_POLICY_FILE, --policy-file or policy_file (a signer never signs without one)"
    )]
    NoPolicy,
    #[error("cannot read policy file {path}: {reason}")]
    PolicyRead { path: PathBuf, reason: String },
    #[error("policy file {path} refused: {reason}")]
    PolicyInvalid { path: PathBuf, reason: String },
    #[error("policy file {path} has SHA-256 {actual}, but this node is pinned to {pinned}")]
    PolicyPin {
        path: PathBuf,
        actual: String,
        pinned: String,
    },
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

/// Options that override the file (each also settable by environment).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub module: Option<PathBuf>,
    pub token_label: Option<String>,
    pub pin_file: Option<PathBuf>,
}

/// Resolves the token configuration. `pin_from_env` is the value of
/// `RINGI_PKCS11_PIN`, passed in so tests need not touch the environment.
pub fn token_config(
    file: &FileConfig,
    overrides: &Overrides,
    pin_from_env: Option<Zeroizing<String>>,
) -> Result<TokenConfig, ConfigError> {
    let module = overrides
        .module
        .clone()
        .or_else(|| file.pkcs11.module.clone())
        .ok_or(ConfigError::NoModule)?;
    let token_label = overrides
        .token_label
        .clone()
        .or_else(|| file.pkcs11.token_label.clone())
        .ok_or(ConfigError::NoTokenLabel)?;
    let pin_file = overrides
        .pin_file
        .clone()
        .or_else(|| file.pkcs11.pin_file.clone());
    let pin = match (pin_from_env, pin_file) {
        (Some(pin), _) if !pin.is_empty() => SecretString::from(pin.as_str()),
        (_, Some(path)) => read_pin_file(&path)?,
        _ => return Err(ConfigError::NoPin),
    };
    Ok(TokenConfig {
        module,
        token_label,
        pin,
    })
}

/// The node's data directory: configured, or per token label under the
/// XDG data home.
pub fn data_dir(configured: Option<&Path>, token_label: &str) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = configured {
        return Ok(dir.to_path_buf());
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        })
        .ok_or(ConfigError::NoDataDir)?;
    Ok(base.join("ringi-signer").join(token_label))
}

/// Loads the approval policy and checks it against the pinned hash, if any.
pub fn load_policy(
    path: Option<&Path>,
    pinned: Option<&str>,
) -> Result<ringi_policy::policy::Policy, ConfigError> {
    let path = path.ok_or(ConfigError::NoPolicy)?;
    let bytes = std::fs::read(path).map_err(|e| ConfigError::PolicyRead {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let policy = ringi_policy::policy::Policy::from_bytes(&bytes).map_err(|e| {
        ConfigError::PolicyInvalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    let actual = hex::encode(policy.hash());
    if let Some(pinned) = pinned
        && !pinned.eq_ignore_ascii_case(&actual)
    {
        return Err(ConfigError::PolicyPin {
            path: path.to_path_buf(),
            actual,
            pinned: pinned.to_string(),
        });
    }
    Ok(policy)
}

fn read_pin_file(path: &Path) -> Result<SecretString, ConfigError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| ConfigError::PinFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?,
    );
    let pin = text.trim_end_matches(['\r', '\n']);
    if pin.is_empty() {
        return Err(ConfigError::EmptyPin(path.to_path_buf()));
    }
    Ok(SecretString::from(pin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn file(module: Option<&str>, label: Option<&str>) -> FileConfig {
        FileConfig {
            listen: None,
            policy_file: None,
            policy_sha256: None,
            data_dir: None,
            daily_volume_file: None,
            metrics_listen: None,
            log_format: None,
            pkcs11: Pkcs11File {
                module: module.map(PathBuf::from),
                token_label: label.map(String::from),
                pin_file: None,
            },
        }
    }

    #[test]
    fn overrides_win_over_the_file() {
        let o = Overrides {
            module: Some("/o.so".into()),
            ..Default::default()
        };
        let c = token_config(
            &file(Some("/f.so"), Some("t")),
            &o,
            Some(Zeroizing::new("1234".into())),
        )
        .unwrap();
        assert_eq!(c.module, PathBuf::from("/o.so"));
        assert_eq!(c.token_label, "t");
        assert_eq!(c.pin.expose_secret(), "1234");
    }

    #[test]
    fn missing_pieces_are_named() {
        let pin = || Some(Zeroizing::new("1".to_string()));
        assert!(matches!(
            token_config(&file(None, Some("t")), &Overrides::default(), pin()),
            Err(ConfigError::NoModule)
        ));
        assert!(matches!(
            token_config(&file(Some("/m"), None), &Overrides::default(), pin()),
            Err(ConfigError::NoTokenLabel)
        ));
        assert!(matches!(
            token_config(&file(Some("/m"), Some("t")), &Overrides::default(), None),
            Err(ConfigError::NoPin)
        ));
    }

    #[test]
    fn pin_file_is_read_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "98765\n").unwrap();
        let o = Overrides {
            pin_file: Some(path.clone()),
            ..Default::default()
        };
        let c = token_config(&file(Some("/m"), Some("t")), &o, None).unwrap();
        assert_eq!(c.pin.expose_secret(), "98765");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            token_config(&file(Some("/m"), Some("t")), &o, None),
            Err(ConfigError::EmptyPin(_))
        ));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<FileConfig>("pin = \"1234\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"));
    }
}
