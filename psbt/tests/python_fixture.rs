//! The PSBT the Python wallet example builds with embit
//! (examples/python/psbt_builder.py; regenerated and checked byte for byte
//! by examples/python/test_psbt_builder.py) is one ringi derives, with the
//! payments, change, fee, txid and sighashes the Python side computed
//! independently (embit's `Transaction.txid` and `sighash_taproot`).

use ringi_psbt::{Network, OwnKey, SighashChoice, derive};

/// Two coins of BIP-86's first receiving key (60,000 + 40,000 sat) paying
/// 25,000 to a P2TR and 30,000 to a P2WPKH address, 1,500 fee, 43,500
/// back as change (FIXTURE_ARGS in test_psbt_builder.py).
const PSBT: &[u8] = include_bytes!("fixtures/python_embit_spend.psbt");

fn bip86_key() -> OwnKey {
    let hex32 = |s: &str| -> [u8; 32] { hex::decode(s).unwrap().try_into().unwrap() };
    OwnKey {
        internal_key: hex32("cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115"),
        output_key: hex32("a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c"),
        network: Network::Regtest,
    }
}

#[test]
fn ringi_derives_the_python_wallets_psbt() {
    let key = bip86_key();
    let derived = derive(PSBT, &key, false).unwrap();
    let payments: Vec<(usize, &str, u64)> = derived
        .payments
        .iter()
        .map(|p| (p.index, p.address.as_str(), p.value))
        .collect();
    assert_eq!(
        payments,
        [
            (
                0,
                "bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6",
                25_000
            ),
            (1, "bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9", 30_000),
        ]
    );
    assert_eq!(derived.change.len(), 1);
    assert_eq!(derived.change[0].index, 2);
    assert_eq!(derived.change[0].value, 43_500);
    assert_eq!(derived.change[0].address, key.address());
    assert_eq!(derived.total_paid(), 55_000);
    assert_eq!(derived.fee, 1_500);
    let inputs: Vec<(&str, u64, SighashChoice)> = derived
        .inputs
        .iter()
        .map(|i| (i.outpoint.as_str(), i.value, i.sighash))
        .collect();
    let a = format!("{}:0", "a1".repeat(32));
    let b = format!("{}:1", "b2".repeat(32));
    assert_eq!(
        inputs,
        [
            (a.as_str(), 60_000, SighashChoice::Default),
            (b.as_str(), 40_000, SighashChoice::Default),
        ]
    );
    // embit's txid and BIP-341 sighashes of the same transaction.
    assert_eq!(
        derived.txid,
        "3aa4bf4df982b4ac77da865b74e35365bad7e0b6fe3179182b50f8d8394de07c"
    );
    assert_eq!(
        derived
            .sighashes
            .iter()
            .map(hex::encode)
            .collect::<Vec<_>>(),
        [
            "5f6bca48275d00224a6555eec4e747f1a51c3a250c203af6d542cda16d2d5665",
            "d22d82a622fd8aa75017c474bd6bd1c05654713f81502a5029209d0218fe2a85",
        ]
    );
}

/// The same PSBT is another key's spend: refused, naming input 0.
#[test]
fn the_python_wallets_psbt_is_not_another_keys() {
    let mut other = bip86_key();
    other.output_key[31] ^= 1;
    let err = derive(PSBT, &other, false).unwrap_err();
    assert!(matches!(
        err,
        ringi_psbt::PsbtError::ForeignInput { input: 0, .. }
    ));
}
