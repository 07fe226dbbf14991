//! ringi signer node: one FROST(secp256k1) key share per key id, protected by
//! a PKCS#11 token, served over gRPC to the coordinator.
//!
//! Layering: plain functions over domain types ← the gRPC edge. Everything
//! below the edge speaks `KeyId`, policy types and frost-core types generic
//! over the ciphersuite ([`ringi_frost::Suite`]), and returns its own error
//! enum; only [`service`], [`error`] and [`server`] know tonic and protobuf.
//!
//! Plain functions, following the data path:
//! - [`config`]: where the token is and how to log in (PIN never in argv).
//! - [`token`]: every PKCS#11 call (login, KEK, DKG transport keys, objects).
//! - [`sealed_share`]: the byte format of a share sealed by the token.
//! - [`vault`]: the share vault — store, round 1, round 2 — over the token.
//! - [`nonces`]: single-use, memory-only round-1 nonces.
//! - [`rng`]: randomness hedged between the token and the OS.
//! - [`dkg`] and [`dkg_envelope`]: this node's side of key generation, with
//!   round-2 packages sealed end to end between nodes; [`dkg_peer`]: the
//!   peers' attested transport keys under mutual TLS; [`refresh_vote`]: the
//!   votes without which no node switches to (or drops) a refreshed share.
//! - [`authorize`]: the node's own check of a request's approvals against
//!   its pinned policy, before any token use for that request.
//! - [`spending`]: the node's own durable spending counters and caps.
//! - [`node_audit`]: the node's hash-chained audit trail, checkpoints signed
//!   by its token, behind the [`node_audit::AuditSink`] trait.
//! - [`signing`]: what the two signing rounds share (their context and
//!   error); [`round1`] and [`round2`]: the signing rounds (RFC 9591
//!   sections 5.1 and 5.2), each the whole sequence of checks before
//!   anything leaves the node.
//! - [`retirement`]: destroying the shares of retired keys once their
//!   grace period is over ([`holds`] keeps the retirements).
//! - [`tls_key`]: the node's TLS key, kept in the token.
//! - [`token_health`]: the node's gRPC health follows its token.
//! - [`transport_key`]: DKG transport keys on secp256k1 or P-256, one
//!   curve per run.
//! - [`phases`]: the rounds' time per phase, sent back with each answer.
//! - [`metrics`]: the node's Prometheus metrics (names and recording
//!   helpers), served when `metrics_listen` is set.
//! - `test_doubles` (unit tests, or feature `test-doubles`): an in-memory
//!   vault and audit trail and throwaway approvers, never for production.
//!
//! The gRPC edge:
//! - [`service`]: thin handlers: decode the wire into domain types, call a
//!   plain function on a blocking thread, encode, audit refusals;
//! - [`error`]: the one mapping of every error enum above to a status;
//! - [`server`]: opening the token, choosing the ciphersuite
//!   ([`server::FrostSuite`], [`server::TaprootSuite`]), serving.

pub mod audit_outbox;
pub mod authorize;
pub mod config;
pub mod dkg;
pub mod dkg_envelope;
pub mod dkg_peer;
pub mod error;
pub mod fault;
pub mod governance;
pub mod holds;
pub mod instance_lock;
pub mod metrics;
pub mod node_audit;
pub mod nonces;
pub mod phases;
pub mod preprocess;
pub mod refresh_vote;
pub mod releases;
pub mod repair;
pub mod retirement;
pub mod rng;
pub mod round1;
pub mod round2;
pub mod sealed_share;
pub mod server;
pub mod service;
pub mod signing;
pub mod spending;
#[cfg(any(test, feature = "test-doubles"))]
pub mod test_doubles;
pub mod tls_key;
pub mod token;
pub mod token_health;
pub mod transport_key;
pub mod vault;
