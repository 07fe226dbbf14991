//! Where plaintext gRPC is allowed, and how every ringi server is stopped.
//!
//! Without mutual TLS configured, ringi speaks plaintext gRPC, and only over
//! loopback (the demo and the tests on one host): a listener on, or a connection to, any other address is refused
//! before a socket is opened. A hostname counts as loopback only if every
//! address it resolves to is loopback (so `localhost` passes, a name that
//! also resolves to a LAN address does not).

use std::net::{SocketAddr, ToSocketAddrs};

/// Why an address was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransportError {
    #[error(
        "refusing to {action} {addr} in plaintext: without TLS, ringi only uses loopback addresses (127.0.0.0/8, ::1)"
    )]
    NotLoopback { action: &'static str, addr: String },
    #[error("cannot parse address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
}

/// Checks that a plaintext listener may bind `addr`.
pub fn check_plaintext_listen(addr: SocketAddr) -> Result<(), TransportError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(TransportError::NotLoopback {
            action: "listen on",
            addr: addr.to_string(),
        })
    }
}

/// Checks that a plaintext client may dial `endpoint`, given as `host:port`
/// or `http://host:port`. Returns the `http://` URI to dial.
pub fn check_plaintext_dial(endpoint: &str) -> Result<String, TransportError> {
    let host_port = endpoint.strip_prefix("http://").unwrap_or(endpoint);
    let host_port = host_port.trim_end_matches('/');
    if host_port.is_empty() || host_port.contains('/') || endpoint.starts_with("https://") {
        return Err(TransportError::BadAddress {
            addr: endpoint.to_string(),
            reason: "expected host:port or http://host:port".into(),
        });
    }
    let resolved: Vec<SocketAddr> = host_port
        .to_socket_addrs()
        .map_err(|e| TransportError::BadAddress {
            addr: endpoint.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    if resolved.is_empty() || !resolved.iter().all(|a| a.ip().is_loopback()) {
        return Err(TransportError::NotLoopback {
            action: "connect to",
            addr: endpoint.to_string(),
        });
    }
    Ok(format!("http://{host_port}"))
}

/// Resolves on SIGINT or SIGTERM: every ringi server stops on either.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Calls `reload` (on a blocking thread) at every SIGHUP, for as long as
/// the process runs: the conventional "re-read your files" signal, used to
/// rotate TLS certificates without a restart. The handler is registered
/// before this returns (a SIGHUP a moment later is a reload, never the
/// signal's default action, which ends the process), so call it before
/// announcing that the server listens.
pub fn on_hangup(reload: impl Fn() + Send + Sync + 'static) {
    let reload = std::sync::Arc::new(reload);
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; certificates reload only at restart");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let reload = reload.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || reload()).await {
                tracing::error!(error = %e, "reload failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_accepts_loopback_only() {
        assert!(check_plaintext_listen("127.0.0.1:0".parse().unwrap()).is_ok());
        assert!(check_plaintext_listen("[::1]:7000".parse().unwrap()).is_ok());
        let err = check_plaintext_listen("0.0.0.0:7000".parse().unwrap()).unwrap_err();
        assert!(matches!(
            err,
            TransportError::NotLoopback {
                action: "listen on",
                ..
            }
        ));
        assert!(check_plaintext_listen("10.1.2.3:7000".parse().unwrap()).is_err());
    }

    #[test]
    fn dial_accepts_loopback_forms() {
        assert_eq!(
            check_plaintext_dial("127.0.0.1:7101").unwrap(),
            "http://127.0.0.1:7101"
        );
        assert_eq!(
            check_plaintext_dial("http://127.0.0.1:7101/").unwrap(),
            "http://127.0.0.1:7101"
        );
        assert_eq!(
            check_plaintext_dial("localhost:7101").unwrap(),
            "http://localhost:7101"
        );
    }

    #[test]
    fn dial_refuses_other_addresses() {
        assert!(matches!(
            check_plaintext_dial("192.0.2.7:7101"),
            Err(TransportError::NotLoopback { .. })
        ));
        assert!(matches!(
            check_plaintext_dial("https://127.0.0.1:7101"),
            Err(TransportError::BadAddress { .. })
        ));
        assert!(matches!(
            check_plaintext_dial("127.0.0.1"),
            Err(TransportError::BadAddress { .. })
        ));
        assert!(matches!(
            check_plaintext_dial(""),
            Err(TransportError::BadAddress { .. })
        ));
    }
}
