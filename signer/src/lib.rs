//! ringi signer node: one FROST(secp256k1) key share per key id, protected by
//! a PKCS#11 token, served over gRPC to the coordinator.
//!
//! Layout, following the data path:
//! - [`config`]: where the token is and how to log in (PIN never in argv).
//! - [`token`]: every PKCS#11 call (login, KEK, DKG transport key, objects).
//! - [`sealed_share`]: the byte format of a share sealed by the token.
//! - [`vault`]: the share vault — store, round 1, round 2 — over the token.
//! - [`nonces`]: single-use, memory-only round-1 nonces.
//! - [`rng`]: randomness hedged between the token and the OS.
//! - [`dkg`] and [`dkg_envelope`]: this node's side of key generation, with
//!   round-2 packages sealed end to end between nodes.
//! - [`authorize`]: the node's own check of a request's approvals against
//!   its pinned policy, before any token use for that request.
//! - [`node_audit`]: the node's hash-chained audit trail, checkpoints signed
//!   by its token.
//! - [`spending`]: the node's own durable spending counters and caps.
//! - [`service`], [`error`], [`server`]: the gRPC edge.

pub mod authorize;
pub mod config;
pub mod dkg;
pub mod dkg_envelope;
pub mod dkg_peer;
pub mod error;
pub mod node_audit;
pub mod nonces;
pub mod rng;
pub mod sealed_share;
pub mod server;
pub mod service;
pub mod spending;
pub mod tls_key;
pub mod token;
pub mod vault;
