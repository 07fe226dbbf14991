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
/// configuration inside `tls`, before calling this), or in plaintext. A
/// plaintext server still takes SIGHUP, only to log that there is nothing
/// to reload: the signal's default action would end the process, and an
/// operator's "reload" must never stop a server.
///
/// `announce` runs once every signal handler is in place and just before
/// connections are served: the daemons print their "listening on" line
/// there, which scripts and tests wait for before they signal the process.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    tls: Option<Reloadable<ServerConfig>>,
    what: &'static str,
    announce: impl FnOnce(std::net::SocketAddr),
) -> Result<(), tonic::transport::Error> {
    let local = listener.local_addr().ok();
    if tls.is_none() {
        on_hangup(|| tracing::info!("SIGHUP: plaintext, no certificates to reload"));
    }
    if let Some(addr) = local {
        announce(addr);
    }
    match tls {
        Some(config) => {
            tracing::info!(?local, "serving {what} over mutual TLS");
            router
                .serve_with_incoming_shutdown(incoming(listener, config), shutdown_signal())
                .await
        }
        None => {
            tracing::info!(?local, "serving {what} (plaintext, loopback only)");
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown_signal())
                .await
        }
    }
}
