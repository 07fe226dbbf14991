//! Building an unsigned PSBT that spends outputs of a key: what a wallet
//! service does before it submits a request. Used by tests, the bench and
//! the demo; wallets use their own library (the Python example uses embit).

use bitcoin::absolute::LockTime;
use bitcoin::psbt::Psbt;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};

use crate::derive::OwnKey;

/// An output of `key` that a PSBT can spend: where it is and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coin {
    pub outpoint: OutPoint,
    pub value: u64,
}

impl Coin {
    /// A coin at output `vout` of a made-up funding transaction whose txid
    /// is `tag` repeated: prevouts for tests that have no chain.
    pub fn synthetic(tag: u8, vout: u32, value: u64) -> Self {
        use bitcoin::hashes::Hash;
        Coin {
            outpoint: OutPoint {
                txid: Txid::from_byte_array([tag; 32]),
                vout,
            },
            value,
        }
    }
}

/// An unsigned PSBT spending `coins` of `key` to `outputs` (script, sats),
/// version 2, no lock time, RBF enabled, `tap_internal_key` set on every
/// input as BIP-371 wallets do.
pub fn unsigned(key: &OwnKey, coins: &[Coin], outputs: &[(ScriptBuf, u64)]) -> Psbt {
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: coins
            .iter()
            .map(|c| TxIn {
                previous_output: c.outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs
            .iter()
            .map(|(script, value)| TxOut {
                value: Amount::from_sat(*value),
                script_pubkey: script.clone(),
            })
            .collect(),
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap_or_else(|_| {
        unreachable!("a transaction built with empty scriptSigs and witnesses is unsigned")
    });
    let internal = bitcoin::XOnlyPublicKey::from_slice(&key.internal_key).ok();
    for (input, coin) in psbt.inputs.iter_mut().zip(coins) {
        input.witness_utxo = Some(TxOut {
            value: Amount::from_sat(coin.value),
            script_pubkey: key.script(),
        });
        input.tap_internal_key = internal;
    }
    psbt
}

/// The script of a `network` address, for outputs.
pub fn address_script(
    address: &str,
    network: crate::Network,
) -> Result<ScriptBuf, bitcoin::address::ParseError> {
    let parsed: bitcoin::Address<bitcoin::address::NetworkUnchecked> = address.parse()?;
    Ok(parsed
        .require_network(crate::bitcoin_network(network))?
        .script_pubkey())
}
