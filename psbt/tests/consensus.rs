//! A spend derived, signed by FROST (frost-secp256k1-tr, 2 of 3, tweaked
//! for the key path) and finalized here is valid under Bitcoin Core 26's
//! consensus code (libbitcoinconsensus, every flag including taproot, with
//! the spent outputs), for one and for two inputs; and a corrupted one is
//! not.

use std::collections::BTreeMap;

use bitcoin::consensus::encode::deserialize;
use bitcoin::{ScriptBuf, Transaction};
use frost_core::keys::{KeyPackage, PublicKeyPackage};
use rand::rngs::OsRng;
use ringi_frost::Suite;
use ringi_frost::taproot::{Secp256k1Tr, internal_key, output_key};
use ringi_psbt::build::{Coin, address_script, unsigned};
use ringi_psbt::{Network, OwnKey, derive, finalize};

type S = Secp256k1Tr;

fn dealer_key() -> (Vec<KeyPackage<S>>, PublicKeyPackage<S>) {
    let (shares, public) = frost_core::keys::generate_with_dealer::<S, _>(
        3,
        2,
        frost_core::keys::IdentifierList::Default,
        &mut OsRng,
    )
    .unwrap();
    let keys = shares
        .into_values()
        .map(|s| s.try_into().unwrap())
        .collect();
    (keys, public)
}

/// Two of the three shares sign `message` the way ringi's signers and
/// coordinator do (the suite's tweaked sign and aggregate).
fn frost_sign(keys: &[KeyPackage<S>], public: &PublicKeyPackage<S>, message: &[u8]) -> [u8; 64] {
    let signers = &keys[1..3];
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for k in signers {
        let (n, c) = frost_core::round1::commit(k.signing_share(), &mut OsRng);
        nonces.insert(*k.identifier(), n);
        commitments.insert(*k.identifier(), c);
    }
    let package = frost_core::SigningPackage::new(commitments, message);
    let shares = signers
        .iter()
        .map(|k| {
            (
                *k.identifier(),
                S::sign(&package, &nonces[k.identifier()], k).unwrap(),
            )
        })
        .collect();
    let signature = S::aggregate(&package, &shares, public).unwrap();
    signature.serialize().unwrap().try_into().unwrap()
}

fn spend(inputs: usize) {
    let (keys, public) = dealer_key();
    let key = OwnKey {
        internal_key: internal_key(&public).unwrap(),
        output_key: output_key(&public).unwrap(),
        network: Network::Regtest,
    };
    let coins: Vec<Coin> = (0..inputs)
        .map(|i| Coin::synthetic(0x11 + i as u8, i as u32, 60_000))
        .collect();
    // BIP-86's first receiving address on regtest would do as well; any
    // other key's P2TR address is a payment.
    let payee = address_script(
        "bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6",
        Network::Regtest,
    )
    .unwrap();
    let total = 60_000 * inputs as u64;
    let psbt = unsigned(
        &key,
        &coins,
        &[(payee, 25_000), (key.script(), total - 25_000 - 1_000)],
    )
    .serialize();
    let derived = derive(&psbt, &key, false).unwrap();
    assert_eq!(derived.total_paid(), 25_000);
    assert_eq!(derived.fee, 1_000);
    assert_eq!(derived.change.len(), 1);
    let signatures: Vec<[u8; 64]> = derived
        .sighashes
        .iter()
        .map(|m| frost_sign(&keys, &public, m))
        .collect();
    let done = finalize(&psbt, &key, false, &signatures).unwrap();
    let tx: Transaction = deserialize(&done.tx).unwrap();
    assert_eq!(tx.compute_txid().to_string(), derived.txid);
    assert_eq!(
        done.txid, derived.txid,
        "segwit: the txid is fixed before signing"
    );
    let spent: Vec<(ScriptBuf, u64)> = (0..inputs).map(|_| (key.script(), 60_000)).collect();
    ringi_psbt::consensus::verify(&done.tx, &spent).unwrap();
    assert_eq!(
        tx.vsize() as u64,
        derived.vsize,
        "the fee rate shown is the real one"
    );

    // One bit off in a signature: consensus refuses it.
    let mut corrupted = done.tx.clone();
    let mut tx: Transaction = deserialize(&corrupted).unwrap();
    let mut witness = tx.input[0].witness.to_vec();
    witness[0][10] ^= 1;
    tx.input[0].witness = bitcoin::Witness::from_slice(&witness);
    corrupted = bitcoin::consensus::encode::serialize(&tx);
    assert!(matches!(
        ringi_psbt::consensus::verify(&corrupted, &spent),
        Err(ringi_psbt::PsbtError::Consensus { input: 0, .. })
    ));
}

#[test]
fn a_one_input_spend_is_valid_under_bitcoin_core_consensus() {
    spend(1);
}

#[test]
fn a_two_input_spend_is_valid_under_bitcoin_core_consensus() {
    spend(2);
}

#[test]
fn finalize_refuses_a_signature_that_does_not_verify() {
    let (keys, public) = dealer_key();
    let key = OwnKey {
        internal_key: internal_key(&public).unwrap(),
        output_key: output_key(&public).unwrap(),
        network: Network::Regtest,
    };
    let psbt = unsigned(
        &key,
        &[Coin::synthetic(1, 0, 50_000)],
        &[(key.script(), 49_000)],
    )
    .serialize();
    let wrong = frost_sign(&keys, &public, &[7u8; 32]);
    assert_eq!(
        finalize(&psbt, &key, false, &[wrong]),
        Err(ringi_psbt::PsbtError::BadSignature { input: 0 })
    );
    assert!(matches!(
        finalize(&psbt, &key, false, &[]),
        Err(ringi_psbt::PsbtError::SignatureCount {
            given: 0,
            inputs: 1
        })
    ));
}
