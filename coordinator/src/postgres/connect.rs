//! How the coordinator reaches its PostgreSQL server: the connection
//! string from the `[store]` config, the password from a file if one is
//! named, and TLS (rustls, the workspace's ring provider) when the config
//! gives a CA. Nothing here ever formats the password: errors name the
//! setting, [`Target::describe`] names the host, database and user.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::StoreConfig;

/// How long opening one connection may take before it is an error: a
/// server that does not answer must not hold a store call forever.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the PostgreSQL store cannot be reached as configured.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("[store] engine = \"postgres\" needs url (a PostgreSQL connection string)")]
    NoUrl,
    /// The connection string does not parse; its text is not repeated (it
    /// may hold a password), only the parser's reason.
    #[error("[store] url is not a PostgreSQL connection string: {0}")]
    BadUrl(String),
    #[error("[store] password_file {path}: {reason}")]
    PasswordFile { path: String, reason: String },
    #[error("[store] {setting}: {reason}")]
    Tls {
        setting: &'static str,
        reason: String,
    },
    #[error(
        "[store] cert and key go together, and only with ca (TLS to the server is what they are for)"
    )]
    ClientCertWithoutTls,
}

/// What went wrong, in words: the server's message and SQLSTATE for a
/// database error (the client's own `Display` says only "db error"), else
/// the client's error and its causes (a TLS handshake's reason, an I/O
/// error). Neither ever holds the password: the server does not repeat it,
/// and the client's errors do not show its settings.
pub fn describe_error(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A configured server: connection settings (password included, held
/// here only) and the TLS to use.
#[derive(Clone)]
pub struct Target {
    config: postgres::Config,
    tls: Option<MakeRustlsConnect>,
}

impl Target {
    /// From the `[store]` section.
    pub fn from_config(store: &StoreConfig) -> Result<Self, ConnectError> {
        let url = store.url.as_deref().ok_or(ConnectError::NoUrl)?;
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| ConnectError::BadUrl(e.to_string()))?;
        if let Some(path) = &store.password_file {
            config.password(read_password(path)?);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // Names the coordinator in pg_stat_activity.
        if config.get_application_name().is_none() {
            config.application_name("ringi-coordinator");
        }
        let tls = match (&store.ca, &store.cert, &store.key) {
            (None, None, None) => None,
            (Some(ca), cert, key) => {
                // Required, never "prefer": a configured CA means the
                // operator wants the hop encrypted and the server checked.
                config.ssl_mode(SslMode::Require);
                Some(MakeRustlsConnect::new(client_config(
                    ca,
                    cert.as_deref(),
                    key.as_deref(),
                )?))
            }
            (None, _, _) => return Err(ConnectError::ClientCertWithoutTls),
        };
        Ok(Target { config, tls })
    }

    /// Opens one connection.
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(postgres::NoTls),
        }
    }

    /// What logs may say about the server: hosts, database, user, TLS.
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        format!(
            "postgresql host={} dbname={} user={} tls={}",
            hosts.join(","),
            self.config.get_dbname().unwrap_or("(default)"),
            self.config.get_user().unwrap_or("(default)"),
            if self.tls.is_some() { "on" } else { "off" }
        )
    }
}

/// The first line of the password file, without its line end.
fn read_password(path: &Path) -> Result<Vec<u8>, ConnectError> {
    let text = std::fs::read(path).map_err(|e| ConnectError::PasswordFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(ConnectError::PasswordFile {
            path: path.display().to_string(),
            reason: "its first line is empty".into(),
        });
    }
    Ok(line.to_vec())
}

/// TLS to the server: trusts `ca`, presents `cert` and `key` if given.
fn client_config(
    ca: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<rustls::ClientConfig, ConnectError> {
    let tls = |setting, e: ringi_net::tls::TlsError| ConnectError::Tls {
        setting,
        reason: e.to_string(),
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in ringi_net::tls::load_certs(ca).map_err(|e| tls("ca", e))? {
        roots.add(c).map_err(|e| ConnectError::Tls {
            setting: "ca",
            reason: e.to_string(),
        })?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(ringi_net::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls {
            setting: "ca",
            reason: e.to_string(),
        })?
        .with_root_certificates(Arc::new(roots));
    let mut config = match (cert, key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = ringi_net::tls::load_certs(cert).map_err(|e| tls("cert", e))?;
            let key = ringi_net::tls::load_key(key).map_err(|e| tls("key", e))?;
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                rustls::sign::CertifiedKey::new(chain, key),
            )))
        }
        _ => return Err(ConnectError::ClientCertWithoutTls),
    };
    // What PostgreSQL 17 and later check on a direct TLS connection; older
    // servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(url: &str) -> StoreConfig {
        StoreConfig {
            engine: crate::config::StoreEngine::Postgres,
            url: Some(url.into()),
            ..StoreConfig::default()
        }
    }

    #[test]
    fn settings_errors_never_repeat_the_password() {
        for url in [
            "postgresql://ringi:s3cret@db:notaport/ringi",
            "host=db password=s3cret sslmode=sometimes",
            "host=db password=s3cret nonsense=1",
        ] {
            let Err(e) = Target::from_config(&store(url)) else {
                panic!("{url} parsed");
            };
            assert!(matches!(e, ConnectError::BadUrl(_)), "{e}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let mut config = store("host=db user=ringi dbname=ringi");
        config.password_file = Some(file);
        let target = Target::from_config(&config).unwrap();
        assert_eq!(target.config.get_password(), Some(&b"s3cret"[..]));
        let described = target.describe();
        assert_eq!(
            described,
            "postgresql host=db dbname=ringi user=ringi tls=off"
        );
        config.password_file = Some(dir.path().join("missing"));
        assert!(matches!(
            Target::from_config(&config),
            Err(ConnectError::PasswordFile { .. })
        ));
        config.password_file = None;
        config.cert = Some("c.pem".into());
        assert!(matches!(
            Target::from_config(&config),
            Err(ConnectError::ClientCertWithoutTls)
        ));
    }
}
