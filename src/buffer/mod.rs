//! The buffer stage: Firehose's `BufferingHints`, streaming into staged objects.
//!
//! Neighbours: reads record batches from the source (the write-ahead log
//! reader), runs the [`crate::process`] chain on each, names each new object
//! with the [`crate::partition`] prefix, streams records through an
//! [`crate::encode`] encoder straight into a [`crate::sink`] staging writer,
//! and hands each closed epoch to [`crate::delivery`] as an [`Epoch`].
//!
//! # Epochs, objects and partitions
//!
//! An *epoch* is everything read from the source between two commits: its
//! data objects, the source-record backup and the error outputs. Delivery
//! commits an epoch as a whole with the source position its last record
//! reached, so every record before that position is in one of the epoch's
//! objects or in an earlier epoch: nothing is lost and, because positions
//! only move at epoch boundaries, nothing is delivered twice after a crash.
//!
//! Without dynamic partitioning an epoch holds one data object, and it closes
//! when whichever comes first: its records reach `size_bytes` (measured
//! before compression, as Firehose), or `interval` has passed since its first
//! record arrived (interval 0: after every source batch).
//!
//! With dynamic partitioning ([`Partitioning`]) an epoch holds one open data
//! object per *partition* (the values of the keys the prefix references),
//! opened with the arrival time of its oldest record (Firehose's timestamp
//! rule). A partition whose object reaches `size_bytes` finishes that object
//! (staged, invisible) and opens a new one at its next record; the epoch, with
//! every object of every partition, closes when `interval` has passed since
//! its first record (or when it holds [`MAX_EPOCH_OBJECTS`]). This is the
//! "close all partitions of an epoch together" design: committing one
//! partition alone would have to claim a source position some records of
//! still-open partitions are below, or make replay skip records per
//! partition; closing them together keeps one position per epoch and the
//! recovery of one-object streams, at the price that a partition opened late
//! in an epoch delivers an object younger than `interval`.
//!
//! With event time ([`event_time`]) a partition is also told apart by what
//! the prefix's timestamps make of each record's own time, and its objects are
//! named with it; the epoch design is unchanged, because a record's placement
//! depends on its data and arrival time only, so a replay repeats it.
//!
//! Memory: raw objects stream to the sink, but Parquet and ORC hold their
//! open row group or stripe. Each encoder reports what it holds
//! ([`crate::encode::Encoder::buffered_bytes`]); when the open objects of an
//! epoch hold more than [`Partitioning::memory_budget_bytes`], or than the
//! stream's share of a [`ProcessBudget`] for all streams, the largest are
//! finished early (smaller files instead of an out-of-memory kill). What an
//! epoch handed to delivery still holds while its objects are finished is
//! not counted: at most two epochs per stream (one delivering, one waiting). A new
//! partition beyond [`Partitioning::max_active_partitions`] is refused: its
//! records go to the `activePartitionExceeded` error output, as in Firehose.
//!
//! Epochs go to delivery over a channel of one: while one epoch is being
//! delivered and one waits, reading stops, which is how a slow sink pushes
//! back to the source.

pub mod event_time;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{
    Buffering, Compression, DestinationConfig, FormatConfig, OutputFormat, SchemaSource,
};
use crate::convert;
use crate::delivery::{Epoch, EpochObject, ObjectEncoder};
use crate::encode::{self, EncodeError};
use crate::error::{Classify, Fault};
use crate::error_doc::{ErrorDocument, Failed};
use crate::partition::{PartitionKeys, Prefix, PrefixContext, PrefixError};
use crate::process::{self, BatchOutcomes, Chain, Outcome};
use crate::record::{Positions, Record};
use crate::sink::{ObjectSink, SinkError};
use crate::source::{Source, SourceError};

/// Longest time the buffer loop waits for records before it ticks its
/// stream's liveness ([`crate::status`]).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Most bytes read from the source in one batch.
const READ_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// A failure of the buffer stage.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// Reading the source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Opening a staged object failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Encoding into the staged object failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The object's key could not be evaluated.
    #[error("evaluating object key: {0}")]
    Prefix(#[from] PrefixError),
    /// Delivery stopped (it failed; its error is reported by its task).
    #[error("delivery stopped")]
    DeliveryGone,
    /// A converter could not be built (its options were validated at start-up).
    #[error("building the format converter: {0}")]
    Convert(String),
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl Classify for BufferError {
    fn is_retriable(&self) -> bool {
        match self {
            BufferError::Source(e) => e.is_retriable(),
            BufferError::Sink(e) => e.is_retriable(),
            BufferError::Encode(e) => e.is_retriable(),
            BufferError::Prefix(e) => e.is_retriable(),
            BufferError::DeliveryGone | BufferError::Task(_) => true,
            BufferError::Convert(_) => false,
        }
    }
    fn fault(&self) -> Fault {
        match self {
            BufferError::Source(e) => e.fault(),
            BufferError::Sink(e) => e.fault(),
            BufferError::Encode(e) => e.fault(),
            BufferError::Prefix(e) => e.fault(),
            BufferError::DeliveryGone => Fault::Remote,
            BufferError::Task(_) | BufferError::Convert(_) => Fault::Bug,
        }
    }
}

/// Names objects the way Firehose does:
/// `<evaluated prefix><stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><extension>`,
/// with the arrival time of the object's oldest record in the configured zone.
#[derive(Debug, Clone)]
pub struct ObjectNamer {
    stream: String,
    version: u32,
    prefix: Prefix,
    time_zone: jiff::tz::TimeZone,
    extension: String,
}

impl ObjectNamer {
    /// A namer for a stream's delivered objects.
    pub fn new(stream: &str, version: u32, destination: &DestinationConfig) -> Self {
        Self::with_prefix(
            stream,
            version,
            destination.prefix.clone(),
            destination.time_zone.clone(),
            destination.extension(),
        )
    }

    /// A namer for objects below another prefix (source-record backups).
    pub fn with_prefix(
        stream: &str,
        version: u32,
        prefix: Prefix,
        time_zone: jiff::tz::TimeZone,
        extension: &str,
    ) -> Self {
        ObjectNamer {
            stream: stream.to_owned(),
            version,
            prefix,
            time_zone,
            extension: extension.to_owned(),
        }
    }

    /// The stream the objects belong to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The prefix template objects are named with.
    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    /// What the prefix's timestamps make of `ms` in the configured zone
    /// ([`Prefix::time_bucket`]).
    pub fn time_bucket(&self, ms: i64) -> String {
        let instant = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        self.prefix
            .time_bucket(&instant.to_zoned(self.time_zone.clone()))
    }

    /// The key of an object whose oldest record arrived at `arrival_ms`.
    /// Returns the key and the object's file name without extension (the
    /// entry name inside ZIP archives).
    ///
    /// # Errors
    /// [`PrefixError`] when the prefix cannot be evaluated.
    pub fn key(&self, arrival_ms: i64) -> Result<(String, String), PrefixError> {
        self.key_for(arrival_ms, None)
    }

    /// Like [`ObjectNamer::key`], for an error output of `error_output_type`.
    ///
    /// # Errors
    /// [`PrefixError`] when the prefix cannot be evaluated.
    pub fn key_for(
        &self,
        arrival_ms: i64,
        error_output_type: Option<&str>,
    ) -> Result<(String, String), PrefixError> {
        self.key_in(arrival_ms, error_output_type, None)
    }

    /// Like [`ObjectNamer::key`], for a partition with these keys.
    ///
    /// # Errors
    /// [`PrefixError`] when the prefix cannot be evaluated (a key is missing,
    /// or its value makes the key too long or leave the destination).
    pub fn key_in(
        &self,
        arrival_ms: i64,
        error_output_type: Option<&str>,
        partition_keys: Option<PartitionKeys<'_>>,
    ) -> Result<(String, String), PrefixError> {
        let instant =
            jiff::Timestamp::from_millisecond(arrival_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let zoned = instant.to_zoned(self.time_zone.clone());
        let prefix = self.prefix.evaluate(&PrefixContext {
            timestamp: &zoned,
            error_output_type,
            partition_keys,
        })?;
        let name = format!(
            "{}-{}-{}-{}",
            self.stream,
            self.version,
            zoned.strftime("%Y-%m-%d-%H-%M-%S"),
            uuid::Uuid::new_v4()
        );
        Ok((format!("{prefix}{name}{}", self.extension), name))
    }
}

/// Error output types (Firehose's `!{firehose:error-output-type}` values).
pub const PROCESSING_FAILED: &str = "processing-failed";
/// Records that did not fit the conversion schema.
pub const FORMAT_CONVERSION_FAILED: &str = "format-conversion-failed";
/// Records of a new partition beyond the active-partition limit (Firehose's name).
pub const ACTIVE_PARTITION_EXCEEDED: &str = "activePartitionExceeded";

/// `errorCode` of a record whose partition keys do not give a prefix (a key
/// the prefix uses is missing, or its value makes the key too long or leave
/// the destination). Firehose documents no code for it; sluice names it.
pub const PARTITION_KEY_FAILED: &str = "DynamicPartitioning.InvalidPartitionKey";

/// How often (in source records) a partitioned epoch's memory is measured.
const BUDGET_CHECK_RECORDS: u64 = 64;

/// Most objects one dynamically partitioned epoch holds before it closes
/// (each partition's finished and open objects): bounds the commit record.
pub const MAX_EPOCH_OBJECTS: usize = 2_000;

/// Dynamic partitioning (Firehose `DynamicPartitioningConfiguration`,
/// native `[destination.dynamic_partitioning]`): one open object per
/// partition of the prefix's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitioning {
    /// Most partitions open at once (Firehose: 500 by default).
    pub max_active_partitions: usize,
    /// Bytes the open objects of a stream may hold in memory (Parquet row
    /// groups, ORC stripes); past it the largest are finished early.
    pub memory_budget_bytes: u64,
    /// Firehose's `RetryOptions.DurationInSeconds`, accepted and reported:
    /// sluice retries a failed delivery until it succeeds and never skips.
    pub retry_duration: Duration,
    /// Event-time partitioning: the prefix's timestamps from each record's own time.
    pub event_time: Option<event_time::EventTime>,
}

/// Firehose's default active-partition limit.
pub const DEFAULT_MAX_ACTIVE_PARTITIONS: usize = 500;
/// Default memory budget of a partitioned stream's open objects: 512 MiB.
pub const DEFAULT_MEMORY_BUDGET_BYTES: u64 = 512 << 20;

impl Default for Partitioning {
    fn default() -> Self {
        Partitioning {
            max_active_partitions: DEFAULT_MAX_ACTIVE_PARTITIONS,
            memory_budget_bytes: DEFAULT_MEMORY_BUDGET_BYTES,
            retry_duration: Duration::from_secs(300),
            event_time: None,
        }
    }
}

/// A memory budget shared by the partitioned streams of one process
/// (`sluice run --memory-budget-bytes`), on top of each stream's own. Each
/// stream publishes what its open objects hold when it measures them; when the
/// process total passes the limit, the measuring stream finishes its largest
/// objects down to what the others leave it, but never below an equal share of
/// the limit, so one stream's growth makes itself, not a quiet neighbour,
/// write the smaller files.
#[derive(Debug)]
pub struct ProcessBudget {
    limit: u64,
    streams: std::sync::Mutex<Vec<Arc<std::sync::atomic::AtomicU64>>>,
}

impl ProcessBudget {
    /// A budget of `limit` bytes for the whole process.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(ProcessBudget {
            limit,
            streams: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A stream's share, registered for the life of the process.
    pub fn share(self: &Arc<Self>) -> BudgetShare {
        let slot = Arc::new(std::sync::atomic::AtomicU64::new(0));
        self.lock().push(slot.clone());
        BudgetShare {
            budget: self.clone(),
            slot,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<std::sync::atomic::AtomicU64>>> {
        // Pushes and loads only: a poisoned lock is still consistent.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One stream's part of a [`ProcessBudget`].
#[derive(Debug, Clone)]
pub struct BudgetShare {
    budget: Arc<ProcessBudget>,
    slot: Arc<std::sync::atomic::AtomicU64>,
}

impl BudgetShare {
    /// Publishes that this stream holds `held` bytes; returns what it may hold.
    fn allowance(&self, held: u64) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        self.slot.store(held, Relaxed);
        let streams = self.budget.lock();
        let total: u64 = streams.iter().map(|s| s.load(Relaxed)).sum();
        let others = total.saturating_sub(held);
        let fair = self.budget.limit / streams.len().max(1) as u64;
        self.budget.limit.saturating_sub(others).max(fair)
    }

    /// Publishes what the stream holds after finishing objects or an epoch.
    fn publish(&self, held: u64) {
        self.slot.store(held, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Times a record may crash encoding (each time the pipeline restarts from
/// its checkpoint and reads it again) before it goes to processing-failed.
pub const POISON_ATTEMPTS: u32 = 3;
/// Most records a stream's quarantine remembers: poison records are rare; a
/// flood of them is a bug that has to be fixed, not remembered.
const QUARANTINE_RECORDS: usize = 1_000;

/// Records that made encoding panic, by source position: a bug one input
/// triggers would otherwise crash the pipeline at every replay of that
/// record, forever. After [`POISON_ATTEMPTS`] crashes the record goes to
/// processing-failed instead, and the stream goes on. (A panic while
/// processing is caught per batch: [`Chain::run_guarded`].)
#[derive(Debug, Default)]
pub struct Quarantine {
    strikes: std::sync::Mutex<std::collections::HashMap<crate::record::Position, (u32, String)>>,
    /// Whether any record is remembered: the common case costs one load.
    any: std::sync::atomic::AtomicBool,
}

impl Quarantine {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<crate::record::Position, (u32, String)>>
    {
        self.strikes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more crash of the record at `position`; how many so far.
    fn strike(&self, position: &crate::record::Position, message: &str) -> u32 {
        let mut strikes = self.lock();
        if strikes.len() >= QUARANTINE_RECORDS && !strikes.contains_key(position) {
            return 1;
        }
        let entry = strikes
            .entry(position.clone())
            .or_insert((0, String::new()));
        entry.0 += 1;
        entry.1 = message.to_owned();
        self.any.store(true, std::sync::atomic::Ordering::Relaxed);
        entry.0
    }

    /// Why the record at `position` must not be encoded again, if it must not.
    fn poisoned(&self, position: &crate::record::Position) -> Option<String> {
        if !self.any.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        self.lock()
            .get(position)
            .filter(|(n, _)| *n >= POISON_ATTEMPTS)
            .map(|(_, message)| message.clone())
    }
}

/// The values of a partition's keys, in the prefix's order (empty without
/// dynamic partitioning: one partition).
type PartitionId = Vec<String>;

/// One partition's open data object.
struct Partition {
    encoder: ObjectEncoder,
    /// Data records in it.
    records: u64,
    /// Record bytes in it (before compression): its size trigger.
    bytes: u64,
}

/// A staging writer already finished by its encoder, handed to delivery as
/// an encoder with nothing more to write (a partition's object finished
/// before its epoch closed, to free the memory its encoder held).
struct Finished(Box<dyn crate::sink::StagingWriter>);

impl encode::Encoder<Box<dyn crate::sink::StagingWriter>> for Finished {
    fn append(&mut self, _: &[u8]) -> Result<(), EncodeError> {
        Err(EncodeError::Io(std::io::Error::other(
            "append to an object that was already finished",
        )))
    }

    fn finish(self: Box<Self>) -> Result<Box<dyn crate::sink::StagingWriter>, EncodeError> {
        Ok(self.0)
    }
}

/// What the epoch being filled holds.
struct OpenEpoch {
    /// Open data objects by partition.
    partitions: std::collections::HashMap<PartitionId, Partition>,
    /// Data objects finished before the epoch closes (size or memory).
    finished: Vec<EpochObject>,
    /// The source-record backup of the same records, when enabled.
    backup: Option<ObjectEncoder>,
    /// Error outputs of this epoch, opened on the first failed record of
    /// each type; they are delivered in the same epoch as the data objects.
    errors: Vec<(&'static str, ObjectEncoder, u64)>,
    /// Error documents of the last record, waiting for their error object to
    /// be opened (at most one source record's worth).
    pending: Vec<(&'static str, Vec<u8>)>,
    /// Arrival time of the oldest record: names the error objects too.
    oldest_ms: i64,
    opened: Instant,
    /// Source bytes and records read into the epoch.
    bytes: u64,
    records: u64,
    positions: Positions,
    /// Conversion outcomes since they were last counted on `/metrics`.
    converted: Converted,
}

/// Records converted to Parquet or ORC and records that did not fit, with
/// their bytes: counted in the blocking append loop, published per batch.
#[derive(Debug, Default)]
struct Converted {
    ok: (u64, u64),
    failed: (u64, u64),
}

impl Converted {
    fn publish(self, stream: &str) {
        use crate::metrics::*;
        if self.ok.0 > 0 {
            SUCCEED_CONVERSION_RECORDS.inc(stream, self.ok.0);
            SUCCEED_CONVERSION_BYTES.inc(stream, self.ok.1);
        }
        if self.failed.0 > 0 {
            FAILED_CONVERSION_RECORDS.inc(stream, self.failed.0);
            FAILED_CONVERSION_BYTES.inc(stream, self.failed.1);
        }
    }
}

impl OpenEpoch {
    fn objects(&self) -> usize {
        self.partitions.len() + self.finished.len()
    }

    /// What it holds, for the stream's status.
    fn held(&self) -> crate::status::Held {
        crate::status::Held {
            oldest_ms: self.oldest_ms,
            records: self.records,
            bytes: self.bytes,
        }
    }
}

/// What the blocking append loop stopped for.
enum Stop {
    /// The batch is done.
    Done,
    /// The epoch is full: close it, then go on.
    Full,
    /// Error documents wait for their error objects to be opened.
    ErrorOutputs,
    /// A record needs partitions that are not open: `(partition, key, name)`.
    Open(Vec<(PartitionId, String, String)>),
}

/// Everything the buffer stage needs.
#[derive(Debug, Clone)]
pub struct BufferStage {
    /// Names new objects.
    pub namer: ObjectNamer,
    /// Stages new objects.
    pub sink: Arc<dyn ObjectSink>,
    /// Size and time triggers.
    pub buffering: Buffering,
    /// Raw output compression.
    pub compression: Compression,
    /// Append `\n` after each record.
    pub delimiter: bool,
    /// Source-record backup: its namer and compression. Backups hold the
    /// records as they came from the source, before any processor, with the
    /// same delimiter setting so they can be split again.
    pub backup: Option<(ObjectNamer, Compression)>,
    /// Names error-output objects (the error output prefix).
    pub error_namer: ObjectNamer,
    /// The processor chain run on every batch of source records.
    pub processors: Arc<Chain>,
    /// Record format conversion; raw output when `None`.
    pub format: Option<Arc<FormatConfig>>,
    /// Dynamic partitioning; `None`: one object at a time.
    pub partitioning: Option<Partitioning>,
    /// This stream's part of the process-wide memory budget, if one is set
    /// (partitioned streams only).
    pub process_budget: Option<BudgetShare>,
    /// Records that crashed encoding, kept across the pipeline's restarts.
    pub quarantine: Arc<Quarantine>,
}

impl BufferStage {
    /// Runs until the source ends (shutdown), closing the last epoch, or
    /// until something fails.
    ///
    /// # Errors
    /// [`BufferError`]; the caller restarts from recovery.
    pub async fn run(
        &self,
        source: &mut dyn Source,
        epochs: mpsc::Sender<Epoch>,
    ) -> Result<(), BufferError> {
        let mut open: Option<OpenEpoch> = None;
        let status = crate::status::current();
        let tick = || {
            if let Some(status) = &status {
                status.tick();
            }
        };
        loop {
            tick();
            let deadline = open.as_ref().map(|o| o.opened + self.buffering.interval);
            let batch = {
                // Liveness while idle by design: a tick every HEARTBEAT without
                // dropping the read (a slow read is not restarted).
                let next = source.next_batch(READ_BATCH_BYTES);
                tokio::pin!(next);
                loop {
                    tokio::select! {
                        batch = &mut next => break Some(batch?),
                        () = sleep_until_opt(deadline) => break None,
                        () = tokio::time::sleep(HEARTBEAT) => tick(),
                    }
                }
            };
            let Some(batch) = batch else {
                // The interval passed: close the epoch.
                if let Some(epoch) = open.take() {
                    self.close(epoch, &epochs).await?;
                }
                continue;
            };
            let Some(batch) = batch else {
                if let Some(epoch) = open.take() {
                    self.close(epoch, &epochs).await?;
                }
                return Ok(());
            };
            self.append(batch.records, &mut open, &epochs).await?;
            if !batch.ended_shards.is_empty() {
                // A shard's end is committed with the epoch holding its last
                // records, or on its own when no epoch is open.
                match &mut open {
                    Some(epoch) => batch
                        .ended_shards
                        .iter()
                        .for_each(|s| epoch.positions.end_shard(s)),
                    None => {
                        let mut positions = Positions::default();
                        batch
                            .ended_shards
                            .iter()
                            .for_each(|s| positions.end_shard(s));
                        let epoch = Epoch {
                            objects: Vec::new(),
                            oldest_ms: None,
                            positions,
                            records: 0,
                            bytes: 0,
                        };
                        epochs
                            .send(epoch)
                            .await
                            .map_err(|_| BufferError::DeliveryGone)?;
                    }
                }
            }
            if self.buffering.interval == Duration::ZERO
                && let Some(epoch) = open.take()
            {
                self.close(epoch, &epochs).await?;
            }
        }
    }

    /// Appends a batch, opening partitions and error outputs as records need
    /// them and closing the epoch as its triggers fire.
    async fn append(
        &self,
        records: Vec<Record>,
        open: &mut Option<OpenEpoch>,
        epochs: &mpsc::Sender<Epoch>,
    ) -> Result<(), BufferError> {
        // Processing and encoding are CPU work: run them off the reactor,
        // moving the records and their outcomes there and back, not copying.
        // The chain sees the whole batch (transforms are called per batch)
        // before any of it is encoded.
        let processors = self.processors.clone();
        let span = tracing::Span::current();
        let mut batch = tokio::task::spawn_blocking(move || {
            let _stream = span.enter();
            crate::delivery::pause_point("wedge_buffer");
            let outcomes = processors.run_guarded(&records);
            Processing { records, outcomes }
        })
        .await
        .map_err(|e| BufferError::Task(e.to_string()))?;
        if self.processors.has_transforms() {
            let (records, bytes) = batch.outcomes.succeeded();
            crate::metrics::SUCCEED_PROCESSING_RECORDS.inc(self.namer.stream(), records);
            crate::metrics::SUCCEED_PROCESSING_BYTES.inc(self.namer.stream(), bytes);
        }
        let mut next = 0;
        while next < batch.records.len() {
            let mut epoch = match open.take() {
                Some(epoch) => epoch,
                None => self.open_epoch(batch.records[next].arrival_ms).await?,
            };
            let stage = self.clone();
            let (epoch_back, batch_back, reached, result) =
                tokio::task::spawn_blocking(move || {
                    let mut i = next;
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        stage.append_records(&mut epoch, &batch, &mut i)
                    }));
                    (epoch, batch, i, result)
                })
                .await
                .map_err(|e| BufferError::Task(e.to_string()))?;
            batch = batch_back;
            next = reached;
            let result = match result {
                Ok(result) => result,
                Err(panic) => {
                    // The epoch's encoders are in no known state: drop it (its
                    // staged objects are aborted by recovery) and restart, with
                    // the record that did it remembered.
                    let message = process::panic_message(&*panic);
                    let record = &batch.records[next];
                    let strikes = self.quarantine.strike(&record.position, &message);
                    return Err(BufferError::Task(format!(
                        "encoding the record at {:?} panicked (attempt {strikes} of {POISON_ATTEMPTS}; then it goes to processing-failed): {message}",
                        record.position
                    )));
                }
            };
            let mut epoch = epoch_back;
            std::mem::take(&mut epoch.converted).publish(self.namer.stream());
            if self.partitioning.is_some() {
                crate::metrics::set(
                    "sluice_partition_count",
                    "Partition objects open in the current epoch (PartitionCount; dynamic partitioning).",
                    &[("stream", self.namer.stream())],
                    epoch.partitions.len() as f64,
                );
            }
            match result? {
                Stop::Done => *open = Some(epoch),
                Stop::Full => self.close(epoch, epochs).await?,
                Stop::ErrorOutputs => {
                    // A record failed with an error type whose object is not
                    // open yet: open it and write the waiting documents now
                    // (the record may have been the batch's last).
                    self.open_error_outputs(&mut epoch).await?;
                    let pending = std::mem::take(&mut epoch.pending);
                    let stream = self.namer.stream().to_owned();
                    let (back, result) = tokio::task::spawn_blocking(move || {
                        let mut epoch = epoch;
                        let result = write_errors(&stream, &mut epoch, pending);
                        (epoch, result)
                    })
                    .await
                    .map_err(|e| BufferError::Task(e.to_string()))?;
                    result?;
                    *open = Some(back);
                }
                Stop::Open(partitions) => {
                    crate::metrics::inc(
                        "sluice_partitions_created_total",
                        "Partition objects opened (dynamic partitioning).",
                        &[("stream", self.namer.stream())],
                        partitions.len() as u64,
                    );
                    for (id, key, name) in partitions {
                        let encoder = self.data_encoder(&key, &name).await?;
                        epoch.partitions.insert(
                            id,
                            Partition {
                                encoder,
                                records: 0,
                                bytes: 0,
                            },
                        );
                    }
                    *open = Some(epoch);
                }
            }
        }
        if let (Some(epoch), Some(status)) = (open.as_ref(), crate::status::current()) {
            status.epoch_holds(epoch.held());
        }
        Ok(())
    }

    /// A new epoch whose first record arrived at `arrival_ms`. Without
    /// dynamic partitioning its one data object opens now, named by that
    /// record's arrival; partitions open as their records come.
    async fn open_epoch(&self, arrival_ms: i64) -> Result<OpenEpoch, BufferError> {
        let backup = match &self.backup {
            None => None,
            Some((namer, compression)) => {
                let (key, name) = namer.key(arrival_ms)?;
                let writer = self.sink.stage(&key).await?;
                Some(encode::raw(writer, *compression, self.delimiter, &name))
            }
        };
        let mut partitions = std::collections::HashMap::new();
        if self.partitioning.is_none() {
            let (key, name) = self.namer.key(arrival_ms)?;
            partitions.insert(
                Vec::new(),
                Partition {
                    encoder: self.data_encoder(&key, &name).await?,
                    records: 0,
                    bytes: 0,
                },
            );
        }
        Ok(OpenEpoch {
            partitions,
            finished: Vec::new(),
            backup,
            errors: Vec::new(),
            pending: Vec::new(),
            oldest_ms: arrival_ms,
            opened: Instant::now(),
            bytes: 0,
            records: 0,
            positions: Positions::default(),
            converted: Converted::default(),
        })
    }

    /// A data object's encoder, streaming into a new staged object at `key`.
    async fn data_encoder(&self, key: &str, name: &str) -> Result<ObjectEncoder, BufferError> {
        let writer = self.sink.stage(key).await?;
        Ok(match self.format.as_deref() {
            None => encode::raw(writer, self.compression, self.delimiter, name),
            Some(format) => {
                // Glue tables are resolved into inline schemas at start-up.
                let SchemaSource::Inline(schema) = &format.schema else {
                    return Err(BufferError::Convert(
                        "the Glue schema was not resolved".into(),
                    ));
                };
                match &format.output {
                    OutputFormat::Parquet(options) => {
                        convert::parquet(writer, schema, &format.deserializer, options)
                    }
                    OutputFormat::Orc(options) => {
                        convert::orc::orc(writer, schema, &format.deserializer, options)
                    }
                }
                .map_err(|e| BufferError::Convert(e.to_string()))?
            }
        })
    }

    /// Opens an error object for every pending error type that has none.
    async fn open_error_outputs(&self, epoch: &mut OpenEpoch) -> Result<(), BufferError> {
        let mut kinds: Vec<&'static str> = epoch.pending.iter().map(|(kind, _)| *kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        for kind in kinds {
            if epoch.errors.iter().any(|(k, _, _)| *k == kind) {
                continue;
            }
            let (key, name) = self.error_namer.key_for(epoch.oldest_ms, Some(kind))?;
            let writer = self.sink.stage(&key).await?;
            // Error documents are JSON lines, compressed like raw output;
            // with format conversion Firehose requires UNCOMPRESSED.
            let compression = if self.format.is_some() {
                Compression::Uncompressed
            } else {
                self.compression
            };
            epoch
                .errors
                .push((kind, encode::raw(writer, compression, false, &name), 0));
        }
        Ok(())
    }

    /// Encodes records from `*i` until the batch ends, the epoch is full, or
    /// a record needs an object that is not open (blocking). A source record
    /// is taken whole or not at all, so positions always cover whole records.
    fn append_records(
        &self,
        epoch: &mut OpenEpoch,
        batch: &Processing,
        i: &mut usize,
    ) -> Result<Stop, EncodeError> {
        let limit = self.buffering.size_bytes;
        let delimiter = u64::from(self.delimiter);
        let pending = std::mem::take(&mut epoch.pending);
        write_errors(self.namer.stream(), epoch, pending)?;
        if !epoch.pending.is_empty() {
            return Ok(Stop::ErrorOutputs);
        }
        let mut touched: Vec<PartitionId> = Vec::new();
        // Reused from record to record: one allocation per call, not per record.
        let mut routes = Vec::new();
        while *i < batch.records.len() {
            let record = &batch.records[*i];
            let quarantined;
            let outcomes = match self.quarantine.poisoned(&record.position) {
                None => batch.outcomes.of(*i),
                Some(message) => {
                    quarantined = [Outcome::Failed {
                        raw: record.data.clone(),
                        failure: process::Failure::new(
                            process::POISON_CODE,
                            format!(
                                "encoding this record panicked {POISON_ATTEMPTS} times (a bug in sluice): {message}"
                            ),
                        ),
                    }];
                    &quarantined[..]
                }
            };
            // Where each outcome goes, decided before anything is written.
            routes.clear();
            let mut to_open: Vec<(PartitionId, String, String)> = Vec::new();
            for outcome in outcomes {
                routes.push(match outcome {
                    Outcome::Ok(processed) => self.route(epoch, record, processed, &mut to_open),
                    _ => Route::Other,
                });
            }
            if !to_open.is_empty() {
                return Ok(Stop::Open(to_open));
            }
            for (outcome, route) in outcomes.iter().zip(routes.drain(..)) {
                match (outcome, route) {
                    (Outcome::Ok(processed), Route::Partition(id, late)) => {
                        let partition = if self.partitioning.is_none() {
                            // The one partition: no key to hash per record.
                            epoch.partitions.values_mut().next()
                        } else {
                            epoch.partitions.get_mut(&id)
                        };
                        let Some(partition) = partition else {
                            continue;
                        };
                        if late {
                            self.count_late(event_time::LateRecords::Arrival);
                        }
                        crate::delivery::poison_point("encode", &processed.data);
                        let converting = self.format.is_some();
                        let len = processed.data.len() as u64;
                        match partition.encoder.append(&processed.data) {
                            Ok(()) => {
                                if converting {
                                    epoch.converted.ok.0 += 1;
                                    epoch.converted.ok.1 += len;
                                }
                                partition.records += 1;
                                partition.bytes += processed.data.len() as u64 + delimiter;
                                if self.partitioning.is_some() {
                                    touched.push(id);
                                }
                            }
                            Err(EncodeError::Record { code, message }) => {
                                epoch.converted.failed.0 += 1;
                                epoch.converted.failed.1 += len;
                                epoch.pending.push((
                                    FORMAT_CONVERSION_FAILED,
                                    conversion_error(record, &processed.data, code, &message),
                                ));
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    (Outcome::Ok(processed), Route::Error(kind, failure)) => {
                        if kind == event_time::LATE {
                            self.count_late(event_time::LateRecords::ErrorOutput);
                        }
                        epoch.pending.push((
                            kind,
                            failure
                                .document(&processed.data, record.arrival_ms)
                                .to_line(),
                        ));
                    }
                    (Outcome::Dropped, _) | (Outcome::Ok(_), Route::Other) => {}
                    (Outcome::Failed { raw, failure }, _) => epoch.pending.push((
                        PROCESSING_FAILED,
                        failure.document(raw, record.arrival_ms).to_line(),
                    )),
                }
            }
            if let Some(backup) = &mut epoch.backup
                && record.damaged.is_none()
            {
                backup.append(&record.data)?;
            }
            epoch.bytes += record.data.len() as u64 + delimiter;
            epoch.records += 1;
            epoch.positions.advance(&record.position);
            *i += 1;
            if !epoch.pending.is_empty() {
                let pending = std::mem::take(&mut epoch.pending);
                write_errors(self.namer.stream(), epoch, pending)?;
                if !epoch.pending.is_empty() {
                    return Ok(Stop::ErrorOutputs);
                }
            }
            match &self.partitioning {
                // One object: the epoch closes with it.
                None => {
                    if epoch.bytes >= limit {
                        return Ok(Stop::Full);
                    }
                }
                Some(partitioning) => {
                    for id in touched.drain(..) {
                        if epoch.partitions.get(&id).is_some_and(|p| p.bytes >= limit) {
                            finish_partition(epoch, &id)?;
                        }
                    }
                    // Asking every open encoder costs one call per partition:
                    // done every few records, so memory overshoots the budget
                    // by at most those records.
                    if epoch.records.is_multiple_of(BUDGET_CHECK_RECORDS) {
                        self.keep_memory_budget(epoch, partitioning.memory_budget_bytes)?;
                    }
                    if epoch.objects() >= MAX_EPOCH_OBJECTS {
                        return Ok(Stop::Full);
                    }
                }
            }
        }
        if let Some(partitioning) = &self.partitioning {
            self.keep_memory_budget(epoch, partitioning.memory_budget_bytes)?;
        }
        Ok(Stop::Done)
    }

    /// Which object a kept record goes to. A partition that is not open yet
    /// is named (its key evaluated with this record's arrival and keys) and
    /// added to `to_open`, unless the active-partition limit is reached.
    fn route(
        &self,
        epoch: &OpenEpoch,
        record: &Record,
        processed: &process::Processed,
        to_open: &mut Vec<(PartitionId, String, String)>,
    ) -> Route {
        let Some(partitioning) = &self.partitioning else {
            return Route::Partition(Vec::new(), false);
        };
        let keys = PartitionKeys {
            query: &processed.query_keys,
            lambda: &processed.partition_keys,
        };
        let failed = |e: PrefixError| {
            Route::Error(
                PROCESSING_FAILED,
                process::Failure::new(PARTITION_KEY_FAILED, e.to_string()),
            )
        };
        let mut id = match self.namer.prefix().partition_of(keys) {
            Ok(id) => id,
            Err(e) => return failed(e),
        };
        // The time a new object of the partition is named with: its first
        // record's arrival (Firehose), or with event time the record's own time,
        // which then also tells partitions apart.
        let mut named_ms = record.arrival_ms;
        let mut late = false;
        if let Some(event_time) = &partitioning.event_time {
            match event_time.place(&processed.data, keys, record.arrival_ms) {
                event_time::Placement::At(ms) => named_ms = ms,
                event_time::Placement::LateAtArrival(ms) => {
                    named_ms = ms;
                    late = true;
                }
                event_time::Placement::Error(kind, failure) => return Route::Error(kind, failure),
            }
            id.push(self.namer.time_bucket(named_ms));
        }
        if epoch.partitions.contains_key(&id) || to_open.iter().any(|(o, _, _)| *o == id) {
            return Route::Partition(id, late);
        }
        // Named before the limit is checked, so a record whose keys give no
        // valid prefix is reported as that, whatever the number of partitions.
        let (key, name) = match self.namer.key_in(named_ms, None, Some(keys)) {
            Ok(named) => named,
            Err(e) => return failed(e),
        };
        if epoch.partitions.len() + to_open.len() >= partitioning.max_active_partitions {
            return Route::Error(
                ACTIVE_PARTITION_EXCEEDED,
                process::Failure::new(
                    "DynamicPartitioning.ActivePartitionsLimitExceeded",
                    format!(
                        "{} partitions are open, the limit (max_active_partitions); this record's partition {id:?} is not opened",
                        epoch.partitions.len() + to_open.len()
                    ),
                ),
            );
        }
        to_open.push((id.clone(), key, name));
        Route::Partition(id, late)
    }

    /// Counts a record outside the lateness horizon, by where it went.
    fn count_late(&self, to: event_time::LateRecords) {
        crate::metrics::inc(
            "sluice_late_records_total",
            "Records whose event time was outside the lateness horizon, by where they went.",
            &[("stream", self.namer.stream()), ("to", to.as_str())],
            1,
        );
    }

    /// Finishes the largest open objects until what they hold in memory is
    /// within the stream's budget and its share of the process's.
    fn keep_memory_budget(&self, epoch: &mut OpenEpoch, budget: u64) -> Result<(), EncodeError> {
        let mut held: Vec<(u64, PartitionId)> = epoch
            .partitions
            .iter()
            .map(|(id, p)| (p.encoder.buffered_bytes() as u64, id.clone()))
            .collect();
        let mut total: u64 = held.iter().map(|(b, _)| b).sum();
        crate::metrics::set(
            "sluice_partition_memory_bytes",
            "Bytes the open objects of a partitioned stream hold in memory, as last measured.",
            &[("stream", self.namer.stream())],
            total as f64,
        );
        let (budget, reason) = match &self.process_budget {
            Some(share) => {
                let allowed = share.allowance(total);
                if allowed < budget {
                    (allowed, "process")
                } else {
                    (budget, "stream")
                }
            }
            None => (budget, "stream"),
        };
        if total <= budget {
            return Ok(());
        }
        held.sort_unstable_by_key(|h| std::cmp::Reverse(h.0));
        for (bytes, id) in held {
            if total <= budget {
                break;
            }
            crate::metrics::inc(
                "sluice_partitions_finished_for_memory_total",
                "Open objects finished early because a memory budget (the stream's or the process's) was reached.",
                &[("stream", self.namer.stream()), ("budget", reason)],
                1,
            );
            finish_partition(epoch, &id)?;
            total -= bytes;
        }
        if let Some(share) = &self.process_budget {
            share.publish(total);
        }
        Ok(())
    }

    async fn close(
        &self,
        epoch: OpenEpoch,
        epochs: &mpsc::Sender<Epoch>,
    ) -> Result<(), BufferError> {
        if let Some(status) = crate::status::current() {
            status.epoch_holds(epoch.held());
            status.epoch_closed();
        }
        if let Some(share) = &self.process_budget {
            // Its encoders are finished below: what they held is freed.
            share.publish(0);
        }
        let mut objects = epoch.finished;
        let open_data = epoch.partitions.values().filter(|p| p.records > 0).count();
        if self.partitioning.is_some() {
            crate::metrics::inc(
                "sluice_partitions_closed_total",
                "Partition objects delivered (dynamic partitioning): finished by size or memory, or closed with their epoch.",
                &[("stream", self.namer.stream())],
                (objects.len() + open_data) as u64,
            );
        }
        for (_, partition) in epoch.partitions {
            if partition.records > 0 {
                objects.push(EpochObject {
                    encoder: partition.encoder,
                    records: partition.records,
                });
            } else {
                // Every record went to an error output: deliver no empty data
                // object (as Firehose). The staged bytes are dropped now; an S3
                // upload left behind is aborted by the orphan check after the
                // drain or at start.
                let encoder = partition.encoder;
                if let Ok(Ok(writer)) = tokio::task::spawn_blocking(move || encoder.finish()).await
                {
                    writer.discard().await;
                }
            }
        }
        objects.extend(epoch.backup.map(|encoder| EpochObject {
            encoder,
            records: epoch.records,
        }));
        objects.extend(
            epoch
                .errors
                .into_iter()
                .map(|(_, encoder, records)| EpochObject { encoder, records }),
        );
        let epoch = Epoch {
            objects,
            oldest_ms: Some(epoch.oldest_ms),
            positions: epoch.positions,
            records: epoch.records,
            bytes: epoch.bytes,
        };
        epochs
            .send(epoch)
            .await
            .map_err(|_| BufferError::DeliveryGone)
    }
}

/// Where one kept record goes.
enum Route {
    /// Into this partition's object; `late` when event time put it there because
    /// the record was outside the lateness horizon.
    Partition(PartitionId, bool),
    /// To this error output (its partition could not be named or opened).
    Error(&'static str, process::Failure),
    /// Not a kept record.
    Other,
}

/// Finishes a partition's object (blocking) and keeps it for the epoch.
fn finish_partition(epoch: &mut OpenEpoch, id: &PartitionId) -> Result<(), EncodeError> {
    let Some(partition) = epoch.partitions.remove(id) else {
        return Ok(());
    };
    if partition.records == 0 {
        // Only conversion failures so far: drop it (a staged S3 upload left
        // behind is aborted by the orphan check).
        drop(partition.encoder.finish());
        return Ok(());
    }
    let writer = partition.encoder.finish()?;
    epoch.finished.push(EpochObject {
        encoder: Box::new(Finished(writer)),
        records: partition.records,
    });
    Ok(())
}

/// A batch of source records and what the processor chain made of them.
struct Processing {
    records: Vec<Record>,
    outcomes: BatchOutcomes,
}

/// Appends error documents to their (open) error objects.
fn write_errors(
    stream: &str,
    epoch: &mut OpenEpoch,
    docs: Vec<(&'static str, Vec<u8>)>,
) -> Result<(), EncodeError> {
    for (kind, doc) in docs {
        match epoch.errors.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, encoder, count)) => {
                encoder.append(&doc)?;
                *count += 1;
                crate::metrics::inc(
                    "sluice_error_records_total",
                    "Records written to an error output, by stream and type.",
                    &[("stream", stream), ("type", kind)],
                    1,
                );
            }
            None => epoch.pending.push((kind, doc)),
        }
    }
    Ok(())
}

/// Firehose's `format-conversion-failed` document, with the Kinesis
/// position when the record came from a shard.
fn conversion_error(record: &Record, raw: &[u8], code: &str, message: &str) -> Vec<u8> {
    let kinesis = match &record.position {
        crate::record::Position::Shard {
            sequence,
            sub_sequence,
            ..
        } => Some((&**sequence, *sub_sequence)),
        crate::record::Position::Wal(_) => None,
    };
    ErrorDocument {
        kinesis,
        ..ErrorDocument::new(
            Failed::FormatConversion,
            raw,
            record.arrival_ms,
            code,
            message,
        )
    }
    .to_line()
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition;
    use crate::sink::LocalSink;
    use crate::source::direct_put::Wal;
    use bytes::Bytes;

    struct Fixture {
        _dir: tempfile::TempDir,
        wal: Wal,
        stage: BufferStage,
    }

    fn fixture(size_bytes: u64, interval: Duration) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(
            &dir.path().join("wal"),
            None,
            crate::source::direct_put::wal::WalOptions::new(1 << 30),
        )
        .unwrap();
        let (prefix, error_output_prefix) = partition::resolve(None, None, false, false).unwrap();
        let destination = DestinationConfig {
            target: crate::config::Target::Local {
                path: dir.path().join("out"),
            },
            prefix,
            error_output_prefix,
            buffering: Buffering {
                size_bytes,
                interval,
            },
            compression: Compression::Uncompressed,
            file_extension: None,
            time_zone: jiff::tz::TimeZone::UTC,
            time_zone_name: "UTC".into(),
            append_delimiter: false,
            backup: None,
            processors: process::Processors::default(),
            format: None,
            dynamic_partitioning: None,
        };
        let sink = Arc::new(LocalSink::new(&dir.path().join("out"), "s", "test").unwrap());
        let stage = BufferStage {
            namer: ObjectNamer::new("s", 1, &destination),
            sink,
            buffering: destination.buffering,
            compression: destination.compression,
            delimiter: false,
            backup: None,
            error_namer: ObjectNamer::with_prefix(
                "s",
                1,
                destination.error_output_prefix.clone(),
                jiff::tz::TimeZone::UTC,
                "",
            ),
            processors: Arc::default(),
            format: None,
            partitioning: None,
            process_budget: None,
            quarantine: Arc::default(),
        };
        Fixture {
            _dir: dir,
            wal,
            stage,
        }
    }

    async fn put(wal: &Wal, n: usize, len: usize) {
        wal.append(
            (0..n).map(|_| Bytes::from(vec![b'x'; len])).collect(),
            1_700_000_000_000,
        )
        .await
        .unwrap();
    }

    /// Runs the stage until the log ends; returns each epoch's record count
    /// and the (virtual) time it was handed to delivery.
    async fn run(f: &Fixture) -> Vec<(u64, Duration)> {
        let (tx, mut rx) = mpsc::channel::<Epoch>(100);
        let mut reader = f.wal.reader(None);
        let start = Instant::now();
        let stage = f.stage.clone();
        let collect = async {
            let mut out = Vec::new();
            while let Some(epoch) = rx.recv().await {
                out.push((epoch.records, start.elapsed()));
            }
            out
        };
        let (result, epochs) = tokio::join!(stage.run(&mut reader, tx), collect);
        result.unwrap();
        epochs
    }

    #[test]
    fn the_quarantine_holds_a_record_back_after_its_attempts() {
        let q = Quarantine::default();
        let at = crate::record::Position::Wal(crate::record::WalPosition::START);
        assert_eq!(q.poisoned(&at), None);
        for n in 1..POISON_ATTEMPTS {
            assert_eq!(q.strike(&at, "boom"), n);
            assert_eq!(q.poisoned(&at), None, "held back after {n} crashes");
        }
        q.strike(&at, "boom again");
        assert_eq!(q.poisoned(&at).as_deref(), Some("boom again"));
    }

    #[test]
    fn a_process_budget_leaves_each_stream_at_least_an_equal_share() {
        let budget = ProcessBudget::new(100);
        let (a, b) = (budget.share(), budget.share());
        // Alone in the budget, a stream may hold all of it.
        assert_eq!(a.allowance(30), 100);
        // b may hold what a leaves; a, grown, is cut down to what b leaves.
        assert_eq!(b.allowance(10), 70);
        assert_eq!(a.allowance(95), 90);
        // A stream holding more than the others leave still keeps its equal share.
        b.publish(90);
        assert_eq!(a.allowance(40), 50);
        assert_eq!(b.allowance(90), 60);
        // An epoch handed to delivery frees its stream's part.
        a.publish(0);
        assert_eq!(b.allowance(90), 100);
    }

    #[tokio::test]
    async fn size_trigger_closes_buffers_at_the_size_measured_before_compression() {
        let f = fixture(100, Duration::from_secs(300));
        put(&f.wal, 25, 10).await;
        f.wal.close().await;
        tokio::time::pause();
        let epochs = run(&f).await;
        let counts: Vec<u64> = epochs.iter().map(|e| e.0).collect();
        assert_eq!(counts, vec![10, 10, 5]);
        // The two full buffers closed without waiting for the interval.
        assert!(epochs[1].1 < Duration::from_secs(1), "{epochs:?}");
    }

    #[tokio::test]
    async fn interval_trigger_fires_after_the_first_record_waited_the_interval() {
        let f = fixture(1 << 20, Duration::from_secs(60));
        put(&f.wal, 3, 10).await;
        tokio::time::pause();
        let (tx, mut rx) = mpsc::channel(10);
        let mut reader = f.wal.reader(None);
        let stage = f.stage.clone();
        let start = Instant::now();
        let running = tokio::spawn(async move { stage.run(&mut reader, tx).await });
        let epoch = rx.recv().await.unwrap();
        let waited = start.elapsed();
        assert_eq!(epoch.records, 3);
        assert!(
            waited >= Duration::from_secs(60) && waited < Duration::from_secs(61),
            "{waited:?}"
        );
        f.wal.close().await;
        running.await.unwrap().unwrap();
        assert!(rx.recv().await.is_none(), "no empty object is delivered");
    }

    #[tokio::test]
    async fn zero_interval_closes_every_source_batch_at_once() {
        let f = fixture(1 << 20, Duration::ZERO);
        put(&f.wal, 4, 10).await;
        tokio::time::pause();
        let (tx, mut rx) = mpsc::channel(10);
        let mut reader = f.wal.reader(None);
        let stage = f.stage.clone();
        let running = tokio::spawn(async move { stage.run(&mut reader, tx).await });
        let first = rx.recv().await.unwrap();
        assert_eq!(first.records, 4);
        put(&f.wal, 2, 10).await;
        let second = rx.recv().await.unwrap();
        assert_eq!(second.records, 2);
        assert!(second.positions.wal > first.positions.wal);
        f.wal.close().await;
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn failed_records_go_to_one_error_object_and_no_empty_data_object_is_delivered() {
        let mut f = fixture(1 << 20, Duration::from_secs(300));
        f.stage.processors = Arc::new(Chain::without_transforms(&process::Processors {
            deaggregation: Some(process::Deaggregation::Json),
            ..process::Processors::default()
        }));
        f.wal
            .append(
                vec![Bytes::from_static(b"not json"), Bytes::from_static(b"[1]")],
                1_700_000_000_000,
            )
            .await
            .unwrap();
        f.wal.close().await;
        let (tx, mut rx) = mpsc::channel::<Epoch>(10);
        let mut reader = f.wal.reader(None);
        f.stage.run(&mut reader, tx).await.unwrap();
        let epoch = rx.recv().await.unwrap();
        assert_eq!(epoch.records, 2);
        assert_eq!(
            epoch.objects.len(),
            1,
            "only the processing-failed error object"
        );
        assert_eq!(epoch.objects[0].records, 2, "both failed records counted");
        let mut out = Vec::new();
        for EpochObject { encoder, .. } in epoch.objects {
            let writer = tokio::task::spawn_blocking(move || encoder.finish())
                .await
                .unwrap()
                .unwrap();
            out.push(writer.finish().await.unwrap());
        }
        assert!(
            out[0].key.starts_with("processing-failed/"),
            "{}",
            out[0].key
        );
        // The discarded data object left nothing staged.
        let staged: Vec<_> = std::fs::read_dir(f._dir.path().join("out/.sluice-staging/s"))
            .unwrap()
            .collect();
        assert_eq!(staged.len(), 1, "only the error object's temp file");
    }

    #[test]
    fn object_names_follow_firehose_layout() {
        let f = fixture(1 << 20, Duration::ZERO);
        // 2023-11-14T22:13:20Z
        let (key, name) = f.stage.namer.key(1_700_000_000_000).unwrap();
        assert!(
            key.starts_with("2023/11/14/22/s-1-2023-11-14-22-13-20-"),
            "{key}"
        );
        assert_eq!(key.len(), "2023/11/14/22/".len() + name.len());
        assert_eq!(name.len(), "s-1-2023-11-14-22-13-20-".len() + 36);
    }
}
