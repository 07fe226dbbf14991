//! A refreshed share in a real SoftHSM2 token: stored next to the share in
//! use, which keeps signing; the pair survives a restart (reopening the
//! vault); activation destroys the old object, and from then the refreshed
//! share signs; a waiting share can be discarded, the share in use cannot.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use frost_core::SigningPackage;
use frost_core::keys::{IdentifierList, KeyPackage, PublicKeyPackage};
use rand_core::OsRng;
use ringi_frost::{Secp256k1, Suite};
use ringi_policy::key_id::KeyId;
use ringi_signer::vault::{Activation, ShareVault, TokenVault, VaultError};

type Key = KeyPackage<Secp256k1>;

/// Participant 1 signs with `vault`, participant 2 in process with
/// `other`; the aggregate must verify under `public`.
fn signs(
    vault: &TokenVault<Secp256k1>,
    key_id: &KeyId,
    other: &Key,
    public: &PublicKeyPackage<Secp256k1>,
    message: &[u8],
) -> bool {
    let id = |n: u16| ringi_frost::identifier::<Secp256k1>(n).unwrap();
    let (_, own) = vault.commit(key_id).unwrap();
    let (nonces2, commitments2) = frost_core::round1::commit(other.signing_share(), &mut OsRng);
    let package = SigningPackage::new(
        BTreeMap::from([(id(1), own), (id(2), commitments2)]),
        message,
    );
    let share1 = vault.sign(key_id, &package).unwrap();
    let share2 = Secp256k1::sign(&package, &nonces2, other).unwrap();
    Secp256k1::aggregate(
        &package,
        &BTreeMap::from([(id(1), share1), (id(2), share2)]),
        public,
    )
    .is_ok()
}

#[test]
fn a_refreshed_share_waits_next_to_the_old_one_until_activated() {
    let dir = tempfile::tempdir().unwrap();
    let token = Arc::new(common::tokens(dir.path(), &["generations"]).remove(0));
    let id = |n: u16| ringi_frost::identifier::<Secp256k1>(n).unwrap();
    let (shares, public) = frost_core::keys::generate_with_dealer::<Secp256k1, _>(
        3,
        2,
        IdentifierList::Default,
        &mut OsRng,
    )
    .unwrap();
    let old = |n: u16| Key::try_from(shares[&id(n)].clone()).unwrap();
    // A refresh computed in process (frost's trusted-dealer refresh): what
    // the refresh DKG gives each node.
    let refresh = |public: &PublicKeyPackage<Secp256k1>, current: [&Key; 3]| {
        let (zero_shares, new_public) = frost_core::keys::refresh::compute_refreshing_shares(
            public.clone(),
            &[id(1), id(2), id(3)],
            &mut OsRng,
        )
        .unwrap();
        let new: Vec<Key> = zero_shares
            .into_iter()
            .zip(current)
            .map(|(z, k)| {
                let refreshed = frost_core::keys::refresh::refresh_share(z, k).unwrap();
                // frost's dealer refresh keeps the old verifying share in
                // the package (the DKG refresh does not); the vault refuses
                // such a package, so rebuild it as the DKG would.
                Key::new(
                    *refreshed.identifier(),
                    *refreshed.signing_share(),
                    (*refreshed.signing_share()).into(),
                    *refreshed.verifying_key(),
                    *refreshed.min_signers(),
                )
            })
            .collect();
        (new, new_public)
    };
    let (new, new_public) = refresh(&public, [&old(1), &old(2), &old(3)]);
    let k = KeyId::parse("k").unwrap();

    let vault = TokenVault::<Secp256k1>::open(token.clone()).unwrap();
    vault.store(&k, 1, &old(1), &public).unwrap();
    let info = vault.store_next(&k, &new[0], &new_public).unwrap();
    assert_eq!((info.generation, info.pending_generation), (0, Some(1)));
    assert!(matches!(
        vault.store_next(&k, &new[0], &new_public),
        Err(VaultError::RefreshPending { pending: 1, .. })
    ));
    // The share in use is still the old one.
    assert!(signs(&vault, &k, &old(2), &public, b"before activation"));

    // A restart keeps both, and still signs with the old.
    let vault = TokenVault::<Secp256k1>::open(token.clone()).unwrap();
    let info = vault.info("k").unwrap();
    assert_eq!((info.generation, info.pending_generation), (0, Some(1)));
    assert_eq!(info.public_key_package, public.serialize().unwrap());
    assert_eq!(
        token
            .load_shares()
            .unwrap()
            .iter()
            .filter(|s| s.key_id == "k")
            .count(),
        2
    );
    assert!(signs(&vault, &k, &old(2), &public, b"after a restart"));
    assert!(matches!(
        vault.activate(&k, 7),
        Err(VaultError::NoSuchGeneration { asked: 7, .. })
    ));

    // Activation: the old object is destroyed, the refreshed share signs,
    // and the old share no longer combines with a refreshed one.
    assert_eq!(
        vault.activate(&k, 1).unwrap(),
        Activation::Activated { retired: 0 }
    );
    assert_eq!(vault.activate(&k, 1).unwrap(), Activation::AlreadyActive);
    assert_eq!(
        token
            .load_shares()
            .unwrap()
            .iter()
            .filter(|s| s.key_id == "k")
            .count(),
        1
    );
    let vault = TokenVault::<Secp256k1>::open(token.clone()).unwrap();
    let info = vault.info("k").unwrap();
    assert_eq!((info.generation, info.pending_generation), (1, None));
    assert_eq!(info.public_key_package, new_public.serialize().unwrap());
    assert!(signs(&vault, &k, &new[1], &new_public, b"refreshed"));
    assert!(!signs(&vault, &k, &old(2), &public, b"mixed generations"));
    assert!(!signs(
        &vault,
        &k,
        &old(2),
        &new_public,
        b"mixed generations"
    ));

    // Discarding: never the share in use; a waiting one, once.
    assert!(matches!(
        vault.discard(&k, 1),
        Err(VaultError::DiscardInUse { generation: 1, .. })
    ));
    let (newer, newer_public) = refresh(&new_public, [&new[0], &new[1], &new[2]]);
    let info = vault.store_next(&k, &newer[0], &newer_public).unwrap();
    assert_eq!(info.pending_generation, Some(2));
    assert!(vault.discard(&k, 2).unwrap());
    assert!(!vault.discard(&k, 2).unwrap());
    let vault = TokenVault::<Secp256k1>::open(token.clone()).unwrap();
    let info = vault.info("k").unwrap();
    assert_eq!((info.generation, info.pending_generation), (1, None));

    // A share of another key is refused as a refresh.
    let (other_shares, other_public) = frost_core::keys::generate_with_dealer::<Secp256k1, _>(
        3,
        2,
        IdentifierList::Default,
        &mut OsRng,
    )
    .unwrap();
    let stranger = Key::try_from(other_shares[&id(1)].clone()).unwrap();
    assert!(matches!(
        vault.store_next(&k, &stranger, &other_public),
        Err(VaultError::Corrupt { .. })
    ));
    // A public package that does not match the share is refused too.
    assert!(matches!(
        vault.store_next(&k, &newer[0], &public),
        Err(VaultError::Corrupt { .. })
    ));

    // Destroying (a retired key's end) removes every generation, waiting
    // ones included, for good; again, there is nothing left to destroy.
    vault.store_next(&k, &newer[0], &newer_public).unwrap();
    assert_eq!(vault.destroy(&k).unwrap(), vec![2, 1]);
    assert!(vault.destroy(&k).unwrap().is_empty());
    assert!(token.load_shares().unwrap().iter().all(|s| s.key_id != "k"));
    let vault = TokenVault::<Secp256k1>::open(token.clone()).unwrap();
    assert!(!vault.contains("k"));
    assert!(matches!(vault.commit(&k), Err(VaultError::UnknownKey(_))));
}
