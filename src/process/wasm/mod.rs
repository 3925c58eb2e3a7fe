//! WASM transforms: the host that runs a user's WebAssembly component where Firehose
//! calls a Lambda function.
//!
//! Role and neighbours: the processor chain ([`crate::process`]) hands this module a
//! batch of records and gets one [`Outcome`] per record back, in input order. `Ok`
//! records go on to partitioning and the buffer; `Dropped` ones vanish on purpose;
//! `Failed` ones go to the `processing-failed` error output with
//! [`crate::process::Failure::document`]. The contract is `transforms/wit/transform.wit`
//! (package `sluice:transform@0.1.1`): world `transformer` (a list of records in, one
//! output record per id back) or world `packed-transformer`, which adds
//! `transform-packed` (the batch as a few flat lists, answered by position); the host
//! calls `transform-packed` when a component exports it, because lowering and lifting
//! one record per list element costs several guest allocations per record. Guests are
//! built with wit-bindgen (Rust), componentize-py or componentize-js. This module is blocking CPU
//! work: async callers run it in `spawn_blocking`. [`cli`] is `sluice transform test`
//! (one call on sample records) and `sluice transform new` (plugin scaffolds).
//!
//! What it does:
//! - compiles the component once per engine and keeps the native code in an on-disk
//!   cache (`cache.rs`), so a restart does not recompile (seconds for Python/JS guests);
//! - keeps a pool of instances ([`Limits::instances`], one per worker thread is the
//!   intent): each is created lazily, `init` is called once with the module's
//!   configuration, then it serves many batches. An instance whose call failed in any
//!   way wasmtime reports (trap, deadline, memory, hostcall fuel) is dropped, so the
//!   next batch gets a fresh one and no corrupted guest state survives;
//! - applies Firehose's Lambda rules to the answer: one output per input record id;
//!   a duplicated, missing or unknown id fails the whole batch; a packed answer that
//!   does not fit the batch (counts, offsets, leftovers) fails it too;
//! - [`TransformHost::call_with_retries`] is Firehose's `NumberOfRetries` loop: after the
//!   last failed attempt every record becomes `Failed` with the error's code and message.
//!
//! The sandbox and its limits, and why:
//! - WASI p2 is linked with an *empty* context: no preopened directories (so no file can
//!   be opened), no environment variables, no arguments, no network (sockets and name
//!   lookups are denied), stdin closed. componentize-py guests import WASI at run time, so
//!   it must be linked, but nothing of the host is reachable through it. stdout and
//!   stderr go to sluice's log line by line (info and warn, tagged with the module name
//!   and the stream), like the `log` import's messages, and all three share one token
//!   bucket per instance, so a chatty guest cannot flood the log; the last KiB of stderr
//!   is also kept for the call's trap message, because a Rust guest's panic message goes
//!   there.
//! - deadline per call ([`Limits::deadline`], default 60 s like a generous Lambda
//!   timeout): epoch interruption, with one ticker thread per host bumping the epoch every
//!   [`EPOCH_TICK`]. Epochs cost a few percent of guest speed; fuel would be exact but
//!   costlier, and the deadline only has to be coarse.
//! - memory ([`Limits::memory_bytes`], default 256 MiB) per linear memory through
//!   `StoreLimits` with `trap_on_grow_failure`: a guest that allocates without bound
//!   traps at the cap instead of the daemon being killed by the OOM killer.
//! - returned bytes ([`Limits::max_output_bytes`], default 6 MB like Lambda's response
//!   limit): record ids, data and partition keys of the answer are summed; wasmtime's
//!   hostcall fuel caps what the host copies out of the guest in the first place, so a
//!   guest cannot make the host allocate gigabytes before the check.
//! - wasm stack ([`WASM_STACK_BYTES`]): the guest runs on the calling thread's stack,
//!   which for tokio's blocking threads is 2 MiB, so the cap must stay well below that.

mod cache;
pub mod cli;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::error::{Classify, Fault};
use crate::process::Failure;

/// Generated from the contract. Private: the host's own plain types are the API, so a
/// contract revision changes this module only. Two worlds: `transformer` (0.1.0's, one
/// record per list element) and `packed-transformer` (added in 0.1.1, the same world
/// plus `transform-packed`); the second shares the first's `types`.
mod bindings {
    #![allow(missing_docs)]
    // Borrowing: the records handed to `transform` are lowered straight from the
    // host's buffers into the guest's memory, not copied into owned vectors first.
    wasmtime::component::bindgen!({
        world: "transformer",
        path: "transforms/wit",
        ownership: Borrowing { duplicate_if_necessary: false },
    });

    pub(super) mod packed {
        wasmtime::component::bindgen!({
            world: "packed-transformer",
            path: "transforms/wit",
            ownership: Borrowing { duplicate_if_necessary: false },
            with: { "sluice:transform/types": super::sluice::transform::types },
        });
    }
}

use bindings::packed::sluice::transform::packed as pk;
use bindings::sluice::transform::types as wit;

/// How often the epoch ticker bumps the engine's epoch: the resolution of the deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Cap on the guest's wasm stack. It lives on the calling thread's stack (2 MiB for
/// tokio blocking threads and Rust test threads), so it must leave room for the host.
pub const WASM_STACK_BYTES: usize = 512 * 1024;

/// Lines (`log` messages, stdout and stderr) one instance may write in a burst, then
/// [`LOG_PER_SEC`] per second.
const LOG_BURST: f64 = 100.0;
const LOG_PER_SEC: f64 = 20.0;
/// A logged guest message is cut to this many bytes.
const LOG_MESSAGE_BYTES: usize = 4096;

/// The limits of one transform; see the module docs for why each exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time one `transform` (or `init`) call may take.
    pub deadline: Duration,
    /// Largest size of each linear memory of an instance.
    pub memory_bytes: usize,
    /// Largest answer of one call: record ids, data and partition keys, summed.
    pub max_output_bytes: usize,
    /// Most instances alive at once: callers beyond that wait for one to be free.
    pub instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(60),
            memory_bytes: 256 << 20,
            max_output_bytes: 6_000_000,
            instances: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Kinesis metadata of a record read from a Kinesis Data Stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisMetadata {
    /// `shardId-000000000000`.
    pub shard_id: String,
    /// The producer's partition key.
    pub partition_key: String,
    /// The record's sequence number.
    pub sequence_number: String,
    /// The KPL sub-record index, for de-aggregated records.
    pub subsequence_number: Option<u64>,
    /// When Kinesis received the record, ms since the epoch.
    pub arrival_ms: i64,
}

/// One record of a batch. The guest knows it by its index in the batch, in decimal
/// (`"0"`, `"1"`, ...): the plain call passes that as its `record-id`, the packed call
/// by position; errors name records the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When sluice received the record, ms since the epoch.
    pub arrival_ms: i64,
    /// The record's bytes.
    pub data: Bytes,
    /// Present when the stream reads a Kinesis Data Stream.
    pub kinesis: Option<KinesisMetadata>,
}

/// What Firehose passes a Lambda beside the records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchContext {
    /// Unique per call (a fresh one per retry is fine).
    pub invocation_id: String,
    /// The stream's ARN.
    pub delivery_stream_arn: String,
    /// The region the stream claims.
    pub region: String,
    /// The source stream's ARN when reading Kinesis.
    pub source_kinesis_stream_arn: Option<String>,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Keep the record with this (new) data and partition keys.
    Ok {
        /// The transformed record (the input's own bytes when the guest left it
        /// unchanged through `transform-packed`).
        data: Bytes,
        /// For `!{partitionKeyFromLambda:KEY}`.
        partition_keys: Vec<(String, String)>,
    },
    /// Dropped on purpose by the transform: counts as success, delivers nothing.
    Dropped,
    /// Goes to `processing-failed` with this code and message.
    Failed(Failure),
}

/// `errorCode` of a record the guest itself answered `processing-failed`.
pub const PROCESSING_FAILED: &str = "Lambda.ProcessingFailed";

/// Why a transform call (or loading the module) failed. Every variant names the module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// The module file cannot be read.
    #[error("WASM module {module}: cannot read {path}: {message}")]
    Read {
        /// The module's name.
        module: String,
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// Not a valid component, or not one wasmtime can compile.
    #[error("WASM module {module} does not compile: {message}")]
    Compile {
        /// The module's name.
        module: String,
        /// wasmtime's reason.
        message: String,
    },
    /// The component does not fit the `transformer` world or imports what the host does
    /// not provide.
    #[error("WASM module {module} cannot be instantiated: {message}")]
    Instantiate {
        /// The module's name.
        module: String,
        /// wasmtime's reason.
        message: String,
    },
    /// The guest's `init` returned an error.
    #[error("WASM module {module} refused its configuration in init: {message}")]
    Init {
        /// The module's name.
        module: String,
        /// The guest's message.
        message: String,
    },
    /// The guest trapped (panic, `unreachable`, out-of-bounds access, stack overflow).
    #[error("WASM module {module} trapped: {message}")]
    Trap {
        /// The module's name.
        module: String,
        /// The trap and the guest's last stderr (the wasm backtrace is logged at debug).
        message: String,
    },
    /// The call ran past [`Limits::deadline`].
    #[error("WASM module {module} ran past its deadline of {deadline_ms} ms")]
    Timeout {
        /// The module's name.
        module: String,
        /// The deadline.
        deadline_ms: u128,
    },
    /// The guest tried to grow a memory past [`Limits::memory_bytes`].
    #[error("WASM module {module} exceeded its memory limit of {limit} bytes")]
    OutOfMemory {
        /// The module's name.
        module: String,
        /// The limit.
        limit: usize,
    },
    /// The answer is larger than [`Limits::max_output_bytes`].
    #[error("WASM module {module} returned more than {limit} bytes ({detail})")]
    OutputTooLarge {
        /// The module's name.
        module: String,
        /// The limit.
        limit: usize,
        /// How much, when known.
        detail: String,
    },
    /// The answer holds a record id twice (Firehose: `Lambda.DuplicatedRecordId`).
    #[error("WASM module {module} returned record id {id:?} more than once")]
    DuplicatedRecordId {
        /// The module's name.
        module: String,
        /// The repeated id.
        id: String,
    },
    /// The answer lacks some input ids (Firehose: `Lambda.MissingRecordId`).
    #[error(
        "WASM module {module} returned no answer for {missing} of {total} records (first: {id:?})"
    )]
    MissingRecordId {
        /// The module's name.
        module: String,
        /// The first input id without an answer.
        id: String,
        /// How many are missing.
        missing: usize,
        /// Records in the batch.
        total: usize,
    },
    /// The answer holds an id that is not in the batch. Firehose counts any id mismatch
    /// as a transformation failure without a code of its own; sluice names it.
    #[error("WASM module {module} returned record id {id:?}, which is not in the batch")]
    UnknownRecordId {
        /// The module's name.
        module: String,
        /// The unknown id.
        id: String,
    },
    /// A `transform-packed` answer whose lists do not fit together (Firehose's code for
    /// a Lambda response it cannot parse is `Lambda.JsonProcessingException`).
    #[error("WASM module {module} returned a malformed packed answer: {detail}")]
    MalformedAnswer {
        /// The module's name.
        module: String,
        /// Which lists disagree.
        detail: String,
    },
    /// The wasmtime engine could not be set up (a sluice or platform problem).
    #[error("WASM engine: {0}")]
    Engine(String),
}

impl TransformError {
    /// Firehose-style `errorCode` for the `processing-failed` error document.
    /// `Lambda.DuplicatedRecordId` and `Lambda.MissingRecordId` are Firehose's own; the
    /// others follow its `Lambda.` naming for what a Lambda invocation would report.
    pub fn code(&self) -> &'static str {
        match self {
            TransformError::Read { .. }
            | TransformError::Compile { .. }
            | TransformError::Instantiate { .. }
            | TransformError::Engine(_) => "Lambda.ResourceNotFound",
            TransformError::Init { .. } => "Lambda.InitError",
            TransformError::Trap { .. } => "Lambda.FunctionError",
            TransformError::Timeout { .. } => "Lambda.Timeout",
            TransformError::OutOfMemory { .. } => "Lambda.OutOfMemory",
            TransformError::OutputTooLarge { .. } => "Lambda.ResponseSizeTooLarge",
            TransformError::DuplicatedRecordId { .. } => "Lambda.DuplicatedRecordId",
            TransformError::MissingRecordId { .. } => "Lambda.MissingRecordId",
            TransformError::UnknownRecordId { .. } => "Lambda.UnknownRecordId",
            TransformError::MalformedAnswer { .. } => "Lambda.JsonProcessingException",
        }
    }
}

impl Classify for TransformError {
    /// Firehose retries an invocation that failed; so does sluice for failures a fresh
    /// instance may not repeat (traps, deadlines and memory can depend on state the
    /// discarded instance carried, or on the machine's load; an `init` may depend on
    /// the same, and Firehose retries a function whose initialisation failed). A
    /// malformed answer or a module that does not load are deterministic: retrying
    /// only burns CPU.
    fn is_retriable(&self) -> bool {
        matches!(
            self,
            TransformError::Trap { .. }
                | TransformError::Timeout { .. }
                | TransformError::OutOfMemory { .. }
                | TransformError::Init { .. }
        )
    }

    fn fault(&self) -> Fault {
        match self {
            // The operator chose the module and its configuration.
            TransformError::Read { .. }
            | TransformError::Compile { .. }
            | TransformError::Instantiate { .. }
            | TransformError::Init { .. } => Fault::Config,
            // A timeout may be the machine's load as much as the guest's.
            TransformError::Timeout { .. } => Fault::Remote,
            // The guest misbehaved on this batch; other batches go on.
            TransformError::Trap { .. }
            | TransformError::OutOfMemory { .. }
            | TransformError::OutputTooLarge { .. }
            | TransformError::DuplicatedRecordId { .. }
            | TransformError::MissingRecordId { .. }
            | TransformError::UnknownRecordId { .. }
            | TransformError::MalformedAnswer { .. } => Fault::Data,
            TransformError::Engine(_) => Fault::Bug,
        }
    }
}

/// How the compiled module was obtained, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleSource {
    /// Loaded from the disk cache.
    Cache,
    /// Compiled now (and written to the cache when there is one).
    Compiled,
}

/// A compiled component with what it took to get it.
struct Module {
    name: Arc<str>,
    pre: Pre,
    source: ModuleSource,
    load_time: Duration,
}

impl Module {
    /// Compiles `wasm` (or loads it from `cache_dir`) and links it against the host's
    /// imports: WASI p2 and `log`.
    fn load(
        engine: &Engine,
        name: Arc<str>,
        wasm: &[u8],
        cache_dir: Option<&std::path::Path>,
    ) -> Result<Module, TransformError> {
        let started = Instant::now();
        let entry = cache_dir.and_then(|dir| match cache::CacheEntry::new(dir, engine, wasm) {
            Ok(entry) => Some(entry),
            Err(why) => {
                tracing::warn!(module = %name, "not using the component cache: {why}");
                None
            }
        });
        let cached = entry.as_ref().and_then(|entry| {
            let bytes = entry.read()?;
            // SAFETY: the bytes are a file sluice wrote itself (checked: owned by our uid,
            // writable by nobody else, in a directory with the same property) and their
            // SHA-256 matches the one written beside them, so they are what
            // `Component::serialize` produced for this engine's configuration.
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(component) => Some(component),
                Err(e) => {
                    tracing::warn!(module = %name, "cached component rejected, recompiling: {e}");
                    None
                }
            }
        });
        let (component, source) = match cached {
            Some(component) => (component, ModuleSource::Cache),
            None => {
                let component =
                    Component::new(engine, wasm).map_err(|e| TransformError::Compile {
                        module: name.to_string(),
                        message: render(&e),
                    })?;
                if let Some(entry) = &entry {
                    match component.serialize() {
                        Ok(bytes) => entry.write(&bytes),
                        Err(e) => tracing::warn!(module = %name, "cannot serialize component: {e}"),
                    }
                }
                (component, ModuleSource::Compiled)
            }
        };

        let mut linker: Linker<GuestState> = Linker::new(engine);
        let instantiate_err = |e: wasmtime::Error| TransformError::Instantiate {
            module: name.to_string(),
            message: render(&e),
        };
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(instantiate_err)?;
        // The packed world's imports are the plain one's plus types only, so one
        // linker serves components of either world.
        bindings::packed::PackedTransformer::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |state: &mut GuestState| state,
        )
        .map_err(instantiate_err)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(instantiate_err)?;
        // A component exporting `transform-packed` gets the packed call; any other
        // must at least fit `transformer`, and that check's message is the one shown.
        let pre = match bindings::packed::PackedTransformerPre::new(instance_pre.clone()) {
            Ok(pre) => Pre::Packed(pre),
            Err(_) => {
                Pre::Plain(bindings::TransformerPre::new(instance_pre).map_err(instantiate_err)?)
            }
        };
        Ok(Module {
            name,
            pre,
            source,
            load_time: started.elapsed(),
        })
    }
}

/// A linked component of one of the two worlds.
enum Pre {
    Plain(bindings::TransformerPre<GuestState>),
    Packed(bindings::packed::PackedTransformerPre<GuestState>),
}

/// A loaded transform: engine, compiled module, its `init` configuration, limits and the
/// pool of instances. `Send + Sync`; share it with an `Arc` between worker threads.
pub struct TransformHost {
    engine: Engine,
    module: Module,
    init: Vec<(String, String)>,
    limits: Limits,
    /// Whether a component exporting `transform-packed` gets that call (always, but for
    /// tests of the plain call on such a component).
    packed_calls: bool,
    pool: Mutex<Pool>,
    /// Signalled when an instance is returned or discarded.
    freed: Condvar,
}

struct Pool {
    idle: Vec<Instance>,
    /// Instances alive: idle plus leased plus being created.
    live: usize,
}

/// One instance in its own store; the store dies with it, freeing its memory.
struct Instance {
    store: Store<GuestState>,
    bindings: Exports,
}

/// An instance's exports, by world.
enum Exports {
    Plain(bindings::Transformer),
    Packed(bindings::packed::PackedTransformer),
}

/// The store's data: WASI's (empty) context, the memory limiter and the guest's output.
struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    /// Its `log` import, stdout and stderr.
    output: Arc<GuestOutput>,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The `types` interface has no functions; bindgen still wants its (empty) host trait.
impl wit::Host for GuestState {}

impl bindings::packed::PackedTransformerImports for GuestState {
    fn log(&mut self, level: wit::Level, message: String) {
        self.output.log(level, &message);
    }
}

/// Types only, like `types`.
impl pk::Host for GuestState {}

/// Token bucket for what the guest logs (the `log` import, stdout, stderr), one per
/// instance.
struct LogBucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl LogBucket {
    fn new() -> Self {
        LogBucket {
            tokens: LOG_BURST,
            last: Instant::now(),
            suppressed: 0,
        }
    }

    /// Whether one more message may be written; says how many were suppressed when
    /// messages flow again.
    fn admit(&mut self, module: &str) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * LOG_PER_SEC)
            .min(LOG_BURST);
        self.last = now;
        if self.tokens < 1.0 {
            self.suppressed += 1;
            return false;
        }
        self.tokens -= 1.0;
        self.report_suppressed(module);
        true
    }

    fn report_suppressed(&mut self, module: &str) {
        if self.suppressed > 0 {
            tracing::warn!(
                module,
                suppressed = self.suppressed,
                "guest log lines suppressed by the rate limit"
            );
            self.suppressed = 0;
        }
    }
}

/// `StoreLimits` plus a note of whether it refused a memory growth, so a trap caused by
/// the cap is reported as [`TransformError::OutOfMemory`] and not as a generic trap.
struct Limiter {
    inner: StoreLimits,
    memory_refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let answer = self.inner.memory_growing(current, desired, maximum);
        if !matches!(answer, Ok(true)) {
            self.memory_refused = true;
        }
        answer
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// What the guest writes to stdout and stderr, shared by the instance's two WASI streams
/// and its `log` import. Output goes to sluice's log line by line, tagged with the module
/// name and the stream (stdout at info, stderr at warn), through the instance's one rate
/// limit, so `print` in a Python or JavaScript guest is useful and a chatty guest costs
/// no more than its bucket allows. The tail of stderr is also kept for one call: a Rust
/// guest's panic message goes there, and it is the most useful part of a trap's message.
struct GuestOutput {
    module: Arc<str>,
    state: Mutex<OutputState>,
}

struct OutputState {
    bucket: LogBucket,
    /// A line each stream has begun but not ended (index 0 stdout, 1 stderr).
    partial: [Vec<u8>; 2],
    stderr_tail: Vec<u8>,
}

/// Bytes of stderr kept for a trap's message.
const STDERR_TAIL_BYTES: usize = 1024;

impl GuestOutput {
    fn new(module: Arc<str>) -> Self {
        GuestOutput {
            module,
            state: Mutex::new(OutputState {
                bucket: LogBucket::new(),
                partial: [Vec::new(), Vec::new()],
                stderr_tail: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, OutputState> {
        // Every change under this lock is a push or a drain; a poisoned one is usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message from the `log` import, if the rate limit admits it.
    fn log(&self, level: wit::Level, message: &str) {
        if !self.lock().bucket.admit(&self.module) {
            return;
        }
        let message = cut(message);
        let module = &*self.module;
        match level {
            wit::Level::Trace => tracing::trace!(module, "{message}"),
            wit::Level::Debug => tracing::debug!(module, "{message}"),
            wit::Level::Info => tracing::info!(module, "{message}"),
            wit::Level::Warn => tracing::warn!(module, "{message}"),
            wit::Level::Error => tracing::error!(module, "{message}"),
        }
    }

    /// Bytes written to stdout (`stderr` false) or stderr: every completed line is
    /// logged; an unfinished one waits for its end or for the end of the call, and one
    /// longer than a log message is logged cut rather than held.
    fn write(&self, stderr: bool, buf: &[u8]) {
        let mut state = self.lock();
        if stderr {
            let tail = &mut state.stderr_tail;
            tail.extend_from_slice(&buf[buf.len().saturating_sub(STDERR_TAIL_BYTES)..]);
            let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
            tail.drain(..excess);
        }
        let mut rest = buf;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut state.partial[usize::from(stderr)]);
            line.extend_from_slice(&rest[..at]);
            self.emit(&mut state, stderr, &line);
            rest = &rest[at + 1..];
        }
        let partial = &mut state.partial[usize::from(stderr)];
        partial.extend_from_slice(&rest[..rest.len().min(LOG_MESSAGE_BYTES + 1)]);
        if partial.len() > LOG_MESSAGE_BYTES {
            let line = std::mem::take(partial);
            self.emit(&mut state, stderr, &line);
        }
    }

    fn emit(&self, state: &mut OutputState, stderr: bool, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        if text.is_empty() || !state.bucket.admit(&self.module) {
            return;
        }
        let module = &*self.module;
        let text = cut(text);
        if stderr {
            tracing::warn!(module, stream = "stderr", "{text}");
        } else {
            tracing::info!(module, stream = "stdout", "{text}");
        }
    }

    /// At the end of a call: logs the lines the guest left unfinished and returns (and
    /// resets) the stderr tail.
    fn end_call(&self) -> String {
        let mut state = self.lock();
        for stderr in [false, true] {
            let line = std::mem::take(&mut state.partial[usize::from(stderr)]);
            if !line.is_empty() {
                self.emit(&mut state, stderr, &line);
            }
        }
        // Said once per call, so what was held back is known without waiting for the
        // guest's next admitted line.
        state.bucket.report_suppressed(&self.module);
        let text = String::from_utf8_lossy(&state.stderr_tail)
            .trim()
            .to_string();
        state.stderr_tail.clear();
        text
    }
}

/// A log message cut to [`LOG_MESSAGE_BYTES`] on a character boundary.
fn cut(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= LOG_MESSAGE_BYTES {
        return message.into();
    }
    let mut end = LOG_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [cut]", &message[..end]).into()
}

/// One of the guest's output streams, writing into [`GuestOutput`].
#[derive(Clone)]
struct GuestStream {
    sink: Arc<GuestOutput>,
    stderr: bool,
}

impl wasmtime_wasi::cli::IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestStream {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::OutputStream for GuestStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), wasmtime_wasi::p2::StreamError> {
        self.sink.write(self.stderr, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), wasmtime_wasi::p2::StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, wasmtime_wasi::p2::StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for GuestStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.sink.write(self.stderr, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Renders a wasmtime error and its causes (with a trap's wasm backtrace, when the
/// guest kept symbols) on one line, for logs and error documents.
fn render(err: &wasmtime::Error) -> String {
    let text = err
        .chain()
        .map(|cause| cause.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl TransformHost {
    /// Loads the component in `wasm`, named `name` in logs and errors, compiled or from
    /// `cache_dir`. `init` is passed to each instance's `init` export. No instance is
    /// created yet; [`TransformHost::check_init`] does that eagerly.
    ///
    /// # Errors
    /// [`TransformError::Compile`] or [`TransformError::Instantiate`] when the bytes are
    /// not a component of the `transformer` world; [`TransformError::Engine`] when
    /// wasmtime cannot start.
    pub fn load(
        name: &str,
        wasm: &[u8],
        cache_dir: Option<&std::path::Path>,
        init: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<TransformHost, TransformError> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(WASM_STACK_BYTES);
        // For plugin authors profiling with perf (transforms/README.md): the guest's
        // functions get names in /tmp/perf-<pid>.map.
        if std::env::var_os("SLUICE_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| TransformError::Engine(render(&e)))?;
        spawn_ticker(&engine, name)?;
        let module = Module::load(&engine, Arc::from(name), wasm, cache_dir)?;
        tracing::info!(
            module = name,
            source = ?module.source,
            call = if matches!(module.pre, Pre::Packed(_)) { "transform-packed" } else { "transform" },
            load_ms = module.load_time.as_millis(),
            "WASM transform loaded"
        );
        Ok(TransformHost {
            engine,
            module,
            init,
            limits,
            packed_calls: true,
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                live: 0,
            }),
            freed: Condvar::new(),
        })
    }

    /// [`TransformHost::load`] from a file.
    ///
    /// # Errors
    /// [`TransformError::Read`] when the file cannot be read, else as `load`.
    pub fn load_file(
        path: &std::path::Path,
        cache_dir: Option<&std::path::Path>,
        init: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<TransformHost, TransformError> {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let wasm = std::fs::read(path).map_err(|e| TransformError::Read {
            module: name.clone(),
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::load(&name, &wasm, cache_dir, init, limits)
    }

    /// The module's name, as in logs.
    pub fn name(&self) -> &str {
        &self.module.name
    }

    /// Whether batches go through `transform-packed` (the component exports it) rather
    /// than `transform`.
    pub fn packed(&self) -> bool {
        self.packed_calls && matches!(self.module.pre, Pre::Packed(_))
    }

    /// Makes this host call `transform` even on a component exporting
    /// `transform-packed`, so tests cover both calls with one fixture.
    #[cfg(test)]
    pub(crate) fn plain_calls(mut self) -> Self {
        self.packed_calls = false;
        self
    }

    /// Most instances alive at once ([`Limits::instances`]).
    pub fn instances(&self) -> usize {
        self.limits.instances.max(1)
    }

    /// Whether the module came from the disk cache, and how long loading took.
    pub fn load_info(&self) -> (ModuleSource, Duration) {
        (self.module.source, self.module.load_time)
    }

    /// Creates one instance and runs `init` now, so `sluice validate` or a start can
    /// report a refused configuration before the first batch. The instance is pooled.
    ///
    /// # Errors
    /// As the `init` step of [`TransformHost::call`].
    pub fn check_init(&self) -> Result<(), TransformError> {
        let lease = self.lease()?;
        lease.release();
        Ok(())
    }

    /// Runs one batch through the transform. The answer has one outcome per record, in
    /// input order. Blocking CPU work: call from `spawn_blocking` or a worker thread.
    ///
    /// # Errors
    /// A [`TransformError`] when the call failed as a whole (the batch's records were not
    /// transformed); [`Classify::is_retriable`] says whether another attempt may help.
    pub fn call(
        &self,
        ctx: &BatchContext,
        records: &[Record],
    ) -> Result<Vec<Outcome>, TransformError> {
        let mut lease = self.lease()?;
        let wit_ctx = wit::BatchContext {
            invocation_id: &ctx.invocation_id,
            delivery_stream_arn: &ctx.delivery_stream_arn,
            region: &ctx.region,
            source_kinesis_stream_arn: ctx.source_kinesis_stream_arn.as_deref(),
        };
        let Some(instance) = lease.instance.as_mut() else {
            return Err(TransformError::Engine("leased an empty pool slot".into()));
        };
        self.arm(&mut instance.store, records.len());
        let packed = match &instance.bindings {
            Exports::Packed(_) if self.packed_calls => PackedInput::new(records),
            _ => None,
        };
        let result = match (&instance.bindings, &packed) {
            (Exports::Packed(b), Some(input)) => b
                .call_transform_packed(&mut instance.store, wit_ctx, input.wit())
                .map(Answer::Packed),
            (exports, _) => {
                let ids = ids(records.len());
                let input = plain_input(records, &ids);
                let store = &mut instance.store;
                match exports {
                    Exports::Plain(b) => b.call_transform(store, wit_ctx, &input),
                    Exports::Packed(b) => b.call_transform(store, wit_ctx, &input),
                }
                .map(Answer::Plain)
            }
        };
        let stderr = self.take_output(&instance.store);
        let output = match result {
            Ok(output) => output,
            Err(e) => {
                // Whatever state the guest was in is suspect: the lease drops it.
                let memory_refused = instance.store.data().limiter.memory_refused;
                return Err(self.classify(&e, memory_refused, &stderr));
            }
        };
        // The guest answered; its instance stays usable even if the answer is wrong.
        lease.release();
        match output {
            Answer::Plain(output) => self.match_answer(records, output),
            Answer::Packed(answer) => self.unpack_answer(records, answer),
        }
    }

    /// [`TransformHost::call`] with Firehose's retry rule: a retriable failure is tried
    /// again up to `retries` more times (`NumberOfRetries`, default 3), each on a fresh
    /// instance. Never fails: when the last attempt fails, every record becomes
    /// `Failed` with the error's code and message, for `processing-failed`.
    pub fn call_with_retries(
        &self,
        ctx: &BatchContext,
        records: &[Record],
        retries: u32,
    ) -> Vec<Outcome> {
        let mut attempt = 0;
        loop {
            match self.call(ctx, records) {
                Ok(mut outcomes) => {
                    for outcome in &mut outcomes {
                        if let Outcome::Failed(failure) = outcome {
                            failure.attempts = attempt + 1;
                        }
                    }
                    return outcomes;
                }
                Err(e) if e.is_retriable() && attempt < retries => {
                    attempt += 1;
                    tracing::warn!(
                        module = self.name(),
                        attempt,
                        retries,
                        fault = %e.fault(),
                        "WASM transform failed, retrying: {e}"
                    );
                }
                Err(e) => {
                    tracing::warn!(
                        module = self.name(),
                        attempts = attempt + 1,
                        fault = %e.fault(),
                        records = records.len(),
                        "WASM transform failed; the batch goes to processing-failed: {e}"
                    );
                    let failure = Failure {
                        attempts: attempt + 1,
                        ..Failure::new(e.code(), e.to_string())
                    };
                    return records
                        .iter()
                        .map(|_| Outcome::Failed(failure.clone()))
                        .collect();
                }
            }
        }
    }

    /// Arms an instance's limits for one call.
    fn arm(&self, store: &mut Store<GuestState>, records: usize) {
        // Ticks beyond the current epoch; +1 because the current tick is partly gone.
        let ticks = self
            .limits
            .deadline
            .as_nanos()
            .div_ceil(EPOCH_TICK.as_nanos())
            + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        // Hostcall fuel counts the bytes the host lifts out of the guest, including the
        // fixed-size part of each output record (a few dozen bytes): the exact limit is
        // checked on the answer, this only stops the host allocating far past it.
        store.set_hostcall_fuel(
            self.limits
                .max_output_bytes
                .saturating_add(records.saturating_mul(256))
                .saturating_add(64 * 1024),
        );
    }

    /// Turns a failed call into the error the caller sees.
    /// `stderr` is what the guest wrote there during the call (a panic message).
    fn classify(
        &self,
        err: &wasmtime::Error,
        memory_refused: bool,
        stderr: &str,
    ) -> TransformError {
        let module = self.module.name.to_string();
        if memory_refused {
            return TransformError::OutOfMemory {
                module,
                limit: self.limits.memory_bytes,
            };
        }
        if err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            return TransformError::Timeout {
                module,
                deadline_ms: self.limits.deadline.as_millis(),
            };
        }
        let message = render(err);
        // wasmtime's hostcall-fuel error has no public type; its message is stable.
        if message.contains("fuel allocated for hostcalls has been exhausted") {
            return TransformError::OutputTooLarge {
                module,
                limit: self.limits.max_output_bytes,
                detail: "stopped while copying the answer out of the guest".into(),
            };
        }
        // The wasm backtrace is long and, for stripped guests, only addresses: it goes to
        // the debug log; the error (and so each record's errorMessage) keeps the trap
        // itself and what the guest wrote to stderr (a Rust panic message).
        tracing::debug!(module = %module, "WASM trap: {message}");
        let mut message = match err.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => trap.to_string(),
            None => message,
        };
        if !stderr.is_empty() {
            let stderr = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
            message = format!("{message} (guest stderr: {stderr})");
        }
        TransformError::Trap { module, message }
    }

    /// Applies Firehose's record-id rules and puts the answers in input order.
    fn match_answer(
        &self,
        records: &[Record],
        output: Vec<wit::OutputRecord>,
    ) -> Result<Vec<Outcome>, TransformError> {
        let module = || self.module.name.to_string();
        let size: usize = output
            .iter()
            .map(|o| {
                o.record_id.len()
                    + o.data.len()
                    + o.partition_keys
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>()
            })
            .sum();
        if size > self.limits.max_output_bytes {
            return Err(TransformError::OutputTooLarge {
                module: module(),
                limit: self.limits.max_output_bytes,
                detail: format!("{size} bytes"),
            });
        }
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        for o in output {
            let Some(i) = index_of(&o.record_id, records.len()) else {
                return Err(TransformError::UnknownRecordId {
                    module: module(),
                    id: o.record_id,
                });
            };
            if outcomes[i].is_some() {
                return Err(TransformError::DuplicatedRecordId {
                    module: module(),
                    id: o.record_id,
                });
            }
            outcomes[i] = Some(match o.outcome {
                wit::Outcome::Ok => Outcome::Ok {
                    data: Bytes::from(o.data),
                    partition_keys: o.partition_keys,
                },
                wit::Outcome::Dropped => Outcome::Dropped,
                wit::Outcome::ProcessingFailed(message) => {
                    Outcome::Failed(Failure::new(PROCESSING_FAILED, message))
                }
            });
        }
        let missing = outcomes.iter().filter(|o| o.is_none()).count();
        if let Some(first) = outcomes.iter().position(Option::is_none) {
            return Err(TransformError::MissingRecordId {
                module: module(),
                id: first.to_string(),
                missing,
                total: records.len(),
            });
        }
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// Turns a `transform-packed` answer into outcomes in input order, checking that its
    /// lists fit together: one disposition per record, one end offset per `replaced`
    /// record (increasing, within `data`, all of it used), one message per `failed` one,
    /// partition keys of records in the batch.
    fn unpack_answer(
        &self,
        records: &[Record],
        answer: Result<pk::PackedAnswer, pk::AnswerError>,
    ) -> Result<Vec<Outcome>, TransformError> {
        let module = || self.module.name.to_string();
        let malformed = |detail: String| TransformError::MalformedAnswer {
            module: module(),
            detail,
        };
        let n = records.len();
        let answer = match answer {
            Ok(answer) => answer,
            Err(pk::AnswerError::DuplicatedRecordId(id)) => {
                return Err(TransformError::DuplicatedRecordId {
                    module: module(),
                    id,
                });
            }
            Err(pk::AnswerError::UnknownRecordId(id)) => {
                return Err(TransformError::UnknownRecordId {
                    module: module(),
                    id,
                });
            }
            Err(pk::AnswerError::MissingRecordIds(missing)) => {
                let Some(&first) = missing.first() else {
                    return Err(malformed("missing-record-ids names no record".into()));
                };
                return Err(TransformError::MissingRecordId {
                    module: module(),
                    id: first.to_string(),
                    missing: missing.len(),
                    total: n,
                });
            }
        };
        let size = answer.data.len()
            + answer.messages.iter().map(String::len).sum::<usize>()
            + answer
                .partition_keys
                .iter()
                .map(|k| k.key.len() + k.value.len())
                .sum::<usize>();
        if size > self.limits.max_output_bytes {
            return Err(TransformError::OutputTooLarge {
                module: module(),
                limit: self.limits.max_output_bytes,
                detail: format!("{size} bytes"),
            });
        }
        let answered = answer.dispositions.len();
        if answered < n {
            return Err(TransformError::MissingRecordId {
                module: module(),
                id: answered.to_string(),
                missing: n - answered,
                total: n,
            });
        }
        if answered > n {
            return Err(malformed(format!(
                "{answered} dispositions for a batch of {n} records"
            )));
        }
        // One buffer for every replaced record: each outcome is a slice of it, so
        // no record's bytes are copied again here.
        let data_len = answer.data.len();
        let data = Bytes::from(answer.data);
        let mut ends = answer.ends.iter().map(|&e| e as usize);
        let mut messages = answer.messages.into_iter();
        let mut start = 0;
        let mut outcomes = Vec::with_capacity(n);
        for (i, disposition) in answer.dispositions.iter().enumerate() {
            outcomes.push(match disposition {
                pk::Disposition::Unchanged => Outcome::Ok {
                    data: records[i].data.clone(),
                    partition_keys: Vec::new(),
                },
                pk::Disposition::Replaced => {
                    let Some(end) = ends.next() else {
                        return Err(malformed(format!(
                            "record {i} is replaced but `ends` has no more entries"
                        )));
                    };
                    if end < start || end > data_len {
                        return Err(malformed(format!(
                            "record {i} ends at {end}, outside {start}..={data_len} of `data`"
                        )));
                    }
                    let slice = data.slice(start..end);
                    start = end;
                    Outcome::Ok {
                        data: slice,
                        partition_keys: Vec::new(),
                    }
                }
                pk::Disposition::Dropped => Outcome::Dropped,
                pk::Disposition::Failed => {
                    let Some(message) = messages.next() else {
                        return Err(malformed(format!(
                            "record {i} failed but `messages` has no more entries"
                        )));
                    };
                    Outcome::Failed(Failure::new(PROCESSING_FAILED, message))
                }
            });
        }
        if ends.next().is_some() {
            return Err(malformed(
                "`ends` has more entries than replaced records".into(),
            ));
        }
        if start != data_len {
            return Err(malformed(format!(
                "`data` has {} bytes after the last replaced record",
                data_len - start
            )));
        }
        if messages.next().is_some() {
            return Err(malformed(
                "`messages` has more entries than failed records".into(),
            ));
        }
        for key in answer.partition_keys {
            match outcomes.get_mut(key.index as usize) {
                Some(Outcome::Ok { partition_keys, .. }) => {
                    partition_keys.push((key.key, key.value));
                }
                // Keys of a dropped or failed record mean nothing, as with `transform`.
                Some(_) => {}
                None => {
                    return Err(malformed(format!(
                        "a partition key names record {}, in a batch of {n}",
                        key.index
                    )));
                }
            }
        }
        Ok(outcomes)
    }

    /// Ends a call's output (its unfinished lines are logged) and returns the tail of
    /// its stderr.
    fn take_output(&self, store: &Store<GuestState>) -> String {
        store.data().output.end_call()
    }

    fn lock_pool(&self) -> MutexGuard<'_, Pool> {
        // A panic while holding this lock cannot leave the pool inconsistent (every
        // change is one push, pop or counter step), so a poisoned lock is still usable.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle instance, a new one if fewer than the limit are alive, or the next one
    /// freed by another caller.
    fn lease(&self) -> Result<Lease<'_>, TransformError> {
        let mut pool = self.lock_pool();
        loop {
            if let Some(instance) = pool.idle.pop() {
                return Ok(Lease {
                    host: self,
                    instance: Some(instance),
                });
            }
            if pool.live < self.limits.instances.max(1) {
                pool.live += 1;
                drop(pool);
                return match self.instantiate() {
                    Ok(instance) => Ok(Lease {
                        host: self,
                        instance: Some(instance),
                    }),
                    Err(e) => {
                        self.forget_one();
                        Err(e)
                    }
                };
            }
            pool = self.freed.wait(pool).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn forget_one(&self) {
        let mut pool = self.lock_pool();
        pool.live = pool.live.saturating_sub(1);
        drop(pool);
        self.freed.notify_one();
    }

    /// A fresh instance in its own store, `init` already called.
    fn instantiate(&self) -> Result<Instance, TransformError> {
        let output = Arc::new(GuestOutput::new(self.module.name.clone()));
        // Empty context: no preopens, env, args or network; stdin closed (the default);
        // stdout/stderr go to the log.
        let wasi = WasiCtx::builder()
            .stdout(GuestStream {
                sink: output.clone(),
                stderr: false,
            })
            .stderr(GuestStream {
                sink: output.clone(),
                stderr: true,
            })
            .build();
        let state = GuestState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(self.limits.memory_bytes)
                    .trap_on_grow_failure(true)
                    .build(),
                memory_refused: false,
            },
            output,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        self.arm(&mut store, 0);
        let bindings = match &self.module.pre {
            Pre::Plain(pre) => pre.instantiate(&mut store).map(Exports::Plain),
            Pre::Packed(pre) => pre.instantiate(&mut store).map(Exports::Packed),
        };
        let bindings = bindings.map_err(|e| {
            if store.data().limiter.memory_refused {
                self.classify(&e, true, "")
            } else {
                TransformError::Instantiate {
                    module: self.module.name.to_string(),
                    message: render(&e),
                }
            }
        })?;
        let config: Vec<(&str, &str)> = self
            .init
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let init = match &bindings {
            Exports::Plain(b) => b.call_init(&mut store, &config),
            Exports::Packed(b) => b.call_init(&mut store, &config),
        };
        let stderr = self.take_output(&store);
        match init {
            Ok(Ok(())) => Ok(Instance { store, bindings }),
            Ok(Err(message)) => Err(TransformError::Init {
                module: self.module.name.to_string(),
                message,
            }),
            Err(e) => Err(
                match self.classify(&e, store.data().limiter.memory_refused, &stderr) {
                    TransformError::Trap { module, message } => TransformError::Init {
                        module,
                        message: format!("init trapped: {message}"),
                    },
                    other => other,
                },
            ),
        }
    }
}

/// An instance taken from the pool. Dropped without [`Lease::release`] (after a failed
/// call, or a panic in between), the instance is discarded and its slot freed.
struct Lease<'h> {
    host: &'h TransformHost,
    instance: Option<Instance>,
}

impl Lease<'_> {
    /// Returns a healthy instance to the pool.
    fn release(mut self) {
        if let Some(instance) = self.instance.take() {
            self.host.lock_pool().idle.push(instance);
            self.host.freed.notify_one();
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.instance.take().is_some() {
            self.host.forget_one();
        }
    }
}

/// The records' ids for the plain call: their indices.
fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

fn plain_input<'r>(records: &'r [Record], ids: &'r [String]) -> Vec<wit::InputRecord<'r>> {
    records
        .iter()
        .zip(ids)
        .map(|(r, id)| wit::InputRecord {
            record_id: id,
            approximate_arrival_timestamp: r.arrival_ms,
            data: &r.data,
            kinesis: r.kinesis.as_ref().map(to_wit_kinesis),
        })
        .collect()
}

/// The index an answer's record id names: the canonical decimal of an index below
/// `n` (so `"01"` or `"+1"` is unknown, not a second answer for record 1).
fn index_of(id: &str, n: usize) -> Option<usize> {
    let canonical = !id.is_empty()
        && id.bytes().all(|c| c.is_ascii_digit())
        && (id == "0" || !id.starts_with('0'));
    id.parse().ok().filter(|&i| canonical && i < n)
}

fn to_wit_kinesis(k: &KinesisMetadata) -> wit::KinesisMetadata<'_> {
    wit::KinesisMetadata {
        shard_id: &k.shard_id,
        partition_key: &k.partition_key,
        sequence_number: &k.sequence_number,
        subsequence_number: k.subsequence_number,
        approximate_arrival_timestamp: k.arrival_ms,
    }
}

/// What a call returned, by world.
enum Answer {
    Plain(Vec<wit::OutputRecord>),
    Packed(Result<pk::PackedAnswer, pk::AnswerError>),
}

/// A batch packed for `transform-packed`: every record's bytes in one buffer, so the
/// guest receives a few lists however many records there are.
struct PackedInput<'r> {
    data: Vec<u8>,
    ends: Vec<u32>,
    arrivals: Vec<i64>,
    kinesis: Vec<wit::KinesisMetadata<'r>>,
}

impl<'r> PackedInput<'r> {
    /// `None` when the batch does not fit the packed shape: Kinesis metadata on some
    /// records but not all (no stream mixes sources; the plain call takes any batch),
    /// or more than 4 GiB of data (batches are capped far below).
    fn new(records: &'r [Record]) -> Option<PackedInput<'r>> {
        let kinesis: Vec<wit::KinesisMetadata<'r>> = records
            .iter()
            .filter_map(|r| r.kinesis.as_ref().map(to_wit_kinesis))
            .collect();
        if !kinesis.is_empty() && kinesis.len() != records.len() {
            return None;
        }
        let total: usize = records.iter().map(|r| r.data.len()).sum();
        u32::try_from(total).ok()?;
        let mut data = Vec::with_capacity(total);
        let mut ends = Vec::with_capacity(records.len());
        for r in records {
            data.extend_from_slice(&r.data);
            // Cannot truncate: the total fits in a u32.
            ends.push(data.len() as u32);
        }
        Some(PackedInput {
            data,
            ends,
            arrivals: records.iter().map(|r| r.arrival_ms).collect(),
            kinesis,
        })
    }

    fn wit(&self) -> pk::PackedRecords<'_> {
        pk::PackedRecords {
            data: &self.data,
            ends: &self.ends,
            approximate_arrival_timestamps: &self.arrivals,
            kinesis: &self.kinesis,
        }
    }
}

/// Starts the thread that advances `engine`'s epoch every [`EPOCH_TICK`]. It holds only
/// a weak reference and ends when the engine (the host) is dropped.
fn spawn_ticker(engine: &Engine, name: &str) -> Result<(), TransformError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name(format!("wasm-epoch-{name}"))
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .map_err(|e| TransformError::Engine(format!("cannot start the epoch ticker: {e}")))
}
