//! Processors: what happens to records between their source and their buffer.
//!
//! Firehose's order is de-aggregation -> transforms (Lambda there; WASM
//! components here, [`wasm`]) -> partition keys -> delimiter. The chain
//! ([`Chain::run`]) works on a whole source batch at once, because transforms
//! are called once per batch, and answers with an [`Outcome`] per resulting
//! record: kept (new data and partition keys), dropped on purpose, or failed to
//! the `processing-failed` error output with Firehose's error document
//! ([`Failure::document`]); one record's failure never stops the others.
//!
//! [`Processors`] is the configuration (what `config` validates and compares);
//! [`Chain`] is the loaded form, with each transform's compiled component.
//! Several transforms run one after the other, each on what the previous one
//! kept; a record one of them fails goes to the error output with its data as
//! it came out of de-aggregation (Firehose writes the original record).
//!
//! Neighbours: the [`crate::buffer`] stage runs the chain off the async
//! reactor on each batch it reads, then appends each source record's outcomes
//! to one object, so an object never ends in the middle of a source record
//! (the committed source position always covers whole records, dropped and
//! failed ones included).
//!
//! KPL de-aggregation is not here: it belongs to the Kinesis source, because
//! its sub-records have their own positions (sub-sequence numbers).
//! `AppendDelimiterToRecord` is applied by the raw encoder, which writes the
//! delimiter without copying the record.

pub mod metadata;
pub mod wasm;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::error_doc::{ErrorDocument, Failed};
use crate::record::Record;

/// Firehose's `RecordDeAggregation` processor: one record holding several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deaggregation {
    /// `SubRecordType` `JSON`: consecutive JSON objects, on one line or
    /// separated by whitespace/newlines (JSON Lines). A JSON array is not
    /// valid input, as in Firehose.
    Json,
    /// `SubRecordType` `DELIMITED`: split on a delimiter (given base64-encoded
    /// in the Firehose shape). Empty pieces are dropped.
    Delimited(Vec<u8>),
}

/// Firehose caps de-aggregation at 500 sub-records per record.
pub const MAX_SUB_RECORDS: usize = 500;

/// The processor chain of a stream, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processors {
    /// `RecordDeAggregation`, when configured.
    pub deaggregation: Option<Deaggregation>,
    /// WASM transforms (Firehose `Lambda` processors), run in this order.
    pub transforms: Vec<TransformConfig>,
    /// Firehose's `MetadataExtraction`: partition keys from a jq query, run
    /// after the transforms on what they kept.
    pub metadata: Option<metadata::MetadataQuery>,
}

/// Where a transform's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleRef {
    /// A Firehose `LambdaArn`: the component is `<transforms dir>/<function>.wasm`.
    Lambda {
        /// The ARN as configured (it names the transform in error documents).
        arn: String,
        /// The function name taken from it (without a qualifier).
        function: String,
    },
    /// A component file (native config); a relative path is under the
    /// transforms directory.
    Path(PathBuf),
}

impl ModuleRef {
    /// The component file, with relative names under `transforms_dir`.
    pub fn resolve(&self, transforms_dir: &Path) -> PathBuf {
        match self {
            ModuleRef::Lambda { function, .. } => transforms_dir.join(format!("{function}.wasm")),
            ModuleRef::Path(path) => transforms_dir.join(path),
        }
    }
}

impl std::fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModuleRef::Lambda { arn, .. } => f.write_str(arn),
            ModuleRef::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One transform of the chain (Firehose's `Lambda` processor, native
/// `[[destination.transform]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformConfig {
    /// The component.
    pub module: ModuleRef,
    /// Passed to the component's `init` (native `config` table).
    pub init: Vec<(String, String)>,
    /// `NumberOfRetries`: further attempts after a failed invocation.
    pub retries: u32,
    /// `BufferSizeInMBs`: most bytes of record data handed to one call.
    pub batch_bytes: usize,
    /// `BufferIntervalInSeconds`. Accepted and reported; sluice never holds a
    /// batch back to fill it (each source batch is transformed as it is read,
    /// split by `batch_bytes`), so it bounds nothing.
    pub batch_interval: std::time::Duration,
    /// Wall-clock deadline of one call.
    pub deadline: std::time::Duration,
    /// Memory cap of one instance.
    pub memory_bytes: usize,
}

/// Firehose's `NumberOfRetries` default.
pub const DEFAULT_RETRIES: u32 = 3;
/// Firehose's `BufferSizeInMBs` default: 1 MB.
pub const DEFAULT_BATCH_BYTES: usize = 1 << 20;
/// Lambda's request limit, which Firehose keeps its batches under: 6 MB.
pub const MAX_BATCH_BYTES: usize = 6_000_000;

impl TransformConfig {
    /// A transform of `module` with Firehose's and the host's defaults.
    pub fn new(module: ModuleRef) -> Self {
        let limits = wasm::Limits::default();
        TransformConfig {
            module,
            init: Vec::new(),
            retries: DEFAULT_RETRIES,
            batch_bytes: DEFAULT_BATCH_BYTES,
            batch_interval: std::time::Duration::from_secs(60),
            deadline: limits.deadline,
            memory_bytes: limits.memory_bytes,
        }
    }
}

/// Why a record could not be processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `errorCode` of the error document.
    pub code: &'static str,
    /// `errorMessage` of the error document.
    pub message: String,
    /// `attemptsMade`: invocations tried (1 for failures without a transform).
    pub attempts: u32,
    /// `lambdaArn`: the transform that failed the record, when one did.
    pub transform: Option<Arc<str>>,
}

impl Failure {
    /// The `processing-failed` document of the record `raw` this failed.
    /// `lambdaArn` is there when a transform failed the record (its ARN, or its
    /// module path for a native config).
    pub fn document<'a>(&'a self, raw: &'a [u8], arrival_ms: i64) -> ErrorDocument<'a> {
        ErrorDocument {
            attempts: self.attempts,
            transform: self.transform.as_deref(),
            ..ErrorDocument::new(
                Failed::Processing,
                raw,
                arrival_ms,
                self.code,
                &self.message,
            )
        }
    }

    /// A failure of one attempt, not caused by a transform.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            attempts: 1,
            transform: None,
        }
    }
}

/// A record the chain hands on to the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The data to encode.
    pub data: Bytes,
    /// Keys a transform gave it, for `!{partitionKeyFromLambda:KEY}`.
    pub partition_keys: Vec<(String, String)>,
    /// Keys the `MetadataExtraction` query found in it, for
    /// `!{partitionKeyFromQuery:KEY}`.
    pub query_keys: Vec<(String, String)>,
}

/// What became of one record (a source record, or one of its sub-records
/// after de-aggregation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered as this.
    Ok(Processed),
    /// Dropped on purpose (a transform's `dropped`): not delivered, and its
    /// source position is committed with the rest.
    Dropped,
    /// To the `processing-failed` error output.
    Failed {
        /// The bytes that failed (the sub-record, or the source record).
        raw: Bytes,
        /// Why.
        failure: Failure,
    },
}

/// The chain's answer for one batch: the outcomes of source record `i` are
/// `outcomes[starts[i]..starts[i + 1]]`, in order. Flat, so a batch costs two
/// allocations, not one per record.
#[derive(Debug, Default)]
pub struct BatchOutcomes {
    outcomes: Vec<Outcome>,
    starts: Vec<usize>,
}

impl BatchOutcomes {
    /// How many outcomes are not failures (`Ok`, or dropped on purpose), and
    /// the bytes of the `Ok` ones (Firehose's `SucceedProcessing` metrics).
    pub fn succeeded(&self) -> (u64, u64) {
        self.outcomes.iter().fold((0, 0), |(n, bytes), o| match o {
            Outcome::Ok(p) => (n + 1, bytes + p.data.len() as u64),
            Outcome::Dropped => (n + 1, bytes),
            Outcome::Failed { .. } => (n, bytes),
        })
    }

    /// The outcomes of source record `i`.
    pub fn of(&self, i: usize) -> &[Outcome] {
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&start), Some(&end)) => &self.outcomes[start..end],
            _ => &[],
        }
    }
}

/// `errorCode` of a record that made a stage panic (processing, or encoding
/// after repeated attempts): a bug, routed to processing-failed so that one
/// record cannot stall its stream.
pub const POISON_CODE: &str = "Sluice.RecordCrashedPipeline";

/// A panic's message, for logs and error documents.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// What a chain needs beside its configuration to load its transforms.
#[derive(Debug, Clone)]
pub struct LoadContext {
    /// Where Lambda function names and relative module paths are found.
    pub transforms_dir: PathBuf,
    /// Compiled components are cached here (under the state directory), so a
    /// restart does not recompile; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// What each call's context tells the component.
    pub context: wasm::BatchContext,
}

/// A transform that could not be loaded: a configuration error, named by
/// the ARN (or module path) as configured and the file it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transform {transform} (module {}): {source}", path.display())]
pub struct LoadError {
    /// The `LambdaArn` or module path as configured.
    pub transform: String,
    /// The component file it resolved to.
    pub path: PathBuf,
    /// Why it did not load (boxed: the error travels in `Result`s).
    pub source: Box<wasm::TransformError>,
}

impl crate::error::Classify for LoadError {
    fn is_retriable(&self) -> bool {
        false
    }

    fn fault(&self) -> crate::error::Fault {
        self.source.fault()
    }
}

/// A loaded transform.
struct Transform {
    host: Arc<wasm::TransformHost>,
    config: TransformConfig,
    /// The component file.
    path: PathBuf,
    /// `lambdaArn` of its error documents.
    name: Arc<str>,
}

/// The loaded processor chain: what [`Chain::run`] applies to each batch.
/// Shared by the buffer's blocking tasks through an `Arc`.
pub struct Chain {
    deaggregation: Option<Deaggregation>,
    transforms: Vec<Transform>,
    metadata: Option<metadata::MetadataQuery>,
    context: wasm::BatchContext,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("deaggregation", &self.deaggregation)
            .field("metadata", &self.metadata)
            .field(
                "transforms",
                &self.transforms.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for Chain {
    fn default() -> Self {
        Chain::without_transforms(&Processors::default())
    }
}

/// One record on its way through the transforms: where it came from, what it
/// was before the first transform (what an error document holds) and what it
/// has become.
struct Item {
    /// Index of its source record in the batch.
    source: usize,
    original: Bytes,
    state: Outcome,
}

impl Chain {
    /// Whether any WASM transform runs (Firehose reports processing metrics
    /// only for streams with a Lambda).
    pub fn has_transforms(&self) -> bool {
        !self.transforms.is_empty()
    }

    /// The chain of `processors` without their transforms (none may be
    /// configured there): de-aggregation only. Needs no loading.
    pub fn without_transforms(processors: &Processors) -> Chain {
        debug_assert!(processors.transforms.is_empty());
        Chain {
            deaggregation: processors.deaggregation.clone(),
            transforms: Vec::new(),
            metadata: processors.metadata.clone(),
            context: wasm::BatchContext::default(),
        }
    }

    /// Compiles (or loads from the cache) every transform of `processors`.
    /// Blocking: compiling takes seconds for a Python or JavaScript component.
    ///
    /// # Errors
    /// [`LoadError`] for the first transform whose module is missing or is
    /// not a component of the contract: a configuration error.
    pub fn load(processors: &Processors, ctx: &LoadContext) -> Result<Chain, LoadError> {
        let mut transforms = Vec::new();
        for config in &processors.transforms {
            let path = config.module.resolve(&ctx.transforms_dir);
            let fail = |source| LoadError {
                transform: config.module.to_string(),
                path: path.clone(),
                source: Box::new(source),
            };
            let limits = wasm::Limits {
                deadline: config.deadline,
                memory_bytes: config.memory_bytes,
                ..wasm::Limits::default()
            };
            let host = wasm::TransformHost::load_file(
                &path,
                ctx.cache_dir.as_deref(),
                config.init.clone(),
                limits,
            )
            .map_err(fail)?;
            transforms.push(Transform {
                host: Arc::new(host),
                name: Arc::from(config.module.to_string()),
                config: config.clone(),
                path,
            });
        }
        Ok(Chain {
            deaggregation: processors.deaggregation.clone(),
            transforms,
            metadata: processors.metadata.clone(),
            context: ctx.context.clone(),
        })
    }

    /// Creates one instance of each transform and calls its `init`, so a
    /// refused configuration is known before the first batch; the instance
    /// is pooled. Failures are not fatal to a running stream: like a Lambda
    /// function whose initialisation fails, every call is then retried and its
    /// records end in `processing-failed` (`Lambda.InitError`), while the
    /// operator fixes the configuration. `sluice validate` reports them.
    pub fn check_init(&self) -> Vec<LoadError> {
        self.transforms
            .iter()
            .filter_map(|t| {
                t.host.check_init().err().map(|source| LoadError {
                    transform: t.config.module.to_string(),
                    path: t.path.clone(),
                    source: Box::new(source),
                })
            })
            .collect()
    }

    /// [`Chain::run`], guarded against a bug that one record triggers: if
    /// the batch panics, each record is run alone, and a record that panics
    /// alone goes to processing-failed ([`POISON_CODE`]) instead of crashing
    /// the pipeline again at every replay; the others are processed as usual.
    pub fn run_guarded(&self, records: &[Record]) -> BatchOutcomes {
        let run = |records: &[Record]| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(records)))
        };
        let panicked = match run(records) {
            Ok(outcomes) => return outcomes,
            Err(panic) => panic_message(&*panic),
        };
        tracing::error!(records = records.len(), error = %panicked, "Processing a batch panicked; processing its records one by one to find the one that does.");
        let mut out = BatchOutcomes {
            outcomes: Vec::new(),
            starts: vec![0],
        };
        for record in records {
            match run(std::slice::from_ref(record)) {
                Ok(one) => out.outcomes.extend(one.outcomes),
                Err(panic) => {
                    let message = panic_message(&*panic);
                    tracing::error!(position = ?record.position, error = %message, "A record crashes processing; it goes to processing-failed.");
                    out.outcomes.push(Outcome::Failed {
                        raw: record.data.clone(),
                        failure: Failure::new(
                            POISON_CODE,
                            format!("processing this record panicked (a bug in sluice): {message}"),
                        ),
                    });
                }
            }
            out.starts.push(out.outcomes.len());
        }
        out
    }

    /// Runs the chain on a batch of source records (blocking: call it off the
    /// async reactor).
    pub fn run(&self, records: &[Record]) -> BatchOutcomes {
        let mut items = Vec::with_capacity(records.len());
        let mut subs = Vec::new();
        for (source, record) in records.iter().enumerate() {
            if let Some(message) = &record.damaged {
                // Salvaged log bytes are no record anyone sent: straight to
                // the error output, with the repair's explanation.
                items.push(Item {
                    source,
                    original: record.data.clone(),
                    state: Outcome::Failed {
                        raw: record.data.clone(),
                        failure: Failure::new("WriteAheadLogDamaged", message.to_string()),
                    },
                });
                continue;
            }
            crate::delivery::poison_point("process", &record.data);
            subs.clear();
            match deaggregate(self.deaggregation.as_ref(), &record.data, &mut subs) {
                Ok(()) => items.extend(subs.drain(..).map(|data| Item {
                    source,
                    original: data.clone(),
                    state: Outcome::Ok(Processed {
                        data,
                        partition_keys: Vec::new(),
                        query_keys: Vec::new(),
                    }),
                })),
                Err(failure) => items.push(Item {
                    source,
                    original: record.data.clone(),
                    state: Outcome::Failed {
                        raw: record.data.clone(),
                        failure,
                    },
                }),
            }
        }
        for transform in &self.transforms {
            self.transform(transform, records, &mut items);
        }
        if let Some(query) = &self.metadata {
            for item in &mut items {
                let Outcome::Ok(processed) = &mut item.state else {
                    continue;
                };
                match query.extract(&processed.data) {
                    Ok(keys) => processed.query_keys = keys,
                    Err(failure) => {
                        item.state = Outcome::Failed {
                            raw: item.original.clone(),
                            failure,
                        }
                    }
                }
            }
        }
        let mut out = BatchOutcomes {
            outcomes: Vec::with_capacity(items.len()),
            starts: Vec::with_capacity(records.len() + 1),
        };
        out.starts.push(0);
        let mut items = items.into_iter().peekable();
        for i in 0..records.len() {
            while let Some(item) = items.next_if(|item| item.source == i) {
                out.outcomes.push(item.state);
            }
            out.starts.push(out.outcomes.len());
        }
        out
    }

    /// Runs one transform on every item still kept, in calls of at most
    /// `batch_bytes` of data each, in parallel on up to the host's instances.
    fn transform(&self, transform: &Transform, records: &[Record], items: &mut [Item]) {
        let kept: Vec<usize> = (0..items.len())
            .filter(|&i| matches!(items[i].state, Outcome::Ok(_)))
            .collect();
        if kept.is_empty() {
            return;
        }
        let limit = transform.config.batch_bytes.clamp(1, MAX_BATCH_BYTES);
        let mut calls: Vec<&[usize]> = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (n, &i) in kept.iter().enumerate() {
            let size = match &items[i].state {
                Outcome::Ok(p) => p.data.len(),
                _ => 0,
            };
            if n > start && bytes + size > limit {
                calls.push(&kept[start..n]);
                (start, bytes) = (n, 0);
            }
            bytes += size;
        }
        calls.push(&kept[start..]);

        let input = |call: &[usize]| -> Vec<wasm::Record> {
            call.iter()
                .map(|&i| {
                    let item = &items[i];
                    let record = &records[item.source];
                    wasm::Record {
                        arrival_ms: record.arrival_ms,
                        data: match &item.state {
                            Outcome::Ok(p) => p.data.clone(),
                            _ => Bytes::new(),
                        },
                        kinesis: kinesis_metadata(record),
                    }
                })
                .collect()
        };
        let run = |batch: &[wasm::Record]| {
            let ctx = wasm::BatchContext {
                invocation_id: uuid::Uuid::new_v4().to_string(),
                ..self.context.clone()
            };
            transform
                .host
                .call_with_retries(&ctx, batch, transform.config.retries)
        };
        let inputs: Vec<Vec<wasm::Record>> = calls.iter().map(|c| input(c)).collect();
        let results: Vec<Vec<wasm::Outcome>> = if inputs.len() == 1 {
            vec![run(&inputs[0])]
        } else {
            // Each worker takes the next call; the host's pool bounds how many
            // instances exist, so more workers than instances would only wait.
            let slots: Vec<Mutex<Option<Vec<wasm::Outcome>>>> =
                inputs.iter().map(|_| Mutex::new(None)).collect();
            let next = std::sync::atomic::AtomicUsize::new(0);
            let workers = transform.host.instances().min(inputs.len());
            std::thread::scope(|scope| {
                for _ in 0..workers {
                    scope.spawn(|| {
                        loop {
                            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(batch) = inputs.get(n) else { break };
                            let outcomes = run(batch);
                            *slots[n].lock().unwrap_or_else(|e| e.into_inner()) = Some(outcomes);
                        }
                    });
                }
            });
            slots
                .into_iter()
                .map(|slot| {
                    slot.into_inner()
                        .unwrap_or_else(|e| e.into_inner())
                        .unwrap_or_default()
                })
                .collect()
        };
        for (call, outcomes) in calls.iter().zip(results) {
            for (&i, outcome) in call.iter().zip(outcomes) {
                let item = &mut items[i];
                item.state = match outcome {
                    wasm::Outcome::Ok {
                        data,
                        partition_keys,
                    } => {
                        let mut keys = match std::mem::replace(&mut item.state, Outcome::Dropped) {
                            Outcome::Ok(p) => p.partition_keys,
                            _ => Vec::new(),
                        };
                        // A later transform's key replaces an earlier one's.
                        for (key, value) in partition_keys {
                            keys.retain(|(k, _)| *k != key);
                            keys.push((key, value));
                        }
                        Outcome::Ok(Processed {
                            data,
                            partition_keys: keys,
                            query_keys: Vec::new(),
                        })
                    }
                    wasm::Outcome::Dropped => Outcome::Dropped,
                    wasm::Outcome::Failed(failure) => Outcome::Failed {
                        raw: item.original.clone(),
                        failure: Failure {
                            transform: Some(transform.name.clone()),
                            ..failure
                        },
                    },
                };
            }
        }
    }
}

/// What a transform learns of a Kinesis record.
fn kinesis_metadata(record: &Record) -> Option<wasm::KinesisMetadata> {
    let meta = record.kinesis.as_ref()?;
    let crate::record::Position::Shard {
        sequence,
        sub_sequence,
        ..
    } = &record.position
    else {
        return None;
    };
    Some(wasm::KinesisMetadata {
        shard_id: meta.shard.to_string(),
        partition_key: meta.partition_key.clone(),
        sequence_number: sequence.to_string(),
        subsequence_number: Some(*sub_sequence),
        arrival_ms: record.arrival_ms,
    })
}

/// De-aggregates one record, appending its resulting records to `out`.
///
/// # Errors
/// [`Failure`] when the record cannot be processed; nothing was appended.
fn deaggregate(
    deaggregation: Option<&Deaggregation>,
    data: &Bytes,
    out: &mut Vec<Bytes>,
) -> Result<(), Failure> {
    let start = out.len();
    let result = match deaggregation {
        None => {
            out.push(data.clone());
            Ok(())
        }
        Some(Deaggregation::Json) => split_json(data, out),
        Some(Deaggregation::Delimited(delimiter)) => {
            split_delimited(data, delimiter, out);
            Ok(())
        }
    };
    let result = result.and_then(|()| {
        if out.len() - start > MAX_SUB_RECORDS {
            Err(Failure::new(
                "RecordDeAggregation.TooManySubRecords",
                format!(
                    "record holds {} sub-records; at most {MAX_SUB_RECORDS} are de-aggregated from one record",
                    out.len() - start
                ),
            ))
        } else {
            Ok(())
        }
    });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Splits consecutive JSON objects; the slices keep no surrounding whitespace.
fn split_json(data: &Bytes, out: &mut Vec<Bytes>) -> Result<(), Failure> {
    let fail = |message: String| Failure::new("RecordDeAggregation.InvalidJson", message);
    let mut stream =
        serde_json::Deserializer::from_slice(data).into_iter::<serde::de::IgnoredAny>();
    let mut end = 0;
    while let Some(item) = stream.next() {
        item.map_err(|e| fail(format!("not a sequence of JSON objects: {e}")))?;
        let start = data[end..]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map_or(end, |p| end + p);
        end = stream.byte_offset();
        if data[start] != b'{' {
            return Err(fail(format!(
                "sub-record at byte {start} is not a JSON object"
            )));
        }
        out.push(data.slice(start..end));
    }
    Ok(())
}

fn split_delimited(data: &Bytes, delimiter: &[u8], out: &mut Vec<Bytes>) {
    let mut start = 0;
    let mut i = 0;
    while i + delimiter.len() <= data.len() {
        if !delimiter.is_empty() && data[i..].starts_with(delimiter) {
            if i > start {
                out.push(data.slice(start..i));
            }
            i += delimiter.len();
            start = i;
        } else {
            i += 1;
        }
    }
    if start < data.len() {
        out.push(data.slice(start..));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &Processors, data: &'static [u8]) -> Result<Vec<Vec<u8>>, Failure> {
        let mut out = Vec::new();
        deaggregate(
            p.deaggregation.as_ref(),
            &Bytes::from_static(data),
            &mut out,
        )?;
        Ok(out.iter().map(|b| b.to_vec()).collect())
    }

    fn record(data: &'static [u8]) -> Record {
        Record {
            data: Bytes::from_static(data),
            arrival_ms: 7,
            position: crate::record::Position::Wal(crate::record::WalPosition::START),
            kinesis: None,
            damaged: None,
        }
    }

    #[test]
    fn a_batch_gets_each_records_outcomes_in_order() {
        let p = Chain::without_transforms(&Processors {
            deaggregation: Some(Deaggregation::Json),
            ..Processors::default()
        });
        let mut damaged = record(b"\x00\x01");
        damaged.damaged = Some("bytes 28..30 of segment 1".into());
        let batch = [
            record(b"{\"a\":1}{\"a\":2}"),
            record(b"not json"),
            damaged,
            record(b"{}"),
        ];
        let out = p.run(&batch);
        let kept = |i: usize| -> Vec<Vec<u8>> {
            out.of(i)
                .iter()
                .filter_map(|o| match o {
                    Outcome::Ok(p) => Some(p.data.to_vec()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(kept(0), vec![b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]);
        match out.of(1) {
            [Outcome::Failed { raw, failure }] => {
                assert_eq!(&raw[..], b"not json");
                assert_eq!(failure.code, "RecordDeAggregation.InvalidJson");
            }
            other => panic!("{other:?}"),
        }
        match out.of(2) {
            [Outcome::Failed { failure, .. }] => assert_eq!(failure.code, "WriteAheadLogDamaged"),
            other => panic!("{other:?}"),
        }
        assert_eq!(kept(3), vec![b"{}".to_vec()]);
        assert!(out.of(4).is_empty());
    }

    /// A chain of fixture transforms (tests/wasm-fixtures), each with its
    /// `init` mode; `None` when the fixture cannot be built (skipped loudly there).
    fn fixture_chain(
        deaggregation: Option<Deaggregation>,
        transforms: &[(&str, usize, u32)],
    ) -> Option<Chain> {
        let path = wasm::tests::fixture_path()?;
        let processors = Processors {
            deaggregation,
            metadata: None,
            transforms: transforms
                .iter()
                .map(|&(mode, batch_bytes, retries)| TransformConfig {
                    init: vec![("mode".into(), mode.into())],
                    batch_bytes,
                    retries,
                    deadline: std::time::Duration::from_secs(5),
                    memory_bytes: 32 << 20,
                    ..TransformConfig::new(ModuleRef::Path(path.to_path_buf()))
                })
                .collect(),
        };
        let ctx = LoadContext {
            transforms_dir: PathBuf::from("unused-for-absolute-paths"),
            cache_dir: Some(wasm::tests::shared_cache().to_path_buf()),
            context: wasm::BatchContext::default(),
        };
        Some(Chain::load(&processors, &ctx).expect("load the fixture chain"))
    }

    fn summary(out: &BatchOutcomes, records: usize) -> Vec<Vec<String>> {
        (0..records)
            .map(|i| {
                out.of(i)
                    .iter()
                    .map(|o| match o {
                        Outcome::Ok(p) => format!(
                            "ok {} {:?}",
                            String::from_utf8_lossy(&p.data),
                            p.partition_keys
                        ),
                        Outcome::Dropped => "dropped".into(),
                        Outcome::Failed { raw, failure } => format!(
                            "failed {} {} {} {:?}",
                            String::from_utf8_lossy(raw),
                            failure.code,
                            failure.attempts,
                            failure.transform.is_some()
                        ),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn transforms_run_in_order_after_deaggregation_and_keep_each_records_outcome() {
        // upper: every record upper-cased with key case=upper; then drop-odd:
        // of each call's records, index 0 mod 3 kept, 1 dropped, 2 failed.
        let Some(chain) = fixture_chain(
            Some(Deaggregation::Json),
            &[("upper", 1 << 20, 0), ("drop-odd", 1 << 20, 0)],
        ) else {
            return;
        };
        let batch = [
            record(b"{\"a\":1}{\"b\":2}"),
            record(b"not json"),
            record(b"{\"c\":3}"),
        ];
        let out = chain.run(&batch);
        assert_eq!(
            summary(&out, 3),
            vec![
                vec![
                    "ok {\"A\":1} [(\"case\", \"upper\")]".to_string(),
                    "dropped".to_string()
                ],
                vec!["failed not json RecordDeAggregation.InvalidJson 1 false".to_string()],
                // Failed by the second transform: the error document holds the
                // record as it came out of de-aggregation, not upper-cased.
                vec!["failed {\"c\":3} Lambda.ProcessingFailed 1 true".to_string()],
            ]
        );
    }

    #[test]
    fn calls_are_split_by_batch_bytes_and_a_failed_call_fails_only_its_records() {
        // One byte per call: each record is its own call (run on two workers);
        // the fixture panics on a call whose first record is `!panic`.
        let Some(chain) = fixture_chain(None, &[("upper", 1, 1)]) else {
            return;
        };
        let batch = [record(b"a"), record(b"!panic"), record(b"b"), record(b"c")];
        let out = chain.run(&batch);
        assert_eq!(
            summary(&out, 4),
            vec![
                vec!["ok A [(\"case\", \"upper\")]".to_string()],
                // Retried once (retries = 1): two attempts made.
                vec!["failed !panic Lambda.FunctionError 2 true".to_string()],
                vec!["ok B [(\"case\", \"upper\")]".to_string()],
                vec!["ok C [(\"case\", \"upper\")]".to_string()],
            ]
        );
        let Outcome::Failed { failure, .. } = &out.of(1)[0] else {
            unreachable!()
        };
        assert!(
            failure.message.contains("panic mode"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn a_transform_that_does_not_load_names_its_arn_and_file() {
        let processors = Processors {
            deaggregation: None,
            metadata: None,
            transforms: vec![TransformConfig::new(ModuleRef::Lambda {
                arn: "arn:aws:lambda:us-east-1:1:function:nowhere".into(),
                function: "nowhere".into(),
            })],
        };
        let dir = tempfile::tempdir().unwrap();
        let ctx = LoadContext {
            transforms_dir: dir.path().to_path_buf(),
            cache_dir: None,
            context: wasm::BatchContext::default(),
        };
        let err = Chain::load(&processors, &ctx).unwrap_err().to_string();
        assert!(
            err.contains("arn:aws:lambda:us-east-1:1:function:nowhere")
                && err.contains(&dir.path().join("nowhere.wasm").display().to_string()),
            "{err}"
        );
        // A component whose init refuses its configuration fails at load too.
        if let Some(path) = wasm::tests::fixture_path() {
            let processors = Processors {
                deaggregation: None,
                metadata: None,
                transforms: vec![TransformConfig {
                    init: vec![("mode".into(), "init-fail".into())],
                    ..TransformConfig::new(ModuleRef::Path(path.to_path_buf()))
                }],
            };
            let ctx = LoadContext {
                cache_dir: Some(wasm::tests::shared_cache().to_path_buf()),
                ..ctx
            };
            // It loads (a running stream keeps going; its records fail), and
            // the check that `sluice validate` and the start-up log use says why.
            let chain = Chain::load(&processors, &ctx).unwrap();
            let errors = chain.check_init();
            assert_eq!(errors.len(), 1);
            let err = errors[0].to_string();
            assert!(err.contains("refused its configuration in init"), "{err}");
        }
    }

    #[test]
    fn no_processors_pass_the_record_through() {
        assert_eq!(
            run(&Processors::default(), b"abc").unwrap(),
            vec![b"abc".to_vec()]
        );
    }

    #[test]
    fn json_deaggregation_splits_concatenated_and_newline_separated_objects() {
        let p = Processors {
            deaggregation: Some(Deaggregation::Json),
            ..Processors::default()
        };
        assert_eq!(
            run(&p, b"{\"a\":1}{\"a\":2}\n {\"b\":{\"c\":[1,2]}}\n").unwrap(),
            vec![
                b"{\"a\":1}".to_vec(),
                b"{\"a\":2}".to_vec(),
                b"{\"b\":{\"c\":[1,2]}}".to_vec()
            ]
        );
        let err = run(&p, b"[{\"a\":1},{\"a\":2}]").unwrap_err();
        assert_eq!(err.code, "RecordDeAggregation.InvalidJson");
        let err = run(&p, b"{\"a\":1}{\"a\":").unwrap_err();
        assert_eq!(err.code, "RecordDeAggregation.InvalidJson");
    }

    #[test]
    fn delimited_deaggregation_splits_and_drops_empty_pieces() {
        let p = Processors {
            deaggregation: Some(Deaggregation::Delimited(b"####".to_vec())),
            ..Processors::default()
        };
        assert_eq!(
            run(&p, b"a####bb########c####").unwrap(),
            vec![b"a".to_vec(), b"bb".to_vec(), b"c".to_vec()]
        );
        assert_eq!(
            run(&p, b"no delimiter").unwrap(),
            vec![b"no delimiter".to_vec()]
        );
    }

    #[test]
    fn too_many_sub_records_fail_the_record_and_append_nothing() {
        let p = Processors {
            deaggregation: Some(Deaggregation::Delimited(b",".to_vec())),
            ..Processors::default()
        };
        let data = Bytes::from(b"x,".repeat(MAX_SUB_RECORDS + 1));
        let mut out = vec![Bytes::from_static(b"earlier")];
        let err = deaggregate(p.deaggregation.as_ref(), &data, &mut out).unwrap_err();
        assert_eq!(err.code, "RecordDeAggregation.TooManySubRecords");
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_failure_documents_its_attempts_and_transform() {
        let line = Failure::new("C", "m").document(b"x", 1700).to_line();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            (&v["errorCode"], &v["errorMessage"]),
            (&"C".into(), &"m".into())
        );
        assert_eq!(
            (&v["attemptsMade"], &v["arrivalTimestamp"]),
            (&1.into(), &1700.into())
        );
        assert!(v.get("lambdaArn").is_none());
        let failure = Failure {
            attempts: 4,
            transform: Some("arn:aws:lambda:us-east-1:1:function:f".into()),
            ..Failure::new("Lambda.FunctionError", "trapped")
        };
        let line = failure.document(b"x", 1).to_line();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["attemptsMade"], 4);
        assert_eq!(v["lambdaArn"], "arn:aws:lambda:us-east-1:1:function:f");
    }
}
