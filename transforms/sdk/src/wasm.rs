//! The component binding layer (compiled only for `wasm32`): wit-bindgen's
//! bindings of the `transformer` world, and the conversions between them and
//! the SDK's plain types, so plugin code never sees generated types.
//!
//! [`crate::export!`] expands in the plugin crate to a `Guest` impl that calls
//! [`init`] and [`transform`] here with the plugin's one instance.

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
        world: "transformer",
        path: "../wit",
        export_macro_name: "__export_transformer",
        pub_export_macro: true,
        default_bindings_module: "::sluice_transform::wasm::bindings",
    });

    // The world's `use types.{...}` already aliases the other types here.
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
    let ctx = BatchContext {
        invocation_id: ctx.invocation_id,
        delivery_stream_arn: ctx.delivery_stream_arn,
        region: ctx.region,
        source_kinesis_stream_arn: ctx.source_kinesis_stream_arn,
    };
    // Moves, not copies: each record's data Vec goes from the bindings to the
    // plugin and back without touching the bytes.
    let records: Vec<InputRecord> = records.into_iter().map(input_from).collect();
    let out = slot.with(|s| match s.borrow_mut().as_mut() {
        Some(t) => t.transform(&ctx, records),
        // A host that calls transform before a successful init is a host
        // bug; fail the records (not trap) so the message reaches the error
        // output and says what happened.
        None => records
            .into_iter()
            .map(|r| OutputRecord::failed(r.record_id, "transform called before a successful init"))
            .collect(),
    });
    out.into_iter().map(output_to).collect()
}

fn input_from(r: b::InputRecord) -> InputRecord {
    InputRecord {
        record_id: r.record_id,
        approximate_arrival_timestamp: r.approximate_arrival_timestamp,
        data: r.data,
        kinesis: r.kinesis.map(|k| KinesisMetadata {
            shard_id: k.shard_id,
            partition_key: k.partition_key,
            sequence_number: k.sequence_number,
            subsequence_number: k.subsequence_number,
            approximate_arrival_timestamp: k.approximate_arrival_timestamp,
        }),
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
