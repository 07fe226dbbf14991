//! The coordinator's configuration file.
//!
//! ```toml
//! listen = "127.0.0.1:7000"
//! data_dir = "/var/lib/ringi"       # default: $XDG_DATA_HOME/ringi or ~/.local/share/ringi
//! policy_file = "/etc/ringi/policy.toml"   # departments, approvers, quorums
//!
//! signing_concurrency = 12          # signing runs at once (default 4 per signer); the rest wait
//!
//! metrics_listen = "127.0.0.1:9464" # optional: Prometheus metrics over HTTP (off by default)
//! log_format = "json"               # optional: text (default) or json; `--log-format` overrides
//! preflight_interval_secs = 10      # how often the signers are checked (crate::preflight)
//!
//! [tls]                             # optional: mutual TLS on every hop
//! cert = "coordinator.pem"
//! key = "coordinator.key"           # development only: without [pkcs11], a file key
//! ca = "ca.pem"
//!
//! [pkcs11]                          # the TLS key and audit key in a token (crate::token_keys)
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "coordinator"
//! pin_file = "/etc/ringi/coordinator.pin"   # or RINGI_PKCS11_PIN
//!
//! [[clients]]                       # under TLS: who may do what
//! name = "wallet-service"            # the name in its certificate
//! roles = ["wallet"]                 # wallet | approver | admin
//! key_ids = ["hot-1"]                # keys a wallet may submit for and read ("*": all)
//!
//! [[signers]]
//! name = "signer-1"
//! address = "127.0.0.1:7101"
//! identifier = 1                    # FROST identifier, 1..=65535, unique
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7000";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    /// The approval policy (TOML). Signers must pin the same file's hash.
    pub policy_file: Option<PathBuf>,
    /// Operators' daily-volume figures, for caps set as a share of them.
    pub daily_volume_file: Option<PathBuf>,
    #[serde(default)]
    pub signers: Vec<SignerEntry>,
    /// Mutual TLS for every hop; without it, plaintext on loopback only.
    pub tls: Option<TlsConfig>,
    /// Under TLS: the client identities allowed in, and what each may do.
    #[serde(default)]
    pub clients: Vec<ClientEntry>,
    /// How many signing runs may talk to the signers at once (default: 4
    /// per registered signer; more only queue at the signers' tokens).
    /// Approved requests beyond it wait their turn, APPROVED, in the store.
    pub signing_concurrency: Option<usize>,
    /// Where to serve Prometheus metrics (plain HTTP, apart from the gRPC
    /// listener); none: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// `text` (default) or `json`; the `--log-format` option overrides it.
    pub log_format: Option<ringi_net::logging::LogFormat>,
    /// Seconds between two pre-flight checks of the signers (default 10;
    /// see `crate::preflight`).
    pub preflight_interval_secs: Option<u64>,
    /// The coordinator's PKCS#11 token, holding its TLS key and the key
    /// that signs its audit checkpoints (`crate::token_keys`).
    pub pkcs11: Option<Pkcs11Config>,
}

/// Where the coordinator's token is. The PIN comes from
/// `RINGI_PKCS11_PIN` or from `pin_file`, never from this file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// A file holding the user PIN.
    pub pin_file: Option<PathBuf>,
}

/// One client identity (the name in its certificate) and its permissions.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    pub name: String,
    /// Any of "wallet" (submit requests, read its keys' requests),
    /// "approver" (decide, read every request), "admin" (create keys,
    /// retry, read every request). A client with no role reads nothing.
    pub roles: Vec<Role>,
    /// For wallets: the key ids it may submit requests for and read the
    /// requests of ("*": all).
    #[serde(default)]
    pub key_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Wallet,
    Approver,
    Admin,
}

impl ClientEntry {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn may_use_key(&self, key_id: &str) -> bool {
        self.key_ids.iter().any(|k| k == "*" || k == key_id)
    }
}

/// The coordinator's TLS identity and trust.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate (PEM) naming `coordinator`, for serving and for dialling
    /// signers.
    pub cert: PathBuf,
    /// Its private key as a PKCS#8 PEM file: development only. In
    /// production leave it out and configure `[pkcs11]`: the key is then
    /// the token's (`ringi token init`, `ringi token tls-csr`).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The CA that certifies signers and clients.
    pub ca: PathBuf,
}

/// One signer node in the registry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SignerEntry {
    pub name: String,
    pub address: String,
    pub identifier: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("config file {path} is invalid: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("no data directory: set data_dir in the config, or HOME or XDG_DATA_HOME")]
    NoDataDir,
}

impl Config {
    /// Time between two pre-flight checks (at least a second).
    pub fn preflight_interval(&self) -> std::time::Duration {
        self.preflight_interval_secs
            .map(|s| std::time::Duration::from_secs(s.max(1)))
            .unwrap_or(crate::preflight::DEFAULT_INTERVAL)
    }

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

    /// The data directory: configured, or the XDG data home.
    pub fn data_dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(xdg).join("ringi"));
        }
        std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|home| PathBuf::from(home).join(".local/share/ringi"))
            .ok_or(ConfigError::NoDataDir)
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"))
    }
}
