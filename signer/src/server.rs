//! Starting the node: open the token, open the vault, bind, serve until
//! SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use ringi_proto::signer::v1::governance_server::GovernanceServer;
use ringi_proto::signer::v1::signer_server::SignerServer;
use tokio::net::TcpListener;

use crate::dkg::DkgRuns;
use crate::dkg_peer::{Attestation, OwnAttestations, PeerCheck, Peers};
use crate::governance::GovernanceService;
use crate::holds::HoldStore;
use crate::node_audit::NodeAudit;
use crate::service::{SignerService, SuiteService};
use crate::signing::SigningContext;
use crate::spending::SpendingLedger;
use crate::tls_key::TokenTlsKey;
use crate::token::{Token, TokenConfig};
use crate::vault::{ShareVault, TokenVault};
use ringi_net::tls::Reloadable;
use ringi_policy::clock::now;
use ringi_policy::policy::Policy;
use ringi_policy::policy_store::PolicyStore;

/// The ciphersuites of the keys this node serves, one per key kind, chosen
/// here and only here: RFC 9591 FROST(secp256k1, SHA-256) for
/// `frost-secp256k1` keys, and FROST-secp256k1-TR (BIP-340, tweaked for the
/// BIP-341 key path) for `bitcoin-taproot` keys. The vault, nonces, rounds
/// and DKG are generic over [`ringi_frost::Suite`]; each suite is one
/// instantiation over the same token, and the service dispatches a call by
/// the kind of the key it names.
pub type FrostSuite = ringi_frost::Secp256k1;
pub type TaprootSuite = ringi_frost::taproot::Secp256k1Tr;

/// One suite's vault and DKG runs over the node's token.
struct Opened<S: ringi_frost::Suite> {
    vault: Arc<TokenVault<S>>,
    dkg: Arc<DkgRuns<S>>,
}

impl<S: ringi_frost::Suite> Opened<S> {
    fn open(token: &Arc<Token>) -> anyhow::Result<Self> {
        let vault: Arc<TokenVault<S>> = Arc::new(TokenVault::open(token.clone())?);
        let dkg = Arc::new(DkgRuns::<S>::new(vault.clone(), token.clone())?);
        Ok(Opened { vault, dkg })
    }

    /// The suite's part of the service, over the node's shared policy,
    /// ledger and audit log.
    fn service(
        &self,
        policy: &Arc<PolicyStore>,
        ledger: &Arc<SpendingLedger>,
        daily_volume_file: &Option<std::path::PathBuf>,
        audit: &Arc<NodeAudit>,
        holds: &Arc<HoldStore>,
    ) -> SuiteService<S> {
        let vault: Arc<dyn ShareVault<S>> = self.vault.clone();
        SuiteService::new(
            SigningContext::new(
                vault,
                policy.clone(),
                ledger.clone(),
                daily_volume_file.clone(),
                audit.clone(),
                holds.clone(),
            ),
            self.dkg.clone(),
        )
    }
}

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
    /// The vetoes and freezes sent to this node (SQLite file).
    pub holds_path: std::path::PathBuf,
    /// The policy updates this node accepted (SQLite file).
    pub policy_store_path: std::path::PathBuf,
    pub daily_volume_file: Option<std::path::PathBuf>,
    /// Mutual TLS; without it the node serves plaintext on loopback only.
    pub tls: Option<TlsSettings>,
    /// Where to serve Prometheus metrics; `None`: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
}

/// The node's TLS identity: a certificate for its token's TLS key, the CA
/// its clients must be certified by, and the client names it serves.
pub struct TlsSettings {
    pub cert: std::path::PathBuf,
    pub ca: std::path::PathBuf,
    pub allowed_clients: Vec<String>,
    /// The other signers this node runs a DKG with, by certified name;
    /// `None`: any certified name except `allowed_clients`.
    pub dkg_peers: Option<Vec<String>>,
}

/// File name of the audit log inside the node's data directory.
pub const AUDIT_FILE: &str = "audit.jsonl";
/// The node's vetoes and freezes, in its data directory (`crate::holds`).
pub const HOLDS_FILE: &str = "holds.sqlite3";
/// The policy updates the node accepted (`crate::policy_store`).
pub const POLICY_STORE_FILE: &str = "policy.sqlite3";

pub async fn run(token_config: TokenConfig, settings: ServeSettings) -> anyhow::Result<()> {
    let ServeSettings {
        listen,
        policy,
        ledger_path,
        audit_path,
        holds_path,
        policy_store_path,
        daily_volume_file,
        tls,
        metrics_listen,
    } = settings;
    if tls.is_none() {
        ringi_net::transport::check_plaintext_listen(listen)?;
    }
    // First, so that the token's and the vault's first operations count.
    if let Some(address) = metrics_listen {
        ringi_net::metrics_endpoint::serve(address)?;
        crate::metrics::describe();
    }
    // Certificates are read before anything else is opened, so a bad path
    // is reported at once.
    let tls_files = match &tls {
        Some(t) => Some((
            ringi_net::tls::load_certs(&t.cert)?,
            ringi_net::tls::load_certs(&t.ca)?,
            t.allowed_clients.clone(),
        )),
        None => None,
    };
    let dkg_peers = tls.as_ref().map(|t| match &t.dkg_peers {
        Some(names) => Peers::Only(names.clone()),
        None => Peers::AnyExcept(t.allowed_clients.clone()),
    });
    let ledger = Arc::new(SpendingLedger::open(&ledger_path)?);
    tracing::info!(ledger = %ledger_path.display(), "spending ledger opened");
    let holds = Arc::new(HoldStore::open(&holds_path)?);
    {
        let h = holds.snapshot();
        tracing::info!(
            holds = %holds_path.display(),
            freezes = h.freezes().count(),
            vetoed_requests = h.veto_count(),
            retired_keys = h.retirements().count(),
            "hold store opened"
        );
    }
    tracing::info!(policy_sha256 = %hex::encode(policy.hash()), "approval policy pinned");
    let tls_chain = tls_files.clone();
    let peers_at_start = dkg_peers.clone();
    let log_path = audit_path.clone();
    let (frost, taproot, audit, token, _token_lock) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let tls_files = tls_chain;
        let token = Arc::new(Token::open(&token_config)?);
        // One serving process per token, before anything is written.
        let token_lock = crate::instance_lock::token(
            &token_config.module,
            &token_config.token_label,
            &token.serial_number()?,
        )?;
        let frost = Opened::<FrostSuite>::open(&token)?;
        let taproot = Opened::<TaprootSuite>::open(&token)?;
        if let (Some((chain, ca, _)), Some(peers)) = (&tls_files, peers_at_start) {
            let (check, own) = dkg_peer_check(&token, frost.dkg.own_keys(), chain, ca, peers)?;
            tracing::info!(name = %own.0, peers = ?check.peers(), "DKG peers must attest their transport keys");
            frost.dkg.set_peer_check(check.clone(), own.1.clone());
            taproot.dkg.set_peer_check(check, own.1);
        }
        let audit = Arc::new(NodeAudit::open(&audit_path, token.clone())?);
        Ok((frost, taproot, audit, token, token_lock))
    })
    .await??;
    // Entries the ledger kept with releases that the log lost or never got
    // (a crash between the two), appended before anything else is written
    // (crate::audit_outbox).
    let recovered = {
        let (ledger, audit, path) = (ledger.clone(), audit.clone(), log_path);
        tokio::task::spawn_blocking(move || {
            crate::audit_outbox::reconcile(&ledger, audit.as_ref(), &path)
        })
        .await??
    };
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "audit entries of released shares recovered from the ledger into the audit log"
        );
    }
    audit.record(
        "node_started",
        &[
            ("policy_sha256", hex::encode(policy.hash())),
            ("dkg_public_key", hex::encode(frost.dkg.public_key())),
            (
                "dkg_transport_curves",
                transport_curves(frost.dkg.own_keys()),
            ),
            ("audit_key", audit.public_key().to_string()),
        ],
    )?;
    tracing::info!(audit_key = %audit.public_key(), "audit log opened");
    let checkpointer = audit.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ringi_policy::audit::CHECKPOINTS.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !checkpointer.checkpoint_due() {
                continue;
            }
            let a = checkpointer.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || a.checkpoint_if_new()).await {
                tracing::error!(error = %e, "audit checkpoint failed");
            }
        }
    });
    tracing::info!(
        frost_secp256k1_shares = frost.vault.shares().len(),
        bitcoin_taproot_shares = taproot.vault.shares().len(),
        dkg_public_key = %hex::encode(frost.dkg.public_key()),
        dkg_transport_curves = %transport_curves(frost.dkg.own_keys()),
        "token opened"
    );
    let listener = TcpListener::bind(listen).await?;
    // Unused nonces are deleted when they expire, not only when the store fills.
    let sweepers = (frost.vault.clone(), taproot.vault.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(NONCE_SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            let swept = sweepers.0.sweep_expired_nonces() + sweepers.1.sweep_expired_nonces();
            if swept > 0 {
                tracing::info!(swept, "expired round-1 nonces deleted");
            }
        }
    });
    let dkg_for_reload = (frost.dkg.clone(), taproot.dkg.clone());
    let pinned_hash = policy.hash();
    let policy = Arc::new(PolicyStore::open(&policy_store_path, policy, now())?);
    {
        let current = policy.current(now());
        if current.hash() != pinned_hash {
            tracing::info!(
                pinned = %hex::encode(pinned_hash),
                in_force = %hex::encode(current.hash()),
                sequence = current.sequence(),
                "policy rolled forward by admin-signed updates"
            );
        }
    }
    let service = SignerService::new(
        frost.service(&policy, &ledger, &daily_volume_file, &audit, &holds),
        taproot.service(&policy, &ledger, &daily_volume_file, &audit, &holds),
    );
    // Retired keys: their shares are destroyed once due, at start (a node
    // down when the grace period ended) and within a sweep interval after.
    let shredder = Arc::new(crate::retirement::Shredder::new(
        holds.clone(),
        frost.vault.clone(),
        taproot.vault.clone(),
        audit.clone(),
    ));
    {
        let s = shredder.clone();
        let results = tokio::task::spawn_blocking(move || s.sweep(now())).await?;
        crate::retirement::log(&results);
        let mut tick = tokio::time::interval(crate::retirement::SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::spawn(async move {
            loop {
                tick.tick().await;
                if !shredder.any_due(now()) {
                    continue;
                }
                let s = shredder.clone();
                match tokio::task::spawn_blocking(move || s.sweep(now())).await {
                    Ok(results) => crate::retirement::log(&results),
                    Err(e) => tracing::error!(error = %e, "retired-key sweep failed"),
                }
            }
        });
    }
    let shares: crate::governance::ShareLookup = {
        let (f, t) = (frost.vault.clone(), taproot.vault.clone());
        Arc::new(move |key_id| {
            if f.contains(key_id.as_str()) {
                Some(ringi_frost::KeyKind::FrostSecp256k1)
            } else if t.contains(key_id.as_str()) {
                Some(ringi_frost::KeyKind::BitcoinTaproot)
            } else {
                None
            }
        })
    };
    let governance = GovernanceService::new(policy.clone(), holds.clone(), audit.clone())
        .with_share_lookup(shares);
    let (health_reporter, health, reflection) = ringi_net::ops::health_and_reflection(&[
        "ringi.signer.v1.Signer",
        "ringi.signer.v1.Governance",
    ])
    .await?;
    // From now on the signer API's health follows the token.
    crate::token_health::spawn(token.clone(), health_reporter);
    // Under TLS only the allowed client identities (the coordinator) may
    // call the signer API; health and reflection answer any client the CA
    // certified.
    let mut allowed = tls_files
        .as_ref()
        .map(|(_, _, allowed)| ringi_net::tls::allow_only(allowed.clone()));
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health)
        .add_service(reflection)
        // Any certified client: a decision's authority is its signature
        // (see crate::governance).
        .add_service(GovernanceServer::new(governance))
        .add_service(SignerServer::with_interceptor(
            service,
            move |request: tonic::Request<()>| match &mut allowed {
                Some(allow) => allow(request),
                None => Ok(request),
            },
        ));
    let server_tls = match tls_files {
        Some((chain, ca, allowed)) => {
            let key = Arc::new(TokenTlsKey::new(token.clone()));
            let config = Reloadable::new(Arc::new(ringi_net::tls::server_config(
                chain,
                key.clone(),
                &ca,
            )?));
            // SIGHUP: read the certificate and CA files again (the key stays
            // in the token), for new connections and for DKG attestations.
            if let (Some(settings), Some(peers)) = (&tls, dkg_peers) {
                let reload = Reload {
                    config: config.clone(),
                    key,
                    token,
                    dkg: dkg_for_reload,
                    cert: settings.cert.clone(),
                    ca: settings.ca.clone(),
                    peers,
                };
                ringi_net::transport::on_hangup(move || match reload.run() {
                    Ok(name) => tracing::info!(%name, "TLS certificates reloaded"),
                    Err(e) => tracing::error!(
                        error = %e,
                        "TLS certificate reload failed; keeping the current certificates"
                    ),
                });
            }
            tracing::info!(?allowed, "signer API clients (the key stays in the token)");
            Some(config)
        }
        None => None,
    };
    // "listening" is printed once the SIGHUP handlers are installed.
    ringi_net::serve::serve(router, listener, server_tls, "ringi.signer.v1", |local| {
        println!("ringi-signer listening on {local}")
    })
    .await?;
    if let Err(e) = audit.checkpoint_if_new() {
        tracing::error!(error = %e, "final audit checkpoint failed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The curves of the node's transport keys, for its logs: "secp256k1,P-256".
fn transport_curves(keys: &crate::transport_key::OwnKeys) -> String {
    keys.all()
        .iter()
        .map(|k| k.curve().name())
        .collect::<Vec<_>>()
        .join(",")
}

/// The node's DKG peer rule, and its own attestations: its token's TLS key
/// signs the statement for each of its transport keys, and each must pass
/// the node's own certificate checks (so a certificate for another key, or
/// from another CA, stops the node here rather than failing every DKG
/// later).
fn dkg_peer_check(
    token: &Arc<Token>,
    keys: &crate::transport_key::OwnKeys,
    chain: &[rustls::pki_types::CertificateDer<'static>],
    ca: &[rustls::pki_types::CertificateDer<'static>],
    peers: Peers,
) -> anyhow::Result<(PeerCheck, (String, OwnAttestations))> {
    use rustls::sign::Signer;
    let own_cert = chain
        .first()
        .ok_or_else(|| anyhow::anyhow!("the TLS certificate file holds no certificate"))?;
    let name = ringi_net::tls::identity(own_cert)
        .ok_or_else(|| anyhow::anyhow!("this node's TLS certificate names no identity"))?;
    let own_check = PeerCheck::new(ca, Peers::AnyExcept(Vec::new()))?;
    let mut attestations = Vec::new();
    for key in keys.all() {
        let wire = key.wire();
        let signature = TokenTlsKey::new(token.clone())
            .sign(&crate::dkg_peer::statement(&name, &wire))
            .map_err(|e| anyhow::anyhow!("cannot attest the {} DKG key: {e}", key.curve()))?;
        let own = Attestation {
            certificate: own_cert.to_vec(),
            signature,
        };
        own_check.verify(&wire, Some(&own)).map_err(|e| {
            anyhow::anyhow!(
                "this node's own {} DKG key attestation fails: {e}",
                key.curve()
            )
        })?;
        attestations.push((wire, own));
    }
    Ok((PeerCheck::new(ca, peers)?, (name, attestations)))
}

/// What a SIGHUP reloads: the certificate chain and CA files, into the
/// server configuration and the node's DKG attestation.
struct Reload {
    config: Reloadable<rustls::ServerConfig>,
    key: Arc<TokenTlsKey>,
    token: Arc<Token>,
    /// Both suites' DKG runs: they share the node's transport key and
    /// attestation.
    dkg: (Arc<DkgRuns<FrostSuite>>, Arc<DkgRuns<TaprootSuite>>),
    cert: std::path::PathBuf,
    ca: std::path::PathBuf,
    peers: Peers,
}

impl Reload {
    /// Builds everything from the files first and replaces nothing unless
    /// all of it succeeds; returns the certified name.
    fn run(&self) -> anyhow::Result<String> {
        let chain = ringi_net::tls::load_certs(&self.cert)?;
        let ca = ringi_net::tls::load_certs(&self.ca)?;
        let server = ringi_net::tls::server_config(chain.clone(), self.key.clone(), &ca)?;
        let (check, (name, own)) = dkg_peer_check(
            &self.token,
            self.dkg.0.own_keys(),
            &chain,
            &ca,
            self.peers.clone(),
        )?;
        self.dkg.0.set_peer_check(check.clone(), own.clone());
        self.dkg.1.set_peer_check(check, own);
        self.config.replace(Arc::new(server));
        Ok(name)
    }
}
