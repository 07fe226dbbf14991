//! PSBT decoding and derivation (`ringi_psbt::derive`), which the
//! coordinator and every signer run on the PSBT a requester submits, and
//! the finalizer (`ringi_psbt::finalize`) that puts the signatures in.
//!
//! Input: the first byte picks the shape of the rest.
//! - even: the rest is the PSBT, as the requester sends it;
//! - odd: the rest describes a valid PSBT of the harness key, built with
//!   `ringi_psbt::build::unsigned` (1-3 inputs, 1-3 outputs of the key
//!   itself, another P2TR key, P2WPKH or P2PKH, amounts and sighash types
//!   from the bytes), then mutated at fuzzer-chosen positions (overwrite,
//!   insert, delete a byte): random bytes rarely decode as a PSBT, these
//!   start from one that does and reach every rule behind the decoder.
//!
//! Each PSBT is derived twice, with SIGHASH_ALL refused and allowed.
//! Reaches: the size limit; BIP-174 decoding; every rule of derive (globals,
//! input and output counts, witness UTXOs, own script, key-path only, not
//! signed, sighash types, standard and non-dust outputs, amounts); then for
//! a PSBT that derives, the invariants below, and `finalize` with wrong
//! signatures (zeros, another message's, too few) refused, and with the
//! right ones (the harness holds the key's secret and signs each derived
//! sighash) a transaction whose txid and vsize are the derived ones.
//!
//! Invariants (a panic is a bug): allowing SIGHASH_ALL only widens what is
//! accepted and never changes what is derived; no coin is spent twice;
//! fee = Σ inputs − Σ outputs; payments and change partition the outputs,
//! in order; one sighash and one input view per input; total paid =
//! Σ outputs − Σ change ≤ Σ outputs; change pays the key's own address; the
//! txid is the unsigned transaction's.

use std::sync::OnceLock;

use ringi_psbt::bitcoin::hashes::Hash;
use ringi_psbt::bitcoin::key::{Keypair, TapTweak};
use ringi_psbt::bitcoin::psbt::{Psbt, PsbtSighashType};
use ringi_psbt::bitcoin::secp256k1::{All, Message, Secp256k1};
use ringi_psbt::bitcoin::{PubkeyHash, ScriptBuf, Transaction, WPubkeyHash};
use ringi_psbt::build::{Coin, unsigned};
use ringi_psbt::{Derived, Network, OwnKey, PsbtError, SighashChoice, derive, finalize};

crate::stages!(
    /// How far an input got (the deeper of its two derivations).
    Reached {
        /// Too large, or not a BIP-174 PSBT.
        Undecodable,
        /// Decoded, and refused by a rule of derive.
        Refused,
        /// Derived; the invariants held and wrong signatures were refused,
        /// but the right ones were not enough to finalize (never expected:
        /// finalize re-derives the same PSBT).
        Derived,
        /// Derived, and signed and finalized into the derived transaction.
        Finalized,
    }
);

/// The harness's key: a BIP-86 key-path key whose secret the harness holds
/// to sign on the fuzzer's behalf.
struct HarnessKey {
    secp: Secp256k1<All>,
    tweaked: Keypair,
    own: OwnKey,
}

fn harness_key() -> &'static HarnessKey {
    static KEY: OnceLock<HarnessKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let secp = Secp256k1::new();
        let keypair = Keypair::from_seckey_slice(&secp, &[0x5a; 32])
            .unwrap_or_else(|_| unreachable!("0x5a.. is a valid secret key"));
        let (internal, _) = keypair.x_only_public_key();
        let tweaked = keypair.tap_tweak(&secp, None).to_keypair();
        let (output, _) = tweaked.x_only_public_key();
        HarnessKey {
            secp,
            tweaked,
            own: OwnKey {
                internal_key: internal.serialize(),
                output_key: output.serialize(),
                network: Network::Regtest,
            },
        }
    })
}

/// Another key's P2TR script: a payee.
fn other_p2tr() -> ScriptBuf {
    static SCRIPT: OnceLock<ScriptBuf> = OnceLock::new();
    SCRIPT
        .get_or_init(|| {
            let secp = Secp256k1::verification_only();
            let key =
                ringi_psbt::bitcoin::XOnlyPublicKey::from_slice(&harness_key().own.internal_key)
                    .unwrap_or_else(|_| unreachable!("an x-only key from a keypair"));
            // The internal key itself, tweaked again: not the harness key's Q.
            let (tweaked, _) = key.tap_tweak(
                &secp,
                Some(ringi_psbt::bitcoin::taproot::TapNodeHash::from_byte_array(
                    [1; 32],
                )),
            );
            ScriptBuf::new_p2tr_tweaked(tweaked)
        })
        .clone()
}

pub fn run(data: &[u8]) -> Reached {
    let Some((&shape, rest)) = data.split_first() else {
        return Reached::Undecodable;
    };
    if shape & 1 == 0 {
        check(rest)
    } else {
        check(&mutate(build(rest)))
    }
}

/// Bytes read one at a time, zero once exhausted.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

/// A valid PSBT of the harness key described by the bytes, and what is left
/// of them (the mutations).
fn build(data: &[u8]) -> (Vec<u8>, &[u8]) {
    let mut c = Cursor(data);
    let key = &harness_key().own;
    let inputs = 1 + c.next() % 3;
    let outputs = 1 + c.next() % 3;
    let coins: Vec<Coin> = (0..inputs)
        .map(|i| Coin::synthetic(0x10 + i, u32::from(i), 20_000 + u64::from(c.next()) * 1_000))
        .collect();
    let outs: Vec<(ScriptBuf, u64)> = (0..outputs)
        .map(|_| {
            let script = match c.next() % 4 {
                0 => key.script(),
                1 => other_p2tr(),
                2 => ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([0x33; 20])),
                _ => ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array([0x44; 20])),
            };
            (script, 500 + u64::from(c.next()) * 50)
        })
        .collect();
    let mut psbt = unsigned(key, &coins, &outs);
    for input in &mut psbt.inputs {
        // Odd: an explicit sighash type, from the byte's upper bits.
        let choice = c.next();
        if choice & 1 == 1 {
            input.sighash_type = Some(PsbtSighashType::from_u32(u32::from(choice >> 1)));
        }
    }
    (psbt.serialize(), c.0)
}

/// Applies the mutations: 4 bytes each, (operation, position high, low,
/// value); the position wraps around the PSBT's length.
fn mutate((mut psbt, ops): (Vec<u8>, &[u8])) -> Vec<u8> {
    for op in ops.chunks_exact(4) {
        if psbt.is_empty() {
            break;
        }
        let pos = usize::from(u16::from_be_bytes([op[1], op[2]])) % psbt.len();
        match op[0] % 3 {
            0 => psbt[pos] = op[3],
            1 => psbt.insert(pos, op[3]),
            _ => {
                psbt.remove(pos);
            }
        }
    }
    psbt
}

/// Derives `psbt` both ways, checks what derives, and finalizes it.
fn check(psbt: &[u8]) -> Reached {
    let key = harness_key();
    let strict = derive(psbt, &key.own, false);
    let lenient = derive(psbt, &key.own, true);
    if let Ok(derived) = &strict {
        assert_eq!(
            lenient.as_ref(),
            Ok(derived),
            "allowing SIGHASH_ALL changed a derivation"
        );
    }
    let mut deepest = Reached::Undecodable;
    for (result, allow_all) in [(strict, false), (lenient, true)] {
        let reached = match result {
            Err(e) => refused(&e),
            Ok(derived) => {
                invariants(psbt, &derived);
                signed(psbt, &derived, allow_all)
            }
        };
        deepest = deepest.max(reached);
    }
    deepest
}

fn refused(e: &PsbtError) -> Reached {
    assert!(!e.to_string().is_empty());
    match e {
        PsbtError::TooLarge { .. } | PsbtError::Decode(_) => Reached::Undecodable,
        _ => Reached::Refused,
    }
}

fn invariants(bytes: &[u8], derived: &Derived) {
    let psbt = Psbt::deserialize(bytes).unwrap_or_else(|e| panic!("derived, not decodable: {e}"));
    let tx = &psbt.unsigned_tx;
    let total_in: u64 = psbt
        .inputs
        .iter()
        .map(|i| {
            i.witness_utxo
                .as_ref()
                .expect("derived without witness_utxo")
                .value
                .to_sat()
        })
        .sum();
    let total_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    assert_eq!(derived.fee, total_in - total_out, "fee");
    assert_eq!(
        derived.sighashes.len(),
        tx.input.len(),
        "one sighash per input"
    );
    assert_eq!(derived.inputs.len(), tx.input.len(), "one view per input");
    assert!(
        derived
            .inputs
            .iter()
            .zip(&tx.input)
            .all(|(v, i)| v.outpoint == i.previous_output.to_string()),
        "input views in input order"
    );
    let mut outpoints: Vec<&str> = derived.inputs.iter().map(|v| v.outpoint.as_str()).collect();
    outpoints.sort_unstable();
    outpoints.dedup();
    assert_eq!(outpoints.len(), tx.input.len(), "a coin spent twice");
    assert_eq!(
        derived.payments.len() + derived.change.len(),
        tx.output.len(),
        "payments and change are the outputs"
    );
    let mut indices: Vec<usize> = derived
        .payments
        .iter()
        .chain(&derived.change)
        .map(|v| v.index)
        .collect();
    indices.sort_unstable();
    assert!(
        indices.iter().copied().eq(0..tx.output.len()),
        "each output once"
    );
    for view in derived.payments.iter().chain(&derived.change) {
        assert_eq!(
            view.value,
            tx.output[view.index].value.to_sat(),
            "output value"
        );
    }
    let own = harness_key().own.address();
    assert!(
        derived.change.iter().all(|c| c.address == own),
        "change is own"
    );
    assert!(
        derived.payments.iter().all(|p| p.address != own),
        "payment to self"
    );
    let change: u64 = derived.change.iter().map(|c| c.value).sum();
    assert!(
        derived.total_paid() <= total_out,
        "paid more than the outputs"
    );
    assert_eq!(derived.total_paid() + change, total_out, "paid + change");
    assert_eq!(derived.txid, tx.compute_txid().to_string(), "txid");
    assert!(derived.vsize > 0);
    let _ = (derived.fee_rate(), derived.destinations());
}

/// Wrong signatures refused; the right ones finalize into the derived
/// transaction.
fn signed(psbt: &[u8], derived: &Derived, allow_all: bool) -> Reached {
    let key = harness_key();
    let inputs = derived.sighashes.len();
    let zeros = vec![[0u8; 64]; inputs];
    assert!(
        finalize(psbt, &key.own, allow_all, &zeros).is_err(),
        "zero signatures finalized"
    );
    let sign = |m: &[u8; 32]| {
        key.secp
            .sign_schnorr_no_aux_rand(&Message::from_digest(*m), &key.tweaked)
            .serialize()
    };
    let others: Vec<[u8; 64]> = derived
        .sighashes
        .iter()
        .map(|m| {
            let mut other = *m;
            other[0] ^= 1;
            sign(&other)
        })
        .collect();
    assert!(
        matches!(
            finalize(psbt, &key.own, allow_all, &others),
            Err(PsbtError::BadSignature { input: 0 })
        ),
        "another message's signatures finalized"
    );
    let right: Vec<[u8; 64]> = derived.sighashes.iter().map(sign).collect();
    assert!(
        matches!(
            finalize(psbt, &key.own, allow_all, &right[..inputs - 1]),
            Err(PsbtError::SignatureCount { .. })
        ),
        "too few signatures finalized"
    );
    let Ok(done) = finalize(psbt, &key.own, allow_all, &right) else {
        return Reached::Derived;
    };
    let tx: Transaction = ringi_psbt::bitcoin::consensus::encode::deserialize(&done.tx)
        .unwrap_or_else(|e| panic!("a finalized transaction that does not decode: {e}"));
    assert_eq!(done.txid, derived.txid, "finalized txid");
    assert_eq!(
        tx.compute_txid().to_string(),
        derived.txid,
        "extracted txid"
    );
    assert_eq!(tx.vsize() as u64, derived.vsize, "vsize");
    for (txin, view) in tx.input.iter().zip(&derived.inputs) {
        let expected = match view.sighash {
            SighashChoice::Default => 64,
            SighashChoice::All => 65,
        };
        assert_eq!(txin.witness.len(), 1);
        assert_eq!(
            txin.witness.nth(0).map(<[u8]>::len),
            Some(expected),
            "witness"
        );
    }
    Reached::Finalized
}

/// Valid PSBTs as sent (shape 0) and as descriptions (shape 1): one and
/// three inputs with change, a SIGHASH_ALL input (finalized only when
/// allowed), and a few mutated and invalid ones.
pub fn seeds() -> Vec<Vec<u8>> {
    let raw = |description: &[u8]| {
        let mut seed = vec![0u8];
        seed.extend(build(description).0);
        seed
    };
    let described = |description: &[u8]| {
        let mut seed = vec![1u8];
        seed.extend_from_slice(description);
        seed
    };
    vec![
        // One input of 50,000 paying 10,500 to another P2TR key and 500
        // back (the description's bytes: 1 input, 2 outputs, the input's
        // amount, each output's kind and amount, the input's sighash).
        raw(&[0, 1, 30, 1, 200, 0, 0, 0]),
        // Three inputs, three outputs: P2WPKH, change, P2PKH.
        raw(&[2, 2, 10, 20, 30, 2, 100, 0, 200, 3, 100, 0, 0, 0]),
        // The same as descriptions, and with the input under SIGHASH_ALL
        // (type 1: choice byte 0b11), finalized only when allowed.
        described(&[2, 2, 10, 20, 30, 2, 100, 0, 200, 3, 100, 0, 0, 0]),
        described(&[0, 1, 30, 1, 200, 0, 0, 3]),
        // SIGHASH_SINGLE (type 3: choice byte 0b111): refused.
        described(&[0, 1, 30, 1, 200, 0, 0, 7]),
        // Negative fee: 20,000 in, 26,500 out.
        described(&[0, 1, 0, 1, 255, 1, 255, 0]),
        // Mutated: the magic overwritten; a byte inserted in the middle;
        // a byte deleted.
        described(&[0, 1, 30, 1, 200, 0, 0, 0, 0, 0, 0, b'X']),
        described(&[0, 1, 30, 1, 200, 0, 0, 0, 1, 0, 60, 0xff]),
        described(&[0, 1, 30, 1, 200, 0, 0, 0, 2, 0xff, 0xff, 0]),
        vec![],
        vec![0],
        b"\x00psbt\xff".to_vec(),
    ]
}
