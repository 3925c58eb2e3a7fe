//! The `sluice` command line: parse arguments, set up logging, call the library.
//!
//! - `sluice run --config FILE...` runs every configured delivery stream.
//! - `sluice validate --config FILE...` checks configs (systemd's ExecStartPre).
//! - `sluice put --endpoint URL --stream NAME [FILE|-]` sends newline-separated
//!   records with PutRecordBatch, for demos and scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod put;

/// A self-hosted, single-binary replacement for Amazon Data Firehose.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the delivery streams: serve the Firehose API and deliver records.
    Run {
        /// A delivery stream config (native TOML or Firehose JSON); repeatable.
        #[arg(long = "config", required = true)]
        configs: Vec<PathBuf>,
        /// Address of the Firehose-compatible HTTP API.
        #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:4195")]
        listen: std::net::SocketAddr,
        /// Directory for write-ahead logs and checkpoints.
        #[arg(long, env = "SLUICE_STATE_DIR", default_value = "./state")]
        state_dir: PathBuf,
    },
    /// Check configs and exit: 0 when all are valid.
    Validate {
        /// A delivery stream config; repeatable.
        #[arg(long = "config", required = true)]
        configs: Vec<PathBuf>,
    },
    /// Send newline-separated records from FILE (or stdin) with PutRecordBatch.
    Put {
        /// Base URL of the Firehose API, e.g. http://127.0.0.1:4195.
        #[arg(long)]
        endpoint: String,
        /// Delivery stream name.
        #[arg(long)]
        stream: String,
        /// Input file; `-` or absent reads stdin.
        file: Option<PathBuf>,
    },
}

fn init_logging() {
    // `SLUICE_LOG` takes tracing target directives, e.g. `info` or `sluice=debug`.
    let filter: tracing_subscriber::filter::Targets = std::env::var("SLUICE_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| "info".parse().unwrap_or_default());
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    match cli.command {
        Command::Validate { configs } => match sluice::config::load_all(&configs, &cwd) {
            Ok(streams) => {
                for stream in streams {
                    println!("ok: delivery stream `{}`", stream.name);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run { configs, listen, state_dir } => {
            let streams = match sluice::config::load_all(&configs, &cwd) {
                Ok(streams) => streams,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let state_dir = cwd.join(state_dir);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = sluice::app::RunOptions { listen, state_dir };
            match runtime.block_on(sluice::app::run(streams, options, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "sluice stopped with an error.");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Put { endpoint, stream, file } => {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(put::run(&endpoint, &stream, file.as_deref())) {
                Ok(sent) => {
                    eprintln!("sent {sent} records to `{stream}`");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Resolves on SIGTERM (systemd, container runtimes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "Cannot listen for SIGTERM; only Ctrl-C will stop sluice.");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received."),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received."),
    }
}
