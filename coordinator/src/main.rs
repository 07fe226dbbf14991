//! `ringi`: the coordinator daemon (`ringi serve`) and its CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringi::cli::{self, Output};
use ringi::config::Config;

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
    },
    /// Sign a message (temporary admin path: no approvals yet).
    Sign {
        #[arg(long)]
        key_id: String,
        /// The bytes to sign, hex-encoded.
        #[arg(long)]
        message_hex: String,
        /// Exactly `threshold` signer names to use (default: any reachable).
        #[arg(long, value_delimiter = ',')]
        signers: Vec<String>,
    },
    /// Print a key's group public key (SEC1 compressed, hex).
    Pubkey {
        #[arg(long)]
        key_id: String,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List keys.
    Keys {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Measure signing latency over the real stack and the in-process floor.
    Bench {
        /// Coordinator config file (the signers to use and the database).
        #[arg(long, env = "RINGI_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        key_id: String,
        #[arg(long, default_value_t = 300)]
        iterations: usize,
        /// Also time signing through the coordinator daemon's API.
        #[arg(long)]
        through_daemon: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let log_default = if matches!(args.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| log_default.into()),
        )
        .init();
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
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringi: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let address = args.coordinator;
    match args.command {
        Command::Serve { config } => ringi::server::run(Config::load(&config)?).await,
        Command::Keygen {
            key_id,
            threshold,
            signers,
        } => Ok(cli::keygen(cli::connect(&address).await?, key_id, threshold, signers).await?),
        Command::Sign {
            key_id,
            message_hex,
            signers,
        } => Ok(cli::sign(cli::connect(&address).await?, key_id, &message_hex, signers).await?),
        Command::Pubkey { key_id, output } => {
            Ok(cli::pubkey(cli::connect(&address).await?, key_id, output).await?)
        }
        Command::Keys { output } => Ok(cli::keys(cli::connect(&address).await?, output).await?),
        Command::Bench {
            config,
            key_id,
            iterations,
            through_daemon,
        } => {
            let daemon = if through_daemon {
                Some(address.as_str())
            } else {
                None
            };
            ringi::bench::run(&Config::load(&config)?, &key_id, iterations, daemon).await
        }
    }
}
