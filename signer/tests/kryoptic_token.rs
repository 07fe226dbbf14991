//! Every token operation ringi uses, on a real kryoptic token (the second
//! PKCS#11 module, an independent soft token: softhsm-setup/build-kryoptic.sh
//! builds it, softhsm-setup/kryoptic-token.sh makes the token), next to a
//! SoftHSM2 token in the same process: init without secp256k1 (a P-256
//! transport key only), the key attributes, AES-GCM sealing and a refused
//! tag, share objects, ECDSA for the audit and TLS keys, and ECDH between
//! the two modules on P-256.
//!
//! Not skipped when kryoptic is missing: the test fails, naming the build
//! script. One test in this binary: it sets KRYOPTIC_CONF and SOFTHSM2_CONF
//! before PKCS#11 is initialised, before any other thread runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cryptoki::mechanism::MechanismType;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use ringi_policy::approver_key::ApproverKey;
use ringi_signer::tls_key::{TokenCsrKey, TokenTlsKey};
use ringi_signer::token::{
    AUDIT_KEY_LABEL, DKG_P256_KEY_LABEL, GCM_IV_LEN, KEK_LABEL, TLS_KEY_LABEL, Token, TokenConfig,
    TokenError,
};
use ringi_signer::transport_key::TransportCurve;
use rustls::sign::Signer as _;
use secrecy::SecretString;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The kryoptic token `label` in `dir`, made by kryoptic-token.sh; sets
/// KRYOPTIC_CONF for this process. Returns its env file's settings.
fn kryoptic_token(dir: &Path, label: &str) -> TokenConfig {
    let module = repo_root().join("target/kryoptic/libkryoptic_pkcs11.so");
    assert!(
        module.exists(),
        "{} is missing: build kryoptic with softhsm-setup/build-kryoptic.sh (softhsm-setup/run-tests.sh runs it)",
        module.display()
    );
    let out = Command::new(repo_root().join("softhsm-setup/kryoptic-token.sh"))
        .arg(dir)
        .arg(label)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kryoptic-token.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SAFETY: called before any other thread of this test binary starts.
    unsafe { std::env::set_var("KRYOPTIC_CONF", dir.join("kryoptic.conf")) };
    TokenConfig {
        module,
        token_label: label.to_string(),
        pin: SecretString::from(
            std::fs::read_to_string(dir.join("pin"))
                .unwrap()
                .trim()
                .to_string(),
        ),
    }
}

fn attributes(
    token: &Token,
    class: ObjectClass,
    label: &str,
    types: &[AttributeType],
) -> Vec<Attribute> {
    token
        .with_session(|s| {
            let found = s
                .find_objects(&[
                    Attribute::Class(class),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])
                .unwrap();
            assert_eq!(found.len(), 1, "one {label}");
            Ok(s.get_attributes(found[0], types).unwrap())
        })
        .unwrap()
}

#[test]
fn ringi_runs_on_a_kryoptic_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = kryoptic_token(&dir.path().join("kryoptic"), "kryoptic-node");
    let softhsm = common::tokens(dir.path(), &["softhsm-node"]).remove(0);

    // A wrong PIN is refused as such.
    let wrong = TokenConfig {
        module: config.module.clone(),
        token_label: config.token_label.clone(),
        pin: SecretString::from("not-the-pin"),
    };
    assert!(matches!(Token::open(&wrong), Err(TokenError::BadPin(_))));

    // Init: kryoptic makes no secp256k1 keys, so the node gets a P-256
    // transport key only; everything else as on SoftHSM2.
    let token = Arc::new(Token::open(&config).unwrap());
    assert!(matches!(
        token.require_keys(),
        Err(TokenError::NotInitialized(_))
    ));
    let done = token.initialize_keys().unwrap();
    assert_eq!(
        done.created,
        vec![
            KEK_LABEL,
            DKG_P256_KEY_LABEL,
            AUDIT_KEY_LABEL,
            TLS_KEY_LABEL
        ]
    );
    assert_eq!(
        done.unsupported.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        vec![TransportCurve::Secp256k1]
    );
    assert!(token.initialize_keys().unwrap().created.is_empty());
    token.require_keys().unwrap();
    let keys = token.dkg_public_keys().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].curve(), TransportCurve::P256);
    assert_eq!(token.dkg_public_key().unwrap(), keys[0]);
    assert!(!token.serial_number().unwrap().is_empty());

    // The attributes ringi sets are the ones kryoptic keeps.
    let kek = attributes(
        &token,
        ObjectClass::SECRET_KEY,
        KEK_LABEL,
        &[
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::AllowedMechanisms,
            AttributeType::Id,
        ],
    );
    assert!(kek.contains(&Attribute::Sensitive(true)));
    assert!(kek.contains(&Attribute::Extractable(false)));
    assert!(kek.contains(&Attribute::AllowedMechanisms(vec![MechanismType::AES_GCM])));
    assert_eq!(token.kek_id().unwrap().len(), 16);
    for (label, derive, sign) in [
        (DKG_P256_KEY_LABEL, true, false),
        (AUDIT_KEY_LABEL, false, true),
        (TLS_KEY_LABEL, false, true),
    ] {
        let private = attributes(
            &token,
            ObjectClass::PRIVATE_KEY,
            label,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Derive,
                AttributeType::Sign,
                AttributeType::Private,
            ],
        );
        for want in [
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Derive(derive),
            Attribute::Sign(sign),
            Attribute::Private(true),
        ] {
            assert!(private.contains(&want), "{label}: {want:?} in {private:?}");
        }
    }

    // AES-256-GCM under the KEK: round trip; a wrong tag or AAD is
    // TokenError::Unseal whatever code kryoptic answers it with.
    let mut iv = [0u8; GCM_IV_LEN];
    token.random(&mut iv).unwrap();
    let sealed = token.seal(&iv, b"aad", b"a share").unwrap();
    assert_eq!(sealed.len(), b"a share".len() + 16);
    assert_eq!(
        token.unseal(&iv, b"aad", &sealed).unwrap().as_slice(),
        b"a share"
    );
    let mut tampered = sealed.clone();
    tampered[0] ^= 1;
    assert!(matches!(
        token.unseal(&iv, b"aad", &tampered),
        Err(TokenError::Unseal)
    ));
    assert!(matches!(
        token.unseal(&iv, b"other aad", &sealed),
        Err(TokenError::Unseal)
    ));
    token.probe().unwrap();

    // Share objects: private CKO_DATA found by CKA_APPLICATION and label.
    token.store_share("k1", 0, b"sealed-0").unwrap();
    token.store_share("k1", 1, b"sealed-1").unwrap();
    assert!(matches!(
        token.store_share("k1", 0, b"again"),
        Err(TokenError::ShareExists(_))
    ));
    let mut shares: Vec<(String, Vec<u8>)> = token
        .load_shares()
        .unwrap()
        .into_iter()
        .map(|s| (s.key_id, s.sealed))
        .collect();
    shares.sort();
    assert_eq!(
        shares,
        vec![
            ("k1".to_string(), b"sealed-0".to_vec()),
            ("k1".to_string(), b"sealed-1".to_vec())
        ]
    );
    assert!(token.destroy_share("k1", 1).unwrap());
    assert!(!token.destroy_share("k1", 1).unwrap());
    assert_eq!(token.load_shares().unwrap().len(), 1);

    // ECDSA P-256 over a host SHA-256: the audit key's checkpoints verify.
    let audit = ApproverKey::from_sec1(&token.audit_public_key().unwrap()).unwrap();
    let signature = token.audit_sign(b"checkpoint").unwrap();
    assert!(audit.verify(b"checkpoint", &signature));
    assert!(!audit.verify(b"another checkpoint", &signature));
    // The TLS key signs a handshake's message (DER for rustls) and a CSR.
    let tls = TokenTlsKey::new(token.clone());
    let der = tls.sign(b"handshake").unwrap();
    let tls_public = ApproverKey::from_sec1(&token.tls_public_key().unwrap()).unwrap();
    let raw = p256::ecdsa::Signature::from_der(&der).unwrap().to_bytes();
    assert!(tls_public.verify(b"handshake", &raw));
    let csr = TokenCsrKey::new(token.clone())
        .unwrap()
        .csr_pem("kryoptic-node")
        .unwrap();
    assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));

    // ECDH across modules on P-256: kryoptic and SoftHSM2 derive the same
    // secret; the SoftHSM2 node's secp256k1 key is of no use to kryoptic.
    let softhsm_keys = softhsm.dkg_public_keys().unwrap();
    assert_eq!(
        softhsm_keys.iter().map(|k| k.curve()).collect::<Vec<_>>(),
        vec![TransportCurve::Secp256k1, TransportCurve::P256]
    );
    let kryoptic_key = token.dkg_public_key().unwrap();
    let here = token.dkg_shared_secret(&softhsm_keys[1]).unwrap();
    let there = softhsm.dkg_shared_secret(&kryoptic_key).unwrap();
    assert_eq!(here.len(), 32);
    assert_eq!(here.as_slice(), there.as_slice());
    assert!(matches!(
        token.dkg_shared_secret(&softhsm_keys[0]),
        Err(TokenError::NotInitialized(_))
    ));

    // A new login after the token "came back" works, and so does the work.
    token.recover().unwrap();
    assert_eq!(
        token.unseal(&iv, b"aad", &sealed).unwrap().as_slice(),
        b"a share"
    );
}
