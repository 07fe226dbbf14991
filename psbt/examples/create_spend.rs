//! Builds an unsigned PSBT spending coins of a ringi `bitcoin-taproot` key:
//! what a wallet service does before it submits a PSBT request, for the
//! demo and the Docker e2e (wallets use their own library; the Python
//! example uses embit).
//!
//! ```text
//! cargo run -q -p ringi-psbt --example create_spend -- \
//!     INTERNAL_KEY_HEX OUTPUT_KEY_HEX NETWORK FEE_SATS \
//!     --coin TXID:VOUT:SATS [--coin ...] --pay ADDRESS:SATS [--pay ...]
//! ```
//!
//! The change (inputs − payments − fee) goes back to the key's own address
//! when it is not dust. Prints the PSBT in base64 on stdout, and on stderr
//! the spent outputs as `SCRIPT_HEX:SATS` (what `verify_spend` takes).

use std::process::ExitCode;
use std::str::FromStr;

use ringi_psbt::bitcoin::{OutPoint, Txid};
use ringi_psbt::build::{Coin, address_script, unsigned};
use ringi_psbt::{Network, OwnKey};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("create_spend: {e}");
            ExitCode::FAILURE
        }
    }
}

fn key32(name: &str, text: &str) -> Result<[u8; 32], String> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| format!("{name} must be 32 bytes of hex"))
}

fn run(args: Vec<String>) -> Result<(), String> {
    let usage = "usage: create_spend INTERNAL_KEY OUTPUT_KEY NETWORK FEE --coin TXID:VOUT:SATS... --pay ADDRESS:SATS...";
    let [internal, output, network, fee, rest @ ..] = args.as_slice() else {
        return Err(usage.into());
    };
    let network = Network::parse(network).ok_or_else(|| format!("unknown network {network}"))?;
    let key = OwnKey {
        internal_key: key32("INTERNAL_KEY", internal)?,
        output_key: key32("OUTPUT_KEY", output)?,
        network,
    };
    let fee: u64 = fee.parse().map_err(|_| "FEE must be satoshis")?;
    let mut coins = Vec::new();
    let mut outputs = Vec::new();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(usage)?;
        let (what, sats) = value
            .rsplit_once(':')
            .ok_or_else(|| format!("{value:?}: expected ...:SATS"))?;
        let sats: u64 = sats.parse().map_err(|_| format!("{value:?}: bad amount"))?;
        match flag.as_str() {
            "--coin" => {
                let (txid, vout) = what
                    .split_once(':')
                    .ok_or_else(|| format!("{value:?}: expected TXID:VOUT:SATS"))?;
                coins.push(Coin {
                    outpoint: OutPoint {
                        txid: Txid::from_str(txid).map_err(|e| format!("{txid}: {e}"))?,
                        vout: vout.parse().map_err(|_| format!("{vout}: bad vout"))?,
                    },
                    value: sats,
                });
            }
            "--pay" => outputs.push((
                address_script(what, network).map_err(|e| format!("{what}: {e}"))?,
                sats,
            )),
            _ => return Err(usage.into()),
        }
    }
    let total_in: u64 = coins.iter().map(|c| c.value).sum();
    let total_out: u64 = outputs.iter().map(|(_, v)| *v).sum::<u64>() + fee;
    let change = total_in.checked_sub(total_out).ok_or_else(|| {
        format!("the coins ({total_in} sat) do not cover payments and fee ({total_out} sat)")
    })?;
    let own = key.script();
    if change >= own.minimal_non_dust().to_sat() {
        outputs.push((own.clone(), change));
    }
    let psbt = unsigned(&key, &coins, &outputs);
    println!("{psbt}");
    for coin in &coins {
        eprintln!("{}:{}", hex::encode(own.as_bytes()), coin.value);
    }
    Ok(())
}
