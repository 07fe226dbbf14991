//! `ringi bench`: latency of one signing over the real stack, next to the
//! in-process FROST floor measured in the same run.
//!
//! - floor: dealer-generated key with the same t and n, every signer's
//!   round 1, round 2 and the aggregation (which verifies) in this process;
//! - stack: the coordinator's signing engine in this process, driving the
//!   configured signer nodes over gRPC (token unseal, nonces, both rounds);
//! - daemon (optional): `SignMessage` through the running coordinator, one
//!   more gRPC hop.
//!
//! Calls are sequential, so the figures are latencies, not throughput.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use frost_secp256k1 as frost;
use rand::RngCore;
use rand::rngs::OsRng;

use crate::config::Config;
use crate::signing;

/// Summary of a series of timings.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub mean: Duration,
}

/// Median and 99th percentile (nearest rank) of `samples`.
pub fn summarize(mut samples: Vec<Duration>) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort();
    let rank =
        |q: f64| samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    let total: Duration = samples.iter().sum();
    Some(Summary {
        n: samples.len(),
        p50: rank(0.50),
        p99: rank(0.99),
        mean: total / samples.len() as u32,
    })
}

fn message() -> [u8; 32] {
    let mut m = [0u8; 32];
    OsRng.fill_bytes(&mut m);
    m
}

/// One in-process t-of-n signing, all signers in this process.
fn floor_once(
    t: u16,
    key_packages: &BTreeMap<frost::Identifier, frost::keys::KeyPackage>,
    public: &frost::keys::PublicKeyPackage,
) {
    let msg = message();
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for (id, kp) in key_packages.iter().take(t as usize) {
        let (n, c) = frost::round1::commit(kp.signing_share(), &mut OsRng);
        nonces.insert(*id, n);
        commitments.insert(*id, c);
    }
    let package = frost::SigningPackage::new(commitments, &msg);
    let shares: BTreeMap<_, _> = nonces
        .iter()
        .map(|(id, n)| {
            (
                *id,
                frost::round2::sign(&package, n, &key_packages[id]).expect("floor sign"),
            )
        })
        .collect();
    frost::aggregate(&package, &shares, public).expect("floor aggregate");
}

/// Measures the floor for a t-of-n key.
pub fn floor(t: u16, n: u16, iterations: usize) -> Option<Summary> {
    let (shares, public) =
        frost::keys::generate_with_dealer(n, t, frost::keys::IdentifierList::Default, OsRng)
            .ok()?;
    let key_packages: BTreeMap<_, _> = shares
        .into_iter()
        .map(|(id, s)| Ok((id, frost::keys::KeyPackage::try_from(s)?)))
        .collect::<Result<_, frost::Error>>()
        .ok()?;
    for _ in 0..iterations.min(20) {
        floor_once(t, &key_packages, &public);
    }
    let samples = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            floor_once(t, &key_packages, &public);
            start.elapsed()
        })
        .collect();
    summarize(samples)
}

fn print_row(name: &str, s: Option<Summary>) {
    match s {
        Some(s) => println!(
            "{name:<44} {:>6} {:>10.3} {:>10.3} {:>10.3}",
            s.n,
            s.p50.as_secs_f64() * 1e3,
            s.p99.as_secs_f64() * 1e3,
            s.mean.as_secs_f64() * 1e3
        ),
        None => println!("{name:<44} (no samples)"),
    }
}

pub async fn run(
    config: &Config,
    key_id: &str,
    iterations: usize,
    daemon: Option<&str>,
) -> anyhow::Result<()> {
    let coordinator = crate::server::coordinator(config)?;
    let key = coordinator.key(key_id).await?;
    let t = key.record.threshold;
    let n = key.record.signers.len() as u16;
    let warmup = iterations.min(20);

    let floor_summary = tokio::task::spawn_blocking(move || floor(t, n, iterations)).await?;

    for _ in 0..warmup {
        signing::sign(&coordinator.registry, &key, &message(), &[], None).await?;
    }
    let mut stack = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let msg = message();
        let start = Instant::now();
        signing::sign(&coordinator.registry, &key, &msg, &[], None).await?;
        stack.push(start.elapsed());
    }

    let daemon_summary = match daemon {
        Some(address) => {
            use ringi_proto::coordinator::v1 as pb;
            let channel = crate::cli::connect(address).await?;
            let mut client =
                pb::admin_signing_service_client::AdminSigningServiceClient::new(channel);
            let request = |m: [u8; 32]| pb::SignMessageRequest {
                key_id: key_id.to_string(),
                message: m.to_vec(),
                signers: vec![],
            };
            for _ in 0..warmup {
                client.sign_message(request(message())).await?;
            }
            let mut samples = Vec::with_capacity(iterations);
            for _ in 0..iterations {
                let req = request(message());
                let start = Instant::now();
                client.sign_message(req).await?;
                samples.push(start.elapsed());
            }
            summarize(samples)
        }
        None => None,
    };

    println!(
        "ringi bench: key {key_id:?}, {t}-of-{n}, {iterations} sequential signings of 32-byte messages"
    );
    println!(
        "{:<44} {:>6} {:>10} {:>10} {:>10}",
        "path", "n", "p50 ms", "p99 ms", "mean ms"
    );
    print_row("in-process FROST floor (no network, no HSM)", floor_summary);
    print_row(
        "stack: coordinator engine -> signers (gRPC)",
        summarize(stack),
    );
    if daemon.is_some() {
        print_row("daemon: client -> coordinator -> signers", daemon_summary);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = summarize(samples).unwrap();
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.n, 100);
        let one = summarize(vec![Duration::from_millis(7)]).unwrap();
        assert_eq!(
            (one.p50, one.p99),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
        assert!(summarize(vec![]).is_none());
    }

    #[test]
    fn floor_signs_with_a_dealer_key() {
        let s = floor(2, 3, 3).unwrap();
        assert_eq!(s.n, 3);
    }
}
