//! Dialling the coordinator (or, for `ringi health`, a signer): mutual TLS
//! with the client's certificate, or plaintext on loopback only.

use tonic::transport::Channel;

use crate::CliError;

/// The CLI's TLS identity, for a coordinator that runs mutual TLS.
#[derive(Clone)]
pub struct ClientTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
    /// The name in the coordinator's certificate.
    pub server_name: String,
}

pub async fn connect(address: &str, tls: Option<&ClientTls>) -> Result<Channel, CliError> {
    if let Some(tls) = tls {
        let usage = |e: ringi_net::tls::TlsError| CliError::Usage(e.to_string());
        let config = ringi_net::tls::client_config(
            ringi_net::tls::load_certs(&tls.cert).map_err(usage)?,
            ringi_net::tls::load_key(&tls.key).map_err(usage)?,
            &ringi_net::tls::load_certs(&tls.ca).map_err(usage)?,
        )
        .map_err(usage)?;
        return ringi_net::tls::connect(address, &tls.server_name, std::sync::Arc::new(config))
            .await
            .map_err(|e| CliError::Connect {
                address: address.to_string(),
                reason: e.to_string(),
            });
    }
    let uri = ringi_net::transport::check_plaintext_dial(address)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let connect_err = |reason: String| CliError::Connect {
        address: address.to_string(),
        reason,
    };
    tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| connect_err(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| connect_err(e.to_string()))
}
