//! The node's Prometheus metrics: every name, and one recording helper per
//! kind of event, so that a call site is one line.
//!
//! They are served only when `metrics_listen` is set
//! (`ringi_net::metrics_endpoint`); otherwise each helper is a call into
//! the `metrics` facade's no-op recorder. Label values come from this
//! code only (an RPC's name, a gRPC code, a token operation, a nonce pool,
//! a key operation): never a key id, a request, a PIN or a share.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | [`RPCS`] | counter | `rpc`, `outcome` (`ok` or the gRPC code) |
//! | [`RPC_SECONDS`] | histogram | `rpc` |
//! | [`TOKEN_SECONDS`] | histogram | `op` ([`TokenOp`]) |
//! | [`NONCES_WAITING`] | gauge | `pool` (`round1`, `preprocessed`) |
//! | [`KEY_OPERATIONS`] | counter | `operation`, `outcome` (`ok`, `refused`) |

use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// Calls to the signer API (signing, preprocessing, DKG, repair, share
/// activation), by RPC and outcome.
pub const RPCS: &str = "ringi_signer_rpcs_total";
/// The time a signer API call took on this node (queueing for a blocking
/// thread included), by RPC.
pub const RPC_SECONDS: &str = "ringi_signer_rpc_duration_seconds";
/// The time of one PKCS#11 operation, by operation.
pub const TOKEN_SECONDS: &str = "ringi_signer_token_operation_duration_seconds";
/// Round-1 nonce pairs held in memory for a round 2, by pool.
pub const NONCES_WAITING: &str = "ringi_signer_nonces_waiting";
/// Key lifecycle steps that change what this node holds, by operation and
/// outcome.
pub const KEY_OPERATIONS: &str = "ringi_signer_key_operations_total";

/// A PKCS#11 operation whose latency is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOp {
    /// AES-GCM decryption of a sealed share under the KEK (every signing).
    Unseal,
    /// AES-GCM encryption of a share under the KEK (DKG, refresh, repair).
    Seal,
    /// ECDH with the DKG transport key (sealing DKG and repair packages).
    Ecdh,
    /// C_GenerateRandom (the token's half of the hedged RNG).
    Random,
    /// ECDSA with the audit key (signed audit checkpoints).
    AuditSign,
    /// ECDSA with the TLS key (each TLS handshake).
    TlsSign,
    /// Creating a sealed share's token object.
    StoreShare,
    /// Destroying a share's token object.
    DestroyShare,
}

impl TokenOp {
    pub const ALL: [TokenOp; 8] = [
        TokenOp::Unseal,
        TokenOp::Seal,
        TokenOp::Ecdh,
        TokenOp::Random,
        TokenOp::AuditSign,
        TokenOp::TlsSign,
        TokenOp::StoreShare,
        TokenOp::DestroyShare,
    ];

    /// Its `op` label.
    pub fn label(self) -> &'static str {
        match self {
            TokenOp::Unseal => "unseal",
            TokenOp::Seal => "seal",
            TokenOp::Ecdh => "ecdh",
            TokenOp::Random => "random",
            TokenOp::AuditSign => "audit_sign",
            TokenOp::TlsSign => "tls_sign",
            TokenOp::StoreShare => "store_share",
            TokenOp::DestroyShare => "destroy_share",
        }
    }
}

/// Which store of round-1 nonces (`crate::nonces`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NoncePool {
    /// Drawn by a live round 1 (Commit) for one signing.
    #[default]
    Round1,
    /// Drawn ahead of any request (Preprocess).
    Preprocessed,
    /// Drawn ahead for live round 1s, not issued yet (`NonceReserve`).
    Reserved,
}

impl NoncePool {
    pub fn label(self) -> &'static str {
        match self {
            NoncePool::Round1 => "round1",
            NoncePool::Preprocessed => "preprocessed",
            NoncePool::Reserved => "reserved",
        }
    }
}

/// Registers every metric's help text with the recorder (call once, after
/// the endpoint is up, so a scrape explains what it shows).
pub fn describe() {
    describe_counter!(
        RPCS,
        "Signer API calls, by RPC and outcome (ok, or the gRPC code of the refusal)"
    );
    describe_histogram!(
        RPC_SECONDS,
        metrics::Unit::Seconds,
        "Time of a signer API call on this node, by RPC"
    );
    describe_histogram!(
        TOKEN_SECONDS,
        metrics::Unit::Seconds,
        "Time of one PKCS#11 token operation, by operation"
    );
    describe_gauge!(
        NONCES_WAITING,
        "Round-1 nonce pairs held in memory for a round 2, by pool"
    );
    describe_counter!(
        KEY_OPERATIONS,
        "Key lifecycle steps that change what this node holds, by operation and outcome"
    );
}

/// The `outcome` label of a call's result: `ok`, or its gRPC code in
/// snake case (`permission_denied`...).
pub fn outcome<T>(result: &Result<T, tonic::Status>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(status) => code_label(status.code()),
    }
}

fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

/// The key operation a signer API call completes, if it is one: the calls
/// after which this node holds a new, changed or fewer shares.
fn key_operation(rpc: &str) -> Option<&'static str> {
    Some(match rpc {
        "DkgFinish" => "dkg",
        "DkgCommit" => "dkg_commit",
        "RepairReceive" => "repair",
        "ActivateShare" => "activate",
        "DiscardShare" => "discard",
        _ => return None,
    })
}

/// Records one signer API call: its outcome, its time, and the key
/// operation it completes.
pub fn rpc<T>(rpc: &'static str, result: &Result<T, tonic::Status>, elapsed: Duration) {
    counter!(RPCS, "rpc" => rpc, "outcome" => outcome(result)).increment(1);
    histogram!(RPC_SECONDS, "rpc" => rpc).record(elapsed.as_secs_f64());
    if let Some(operation) = key_operation(rpc) {
        key_op(operation, result.is_ok());
    }
}

/// Records a key lifecycle step (`operation`: dkg, dkg_commit, repair,
/// activate, discard, retire, shred) and whether it succeeded.
pub fn key_op(operation: &'static str, ok: bool) {
    let outcome = if ok { "ok" } else { "refused" };
    counter!(KEY_OPERATIONS, "operation" => operation, "outcome" => outcome).increment(1);
}

/// Runs the token operation `f`, recording its time under `op`.
pub fn token_op<T>(op: TokenOp, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    histogram!(TOKEN_SECONDS, "op" => op.label()).record(start.elapsed().as_secs_f64());
    out
}

/// `n` nonce pairs entered `pool`.
pub fn nonces_added(pool: NoncePool, n: usize) {
    if n > 0 {
        gauge!(NONCES_WAITING, "pool" => pool.label()).increment(n as f64);
    }
}

/// `n` nonce pairs left `pool` (used, expired or swept).
pub fn nonces_removed(pool: NoncePool, n: usize) {
    if n > 0 {
        gauge!(NONCES_WAITING, "pool" => pool.label()).decrement(n as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_snake_case() {
        let mut labels: Vec<&str> = TokenOp::ALL.iter().map(|o| o.label()).collect();
        labels.extend([
            NoncePool::Round1.label(),
            NoncePool::Preprocessed.label(),
            NoncePool::Reserved.label(),
        ]);
        for l in &labels {
            assert!(
                l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
            );
        }
        let mut sorted = labels.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), labels.len());
    }

    #[test]
    fn outcomes_name_the_code() {
        assert_eq!(outcome(&Ok::<(), tonic::Status>(())), "ok");
        assert_eq!(
            outcome::<()>(&Err(tonic::Status::permission_denied("no quorum"))),
            "permission_denied"
        );
        assert_eq!(key_operation("DkgFinish"), Some("dkg"));
        assert_eq!(key_operation("Sign"), None);
    }
}
