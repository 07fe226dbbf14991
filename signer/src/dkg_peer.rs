//! Who this node will run a DKG with: peers whose DKG transport keys are
//! vouched for by their certified TLS identities.
//!
//! Round-2 DKG packages are sealed to each recipient's DKG transport key
//! (`dkg_envelope.rs`), and those keys reach a node through the coordinator.
//! Without more, a coordinator could hand every node its own key in place of
//! a peer's and open the packages meant for that peer. Under mutual TLS
//! each node therefore *attests* its transport key: its token's TLS key
//! signs the statement
//!
//! ```text
//! "ringi-dkg-transport-key-v1" || 0x00 || len(name) (u16 BE) || name || dkg_public_key (wire form)
//! ```
//!
//! (the wire form of `crate::transport_key`: a secp256k1 key as its SEC1
//! compressed point, a P-256 key as its SubjectPublicKeyInfo; a node with a
//! key on each curve attests each one).
//!
//! and the node hands out the signature with its certificate. A node taking
//! part in a DKG checks, for every other participant, that the certificate
//! chains to its own CA, that it names an allowed DKG peer (never one of the
//! clients allowed to call the signer API, such as the coordinator), that
//! the name is valid for the certificate, that the signature verifies under
//! the certificate's key, and that no two participants carry the same name.
//! A coordinator holding only its own certificate cannot pass these checks
//! with a key of its own.
//!
//! Certificate and signature checks are rustls-webpki's (ring).

use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};

use crate::transport_key::{TransportKey, TransportKeyError};

/// Domain separation for the attestation statement.
pub const STATEMENT_CONTEXT: &[u8] = b"ringi-dkg-transport-key-v1";

/// The bytes a node's TLS key signs to vouch for its DKG transport key.
pub fn statement(name: &str, dkg_public_key: &[u8]) -> Vec<u8> {
    let name = name.as_bytes();
    let mut out =
        Vec::with_capacity(STATEMENT_CONTEXT.len() + 3 + name.len() + dkg_public_key.len());
    out.extend_from_slice(STATEMENT_CONTEXT);
    out.push(0);
    // Names come from certificates (DNS names, < 256 bytes); saturate rather
    // than wrap if one ever were longer, so the encoding stays unambiguous
    // for every name a check can accept.
    out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(dkg_public_key);
    out
}

/// This node's attestations, one per transport key: (key in its wire
/// form, attestation).
pub type OwnAttestations = Vec<(Vec<u8>, Attestation)>;

/// A node's certificate (DER) and its TLS key's signature (ECDSA P-256
/// SHA-256, DER) over [`statement`].
#[derive(Clone, PartialEq, Eq)]
pub struct Attestation {
    pub certificate: Vec<u8>,
    pub signature: Vec<u8>,
}

impl std::fmt::Debug for Attestation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Attestation({} byte certificate, {} byte signature)",
            self.certificate.len(),
            self.signature.len()
        )
    }
}

/// Why a participant is not accepted as a DKG peer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("carries no certificate and signature for its DKG key")]
    Missing,
    #[error("its certificate is not one this node's CA issued: {0}")]
    Untrusted(String),
    #[error("its certificate names no identity")]
    NoName,
    #[error("{0:?} is not a DKG peer of this node")]
    NotAPeer(String),
    #[error("the signature over its DKG key does not verify under the certificate of {0:?}")]
    BadSignature(String),
    #[error("its DKG key is {0}")]
    BadKey(TransportKeyError),
}

/// Which names this node accepts as DKG peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peers {
    /// Exactly these names (`--dkg-peers`).
    Only(Vec<String>),
    /// Any name the CA certified except these (the clients allowed to call
    /// the signer API: a coordinator is never a DKG peer).
    AnyExcept(Vec<String>),
}

impl Peers {
    fn allows(&self, name: &str) -> bool {
        match self {
            Peers::Only(names) => names.iter().any(|n| n == name),
            Peers::AnyExcept(names) => !names.iter().any(|n| n == name),
        }
    }
}

/// This node's rule for DKG peers: its CA and the names it accepts.
#[derive(Clone)]
pub struct PeerCheck {
    anchors: Vec<TrustAnchor<'static>>,
    peers: Peers,
}

impl std::fmt::Debug for PeerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCheck")
            .field("anchors", &self.anchors.len())
            .field("peers", &self.peers)
            .finish()
    }
}

impl PeerCheck {
    /// `ca`: the certificates this node trusts (its mutual-TLS CA).
    pub fn new(ca: &[CertificateDer<'_>], peers: Peers) -> Result<Self, PeerError> {
        let anchors = ca
            .iter()
            .map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|e| PeerError::Untrusted(format!("CA certificate: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PeerCheck { anchors, peers })
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Checks one participant's attestation of `dkg_public_key` (its wire
    /// form, or any SEC1 form of a secp256k1 key); returns the certified
    /// name.
    pub fn verify(
        &self,
        dkg_public_key: &[u8],
        attestation: Option<&Attestation>,
    ) -> Result<String, PeerError> {
        let att = attestation.ok_or(PeerError::Missing)?;
        let key = compressed(dkg_public_key)?;
        let der = CertificateDer::from(att.certificate.as_slice());
        let cert = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| PeerError::Untrusted(format!("not a certificate: {e}")))?;
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &[],
            UnixTime::now(),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| PeerError::Untrusted(e.to_string()))?;
        let name = ringi_net::tls::identity(&der).ok_or(PeerError::NoName)?;
        let server_name = ServerName::try_from(name.as_str()).map_err(|_| PeerError::NoName)?;
        cert.verify_is_valid_for_subject_name(&server_name)
            .map_err(|_| PeerError::NoName)?;
        if !self.peers.allows(&name) {
            return Err(PeerError::NotAPeer(name));
        }
        cert.verify_signature(
            webpki::ring::ECDSA_P256_SHA256,
            &statement(&name, &key),
            &att.signature,
        )
        .map_err(|_| PeerError::BadSignature(name.clone()))?;
        Ok(name)
    }
}

/// The canonical wire form of a transport key (what a node signs).
pub fn compressed(key: &[u8]) -> Result<Vec<u8>, PeerError> {
    TransportKey::from_wire(key)
        .map(|k| k.wire())
        .map_err(PeerError::BadKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, PKCS_ECDSA_P256_SHA256, SigningKey,
    };

    struct Ca {
        issuer: CertifiedIssuer<'static, KeyPair>,
    }

    impl Ca {
        fn new() -> Ca {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            Ca {
                issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
            }
        }

        fn der(&self) -> CertificateDer<'static> {
            self.issuer.der().clone()
        }

        /// A node certificate for `name` and its key (file keys: a test).
        fn node(&self, name: &str) -> (Vec<u8>, KeyPair) {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            (cert.der().to_vec(), key)
        }
    }

    fn dkg_key(seed: u8) -> Vec<u8> {
        let secret = k256::SecretKey::from_slice(&[seed; 32]).unwrap();
        compressed(&secret.public_key().to_sec1_bytes()).unwrap()
    }

    fn attest(cert: &[u8], key: &KeyPair, name: &str, dkg: &[u8]) -> Attestation {
        Attestation {
            certificate: cert.to_vec(),
            signature: key.sign(&statement(name, dkg)).unwrap(),
        }
    }

    fn check(ca: &Ca, peers: Peers) -> PeerCheck {
        PeerCheck::new(&[ca.der()], peers).unwrap()
    }

    #[test]
    fn accepts_a_peer_vouching_for_its_own_key() {
        let ca = Ca::new();
        let (cert, key) = ca.node("signer-2");
        let dkg = dkg_key(2);
        let att = attest(&cert, &key, "signer-2", &dkg);
        let only = check(&ca, Peers::Only(vec!["signer-1".into(), "signer-2".into()]));
        assert_eq!(only.verify(&dkg, Some(&att)), Ok("signer-2".into()));
        // The uncompressed form of the same key is the same key.
        let uncompressed = {
            use k256::elliptic_curve::sec1::ToEncodedPoint;
            k256::PublicKey::from_sec1_bytes(&dkg)
                .unwrap()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec()
        };
        assert_eq!(
            only.verify(&uncompressed, Some(&att)),
            Ok("signer-2".into())
        );
        let any = check(&ca, Peers::AnyExcept(vec!["coordinator".into()]));
        assert_eq!(any.verify(&dkg, Some(&att)), Ok("signer-2".into()));
    }

    #[test]
    fn refuses_a_substituted_key() {
        let ca = Ca::new();
        let (cert, key) = ca.node("signer-2");
        let att = attest(&cert, &key, "signer-2", &dkg_key(2));
        let c = check(&ca, Peers::AnyExcept(vec!["coordinator".into()]));
        assert_eq!(
            c.verify(&dkg_key(9), Some(&att)),
            Err(PeerError::BadSignature("signer-2".into()))
        );
    }

    #[test]
    fn refuses_a_coordinator_vouching_for_its_own_key() {
        let ca = Ca::new();
        let (cert, key) = ca.node("coordinator");
        let dkg = dkg_key(9);
        let att = attest(&cert, &key, "coordinator", &dkg);
        let c = check(&ca, Peers::AnyExcept(vec!["coordinator".into()]));
        assert_eq!(
            c.verify(&dkg, Some(&att)),
            Err(PeerError::NotAPeer("coordinator".into()))
        );
        let c = check(&ca, Peers::Only(vec!["signer-1".into(), "signer-2".into()]));
        assert_eq!(
            c.verify(&dkg, Some(&att)),
            Err(PeerError::NotAPeer("coordinator".into()))
        );
    }

    #[test]
    fn refuses_another_ca_a_missing_attestation_and_garbage() {
        let ca = Ca::new();
        let other = Ca::new();
        let (cert, key) = other.node("signer-2");
        let dkg = dkg_key(2);
        let att = attest(&cert, &key, "signer-2", &dkg);
        let c = check(&ca, Peers::AnyExcept(vec![]));
        assert!(matches!(
            c.verify(&dkg, Some(&att)),
            Err(PeerError::Untrusted(_))
        ));
        assert_eq!(c.verify(&dkg, None), Err(PeerError::Missing));
        let garbage = Attestation {
            certificate: vec![0x30, 0x03, 1, 2, 3],
            signature: vec![],
        };
        assert!(matches!(
            c.verify(&dkg, Some(&garbage)),
            Err(PeerError::Untrusted(_))
        ));
        assert!(matches!(
            c.verify(&[7; 33], Some(&att)),
            Err(PeerError::BadKey(_))
        ));
    }

    #[test]
    fn a_signature_for_another_name_does_not_carry_over() {
        let ca = Ca::new();
        let (cert, key) = ca.node("signer-2");
        let dkg = dkg_key(2);
        // Signed as if the node were signer-3: the certificate says signer-2.
        let att = attest(&cert, &key, "signer-3", &dkg);
        let c = check(&ca, Peers::AnyExcept(vec![]));
        assert_eq!(
            c.verify(&dkg, Some(&att)),
            Err(PeerError::BadSignature("signer-2".into()))
        );
    }

    #[test]
    fn statements_are_unambiguous() {
        assert_ne!(statement("ab", &[1, 2]), statement("a", &[b'b', 1, 2]));
        assert!(statement("signer-1", &[2; 33]).starts_with(STATEMENT_CONTEXT));
    }
}
