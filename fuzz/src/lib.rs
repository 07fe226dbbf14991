//! Fuzz harnesses for every input ringi takes from a party it does not
//! trust, as plain functions: `run(&[u8]) -> Reached` never panics on any
//! bytes, and says how deep into the checks the input got.
//!
//! Random bytes rarely get past a signature, a hash link or a certificate
//! chain, so each harness holds the secrets a legitimate party would (test
//! approver keys, a test CA, the audit chain's hashing) and uses them on the
//! fuzzer's behalf where its input asks for it: the fuzzer chooses the
//! fields, the harness makes them verifiable, and the checks behind the
//! signature are reached. Each module's doc comment names the checks it
//! reaches; its `seeds()` are valid inputs that reach the deepest of them.
//!
//! - `libfuzzer/` holds the cargo-fuzz targets (one line each: call `run`);
//!   `fuzz/run.sh` writes the seeds into their corpora and fuzzes.
//! - `tests/replay.rs` replays every seed corpus (and every saved crash in
//!   `regressions/`) as an ordinary `cargo test`, and checks the seeds reach
//!   the deepest check: a harness that cannot run, or stops short, fails CI.

pub mod approval_bundle;
pub mod audit_log;
pub mod coordinator_flow;
pub mod dkg_envelope;
pub mod dkg_peer;
pub mod dkg_round;
pub mod governance;
pub mod harness_keys;
pub mod key_lifecycle;
pub mod key_order_file;
pub mod policy_toml;
pub mod psbt_derive;
pub mod request_view;
pub mod sealed_share;
pub mod signer_responses;
pub mod signer_rounds;

/// A harness: its name (the cargo-fuzz target's), its body and its seeds.
pub struct Target {
    pub name: &'static str,
    /// Runs one input; returns the name of the deepest stage reached.
    pub run: fn(&[u8]) -> &'static str,
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every harness, for the replay test and the seed writer.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "policy_toml",
            run: |d| policy_toml::run(d).name(),
            seeds: policy_toml::seeds,
        },
        Target {
            name: "governance",
            run: |d| governance::run(d).name(),
            seeds: governance::seeds,
        },
        Target {
            name: "key_order_file",
            run: |d| key_order_file::run(d).name(),
            seeds: key_order_file::seeds,
        },
        Target {
            name: "approval_bundle",
            run: |d| approval_bundle::run(d).name(),
            seeds: approval_bundle::seeds,
        },
        Target {
            name: "audit_log",
            run: |d| audit_log::run(d).name(),
            seeds: audit_log::seeds,
        },
        Target {
            name: "sealed_share",
            run: |d| sealed_share::run(d).name(),
            seeds: sealed_share::seeds,
        },
        Target {
            name: "dkg_envelope",
            run: |d| dkg_envelope::run(d).name(),
            seeds: dkg_envelope::seeds,
        },
        Target {
            name: "signer_round1",
            run: |d| signer_rounds::round1(d).name(),
            seeds: signer_rounds::round1_seeds,
        },
        Target {
            name: "signer_round2",
            run: |d| signer_rounds::round2(d).name(),
            seeds: signer_rounds::round2_seeds,
        },
        Target {
            name: "dkg_round",
            run: |d| dkg_round::run(d).name(),
            seeds: dkg_round::seeds,
        },
        Target {
            name: "coordinator_flow",
            run: |d| coordinator_flow::run(d).name(),
            seeds: coordinator_flow::seeds,
        },
        Target {
            name: "signer_responses",
            run: |d| signer_responses::run(d).name(),
            seeds: signer_responses::seeds,
        },
        Target {
            name: "dkg_peer",
            run: |d| dkg_peer::run(d).name(),
            seeds: dkg_peer::seeds,
        },
        Target {
            name: "request_view",
            run: |d| request_view::run(d).name(),
            seeds: request_view::seeds,
        },
        Target {
            name: "key_lifecycle",
            run: |d| key_lifecycle::run(d).name(),
            seeds: key_lifecycle::seeds,
        },
        Target {
            name: "psbt_derive",
            run: |d| psbt_derive::run(d).name(),
            seeds: psbt_derive::seeds,
        },
    ]
}

/// Declares a harness's `Reached` enum, ordered from shallowest to deepest,
/// with the stage names the replay test reports.
#[macro_export]
macro_rules! stages {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }
        impl $name {
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }
        }
    };
}
