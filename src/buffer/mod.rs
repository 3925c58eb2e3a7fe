//! The buffer stage: Firehose's `BufferingHints`, streaming into staged objects.
//!
//! Neighbours: reads record batches from the source (the write-ahead log
//! reader), names each new object with the [`crate::partition`] prefix,
//! streams records through an [`crate::encode`] encoder straight into a
//! [`crate::sink`] staging writer, and hands each closed buffer to
//! [`crate::delivery`] as an [`Epoch`].
//!
//! A buffer is closed when whichever comes first: its records reach
//! `size_bytes` (measured before compression, as Firehose), or `interval` has
//! passed since its first record arrived (interval 0: after every source
//! batch). Records are encoded as they arrive, so memory holds encoder state,
//! not the buffer's contents. Epochs go to delivery over a channel of one:
//! while one epoch is being delivered and one waits, reading stops, which is
//! how a slow sink pushes back to the source.

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
use crate::partition::{Prefix, PrefixContext, PrefixError};
use crate::process::{self, BatchOutcomes, Chain, Outcome};
use crate::record::{Positions, Record};
use crate::sink::{ObjectSink, SinkError};
use crate::source::{Source, SourceError};

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
        let instant =
            jiff::Timestamp::from_millisecond(arrival_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let zoned = instant.to_zoned(self.time_zone.clone());
        let prefix = self.prefix.evaluate(&PrefixContext {
            timestamp: &zoned,
            error_output_type,
            partition_keys: None,
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

/// The object currently being filled.
struct OpenObject {
    encoder: ObjectEncoder,
    /// The source-record backup of the same records, when enabled.
    backup: Option<ObjectEncoder>,
    /// Error outputs of this buffer, opened on the first failed record of
    /// each type; they are delivered in the same epoch as the data object.
    errors: Vec<(&'static str, ObjectEncoder, u64)>,
    /// Error documents of the last record, waiting for their error object to
    /// be opened (at most one source record's worth).
    pending: Vec<(&'static str, Vec<u8>)>,
    /// Arrival time of the oldest record: names the error objects too.
    oldest_ms: i64,
    /// Records the data encoder took (failed records went to error outputs).
    data_records: u64,
    opened: Instant,
    bytes: u64,
    records: u64,
    positions: Positions,
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
}

impl BufferStage {
    /// Runs until the source ends (shutdown), closing the last buffer, or
    /// until something fails.
    ///
    /// # Errors
    /// [`BufferError`]; the caller restarts from recovery.
    pub async fn run(
        &self,
        source: &mut dyn Source,
        epochs: mpsc::Sender<Epoch>,
    ) -> Result<(), BufferError> {
        let mut open: Option<OpenObject> = None;
        loop {
            let deadline = open.as_ref().map(|o| o.opened + self.buffering.interval);
            let batch = tokio::select! {
                batch = source.next_batch(READ_BATCH_BYTES) => batch?,
                () = sleep_until_opt(deadline) => {
                    if let Some(object) = open.take() {
                        close(object, &epochs).await?;
                    }
                    continue;
                }
            };
            let Some(batch) = batch else {
                if let Some(object) = open.take() {
                    close(object, &epochs).await?;
                }
                return Ok(());
            };
            self.append(batch.records, &mut open, &epochs).await?;
            if !batch.ended_shards.is_empty() {
                // A shard's end is committed with the buffer holding its last
                // records, or on its own when no buffer is open.
                match &mut open {
                    Some(object) => batch
                        .ended_shards
                        .iter()
                        .for_each(|s| object.positions.end_shard(s)),
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
                && let Some(object) = open.take()
            {
                close(object, &epochs).await?;
            }
        }
    }

    /// Appends a batch, closing and opening objects as the size trigger fires.
    async fn append(
        &self,
        records: Vec<Record>,
        open: &mut Option<OpenObject>,
        epochs: &mpsc::Sender<Epoch>,
    ) -> Result<(), BufferError> {
        let limit = self.buffering.size_bytes;
        let delimiter = u64::from(self.delimiter);
        // Processing and encoding are CPU work: run them off the reactor,
        // moving the records and their outcomes there and back, not copying.
        // The chain sees the whole batch (transforms are called per batch)
        // before any of it is encoded.
        let processors = self.processors.clone();
        let mut batch = tokio::task::spawn_blocking(move || {
            let outcomes = processors.run(&records);
            Processing { records, outcomes }
        })
        .await
        .map_err(|e| BufferError::Task(e.to_string()))?;
        let mut next = 0;
        while next < batch.records.len() {
            let mut object = match open.take() {
                Some(object) => object,
                None => self.open(batch.records[next].arrival_ms).await?,
            };
            let (object_back, batch_back, reached, result) =
                tokio::task::spawn_blocking(move || {
                    let mut i = next;
                    let result = append_records(&mut object, &batch, &mut i, limit, delimiter);
                    (object, batch, i, result)
                })
                .await
                .map_err(|e| BufferError::Task(e.to_string()))?;
            result?;
            batch = batch_back;
            next = reached;
            let mut object_back = object_back;
            if !object_back.pending.is_empty() {
                // A record failed with an error type whose object is not open
                // yet: open it, then the next round writes the documents.
                self.open_error_outputs(&mut object_back).await?;
                let pending = std::mem::take(&mut object_back.pending);
                let (back, result) = tokio::task::spawn_blocking(move || {
                    let mut object = object_back;
                    let result = write_errors(&mut object, pending);
                    (object, result)
                })
                .await
                .map_err(|e| BufferError::Task(e.to_string()))?;
                result?;
                object_back = back;
            }
            if object_back.bytes >= limit {
                close(object_back, epochs).await?;
            } else {
                *open = Some(object_back);
            }
        }
        Ok(())
    }

    async fn open(&self, arrival_ms: i64) -> Result<OpenObject, BufferError> {
        let (key, name) = self.namer.key(arrival_ms)?;
        let writer = self.sink.stage(&key).await?;
        let backup = match &self.backup {
            None => None,
            Some((namer, compression)) => {
                let (key, name) = namer.key(arrival_ms)?;
                let writer = self.sink.stage(&key).await?;
                Some(encode::raw(writer, *compression, self.delimiter, &name))
            }
        };
        let encoder = match self.format.as_deref() {
            None => encode::raw(writer, self.compression, self.delimiter, &name),
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
        };
        Ok(OpenObject {
            encoder,
            backup,
            errors: Vec::new(),
            pending: Vec::new(),
            oldest_ms: arrival_ms,
            data_records: 0,
            opened: Instant::now(),
            bytes: 0,
            records: 0,
            positions: Positions::default(),
        })
    }
}

impl BufferStage {
    /// Opens an error object for every pending error type that has none.
    async fn open_error_outputs(&self, object: &mut OpenObject) -> Result<(), BufferError> {
        let mut kinds: Vec<&'static str> = object.pending.iter().map(|(kind, _)| *kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        for kind in kinds {
            if object.errors.iter().any(|(k, _, _)| *k == kind) {
                continue;
            }
            let (key, name) = self.error_namer.key_for(object.oldest_ms, Some(kind))?;
            let writer = self.sink.stage(&key).await?;
            // Error documents are JSON lines, compressed like raw output;
            // with format conversion Firehose requires UNCOMPRESSED.
            let compression = if self.format.is_some() {
                Compression::Uncompressed
            } else {
                self.compression
            };
            object
                .errors
                .push((kind, encode::raw(writer, compression, false, &name), 0));
        }
        Ok(())
    }
}

/// Processes and encodes records from `*i` until the size limit, a failure
/// that needs a new error object, or the end of the batch (blocking).
/// A batch of source records and what the processor chain made of them.
struct Processing {
    records: Vec<Record>,
    outcomes: BatchOutcomes,
}

/// Encodes records from `*i` until the size limit, a failure that needs a new
/// error object, or the end of the batch (blocking).
fn append_records(
    object: &mut OpenObject,
    batch: &Processing,
    i: &mut usize,
    limit: u64,
    delimiter: u64,
) -> Result<(), EncodeError> {
    let pending = std::mem::take(&mut object.pending);
    write_errors(object, pending)?;
    while *i < batch.records.len() && object.bytes < limit {
        let record = &batch.records[*i];
        for outcome in batch.outcomes.of(*i) {
            match outcome {
                Outcome::Ok(processed) => match object.encoder.append(&processed.data) {
                    Ok(()) => object.data_records += 1,
                    Err(EncodeError::Record { code, message }) => {
                        object.pending.push((
                            FORMAT_CONVERSION_FAILED,
                            conversion_error(record, &processed.data, code, &message),
                        ));
                    }
                    Err(e) => return Err(e),
                },
                Outcome::Dropped => {}
                Outcome::Failed { raw, failure } => object.pending.push((
                    PROCESSING_FAILED,
                    process::error_document(raw, record.arrival_ms, failure),
                )),
            }
        }
        if let Some(backup) = &mut object.backup
            && record.damaged.is_none()
        {
            backup.append(&record.data)?;
        }
        object.bytes += record.data.len() as u64 + delimiter;
        object.records += 1;
        object.positions.advance(&record.position);
        *i += 1;
        if !object.pending.is_empty() {
            let pending = std::mem::take(&mut object.pending);
            let (ready, waiting): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|(kind, _)| object.errors.iter().any(|(k, _, _)| k == kind));
            write_errors(object, ready)?;
            if !waiting.is_empty() {
                object.pending = waiting;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Appends error documents to their (open) error objects.
fn write_errors(
    object: &mut OpenObject,
    docs: Vec<(&'static str, Vec<u8>)>,
) -> Result<(), EncodeError> {
    for (kind, doc) in docs {
        match object.errors.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, encoder, count)) => {
                encoder.append(&doc)?;
                *count += 1;
                crate::metrics::inc(
                    "sluice_error_records_total",
                    "Records written to an error output, by type.",
                    &[("type", kind)],
                    1,
                );
            }
            None => object.pending.push((kind, doc)),
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
    convert::error_document_at(raw, record.arrival_ms, code, message, kinesis)
}

async fn close(object: OpenObject, epochs: &mpsc::Sender<Epoch>) -> Result<(), BufferError> {
    let mut objects = Vec::new();
    if object.data_records > 0 {
        objects.push(EpochObject {
            encoder: object.encoder,
            records: object.data_records,
        });
    } else {
        // Every record went to an error output: deliver no empty data object
        // (as Firehose). The staged bytes are dropped now; an S3 upload left
        // behind is aborted by the orphan check after the drain or at start.
        let encoder = object.encoder;
        if let Ok(Ok(writer)) = tokio::task::spawn_blocking(move || encoder.finish()).await {
            writer.discard().await;
        }
    }
    objects.extend(object.backup.map(|encoder| EpochObject {
        encoder,
        records: object.records,
    }));
    objects.extend(
        object
            .errors
            .into_iter()
            .map(|(_, encoder, records)| EpochObject { encoder, records }),
    );
    let epoch = Epoch {
        objects,
        oldest_ms: Some(object.oldest_ms),
        positions: object.positions,
        records: object.records,
        bytes: object.bytes,
    };
    epochs
        .send(epoch)
        .await
        .map_err(|_| BufferError::DeliveryGone)
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
        let (prefix, error_output_prefix) = partition::resolve(None, None).unwrap();
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
