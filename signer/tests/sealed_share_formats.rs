//! Sealed-share formats in a real SoftHSM2 token: a share sealed in
//! version 1 (before key kinds) still unseals and signs; new shares are
//! sealed in version 3 with their kind, generation and public package; a version-1 blob relabelled as
//! another kind is not served by this suite's vault and does not unseal in
//! the other suite's.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use frost_core::SigningPackage;
use frost_core::keys::{IdentifierList, KeyPackage};
use rand_core::{OsRng, RngCore};
use ringi_frost::taproot::Secp256k1Tr;
use ringi_frost::{KeyKind, Secp256k1, Suite};
use ringi_policy::key_id::KeyId;
use ringi_signer::sealed_share::{self, Format, SealedShare, ShareHeader};
use ringi_signer::vault::{ShareVault, TokenVault, VaultError};

#[test]
fn version_1_shares_still_sign_and_kinds_are_bound() {
    let dir = tempfile::tempdir().unwrap();
    let token = Arc::new(common::tokens(dir.path(), &["formats"]).remove(0));
    let kek_id = token.kek_id().unwrap();

    // A 2-of-3 key; participant 1's share goes into the token.
    let (shares, public) = frost_core::keys::generate_with_dealer::<Secp256k1, _>(
        3,
        2,
        IdentifierList::Default,
        &mut OsRng,
    )
    .unwrap();
    let id = |n: u16| ringi_frost::identifier::<Secp256k1>(n).unwrap();
    let key = |n: u16| KeyPackage::try_from(shares[&id(n)].clone()).unwrap();
    let group_key: [u8; 33] = public
        .verifying_key()
        .serialize()
        .unwrap()
        .try_into()
        .unwrap();

    // Sealed as a node did before key kinds: version 1 header and AAD.
    let header = ShareHeader {
        format: Format::V1,
        identifier: 1,
        group_key,
        generation: 0,
        public_key_package: Vec::new(),
    };
    let mut iv = [0u8; 12];
    OsRng.fill_bytes(&mut iv);
    let aad = sealed_share::aad("legacy", &header, &kek_id);
    let plaintext = key(1).serialize().unwrap();
    let ciphertext = token.seal(&iv, &aad, &plaintext).unwrap();
    let legacy = SealedShare {
        header,
        iv,
        ciphertext,
    };
    let legacy_bytes = legacy.encode().unwrap();
    assert_eq!(legacy_bytes[0], 1, "a version-1 blob");
    token.store_share("legacy", 0, &legacy_bytes).unwrap();

    // The same blob relabelled as a taproot share (version 2).
    let relabelled = SealedShare {
        header: ShareHeader::new(KeyKind::BitcoinTaproot, 1, group_key, 0, Vec::new()),
        ..legacy.clone()
    };
    token
        .store_share("relabelled", 0, &relabelled.encode().unwrap())
        .unwrap();

    // A new share through the vault: version 3, kind frost-secp256k1,
    // generation 0, with the key's public package.
    let vault = TokenVault::<Secp256k1>::open(token.clone()).unwrap();
    let fresh = KeyId::parse("fresh").unwrap();
    vault.store(&fresh, 1, &key(1), &public).unwrap();
    let stored = token.load_shares().unwrap();
    let fresh_blob = stored.iter().find(|s| s.key_id == "fresh").unwrap();
    assert_eq!(
        SealedShare::decode(&fresh_blob.sealed)
            .unwrap()
            .header
            .format,
        Format::V3(KeyKind::FrostSecp256k1)
    );
    let fresh_info = vault.info("fresh").unwrap();
    assert_eq!(fresh_info.generation, 0);
    assert_eq!(fresh_info.public_key_package, public.serialize().unwrap());

    // Reopened, the RFC 9591 vault serves the legacy and the fresh share,
    // not the one labelled taproot.
    let vault = TokenVault::<Secp256k1>::open(token.clone()).unwrap();
    let held: Vec<String> = vault.shares().into_iter().map(|s| s.key_id).collect();
    assert_eq!(held, vec!["fresh".to_string(), "legacy".to_string()]);

    // The version-1 share unseals and signs: with participant 2 (in
    // process) the shares aggregate to a signature under the group key.
    for key_id in ["legacy", "fresh"] {
        let key_id = KeyId::parse(key_id).unwrap();
        let (number, own) = vault.commit(&key_id).unwrap();
        assert_eq!(number, 1);
        let (nonces2, commitments2) =
            frost_core::round1::commit(key(2).signing_share(), &mut OsRng);
        let package = SigningPackage::new(
            BTreeMap::from([(id(1), own), (id(2), commitments2)]),
            b"signed with a sealed share",
        );
        let share1 = vault.sign(&key_id, &package).unwrap();
        let share2 = Secp256k1::sign(&package, &nonces2, &key(2)).unwrap();
        let signature = Secp256k1::aggregate(
            &package,
            &BTreeMap::from([(id(1), share1), (id(2), share2)]),
            &public,
        )
        .unwrap();
        public
            .verifying_key()
            .verify(b"signed with a sealed share", &signature)
            .unwrap();
    }

    // The taproot suite's vault over the same token serves only the
    // relabelled blob, and it does not unseal: the AAD binds format and kind.
    let taproot = TokenVault::<Secp256k1Tr>::open(token.clone()).unwrap();
    let held: Vec<String> = taproot.shares().into_iter().map(|s| s.key_id).collect();
    assert_eq!(held, vec!["relabelled".to_string()]);
    let err = taproot
        .commit(&KeyId::parse("relabelled").unwrap())
        .unwrap_err();
    assert!(
        matches!(err, VaultError::Token(_) | VaultError::Corrupt { .. }),
        "{err}"
    );
}
