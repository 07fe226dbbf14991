//! What the token operations of a key lifecycle cost on SoftHSM2, one at a
//! time, on a fresh token in a temporary directory (docs/bench.md, "Key
//! lifecycle"): the ECDH of one sealed envelope (DKG round 2, refresh,
//! repair), the AES-GCM seal and unseal of a share under the KEK, and a
//! share object's creation and destruction, with few and with many share
//! objects on the token (SoftHSM's file store looks objects up by scanning
//! them).
//!
//! `cargo run -p ringi-signer --example token_costs [N]` (default 200). The
//! work is SoftHSM's, compiled C++: a debug build of this driver measures
//! the same.

use std::process::Command;
use std::time::{Duration, Instant};

use ringi_signer::token::{Token, TokenConfig};
use secrecy::SecretString;

const PIN: &str = "1234";

fn module() -> anyhow::Result<String> {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(str::to_string)
    .ok_or_else(|| anyhow::anyhow!("SoftHSM2 not found: run softhsm-setup/install-deps.sh"))
}

/// Creates and opens one token per label in `dir` (SOFTHSM2_CONF is set
/// here, before PKCS#11 is initialised, with no other thread running).
fn tokens(dir: &std::path::Path, labels: &[&str]) -> anyhow::Result<Vec<Token>> {
    std::fs::create_dir(dir.join("tokens"))?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )?;
    // SAFETY: single-threaded so far: nothing reads the environment at once.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    let module = module()?;
    let mut opened = Vec::new();
    for label in labels {
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", PIN, "--so-pin", "5678"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "softhsm2-util: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for label in labels {
        let token = Token::open(&TokenConfig {
            module: module.clone().into(),
            token_label: label.to_string(),
            pin: SecretString::from(PIN),
        })?;
        token.initialize_keys()?;
        opened.push(token);
    }
    Ok(opened)
}

fn row(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = samples.iter().sum::<Duration>() / samples.len().max(1) as u32;
    println!(
        "{name:<58} {:>5} {:>9.0} {:>9.0} {:>9.0}",
        samples.len(),
        us(samples[samples.len() / 2]),
        us(samples[(samples.len() * 99).div_ceil(100).max(1) - 1]),
        us(mean)
    );
}

fn timed(
    n: usize,
    mut f: impl FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    (0..n)
        .map(|i| {
            let start = Instant::now();
            f(i)?;
            Ok(start.elapsed())
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|_| anyhow::anyhow!("N must be a positive number, got {a:?}"))?,
        None => 200,
    };
    anyhow::ensure!(n > 0, "N must be at least 1");
    let dir = tempfile::tempdir()?;
    let pair = tokens(dir.path(), &["node-a", "node-b"])?;
    let (a, b) = (&pair[0], &pair[1]);
    let peer = b.dkg_public_key()?;
    // A sealed share is a few hundred bytes (share, header, public package).
    let share = vec![7u8; 400];
    let iv = [1u8; 12];

    println!(
        "{:<58} {:>5} {:>9} {:>9} {:>9}",
        "token operation (SoftHSM2, one at a time)", "n", "p50 µs", "p99 µs", "mean µs"
    );
    a.dkg_shared_secret(&peer)?;
    row(
        "ECDH derive (one sealed envelope, either end)",
        timed(n, |_| {
            a.dkg_shared_secret(&peer).map(drop).map_err(Into::into)
        })?,
    );
    let sealed = a.seal(&iv, b"aad", &share)?;
    row(
        "AES-256-GCM seal of a share under the KEK",
        timed(n, |_| {
            a.seal(&iv, b"aad", &share).map(drop).map_err(Into::into)
        })?,
    );
    row(
        "AES-256-GCM unseal of a share under the KEK",
        timed(n, |_| {
            a.unseal(&iv, b"aad", &sealed).map(drop).map_err(Into::into)
        })?,
    );
    let mut on_token = 0;
    for held in [0usize, 50] {
        while on_token < held {
            a.store_share(&format!("held-{on_token}"), 0, &sealed)?;
            on_token += 1;
        }
        // One created then destroyed at a time: `held` others throughout.
        let (mut stores, mut destroys) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let label = format!("k-{held}-{i}");
            let start = Instant::now();
            a.store_share(&label, 0, &sealed)?;
            stores.push(start.elapsed());
            let start = Instant::now();
            anyhow::ensure!(a.destroy_share(&label, 0)?, "no share {label}");
            destroys.push(start.elapsed());
        }
        row(
            &format!("share object created ({held} other shares on the token)"),
            stores,
        );
        row(
            &format!("share object destroyed ({held} other shares on the token)"),
            destroys,
        );
    }
    Ok(())
}
