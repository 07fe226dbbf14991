//! Round-2 DKG packages sealed between two real SoftHSM2 tokens: the
//! recipient opens them; a third party with its own token (the coordinator's
//! position) and everything public cannot, and the ciphertext does not hold
//! the secret share.
//!
//! One test in this binary: it sets SOFTHSM2_CONF before PKCS#11 is
//! initialised, before any other thread runs.

mod common;

use std::collections::BTreeMap;

use frost_core::keys::dkg;
use rand::rngs::OsRng;
use ringi_frost::{Secp256k1, identifier};
use ringi_signer::dkg_envelope::{self, Binding, Contents};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn sealed_round2_packages_open_only_at_their_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let mut tokens = common::tokens(dir.path(), &["node-a", "node-b", "relay"]).into_iter();
    let (a, b, relay) = (
        tokens.next().unwrap(),
        tokens.next().unwrap(),
        tokens.next().unwrap(),
    );
    let (a_pub, b_pub, relay_pub) = (
        a.dkg_public_key().unwrap(),
        b.dkg_public_key().unwrap(),
        relay.dkg_public_key().unwrap(),
    );

    // A real round-2 package from participant 1 to participant 2.
    let (id1, id2) = (
        identifier::<Secp256k1>(1).unwrap(),
        identifier::<Secp256k1>(2).unwrap(),
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
        contents: Contents::DkgRound2,
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
        assert!(dkg_envelope::open(&binding(1, 2), &public.point()[1..33], &sealed).is_err());
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
