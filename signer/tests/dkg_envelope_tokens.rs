//! Round-2 DKG packages sealed between two real SoftHSM2 tokens: the
//! recipient opens them; a third party with its own token (the coordinator's
//! position) and everything public cannot, and the ciphertext does not hold
//! the secret share.
//!
//! One test in this binary: it sets SOFTHSM2_CONF before PKCS#11 is
//! initialised, before any other thread runs.

use std::collections::BTreeMap;
use std::process::Command;

use frost_secp256k1::Identifier;
use frost_secp256k1::keys::dkg;
use rand::rngs::OsRng;
use ringi_signer::dkg_envelope::{self, Binding};
use ringi_signer::token::{Token, TokenConfig};
use secrecy::SecretString;

fn module() -> String {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("SoftHSM2 is installed (softhsm-setup/install-deps.sh)")
    .to_string()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn sealed_round2_packages_open_only_at_their_recipient() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tokens")).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            dir.path().join("tokens").display()
        ),
    )
    .unwrap();
    // SAFETY: single test in this binary; no other thread is running.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    // SoftHSM lists its slots once, at C_Initialize: create every token first.
    for label in ["node-a", "node-b", "relay"] {
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                "1234",
                "--so-pin",
                "5678",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let open = |label: &str| {
        let token = Token::open(&TokenConfig {
            module: module().into(),
            token_label: label.into(),
            pin: SecretString::from("1234"),
        })
        .unwrap();
        token.initialize_keys().unwrap();
        token
    };
    let (a, b, relay) = (open("node-a"), open("node-b"), open("relay"));
    let (a_pub, b_pub, relay_pub) = (
        a.dkg_public_key().unwrap(),
        b.dkg_public_key().unwrap(),
        relay.dkg_public_key().unwrap(),
    );

    // A real round-2 package from participant 1 to participant 2.
    let (id1, id2) = (
        Identifier::try_from(1).unwrap(),
        Identifier::try_from(2).unwrap(),
    );
    let (secret1, pkg1) = dkg::part1(id1, 2, 2, OsRng).unwrap();
    let (_secret2, pkg2) = dkg::part1(id2, 2, 2, OsRng).unwrap();
    let _ = pkg1;
    let (_, round2) = dkg::part2(secret1, &BTreeMap::from([(id2, pkg2)])).unwrap();
    let package = &round2[&id2];
    let plaintext = package.serialize().unwrap();
    let secret_share = package.signing_share().serialize();

    let session = [9u8; 16];
    let binding = |sender, recipient| Binding {
        key_id: "k",
        session_id: &session,
        sender,
        recipient,
    };
    let sealed = dkg_envelope::seal(
        &binding(1, 2),
        &a.dkg_shared_secret(&b_pub).unwrap(),
        &plaintext,
    )
    .unwrap();

    // The recipient opens it with its own token.
    let opened = dkg_envelope::open(
        &binding(1, 2),
        &b.dkg_shared_secret(&a_pub).unwrap(),
        &sealed,
    )
    .unwrap();
    assert_eq!(opened.as_slice(), plaintext.as_slice());

    // The ciphertext does not carry the share.
    assert!(!contains(&sealed, &secret_share));
    assert!(!contains(&sealed, &plaintext));

    // The relay, with its own token key and both public keys, cannot open it.
    for shared in [
        relay.dkg_shared_secret(&a_pub).unwrap(),
        relay.dkg_shared_secret(&b_pub).unwrap(),
    ] {
        assert!(dkg_envelope::open(&binding(1, 2), &shared, &sealed).is_err());
    }
    for public in [&a_pub, &b_pub, &relay_pub] {
        assert!(dkg_envelope::open(&binding(1, 2), &public[1..33], &sealed).is_err());
    }
    // A sender cannot be impersonated: the relay sealing in node A's name
    // produces something B refuses.
    let forged = dkg_envelope::seal(
        &binding(1, 2),
        &relay.dkg_shared_secret(&b_pub).unwrap(),
        &plaintext,
    )
    .unwrap();
    assert!(
        dkg_envelope::open(
            &binding(1, 2),
            &b.dkg_shared_secret(&a_pub).unwrap(),
            &forged
        )
        .is_err()
    );
}
