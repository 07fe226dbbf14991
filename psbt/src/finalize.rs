//! The signed transaction: each input's key-path witness is its BIP-340
//! signature (BIP-174's finalizer role for a P2TR key-path input).

use bitcoin::consensus::encode::serialize;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Message, Secp256k1, schnorr};
use bitcoin::{Witness, XOnlyPublicKey};

use crate::derive::{OwnKey, SighashChoice, derive};
use crate::error::PsbtError;

/// A fully signed PSBT, and the network transaction it finalizes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalized {
    /// The finalized PSBT (binary BIP-174): every input has its
    /// `final_script_witness`.
    pub psbt: Vec<u8>,
    /// The signed transaction, consensus-encoded: what
    /// `bitcoin-cli sendrawtransaction` takes (as hex).
    pub tx: Vec<u8>,
    pub txid: String,
}

/// Puts `signatures` (one 64-byte BIP-340 signature per input, in input
/// order) into `psbt` and extracts the transaction. The PSBT is derived
/// again first (the same rules as at approval), and every signature is
/// verified under the key's output key against its input's sighash, and
/// the transaction is checked by Bitcoin Core's consensus code
/// ([`crate::consensus`]), so a transaction that would not spend is never
/// produced.
pub fn finalize(
    psbt: &[u8],
    key: &OwnKey,
    allow_sighash_all: bool,
    signatures: &[[u8; 64]],
) -> Result<Finalized, PsbtError> {
    let derived = derive(psbt, key, allow_sighash_all)?;
    if signatures.len() != derived.sighashes.len() {
        return Err(PsbtError::SignatureCount {
            given: signatures.len(),
            inputs: derived.sighashes.len(),
        });
    }
    let secp = Secp256k1::verification_only();
    let output_key = XOnlyPublicKey::from_slice(&key.output_key)
        .map_err(|_| PsbtError::BadSignature { input: 0 })?;
    let mut psbt = Psbt::deserialize(psbt).map_err(|e| PsbtError::Decode(e.to_string()))?;
    for (input, ((signature, sighash), view)) in signatures
        .iter()
        .zip(&derived.sighashes)
        .zip(&derived.inputs)
        .enumerate()
    {
        let sig = schnorr::Signature::from_slice(signature)
            .map_err(|_| PsbtError::BadSignature { input })?;
        secp.verify_schnorr(&sig, &Message::from_digest(*sighash), &output_key)
            .map_err(|_| PsbtError::BadSignature { input })?;
        let mut item = signature.to_vec();
        if view.sighash == SighashChoice::All {
            item.push(0x01);
        }
        let entry = &mut psbt.inputs[input];
        entry.final_script_witness = Some(Witness::from_slice(&[item]));
        // BIP-174 finalizer: everything but the UTXO and the final fields
        // is cleared.
        let utxo = entry.witness_utxo.take();
        let witness = entry.final_script_witness.take();
        *entry = bitcoin::psbt::Input {
            witness_utxo: utxo,
            final_script_witness: witness,
            ..Default::default()
        };
    }
    // The fee cap is the policy's; rust-bitcoin's absurd-fee guard would
    // only second-guess an approved fee.
    let tx = psbt.clone().extract_tx_unchecked_fee_rate();
    let spent: Vec<(bitcoin::ScriptBuf, u64)> = psbt
        .inputs
        .iter()
        .filter_map(|i| i.witness_utxo.as_ref())
        .map(|o| (o.script_pubkey.clone(), o.value.to_sat()))
        .collect();
    let tx_bytes = serialize(&tx);
    crate::consensus::verify(&tx_bytes, &spent)?;
    Ok(Finalized {
        psbt: psbt.serialize(),
        tx: tx_bytes,
        txid: tx.compute_txid().to_string(),
    })
}
