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
    // A graceful stop waits for open calls to end, and a client's health
    // watch (the coordinator keeps one per signer) never ends by itself:
    // once the signal came, open calls get `SHUTDOWN_GRACE`, then the
    // server stops regardless.
    let stopping = std::sync::Arc::new(tokio::sync::Notify::new());
    let signalled = {
        let stopping = stopping.clone();
        async move {
            shutdown_signal().await;
            stopping.notify_one();
        }
    };
    let served = async {
        match tls {
            Some(config) => {
                tracing::info!(?local, "serving {what} over mutual TLS");
                router
                    .serve_with_incoming_shutdown(incoming(listener, config), signalled)
                    .await
            }
            None => {
                tracing::info!(?local, "serving {what} (plaintext, loopback only)");
                router
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signalled)
                    .await
            }
        }
    };
    tokio::select! {
        result = served => result,
        _ = async {
            stopping.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::info!("stopping with calls still open (streams such as health watches)");
            Ok(())
        }
    }
}

/// How long open calls may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
