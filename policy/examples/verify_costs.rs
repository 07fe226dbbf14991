//! What one approval-signature verification costs (docs/bench.md, issue
//! 13): `ApproverKey::verify` (ring's ECDSA P-256) next to the `p256`
//! crate's verifier it replaced, over the same keys, messages and
//! signatures, in one run.
//!
//! `cargo run --release -p ringi-policy --example verify_costs [N]`
//! (default 2000; a debug build measures the debug build).

use std::time::{Duration, Instant};

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey};
use ringi_policy::approver_key::ApproverKey;

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(at(0.5)), us(at(0.99)), us(mean))
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let cases: Vec<_> = (0..n)
        .map(|i| {
            let sk = SigningKey::random(&mut rand::rngs::OsRng);
            let message = format!("approval statement {i}").into_bytes();
            let sig: Signature = sk.sign(&message);
            let key = ApproverKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes())
                .expect("a generated key parses");
            (sk, key, message, sig)
        })
        .collect();
    let mut ring_times = Vec::with_capacity(n);
    let mut p256_times = Vec::with_capacity(n);
    for (sk, key, message, sig) in &cases {
        let start = Instant::now();
        assert!(key.verify(message, &sig.to_bytes()));
        ring_times.push(start.elapsed());
        let start = Instant::now();
        assert!(sk.verifying_key().verify(message, sig).is_ok());
        p256_times.push(start.elapsed());
    }
    println!("| ECDSA P-256 verification, µs ({n}) | p50 | p99 | mean |");
    println!("|---|---:|---:|---:|");
    for (name, times) in [
        ("`ApproverKey::verify` (ring)", ring_times),
        ("`p256` crate (before)", p256_times),
    ] {
        let (p50, p99, mean) = percentiles(times);
        println!("| {name} | {p50:.1} | {p99:.1} | {mean:.1} |");
    }
}
