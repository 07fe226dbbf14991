//! Starting the node: open the token, open the vault, bind, serve until
//! SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use ringi_proto::signer::v1::signer_server::SignerServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::dkg::DkgRuns;
use crate::node_audit::{CHECKPOINT_INTERVAL, NodeAudit};
use crate::service::SignerService;
use crate::spending::SpendingLedger;
use crate::token::{Token, TokenConfig};
use crate::vault::{ShareVault, TokenVault};
use ringi_policy::policy::Policy;

/// How often expired round-1 nonces are deleted.
const NONCE_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);

/// Opens the token and vault, then serves `ringi.signer.v1` on `listen`
/// until a shutdown signal. Prints `ringi-signer listening on ADDR` on
/// stdout once the socket is bound (scripts and tests wait for that line).
/// What `ringi-signer serve` needs besides the token.
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub policy: Policy,
    /// The node's spending ledger (SQLite file).
    pub ledger_path: std::path::PathBuf,
    /// The node's audit log (JSON lines).
    pub audit_path: std::path::PathBuf,
    pub daily_volume_file: Option<std::path::PathBuf>,
}

pub async fn run(token_config: TokenConfig, settings: ServeSettings) -> anyhow::Result<()> {
    let ServeSettings {
        listen,
        policy,
        ledger_path,
        audit_path,
        daily_volume_file,
    } = settings;
    ringi_proto::transport::check_plaintext_listen(listen)?;
    let ledger = Arc::new(SpendingLedger::open(&ledger_path)?);
    tracing::info!(ledger = %ledger_path.display(), "spending ledger opened");
    tracing::info!(policy_sha256 = %hex::encode(policy.hash()), "approval policy pinned");
    let (vault, dkg, audit) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let token = Arc::new(Token::open(&token_config)?);
        let vault: Arc<TokenVault> = Arc::new(TokenVault::open(token.clone())?);
        let dkg = Arc::new(DkgRuns::new(vault.clone(), token.clone())?);
        let audit = Arc::new(NodeAudit::open(&audit_path, token)?);
        Ok((vault, dkg, audit))
    })
    .await??;
    audit.record(
        "node_started",
        &[
            ("policy_sha256", hex::encode(policy.hash())),
            ("dkg_public_key", hex::encode(dkg.public_key())),
            ("audit_key", audit.public_key().to_string()),
        ],
    )?;
    tracing::info!(audit_key = %audit.public_key(), "audit log opened");
    let checkpointer = audit.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
        loop {
            tick.tick().await;
            let a = checkpointer.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || a.checkpoint_if_new()).await {
                tracing::error!(error = %e, "audit checkpoint failed");
            }
        }
    });
    let shares = vault.shares();
    tracing::info!(
        key_shares = shares.len(),
        dkg_public_key = %hex::encode(dkg.public_key()),
        "token opened"
    );
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    println!("ringi-signer listening on {local}");
    tracing::info!(%local, "serving ringi.signer.v1 (plaintext, loopback only)");
    // Unused nonces are deleted when they expire, not only when the store fills.
    let sweeper = vault.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(NONCE_SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            let swept = sweeper.sweep_expired_nonces();
            if swept > 0 {
                tracing::info!(swept, "expired round-1 nonces deleted");
            }
        }
    });
    let vault: Arc<dyn ShareVault> = vault;
    let service = SignerService::new(
        vault,
        dkg,
        Arc::new(policy),
        ledger,
        daily_volume_file,
        audit.clone(),
    );
    let incoming = TcpListenerStream::new(listener);
    let (health, reflection) =
        ringi_proto::ops::health_and_reflection(&["ringi.signer.v1.Signer"]).await?;
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health)
        .add_service(reflection)
        .add_service(SignerServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown_signal())
        .await?;
    if let Err(e) = audit.checkpoint_if_new() {
        tracing::error!(error = %e, "final audit checkpoint failed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
