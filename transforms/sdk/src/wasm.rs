//! The component binding layer (compiled only for `wasm32`): wit-bindgen's
//! bindings of the `packed-transformer` world, and the conversions between
//! them and the SDK's plain types, so plugin code never sees generated types.
//!
//! [`crate::export!`] expands in the plugin crate to a `Guest` impl that calls
//! [`init`], [`transform`] and [`transform_packed`] here with the plugin's one
//! instance. Both calls run the same [`Transform::transform`]: a sluice of
//! 0.1.1 or later calls `transform-packed` (the batch in a few flat lists, the
//! answer by position, unchanged data not copied back), an older one
//! `transform`.

use crate::packing::{decimal, index_of, same_bytes};
use crate::{BatchContext, InputRecord, KinesisMetadata, Level, Outcome, OutputRecord, Transform};
use std::cell::RefCell;
use std::thread::LocalKey;

/// Generated bindings. `pub_export_macro` makes wit-bindgen's export macro
/// usable from the plugin crate (as `bindings::__export_transformer!`), and
/// `default_bindings_module` points it back here, since the plugin crate has
/// no bindings of its own (nor a wit-bindgen dependency).
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "packed-transformer",
        path: "../wit",
        export_macro_name: "__export_transformer",
        pub_export_macro: true,
        default_bindings_module: "::sluice_transform::wasm::bindings",
    });

    // The world's `use types.{...}` and `use packed.{...}` already alias the
    // other types here.
    pub use self::sluice::transform::packed::{Disposition, PartitionKey};
    pub use self::sluice::transform::types::{KinesisMetadata, Outcome};
}

use bindings as b;

pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => b::Level::Trace,
        Level::Debug => b::Level::Debug,
        Level::Info => b::Level::Info,
        Level::Warn => b::Level::Warn,
        Level::Error => b::Level::Error,
    };
    b::log(level, message);
}

type Slot<T> = LocalKey<RefCell<Option<T>>>;

/// The `init` export: builds the plugin from its config. Called again (the
/// host re-initialising an instance), it replaces the previous value.
pub fn init<T: Transform>(
    slot: &'static Slot<T>,
    config: Vec<(String, String)>,
) -> Result<(), String> {
    let t = T::init(&config)?;
    slot.with(|s| *s.borrow_mut() = Some(t));
    Ok(())
}

/// The `transform` export: converts the batch in, runs the plugin, converts
/// the answer out.
pub fn transform<T: Transform>(
    slot: &'static Slot<T>,
    ctx: b::BatchContext,
    records: Vec<b::InputRecord>,
) -> Vec<b::OutputRecord> {
    // Moves, not copies: each record's data Vec goes from the bindings to the
    // plugin and back without touching the bytes.
    let records: Vec<InputRecord> = records.into_iter().map(input_from).collect();
    run(slot, context_from(ctx), records)
        .into_iter()
        .map(output_to)
        .collect()
}

/// The `transform-packed` export: unpacks the batch into the plugin's records
/// (ids are the input indices, `"0"`, `"1"`, ...), runs the plugin, and packs
/// its answer by position. A record answered `ok` with the bytes it came with
/// is answered `unchanged`, so its data is not copied back to the host.
/// Firehose's id rules are checked here, where the ids are known.
pub fn transform_packed<T: Transform>(
    slot: &'static Slot<T>,
    ctx: b::BatchContext,
    packed: b::PackedRecords,
) -> Result<b::PackedAnswer, b::AnswerError> {
    let n = packed.ends.len();
    let mut spare = SPARE.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut kinesis = packed.kinesis.into_iter();
    let mut ranges = Vec::with_capacity(n);
    let mut start = 0usize;
    let mut records = Vec::with_capacity(n);
    for (i, &end) in packed.ends.iter().enumerate() {
        // The host sends increasing ends within `data`; clamping keeps a
        // broken host from making the guest panic.
        let end = (end as usize).clamp(start, packed.data.len());
        ranges.push(start..end);
        let mut data = spare.buffer();
        data.extend_from_slice(&packed.data[start..end]);
        records.push(InputRecord {
            record_id: spare.id(i),
            approximate_arrival_timestamp: packed
                .approximate_arrival_timestamps
                .get(i)
                .copied()
                .unwrap_or_default(),
            data,
            kinesis: kinesis.next().map(kinesis_from),
        });
        start = end;
    }
    let out = run(slot, context_from(ctx), records);

    let answers = in_input_order(out, n)?;

    // Which `ok` answers kept their bytes, decided once: the data was copied into
    // the plugin's records, so only a comparison can tell.
    let unchanged: Vec<bool> = answers
        .iter()
        .zip(&ranges)
        .map(|(o, r)| o.outcome == Outcome::Ok && same_bytes(&o.data, &packed.data[r.clone()]))
        .collect();
    // Sized up front: the plugin's answers are still alive while they are packed,
    // so growing by doubling could take three times the answer's size.
    let replaced: usize = answers
        .iter()
        .zip(&unchanged)
        .filter(|(o, same)| o.outcome == Outcome::Ok && !**same)
        .map(|(o, _)| o.data.len())
        .sum();
    let mut answer = b::PackedAnswer {
        dispositions: Vec::with_capacity(n),
        data: Vec::with_capacity(replaced),
        ends: Vec::new(),
        messages: Vec::new(),
        partition_keys: Vec::new(),
    };
    for (i, (o, same)) in answers.into_iter().zip(unchanged).enumerate() {
        let disposition = match o.outcome {
            Outcome::Ok if same => b::Disposition::Unchanged,
            Outcome::Ok => {
                answer.data.extend_from_slice(&o.data);
                answer.ends.push(answer.data.len() as u32);
                b::Disposition::Replaced
            }
            Outcome::Dropped => b::Disposition::Dropped,
            Outcome::ProcessingFailed(m) => {
                answer.messages.push(m);
                b::Disposition::Failed
            }
        };
        answer.dispositions.push(disposition);
        if matches!(
            disposition,
            b::Disposition::Unchanged | b::Disposition::Replaced
        ) {
            answer
                .partition_keys
                .extend(
                    o.partition_keys
                        .into_iter()
                        .map(|(key, value)| b::PartitionKey {
                            index: i as u32,
                            key,
                            value,
                        }),
                );
        }
        spare.keep(i, o.record_id, o.data);
    }
    SPARE.with(|s| *s.borrow_mut() = spare);
    Ok(answer)
}

thread_local! {
    static SPARE: RefCell<Spare> = RefCell::default();
}

/// Allocations of the last batch, reused by the next: its record ids (the same
/// strings every batch, `"0"`, `"1"`, ...) and its data buffers. Without them a
/// batch costs two allocations and two frees per record in the guest, which is
/// most of what an identity plugin costs. What is kept is bounded: ids for as
/// many records as a batch had, buffers up to [`Spare::MAX_BYTES`] in all.
#[derive(Default)]
struct Spare {
    /// `ids[i]` is `"i"`, or empty when taken by the batch in flight.
    ids: Vec<String>,
    /// Empty buffers with their capacity.
    data: Vec<Vec<u8>>,
    data_bytes: usize,
}

impl Spare {
    /// Capacity kept across batches: a batch is at most 6 MB in (Lambda's limit).
    const MAX_BYTES: usize = 8 << 20;

    /// An empty buffer, with the capacity of one the last batch gave back.
    fn buffer(&mut self) -> Vec<u8> {
        let data = self.data.pop().unwrap_or_default();
        self.data_bytes -= data.capacity();
        data
    }

    fn id(&mut self, i: usize) -> String {
        match self.ids.get_mut(i) {
            Some(id) if !id.is_empty() => std::mem::take(id),
            _ => decimal(i),
        }
    }

    /// Takes back record `i`'s answer id (which [`in_input_order`] checked is
    /// `"i"`) and its data buffer.
    fn keep(&mut self, i: usize, id: String, mut data: Vec<u8>) {
        if self.ids.len() <= i {
            self.ids.resize(i + 1, String::new());
        }
        self.ids[i] = id;
        if self.data_bytes + data.capacity() <= Self::MAX_BYTES {
            self.data_bytes += data.capacity();
            data.clear();
            self.data.push(data);
        }
    }
}

/// The plugin's answers in input order, or Firehose's id error. Most plugins answer
/// in input order, which is checked without moving the answers; any other order is
/// sorted through slots.
fn in_input_order(out: Vec<OutputRecord>, n: usize) -> Result<Vec<OutputRecord>, b::AnswerError> {
    if out.len() == n
        && out
            .iter()
            .enumerate()
            .all(|(i, o)| index_of(&o.record_id, n) == Some(i))
    {
        return Ok(out);
    }
    let mut slots: Vec<Option<OutputRecord>> = (0..n).map(|_| None).collect();
    for o in out {
        let Some(i) = index_of(&o.record_id, n) else {
            return Err(b::AnswerError::UnknownRecordId(o.record_id));
        };
        if slots[i].is_some() {
            return Err(b::AnswerError::DuplicatedRecordId(o.record_id));
        }
        slots[i] = Some(o);
    }
    let missing: Vec<u32> = (0..n)
        .filter(|&i| slots[i].is_none())
        .map(|i| i as u32)
        .collect();
    if !missing.is_empty() {
        return Err(b::AnswerError::MissingRecordIds(missing));
    }
    Ok(slots.into_iter().flatten().collect())
}

fn context_from(ctx: b::BatchContext) -> BatchContext {
    BatchContext {
        invocation_id: ctx.invocation_id,
        delivery_stream_arn: ctx.delivery_stream_arn,
        region: ctx.region,
        source_kinesis_stream_arn: ctx.source_kinesis_stream_arn,
    }
}

/// Runs the plugin on a batch (or fails every record when `init` never
/// succeeded).
fn run<T: Transform>(
    slot: &'static Slot<T>,
    ctx: BatchContext,
    records: Vec<InputRecord>,
) -> Vec<OutputRecord> {
    slot.with(|s| match s.borrow_mut().as_mut() {
        Some(t) => t.transform(&ctx, records),
        // A host that calls transform before a successful init is a host
        // bug; fail the records (not trap) so the message reaches the error
        // output and says what happened.
        None => records
            .into_iter()
            .map(|r| OutputRecord::failed(r.record_id, "transform called before a successful init"))
            .collect(),
    })
}

fn input_from(r: b::InputRecord) -> InputRecord {
    InputRecord {
        record_id: r.record_id,
        approximate_arrival_timestamp: r.approximate_arrival_timestamp,
        data: r.data,
        kinesis: r.kinesis.map(kinesis_from),
    }
}

fn kinesis_from(k: b::KinesisMetadata) -> KinesisMetadata {
    KinesisMetadata {
        shard_id: k.shard_id,
        partition_key: k.partition_key,
        sequence_number: k.sequence_number,
        subsequence_number: k.subsequence_number,
        approximate_arrival_timestamp: k.approximate_arrival_timestamp,
    }
}

fn output_to(o: OutputRecord) -> b::OutputRecord {
    let (outcome, data) = match o.outcome {
        Outcome::Ok => (b::Outcome::Ok, o.data),
        // Data of a dropped or failed record is ignored by the host; sending
        // none saves copying it out of the guest.
        Outcome::Dropped => (b::Outcome::Dropped, Vec::new()),
        Outcome::ProcessingFailed(m) => (b::Outcome::ProcessingFailed(m), Vec::new()),
    };
    b::OutputRecord {
        record_id: o.record_id,
        outcome,
        data,
        partition_keys: o.partition_keys,
    }
}
