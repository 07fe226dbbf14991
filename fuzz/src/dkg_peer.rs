//! A DKG participant's attestation (certificate and signature over its
//! transport key), relayed by the coordinator and checked by every signer
//! (`ringi_signer::dkg_peer::PeerCheck::verify`).
//!
//! Input: `mode (1) ‖ name length (1) ‖ name ‖ rest`.
//! - mode 0: `rest` is split into transport key, certificate and signature
//!   as the fuzzer likes: never accepted (the harness's CA signed nothing);
//! - mode 1: the harness's test CA certifies `name`, and that node's key
//!   signs the statement for the transport key `rest` (as a genuine peer
//!   would); with mode bit 2 it signs for another name, with bit 3 the
//!   certificate comes from another CA;
//!
//! Reaches: certificate parsing, the chain to the CA, the certified name,
//! the peer rule (the coordinator's name is never a peer), the transport
//! key's decoding, and the signature over the exact statement. A genuine
//! attestation is accepted and names its certificate's name.

use std::sync::LazyLock;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    PKCS_ECDSA_P256_SHA256, SigningKey,
};
use ringi_signer::dkg_peer::{Attestation, PeerCheck, PeerError, Peers, statement};
use rustls::pki_types::CertificateDer;

crate::stages!(
    /// How far an input got.
    Reached {
        Short,
        Untrusted,
        NoName,
        NotAPeer,
        BadKey,
        BadSignature,
        Missing,
        /// A genuine attestation, accepted.
        Accepted,
    }
);

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("a P-256 key");
        Ca(CertifiedIssuer::self_signed(params, key).expect("a self-signed CA"))
    }

    /// A certificate for `name` and its key, or `None` if rcgen refuses it.
    fn node(&self, name: &str) -> Option<(Vec<u8>, &'static KeyPair)> {
        let mut params = CertificateParams::new(vec![name.to_string()]).ok()?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&*NODE_KEY, &self.0).ok()?;
        Some((cert.der().to_vec(), &NODE_KEY))
    }
}

static CA: LazyLock<Ca> = LazyLock::new(Ca::new);
static OTHER_CA: LazyLock<Ca> = LazyLock::new(Ca::new);
static NODE_KEY: LazyLock<KeyPair> =
    LazyLock::new(|| KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("a P-256 key"));
static CHECK: LazyLock<PeerCheck> = LazyLock::new(|| {
    PeerCheck::new(
        &[CertificateDer::from(CA.0.der().to_vec())],
        Peers::AnyExcept(vec!["coordinator".into()]),
    )
    .expect("the harness CA is a trust anchor")
});

pub fn run(data: &[u8]) -> Reached {
    let [mode, len, rest @ ..] = data else {
        return Reached::Short;
    };
    let len = usize::from(*len).min(rest.len());
    let (name, rest) = rest.split_at(len);
    let attestation = if mode & 1 == 0 {
        if rest.len() < 2 {
            return Reached::Short;
        }
        let (key, tail) = rest.split_at(33.min(rest.len() / 2));
        let split = usize::from(tail[0]) % tail.len();
        let (certificate, signature) = tail[1..].split_at(split.min(tail.len() - 1));
        let attestation = Attestation {
            certificate: certificate.to_vec(),
            signature: signature.to_vec(),
        };
        let result = CHECK.verify(key, Some(&attestation));
        assert!(
            result.is_err(),
            "an attestation the harness did not make was accepted"
        );
        return reached(result);
    } else {
        let Ok(name) = std::str::from_utf8(name) else {
            return Reached::Short;
        };
        let ca = if mode & 8 != 0 { &*OTHER_CA } else { &*CA };
        let Some((certificate, key)) = ca.node(name) else {
            return Reached::Short;
        };
        let signed_name = if mode & 4 != 0 { "someone-else" } else { name };
        let Ok(signature) = key.sign(&statement(signed_name, rest)) else {
            return Reached::Short;
        };
        (
            name,
            Attestation {
                certificate,
                signature,
            },
        )
    };
    let (name, attestation) = attestation;
    let result = CHECK.verify(rest, Some(&attestation));
    if let Ok(accepted) = &result {
        assert_eq!(accepted, name, "accepted under another name");
        assert!(mode & 8 == 0, "a certificate from another CA was accepted");
        assert!(
            mode & 4 == 0 || name == "someone-else",
            "a signature for another name was accepted"
        );
        assert_ne!(
            name, "coordinator",
            "the coordinator was accepted as a DKG peer"
        );
    }
    reached(result)
}

fn reached(result: Result<String, PeerError>) -> Reached {
    match result {
        Ok(_) => Reached::Accepted,
        Err(PeerError::Missing) => Reached::Missing,
        Err(PeerError::Untrusted(_)) => Reached::Untrusted,
        Err(PeerError::NoName) => Reached::NoName,
        Err(PeerError::NotAPeer(_)) => Reached::NotAPeer,
        Err(PeerError::BadSignature(_)) => Reached::BadSignature,
        Err(PeerError::BadKey(_)) => Reached::BadKey,
    }
}

fn input(mode: u8, name: &str, key: &[u8]) -> Vec<u8> {
    let mut out = vec![mode, name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(key);
    out
}

pub fn seeds() -> Vec<Vec<u8>> {
    // A secp256k1 transport key: the generator point, compressed.
    let key = hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
        .expect("hex");
    vec![
        input(1, "signer-1", &key),
        input(1, "coordinator", &key),
        input(1 | 4, "signer-2", &key),
        input(1 | 8, "signer-3", &key),
        input(1, "signer-1", &key[..20]),
        input(0, "x", &[7; 120]),
    ]
}
