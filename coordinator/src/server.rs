//! `ringi serve`: the coordinator daemon.

use std::sync::Arc;

use ringi_proto::coordinator::v1::admin_signing_service_server::AdminSigningServiceServer;
use ringi_proto::coordinator::v1::key_service_server::KeyServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::Config;
use crate::registry::Registry;
use crate::service::{AdminSigningService, Coordinator, KeyService};
use crate::store::Store;

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "ringi.sqlite3";

/// Builds the coordinator state from the config (registry checked, database
/// opened and migrated).
pub fn coordinator(config: &Config) -> anyhow::Result<Arc<Coordinator>> {
    let registry = Registry::new(&config.signers)?;
    let db = config.data_dir()?.join(DATABASE_FILE);
    let store = Arc::new(Store::open(&db)?);
    tracing::info!(signers = registry.len(), database = %db.display(), "coordinator state ready");
    Ok(Arc::new(Coordinator::new(registry, store)))
}

/// Serves until SIGINT/SIGTERM. Prints `ringi listening on ADDR` on stdout
/// once bound.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.listen();
    ringi_proto::transport::check_plaintext_listen(listen)?;
    let coordinator = coordinator(&config)?;
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    println!("ringi listening on {local}");
    tracing::info!(%local, "serving ringi.coordinator.v1 (plaintext, loopback only)");
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(KeyServiceServer::new(KeyService(coordinator.clone())))
        .add_service(AdminSigningServiceServer::new(AdminSigningService(
            coordinator,
        )))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
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
