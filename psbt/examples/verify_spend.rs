//! Checks a signed transaction with Bitcoin Core 26's consensus code
//! (libbitcoinconsensus: every script flag, taproot included, with the
//! spent outputs), the check the demo and the Docker e2e run on what ringi
//! signed, since no bitcoind can be installed here.
//!
//! ```text
//! cargo run -q -p ringi-psbt --example verify_spend -- TX_HEX SCRIPT_HEX:SATS [SCRIPT_HEX:SATS ...]
//! ```
//!
//! One `SCRIPT_HEX:SATS` per input, in input order: the spent output's
//! scriptPubKey and amount. Prints `consensus: valid (N inputs)` and exits 0,
//! or names the failing input and exits 1.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(n) => {
            println!(
                "consensus: valid ({n} inputs, Bitcoin Core 26 libbitcoinconsensus, taproot flags)"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("consensus: INVALID: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<usize, String> {
    let (tx_hex, spent) = args
        .split_first()
        .ok_or("usage: verify_spend TX_HEX SCRIPT_HEX:SATS...")?;
    let tx = hex::decode(tx_hex.trim()).map_err(|e| format!("transaction hex: {e}"))?;
    let spent: Vec<(Vec<u8>, u64)> = spent
        .iter()
        .map(|s| {
            let (script, sats) = s
                .split_once(':')
                .ok_or_else(|| format!("{s:?}: expected SCRIPT_HEX:SATS"))?;
            Ok((
                hex::decode(script).map_err(|e| format!("{s:?}: {e}"))?,
                sats.parse().map_err(|e| format!("{s:?}: {e}"))?,
            ))
        })
        .collect::<Result<_, String>>()?;
    if spent.is_empty() {
        return Err("no spent outputs given".into());
    }
    let spent: Vec<(ringi_psbt::bitcoin::ScriptBuf, u64)> = spent
        .into_iter()
        .map(|(script, sats)| (ringi_psbt::bitcoin::ScriptBuf::from_bytes(script), sats))
        .collect();
    ringi_psbt::consensus::verify(&tx, &spent).map_err(|e| e.to_string())?;
    Ok(spent.len())
}
