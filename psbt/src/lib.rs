//! What a Bitcoin PSBT request pays, derived from the transaction itself.
//!
//! The requester (the hot-wallet server) is the party attackers took over in
//! 2018, so nothing it *declares* about a Bitcoin spend is trusted: the
//! coordinator and every signer decode the PSBT (BIP-174) themselves with
//! [`derive`], which checks that every input spends a key-path P2TR output
//! of this key, computes each input's BIP-341 sighash (the message FROST
//! signs), and derives the payments (outputs not paying the key's own
//! script), the change and the fee. Caps, tiers and allowlists then apply
//! to those derived values (`ringi_policy::subject`).
//!
//! - [`derive`]: decoding, the input and output rules, sighashes, payments;
//! - [`finalize`]: the signed transaction, once every input has its
//!   BIP-340 signature, checked by [`consensus`] (Bitcoin Core's
//!   libbitcoinconsensus) before it is handed out;
//! - [`build`]: an unsigned PSBT from prevouts and outputs (tests, the
//!   bench, the demo);
//! - [`error`]: [`PsbtError`], one variant per rule, each naming what is
//!   wrong (the gRPC edges map it to INVALID_ARGUMENT).
//!
//! Pure functions: no I/O, no clock, no panics on any input (fuzzed by
//! `fuzz/src/psbt_derive.rs`).

pub mod build;
pub mod consensus;
pub mod derive;
pub mod error;
pub mod finalize;

pub use bitcoin;
pub use derive::{Derived, InputView, OutputView, OwnKey, SighashChoice, derive};
pub use error::PsbtError;
pub use finalize::{Finalized, finalize};
pub use ringi_frost::taproot::Network;

/// The largest PSBT accepted (bytes): a standard transaction weighs at most
/// 400,000 weight units; a PSBT repeats each prevout, so twice that in bytes
/// is generous while keeping a request row and a bundle small.
pub const MAX_PSBT_BYTES: usize = 800_000;

/// The most inputs one request may spend. Each input is its own FROST
/// signing, all within the one approved request.
pub const MAX_INPUTS: usize = 256;

/// rust-bitcoin's network for ours.
pub fn bitcoin_network(network: Network) -> bitcoin::Network {
    match network {
        Network::Bitcoin => bitcoin::Network::Bitcoin,
        Network::Testnet => bitcoin::Network::Testnet,
        Network::Signet => bitcoin::Network::Signet,
        Network::Regtest => bitcoin::Network::Regtest,
    }
}

/// Formats satoshis as BTC with 8 decimals, e.g. `0.00150000`.
pub fn btc(sats: u64) -> String {
    format!("{}.{:08}", sats / 100_000_000, sats % 100_000_000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn btc_has_eight_decimals() {
        assert_eq!(super::btc(0), "0.00000000");
        assert_eq!(super::btc(150_000), "0.00150000");
        assert_eq!(super::btc(2_100_000_000_000_000), "21000000.00000000");
    }
}
