//! The node's health follows its token: every [`PROBE_INTERVAL`] the node
//! asks the token to do a small piece of its real work
//! ([`Token::probe`]), and reports `ringi.signer.v1.Signer` NOT_SERVING
//! while it cannot, SERVING again once it can. While it cannot, the node
//! logs in again at each probe ([`Token::recover`]): a token that comes
//! back has lost the node's sessions and login. It stops trying if the PIN
//! is refused, so that it never locks the token.
//!
//! Why: a node whose HSM is gone (unplugged, its network down, its slot
//! removed) still answers gRPC, and without this a coordinator would
//! learn it only when a signing fails after the approvals. The
//! coordinator's health watch and pre-flight read this status
//! (`coordinator/src/signer_watch.rs`, `coordinator/src/preflight.rs`).

use std::sync::Arc;
use std::time::Duration;

use ringi_net::ops::HealthReporter;
use ringi_net::ops::ServingStatus;

use crate::token::{Token, TokenError};

/// Time between two probes.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// The service whose health follows the token.
pub const SERVICE: &str = "ringi.signer.v1.Signer";

/// Probes the token for the life of the process.
pub fn spawn(token: Arc<Token>, reporter: HealthReporter) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut serving = true;
        let mut may_log_in = true;
        loop {
            tick.tick().await;
            let t = token.clone();
            let recover = !serving && may_log_in;
            let probed = match tokio::task::spawn_blocking(move || {
                if recover {
                    t.recover()?;
                }
                t.probe()
            })
            .await
            {
                Ok(Err(e @ TokenError::BadPin(_))) => {
                    tracing::error!(error = %e, "the token refuses the PIN now: not logging in again (restart the node with the right PIN)");
                    may_log_in = false;
                    Err(e.to_string())
                }
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(e) => Err(format!("probe task failed: {e}")),
            };
            match (&probed, serving) {
                (Err(reason), true) => {
                    tracing::error!(reason = %reason, "token unavailable: reporting NOT_SERVING");
                    reporter
                        .set_service_status(SERVICE, ServingStatus::NotServing)
                        .await;
                    serving = false;
                }
                (Ok(()), false) => {
                    tracing::info!("token available again: reporting SERVING");
                    reporter
                        .set_service_status(SERVICE, ServingStatus::Serving)
                        .await;
                    serving = true;
                }
                _ => {}
            }
        }
    });
}
