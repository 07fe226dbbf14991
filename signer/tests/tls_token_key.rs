//! A TLS 1.3 handshake whose server key lives in a real SoftHSM2 token: the
//! certificate is issued (rcgen) for the token's public key, rustls signs
//! through [`TokenTlsKey`], and a client trusting only the CA completes the
//! handshake. The private key object is sensitive and non-extractable.
//!
//! One test in this binary: it sets SOFTHSM2_CONF before PKCS#11 is
//! initialised, before any other thread runs.

use std::sync::Arc;

mod common;

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256,
    SubjectPublicKeyInfo,
};
use ringi_signer::tls_key::TokenTlsKey;
use rustls::pki_types::ServerName;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn tls_handshake_with_the_server_key_in_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = Arc::new(common::tokens(dir.path(), &["signer-1"]).remove(0));

    // The private half is sensitive and never extractable.
    token
        .with_session(|s| {
            let key = s
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Label(b"ringi-tls".to_vec()),
                ])
                .unwrap()[0];
            let attrs = s
                .get_attributes(
                    key,
                    &[
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::Sign,
                    ],
                )
                .unwrap();
            assert!(attrs.contains(&Attribute::Sensitive(true)));
            assert!(attrs.contains(&Attribute::Extractable(false)));
            assert!(attrs.contains(&Attribute::Sign(true)));
            Ok(())
        })
        .unwrap();

    // A CA certifies the token's public key.
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(
        ca_params,
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
    )
    .unwrap();
    let tls_key = TokenTlsKey::new(token.clone());
    let spki = SubjectPublicKeyInfo::from_der(&tls_key.public_key_spki_der().unwrap()).unwrap();
    let leaf = CertificateParams::new(vec!["signer-1".to_string()])
        .unwrap()
        .signed_by(&spki, &ca)
        .unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            vec![leaf.der().clone()],
            Arc::new(tls_key),
        ))));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(&buf).await.unwrap();
            tls.flush().await.unwrap();
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("signer-1").unwrap(), tcp)
            .await
            .expect("handshake with the token-held key");
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        tls.write_all(b"hello").await.unwrap();
        let mut echo = [0u8; 5];
        tls.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"hello");
        server.await.unwrap();
    });
}
