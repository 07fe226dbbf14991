//! Bitcoin Core's own check of a signed transaction: libbitcoinconsensus
//! (Bitcoin Core 26, crate `bitcoinconsensus`), every script verification
//! flag including taproot, with every spent output (taproot sighashes
//! commit to all of them). [`crate::finalize`] runs it on every transaction
//! before handing it out, so ringi never returns a transaction that a node
//! would reject on its scripts; tests, the demo and the Docker e2e run it
//! on what the whole stack signed.
//!
//! Not checked here (no chain): that the spent outputs exist and are
//! unspent, lock times against a block, standardness policy.

use bitcoin::ScriptBuf;

use crate::error::PsbtError;

/// Every input of `tx` (consensus-encoded) valid against `spent`, the
/// outputs it spends (scriptPubKey, satoshis), in input order.
pub fn verify(tx: &[u8], spent: &[(ScriptBuf, u64)]) -> Result<(), PsbtError> {
    // `Utxo` holds raw pointers into `spent`, which outlives it here.
    let utxos: Vec<bitcoinconsensus::Utxo> = spent
        .iter()
        .map(|(script, value)| bitcoinconsensus::Utxo {
            script_pubkey: script.as_bytes().as_ptr(),
            script_pubkey_len: script.len() as u32,
            value: *value as i64,
        })
        .collect();
    for (input, (script, value)) in spent.iter().enumerate() {
        bitcoinconsensus::verify_with_flags(
            script.as_bytes(),
            *value,
            tx,
            Some(&utxos),
            input,
            bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT | bitcoinconsensus::VERIFY_TAPROOT,
        )
        .map_err(|e| PsbtError::Consensus {
            input,
            reason: format!("{e:?}"),
        })?;
    }
    Ok(())
}
