//! The daemons' Prometheus endpoint: off unless a `metrics_listen` address
//! is configured; then plain HTTP on that address, apart from the gRPC
//! listener, answering every GET (`/metrics` by convention) with the text
//! exposition format.
//!
//! The metrics themselves are recorded through the `metrics` facade at the
//! call sites (`signer/src/metrics.rs`, `coordinator/src/metrics.rs` name
//! them); until [`serve`] installs the Prometheus recorder those calls do
//! nothing, so a node without an endpoint pays next to nothing for them.
//! The exporter and its listener are `metrics-exporter-prometheus`'s own.
//!
//! Histograms are exported as Prometheus histograms (`_bucket`, `_sum`,
//! `_count`) with the buckets [`LATENCY_BUCKETS`], not as summaries, so
//! that quantiles can be aggregated across nodes.
//!
//! Labels carry names from the code (an RPC, a phase, a rule, a signer's
//! registry name), never a secret, a PIN or anything from a request.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

/// Bucket bounds of every latency histogram, in seconds: from half a
/// millisecond (a token operation on SoftHSM) to a minute (a DKG over a
/// slow network).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on {address}: {reason}")]
    Listen { address: SocketAddr, reason: String },
    #[error("the metrics recorder cannot be set up: {0}")]
    Recorder(String),
    #[error("metrics are served already in this process")]
    AlreadyServing,
}

/// Binds `listen`, installs the Prometheus recorder as the process's
/// metrics recorder and serves scrapes on the current Tokio runtime until
/// the process ends. Call once, inside the runtime, before the gRPC
/// listener announces itself (so a bad address stops the start).
pub fn serve(listen: SocketAddr) -> Result<(), MetricsError> {
    let builder = PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets(&LATENCY_BUCKETS)
        .map_err(|e| MetricsError::Recorder(e.to_string()))?;
    let (recorder, exporter) = builder.build().map_err(|e| match e {
        metrics_exporter_prometheus::BuildError::FailedToCreateHTTPListener(reason) => {
            MetricsError::Listen {
                address: listen,
                reason,
            }
        }
        other => MetricsError::Recorder(other.to_string()),
    })?;
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::AlreadyServing)?;
    tokio::spawn(async move {
        if let Err(e) = exporter.await {
            tracing::error!(error = ?e, "the metrics endpoint stopped");
        }
    });
    tracing::info!(address = %listen, "metrics endpoint listening (GET /metrics)");
    Ok(())
}
