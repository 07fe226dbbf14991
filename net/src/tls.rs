//! Mutual TLS for every ringi hop (wallets and the CLI to the coordinator,
//! the coordinator to the signers): rustls with the ring provider chosen explicitly,
//! TLS 1.3 only, both sides authenticated by certificates from one
//! configured CA, and the peer identified by the DNS name in its
//! certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::peer::{PeerStream, peer_name};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {what}")]
    Content { path: String, what: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The crypto provider every ringi TLS endpoint uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Content {
            path: path.display().to_string(),
            what: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Content {
            path: path.display().to_string(),
            what: "no certificate".into(),
        });
    }
    Ok(certs)
}

/// A private key file (PKCS#8 PEM), as a rustls signing key.
pub fn load_key(path: &Path) -> Result<Arc<dyn SigningKey>, TlsError> {
    let bytes = read(path)?;
    let content = |what: String| TlsError::Content {
        path: path.display().to_string(),
        what,
    };
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| content(e.to_string()))?
        .ok_or_else(|| content("no private key".into()))?;
    provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| content(e.to_string()))
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in ca {
        store
            .add(cert.clone())
            .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
    }
    Ok(Arc::new(store))
}

/// A server that presents `chain` (signed by `key`, possibly held in a
/// token) and requires a client certificate from `ca`.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: Arc<dyn SigningKey>,
    ca: &[CertificateDer<'static>],
) -> Result<ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            chain, key,
        ))));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A client that presents `chain` (signed by `key`) and trusts servers
/// certified by `ca`.
pub fn client_config(
    chain: Vec<CertificateDer<'static>>,
    key: Arc<dyn SigningKey>,
    ca: &[CertificateDer<'static>],
) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            chain, key,
        ))));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The identity a certificate names: its first DNS subject alternative
/// name, else its common name.
pub fn identity(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                return Some(dns.to_string());
            }
        }
    }
    parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(String::from)
}

/// A TLS configuration that can be replaced while in use, for certificate
/// rotation without a restart (SIGHUP): every new handshake takes the
/// current configuration; established connections keep the one they began
/// with.
pub struct Reloadable<T>(Arc<std::sync::RwLock<Arc<T>>>);

impl<T> Clone for Reloadable<T> {
    fn clone(&self) -> Self {
        Reloadable(self.0.clone())
    }
}

impl<T> Reloadable<T> {
    pub fn new(config: Arc<T>) -> Self {
        Reloadable(Arc::new(std::sync::RwLock::new(config)))
    }

    /// The configuration new handshakes use.
    pub fn current(&self) -> Arc<T> {
        // A writer cannot panic half-way through replacing an Arc, so a
        // poisoned lock still holds a whole configuration.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes `config` the one every later handshake uses.
    pub fn replace(&self, config: Arc<T>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = config;
    }
}

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts TCP connections (with TCP_NODELAY: without it a handshake waits
/// ~40 ms on delayed ACKs), runs each TLS handshake on its own task so a
/// slow or hostile client cannot hold up the others, and yields the
/// established streams for `serve_with_incoming`, each with its peer
/// named once ([`PeerStream`]). Failed handshakes (no client certificate,
/// another CA, plaintext) are logged and dropped.
pub fn incoming(
    listener: tokio::net::TcpListener,
    config: Reloadable<ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<Result<PeerStream, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(config.current());
            let sender = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = sender.send(Ok(PeerStream::new(tls))).await;
                    }
                    Ok(Err(e)) => tracing::warn!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A gRPC interceptor that lets through only peers whose certificate names
/// one of `allowed` (the TLS layer has already checked the CA).
pub fn allow_only(
    allowed: Vec<String>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |request: tonic::Request<()>| match peer_name(&request) {
        Some(n) if allowed.iter().any(|a| a == n) => Ok(request),
        Some(n) => Err(tonic::Status::permission_denied(format!(
            "client {n:?} may not call this service"
        ))),
        None => Err(tonic::Status::unauthenticated("no client certificate")),
    }
}

/// Dials `address` over TLS, expecting the server to be `server_name`
/// (the name in its certificate, whatever address it listens on).
pub async fn connect(
    address: &str,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<tonic::transport::Channel, TlsError> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| TlsError::Config(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(5));
    endpoint
        .connect_with_connector(connector(address, server_name, Reloadable::new(config))?)
        .await
        .map_err(|e| TlsError::Config(format!("cannot connect to {server_name} at {address}: {e}")))
}

/// A lazily connecting TLS channel (see [`connect`]); every (re)connection
/// presents the client configuration current at that moment.
pub fn connect_lazy(
    address: &str,
    server_name: &str,
    config: Reloadable<ClientConfig>,
) -> Result<tonic::transport::Channel, TlsError> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| TlsError::Config(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(10));
    Ok(endpoint.connect_with_connector_lazy(connector(address, server_name, config)?))
}

type Connector = tower::util::BoxCloneSyncService<
    tonic::codegen::http::Uri,
    hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    std::io::Error,
>;

fn connector(
    address: &str,
    server_name: &str,
    config: Reloadable<ClientConfig>,
) -> Result<Connector, TlsError> {
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| TlsError::Config(format!("server name {server_name:?}: {e}")))?;
    let address = address.to_string();
    Ok(tower::util::BoxCloneSyncService::new(tower::service_fn(
        move |_uri| {
            let (address, name) = (address.clone(), name.clone());
            let tls = tokio_rustls::TlsConnector::from(config.current());
            async move {
                let tcp = tokio::net::TcpStream::connect(&address).await?;
                tcp.set_nodelay(true)?;
                let stream = tls.connect(name, tcp).await?;
                Ok(hyper_util::rt::TokioIo::new(stream))
            }
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256,
    };
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Pki {
        ca: CertifiedIssuer<'static, KeyPair>,
    }

    impl Pki {
        fn new() -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            Pki {
                ca: CertifiedIssuer::self_signed(
                    params,
                    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
                )
                .unwrap(),
            }
        }

        fn leaf(&self, name: &str) -> (Vec<CertificateDer<'static>>, Arc<dyn SigningKey>) {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let cert = CertificateParams::new(vec![name.to_string()])
                .unwrap()
                .signed_by(&key, &self.ca)
                .unwrap();
            let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
            (
                vec![cert.der().clone()],
                provider().key_provider.load_private_key(der).unwrap(),
            )
        }
    }

    /// Runs one mutual-TLS handshake; returns the client identity the
    /// server saw, or the error.
    async fn handshake(
        server: ServerConfig,
        client: ClientConfig,
        name: &str,
    ) -> Result<Option<String>, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            // Named as the serve loop names it: once, by `PeerStream`.
            let mut tls = crate::peer::PeerStream::new(tls);
            let peer = tls.peer().name.as_deref().map(String::from);
            let mut b = [0u8; 1];
            tls.read_exact(&mut b).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(peer)
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let client_result = async {
            let mut tls = connector
                .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            tls.write_all(b"x").await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())
        }
        .await;
        let server_result = server.await.unwrap();
        client_result?;
        server_result
    }

    #[tokio::test]
    async fn both_sides_authenticate_and_the_peer_is_named() {
        let pki = Pki::new();
        let ca = vec![pki.ca.der().clone()];
        let (server_chain, server_key) = pki.leaf("signer-1");
        let (client_chain, client_key) = pki.leaf("coordinator");
        let server = server_config(server_chain.clone(), server_key.clone(), &ca).unwrap();
        let client = client_config(client_chain, client_key, &ca).unwrap();
        assert_eq!(
            handshake(server, client, "signer-1").await,
            Ok(Some("coordinator".into()))
        );

        // A client certified by another CA is refused.
        let other = Pki::new();
        let (rogue_chain, rogue_key) = other.leaf("coordinator");
        let client = client_config(rogue_chain, rogue_key, &ca).unwrap();
        let server = server_config(server_chain.clone(), server_key.clone(), &ca).unwrap();
        assert!(handshake(server, client, "signer-1").await.is_err());

        // A server presenting another name is refused by the client.
        let (client_chain, client_key) = pki.leaf("coordinator");
        let client = client_config(client_chain, client_key, &ca).unwrap();
        let server = server_config(server_chain, server_key, &ca).unwrap();
        assert!(handshake(server, client, "signer-2").await.is_err());
    }
}
