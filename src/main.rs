//! The `sluice` command line: parse arguments, set up logging, call the library.
//!
//! - `sluice run --config FILE...` runs every configured delivery stream.
//! - `sluice validate --config FILE...` checks configs (systemd's ExecStartPre).
//! - `sluice import FILE [-o OUT]` rewrites a Firehose definition (a
//!   describe-delivery-stream output or a create-delivery-stream input) as
//!   native TOML (`sluice::config::import`).
//! - `sluice put --endpoint URL --stream NAME [FILE|-]` sends newline-separated
//!   records with PutRecordBatch, for demos and scripts.
//! - `sluice wal check|repair --stream NAME` inspects or salvages a stopped
//!   stream's write-ahead log.
//! - `sluice convert` / `sluice schema discover` backfill and infer schemas
//!   (`sluice::convert::cli`).
//! - `sluice transform test|new` runs a WASM transform on sample records, or
//!   scaffolds a plugin project (`sluice::process::wasm::cli`).
//! - `sluice health [--ready]` probes a running daemon (container health checks).
//!
//! Logs go to stderr: human-readable text, or one JSON object per line with
//! `--log-format json` (log shippers, `journalctl -o cat`, CloudWatch agents).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod probe;
mod put;

/// A self-hosted, single-binary replacement for Amazon Data Firehose.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// How log lines look on stderr: `text` (colored on a terminal) or
    /// `json` (one object per line: timestamp, level, fields, target).
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the delivery streams: serve the Firehose API and deliver records.
    Run {
        /// A delivery stream config (native TOML or Firehose JSON); repeatable.
        /// Without one, sluice runs its built-in default: the Direct PUT stream
        /// `local` writing to ./data (config/local.toml).
        #[arg(long = "config")]
        configs: Vec<PathBuf>,
        /// Address of the Firehose-compatible HTTP API.
        #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:4195")]
        listen: std::net::SocketAddr,
        /// Directory for write-ahead logs and checkpoints.
        #[arg(long, env = "SLUICE_STATE_DIR", default_value = "./state")]
        state_dir: PathBuf,
        /// Seconds a shutdown may spend delivering buffered records; past it
        /// sluice exits 1 and the rest stays in the log for the next start.
        /// Keep it below systemd's TimeoutStopSec (90 s unless set).
        #[arg(long, env = "SLUICE_DRAIN_TIMEOUT_SECS", default_value_t = 80)]
        drain_timeout_secs: u64,
        /// Start even where a checkpoint and its write-ahead log disagree (state
        /// restored from a backup, log or checkpoint lost): resume after both
        /// the checkpoint and the log's own record of what it delivered, and
        /// log what is skipped. Without it sluice refuses to start.
        #[arg(long)]
        reset_positions: bool,
        /// Limits of the Firehose API's connections and request bodies.
        #[command(flatten)]
        limits: sluice::api::LimitArgs,
        /// Where WASM transforms are found: a Lambda processor's function
        /// NAME is DIR/NAME.wasm, and relative `module` paths are under DIR.
        #[arg(long, env = "SLUICE_TRANSFORMS_DIR", default_value = "./transforms")]
        transforms_dir: PathBuf,
        /// Bytes the open objects of all dynamically partitioned streams may
        /// hold in memory together (Parquet row groups, ORC stripes), on top of
        /// each stream's own `memory_budget_bytes`; past it the largest are
        /// finished early. Default: no process-wide limit.
        #[arg(long, env = "SLUICE_MEMORY_BUDGET_BYTES", value_parser = clap::value_parser!(u64).range(1 << 20..))]
        memory_budget_bytes: Option<u64>,
        /// Seconds between retries of a failure an operator must fix (S3
        /// bucket missing, access denied, Kinesis stream not found). Such a
        /// stream reports itself failing meanwhile (/readyz, logs, metrics)
        /// and heals at the first retry after the fix.
        #[arg(long, env = "SLUICE_OPERATOR_RETRY_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        operator_retry_secs: u64,
        /// Access keys that may call the API (TOML `[[key]]` tables:
        /// `access_key_id`, `secret_access_key`, `allow` = "data" | "all",
        /// `streams` = name patterns). With it every Firehose operation must
        /// carry a valid AWS Signature Version 4; without it requests are not
        /// checked, which only a loopback --listen allows.
        #[arg(long, env = "SLUICE_AUTH_FILE")]
        auth_file: Option<PathBuf>,
        /// Listen beyond loopback without --auth-file: anyone who reaches the
        /// port may put records. Logged as a warning at every start.
        #[arg(long)]
        allow_unauthenticated: bool,
        /// Serve the API over TLS with this PEM certificate chain (with
        /// --tls-key). Both files are read again on SIGHUP.
        #[arg(long, env = "SLUICE_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, env = "SLUICE_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Let streams created through the API (CreateDeliveryStream) write to
        /// local directories inside DIR (`file://name` is DIR/name). Without
        /// it they must deliver to S3.
        #[arg(long, env = "SLUICE_API_LOCAL_ROOT")]
        api_local_root: Option<PathBuf>,
    },
    /// Check or repair a stream's write-ahead log (the stream must be stopped).
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Check configs and exit: 0 when all are valid. Transforms are loaded
    /// and their `init` called, as at start-up.
    Validate {
        /// A delivery stream config; repeatable.
        #[arg(long = "config", required = true)]
        configs: Vec<PathBuf>,
        /// As for `sluice run`.
        #[arg(long, env = "SLUICE_TRANSFORMS_DIR", default_value = "./transforms")]
        transforms_dir: PathBuf,
    },
    /// Turn a Firehose stream definition into a native TOML config: the output
    /// of `aws firehose describe-delivery-stream`, or a create-delivery-stream
    /// input. Comments say where sluice differs (Lambda ARN, Glue table, IAM
    /// roles, logging). Exits 2 with the errors when it cannot be imported.
    Import {
        /// The JSON file; `-` reads stdin.
        file: PathBuf,
        /// Write the TOML here instead of to stdout (refused if it exists,
        /// unless --force).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Overwrite an existing --output file.
        #[arg(long, requires = "output")]
        force: bool,
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
    /// Convert JSON Lines files to one Parquet or ORC file (bad records to OUT.errors.jsonl;
    /// exit 1 when more than --max-errors records failed).
    Convert(sluice::convert::cli::ConvertArgs),
    /// Schema tools: `sluice schema discover FILE...` infers a schema.
    Schema {
        #[command(subcommand)]
        command: sluice::convert::cli::SchemaCommand,
    },
    /// Ask a running daemon whether it is healthy (`/healthz`: alive, its
    /// loops ticking) or, with --ready, ready (`/readyz`: every stream
    /// active). Exits 0 when so, 1 when not, printing the answer.
    Health {
        /// The daemon's API address (its --listen; 0.0.0.0 is asked on 127.0.0.1).
        #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:4195")]
        listen: std::net::SocketAddr,
        /// Ask /readyz instead of /healthz.
        #[arg(long)]
        ready: bool,
    },
    /// WASM transform plugins: `transform test` runs one on sample records,
    /// `transform new` creates a plugin project.
    Transform {
        #[command(subcommand)]
        command: sluice::process::wasm::cli::TransformCommand,
    },
}

#[derive(Debug, Subcommand)]
enum WalCommand {
    /// Report every segment, damaged stretch and disagreement with the
    /// checkpoint; changes nothing. Exits 0 when healthy, 1 when not.
    Check {
        /// Delivery stream name.
        #[arg(long)]
        stream: String,
        /// The daemon's state directory.
        #[arg(long, env = "SLUICE_STATE_DIR", default_value = "./state")]
        state_dir: PathBuf,
    },
    /// Keep every intact record and turn each damaged stretch into records
    /// for the stream's processing-failed error output, delivered at the
    /// next start.
    Repair {
        /// Delivery stream name.
        #[arg(long)]
        stream: String,
        /// The daemon's state directory.
        #[arg(long, env = "SLUICE_STATE_DIR", default_value = "./state")]
        state_dir: PathBuf,
    },
}

/// What `sluice run` serves without `--config`: `config/local.toml`, built in
/// so the binary alone is enough to try sluice.
const BUILT_IN_DEFAULT: &str = include_str!("../config/local.toml");

fn init_logging(format: LogFormat) {
    // `SLUICE_LOG` takes tracing target directives, e.g. `info` or `sluice=debug`.
    let filter: tracing_subscriber::filter::Targets = std::env::var("SLUICE_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| "info".parse().unwrap_or_default());
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Text => layer
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        // Flattened: a line's message and fields are top-level keys, as log
        // shippers index them; `span` holds the stream a line is logged for
        // (`{"name": "stream", "stream": "orders"}`).
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .init();
    if format == LogFormat::Json {
        // The default hook writes plain text to stderr, which would break a
        // JSON log stream; a panic becomes one error line (a caught one, such
        // as a transform's or a poison record's, too). RUST_BACKTRACE still
        // decides whether it carries a backtrace.
        std::panic::set_hook(Box::new(|info| {
            let message = sluice::process::panic_message(info.payload());
            let location = info.location().map(|l| l.to_string()).unwrap_or_default();
            let backtrace = std::backtrace::Backtrace::capture();
            tracing::error!(panic = %message, %location, backtrace = %backtrace, "A thread panicked.");
        }));
    }
}

/// Every config error, one per line (`error: <file>:<line>:<column>: ...`).
fn print_config_errors(errors: &sluice::config::ConfigErrors) {
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    match cli.command {
        Command::Convert(args) => ExitCode::from(sluice::convert::cli::convert(&args)),
        Command::Schema { command } => ExitCode::from(sluice::convert::cli::schema(&command)),
        Command::Transform { command } => ExitCode::from(sluice::process::wasm::cli::run(&command)),
        Command::Validate {
            configs,
            transforms_dir,
        } => match sluice::config::load_all(&configs, &cwd) {
            Ok(streams) => {
                let errors = sluice::app::check_transforms(&streams, &cwd.join(transforms_dir));
                for e in &errors {
                    eprintln!("error: {e}");
                }
                if !errors.is_empty() {
                    return ExitCode::from(2);
                }
                for stream in streams {
                    println!("ok: delivery stream `{}`", stream.name);
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                print_config_errors(&errors);
                ExitCode::from(2)
            }
        },
        Command::Import {
            file,
            output,
            force,
        } => import(&file, output.as_deref(), force, &cwd),
        Command::Wal { command } => {
            let (stream, state_dir, repair) = match command {
                WalCommand::Check { stream, state_dir } => (stream, state_dir, false),
                WalCommand::Repair { stream, state_dir } => (stream, state_dir, true),
            };
            match sluice::app::wal_tool(&cwd.join(state_dir), &stream, repair) {
                Ok((report, healthy)) => {
                    print!("{report}");
                    if healthy {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run {
            configs,
            listen,
            state_dir,
            drain_timeout_secs,
            reset_positions,
            limits,
            transforms_dir,
            memory_budget_bytes,
            operator_retry_secs,
            auth_file,
            allow_unauthenticated,
            tls_cert,
            tls_key,
            api_local_root,
        } => {
            let tls = match (&tls_cert, &tls_key) {
                (Some(cert), Some(key)) => {
                    match sluice::api::tls::Tls::load(&cwd.join(cert), &cwd.join(key)) {
                        Ok(tls) => Some(tls),
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::from(2);
                        }
                    }
                }
                _ => None,
            };
            let keys = match auth_file
                .as_deref()
                .map(|p| sluice::api::auth::Keys::load(&cwd.join(p)))
            {
                None => None,
                Some(Ok(keys)) => Some(keys),
                Some(Err(e)) => {
                    eprintln!("error: --auth-file {e}");
                    return ExitCode::from(2);
                }
            };
            if let Err(why) =
                sluice::api::auth::listen_rule(listen, keys.is_some(), allow_unauthenticated)
            {
                eprintln!("error: {why}");
                return ExitCode::from(2);
            }
            match &keys {
                Some(keys) => tracing::info!(
                    keys = keys.len(),
                    "Requests must be signed (SigV4) with a configured access key."
                ),
                None if !listen.ip().is_loopback() => tracing::warn!(
                    %listen,
                    "--allow-unauthenticated: the API takes unsigned requests from anyone who can reach {listen}."
                ),
                None => {}
            }
            let api_limits = match limits.validate() {
                Ok(limits) => limits,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let load = {
                let (configs, cwd) = (configs.clone(), cwd.clone());
                move || {
                    if configs.is_empty() {
                        sluice::config::native::parse(
                            BUILT_IN_DEFAULT,
                            std::path::Path::new("built-in default (config/local.toml)"),
                            &cwd,
                        )
                        .map(|stream| vec![stream])
                    } else {
                        sluice::config::load_all(&configs, &cwd)
                    }
                }
            };
            let streams = match load() {
                Ok(streams) => streams,
                Err(errors) => {
                    print_config_errors(&errors);
                    return ExitCode::from(2);
                }
            };
            if configs.is_empty() {
                eprintln!(
                    "No --config given: running the built-in default stream `local` (config/local.toml).\n\
                     Put records to http://{listen} (delivery stream `local`); objects land in {}.",
                    cwd.join("data").display()
                );
            }
            let state_dir = lexically_absolute(&cwd, &state_dir);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = sluice::app::RunOptions {
                listen,
                state_dir,
                drain_timeout: std::time::Duration::from_secs(drain_timeout_secs),
                reset_positions,
                api_limits,
                transforms_dir: cwd.join(transforms_dir),
                memory_budget_bytes,
                operator_retry: std::time::Duration::from_secs(operator_retry_secs),
                auth: keys,
                tls,
                // In the form local destinations take, for the inside check.
                api_local_root: api_local_root.map(|dir| lexically_absolute(&cwd, &dir)),
            };
            // Handlers are installed now, before the port opens: a SIGTERM
            // that arrives during start-up must drain, not kill.
            let (shutdown, reloads) = {
                let _context = runtime.enter();
                match (shutdown_signal(), reload_signal()) {
                    (Ok(shutdown), Ok(signals)) => (
                        shutdown,
                        sluice::app::Reloads {
                            signals,
                            load: Box::new(move || load().map_err(|errors| errors.to_string())),
                        },
                    ),
                    (Err(e), _) | (_, Err(e)) => {
                        eprintln!("error: cannot install signal handlers: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            };
            match runtime.block_on(sluice::app::run(streams, options, shutdown, Some(reloads))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "sluice stopped with an error.");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Health { listen, ready } => {
            let Some(answer) = block_on(probe::check(listen, ready)) else {
                return ExitCode::FAILURE;
            };
            match answer {
                Ok(body) => {
                    println!("{body}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Put {
            endpoint,
            stream,
            file,
        } => {
            let Some(sent) = block_on(put::run(&endpoint, &stream, file.as_deref())) else {
                return ExitCode::FAILURE;
            };
            match sent {
                Ok(sent) => {
                    let noun = if sent == 1 { "record" } else { "records" };
                    eprintln!("sent {sent} {noun} to `{stream}`");
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

/// `path` against `cwd` without `.` components (`./state` reads better in logs
/// as `<cwd>/state`, and local destinations are compared in this form).
fn lexically_absolute(cwd: &std::path::Path, path: &std::path::Path) -> PathBuf {
    cwd.join(path)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// `sluice import`: reads FILE (or stdin), writes the TOML to stdout or OUT.
fn import(
    file: &std::path::Path,
    output: Option<&std::path::Path>,
    force: bool,
    cwd: &std::path::Path,
) -> ExitCode {
    use std::io::{Read as _, Write as _};
    let stdin = file.as_os_str() == "-";
    let shown = if stdin {
        std::path::Path::new("<stdin>")
    } else {
        file
    };
    let mut text = String::new();
    let read = if stdin {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(cwd.join(file)).map(|t| text = t)
    };
    if let Err(e) = read {
        print_config_errors(&sluice::config::ConfigErrors(vec![
            sluice::config::FileError {
                path: shown.to_owned(),
                position: None,
                error: sluice::config::ConfigError::Read(e),
            },
        ]));
        return ExitCode::from(2);
    }
    let toml = match sluice::config::import::import(&text, shown, cwd) {
        Ok(toml) => toml,
        Err(errors) => {
            print_config_errors(&errors);
            return ExitCode::from(2);
        }
    };
    let Some(output) = output else {
        print!("{toml}");
        return ExitCode::SUCCESS;
    };
    let path = cwd.join(output);
    // create_new: an existing file is never replaced by accident, even one
    // that appears between a check and the write.
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .create_new(!force)
        .open(&path);
    let written = opened.and_then(|mut f| f.write_all(toml.as_bytes()).and_then(|()| f.sync_all()));
    match written {
        Ok(()) => {
            eprintln!("wrote {}", output.display());
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "error: {} exists; pass --force to overwrite it",
                output.display()
            );
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", output.display());
            ExitCode::from(2)
        }
    }
}

/// Runs a client command's future on a one-thread runtime; `None` (after
/// saying why) when the runtime cannot start.
fn block_on<F: std::future::Future>(future: F) -> Option<F::Output> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt.block_on(future)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

/// A future resolving on SIGTERM (systemd, container runtimes) or SIGINT
/// (Ctrl-C). The handlers are registered when this is called, not when the
/// future is first polled.
/// SIGHUP (`systemctl reload`, `kill -HUP`): one message per signal. Installed
/// before the port opens, since SIGHUP's default action would end the process.
fn reload_signal() -> std::io::Result<tokio::sync::mpsc::Receiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // A reload already waiting covers this signal too.
            let _ = tx.try_send(());
        }
    });
    Ok(rx)
}

fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received."),
            _ = int.recv() => tracing::info!("SIGINT received."),
        }
        // A second signal means "now": exit at once. Nothing acknowledged is
        // lost: it is fsynced in the log (or still in the shards), and staged
        // objects of unfinished epochs are aborted at the next start.
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!(
                "Second signal: exiting now without finishing delivery; undelivered records stay in the write-ahead log for the next start."
            );
            std::process::exit(1);
        });
    })
}
