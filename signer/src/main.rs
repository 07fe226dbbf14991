//! `ringi-signer`: the signer node binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringi_policy::audit::AuditError;
use ringi_signer::config::{self, FileConfig, Overrides};
use ringi_signer::server::{FrostSuite, TaprootSuite};
use ringi_signer::token::Token;
use ringi_signer::vault::{ShareVault, TokenVault};
use zeroize::Zeroizing;

/// A ringi signer node: holds FROST key shares sealed by a PKCS#11 token.
///
/// The token PIN is read from RINGI_PKCS11_PIN or from a PIN file, never
/// from the command line.
#[derive(Parser)]
#[command(name = "ringi-signer", version)]
struct Cli {
    /// TOML config file.
    #[arg(long, global = true, env = "RINGI_SIGNER_CONFIG")]
    config: Option<PathBuf>,
    /// PKCS#11 module (shared library) path.
    #[arg(long, global = true, env = "RINGI_PKCS11_MODULE")]
    module: Option<PathBuf>,
    /// Label of the token holding this node's keys.
    #[arg(long, global = true, env = "RINGI_TOKEN_LABEL")]
    token_label: Option<String>,
    /// File holding the token's user PIN.
    #[arg(long, global = true, env = "RINGI_PKCS11_PIN_FILE")]
    pin_file: Option<PathBuf>,
    /// The approval policy (TOML) this node enforces before signing.
    #[arg(long, global = true, env = "RINGI_POLICY_FILE")]
    policy_file: Option<PathBuf>,
    /// Pin: the hex SHA-256 the policy file must have.
    #[arg(long, global = true, env = "RINGI_POLICY_SHA256")]
    policy_sha256: Option<String>,
    /// Directory for the node's spending ledger (default: per token label
    /// under $XDG_DATA_HOME/ringi-signer).
    #[arg(long, global = true, env = "RINGI_SIGNER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Operators' daily-volume figures, for caps set as a percentage of it.
    #[arg(long, global = true, env = "RINGI_DAILY_VOLUME_FILE")]
    daily_volume_file: Option<PathBuf>,
    /// Log lines as `text` (default) or `json` (one object a line), on
    /// stderr; colours only on a terminal. Also `log_format` in the config.
    #[arg(
        long,
        global = true,
        env = "RINGI_LOG_FORMAT",
        value_name = "text|json"
    )]
    log_format: Option<ringi_net::logging::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create this node's keys in the token (share KEK, DKG transport key) if missing.
    Init,
    /// Print this node's DKG public key and the key shares it holds.
    Info,
    /// Print a certificate signing request for this node's TLS key (made
    /// inside the token) for a CA, e.g. `ringi dev-certs --signer-csr`.
    TlsCsr {
        /// The node's name: the certificate's DNS name and common name.
        #[arg(long)]
        name: String,
    },
    /// Repair this node's broken audit log (while it is stopped): the broken
    /// tail is moved to a new file next to it, never deleted, and the gap
    /// recorded as an `audit_gap` entry. Needs no token (no PIN).
    AuditRepair,
    /// Serve ringi.signer.v1 over gRPC.
    Serve {
        /// Address to listen on (plaintext: loopback only).
        #[arg(long, env = "RINGI_SIGNER_LISTEN")]
        listen: Option<SocketAddr>,
        /// This node's TLS certificate (for its token's TLS key); enables mutual TLS.
        #[arg(long, env = "RINGI_TLS_CERT", requires = "tls_ca")]
        tls_cert: Option<PathBuf>,
        /// The CA that certifies clients.
        #[arg(long, env = "RINGI_TLS_CA", requires = "tls_cert")]
        tls_ca: Option<PathBuf>,
        /// Client identities allowed to call the signer API.
        #[arg(
            long,
            env = "RINGI_TLS_ALLOWED_CLIENTS",
            value_delimiter = ',',
            default_value = "coordinator"
        )]
        tls_allowed_clients: Vec<String>,
        /// Under mutual TLS: the certified names of the other signers this
        /// node will run a DKG with (e.g. signer-1,signer-2,signer-3). Without
        /// it, any name the CA certified except the allowed clients.
        #[arg(long, env = "RINGI_DKG_PEERS", value_delimiter = ',')]
        dkg_peers: Option<Vec<String>>,
        /// Serve Prometheus metrics over plain HTTP on this address (off
        /// unless set here or by `metrics_listen` in the config).
        #[arg(long, env = "RINGI_SIGNER_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
    },
}

fn main() -> ExitCode {
    ringi_net::memory::limit_allocator_arenas();
    let cli = Cli::parse();
    // The config first: it may choose the log format.
    let file = match &cli.config {
        Some(path) => FileConfig::load(path),
        None => Ok(FileConfig::default()),
    };
    let log_format = cli
        .log_format
        .or(file.as_ref().ok().and_then(|f| f.log_format))
        .unwrap_or_default();
    let result = ringi_net::logging::init(log_format, "info")
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(file?))
        .and_then(|file| run(cli, file));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringi-signer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, file: FileConfig) -> anyhow::Result<()> {
    // Before the token's configuration: the repair needs no PIN.
    if let Command::AuditRepair = cli.command {
        return audit_repair(cli.data_dir.as_deref(), cli.token_label.as_deref(), &file);
    }
    let overrides = Overrides {
        module: cli.module.clone(),
        token_label: cli.token_label.clone(),
        pin_file: cli.pin_file.clone(),
    };
    let pin_env = std::env::var(config::PIN_ENV).ok().map(Zeroizing::new);
    let token_config = config::token_config(&file, &overrides, pin_env)?;
    match cli.command {
        Command::Init => {
            let token = Token::open(&token_config)?;
            let done = token.initialize_keys()?;
            if done.created.is_empty() {
                println!(
                    "token {:?} already holds ringi's keys; nothing created",
                    token_config.token_label
                );
            }
            for label in &done.created {
                println!("created {label} in token {:?}", token_config.token_label);
            }
            for (curve, rv) in &done.unsupported {
                println!(
                    "token {:?} makes no {curve} keys ({rv}): no {curve} DKG transport key; this node runs DKGs on the other curves only",
                    token_config.token_label
                );
            }
            for key in token.dkg_public_keys()? {
                println!(
                    "dkg_transport_key {} {}",
                    key.curve(),
                    hex::encode(key.wire())
                );
            }
            Ok(())
        }
        Command::Info => {
            let token = std::sync::Arc::new(Token::open(&token_config)?);
            let vault = std::sync::Arc::new(TokenVault::<FrostSuite>::open(token.clone())?);
            let taproot = TokenVault::<TaprootSuite>::open(token.clone())?;
            let dkg = ringi_signer::dkg::DkgRuns::<FrostSuite>::new(vault.clone(), token)?;
            println!("dkg_public_key {}", hex::encode(dkg.public_key()));
            for key in dkg.own_keys().all() {
                println!(
                    "dkg_transport_key {} {}",
                    key.curve(),
                    hex::encode(key.wire())
                );
            }
            let audit_key = ringi_policy::approver_key::ApproverKey::from_sec1(
                &vault.token().audit_public_key()?,
            )
            .map_err(|e| anyhow::anyhow!("audit key: {e}"))?;
            println!("audit_key {}", audit_key.to_text());
            let shares = vault
                .shares()
                .into_iter()
                .map(|s| (s, ringi_frost::KeyKind::FrostSecp256k1))
                .chain(
                    taproot
                        .shares()
                        .into_iter()
                        .map(|s| (s, ringi_frost::KeyKind::BitcoinTaproot)),
                );
            for (share, kind) in shares {
                println!(
                    "key {} kind {} identifier {} group_public_key {}",
                    share.key_id,
                    kind,
                    share.identifier,
                    hex::encode(share.group_key)
                );
            }
            Ok(())
        }
        Command::TlsCsr { name } => {
            let token = std::sync::Arc::new(Token::open(&token_config)?);
            token.require_keys()?;
            let key = ringi_signer::tls_key::TokenCsrKey::new(token)?;
            print!("{}", key.csr_pem(&name)?);
            Ok(())
        }
        Command::Serve {
            listen,
            tls_cert,
            tls_ca,
            tls_allowed_clients,
            dkg_peers,
            metrics_listen,
        } => {
            let listen = listen
                .or(file.listen)
                .unwrap_or_else(|| config::DEFAULT_LISTEN.parse().expect("valid default"));
            let metrics_listen = metrics_listen.or(file.metrics_listen);
            let policy = config::load_policy(
                cli.policy_file.as_deref().or(file.policy_file.as_deref()),
                cli.policy_sha256
                    .as_deref()
                    .or(file.policy_sha256.as_deref()),
            )?;
            let data_dir = config::data_dir(
                cli.data_dir.as_deref().or(file.data_dir.as_deref()),
                &token_config.token_label,
            )?;
            // Before anything is written: one serving process per data
            // directory (and per token: `server::run`, once it is open).
            let _lock =
                ringi_signer::instance_lock::InstanceLock::data_dir(&data_dir, "ringi-signer")?;
            let repair_command = audit_repair_command(&data_dir);
            let settings = ringi_signer::server::ServeSettings {
                listen,
                policy,
                ledger_path: data_dir.join("spending.sqlite3"),
                audit_path: data_dir.join(ringi_signer::server::AUDIT_FILE),
                holds_path: data_dir.join(ringi_signer::server::HOLDS_FILE),
                policy_store_path: data_dir.join(ringi_signer::server::POLICY_STORE_FILE),
                daily_volume_file: cli
                    .daily_volume_file
                    .clone()
                    .or(file.daily_volume_file.clone()),
                tls: match (tls_cert, tls_ca) {
                    (Some(cert), Some(ca)) => Some(ringi_signer::server::TlsSettings {
                        cert,
                        ca,
                        allowed_clients: tls_allowed_clients,
                        dkg_peers,
                    }),
                    _ => None,
                },
                metrics_listen,
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(ringi_signer::server::run(token_config, settings))
                .map_err(|e| match e.downcast::<AuditError>() {
                    // A broken audit log: name the command that repairs it.
                    Ok(broken) => broken.with_repair_command(repair_command).into(),
                    Err(e) => e,
                })
        }
        Command::AuditRepair => {
            audit_repair(cli.data_dir.as_deref(), cli.token_label.as_deref(), &file)
        }
    }
}

/// The data directory `serve` would use, without the token (an explicit
/// one needs no token label either).
fn data_dir(
    data_dir: Option<&std::path::Path>,
    token_label: Option<&str>,
    file: &FileConfig,
) -> anyhow::Result<PathBuf> {
    let configured = data_dir.or(file.data_dir.as_deref());
    let label = match configured {
        Some(_) => "",
        None => token_label
            .or(file.pkcs11.token_label.as_deref())
            .ok_or(config::ConfigError::NoTokenLabel)?,
    };
    Ok(config::data_dir(configured, label)?)
}

/// The command that repairs the audit log in `data_dir`, for the message
/// refusing a broken log: the data directory named outright, so it works
/// whatever configuration `serve` was started with.
fn audit_repair_command(data_dir: &std::path::Path) -> String {
    format!(
        "ringi-signer audit-repair --data-dir {}",
        data_dir.display()
    )
}

/// `ringi-signer audit-repair`: refused while the node runs (it takes
/// `serve`'s lock on the data directory first). It appends no checkpoint:
/// that would need the token; the node's next start and checkpoint cover
/// the gap entry.
fn audit_repair(
    data_dir_option: Option<&std::path::Path>,
    token_label: Option<&str>,
    file: &FileConfig,
) -> anyhow::Result<()> {
    let data_dir = data_dir(data_dir_option, token_label, file)?;
    let path = data_dir.join(ringi_signer::server::AUDIT_FILE);
    if !path.exists() {
        anyhow::bail!(
            "no audit log at {}: nothing to repair (is the data directory right?)",
            path.display()
        );
    }
    let _lock = ringi_signer::instance_lock::InstanceLock::data_dir(&data_dir, "ringi-signer")
        .map_err(|e| anyhow::anyhow!("cannot repair the audit log while the node runs: {e}"))?;
    let repair = ringi_policy::audit_repair::repair(&path, ringi_policy::clock::now())?;
    println!("{}", repair.describe(&path));
    Ok(())
}
