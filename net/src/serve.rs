//! The serve loop of every ringi daemon: mutual TLS when configured
//! (each handshake on its own task, the configuration replaceable on
//! SIGHUP by the caller), plaintext on loopback otherwise, and in both
//! cases a clean stop on SIGINT or SIGTERM.

use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::Router;

use crate::tls::{Reloadable, incoming};
use crate::transport::{on_hangup, shutdown_signal};

/// Serves `router` on `listener` until a shutdown signal: over mutual TLS
/// with `tls` (the caller installs its own SIGHUP reload, replacing the
/// configuration inside `tls`), or in plaintext. A plaintext server still
/// takes SIGHUP, only to log that there is nothing to reload: the signal's
/// default action would end the process, and an operator's "reload" must
/// never stop a server.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    tls: Option<Reloadable<ServerConfig>>,
    what: &'static str,
) -> Result<(), tonic::transport::Error> {
    let local = listener.local_addr().ok();
    match tls {
        Some(config) => {
            tracing::info!(?local, "serving {what} over mutual TLS");
            router
                .serve_with_incoming_shutdown(incoming(listener, config), shutdown_signal())
                .await
        }
        None => {
            on_hangup(|| tracing::info!("SIGHUP: plaintext, no certificates to reload"));
            tracing::info!(?local, "serving {what} (plaintext, loopback only)");
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown_signal())
                .await
        }
    }
}
