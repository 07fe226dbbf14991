//! Whether each signer is reachable right now, learnt from a standing
//! `grpc.health.v1.Health/Watch` stream per signer, not from a failed
//! signing.
//!
//! Why: one-round signing sends round 2 to `t` signers at once with their
//! preprocessed commitments ([`crate::commitment_pool`]). If one of them is
//! down, the others release their shares for a package that cannot
//! complete, and the next package must leave them or it out
//! (`signer/src/releases.rs`): a signer that died while idle would cost the
//! next request a package. A signer process that stops closes its
//! connections, so its watch stream breaks at once: its pools are dropped
//! and kept empty ([`CommitmentPools::set_reachable`]) until a watch
//! answers `SERVING` again, and meanwhile the engine asks it for a live
//! round 1, which fails before anything is released.
//!
//! What it does not see: a host that vanishes without closing its
//! connections (a cable pulled) is noticed only when a call to it fails.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::commitment_pool::CommitmentPools;
use crate::registry::Registry;

/// The service a signer reports on.
pub const SIGNER_SERVICE: &str = "ringi.signer.v1.Signer";
/// Pause before watching again after a failed watch call.
pub const RETRY: Duration = Duration::from_millis(500);

/// Starts one watch per registered signer, for the life of the process,
/// if called inside a Tokio runtime (otherwise nothing is watched and every
/// signer counts as reachable).
pub fn spawn(registry: &Registry) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if crate::fault::no_signer_watch() {
        tracing::warn!("test fault: signers' health is not watched");
        return;
    }
    for signer in registry.signers() {
        runtime.spawn(watch(
            signer.name.clone(),
            signer.channel.clone(),
            registry.pools().clone(),
        ));
    }
}

/// Watches `name` until the process ends.
async fn watch(name: String, channel: Channel, pools: Arc<CommitmentPools>) {
    let mut client = HealthClient::new(channel);
    loop {
        let call = client
            .watch(HealthCheckRequest {
                service: SIGNER_SERVICE.to_string(),
            })
            .await;
        let mut stream = match call {
            Ok(response) => response.into_inner(),
            Err(status) => {
                crate::metrics::signer_up(&name, false);
                if pools.set_reachable(&name, false) {
                    tracing::warn!(signer = %name, code = ?status.code(), reason = status.message(), "signer unreachable: its preprocessed commitments are dropped until it answers again");
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // Each status change, until the stream ends (the signer stopped or
        // the connection broke): then watch again at once; only a watch
        // call that fails marks the signer unreachable.
        while let Ok(Some(update)) = stream.message().await {
            let serving = update.status == ServingStatus::Serving as i32;
            crate::metrics::signer_up(&name, serving);
            if pools.set_reachable(&name, serving) && serving {
                tracing::info!(signer = %name, "signer reachable");
            }
        }
    }
}
