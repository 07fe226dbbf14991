//! What a signer pays to decode a PSBT and derive its payments, fee and
//! sighashes (`ringi_psbt::derive`), per request, for 1, 2, 10 and 100
//! inputs; prints median and p99. Every signer (and the coordinator) runs
//! this once per approved request it sees; the goal is well under 0.3 ms
//! for the common one- and two-input spends.
//!
//! `cargo bench -p ringi-psbt` (optimized); `cargo bench -p ringi-psbt --
//! ITERATIONS` to change the default of 2000.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ringi_psbt::build::{Coin, address_script, unsigned};
use ringi_psbt::{Network, OwnKey, derive};

fn summary(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let rank =
        |q: f64| samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    (
        rank(0.50).as_secs_f64() * 1e3,
        rank(0.99).as_secs_f64() * 1e3,
    )
}

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    // BIP-341's scriptPubKey vector 0: internal key and output key.
    let hex32 = |s: &str| -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    };
    let key = OwnKey {
        internal_key: hex32("d6889cb081036e0faefa3a35157ad71086b123b2b144b649798b494c300a961d"),
        output_key: hex32("53a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343"),
        network: Network::Regtest,
    };
    let payee = address_script(
        "bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6",
        Network::Regtest,
    )
    .unwrap();
    println!("ringi_psbt::derive, {iterations} iterations each");
    println!(
        "{:>7} {:>9} {:>10} {:>10}",
        "inputs", "bytes", "p50 ms", "p99 ms"
    );
    for inputs in [1usize, 2, 10, 100] {
        let coins: Vec<Coin> = (0..inputs)
            .map(|i| Coin::synthetic(i as u8, i as u32, 100_000))
            .collect();
        let total = 100_000 * inputs as u64;
        let psbt = unsigned(
            &key,
            &coins,
            &[
                (payee.clone(), 50_000),
                (key.script(), total - 50_000 - 500 * inputs as u64),
            ],
        )
        .serialize();
        let samples: Vec<Duration> = (0..iterations)
            .map(|_| {
                let start = Instant::now();
                black_box(derive(black_box(&psbt), &key, false).unwrap());
                start.elapsed()
            })
            .collect();
        let (p50, p99) = summary(samples);
        println!("{inputs:>7} {:>9} {p50:>10.4} {p99:>10.4}", psbt.len());
    }
}
