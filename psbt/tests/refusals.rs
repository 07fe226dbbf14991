//! Every refusal of `derive` (psbt/src/derive.rs, rules 1-6), one test per
//! `PsbtError` variant it can return: the exact variant, and a message that
//! names the input or output at fault. Then what it derives from PSBTs it
//! accepts, checked against independent computations: the payments/change
//! split, the fee, the txid, each sighash (rust-bitcoin's `SighashCache`
//! called here, not through derive), and the vsize of the transaction
//! actually signed (a plain BIP-340 key, not FROST: consensus.rs does FROST)
//! and accepted by libbitcoinconsensus.
//!
//! Two variants cannot come out of `derive` on any bytes, and the tests say
//! why: `Version` (rust-bitcoin refuses a non-zero PSBT_GLOBAL_VERSION while
//! decoding, so it is a `Decode`) and `Sighash` (every input it could fail
//! on is refused before: NONE and SINGLE never reach the sighash, and the
//! prevouts always number the inputs).

use bitcoin::consensus::encode::deserialize;
use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, TapTweak, TweakedPublicKey};
use bitcoin::psbt::{Psbt, PsbtSighashType, raw};
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{ControlBlock, LeafVersion, TapLeafHash, TapNodeHash};
use bitcoin::{
    Amount, EcdsaSighashType, PubkeyHash, ScriptBuf, Transaction, TxOut, WPubkeyHash, Witness,
    XOnlyPublicKey,
};
use ringi_psbt::build::{Coin, address_script, unsigned};
use ringi_psbt::{
    Derived, MAX_INPUTS, MAX_PSBT_BYTES, Network, OwnKey, PsbtError, SighashChoice, derive,
    finalize,
};

/// A single-party Taproot key from a fixed secret: its tweaked keypair
/// signs (BIP-86 key path), its `OwnKey` is what derive checks against.
struct TestKey {
    tweaked: Keypair,
    own: OwnKey,
}

fn test_key(secret: u8, network: Network) -> TestKey {
    let secp = Secp256k1::new();
    let keypair = Keypair::from_seckey_slice(&secp, &[secret; 32]).unwrap();
    let (internal, _) = keypair.x_only_public_key();
    let tweaked = keypair.tap_tweak(&secp, None).to_keypair();
    let (output, _) = tweaked.x_only_public_key();
    TestKey {
        tweaked,
        own: OwnKey {
            internal_key: internal.serialize(),
            output_key: output.serialize(),
            network,
        },
    }
}

fn key() -> TestKey {
    test_key(0x11, Network::Regtest)
}

/// Another key's P2TR script: a payee, or a foreign input.
fn other_p2tr() -> ScriptBuf {
    test_key(0x22, Network::Regtest).own.script()
}

fn p2wpkh() -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([0x33; 20]))
}

fn p2pkh() -> ScriptBuf {
    ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array([0x44; 20]))
}

fn sign(key: &TestKey, sighash: &[u8; 32]) -> [u8; 64] {
    Secp256k1::new()
        .sign_schnorr_no_aux_rand(&Message::from_digest(*sighash), &key.tweaked)
        .serialize()
}

/// Two inputs of `key` (60,000 and 40,000 sat) paying 25,000 to another
/// P2TR key and 70,000 back as change: a fee of 5,000.
fn two_inputs(key: &TestKey) -> Psbt {
    unsigned(
        &key.own,
        &[
            Coin::synthetic(0xa1, 0, 60_000),
            Coin::synthetic(0xa2, 3, 40_000),
        ],
        &[(other_p2tr(), 25_000), (key.own.script(), 70_000)],
    )
}

fn refusal(psbt: &Psbt, key: &TestKey, allow_all: bool) -> PsbtError {
    match derive(&psbt.serialize(), &key.own, allow_all) {
        Ok(d) => panic!("derived, not refused: {d:?}"),
        Err(e) => e,
    }
}

/// `psbt` altered by `edit` on its input 1 is refused with `expected`,
/// whose message names input 1.
fn input_1_refused(edit: impl FnOnce(&mut bitcoin::psbt::Input), expected: PsbtError) {
    let key = key();
    let mut psbt = two_inputs(&key);
    edit(&mut psbt.inputs[1]);
    let err = refusal(&psbt, &key, true);
    assert_eq!(err, expected);
    assert!(err.to_string().starts_with("input 1: "), "{err}");
}

#[test]
fn too_large() {
    let key = key();
    let err = derive(&vec![0u8; MAX_PSBT_BYTES + 1], &key.own, false).unwrap_err();
    assert_eq!(
        err,
        PsbtError::TooLarge {
            size: MAX_PSBT_BYTES + 1,
            max: MAX_PSBT_BYTES
        }
    );
    assert!(err.to_string().contains("800001 bytes"), "{err}");
    // At the limit it is decoded (and these bytes do not decode).
    assert!(matches!(
        derive(&vec![0u8; MAX_PSBT_BYTES], &key.own, false),
        Err(PsbtError::Decode(_))
    ));
}

#[test]
fn undecodable() {
    let key = key();
    let valid = two_inputs(&key).serialize();
    for bytes in [
        b"".to_vec(),
        b"not a psbt".to_vec(),
        // The base64 text form: derive takes the binary one.
        two_inputs(&key).to_string().into_bytes(),
        valid[..valid.len() - 1].to_vec(),
        valid[..valid.len() / 2].to_vec(),
    ] {
        let err = derive(&bytes, &key.own, false).unwrap_err();
        assert!(matches!(err, PsbtError::Decode(_)), "{err:?}");
        assert!(err.to_string().starts_with("the PSBT does not decode"));
    }
}

/// `PsbtError::Version` is defence in depth: a version other than 0 is
/// already a decoding error in rust-bitcoin (BIP-174: a parser must refuse
/// versions it does not know), so derive reports `Decode` naming it.
#[test]
fn version_2_does_not_decode() {
    let key = key();
    let mut psbt = two_inputs(&key);
    psbt.version = 2;
    let err = refusal(&psbt, &key, false);
    let PsbtError::Decode(reason) = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("version"), "{reason}");
}

#[test]
fn unknown_global_field() {
    let key = key();
    let mut psbt = two_inputs(&key);
    // BIP-370's PSBT_GLOBAL_TX_VERSION in a version-0 PSBT: a v2 field that
    // a v0 parser would silently ignore.
    psbt.unknown.insert(
        raw::Key {
            type_value: 0x02,
            key: vec![],
        },
        vec![2, 0, 0, 0],
    );
    let err = refusal(&psbt, &key, false);
    assert_eq!(err, PsbtError::UnknownGlobalFields(1));
    assert!(err.to_string().contains("1 unknown global field"), "{err}");

    // Proprietary fields are ignorable by definition.
    let mut psbt = two_inputs(&key);
    psbt.proprietary.insert(
        raw::ProprietaryKey {
            prefix: b"wallet".to_vec(),
            subtype: 1,
            key: vec![],
        },
        b"order-42".to_vec(),
    );
    derive(&psbt.serialize(), &key.own, false).unwrap();
}

#[test]
fn no_inputs() {
    let key = key();
    let psbt = unsigned(&key.own, &[], &[(other_p2tr(), 25_000)]);
    let err = refusal(&psbt, &key, false);
    assert_eq!(err, PsbtError::NoInputs);
    assert_eq!(err.to_string(), "the transaction has no inputs");
}

#[test]
fn no_outputs() {
    let key = key();
    let psbt = unsigned(&key.own, &[Coin::synthetic(1, 0, 50_000)], &[]);
    let err = refusal(&psbt, &key, false);
    assert_eq!(err, PsbtError::NoOutputs);
    assert_eq!(err.to_string(), "the transaction has no outputs");
}

#[test]
fn too_many_inputs() {
    let key = key();
    let coins = |n: usize| -> Vec<Coin> {
        (0..n)
            .map(|i| Coin::synthetic((i % 251) as u8, i as u32, 10_000))
            .collect()
    };
    let psbt = unsigned(&key.own, &coins(MAX_INPUTS + 1), &[(other_p2tr(), 25_000)]);
    let err = refusal(&psbt, &key, false);
    assert_eq!(
        err,
        PsbtError::TooManyInputs {
            count: MAX_INPUTS + 1,
            max: MAX_INPUTS
        }
    );
    assert!(err.to_string().contains("257 inputs"), "{err}");
    // The limit itself is signable.
    let psbt = unsigned(&key.own, &coins(MAX_INPUTS), &[(other_p2tr(), 25_000)]);
    let derived = derive(&psbt.serialize(), &key.own, false).unwrap();
    assert_eq!(derived.sighashes.len(), MAX_INPUTS);
}

#[test]
fn missing_witness_utxo() {
    input_1_refused(
        |input| input.witness_utxo = None,
        PsbtError::MissingWitnessUtxo { input: 1 },
    );
    // A full previous transaction instead does not do: for a P2TR input
    // the witness UTXO is what the sighash commits to.
    input_1_refused(
        |input| {
            let prev = Transaction {
                version: bitcoin::transaction::Version::TWO,
                lock_time: bitcoin::absolute::LockTime::ZERO,
                input: vec![],
                output: vec![input.witness_utxo.take().unwrap()],
            };
            input.non_witness_utxo = Some(prev);
        },
        PsbtError::MissingWitnessUtxo { input: 1 },
    );
}

#[test]
fn foreign_input() {
    let own = hex::encode(key().own.script().as_bytes());
    for script in [other_p2tr(), p2wpkh(), p2pkh()] {
        let hex_script = hex::encode(script.as_bytes());
        input_1_refused(
            |input| input.witness_utxo.as_mut().unwrap().script_pubkey = script,
            PsbtError::ForeignInput {
                input: 1,
                script: hex_script,
                own: own.clone(),
            },
        );
    }
}

#[test]
fn wrong_tap_internal_key() {
    let other =
        XOnlyPublicKey::from_slice(&test_key(0x22, Network::Regtest).own.internal_key).unwrap();
    input_1_refused(
        |input| input.tap_internal_key = Some(other),
        PsbtError::WrongInternalKey {
            input: 1,
            found: hex::encode(other.serialize()),
            own: hex::encode(key().own.internal_key),
        },
    );
    // Absent is fine: the script already says whose output it is.
    let key = key();
    let mut psbt = two_inputs(&key);
    psbt.inputs[1].tap_internal_key = None;
    derive(&psbt.serialize(), &key.own, false).unwrap();
}

#[test]
fn script_path_data() {
    input_1_refused(
        |input| input.tap_merkle_root = Some(TapNodeHash::from_byte_array([7; 32])),
        PsbtError::NotKeyPath {
            input: 1,
            what: "tap_merkle_root",
        },
    );
    input_1_refused(
        |input| {
            let mut control = vec![0xc0];
            control.extend_from_slice(&key().own.internal_key);
            input.tap_scripts.insert(
                ControlBlock::decode(&control).unwrap(),
                (ScriptBuf::from_bytes(vec![0x51]), LeafVersion::TapScript),
            );
        },
        PsbtError::NotKeyPath {
            input: 1,
            what: "tap_leaf_script",
        },
    );
    input_1_refused(
        |input| input.redeem_script = Some(p2wpkh()),
        PsbtError::NotKeyPath {
            input: 1,
            what: "a redeem or witness script",
        },
    );
    input_1_refused(
        |input| input.witness_script = Some(ScriptBuf::from_bytes(vec![0x51])),
        PsbtError::NotKeyPath {
            input: 1,
            what: "a redeem or witness script",
        },
    );
}

#[test]
fn already_signed_or_finalized() {
    let sig64 = bitcoin::secp256k1::schnorr::Signature::from_slice(&[9; 64]).unwrap();
    input_1_refused(
        |input| input.final_script_witness = Some(Witness::from_slice(&[vec![1u8; 64]])),
        PsbtError::AlreadySigned {
            input: 1,
            what: "finalized",
        },
    );
    input_1_refused(
        |input| input.final_script_sig = Some(ScriptBuf::from_bytes(vec![0x51])),
        PsbtError::AlreadySigned {
            input: 1,
            what: "finalized",
        },
    );
    input_1_refused(
        |input| {
            input.tap_key_sig = Some(bitcoin::taproot::Signature {
                signature: sig64,
                sighash_type: TapSighashType::Default,
            })
        },
        PsbtError::AlreadySigned {
            input: 1,
            what: "signed",
        },
    );
    input_1_refused(
        |input| {
            let x = XOnlyPublicKey::from_slice(&key().own.internal_key).unwrap();
            let leaf = TapLeafHash::from_byte_array([5; 32]);
            input.tap_script_sigs.insert(
                (x, leaf),
                bitcoin::taproot::Signature {
                    signature: sig64,
                    sighash_type: TapSighashType::Default,
                },
            );
        },
        PsbtError::AlreadySigned {
            input: 1,
            what: "signed",
        },
    );
    input_1_refused(
        |input| {
            let secp = Secp256k1::new();
            let sk = SecretKey::from_slice(&[0x55; 32]).unwrap();
            let sig = secp.sign_ecdsa(&Message::from_digest([1; 32]), &sk);
            input.partial_sigs.insert(
                bitcoin::PublicKey::new(sk.public_key(&secp)),
                bitcoin::ecdsa::Signature::sighash_all(sig),
            );
        },
        PsbtError::AlreadySigned {
            input: 1,
            what: "carrying partial signatures",
        },
    );
}

/// NONE, SINGLE and every ANYONECANPAY combination, and values that are no
/// taproot sighash type at all: refused whatever the policy allows.
#[test]
fn sighash_types_that_do_not_commit_to_everything() {
    for ty in [0x02u32, 0x03, 0x81, 0x82, 0x83, 0x04, 0x80, 0x84, 0x101] {
        for allow_all in [false, true] {
            let key = key();
            let mut psbt = two_inputs(&key);
            psbt.inputs[1].sighash_type = Some(PsbtSighashType::from_u32(ty));
            let err = refusal(&psbt, &key, allow_all);
            assert_eq!(
                err,
                PsbtError::UnsupportedSighash {
                    input: 1,
                    sighash: PsbtSighashType::from_u32(ty).to_string(),
                },
                "type {ty:#x}"
            );
            assert!(
                err.to_string().starts_with("input 1: sighash type"),
                "{err}"
            );
        }
    }
    // The names shown are the standard ones.
    let key = key();
    let mut psbt = two_inputs(&key);
    psbt.inputs[0].sighash_type = Some(TapSighashType::SinglePlusAnyoneCanPay.into());
    assert!(
        refusal(&psbt, &key, true)
            .to_string()
            .contains("SIGHASH_SINGLE|SIGHASH_ANYONECANPAY")
    );
}

#[test]
fn sighash_all_only_when_allowed() {
    let key = key();
    let mut psbt = two_inputs(&key);
    psbt.inputs[1].sighash_type = Some(EcdsaSighashType::All.into());
    let err = refusal(&psbt, &key, false);
    assert_eq!(
        err,
        PsbtError::SighashNotAllowed {
            input: 1,
            sighash: "SIGHASH_ALL".into(),
        }
    );
    assert!(err.to_string().starts_with("input 1: "), "{err}");

    // Allowed: input 1 signs under SIGHASH_ALL, input 0 under the default,
    // and the signed transaction (a 65-byte witness for input 1) is valid.
    let derived = derive(&psbt.serialize(), &key.own, true).unwrap();
    assert_eq!(derived.inputs[0].sighash, SighashChoice::Default);
    assert_eq!(derived.inputs[1].sighash, SighashChoice::All);
    assert_eq!(
        derived.sighashes,
        independent_sighashes(&psbt, &[TapSighashType::Default, TapSighashType::All])
    );
    let tx = sign_and_check(&psbt, &key, &derived, true);
    assert_eq!(tx.input[0].witness.to_vec()[0].len(), 64);
    let item = &tx.input[1].witness.to_vec()[0];
    assert_eq!(item.len(), 65);
    assert_eq!(item[64], 0x01);

    // An explicit SIGHASH_DEFAULT is the default.
    let mut psbt = two_inputs(&key);
    psbt.inputs[1].sighash_type = Some(TapSighashType::Default.into());
    let derived = derive(&psbt.serialize(), &key.own, false).unwrap();
    assert_eq!(derived.inputs[1].sighash, SighashChoice::Default);
}

/// `psbt` with its output `index` replaced by `script` paying `value`.
fn with_output(key: &TestKey, index: usize, script: ScriptBuf, value: u64) -> Psbt {
    let mut psbt = two_inputs(key);
    psbt.unsigned_tx.output[index] = TxOut {
        value: Amount::from_sat(value),
        script_pubkey: script,
    };
    psbt
}

#[test]
fn non_standard_output() {
    let key = key();
    let bare_multisig = {
        let pk = bitcoin::PublicKey::from_slice(
            &hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
                .unwrap(),
        )
        .unwrap();
        bitcoin::blockdata::script::Builder::new()
            .push_int(1)
            .push_key(&pk)
            .push_int(1)
            .push_opcode(bitcoin::opcodes::all::OP_CHECKMULTISIG)
            .into_script()
    };
    let p2pk = ScriptBuf::new_p2pk(
        &bitcoin::PublicKey::from_slice(
            &hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
                .unwrap(),
        )
        .unwrap(),
    );
    for (script, value) in [
        (ScriptBuf::new_op_return([0xde, 0xad]), 0),
        (ScriptBuf::new_op_return([0xde, 0xad]), 1_000),
        (ScriptBuf::from_bytes(vec![0x51]), 10_000), // OP_TRUE: anyone can spend
        (ScriptBuf::new(), 10_000),
        (bare_multisig, 10_000),
        (p2pk, 10_000),
    ] {
        let psbt = with_output(&key, 0, script.clone(), value);
        let err = refusal(&psbt, &key, false);
        assert_eq!(
            err,
            PsbtError::NonStandardOutput {
                output: 0,
                script: hex::encode(script.as_bytes()),
                network: "regtest",
            }
        );
        assert!(err.to_string().starts_with("output 0: script "), "{err}");
    }
}

#[test]
fn dust_output() {
    let key = key();
    for (script, min) in [(other_p2tr(), 330), (p2wpkh(), 294), (p2pkh(), 546)] {
        let psbt = with_output(&key, 0, script.clone(), min - 1);
        let err = refusal(&psbt, &key, false);
        assert_eq!(
            err,
            PsbtError::Dust {
                output: 0,
                value: min - 1,
                min
            }
        );
        assert!(err.to_string().starts_with("output 0: "), "{err}");
        // At the limit it is no dust.
        let psbt = with_output(&key, 0, script, min);
        derive(&psbt.serialize(), &key.own, false).unwrap();
    }
    // Change is an output like any other.
    let psbt = with_output(&key, 1, key.own.script(), 329);
    assert_eq!(
        refusal(&psbt, &key, false),
        PsbtError::Dust {
            output: 1,
            value: 329,
            min: 330
        }
    );
}

#[test]
fn negative_fee() {
    let key = key();
    // 100,000 in; 25,000 + 75,001 out.
    let psbt = with_output(&key, 1, key.own.script(), 75_001);
    let err = refusal(&psbt, &key, false);
    assert_eq!(
        err,
        PsbtError::NegativeFee {
            inputs: 100_000,
            outputs: 100_001
        }
    );
    assert!(err.to_string().contains("100001 sat"), "{err}");
    // A zero fee is no refusal of derive's (the policy's fee rules judge it).
    let psbt = with_output(&key, 1, key.own.script(), 75_000);
    assert_eq!(derive(&psbt.serialize(), &key.own, false).unwrap().fee, 0);
}

#[test]
fn amounts_that_overflow() {
    let key = key();
    let max_money = Amount::MAX_MONEY.to_sat();
    // Two prevouts whose sum wraps a u64.
    let mut psbt = two_inputs(&key);
    for input in &mut psbt.inputs {
        input.witness_utxo.as_mut().unwrap().value = Amount::from_sat(1 << 63);
    }
    assert_eq!(refusal(&psbt, &key, false), PsbtError::ValueOverflow);
    // One prevout above 21 million BTC.
    let mut psbt = two_inputs(&key);
    psbt.inputs[0].witness_utxo.as_mut().unwrap().value = Amount::from_sat(max_money + 1);
    assert_eq!(refusal(&psbt, &key, false), PsbtError::ValueOverflow);
    // Outputs above it (the inputs being plausible).
    let psbt = with_output(&key, 0, other_p2tr(), max_money + 1);
    assert_eq!(refusal(&psbt, &key, false), PsbtError::ValueOverflow);
    let psbt = with_output(&key, 0, other_p2tr(), u64::MAX);
    let err = refusal(&psbt, &key, false);
    assert_eq!(err, PsbtError::ValueOverflow);
    assert!(err.to_string().contains("21 million BTC"), "{err}");
}

/// BIP-341 sighashes computed here, independently of derive.
fn independent_sighashes(psbt: &Psbt, types: &[TapSighashType]) -> Vec<[u8; 32]> {
    let prevouts: Vec<TxOut> = psbt
        .inputs
        .iter()
        .map(|i| i.witness_utxo.clone().unwrap())
        .collect();
    let mut cache = SighashCache::new(&psbt.unsigned_tx);
    types
        .iter()
        .enumerate()
        .map(|(i, ty)| {
            cache
                .taproot_key_spend_signature_hash(i, &Prevouts::All(&prevouts), *ty)
                .unwrap()
                .to_byte_array()
        })
        .collect()
}

/// Signs every input of `psbt` with `key`, finalizes, and checks the
/// result against what was derived: the txid, the vsize, and Bitcoin
/// Core's consensus code. Returns the signed transaction.
fn sign_and_check(psbt: &Psbt, key: &TestKey, derived: &Derived, allow_all: bool) -> Transaction {
    let signatures: Vec<[u8; 64]> = derived.sighashes.iter().map(|m| sign(key, m)).collect();
    let done = finalize(&psbt.serialize(), &key.own, allow_all, &signatures).unwrap();
    let tx: Transaction = deserialize(&done.tx).unwrap();
    assert_eq!(tx.compute_txid().to_string(), derived.txid);
    assert_eq!(done.txid, derived.txid);
    assert_eq!(tx.vsize() as u64, derived.vsize, "vsize of the signed tx");
    let spent: Vec<_> = psbt
        .inputs
        .iter()
        .map(|i| i.witness_utxo.clone().unwrap())
        .map(|o| (o.script_pubkey, o.value.to_sat()))
        .collect();
    ringi_psbt::consensus::verify(&done.tx, &spent).unwrap();
    tx
}

#[test]
fn payments_change_fee_txid_sighashes_and_vsize() {
    let key = key();
    let payee = "bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6";
    let coins = [
        Coin::synthetic(0xb1, 1, 100_000),
        Coin::synthetic(0xb2, 0, 50_000),
        Coin::synthetic(0xb3, 7, 12_345),
    ];
    let psbt = unsigned(
        &key.own,
        &coins,
        &[
            (address_script(payee, Network::Regtest).unwrap(), 40_000),
            (key.own.script(), 60_000),
            (p2wpkh(), 20_000),
            (key.own.script(), 39_000),
            (p2pkh(), 1_000),
        ],
    );
    let derived = derive(&psbt.serialize(), &key.own, false).unwrap();

    let indices = |views: &[ringi_psbt::OutputView]| -> Vec<usize> {
        views.iter().map(|v| v.index).collect()
    };
    assert_eq!(indices(&derived.payments), [0, 2, 4]);
    assert_eq!(indices(&derived.change), [1, 3]);
    assert_eq!(derived.payments[0].address, payee);
    for (view, script) in derived.payments[1..].iter().zip([p2wpkh(), p2pkh()]) {
        assert_eq!(
            address_script(&view.address, Network::Regtest).unwrap(),
            script
        );
    }
    assert!(derived.payments[1].address.starts_with("bcrt1q"));
    assert!(
        derived
            .change
            .iter()
            .all(|c| c.address == key.own.address())
    );
    assert_eq!(derived.total_paid(), 61_000);
    assert_eq!(derived.destinations()[0], payee);
    assert_eq!(derived.fee, 162_345 - 160_000);
    assert_eq!(derived.txid, psbt.unsigned_tx.compute_txid().to_string());
    assert_eq!(
        derived.inputs[2].outpoint,
        format!("{}:7", bitcoin::Txid::from_byte_array([0xb3; 32]))
    );
    assert_eq!(
        derived.inputs.iter().map(|i| i.value).collect::<Vec<_>>(),
        [100_000, 50_000, 12_345]
    );
    assert_eq!(
        derived.sighashes,
        independent_sighashes(&psbt, &[TapSighashType::Default; 3])
    );
    // Each sighash is different: one FROST signing per input.
    assert_ne!(derived.sighashes[0], derived.sighashes[1]);

    let tx = sign_and_check(&psbt, &key, &derived, false);
    assert!(tx.input.iter().all(|i| i.witness.to_vec()[0].len() == 64));
    assert_eq!(derived.fee_rate(), derived.fee.div_ceil(tx.vsize() as u64));

    // The same key on mainnet names the same outputs with mainnet addresses.
    let mainnet = OwnKey {
        network: Network::Bitcoin,
        ..key.own
    };
    let derived = derive(&psbt.serialize(), &mainnet, false).unwrap();
    assert!(derived.payments[0].address.starts_with("bc1p"));
    assert!(derived.change[0].address.starts_with("bc1p"));
}

/// BIP-341's keyPathSpending vector, as a PSBT: nine inputs of seven
/// different owners (P2TR, P2PKH, P2WPKH) and a bare-script output. derive
/// signs for one key at a time, so for each input's key it names the first
/// input that is not that key's; the sighashes themselves are checked
/// against the vector in derive.rs's unit tests, through the function
/// derive computes them with.
#[test]
fn bip341_key_path_vector_is_refused_input_by_input() {
    // wallet-test-vectors.json keyPathSpending[0]: rawUnsignedTx and the
    // scriptPubKeys of utxosSpent (amounts do not matter for these refusals).
    let raw = "02000000097de20cbff686da83a54981d2b9bab3586f4ca7e48f57f5b55963115f3b334e9c010000000000000000d7b7cab57b1393ace2d064f4d4a2cb8af6def61273e127517d44759b6dafdd990000000000fffffffff8e1f583384333689228c5d28eac13366be082dc57441760d957275419a418420000000000fffffffff0689180aa63b30cb162a73c6d2a38b7eeda2a83ece74310fda0843ad604853b0100000000feffffffaa5202bdf6d8ccd2ee0f0202afbbb7461d9264a25e5bfd3c5a52ee1239e0ba6c0000000000feffffff956149bdc66faa968eb2be2d2faa29718acbfe3941215893a2a3446d32acd050000000000000000000e664b9773b88c09c32cb70a2a3e4da0ced63b7ba3b22f848531bbb1d5d5f4c94010000000000000000e9aa6b8e6c9de67619e6a3924ae25696bb7b694bb677a632a74ef7eadfd4eabf0000000000ffffffffa778eb6a263dc090464cd125c466b5a99667720b1c110468831d058aa1b82af10100000000ffffffff0200ca9a3b000000001976a91406afd46bcdfd22ef94ac122aa11f241244a37ecc88ac807840cb0000000020ac9a87f5594be208f8532db38cff670c450ed2fea8fcdefcc9a663f78bab962b0065cd1d";
    let scripts = [
        "512053a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343",
        "5120147c9c57132f6e7ecddba9800bb0c4449251c92a1e60371ee77557b6620f3ea3",
        "76a914751e76e8199196d454941c45d1b3a323f1433bd688ac",
        "5120e4d810fd50586274face62b8a807eb9719cef49c04177cc6b76a9a4251d5450e",
        "512091b64d5324723a985170e4dc5a0f84c041804f2cd12660fa5dec09fc21783605",
        "00147dd65592d0ab2fe0d0257d571abf032cd9db93dc",
        "512075169f4001aa68f15bbed28b218df1d0a62cbbcf1188c6665110c293c907b831",
        "5120712447206d7a5238acc7ff53fbe94a3b64539ad291c7cdbc490b7577e4b17df5",
        "512077e30a5522dd9f894c3f8b8bd4c4b2cf82ca7da8a3ea6a239655c39c050ab220",
    ];
    let tx: Transaction = deserialize(&hex::decode(raw).unwrap()).unwrap();
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
    for (input, script) in psbt.inputs.iter_mut().zip(scripts) {
        input.witness_utxo = Some(TxOut {
            value: Amount::from_sat(100_000_000),
            script_pubkey: ScriptBuf::from_bytes(hex::decode(script).unwrap()),
        });
    }
    for (index, script) in scripts.iter().enumerate() {
        let Some(q) = script.strip_prefix("5120") else {
            continue;
        };
        let own = OwnKey {
            internal_key: [0; 32],
            output_key: hex::decode(q).unwrap().try_into().unwrap(),
            network: Network::Bitcoin,
        };
        assert_eq!(
            own.script(),
            ScriptBuf::new_p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(
                XOnlyPublicKey::from_slice(&own.output_key).unwrap()
            ))
        );
        let first_foreign = if index == 0 { 1 } else { 0 };
        let err = derive(&psbt.serialize(), &own, true).unwrap_err();
        assert_eq!(
            err,
            PsbtError::ForeignInput {
                input: first_foreign,
                script: scripts[first_foreign].into(),
                own: (*script).into(),
            }
        );
        assert!(
            err.to_string()
                .starts_with(&format!("input {first_foreign}: "))
        );
    }
}

/// The same coin spent twice: no node accepts the transaction
/// (bad-txns-inputs-duplicate), and its prevout would be counted twice in
/// the fee shown to approvers.
#[test]
fn duplicate_input() {
    let key = key();
    let coin = Coin::synthetic(0xa1, 0, 60_000);
    let psbt = unsigned(
        &key.own,
        &[Coin::synthetic(0xa0, 0, 10_000), coin, coin],
        &[(other_p2tr(), 100_000), (key.own.script(), 20_000)],
    );
    let err = refusal(&psbt, &key, false);
    assert_eq!(
        err,
        PsbtError::DuplicateInput {
            input: 2,
            first: 1,
            outpoint: format!("{}:0", bitcoin::Txid::from_byte_array([0xa1; 32])),
        }
    );
    assert!(err.to_string().starts_with("input 2: "), "{err}");
}
