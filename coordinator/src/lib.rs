//! ringi coordinator: runs DKG and FROST signing rounds across signer nodes.
//! It holds only public data.
//!
//! - [`config`], [`registry`]: which signers exist and how to reach them.
//! - [`store`]: the SQLite database of keys' public data.
//! - [`keygen`]: the coordinator's side of the DKG.
//! - [`request_state`]: the life of a signing request (approvals issue, in progress).
//! - [`signing`]: one signing with any `t` reachable signers.
//! - [`service`], [`server`], [`error`]: the gRPC edge.

pub mod access;
pub mod config;
pub mod error;
pub mod keygen;
pub mod registry;
pub mod request_state;
pub mod request_store;
pub mod requests;
pub mod server;
pub mod service;
pub mod signing;
pub mod store;
