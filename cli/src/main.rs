//! `ringi`: the coordinator daemon (`ringi serve`) and its CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringi::config::Config;
use ringi_cli::approver::ApproverSigner;
use ringi_cli::connect::{ClientTls, connect};
use ringi_cli::requests::{SubmitArgs, WaitOutput};
use ringi_cli::{Output, audit, decide, freeze, health, key_order, keys, requests};
use ringi_policy::statement::Decision;

#[global_allocator]
static ALLOCATOR: ringi_cli::allocator::Allocator = mimalloc::MiMalloc;

/// Configures the allocator before the first allocation, which Rust's
/// runtime makes before `main` (see `ringi_cli::allocator`).
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static CONFIGURE_ALLOCATOR: extern "C" fn() = {
    extern "C" fn configure() {
        ringi_cli::allocator::commit_arenas_on_demand();
    }
    configure
};

/// ringi: HSM-backed FROST threshold signing.
#[derive(Parser)]
#[command(name = "ringi", version)]
struct Args {
    /// Coordinator address for client commands.
    #[arg(
        long,
        global = true,
        env = "RINGI_COORDINATOR",
        default_value = "127.0.0.1:7000"
    )]
    coordinator: String,
    /// Client certificate for a coordinator that runs mutual TLS.
    #[arg(long, global = true, env = "RINGI_TLS_CLIENT_CERT", requires_all = ["tls_client_key", "tls_ca"])]
    tls_client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, global = true, env = "RINGI_TLS_CLIENT_KEY")]
    tls_client_key: Option<PathBuf>,
    /// The CA that certifies the coordinator.
    #[arg(long, global = true, env = "RINGI_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// The name in the coordinator's certificate.
    #[arg(
        long,
        global = true,
        env = "RINGI_COORDINATOR_NAME",
        default_value = "coordinator"
    )]
    coordinator_name: String,
    /// Log lines as `text` (default) or `json` (one object a line), on
    /// stderr; colours only on a terminal. `ringi serve` also reads
    /// `log_format` from its config.
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
    /// Run the coordinator daemon.
    Serve {
        /// Coordinator config file (TOML).
        #[arg(long, env = "RINGI_CONFIG")]
        config: PathBuf,
    },
    /// Create a key by distributed key generation across signers.
    Keygen {
        #[arg(long)]
        key_id: String,
        /// How many signers must cooperate to sign.
        #[arg(long)]
        threshold: u32,
        /// Signer names from the coordinator's registry, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        signers: Vec<String>,
        /// The key's kind: frost-secp256k1 (RFC 9591 signatures) or
        /// bitcoin-taproot (BIP-340, for Taproot key-path spends and PSBTs).
        #[arg(long, default_value = "frost-secp256k1")]
        kind: String,
    },
    /// Signing requests: submit, list, show, wait.
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Approve a signing request for your department (signs an approval
    /// statement): shows the request, then asks `Approve? [y/N]`.
    Approve {
        /// Request id (hex).
        request_id: String,
        #[arg(long)]
        department: String,
        #[command(flatten)]
        key: ApproverKeyArgs,
        #[command(flatten)]
        confirm: ConfirmArgs,
    },
    /// Reject a signing request for your department: a veto. With
    /// --signer, the rejection is also sent to each signer directly, so a
    /// coordinator that drops it still cannot get the request signed.
    /// Shows the request, then asks `Reject? [y/N]`.
    Reject {
        request_id: String,
        #[arg(long)]
        department: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        key: ApproverKeyArgs,
        #[command(flatten)]
        signers: SignerArgs,
        #[command(flatten)]
        confirm: ConfirmArgs,
    },
    /// Freeze a key (--key-id) or every key (--all) at every signer, as a
    /// freeze officer of the policy; prints the freeze id. Only a quorum
    /// lifts it (`ringi unfreeze`).
    Freeze {
        #[arg(long, conflicts_with = "all")]
        key_id: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        key: ApproverKeyArgs,
        #[command(flatten)]
        signers: SignerArgs,
    },
    /// Lift a freeze: each approver of the quorum signs a statement
    /// (`sign`, to a file), then anyone delivers them together (`submit`).
    #[command(subcommand)]
    Unfreeze(UnfreezeCommand),
    /// Policy updates under the policy's own admin quorum: check a new
    /// policy file, approve it as an admin, submit it to every signer, ask
    /// for the status.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Show the freezes in force, the vetoed requests and the retired keys
    /// at each signer.
    Holds {
        #[command(flatten)]
        signers: SignerArgs,
    },
    /// Approver keys: create a development key file, or show a key's public key.
    #[command(subcommand)]
    ApproverKey(ApproverKeyCommand),
    /// Write a development CA and certificates (coordinator, signers, clients).
    DevCerts {
        #[arg(long)]
        out: PathBuf,
        /// File-key certificates for signer-1..N (when no --signer-csr is given).
        #[arg(long, default_value_t = 3)]
        signers: usize,
        /// A CSR made inside a signer's token by `ringi-signer tls-csr` (repeatable).
        #[arg(long = "signer-csr")]
        signer_csrs: Vec<PathBuf>,
        /// A CSR made inside the coordinator's token by `ringi token
        /// tls-csr`: its certificate certifies the token's key (no
        /// coordinator.key is written).
        #[arg(long = "coordinator-csr")]
        coordinator_csr: Option<PathBuf>,
        /// Client identities (wallet services, approvers, operators), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "wallet-service,operator")]
        clients: Vec<String>,
    },
    /// Audit logs (coordinator's or a signer's): verify offline, export for a
    /// SIEM; repair the coordinator's.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The coordinator's PKCS#11 token (`[pkcs11]` in its config): create
    /// its keys, make a CSR for its TLS key.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a key's group public key (SEC1 compressed, hex); for a
    /// bitcoin-taproot key also its kind, output key and address.
    Pubkey {
        #[arg(long)]
        key_id: String,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Ask a ringi server (the coordinator, or a signer with --address and
    /// --server-name) whether it is serving: grpc.health.v1, over the same
    /// mutual TLS as every other call. Exits non-zero unless SERVING.
    Health {
        /// Server address (default: the coordinator's).
        #[arg(long)]
        address: Option<String>,
        /// The name in the server's certificate (default: the coordinator's).
        #[arg(long)]
        server_name: Option<String>,
        /// Service to ask about; empty for the server as a whole.
        #[arg(long, default_value = "")]
        service: String,
    },
    /// The coordinator's latest pre-flight check of its signers: who
    /// cannot sign and why, and which keys cannot be signed now (exits
    /// non-zero while a key in service is below its threshold). Admin role.
    Status {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Throughput through the coordinator's public API: N requests, C in
    /// flight, whole flow (submit, approvals, signing) or the signing of
    /// requests whose other approvals are recorded; every signature verified.
    BenchLoad(ringi_cli::bench_load::LoadArgs),
    /// List keys; with a subcommand, a key lifecycle operation.
    Keys {
        #[command(subcommand)]
        action: Option<KeysCommand>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Measure signing latency over the real stack and the in-process floor.
    Bench {
        /// Coordinator config file (the signers to use and the database).
        #[arg(long, env = "RINGI_CONFIG")]
        config: PathBuf,
        /// The keys to measure, in turn, each next to the in-process floor
        /// of its size (e.g. bench,bench-3of5,bench-7of10).
        #[arg(
            long = "keys",
            alias = "key-id",
            value_name = "KEY_ID,...",
            value_delimiter = ',',
            required = true
        )]
        keys: Vec<String>,
        #[arg(long, default_value_t = 300)]
        iterations: usize,
        /// Approver key files to approve each bench request, as DEPARTMENT=KEYFILE.
        #[arg(long = "approver", value_name = "DEPARTMENT=KEYFILE")]
        approvers: Vec<String>,
        /// A bitcoin-taproot key (with a network in the policy) to measure
        /// PSBT requests on too, in the same run: one-input spends, each
        /// input's sighash derived, BIP-340 signed and the PSBT finalized.
        #[arg(long)]
        psbt_key_id: Option<String>,
        /// Also measure the first key with its last signer answering this
        /// many milliseconds late (through a local relay); 0: not measured.
        #[arg(long, default_value_t = 200)]
        slow_ms: u64,
        /// Also measure the first key's signings as a request's are run
        /// (approved → SIGNED: claim, round-2 plan, outcome, each a store
        /// write) through a fresh SQLite store and through the PostgreSQL
        /// database of this connection string, in the same run.
        #[arg(long, value_name = "POSTGRESQL_CONNECTION_STRING")]
        store_url: Option<String>,
    },
    /// Measure key refresh and share repair over the real stack, each next
    /// to the in-process FROST floor of its size; its own temporary store.
    BenchLifecycle {
        /// The stack's coordinator config (its signers and TLS client
        /// identity; its database is not used).
        #[arg(long, env = "RINGI_CONFIG")]
        config: PathBuf,
        /// Key sizes, TofN (each over the first N signers other than the spare).
        #[arg(
            long,
            value_name = "TofN,...",
            value_delimiter = ',',
            default_value = "2of3,3of5",
            value_parser = ringi_cli::bench_lifecycle::parse_size
        )]
        sizes: Vec<ringi_cli::bench_lifecycle::Size>,
        /// Refreshes, and repairs, per size (each repair of a fresh key).
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// An admin's approver key file; repeat up to the policy's admin quorum.
        #[arg(long = "admin", value_name = "KEYFILE", required = true)]
        admins: Vec<PathBuf>,
        /// A registry signer no key uses: it receives the repaired shares.
        #[arg(long)]
        spare: String,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file offline; print its hash (and, with
    /// --current, what kind of update it is: `propose` is the same, for
    /// the proposer who hands the file and its hash to the admins).
    #[command(alias = "propose")]
    Check {
        file: PathBuf,
        #[arg(long)]
        current: Option<PathBuf>,
    },
    /// Sign, as an admin of the current policy, the update to FILE; prints
    /// the signature (JSON) for the proposer.
    Approve {
        file: PathBuf,
        #[arg(long)]
        current: PathBuf,
        /// When it takes effect (Unix seconds; default now). A loosening
        /// must wait the current policy's loosening_delay_secs.
        #[arg(long)]
        effective_at: Option<u64>,
        #[command(flatten)]
        key: ApproverKeyArgs,
    },
    /// Deliver FILE and the admins' signature files to every signer and to
    /// the coordinator (admin role).
    Submit {
        file: PathBuf,
        #[arg(long)]
        current: PathBuf,
        /// Signature files written by `ringi policy approve`.
        #[arg(long = "signature", required = true)]
        signatures: Vec<PathBuf>,
        #[command(flatten)]
        signers: SignerArgs,
    },
    /// The policy in force (and any pending update) at each signer.
    Status {
        #[command(flatten)]
        signers: SignerArgs,
    },
}

#[derive(Subcommand)]
enum UnfreezeCommand {
    /// Sign your consent to lift one freeze; prints the statement (JSON).
    Sign {
        #[arg(long, conflicts_with = "all")]
        key_id: Option<String>,
        #[arg(long)]
        all: bool,
        /// The freeze to lift (hex, as `ringi freeze` or `ringi holds` print it).
        #[arg(long)]
        freeze_id: String,
        #[command(flatten)]
        key: ApproverKeyArgs,
    },
    /// Deliver the signed statements to every signer.
    Submit {
        #[arg(long, conflicts_with = "all")]
        key_id: Option<String>,
        #[arg(long)]
        all: bool,
        /// Statement files written by `ringi unfreeze sign`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        signers: SignerArgs,
    },
}

/// The signers reached directly (their governance API), with the CLI's own
/// TLS identity.
#[derive(clap::Args)]
struct SignerArgs {
    /// NAME=ADDRESS of a signer (NAME as in its certificate); repeatable,
    /// or comma-separated in RINGI_SIGNERS.
    #[arg(long = "signer", env = "RINGI_SIGNERS", value_delimiter = ',')]
    signer: Vec<String>,
}

impl SignerArgs {
    fn endpoints(&self) -> anyhow::Result<Vec<ringi_cli::signers::SignerEndpoint>> {
        Ok(ringi_cli::signers::parse(&self.signer)?)
    }
}

/// Key lifecycle operations (admin role on the coordinator).
#[derive(Subcommand)]
enum KeysCommand {
    /// Give every signer of KEY_ID a new share of the same group key (a
    /// refresh DKG among all its signers); the old shares are destroyed in
    /// the tokens, and a copy taken before no longer combines with the new
    /// ones. Run it again to finish a refresh that stopped midway.
    Refresh {
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        /// The admins' signed refresh order (`keys order refresh`), for a
        /// key whose rules set `refresh_needs_order`.
        #[arg(long)]
        order: Option<PathBuf>,
    },
    /// Re-register KEY_ID from its signers on a coordinator that lost its
    /// database: recorded only when a threshold of the registry's signers
    /// report the same public key package.
    ImportFromSigners {
        #[arg(value_name = "KEY_ID")]
        key_id: String,
    },
    /// Key orders (retire, repair) as files the policy's admins sign:
    /// make one, sign it, show it.
    #[command(subcommand)]
    Order(OrderCommand),
    /// Deliver a signed retirement order (`keys order retire`, then `keys
    /// order sign` by admin_quorum admins) to every signer directly and to
    /// the coordinator. From then the key signs nothing; its shares are
    /// destroyed after the order's grace period. Exits non-zero unless
    /// every signer and the coordinator accepted it.
    Retire {
        #[arg(value_name = "ORDER_FILE")]
        order: PathBuf,
        #[command(flatten)]
        signers: SignerArgs,
    },
    /// Rebuild a lost share of KEY_ID on the new node --signer (registered
    /// in the coordinator under the lost participant's identifier), under a
    /// signed repair order (`keys order repair`, then `keys order sign` by
    /// admin_quorum admins). `t` of the key's other signers help; none of
    /// them, and not the coordinator, learns the share. The new node then
    /// holds the identifier. Refresh the key afterwards (docs/operations.md).
    Repair {
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        /// The new node's name in the coordinator's registry.
        #[arg(long)]
        signer: String,
        /// The signed repair order (it names the helpers).
        #[arg(long)]
        order: PathBuf,
    },
}

/// Key order files (offline: no coordinator is contacted).
#[derive(Subcommand)]
enum OrderCommand {
    /// Print an unsigned retirement of KEY_ID (JSON, for a file): the key
    /// signs nothing once the order is delivered, and its shares are
    /// destroyed --grace-secs after now.
    Retire {
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        /// Seconds from now until the shares are destroyed.
        #[arg(long)]
        grace_secs: u64,
        /// Seconds from now the order may be delivered in (at most 7 days).
        #[arg(long, default_value_t = ringi_cli::key_order::DEFAULT_VALID_SECS)]
        valid_secs: u64,
    },
    /// Print an unsigned repair of participant --identifier of KEY_ID for
    /// the node whose DKG transport key is --recipient-key, helped by
    /// exactly the --helper participants (JSON).
    Repair {
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        #[arg(long)]
        identifier: u32,
        /// The new node's DKG transport key, hex, as `ringi-signer info`
        /// prints it (secp256k1, or P-256 where a node has no secp256k1 key;
        /// every key of the order on one curve).
        #[arg(long)]
        recipient_key: String,
        /// A helper as IDENTIFIER=TRANSPORT_KEY_HEX (its `dkg_public_key`,
        /// or its `dkg_transport_key P-256` line, from `ringi-signer info`);
        /// at least the key's threshold of them.
        #[arg(long = "helper", value_name = "ID=KEY", required = true)]
        helpers: Vec<String>,
        #[arg(long, default_value_t = ringi_cli::key_order::DEFAULT_VALID_SECS)]
        valid_secs: u64,
    },
    /// Print an unsigned refresh order of KEY_ID (JSON), for a key whose
    /// rules set `refresh_needs_order`.
    Refresh {
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        #[arg(long, default_value_t = ringi_cli::key_order::DEFAULT_VALID_SECS)]
        valid_secs: u64,
    },
    /// Add your admin signature to ORDER_FILE, in place.
    Sign {
        #[arg(value_name = "ORDER_FILE")]
        order: PathBuf,
        #[command(flatten)]
        key: ApproverKeyArgs,
    },
    /// Print ORDER_FILE readably; with --policy, who signed and whether
    /// the order would be carried out now under that policy.
    Show {
        #[arg(value_name = "ORDER_FILE")]
        order: PathBuf,
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RequestsCommand {
    /// Submit a signing request (it waits for approvals).
    Submit(Box<SubmitArgs>),
    /// List requests, newest first.
    List {
        /// Only requests waiting for approvals.
        #[arg(long)]
        pending: bool,
        #[arg(long)]
        key_id: Option<String>,
        /// Only requests in this state (e.g. SIGNED).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show exactly what a request will sign, who approved, what is still
    /// needed, and (with your policy file) the rule that applies.
    Show {
        request_id: String,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Your own copy of the policy: the rule and tier that apply are
        /// worked out from it.
        #[arg(long, env = "RINGI_POLICY_FILE")]
        policy: Option<PathBuf>,
    },
    /// Wait until a request is signed (prints the signature, or the signed
    /// transaction or PSBT) or ends otherwise.
    Wait {
        request_id: String,
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
        /// What to print once SIGNED: the signature (hex), the signed
        /// transaction (hex, for `bitcoin-cli sendrawtransaction`), or the
        /// finalized PSBT (base64).
        #[arg(long, value_enum, default_value_t = WaitOutput::Signature)]
        output: WaitOutput,
    },
    /// Send a FAILED request back to be signed, once the cause is fixed
    /// (admin role). Unreachable signers never fail a request: they are
    /// retried until it expires.
    Retry {
        request_id: String,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create the coordinator's TLS and audit keys in its token if missing.
    Init {
        #[arg(long, env = "RINGI_CONFIG")]
        config: PathBuf,
    },
    /// Print a certificate signing request for the token's TLS key, signed
    /// inside the token.
    TlsCsr {
        #[arg(long, env = "RINGI_CONFIG")]
        config: PathBuf,
        /// The certified name (the coordinator's identity).
        #[arg(long, default_value = "coordinator")]
        name: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every link of a log; report the first broken entry.
    Verify {
        path: PathBuf,
        /// The key that must have signed every checkpoint (a signer's audit key, `p256:...`).
        #[arg(long)]
        checkpoint_key: Option<String>,
    },
    /// Repair the coordinator's broken audit log (while it is stopped): the
    /// broken tail is moved to a new file next to it, never deleted, and the
    /// gap recorded as an `audit_gap` entry.
    Repair {
        /// The coordinator's config file (for its data directory).
        #[arg(long, env = "RINGI_CONFIG")]
        config: PathBuf,
    },
    /// Verify, then print one flat JSON object per entry (JSON lines).
    Export {
        path: PathBuf,
        /// Name of the node the log belongs to, added to every line.
        #[arg(long, default_value = "")]
        node: String,
    },
}

#[derive(Subcommand)]
enum ApproverKeyCommand {
    /// Create a P-256 key FILE (development only) and print its public key.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key (as the policy file writes it) of a key file or token key.
    Show {
        #[command(flatten)]
        key: ApproverKeyArgs,
    },
}

/// How `approve` and `reject` are confirmed, and checked.
#[derive(clap::Args)]
struct ConfirmArgs {
    /// Do not ask for confirmation (scripts). Without it, a stdin that is
    /// not a terminal is refused.
    #[arg(long)]
    yes: bool,
    /// Your own copy of the policy: its SHA-256 must be the request's
    /// policy hash, and the approval validity the coordinator proposes may
    /// not exceed its approval_ttl_secs for the key.
    #[arg(long, env = "RINGI_POLICY_FILE")]
    policy: Option<PathBuf>,
}

/// Where the approver's key is: a PKCS#11 token, or (development) a file.
#[derive(clap::Args)]
struct ApproverKeyArgs {
    /// Development only: a PKCS#8 PEM P-256 key file.
    #[arg(long, conflicts_with_all = ["pkcs11_module", "token", "key_label"])]
    key_file: Option<PathBuf>,
    /// PKCS#11 module of the approver's token.
    #[arg(long, env = "RINGI_APPROVER_PKCS11_MODULE")]
    pkcs11_module: Option<PathBuf>,
    /// Label of the approver's token.
    #[arg(long)]
    token: Option<String>,
    /// Label of the EC P-256 key pair in the token.
    #[arg(long)]
    key_label: Option<String>,
    /// File holding the token PIN (otherwise RINGI_APPROVER_PIN, otherwise a prompt).
    #[arg(long, env = "RINGI_APPROVER_PIN_FILE")]
    pin_file: Option<PathBuf>,
}

impl ApproverKeyArgs {
    fn open(&self) -> anyhow::Result<ApproverSigner> {
        if let Some(path) = &self.key_file {
            eprintln!("ringi: {}", ringi_cli::approver::DEV_KEY_WARNING);
            return Ok(ApproverSigner::from_file(path)?);
        }
        let (Some(module), Some(token), Some(label)) =
            (&self.pkcs11_module, &self.token, &self.key_label)
        else {
            anyhow::bail!(
                "name the approver key: --key-file, or --pkcs11-module, --token and --key-label"
            );
        };
        let pin = match (&self.pin_file, std::env::var("RINGI_APPROVER_PIN").ok()) {
            (Some(path), _) => {
                let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read PIN file {}: {e}", path.display())
                })?);
                secrecy::SecretString::from(text.trim_end_matches(['\r', '\n']))
            }
            (None, Some(pin)) => secrecy::SecretString::from(pin),
            (None, None) => secrecy::SecretString::from(
                rpassword::prompt_password(format!("PIN for token {token}: ")).map_err(|e| {
                    anyhow::anyhow!("no PIN: give --pin-file, or run in a terminal ({e})")
                })?,
            ),
        };
        Ok(ApproverSigner::from_token(module, token, label, &pin)?)
    }
}

fn main() -> ExitCode {
    ringi_net::memory::limit_allocator_arenas();
    let args = Args::parse();
    // The daemon's config first: it may choose the log format.
    let serve_config = match &args.command {
        Command::Serve { config } => Some(Config::load(config)),
        _ => None,
    };
    let (log_default, configured_format) = match &serve_config {
        Some(config) => ("info", config.as_ref().ok().and_then(|c| c.log_format)),
        None => ("warn", None),
    };
    let log_format = args.log_format.or(configured_format).unwrap_or_default();
    if let Err(e) = ringi_net::logging::init(log_format, log_default) {
        eprintln!("ringi: error: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringi: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, serve_config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringi: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `ringi approve` and `ringi reject`: refuse at once a script that did
/// not pass `--yes`, read the approver's policy, open the approver's key,
/// then show, confirm, sign and send the decision (a rejection also to
/// the `direct` signers).
#[allow(clippy::too_many_arguments)]
async fn decide_with(
    address: &str,
    tls: Option<&ClientTls>,
    request_id: &str,
    department: &str,
    (decision, reason): (Decision, String),
    key: ApproverKeyArgs,
    confirm: ConfirmArgs,
    direct: &[ringi_cli::signers::SignerEndpoint],
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let how = decide::confirmation(decision, confirm.yes, std::io::stdin().is_terminal())?;
    let policy = match confirm.policy {
        Some(path) => Some(decide::ApproverPolicy {
            policy: requests::load_policy(&path)?,
            path,
        }),
        None => None,
    };
    let signer = key.open()?;
    let channel = connect(address, tls).await?;
    let options = decide::Options {
        confirm: how,
        policy,
        direct: (direct, tls),
    };
    Ok(decide::decide(
        channel,
        request_id,
        department,
        (decision, &reason),
        signer,
        options,
    )
    .await?)
}

/// `serve_config`: `ringi serve`'s config, read already (for its log format).
async fn run(
    args: Args,
    serve_config: Option<Result<Config, ringi::config::ConfigError>>,
) -> anyhow::Result<()> {
    let address = args.coordinator;
    let tls = match (args.tls_client_cert, args.tls_client_key, args.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(ClientTls {
            cert,
            key,
            ca,
            server_name: args.coordinator_name,
        }),
        _ => None,
    };
    let tls = tls.as_ref();
    match args.command {
        Command::Serve { config: path } => {
            let config = match serve_config {
                Some(loaded) => loaded?,
                None => Config::load(&path)?,
            };
            ringi::server::run(config).await.map_err(|e| {
                match e.downcast::<ringi_policy::audit::AuditError>() {
                    // A broken audit log: name the command that repairs it.
                    Ok(broken) => broken
                        .with_repair_command(audit::repair_command(&path))
                        .into(),
                    Err(e) => e,
                }
            })
        }
        Command::Keygen {
            key_id,
            threshold,
            signers,
            kind,
        } => Ok(keys::keygen(
            connect(&address, tls).await?,
            key_id,
            threshold,
            signers,
            kind,
        )
        .await?),
        Command::Requests(cmd) => {
            let channel = connect(&address, tls).await?;
            match cmd {
                RequestsCommand::Submit(args) => Ok(requests::submit(channel, &args).await?),
                RequestsCommand::List {
                    pending,
                    key_id,
                    state,
                    output,
                } => Ok(requests::list(channel, pending, key_id, state, output).await?),
                RequestsCommand::Show {
                    request_id,
                    output,
                    policy,
                } => {
                    let policy = policy.as_deref().map(requests::load_policy).transpose()?;
                    Ok(requests::show_under(channel, &request_id, output, policy.as_ref()).await?)
                }
                RequestsCommand::Retry { request_id, output } => {
                    Ok(ringi_cli::retry::retry(channel, &request_id, output).await?)
                }
                RequestsCommand::Wait {
                    request_id,
                    timeout_secs,
                    output,
                } => Ok(requests::wait(
                    channel,
                    &request_id,
                    std::time::Duration::from_secs(timeout_secs),
                    output,
                )
                .await?),
            }
        }
        Command::Approve {
            request_id,
            department,
            key,
            confirm,
        } => {
            let decision = (Decision::Approve, String::new());
            decide_with(
                &address,
                tls,
                &request_id,
                &department,
                decision,
                key,
                confirm,
                &[],
            )
            .await
        }
        Command::Reject {
            request_id,
            department,
            reason,
            key,
            signers,
            confirm,
        } => {
            let decision = (Decision::Reject, reason);
            let direct = signers.endpoints()?;
            decide_with(
                &address,
                tls,
                &request_id,
                &department,
                decision,
                key,
                confirm,
                &direct,
            )
            .await
        }
        Command::Freeze {
            key_id,
            all,
            reason,
            key,
            signers,
        } => {
            let direct = signers.endpoints()?;
            let officer = key.open()?;
            Ok(freeze::freeze(&direct, tls, key_id.as_deref(), all, &reason, officer).await?)
        }
        Command::Unfreeze(UnfreezeCommand::Sign {
            key_id,
            all,
            freeze_id,
            key,
        }) => Ok(freeze::unfreeze_sign(
            key_id.as_deref(),
            all,
            &freeze_id,
            key.open()?,
        )?),
        Command::Unfreeze(UnfreezeCommand::Submit {
            key_id,
            all,
            files,
            signers,
        }) => {
            Ok(
                freeze::unfreeze_submit(&signers.endpoints()?, tls, key_id.as_deref(), all, &files)
                    .await?,
            )
        }
        Command::Policy(PolicyCommand::Check { file, current }) => {
            Ok(ringi_cli::policy::check(&file, current.as_deref())?)
        }
        Command::Policy(PolicyCommand::Approve {
            file,
            current,
            effective_at,
            key,
        }) => Ok(ringi_cli::policy::approve(
            &file,
            &current,
            effective_at.unwrap_or_else(ringi_policy::clock::now),
            key.open()?,
        )?),
        Command::Policy(PolicyCommand::Submit {
            file,
            current,
            signatures,
            signers,
        }) => Ok(ringi_cli::policy::submit(
            &signers.endpoints()?,
            tls,
            &address,
            &file,
            &current,
            &signatures,
        )
        .await?),
        Command::Policy(PolicyCommand::Status { signers }) => {
            Ok(ringi_cli::policy::status(&signers.endpoints()?, tls, &address).await?)
        }
        Command::Holds { signers } => Ok(freeze::holds(&signers.endpoints()?, tls).await?),
        Command::ApproverKey(ApproverKeyCommand::Generate { out }) => {
            eprintln!("ringi: {}", ringi_cli::approver::DEV_KEY_WARNING);
            let public = ringi_cli::approver::generate_key_file(&out)?;
            eprintln!(
                "ringi: key written to {} (mode 0600); its public key, for the policy file:",
                out.display()
            );
            println!("{}", public.to_text());
            Ok(())
        }
        Command::DevCerts {
            out,
            signers,
            signer_csrs,
            coordinator_csr,
            clients,
        } => {
            eprintln!(
                "ringi: development certificates: the CA key is a file; do not use it in production"
            );
            let written = ringi_cli::dev_certs::generate(&ringi_cli::dev_certs::DevCertsRequest {
                out,
                signers,
                signer_csrs,
                coordinator_csr,
                clients,
            })?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Audit(AuditCommand::Verify {
            path,
            checkpoint_key,
        }) => audit::verify(&path, checkpoint_key.as_deref()),
        Command::Audit(AuditCommand::Export { path, node }) => audit::export(&path, &node),
        Command::Token(TokenCommand::Init { config }) => {
            ringi_cli::token::init(&Config::load(&config)?)
        }
        Command::Token(TokenCommand::TlsCsr { config, name }) => {
            ringi_cli::token::tls_csr(&Config::load(&config)?, &name)
        }
        Command::Audit(AuditCommand::Repair { config }) => audit::repair(&Config::load(&config)?),
        Command::ApproverKey(ApproverKeyCommand::Show { key }) => {
            println!("{}", key.open()?.public_key().to_text());
            Ok(())
        }
        Command::Pubkey { key_id, output } => {
            Ok(keys::pubkey(connect(&address, tls).await?, key_id, output).await?)
        }
        Command::Health {
            address: health_address,
            server_name,
            service,
        } => {
            let address = health_address.unwrap_or(address);
            let tls = tls.map(|t| ClientTls {
                server_name: server_name.clone().unwrap_or_else(|| t.server_name.clone()),
                ..t.clone()
            });
            Ok(health::health(connect(&address, tls.as_ref()).await?, service).await?)
        }
        Command::Status { output } => {
            Ok(ringi_cli::status::status(connect(&address, tls).await?, output).await?)
        }
        Command::BenchLoad(load) => Ok(ringi_cli::bench_load::run(&address, tls, &load).await?),
        Command::Keys { action, output } => match action {
            None => Ok(keys::keys(connect(&address, tls).await?, output).await?),
            Some(KeysCommand::Refresh { key_id, order }) => {
                Ok(keys::refresh(connect(&address, tls).await?, key_id, order.as_deref()).await?)
            }
            Some(KeysCommand::ImportFromSigners { key_id }) => {
                Ok(keys::import_from_signers(connect(&address, tls).await?, key_id).await?)
            }
            // Offline: order files.
            Some(KeysCommand::Order(order)) => {
                let now = ringi_policy::clock::now();
                match order {
                    OrderCommand::Retire {
                        key_id,
                        grace_secs,
                        valid_secs,
                    } => key_order::print(&key_order::retire_order(
                        &key_id, grace_secs, valid_secs, now,
                    )?),
                    OrderCommand::Repair {
                        key_id,
                        identifier,
                        recipient_key,
                        helpers,
                        valid_secs,
                    } => key_order::print(&key_order::repair_order(
                        &key_id,
                        identifier,
                        &recipient_key,
                        &helpers,
                        valid_secs,
                        now,
                    )?),
                    OrderCommand::Refresh { key_id, valid_secs } => {
                        key_order::print(&key_order::refresh_order(&key_id, valid_secs, now)?)
                    }
                    OrderCommand::Sign { order, key } => key_order::sign(&order, key.open()?)?,
                    OrderCommand::Show { order, policy } => {
                        key_order::show(&order, policy.as_deref())?
                    }
                }
                Ok(())
            }
            Some(KeysCommand::Retire { order, signers }) => {
                Ok(key_order::retire(&signers.endpoints()?, tls, &address, &order).await?)
            }
            Some(KeysCommand::Repair {
                key_id,
                signer,
                order,
            }) => Ok(
                key_order::repair(connect(&address, tls).await?, &key_id, &signer, &order).await?,
            ),
        },
        Command::Bench {
            config,
            keys,
            iterations,
            approvers,
            psbt_key_id,
            slow_ms,
            store_url,
        } => {
            let approvers = approvers
                .iter()
                .map(|spec| {
                    let (department, file) = spec.split_once('=').ok_or_else(|| {
                        anyhow::anyhow!("--approver takes DEPARTMENT=KEYFILE, got {spec:?}")
                    })?;
                    Ok(ringi_cli::bench::BenchApprover {
                        signer: ApproverSigner::from_file(std::path::Path::new(file))?,
                        department: department.to_string(),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            ringi_cli::bench::run(
                &Config::load(&config)?,
                &keys,
                psbt_key_id.as_deref(),
                iterations,
                &approvers,
                std::time::Duration::from_millis(slow_ms),
                store_url.as_deref(),
            )
            .await
        }
        Command::BenchLifecycle {
            config,
            sizes,
            iterations,
            admins,
            spare,
        } => {
            ringi_cli::bench_lifecycle::run(
                &Config::load(&config)?,
                &ringi_cli::bench_lifecycle::LifecycleArgs {
                    sizes,
                    iterations,
                    admins,
                    spare,
                },
            )
            .await
        }
    }
}
