//! Wiring: one pipeline per delivery stream, the shared HTTP API, reload and
//! shutdown.
//!
//! Neighbours: `main` parses the command line and calls [`run`] with the
//! validated [`StreamConfig`]s, a shutdown future (SIGTERM/SIGINT) and the
//! SIGHUP [`Reloads`]. The running streams are a registry ([`supervisor`]),
//! which the API serves from and reloads change; each stream's
//! [`crate::status::StreamStatus`] feeds `/readyz`, `DescribeDeliveryStream`
//! and systemd ([`crate::service`]).
//!
//! Per stream, under `<state dir>/<stream>/`: `checkpoint.json`, and `wal/`
//! (the Direct PUT write-ahead log) or `kinesis-start.json` (when sluice first
//! saw a Kinesis stream). `<state dir>/instance-id` names this instance in the
//! S3 claim markers its sinks take before recovery (see `sink`).
//!
//! A stream's pipeline is
//! source -> [`BufferStage`] -> [`Delivery`]; when any part fails, the whole
//! pipeline is dropped and restarted from the last checkpoint (recovery is the
//! one well-tested path back to a consistent state) after a wait its error's
//! classification decides: a doubling backoff for a retriable fault, the
//! operator retry period for one an operator must fix, while the stream
//! reports itself failing with the reason.
//!
//! Shutdown: the API starts answering `ServiceUnavailableException`, each
//! log is closed after the appends already queued, Kinesis readers finish
//! their current call, every pipeline drains its source, closes its last
//! buffer and delivers it, then the server stops.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

mod catalog;
mod supervisor;
use supervisor::Supervisor;

use crate::api::{self, ApiState, ApiStream};
use crate::buffer::{BudgetShare, BufferError, BufferStage, ObjectNamer};
use crate::checkpoint::{CheckpointError, CheckpointStore, FileCheckpointStore};
use crate::config::{Encryption, GlueTable, MIB, SchemaSource, SourceConfig, StreamConfig, Target};
use crate::delivery::{Delivery, DeliveryError, Epoch};
use crate::error::{Classify, Fault};
use crate::process::{Chain, LoadContext};
use crate::record::Positions;
use crate::sink::s3::{self, S3Options, UploadFilter};
use crate::sink::{LocalSink, ObjectSink, S3Sink, SinkError};
use crate::source::direct_put::wal::WalOptions;
use crate::source::direct_put::{Wal, WalError};
use crate::source::kinesis::{KinesisProgress, KinesisShared, KinesisSource};
use crate::source::{self, Source};
use crate::status::{State, StreamStatus};

/// Runtime options from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Address of the Firehose API.
    pub listen: SocketAddr,
    /// Where logs and checkpoints live.
    pub state_dir: PathBuf,
    /// How long a shutdown may take to deliver what is buffered; past it
    /// sluice exits non-zero and the rest stays in the log for the next start.
    pub drain_timeout: Duration,
    /// Start even where a checkpoint and its log disagree (see
    /// [`crate::source::direct_put::wal::check`]), saying what was skipped.
    pub reset_positions: bool,
    /// Connection, timeout and body limits of the Firehose API.
    pub api_limits: api::ApiLimits,
    /// Where WASM transforms are found (Lambda function names, relative
    /// module paths).
    pub transforms_dir: PathBuf,
    /// Bytes the open objects of all partitioned streams may hold together
    /// (each stream also has its own `memory_budget_bytes`); `None`: no
    /// process-wide limit.
    pub memory_budget_bytes: Option<u64>,
    /// How often failures an operator must fix are retried.
    pub operator_retry: Duration,
    /// The access keys requests must be signed with; `None`: not checked.
    pub auth: Option<api::auth::Keys>,
    /// TLS on the listener (reloaded on SIGHUP); `None`: plain HTTP.
    pub tls: Option<Arc<api::tls::Tls>>,
    /// The directory inside which streams created through the API may write
    /// to a local directory (`file://` relative to it); `None`: they may not.
    pub api_local_root: Option<PathBuf>,
}

/// Why the daemon stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The state directory is unusable or locked by another process.
    #[error("state directory {path}: {message}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The API address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Opening a stream's parts failed.
    #[error("stream `{stream}`: {message}")]
    Stream {
        /// The stream.
        stream: String,
        /// What failed.
        message: String,
    },
    /// The drain did not finish within the deadline; what is undelivered
    /// stays in the log (or in the shards) for the next start.
    #[error(
        "shutdown did not finish delivering within {secs} s; streams still draining: {streams:?} (their records stay in the log and are delivered at the next start)"
    )]
    DrainTimeout {
        /// The deadline.
        secs: u64,
        /// Streams still draining.
        streams: Vec<String>,
    },
    /// A pipeline failed while draining at shutdown; its records stay in the
    /// log and are delivered at the next start.
    #[error("stream `{stream}` could not drain: {source}")]
    Drain {
        /// The stream.
        stream: String,
        /// The last failure.
        source: Box<PipelineError>,
    },
}

impl Classify for AppError {
    fn is_retriable(&self) -> bool {
        matches!(self, AppError::Drain { .. } | AppError::DrainTimeout { .. })
    }
    fn fault(&self) -> Fault {
        match self {
            AppError::StateDir { .. } | AppError::Listen { .. } => Fault::Config,
            AppError::Stream { .. } => Fault::Config,
            AppError::DrainTimeout { .. } => Fault::Remote,
            AppError::Drain { source, .. } => source.fault(),
        }
    }
}

/// A failure somewhere in one stream's pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// In the buffer stage.
    #[error(transparent)]
    Buffer(#[from] BufferError),
    /// In the delivery protocol.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

impl Classify for PipelineError {
    fn is_retriable(&self) -> bool {
        match self {
            PipelineError::Buffer(e) => e.is_retriable(),
            PipelineError::Delivery(e) => e.is_retriable(),
        }
    }
    fn fault(&self) -> Fault {
        match self {
            PipelineError::Buffer(e) => e.fault(),
            PipelineError::Delivery(e) => e.fault(),
        }
    }
}

/// A stream's source, as it lives across pipeline restarts.
#[derive(Debug, Clone)]
enum SourceParts {
    /// The write-ahead log behind the Direct PUT API.
    DirectPut(Wal),
    /// A Kinesis stream; a fresh reader set is started per pipeline run.
    Kinesis(Arc<KinesisShared>),
}

/// One stream's long-lived parts.
#[derive(Debug, Clone)]
struct StreamParts {
    name: String,
    /// What it is doing, for the API, metrics and systemd.
    status: Arc<StreamStatus>,
    source: SourceParts,
    sink: Arc<dyn ObjectSink>,
    store: Arc<dyn CheckpointStore>,
    stage: BufferStage,
}

/// Re-reading the configuration on SIGHUP.
pub struct Reloads {
    /// One message per SIGHUP.
    pub signals: mpsc::Receiver<()>,
    /// Reads every stream config again (the same files as at start), or says
    /// why they cannot be used (every error of every file, as `sluice validate`).
    pub load: Box<dyn Fn() -> Result<Vec<StreamConfig>, String> + Send>,
}

/// Whether a stream needs the AWS configuration (S3, Kinesis or Glue).
fn needs_aws(s: &StreamConfig) -> bool {
    matches!(s.destination.target, Target::S3(_))
        || matches!(s.source, SourceConfig::Kinesis(_))
        || s.destination
            .format
            .as_ref()
            .is_some_and(|f| matches!(f.schema, SchemaSource::Glue(_)))
}

/// `RoleARN` of a destination whose definition named none (config files,
/// native TOML). Firehose requires one; sluice writes with its own process'
/// credential chain, which this name says.
pub const NO_ROLE_ARN: &str = "arn:aws:iam::000000000000:role/sluice-process-credentials";

/// A stream as the API serves it: `entry` is its catalog entry if the API created
/// it (its timestamps, tags and `RoleARN` come from there); a config file's stream
/// was created and last updated at `started`, the process start.
fn api_stream(
    config: &StreamConfig,
    parts: &StreamParts,
    entry: Option<&catalog::Entry>,
    started: f64,
) -> ApiStream {
    let (created, updated, role_arn) = match entry {
        Some(e) => (
            e.created,
            e.updated,
            e.request
                .pointer("/ExtendedS3DestinationConfiguration/RoleARN")
                .and_then(Value::as_str)
                .unwrap_or(NO_ROLE_ARN),
        ),
        None => (started, started, NO_ROLE_ARN),
    };
    ApiStream {
        wal: match &parts.source {
            SourceParts::DirectPut(wal) => Some(wal.clone()),
            SourceParts::Kinesis(_) => None,
        },
        description: description(config, &*parts.sink, created, updated, role_arn),
        status: parts.status.clone(),
        origin: match entry {
            Some(_) => api::control::Origin::Api,
            None => api::control::Origin::ConfigFile,
        },
        tags: entry.map(|e| e.tags.clone()).unwrap_or_default(),
        deleting: false,
    }
}

/// Runs every stream until `shutdown` resolves, then drains and returns; on
/// each of `reloads`' signals, applies the configuration as it is then
/// ([`supervisor`]).
///
/// # Errors
/// [`AppError`] when start-up fails or a stream cannot drain.
pub async fn run(
    streams: Vec<StreamConfig>,
    options: RunOptions,
    shutdown: impl std::future::Future<Output = ()>,
    reloads: Option<Reloads>,
) -> Result<(), AppError> {
    let _lock = lock_state_dir(&options.state_dir)?;
    crate::status::set_operator_retry(options.operator_retry);
    // Control-plane requests queue here for the loop below, one at a time.
    let (calls, mut control) = mpsc::channel(16);
    let state = Arc::new(
        ApiState::new(BTreeMap::new())
            .with_keys(options.auth.clone())
            .with_control(Some(calls)),
    );
    let (listen, limits, state_dir, options_tls) = (
        options.listen,
        options.api_limits.clone(),
        options.state_dir.clone(),
        options.tls.clone(),
    );
    let mut supervisor = Supervisor::new(options, state.clone());
    // The config files' streams, then the API's, each with its catalog entry if any.
    let mut entries: Vec<Option<catalog::Entry>> = vec![None; streams.len()];
    let mut streams = streams;
    for (config, entry) in supervisor.restore(&streams)? {
        streams.push(config);
        entries.push(Some(entry));
    }
    let streams = supervisor.resolve(streams).await?;
    let mut prepared = Vec::new();
    for (config, entry) in streams.into_iter().zip(entries) {
        let parts = supervisor.prepare(&config).await?;
        supervisor.list(&config, &parts, entry.as_ref());
        prepared.push((config, parts, entry));
    }

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: listen,
            source,
        })?;
    let address = listener.local_addr().unwrap_or(listen);
    let names: Vec<&str> = prepared.iter().map(|(c, _, _)| c.name.as_str()).collect();
    tracing::info!(%address, streams = ?names, state_dir = %state_dir.display(), "Listening.");

    let (stop_server, server_stopped) = watch::channel(false);
    let server = tokio::spawn({
        let state = state.clone();
        let tls = options_tls.clone();
        let mut server_stopped = server_stopped;
        async move {
            api::serve(listener, api::router(state), limits, tls, async move {
                let _ = server_stopped.wait_for(|stopped| *stopped).await;
            })
            .await
        }
    });
    for (config, parts, entry) in prepared {
        let print = supervisor.fingerprint(&config);
        supervisor.launch(config, print, parts, entry);
    }
    supervisor.finish_deletes().await;
    let statuses = {
        let state = state.clone();
        move || -> Vec<Arc<StreamStatus>> {
            state
                .all()
                .into_iter()
                .map(|(_, s)| s.status.clone())
                .collect()
        }
    };
    let mut notifier = tokio::spawn(notify_ready(statuses.clone()));

    let mut shutdown = std::pin::pin!(shutdown);
    let (mut signals, load) = match reloads {
        Some(r) => (Some(r.signals), Some(r.load)),
        None => (None, None),
    };
    loop {
        let reload = async {
            match &mut signals {
                Some(signals) => signals.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            Some(call) = control.recv() => supervisor.control(call).await,
            Some(()) = reload => {
                let Some(load) = &load else { continue };
                tracing::info!("SIGHUP: reloading the configuration.");
                crate::service::reloading();
                if let Some(tls) = &options_tls {
                    match tls.reload() {
                        Ok(()) => tracing::info!("Reloaded the TLS certificate and key."),
                        Err(e) => tracing::error!(error = %e, "TLS reload refused; new connections keep the certificate in use."),
                    }
                }
                match supervisor.reload(load()).await {
                    Ok(what) => tracing::info!(changes = %what, "Reloaded."),
                    Err(why) => tracing::error!(error = %why, "Reload refused; every stream keeps its running configuration."),
                }
                // READY again once the restarted streams have recovered.
                notifier.abort();
                notifier = tokio::spawn(notify_ready(statuses.clone()));
            }
        }
    }
    tracing::info!("Shutting down: refusing new records, draining every stream.");
    notifier.abort();
    crate::service::stopping();
    state.start_draining();
    let result = supervisor.shutdown().await;
    // Past the drain timeout the process exits at once; otherwise the API
    // answers until every stream has drained, then stops.
    if !matches!(result, Err(AppError::DrainTimeout { .. })) {
        stop_server.send_replace(true);
        if let Ok(Err(e)) = server.await {
            tracing::warn!(error = %e, "HTTP server stopped with an error.");
        }
    }
    result
}

/// systemd: READY once no stream is starting (each serves, or failed with a
/// reason it reports and keeps retrying, so one broken bucket cannot hold the
/// whole service in "activating"); then the watchdog.
async fn notify_ready(statuses: impl Fn() -> Vec<Arc<StreamStatus>> + Send + 'static) {
    while statuses().iter().any(|s| s.state() == State::Starting) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = crate::service::summary(&statuses());
    tracing::info!(status = %line, "Ready.");
    crate::service::ready(&line);
    if let Some(interval) = crate::service::watchdog_interval() {
        crate::service::watchdog(statuses, interval).await;
    }
}

/// Reads a Glue table's columns into the stream's conversion schema, once at
/// start-up (Firehose re-reads `LATEST` tables; sluice picks up table changes
/// at the next start or reload).
async fn resolve_glue_schema(
    config: &mut StreamConfig,
    sdk: Option<&aws_config::SdkConfig>,
) -> Result<(), AppError> {
    let Some(format) = &config.destination.format else {
        return Ok(());
    };
    let SchemaSource::Glue(table) = &format.schema else {
        return Ok(());
    };
    let err = |message: String| AppError::Stream {
        stream: config.name.clone(),
        message,
    };
    let sdk = sdk.ok_or_else(|| err("AWS configuration was not loaded".into()))?;
    let schema = glue_schema(sdk, table).await.map_err(|e| {
        err(format!(
            "Glue table {}.{}: {e}",
            table.database, table.table
        ))
    })?;
    tracing::info!(stream = %config.name, database = %table.database, table = %table.table, columns = schema.columns.len(), "Read the conversion schema from Glue.");
    let mut resolved = (**format).clone();
    resolved.schema = SchemaSource::Inline(schema);
    config.destination.format = Some(Arc::new(resolved));
    Ok(())
}

async fn glue_schema(
    sdk: &aws_config::SdkConfig,
    table: &GlueTable,
) -> Result<crate::convert::Schema, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut builder = aws_sdk_glue::config::Builder::from(sdk);
    if let Some(region) = &table.region {
        builder = builder.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = table
        .endpoint_url
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_GLUE"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
    {
        builder = builder.endpoint_url(url);
    }
    let client = aws_sdk_glue::Client::from_conf(builder.build());
    let found = match &table.version_id {
        None => {
            client
                .get_table()
                .database_name(&table.database)
                .name(&table.table)
                .set_catalog_id(table.catalog_id.clone())
                .send()
                .await
                .map_err(|e| aws_smithy_types::error::display::DisplayErrorContext(&e).to_string())?
                .table
        }
        Some(version) => client
            .get_table_version()
            .database_name(&table.database)
            .table_name(&table.table)
            .version_id(version)
            .set_catalog_id(table.catalog_id.clone())
            .send()
            .await
            .map_err(|e| aws_smithy_types::error::display::DisplayErrorContext(&e).to_string())?
            .table_version
            .and_then(|v| v.table),
    };
    let columns = found
        .and_then(|t| t.storage_descriptor)
        .and_then(|d| d.columns)
        .ok_or("the table has no StorageDescriptor columns")?;
    crate::convert::Schema::parse(
        columns
            .iter()
            .map(|c| (c.name.as_str(), c.r#type.as_deref().unwrap_or(""))),
    )
    .map_err(|e| e.to_string())
}

/// `sluice wal check|repair`: the report on a stream's log (after the repair,
/// when repairing) and whether it is healthy. Takes the state directory's
/// lock, so it cannot run beside the daemon.
///
/// # Errors
/// [`AppError`] when the state directory is locked or unreadable.
pub fn wal_tool(
    state_dir: &Path,
    stream: &str,
    repair: bool,
) -> Result<(crate::source::direct_put::wal::check::Report, bool), AppError> {
    use crate::source::direct_put::wal::check;
    let err = |message: String| AppError::Stream {
        stream: stream.to_owned(),
        message,
    };
    if !state_dir.join(stream).is_dir() {
        return Err(err(format!(
            "no state for this stream in {}",
            state_dir.display()
        )));
    }
    let _lock = lock_state_dir(state_dir)?;
    // A lost checkpoint is read as none: the report then says how the log disagrees.
    let committed = FileCheckpointStore::new(state_dir.join(stream).join("checkpoint.json"))
        .accepting_lost(true)
        .read()
        .map_err(|e| err(e.to_string()))?
        .and_then(|c| c.wal_floor());
    let dir = state_dir.join(stream).join("wal");
    if repair {
        let done = check::repair(&dir, committed).map_err(|e| err(e.to_string()))?;
        tracing::info!(
            stretches = done.stretches,
            bytes = done.bytes,
            recreated = ?done.recreated,
            "Repaired: damaged bytes will be delivered to the processing-failed error output at the next start."
        );
    }
    let report = check::check(&dir, committed).map_err(|e| err(e.to_string()))?;
    let healthy = report.problems().iter().all(|p| {
        matches!(
            p,
            check::Problem::TornTail { .. } | check::Problem::TornHeader { .. }
        )
    });
    Ok((report, healthy))
}

fn lock_state_dir(dir: &Path) -> Result<File, AppError> {
    let err = |message: String| AppError::StateDir {
        path: dir.to_owned(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let lock = File::create(dir.join("sluice.lock")).map_err(|e| err(e.to_string()))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(err(
            "in use by another sluice process (sluice.lock is held)".into(),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(err(e.to_string())),
    }
}

/// This instance's identity for S3 claims: a UUID created once in
/// `<state dir>/instance-id` (written atomically and fsynced), so the same
/// instance restarting after kill -9 or a reboot re-claims its own markers,
/// while an instance with another (or a lost) state directory is refused.
fn instance_id(state_dir: &Path) -> Result<String, AppError> {
    let path = state_dir.join("instance-id");
    let err = |message: String| AppError::StateDir {
        path: state_dir.to_owned(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => uuid::Uuid::parse_str(text.trim())
            .map(|id| id.to_string())
            .map_err(|e| {
                err(format!(
                    "{} is not an instance id ({e}); it names this instance in its claims \
                     on output locations, so it is not replaced silently: restore it, or \
                     delete it and release this instance's claims (S3 markers, claim files)",
                    path.display()
                ))
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            crate::fsutil::write_atomic(&path, format!("{id}\n").as_bytes())
                .map_err(|e| err(format!("writing {}: {e}", path.display())))?;
            Ok(id)
        }
        Err(e) => Err(err(format!("reading {}: {e}", path.display()))),
    }
}

async fn open_stream(
    config: &StreamConfig,
    options: &RunOptions,
    sdk: Option<&aws_config::SdkConfig>,
    process_budget: Option<BudgetShare>,
) -> Result<StreamParts, AppError> {
    let state_dir = options.state_dir.as_path();
    let err = |message: String| AppError::Stream {
        stream: config.name.clone(),
        message,
    };
    let dir = state_dir.join(&config.name);
    std::fs::create_dir_all(&dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
    let store: Arc<dyn CheckpointStore> = Arc::new(
        FileCheckpointStore::new(dir.join("checkpoint.json"))
            .accepting_lost(options.reset_positions),
    );
    let checkpoint = store
        .load()
        .await
        .map_err(|e: CheckpointError| err(e.to_string()))?;
    let source = match &config.source {
        SourceConfig::DirectPut(direct_put) => SourceParts::DirectPut(
            Wal::open(
                &dir.join("wal"),
                // Where the last epoch started: if its objects turn out to be
                // gone, recovery rebuilds it from the log (delivery.rs).
                checkpoint.and_then(|c| c.wal_floor()),
                WalOptions {
                    reset_positions: options.reset_positions,
                    ..WalOptions::new(direct_put.max_wal_bytes)
                },
            )
            .map_err(|e: WalError| err(e.to_string()))?,
        ),
        SourceConfig::Kinesis(kinesis) => {
            let sdk = sdk.ok_or_else(|| err("AWS configuration was not loaded".into()))?;
            SourceParts::Kinesis(Arc::new(KinesisShared {
                client: source::kinesis::client(sdk, kinesis),
                config: kinesis.clone(),
                creation_ms: source::kinesis::creation_timestamp(&dir)
                    .map_err(|e| err(e.to_string()))?,
                stats: Default::default(),
            }))
        }
    };
    let destination = &config.destination;
    let sink: Arc<dyn ObjectSink> = match &destination.target {
        Target::Local { path } => Arc::new(
            LocalSink::new(path, &config.name, &instance_id(state_dir)?)
                .map_err(|e: SinkError| err(e.to_string()))?,
        ),
        Target::S3(target) => {
            let sdk = sdk.ok_or_else(|| err("AWS configuration was not loaded".into()))?;
            let options = S3Options {
                bucket: target.bucket.clone(),
                part_size_bytes: target.part_size_bytes as usize,
                max_concurrent_parts: target.max_concurrent_parts,
                encryption: target.encryption.clone(),
            };
            let mut prefixes = vec![
                destination.prefix.as_str(),
                destination.error_output_prefix.as_str(),
            ];
            prefixes.extend(destination.backup.as_ref().map(|b| b.prefix.as_str()));
            let filter = UploadFilter {
                list_prefix: literal_head(&prefixes),
                stream: config.name.clone(),
            };
            let me = s3::Holder::this_process(instance_id(state_dir)?, state_dir);
            let sink =
                S3Sink::new(s3::client(sdk, target), options, filter).with_holder(me.clone());
            // Refuse to start when another instance delivers this stream there.
            // Any other failure (S3 unreachable, bucket missing) must not stop
            // the daemon or the other streams: the claim is retried by the
            // pipeline's recovery, before it aborts anything under the prefix.
            // Bounded, so an unreachable S3 does not hold up the API's start.
            match tokio::time::timeout(Duration::from_secs(5), sink.claim(&me)).await {
                Ok(Ok(())) => {}
                Ok(Err(e @ SinkError::Claimed { .. })) => return Err(err(e.to_string())),
                Ok(Err(e)) => {
                    tracing::warn!(stream = %config.name, error = %e, "Cannot claim the stream's S3 prefix yet; recovery retries before delivering.")
                }
                Err(_) => {
                    tracing::warn!(stream = %config.name, "S3 did not answer the claim within 5 s; recovery retries before delivering.")
                }
            }
            Arc::new(sink)
        }
    };
    let processors = {
        let processors = destination.processors.clone();
        // Keyed by the module's hash and wasmtime's: a restart loads the native
        // code instead of compiling for seconds.
        let (transforms_dir, cache_dir) =
            (options.transforms_dir.clone(), state_dir.join("wasm-cache"));
        let context = transform_context(config);
        // Compiling is CPU work of up to seconds per component.
        let (chain, refused) = tokio::task::spawn_blocking(move || {
            load_chain(&processors, transforms_dir, Some(cache_dir), context)
        })
        .await
        .map_err(|e| err(format!("loading transforms: {e}")))?
        .map_err(|e| err(e.to_string()))?;
        for e in &refused {
            tracing::error!(stream = %config.name, "{e}; its records go to processing-failed until this is fixed.");
        }
        chain
    };
    let stage = BufferStage {
        namer: ObjectNamer::new(&config.name, config.version, destination),
        sink: sink.clone(),
        buffering: destination.buffering,
        compression: destination.compression,
        delimiter: destination.append_delimiter,
        backup: destination.backup.as_ref().map(|b| {
            let namer = ObjectNamer::with_prefix(
                &config.name,
                config.version,
                b.prefix.clone(),
                destination.time_zone.clone(),
                b.compression.default_extension(),
            );
            (namer, b.compression)
        }),
        error_namer: ObjectNamer::with_prefix(
            &config.name,
            config.version,
            destination.error_output_prefix.clone(),
            destination.time_zone.clone(),
            if destination.format.is_some() {
                ""
            } else {
                destination.compression.default_extension()
            },
        ),
        processors: Arc::new(processors),
        format: destination.format.clone(),
        partitioning: destination.dynamic_partitioning.clone(),
        process_budget,
        quarantine: Arc::default(),
    };
    Ok(StreamParts {
        name: config.name.clone(),
        status: Arc::new(StreamStatus::new(&config.name)),
        source,
        sink,
        store,
        stage,
    })
}

/// The longest literal text every prefix starts with: where this stream's
/// objects can be listed from, whatever the expressions evaluate to.
fn literal_head(prefixes: &[&str]) -> String {
    let heads: Vec<&str> = prefixes
        .iter()
        .map(|p| p.split("!{").next().unwrap_or(""))
        .collect();
    let first = heads.first().copied().unwrap_or("");
    let len = first
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|&end| heads.iter().all(|h| h.starts_with(&first[..end])))
        .last()
        .unwrap_or(0);
    first[..len].to_owned()
}

/// One start-up line per stream: what it reads, where it writes, how.
fn log_summary(config: &StreamConfig, sink: &dyn ObjectSink) {
    let d = &config.destination;
    let source = match &config.source {
        SourceConfig::DirectPut(_) => "Direct PUT (Firehose API)".to_owned(),
        SourceConfig::Kinesis(k) => format!("Kinesis stream {}", k.stream_name),
    };
    let format = match d.format.as_deref() {
        None => format!("raw, {}", d.compression.firehose_name()),
        Some(f) => match &f.output {
            crate::config::OutputFormat::Parquet(_) => "Parquet".to_owned(),
            crate::config::OutputFormat::Orc(_) => "ORC".to_owned(),
        },
    };
    tracing::info!(
        stream = %config.name,
        source = %source,
        destination = %sink.describe(),
        prefix = %d.prefix.as_str(),
        format = %format,
        buffering = %format!(
            "{:.1} MiB or {} s",
            d.buffering.size_bytes as f64 / MIB as f64,
            d.buffering.interval.as_secs()
        ),
        "Stream configured."
    );
}

/// The region a stream reports (`AWS_REGION`, else us-east-1), in its ARN
/// and its transforms' batch context.
fn region() -> String {
    std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())
}

/// The stream's ARN as Firehose would give it. sluice has no account: the
/// account id is Firehose's documented placeholder of twelve zeros.
fn stream_arn(config: &StreamConfig) -> String {
    format!(
        "arn:aws:firehose:{}:000000000000:deliverystream/{}",
        region(),
        config.name
    )
}

/// What a stream's transforms are told about each call, as Firehose tells a
/// Lambda function.
fn transform_context(config: &StreamConfig) -> crate::process::wasm::BatchContext {
    crate::process::wasm::BatchContext {
        invocation_id: String::new(),
        delivery_stream_arn: stream_arn(config),
        region: region(),
        source_kinesis_stream_arn: match &config.source {
            SourceConfig::Kinesis(k) => Some(format!(
                "arn:aws:kinesis:{}:000000000000:stream/{}",
                region(),
                k.stream_name
            )),
            SourceConfig::DirectPut(_) => None,
        },
    }
}

/// Loads a stream's processor chain and creates one instance of each transform:
/// the chain, and the transforms whose `init` refused their configuration.
///
/// # Errors
/// [`crate::process::LoadError`] when a module is missing or not a component.
fn load_chain(
    processors: &crate::process::Processors,
    transforms_dir: PathBuf,
    cache_dir: Option<PathBuf>,
    context: crate::process::wasm::BatchContext,
) -> Result<(Chain, Vec<crate::process::LoadError>), crate::process::LoadError> {
    let ctx = LoadContext {
        transforms_dir,
        cache_dir,
        context,
    };
    let chain = Chain::load(processors, &ctx)?;
    let refused = chain.check_init();
    Ok((chain, refused))
}

/// Loads every stream's transforms as `sluice run` would (without the
/// compile cache), for `sluice validate`: a missing module, one that is not
/// a component of the contract, or one whose `init` refuses its
/// configuration, each named with the stream. Blocking.
pub fn check_transforms(streams: &[StreamConfig], transforms_dir: &Path) -> Vec<String> {
    streams
        .iter()
        .filter(|s| !s.destination.processors.transforms.is_empty())
        .flat_map(|s| {
            let errors = match load_chain(
                &s.destination.processors,
                transforms_dir.to_path_buf(),
                None,
                transform_context(s),
            ) {
                Ok((_, refused)) => refused,
                Err(e) => vec![e],
            };
            errors
                .into_iter()
                .map(|e| format!("stream `{}`: {e}", s.name))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Firehose's `DeliveryStreamDescription` for a stream.
fn description(
    config: &StreamConfig,
    sink: &dyn ObjectSink,
    created: f64,
    updated: f64,
    role_arn: &str,
) -> Value {
    let d = &config.destination;
    json!({
        "DeliveryStreamName": config.name,
        "DeliveryStreamARN": stream_arn(config),
        "DeliveryStreamStatus": "ACTIVE",
        "DeliveryStreamType": match &config.source {
            SourceConfig::DirectPut(_) => "DirectPut",
            SourceConfig::Kinesis(_) => "KinesisStreamAsSource",
        },
        "Source": match &config.source {
            SourceConfig::DirectPut(_) => json!({}),
            SourceConfig::Kinesis(_) => json!({"KinesisStreamSourceDescription": {
                "KinesisStreamARN": transform_context(config).source_kinesis_stream_arn,
            }}),
        },
        "VersionId": config.version.to_string(),
        "CreateTimestamp": created,
        "LastUpdateTimestamp": updated,
        "Destinations": [{
            "DestinationId": api::control::DESTINATION_ID,
            "ExtendedS3DestinationDescription": {
                "RoleARN": role_arn,
                "BucketARN": sink.describe(),
                // As configured: Firehose reports the prefixes it was given.
                "Prefix": d.prefix.given(),
                "ErrorOutputPrefix": d.error_output_prefix.given(),
                "BufferingHints": {
                    "SizeInMBs": d.buffering.size_bytes / MIB,
                    "IntervalInSeconds": d.buffering.interval.as_secs(),
                },
                "CompressionFormat": d.compression.firehose_name(),
                "EncryptionConfiguration": match &d.target {
                    Target::S3(s3) => match &s3.encryption {
                        Encryption::None => json!({"NoEncryptionConfig": "NoEncryption"}),
                        Encryption::SseS3 => json!({}),
                        Encryption::SseKms { key_arn } => json!({"KMSEncryptionConfig": {"AWSKMSKeyARN": key_arn}}),
                    },
                    Target::Local { .. } => json!({"NoEncryptionConfig": "NoEncryption"}),
                },
                "FileExtension": d.extension(),
                "CustomTimeZone": d.time_zone_name,
                "ProcessingConfiguration": processing_description(d),
                "S3BackupMode": if d.backup.is_some() { "Enabled" } else { "Disabled" },
            },
        }],
        "HasMoreDestinations": false,
    })
}

/// Firehose's `ProcessingConfiguration` of a destination, in chain order.
fn processing_description(d: &crate::config::DestinationConfig) -> Value {
    use crate::process::{Deaggregation, ModuleRef};
    let parameter =
        |name: &str, value: String| json!({"ParameterName": name, "ParameterValue": value});
    let mut processors = Vec::new();
    if let Some(deaggregation) = &d.processors.deaggregation {
        let parameters = match deaggregation {
            Deaggregation::Json => vec![parameter("SubRecordType", "JSON".into())],
            Deaggregation::Delimited(delimiter) => {
                use base64::Engine as _;
                vec![
                    parameter("SubRecordType", "DELIMITED".into()),
                    parameter(
                        "Delimiter",
                        base64::engine::general_purpose::STANDARD.encode(delimiter),
                    ),
                ]
            }
        };
        processors.push(json!({"Type": "RecordDeAggregation", "Parameters": parameters}));
    }
    for t in &d.processors.transforms {
        // A native module path has no ARN; Firehose's shape needs one.
        let arn = match &t.module {
            ModuleRef::Lambda { arn, .. } => arn.clone(),
            ModuleRef::Path(path) => format!("file://{}", path.display()),
        };
        processors.push(json!({"Type": "Lambda", "Parameters": [
            parameter("LambdaArn", arn),
            parameter("NumberOfRetries", t.retries.to_string()),
            parameter("BufferSizeInMBs", format!("{}", t.batch_bytes as f64 / MIB as f64)),
            parameter("BufferIntervalInSeconds", t.batch_interval.as_secs().to_string()),
        ]}));
    }
    if d.append_delimiter {
        processors.push(json!({"Type": "AppendDelimiterToRecord", "Parameters": []}));
    }
    json!({"Enabled": !processors.is_empty(), "Processors": processors})
}

/// Runs one stream's pipeline until its source ends, restarting it from the
/// last checkpoint whenever it fails, as the error's classification says: a
/// retriable failure after a backoff doubling up to [`MAX_RESTART_BACKOFF`],
/// one an operator must fix (bucket missing, access denied, stream not found)
/// every [`crate::status::operator_retry`], so the stream heals once it is fixed without
/// filling the log. Meanwhile the stream reports itself failing with the
/// reason. After `stopping` is set, a failure is final: the records stay in
/// the log for the next start.
async fn run_stream(
    parts: StreamParts,
    stopping: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    use tracing::Instrument;
    let status = parts.status.clone();
    // Every line logged by the stream's tasks carries its name (the `stream`
    // span), errors deep in a stage included.
    let span = tracing::info_span!("stream", stream = %parts.name);
    crate::status::scope(status.clone(), async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match run_pipeline(&parts, &stopping).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    crate::metrics::PIPELINE_RESTARTS.inc(&parts.name, 1);
                    let wait = if e.is_retriable() {
                        jitter(backoff)
                    } else {
                        crate::status::operator_retry()
                    };
                    tracing::error!(
                        stream = %parts.name,
                        error = %e,
                        fault = %e.fault(),
                        retriable = e.is_retriable(),
                        retry_in_ms = wait.as_millis() as u64,
                        "Pipeline failed; restarting from the last checkpoint."
                    );
                    if *stopping.borrow() {
                        return Err(e);
                    }
                    status.failing(e.to_string(), e.fault());
                    // Cut short by shutdown: the restart then drains.
                    let mut stop = stopping.clone();
                    tokio::select! {
                        () = crate::status::sleep_ticking(Some(&status), wait) => {}
                        _ = stop.wait_for(|stopping| *stopping) => {}
                    }
                    backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
                }
            }
        }
    })
    .instrument(span)
    .await
}

/// Longest wait before restarting a pipeline after a retriable failure.
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(30);

/// Up to ±25% random spread, so restarting streams do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let r = uuid::Uuid::new_v4().as_u128() % 500;
    d.mul_f64(0.75 + r as f64 / 1000.0)
}

/// Recovery, then source -> buffer -> delivery until the source ends.
async fn run_pipeline(
    parts: &StreamParts,
    stopping: &watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    // What a failed run held is read again from the log or the shards.
    parts.status.pipeline_started();
    let (mut delivery, mut source): (Delivery, Box<dyn Source>) = match &parts.source {
        SourceParts::DirectPut(wal) => {
            let mut delivery = Delivery::new(
                &parts.name,
                parts.sink.clone(),
                parts.store.clone(),
                Arc::new(wal.clone()),
            );
            let start = delivery.recover().await?;
            parts.status.active();
            (delivery, Box::new(wal.reader(start.wal)))
        }
        SourceParts::Kinesis(shared) => {
            let (progress, committed) = watch::channel(Positions::default());
            let progress = Arc::new(KinesisProgress(progress));
            let mut delivery = Delivery::new(
                &parts.name,
                parts.sink.clone(),
                parts.store.clone(),
                progress,
            );
            delivery.recover().await?;
            parts.status.active();
            (
                delivery,
                Box::new(KinesisSource::start(
                    shared.clone(),
                    committed,
                    stopping.clone(),
                )),
            )
        }
    };
    let (epochs, mut closed) = mpsc::channel::<Epoch>(1);
    let buffer = async {
        parts
            .stage
            .run(&mut *source, epochs)
            .await
            .map_err(PipelineError::from)
    };
    let deliver = async {
        while let Some(epoch) = closed.recv().await {
            // Epochs that only end a shard hold no records.
            let held = epoch.oldest_ms.is_some();
            delivery.deliver(epoch).await?;
            if held {
                parts.status.epoch_delivered();
            }
        }
        Ok::<(), PipelineError>(())
    };
    tokio::try_join!(buffer, deliver)?;
    let orphans = delivery.remove_orphans().await?;
    if orphans > 0 {
        tracing::info!(stream = %parts.name, orphans, "Removed staged objects no epoch committed.");
    }
    Ok(())
}
