//! How ringi's nodes talk to each other, shared by the signer and the
//! coordinator so both edges behave alike:
//!
//! - [`tls`]: mutual TLS 1.3 (rustls, ring), certificates from one CA, the
//!   peer named by its certificate, configurations reloadable on SIGHUP;
//! - [`peer`]: the name a served connection's certificate carries, read
//!   once per connection and handed to each of its calls;
//! - [`transport`]: where plaintext is allowed (loopback only) and the
//!   process signals (shutdown, reload);
//! - [`serve`]: the one serve loop both daemons run (TLS or plaintext,
//!   until SIGINT/SIGTERM);
//! - [`ops`]: `grpc.health.v1` and server reflection;
//! - [`instance_lock`]: one serving process per data directory;
//! - [`memory`]: the allocator settings that keep a daemon's memory flat;
//! - [`logging`]: the daemons' log subscriber (`--log-format text|json`);
//! - [`metrics_endpoint`]: the Prometheus endpoint (`metrics_listen`), off
//!   by default.
//!
//! Nothing here knows what a key, a share or a request is: the layer above
//! (`ringi-signer`, `ringi`) brings the services; the layer below
//! (`ringi-proto`) brings the contracts.

pub mod instance_lock;
pub mod logging;
pub mod memory;
pub mod metrics_endpoint;
pub mod ops;
pub mod peer;
pub mod serve;
pub mod tls;
pub mod transport;
