//! After a real DKG, read a signer's token back with independent PKCS#11
//! clients (pkcs11-tool from opensc, and cryptoki directly) and show that no
//! plaintext share is stored: the KEK is sensitive and non-extractable, the
//! share object holds only ciphertext, and the share's bytes appear in no
//! file of the token directory.
//!
//! One test in this binary: it sets SOFTHSM2_CONF for this process before
//! PKCS#11 is initialised, which must happen before any other thread runs.

mod support;

use std::process::Command;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use ringi_signer::sealed_share::{self, SealedShare};
use support::*;

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_token_holds_no_plaintext_share() {
    let mut cluster = Cluster::start(3);
    let group_key = cluster.keygen("hot", 2, &["signer-1", "signer-2", "signer-3"]);
    cluster.stop_coordinator();
    cluster.signers[0].stop();
    let node = &cluster.signers[0];
    let pin = node.pin();

    // 1. pkcs11-tool's view.
    let listing = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", node.dir.join("softhsm2.conf"))
        .args([
            "--module",
            &node.module(),
            "--token-label",
            "signer-1",
            "--login",
            "--pin",
            &pin,
            "--list-objects",
        ])
        .output()
        .unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout);
    let kek = pkcs11_object(&listing, "Secret Key Object", "ringi-share-kek");
    assert!(
        kek.contains("ringi-share-kek") && kek.contains("AES length 32"),
        "{listing}"
    );
    assert!(
        kek.contains("sensitive") && kek.contains("never extractable"),
        "{listing}"
    );
    assert!(listing.contains("ringi-share:hot"), "{listing}");

    // 2. cryptoki's view, in this process.
    // SAFETY: this binary runs a single test and no other thread has
    // started yet touching the environment.
    unsafe { std::env::set_var("SOFTHSM2_CONF", node.dir.join("softhsm2.conf")) };
    let ctx = Pkcs11::new(node.module()).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == "signer-1")
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    session
        .login(UserType::User, Some(&pin.clone().into()))
        .unwrap();

    let kek = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"ringi-share-kek".to_vec()),
        ])
        .unwrap()[0];
    assert!(matches!(
        session
            .get_attribute_info(kek, &[AttributeType::Value])
            .unwrap()[..],
        [AttributeInfo::Sensitive]
    ));
    let flags = session
        .get_attributes(
            kek,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Token,
                AttributeType::Id,
            ],
        )
        .unwrap();
    assert!(flags.contains(&Attribute::Sensitive(true)));
    assert!(flags.contains(&Attribute::Extractable(false)));
    assert!(flags.contains(&Attribute::Token(true)));
    let kek_id = flags
        .iter()
        .find_map(|a| {
            if let Attribute::Id(id) = a {
                Some(id.clone())
            } else {
                None
            }
        })
        .unwrap();
    let dkg_private = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"ringi-dkg-transport".to_vec()),
        ])
        .unwrap()[0];
    assert!(matches!(
        session
            .get_attribute_info(dkg_private, &[AttributeType::Value])
            .unwrap()[..],
        [AttributeInfo::Sensitive]
    ));

    // Every data object on the token, read back.
    let data_objects = session
        .find_objects(&[Attribute::Class(ObjectClass::DATA)])
        .unwrap();
    assert_eq!(data_objects.len(), 1, "one sealed share, nothing else");
    let stored = match &session
        .get_attributes(data_objects[0], &[AttributeType::Value])
        .unwrap()[0]
    {
        Attribute::Value(v) => v.clone(),
        other => panic!("{other:?}"),
    };

    // Unseal it the way the node does (C_Decrypt in the token with the PIN),
    // to learn the plaintext the files must not contain.
    let sealed = SealedShare::decode(&stored).unwrap();
    assert_eq!(&sealed.header.group_key[..], &group_key[..]);
    let aad = sealed_share::aad("hot", &sealed.header, &kek_id);
    let mut iv = sealed.iv;
    let plaintext = session
        .decrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut iv, &aad, 128.into()).unwrap()),
            kek,
            &sealed.ciphertext,
        )
        .unwrap();
    let key_package = frost_secp256k1::keys::KeyPackage::deserialize(&plaintext).unwrap();
    assert_eq!(key_package.verifying_key().serialize().unwrap(), group_key);
    let share = key_package.signing_share().serialize();
    assert_eq!(share.len(), 32);

    // The same blob under another key id's AAD does not unseal.
    let wrong_aad = sealed_share::aad("other", &sealed.header, &kek_id);
    let mut iv = sealed.iv;
    assert!(
        session
            .decrypt(
                &Mechanism::AesGcm(GcmParams::new(&mut iv, &wrong_aad, 128.into()).unwrap()),
                kek,
                &sealed.ciphertext
            )
            .is_err()
    );

    assert!(
        !contains(&stored, &share),
        "the stored object holds the share in plaintext"
    );
    let files = files_under(&node.dir.join("tokens"));
    assert!(!files.is_empty());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, &share),
            "{} contains the plaintext share",
            file.display()
        );
        assert!(
            !contains(&bytes, &plaintext),
            "{} contains the plaintext key package",
            file.display()
        );
    }
}
