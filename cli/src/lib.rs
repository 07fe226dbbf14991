//! The `ringi` command, apart from its argument parsing (`main.rs`): the
//! client of wallet-operators, approvers and operators, and the tools that
//! are not the daemon. The daemon itself is the `ringi` library
//! (`ringi serve` calls [`ringi::server::run`]).
//!
//! Client commands talk to a running coordinator over gRPC. Output goes to
//! stdout (machine-usable: hex or JSON), progress and errors to stderr. A
//! refused request exits non-zero with the coordinator's status code and
//! message.
//!
//! - [`connect`]: dialling the coordinator (or a signer), plaintext or mutual TLS.
//! - [`keys`]: `ringi keygen`, `ringi keys`, `ringi pubkey`.
//! - [`key_order`]: `ringi keys order retire|repair|sign|show` (key orders
//!   as files the admins sign) and `ringi keys retire`.
//! - [`requests`]: `ringi requests submit|list|show|wait`.
//! - [`decide`]: `ringi approve`, `ringi reject`.
//! - [`request_signature`]: a wallet's signature on the request it made.
//! - [`health`]: `ringi health`.
//! - [`audit`]: `ringi audit verify|export` (offline).
//! - [`approver`]: the approver's signing key (PKCS#11 token or development file).
//! - [`bench`]: `ringi bench`.
//! - [`bench_load`]: `ringi bench-load` (throughput through the public API).
//! - [`bench_lifecycle`]: `ringi bench-lifecycle` (refresh and repair durations).
//! - [`delay_proxy`]: a relay that answers late, for `ringi bench`.
//! - [`dev_certs`]: `ringi dev-certs`.
//! - [`freeze`]: `ringi freeze`, `ringi unfreeze`, `ringi holds` (to the signers directly).
//! - [`policy`]: `ringi policy check|approve|submit|status` (updates under the admins' quorum).
//! - [`signers`]: the signers an approver reaches directly (`--signer NAME=ADDRESS`).
//! - [`view`]: a coordinator's view of a request, decoded and checked (never trusted as sent).
//! - [`allocator`]: the process's allocator (mimalloc, its arenas committed on demand).

pub mod allocator;
pub mod approver;
pub mod audit;
pub mod bench;
pub mod bench_lifecycle;
pub mod bench_load;
pub mod bench_store;
pub mod connect;
pub mod decide;
pub mod delay_proxy;
pub mod dev_certs;
pub mod freeze;
pub mod health;
pub mod key_order;
pub mod keys;
pub mod policy;
pub mod request_signature;
pub mod requests;
pub mod retry;
pub mod signers;
pub mod status;
pub mod token;
pub mod view;

use serde::Serialize;

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// A CLI failure: its message, printed as `ringi: error: ...`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{message} ({code:?})")]
    Status { code: tonic::Code, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the coordinator at {address}: {reason}")]
    Connect { address: String, reason: String },
    /// The coordinator's answer failed a check (see [`view`]). Not a
    /// `source`, so that `{:#}` prints the reason once.
    #[error("refusing the coordinator's answer: {0}")]
    View(view::ViewError),
}

impl From<view::ViewError> for CliError {
    fn from(e: view::ViewError) -> Self {
        CliError::View(e)
    }
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        CliError::Status {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

/// Pretty JSON for stdout.
pub(crate) fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
