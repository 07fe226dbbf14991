//! The `ringi` command, apart from its argument parsing (`main.rs`): the
//! client of wallet-operators, approvers and operators, and the tools that
//! are not the daemon. The daemon itself is the `ringi` library
//! (`ringi serve` calls [`ringi::server::run`]).
//!
//! - [`cli`]: the client commands (keys, requests, approve/reject, health).
//! - [`approver`]: the approver's signing key (PKCS#11 token or development file).
//! - [`bench`]: `ringi bench`.
//! - [`dev_certs`]: `ringi dev-certs`.

pub mod approver;
pub mod bench;
pub mod cli;
pub mod dev_certs;
