//! ringi coordinator: runs DKG and FROST signing rounds across signer nodes,
//! and the approval flow (稟議) that decides what may be signed. It holds
//! only public data.
//!
//! # Layers
//!
//! Each layer uses only the layers below it:
//!
//! 1. **Edge** — [`service`] (the gRPC handlers: access checks, decoding
//!    request messages into domain values, encoding views) and [`server`]
//!    (`ringi serve`: configuration, listeners, the sweep). Wire types of the
//!    coordinator API appear only here; [`access`] and [`config`] serve it.
//! 2. **Flow** — [`requests`]: one module per command ([`requests::submit`](mod@requests::submit),
//!    [`requests::decide`](mod@requests::decide), [`requests::sign`]), each a pure function over
//!    domain values (`admit`, `apply`, `expiry`) plus the async step that
//!    loads, records and notifies; and [`coordinator`], the state they share
//!    (registry, stores, policy, audit trail, key cache, change
//!    notifications, [`signing_runs`]: one signing run per request).
//! 3. **Engine and stores** — [`signing`] (the FROST signings of an
//!    [`approved::ApprovedRequest`]: one, or one per input of a PSBT) and
//!    [`keygen`] (the DKG), generic over the ciphersuite
//!    (`ringi_frost::Suite`, instantiated per key kind in one place each:
//!    [`signing::Key`] and [`keygen::run`]); they are the signer-client side of the
//!    edge, building the signers' wire messages and decoding their answers
//!    with pure decoders. [`registry`] names the signers. [`store`] and
//!    [`request_store`] are the storage contracts ([`store::KeyStore`],
//!    [`request_store::RequestStore`]); [`sqlite`] (embedded, the default)
//!    and [`postgres`] (shared by several coordinators) implement them, and
//!    [`store_engine`] opens the one the config names.
//! 4. **Pure rules** — [`request_state`] (the request state machine),
//!    `ringi_policy` (policy, evaluation, caps and how their usage is read
//!    from running totals, the clock), and [`error`]
//!    (what can go wrong, and its one mapping to gRPC status).
//!
//! Key lifecycle operations beside the DKG: [`refresh`], [`import`],
//! [`retire`].
//!
//! Operations: [`preflight`] asks every signer, at start and then
//! periodically, whether it can sign ([`readiness`] judges, pure), and sets
//! each key's health.
//!
//! Across the layers, [`phases`] records where a signing's time goes, and
//! [`metrics`] names what the Prometheus endpoint (`metrics_listen`) shows.
//!
//! Outside the daemon, in the `ringi-cli` crate (`cli/`): the `ringi`
//! binary and its commands, approver keys, `ringi bench`, `ringi dev-certs`.

pub mod access;
pub mod approved;
pub mod audit_reconcile;
pub mod commitment_pool;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod fault;
pub mod import;
pub mod key_gate;
pub mod keygen;
pub mod metrics;
pub mod operations_service;
pub mod phases;
pub mod policy_service;
pub mod postgres;
pub mod preflight;
pub mod readiness;
pub mod refresh;
pub mod registry;
pub mod repair;
pub mod request_state;
pub mod request_store;
pub mod request_watch;
pub mod requests;
pub mod retire;
pub mod server;
pub mod service;
pub mod sign_batches;
pub mod signer_standing;
pub mod signer_watch;
pub mod signing;
pub mod signing_claim;
pub mod signing_runs;
pub mod sqlite;
pub mod store;
pub mod store_engine;
pub mod store_writer;
pub mod token_keys;
pub mod transport_keys;
