//! The coordinator's configuration file.
//!
//! ```toml
//! listen = "127.0.0.1:7000"
//! data_dir = "/var/lib/ringi"       # default: $XDG_DATA_HOME/ringi or ~/.local/share/ringi
//! policy_file = "/etc/ringi/policy.toml"   # departments, approvers, quorums
//!
//! signing_concurrency = 48          # signing runs at once (default 16 per signer); the rest wait
//! signing_lease_secs = 120          # how long a signing claim holds unrenewed (see below)
//!
//! metrics_listen = "127.0.0.1:9464" # optional: Prometheus metrics over HTTP (off by default)
//! log_format = "json"               # optional: text (default) or json; `--log-format` overrides
//! preflight_interval_secs = 10      # how often the signers are checked (crate::preflight)
//!
//! [store]                           # optional: where the state lives (default: SQLite in data_dir)
//! engine = "postgres"               # "sqlite" (default) | "postgres": coordinators sharing one database
//! url = "host=db.internal dbname=ringi user=ringi"   # libpq key=value or postgresql:// URL
//! password_file = "/etc/ringi/pg-password"   # optional; else the URL's, or none
//! ca = "/etc/ringi/pg-ca.pem"       # optional: TLS to the server (TCP), verified against this CA
//! cert = "/etc/ringi/pg-client.pem" # optional, with `key`: a client certificate for the server
//! key = "/etc/ringi/pg-client.key"
//! max_connections = 16              # the pool's size (default 16)
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
    /// How many signing runs may talk to the signers at once (default: 16
    /// per registered signer: their round-2 calls reach each signer in at
    /// most two batched calls at a time, `crate::sign_batches`; more only
    /// queue at the signers' tokens).
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
    /// How long a signing run's claim on a request holds without being
    /// renewed (default [`crate::signing_claim::LEASE_SECS`]). With
    /// coordinators sharing a database, it is how long a request a dead
    /// coordinator was signing waits before another takes it over; a run
    /// slower than it is not harmed, only superseded (its claim is fenced,
    /// and the run taking over resumes its round-2 plan: the same
    /// signature).
    pub signing_lease_secs: Option<u64>,
    /// Where the coordinator's state lives; SQLite in `data_dir` unless
    /// set.
    #[serde(default)]
    pub store: StoreConfig,
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

/// Which storage engine keeps the coordinator's state, and how to reach it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub engine: StoreEngine,
    /// PostgreSQL: a libpq connection string (`host=... dbname=...`) or
    /// URL (`postgresql://user@host/db`). May hold a password: never
    /// logged, and shown redacted by `Debug`.
    pub url: Option<String>,
    /// PostgreSQL: a file holding the password (its first line), instead
    /// of one in `url`.
    pub password_file: Option<PathBuf>,
    /// PostgreSQL over TCP: require TLS, and trust server certificates
    /// issued by this CA (PEM). Not for a Unix socket (a local hop, on
    /// which the server offers no TLS).
    pub ca: Option<PathBuf>,
    /// PostgreSQL: a client certificate (PEM) and its key (PKCS#8 PEM),
    /// for a server that asks for one; only with `ca`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// PostgreSQL: most connections this coordinator opens.
    pub max_connections: Option<usize>,
}

/// The storage engines.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreEngine {
    /// One file under the data directory, one coordinator (embedded).
    #[default]
    Sqlite,
    /// One PostgreSQL database shared by any number of coordinators.
    Postgres,
}

/// A connection string with any password in it replaced by `***`: what
/// logs and `Debug` may show.
pub fn redacted_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        // URL form: scheme://user:password@host/db?password=...
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => authority.to_string(),
            },
            None => authority.to_string(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                        _ => pair.to_string(),
                    })
                    .collect();
                format!("{path}?{}", query.join("&"))
            }
            None => tail.to_string(),
        };
        return format!("{scheme}://{authority}{tail}");
    }
    // Key-value form: password=secret or password='a secret'.
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = find_password_key(rest) {
        out.push_str(&rest[..at]);
        out.push_str("password=***");
        let value = rest[at..]
            .split_once('=')
            .map_or("", |(_, v)| v)
            .trim_start();
        rest = if let Some(quoted) = value.strip_prefix('\'') {
            // Up to the closing quote (a quote escaped by a backslash does
            // not close it).
            let mut end = quoted.len();
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        end = i + 1;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            &quoted[end.min(quoted.len())..]
        } else {
            &value[value.find(char::is_whitespace).unwrap_or(value.len())..]
        };
    }
    out.push_str(rest);
    out
}

/// Where a `password` key (followed by `=`) starts in key-value text.
fn find_password_key(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("password") {
        let at = from + i;
        let starts_word = at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace();
        let after = lower[at + "password".len()..].trim_start();
        if starts_word && after.starts_with('=') {
            return Some(at);
        }
        from = at + "password".len();
    }
    None
}

impl std::fmt::Debug for StoreConfig {
    /// The URL redacted: a config printed for debugging must not carry
    /// the database password into a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("engine", &self.engine)
            .field("url", &self.url.as_deref().map(redacted_url))
            .field("password_file", &self.password_file)
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("max_connections", &self.max_connections)
            .finish()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_is_the_default_and_one_line_selects_postgres() {
        let config: Config = toml::from_str("listen = \"127.0.0.1:7000\"\n").unwrap();
        assert_eq!(config.store.engine, StoreEngine::Sqlite);
        let config: Config =
            toml::from_str("[store]\nengine = \"postgres\"\nurl = \"host=/tmp dbname=ringi\"\n")
                .unwrap();
        assert_eq!(config.store.engine, StoreEngine::Postgres);
        assert!(toml::from_str::<Config>("[store]\nengine = \"mysql\"\n").is_err());
    }

    #[test]
    fn passwords_never_show_in_a_redacted_url_or_debug() {
        for (url, shown) in [
            (
                "postgresql://ringi:s3cret@db:5432/ringi?sslmode=require",
                "postgresql://ringi:***@db:5432/ringi?sslmode=require",
            ),
            (
                "postgres://db/ringi?user=r&password=s3cret",
                "postgres://db/ringi?user=r&password=***",
            ),
            ("postgresql://ringi@db/ringi", "postgresql://ringi@db/ringi"),
            (
                "host=db user=ringi password=s3cret dbname=ringi",
                "host=db user=ringi password=*** dbname=ringi",
            ),
            (
                "host=db password = 'a s3cret \\' quote' dbname=ringi",
                "host=db password=*** dbname=ringi",
            ),
            ("PASSWORD=s3cret", "password=***"),
            ("host=/tmp dbname=passwords", "host=/tmp dbname=passwords"),
        ] {
            assert_eq!(redacted_url(url), shown, "{url}");
            let config = StoreConfig {
                url: Some(url.into()),
                ..StoreConfig::default()
            };
            assert!(!format!("{config:?}").contains("s3cret"), "{config:?}");
        }
    }
}
