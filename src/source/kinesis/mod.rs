//! Kinesis Data Streams source: a polling consumer with KCL's shard lifecycle.
//!
//! Neighbours: the buffer stage reads merged batches through [`Source`];
//! [`crate::delivery`] reports commits through [`KinesisProgress`], which is
//! how a parent shard's `SHARD_END` becomes visible here.
//!
//! - **Discovery**: a coordinator lists shards (`ListShards`) every
//!   `shard_sync_interval` and after every commit, and starts one reader task
//!   per shard it may read. A child shard (after a split or merge) is read only
//!   once every parent that still exists is committed as ended, so for each
//!   partition key parents are delivered before children; it then starts at
//!   `TRIM_HORIZON`, as KCL does.
//! - **Start**: a shard with a checkpoint resumes with `AT_SEQUENCE_NUMBER` of
//!   the committed record and drops user records at or before the committed
//!   (sequence, sub-sequence), so a restart in the middle of a KPL aggregate
//!   resumes exactly after the last delivered user record. A shard without a
//!   checkpoint starts at the configured position; the default is the moment
//!   sluice first saw the stream (`AT_TIMESTAMP`, kept in the state
//!   directory), Firehose's behaviour.
//! - **Reading**: `GetRecords` at most once per 200 ms per shard (the 5 calls/s
//!   limit), once per `poll_interval` when caught up. `ExpiredIteratorException`
//!   takes a new iterator after the last record read; throttling
//!   (`ProvisionedThroughputExceededException`, KMS throttling) backs off with
//!   jitter; other failures are retried with backoff. Nothing is skipped.
//! - **Shard end**: AWS and kinesis-local return a null `NextShardIterator`
//!   (with `ChildShards`); moto keeps returning an iterator at a closed shard's
//!   end, so a closed shard (known `EndingSequenceNumber`) that answers empty
//!   after its last sequence number has been read is also at its end.
//! - Backpressure: readers hand batches over a bounded channel; when the
//!   pipeline is slow they wait and stop calling `GetRecords`.

pub mod kpl;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::{Shard, ShardIteratorType};
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::{BoxFuture, Source, SourceBatch, SourceError, SourceProgress};
use crate::config::{KinesisConfig, StartPosition};
use crate::error::{Classify, Fault};
use crate::metrics;
use crate::record::{KinesisMeta, Position, Positions, Record, ShardCheckpoint, cmp_sequence};

/// Minimum pause between two GetRecords calls on one shard (5 calls/s).
const MIN_CALL_INTERVAL: Duration = Duration::from_millis(200);
/// Longest backoff after throttling or failures.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Batches buffered between readers and the pipeline.
const CHANNEL_BATCHES: usize = 8;

/// A Kinesis failure that retrying does not fix.
#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    /// The stream does not exist or cannot be described.
    #[error("Kinesis stream `{stream}`: {message}")]
    Stream {
        /// Stream name.
        stream: String,
        /// What failed.
        message: String,
    },
    /// The state directory cannot hold the stream's start timestamp.
    #[error("cannot keep the Kinesis start timestamp in {path}: {message}")]
    State {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
}

impl Classify for KinesisError {
    fn is_retriable(&self) -> bool {
        matches!(self, KinesisError::Stream { .. })
    }
    fn fault(&self) -> Fault {
        match self {
            KinesisError::Stream { .. } => Fault::Config,
            KinesisError::State { .. } => Fault::Remote,
        }
    }
}

/// Builds the Kinesis client: explicit timeouts, endpoint override
/// (`endpoint_url`, else `AWS_ENDPOINT_URL_KINESIS`, else `AWS_ENDPOINT_URL`).
pub fn client(sdk: &aws_config::SdkConfig, config: &KinesisConfig) -> Client {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let endpoint = config
        .endpoint_url
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_KINESIS"))
        .or_else(|| env("AWS_ENDPOINT_URL"));
    let timeouts = aws_smithy_types::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(config.attempt_timeout)
        .operation_timeout(config.attempt_timeout * 4)
        .build();
    let mut builder = aws_sdk_kinesis::config::Builder::from(sdk).timeout_config(timeouts);
    if let Some(url) = endpoint {
        builder = builder.endpoint_url(url);
    }
    Client::from_conf(builder.build())
}

/// The instant sluice first saw this delivery stream, kept in
/// `<state dir>/<stream>/kinesis-start.json` so that restarts keep it.
///
/// # Errors
/// [`KinesisError::State`] when the file cannot be read or written.
pub fn creation_timestamp(stream_state_dir: &Path) -> Result<i64, KinesisError> {
    let path = stream_state_dir.join("kinesis-start.json");
    let err = |message: String| KinesisError::State {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
            value["start_ms"]
                .as_i64()
                .ok_or_else(|| err("no start_ms".into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let now = jiff::Timestamp::now().as_millisecond();
            let doc = serde_json::json!({ "start_ms": now });
            crate::fsutil::write_atomic(&path, doc.to_string().as_bytes())
                .map_err(|e| err(e.to_string()))?;
            Ok(now)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Counters for logs (and, later, metrics): what was read, how far behind.
#[derive(Debug, Default)]
pub struct KinesisStats {
    records: AtomicU64,
    bytes: AtomicU64,
    throttles: AtomicU64,
    millis_behind: Mutex<BTreeMap<String, i64>>,
}

impl KinesisStats {
    /// Records read (user records after de-aggregation).
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
    /// GetRecords payload bytes read.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Throttled calls.
    pub fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed)
    }
}

/// What a stream's source needs across pipeline restarts.
#[derive(Debug)]
pub struct KinesisShared {
    /// The shared client.
    pub client: Client,
    /// Settings.
    pub config: KinesisConfig,
    /// `AT_TIMESTAMP` for [`StartPosition::AtCreation`].
    pub creation_ms: i64,
    /// Counters.
    pub stats: KinesisStats,
}

/// Reports commits to the coordinator.
#[derive(Debug)]
pub struct KinesisProgress(pub watch::Sender<Positions>);

impl SourceProgress for KinesisProgress {
    fn committed(&self, positions: &Positions) {
        self.0.send_replace(positions.clone());
    }
}

/// Events from readers to the pipeline.
enum Event {
    Records(Vec<Record>),
    Ended(Arc<str>),
}

/// The running source of one pipeline; dropping it stops every reader.
#[derive(Debug)]
pub struct KinesisSource {
    events: mpsc::Receiver<Event>,
    coordinator: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Records(r) => write!(f, "Records({})", r.len()),
            Event::Ended(s) => write!(f, "Ended({s})"),
        }
    }
}

impl Drop for KinesisSource {
    fn drop(&mut self) {
        self.coordinator.abort();
    }
}

impl KinesisSource {
    /// Starts discovery and readers. `progress` carries committed positions
    /// (starting with the recovered ones); when `stopping` turns true, readers
    /// finish their current call and the source ends.
    pub fn start(
        shared: Arc<KinesisShared>,
        progress: watch::Receiver<Positions>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        let (tx, events) = mpsc::channel(CHANNEL_BATCHES);
        // The coordinator reports to the stream's status (a missing stream).
        let coordinator = tokio::spawn(crate::status::in_current(coordinate(
            shared, progress, stopping, tx,
        )));
        KinesisSource {
            events,
            coordinator,
        }
    }
}

impl Source for KinesisSource {
    fn next_batch(
        &mut self,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Option<SourceBatch>, SourceError>> {
        Box::pin(async move {
            let Some(first) = self.events.recv().await else {
                return Ok(None);
            };
            let mut batch = SourceBatch::default();
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(event) = next.take() {
                match event {
                    Event::Records(records) => {
                        bytes += records.iter().map(|r| r.data.len()).sum::<usize>();
                        batch.records.extend(records);
                    }
                    Event::Ended(shard) => batch.ended_shards.push(shard),
                }
                // An end marker must follow its shard's records, so stop
                // merging at the first one.
                if bytes < max_bytes && batch.ended_shards.is_empty() {
                    next = self.events.try_recv().ok();
                }
            }
            Ok(Some(batch))
        })
    }
}

/// Where a reader starts.
#[derive(Debug, Clone)]
enum Start {
    /// Resume: `AT_SEQUENCE_NUMBER`, dropping user records at or before
    /// (sequence, sub-sequence).
    After(String, u64),
    TrimHorizon,
    Latest,
    AtTimestamp(i64),
}

/// Lists shards, starts eligible readers, and ends the source on shutdown.
async fn coordinate(
    shared: Arc<KinesisShared>,
    mut progress: watch::Receiver<Positions>,
    mut stopping: watch::Receiver<bool>,
    events: mpsc::Sender<Event>,
) {
    let stream = shared.config.stream_name.clone();
    let mut started: HashSet<String> = HashSet::new();
    let mut readers = JoinSet::new();
    // Ending sequence numbers of closed shards, refreshed with every listing:
    // a shard may close (split, merge) while its reader runs.
    let closed: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let mut backoff = Duration::from_millis(500);
    let mut last_log = tokio::time::Instant::now();
    loop {
        if *stopping.borrow() {
            break;
        }
        let status = crate::status::current();
        match list_shards(&shared.client, &stream).await {
            Ok(shards) => {
                backoff = Duration::from_millis(500);
                if let Some(status) = &status {
                    status.cleared();
                }
                if let Ok(mut closed) = closed.lock() {
                    for shard in &shards {
                        if let Some(end) = shard
                            .sequence_number_range()
                            .and_then(|r| r.ending_sequence_number())
                        {
                            closed.insert(shard.shard_id().to_owned(), end.to_owned());
                        }
                    }
                }
                let committed = progress.borrow_and_update().clone();
                for (shard, start) in eligible(&shards, &committed, &started, &shared) {
                    started.insert(shard.shard_id().to_owned());
                    tracing::info!(stream = %stream, shard = shard.shard_id(), start = ?start, "Starting shard reader.");
                    let reader = ShardReader {
                        shared: shared.clone(),
                        id: shard.shard_id().into(),
                        closed: closed.clone(),
                        events: events.clone(),
                        stopping: stopping.clone(),
                    };
                    readers.spawn(crate::status::in_current(reader.run(start)));
                }
            }
            Err(message) => {
                tracing::error!(stream = %stream, error = %message, retry_in_ms = backoff.as_millis() as u64, "Cannot list Kinesis shards; retrying.");
                if let Some(status) = &status {
                    // A missing stream or refused access needs an operator.
                    let fault = if message.contains("ResourceNotFound")
                        || message.contains("AccessDenied")
                    {
                        Fault::Config
                    } else {
                        Fault::Remote
                    };
                    status.failing(format!("Kinesis ListShards {stream}: {message}"), fault);
                }
                backoff = (backoff * 2).min(MAX_BACKOFF * 3);
            }
        }
        if last_log.elapsed() >= Duration::from_secs(60) {
            last_log = tokio::time::Instant::now();
            let behind = shared
                .stats
                .millis_behind
                .lock()
                .map(|m| m.values().copied().max())
                .ok()
                .flatten();
            tracing::info!(
                stream = %stream,
                shards = started.len(),
                records = shared.stats.records(),
                bytes = shared.stats.bytes(),
                throttles = shared.stats.throttles(),
                max_millis_behind_latest = behind.unwrap_or(0),
                "Kinesis read progress."
            );
        }
        let wait = if backoff > Duration::from_millis(500) {
            backoff
        } else {
            shared.config.shard_sync_interval
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            changed = progress.changed() => if changed.is_err() { break },
            _ = stopping.changed() => {}
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
    // Shutdown: readers see `stopping` and finish their current call; the
    // channel closes when the last of them (and this task) drops its sender.
    while readers.join_next().await.is_some() {}
}

/// The shards that may be read now, with where each starts.
fn eligible(
    shards: &[Shard],
    committed: &Positions,
    started: &HashSet<String>,
    shared: &KinesisShared,
) -> Vec<(Shard, Start)> {
    let listed: HashSet<&str> = shards.iter().map(Shard::shard_id).collect();
    let ended = |id: &str| matches!(committed.shards.get(id), Some(ShardCheckpoint::Ended));
    let mut out = Vec::new();
    for shard in shards {
        let id = shard.shard_id();
        if started.contains(id) || ended(id) {
            continue;
        }
        let parents: Vec<&str> = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
            .into_iter()
            .flatten()
            .collect();
        // A parent that is neither listed nor committed has expired past the
        // stream's retention: nothing of it is left to read first.
        if parents.iter().any(|p| listed.contains(p) && !ended(p)) {
            continue;
        }
        let start = match committed.shards.get(id) {
            Some(ShardCheckpoint::At {
                sequence,
                sub_sequence,
            }) => Start::After(sequence.clone(), *sub_sequence),
            Some(ShardCheckpoint::Ended) => continue,
            None if parents.iter().any(|p| listed.contains(p) || ended(p)) => Start::TrimHorizon,
            None => match shared.config.start {
                StartPosition::AtCreation => Start::AtTimestamp(shared.creation_ms),
                StartPosition::TrimHorizon => Start::TrimHorizon,
                StartPosition::Latest => Start::Latest,
                StartPosition::AtTimestamp(t) => Start::AtTimestamp(t.as_millisecond()),
            },
        };
        out.push((shard.clone(), start));
    }
    out
}

async fn list_shards(client: &Client, stream: &str) -> Result<Vec<Shard>, String> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        // `StreamName` and `NextToken` are mutually exclusive.
        let request = match &token {
            None => client.list_shards().stream_name(stream),
            Some(t) => client.list_shards().next_token(t),
        };
        let out = request.send().await.map_err(|e| describe(&e))?;
        shards.extend(out.shards.unwrap_or_default());
        token = out.next_token;
        if token.is_none() {
            return Ok(shards);
        }
    }
}

fn describe<E: std::error::Error + Send + Sync + 'static, R: std::fmt::Debug>(
    err: &SdkError<E, R>,
) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(err).to_string()
}

/// Up to ±50% random spread.
fn jitter(d: Duration) -> Duration {
    let r = uuid::Uuid::new_v4().as_u128() % 1000;
    d.mul_f64(0.5 + r as f64 / 1000.0)
}

/// Asks for an iterator until one is granted.
async fn iterator(
    shared: &KinesisShared,
    shard: &str,
    start: &Start,
    stopping: &watch::Receiver<bool>,
) -> Option<String> {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut request = shared
            .client
            .get_shard_iterator()
            .stream_name(&shared.config.stream_name)
            .shard_id(shard);
        request = match start {
            Start::After(seq, _) => request
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(seq),
            Start::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Start::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            Start::AtTimestamp(ms) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_smithy_types::DateTime::from_millis(*ms)),
        };
        match request.send().await {
            Ok(out) => match out.shard_iterator {
                Some(it) => return Some(it),
                None => tracing::warn!(shard, "GetShardIterator returned no iterator; retrying."),
            },
            Err(e) => {
                if is_throttle(e.code()) {
                    shared.stats.throttles.fetch_add(1, Ordering::Relaxed);
                    throttled(&shared.config.stream_name, shard, "GetShardIterator");
                }
                tracing::warn!(shard, error = %describe(&e), retry_in_ms = backoff.as_millis() as u64, "GetShardIterator failed; retrying.");
            }
        }
        if *stopping.borrow() {
            return None;
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn throttled(stream: &str, shard: &str, operation: &str) {
    metrics::inc(
        "sluice_kinesis_throttles_total",
        "Kinesis calls refused for throughput (backed off and retried).",
        &[
            ("stream", stream),
            ("shard", shard),
            ("operation", operation),
        ],
        1,
    );
}

fn is_throttle(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ProvisionedThroughputExceededException"
                | "LimitExceededException"
                | "KMSThrottlingException"
                | "ThrottlingException"
        )
    )
}

/// One shard's reader task.
struct ShardReader {
    shared: Arc<KinesisShared>,
    id: Arc<str>,
    closed: Arc<Mutex<BTreeMap<String, String>>>,
    events: mpsc::Sender<Event>,
    stopping: watch::Receiver<bool>,
}

impl ShardReader {
    /// The shard's ending sequence number, once it is known to be closed.
    fn ending(&self) -> Option<String> {
        self.closed
            .lock()
            .ok()
            .and_then(|c| c.get(&*self.id).cloned())
    }

    /// Reads the shard until its end, shutdown, or the pipeline going away.
    async fn run(self, start: Start) {
        read_shard(&self, start).await;
    }
}

async fn read_shard(reader: &ShardReader, start: Start) {
    let ShardReader {
        shared,
        id: shard_id,
        events,
        stopping,
        ..
    } = reader;
    // Records at or before this (sequence, sub-sequence) were delivered.
    let mut skip = match &start {
        Start::After(seq, sub) => Some((seq.clone(), *sub)),
        _ => None,
    };
    // A resumed shard has read up to its committed record already.
    let mut last_read: Option<String> = match &start {
        Start::After(seq, _) => Some(seq.clone()),
        _ => None,
    };
    let Some(mut it) = iterator(shared, shard_id, &start, stopping).await else {
        return;
    };
    let mut backoff = Duration::from_millis(500);
    loop {
        if *stopping.borrow() {
            return;
        }
        let call = shared
            .client
            .get_records()
            .shard_iterator(&it)
            .limit(shared.config.max_records_per_call)
            .send()
            .await;
        let out = match call {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_expired_iterator_exception()) =>
            {
                // Iterators live 5 minutes; continue after the last record read.
                let restart = match &last_read {
                    Some(seq) => Start::After(seq.clone(), u64::MAX),
                    None => start.clone(),
                };
                tracing::info!(shard = %shard_id, "Shard iterator expired; requesting a new one.");
                let Some(fresh) = iterator(shared, shard_id, &restart, stopping).await else {
                    return;
                };
                if let Start::After(seq, sub) = restart {
                    skip = Some((seq, sub));
                }
                it = fresh;
                continue;
            }
            Err(e) => {
                if is_throttle(e.code()) {
                    shared.stats.throttles.fetch_add(1, Ordering::Relaxed);
                    throttled(&shared.config.stream_name, shard_id, "GetRecords");
                    tracing::debug!(shard = %shard_id, retry_in_ms = backoff.as_millis() as u64, "GetRecords throttled; backing off.");
                } else {
                    tracing::warn!(shard = %shard_id, error = %describe(&e), retry_in_ms = backoff.as_millis() as u64, "GetRecords failed; retrying.");
                }
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        let behind = out.millis_behind_latest;
        let labels = [
            ("stream", shared.config.stream_name.as_str()),
            ("shard", &**shard_id),
        ];
        if let Some(ms) = behind {
            if let Ok(mut map) = shared.stats.millis_behind.lock() {
                map.insert(shard_id.to_string(), ms);
            }
            metrics::set(
                "sluice_kinesis_millis_behind_latest",
                "How far the last GetRecords was behind the shard's tip (KinesisMillisBehindLatest).",
                &labels,
                ms as f64,
            );
        }
        let payload: usize = out.records.iter().map(|r| r.data.as_ref().len()).sum();
        metrics::inc(
            "sluice_data_read_from_kinesis_stream_bytes_total",
            "GetRecords payload bytes read, re-reads after a restart included (DataReadFromKinesisStream.Bytes).",
            &labels,
            payload as u64,
        );
        metrics::inc(
            "sluice_kinesis_get_records_total",
            "GetRecords calls that succeeded.",
            &labels,
            1,
        );
        let raw_count = out.records.len();
        if let Some(last) = out.records.last() {
            last_read = Some(last.sequence_number.clone());
        }
        let records = user_records(shard_id, out.records, &mut skip);
        // Counted per page, not per record: the hot path stays free of atomics.
        shared
            .stats
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        shared
            .stats
            .bytes
            .fetch_add(payload as u64, Ordering::Relaxed);
        metrics::inc(
            "sluice_data_read_from_kinesis_stream_records_total",
            "User records read after KPL de-aggregation, re-reads after a restart included (DataReadFromKinesisStream.Records).",
            &labels,
            records.len() as u64,
        );
        if !records.is_empty() && events.send(Event::Records(records)).await.is_err() {
            return;
        }
        let at_end = match &out.next_shard_iterator {
            None => true,
            // moto: a closed shard keeps answering, empty, after its last
            // record. Only the shard's last sequence number having been read
            // proves the end: an empty page alone does not (AWS may return
            // empty pages in sparse parts of a shard).
            Some(_) => {
                raw_count == 0
                    && reader.ending().as_deref().is_some_and(|end| {
                        last_read
                            .as_deref()
                            .is_some_and(|l| cmp_sequence(l, end).is_ge())
                    })
            }
        };
        if at_end {
            tracing::info!(shard = %shard_id, "Shard read to its end.");
            let _ = events.send(Event::Ended(shard_id.clone())).await;
            return;
        }
        it = out.next_shard_iterator.unwrap_or_default();
        let caught_up = raw_count == 0 || behind == Some(0);
        tokio::time::sleep(if caught_up {
            shared.config.poll_interval
        } else {
            MIN_CALL_INTERVAL
        })
        .await;
    }
}

/// Converts, de-aggregates and filters one GetRecords page.
fn user_records(
    shard: &Arc<str>,
    records: Vec<aws_sdk_kinesis::types::Record>,
    skip: &mut Option<(String, u64)>,
) -> Vec<Record> {
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let sequence: Arc<str> = record.sequence_number.as_str().into();
        let arrival_ms = record
            .approximate_arrival_timestamp
            .and_then(|t| t.to_millis().ok())
            .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
        let data = Bytes::from(record.data.into_inner());
        let users = match kpl::deaggregate(&data) {
            Ok(users) => users,
            Err(not) => {
                if let kpl::NotAggregate::Broken(reason) = not {
                    tracing::warn!(shard = %shard, sequence = %sequence, reason, "Record starts with the KPL magic but is not a valid aggregate; delivering it unchanged.");
                }
                vec![kpl::UserRecord {
                    data,
                    partition_key: record.partition_key.clone().unwrap_or_default(),
                    explicit_hash_key: None,
                }]
            }
        };
        for (sub, user) in users.into_iter().enumerate() {
            let sub = sub as u64;
            if let Some((seq, skip_sub)) = skip.as_ref() {
                match cmp_sequence(&sequence, seq) {
                    std::cmp::Ordering::Less => continue,
                    std::cmp::Ordering::Equal if sub <= *skip_sub => continue,
                    _ => *skip = None,
                }
            }
            out.push(Record {
                data: user.data,
                arrival_ms,
                position: Position::Shard {
                    shard: shard.clone(),
                    sequence: sequence.clone(),
                    sub_sequence: sub,
                },
                kinesis: Some(Arc::new(KinesisMeta {
                    shard: shard.clone(),
                    partition_key: user.partition_key,
                    explicit_hash_key: user.explicit_hash_key,
                })),
                damaged: None,
            });
        }
    }
    out
}
