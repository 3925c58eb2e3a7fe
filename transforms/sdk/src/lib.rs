//! Guest SDK for sluice transform plugins: the Rust side of the
//! `sluice:transform` world (`transforms/wit/transform.wit`), sluice's
//! replacement for Firehose's Lambda data transformation.
//!
//! A plugin implements [`Transform`] over plain Rust types defined here
//! ([`InputRecord`], [`OutputRecord`], ...) and names its type in [`export!`].
//! Those types are the SDK's own, not wit-bindgen's: on the host (`cargo test`)
//! the SDK has no dependencies and the plugin's logic is ordinary Rust, so it
//! is unit-tested without any wasm toolchain. Only when compiling for
//! `wasm32` (`cargo build --target wasm32-wasip2`) does [`export!`] generate
//! the component's exports and convert between these types and the bindings.
//!
//! ```
//! use sluice_transform::{map_records, BatchContext, InputRecord, Mapped, OutputRecord, Transform};
//!
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn init(_config: &[(String, String)]) -> Result<Self, String> {
//!         Ok(Upper)
//!     }
//!     fn transform(&mut self, _ctx: &BatchContext, records: Vec<InputRecord>) -> Vec<OutputRecord> {
//!         map_records(records, |r| {
//!             let text = std::str::from_utf8(&r.data).map_err(|e| format!("not UTF-8: {e}"))?;
//!             Ok(Mapped::ok(text.to_uppercase()))
//!         })
//!     }
//! }
//!
//! sluice_transform::export!(Upper);
//! # fn main() {}
//! ```
//!
//! # Modules
//! - this file: the record types, [`Transform`], [`map_records`] and [`config`] helpers;
//! - [`log`]: [`log()`](log::log) to sluice's log (stderr and a test capture natively);
//! - [`testing`]: building batches in tests and checking an answer obeys the contract;
//! - `wasm` (only on `wasm32`): the wit-bindgen bindings and the conversions;
//! - `packing`: the id and byte helpers of the packed call, tested natively.

pub mod log;
mod packing;
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm;

pub use log::{Level, log};

/// Where a record came from when the delivery stream reads a Kinesis Data Stream
/// (Firehose's `kinesisRecordMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisMetadata {
    pub shard_id: String,
    pub partition_key: String,
    pub sequence_number: String,
    /// Set for records that came out of a KPL aggregate.
    pub subsequence_number: Option<u64>,
    /// Milliseconds since the Unix epoch.
    pub approximate_arrival_timestamp: i64,
}

/// One record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// Opaque; the answer for this record must carry the same id.
    pub record_id: String,
    /// Milliseconds since the Unix epoch.
    pub approximate_arrival_timestamp: i64,
    pub data: Vec<u8>,
    pub kinesis: Option<KinesisMetadata>,
}

/// What sluice passes beside the records (Firehose's Lambda event fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchContext {
    pub invocation_id: String,
    pub delivery_stream_arn: String,
    pub region: String,
    /// Set when the stream's source is a Kinesis Data Stream.
    pub source_kinesis_stream_arn: Option<String>,
}

/// What happens to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered with the answer's `data` (Firehose's `Ok`).
    Ok,
    /// Left out on purpose; counts as success (Firehose's `Dropped`).
    Dropped,
    /// Sent to the `processing-failed` error output with this message, with the
    /// record's original data (Firehose's `ProcessingFailed`).
    ProcessingFailed(String),
}

/// The answer for one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub record_id: String,
    pub outcome: Outcome,
    /// The new data when the outcome is [`Outcome::Ok`]; ignored otherwise.
    pub data: Vec<u8>,
    /// Keys for `!{partitionKeyFromLambda:KEY}` in the stream's prefix.
    pub partition_keys: Vec<(String, String)>,
}

impl OutputRecord {
    /// Keep the record with `data` as its new content.
    pub fn ok(record_id: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        OutputRecord {
            record_id: record_id.into(),
            outcome: Outcome::Ok,
            data: data.into(),
            partition_keys: Vec::new(),
        }
    }

    /// Drop the record on purpose.
    pub fn dropped(record_id: impl Into<String>) -> Self {
        OutputRecord {
            record_id: record_id.into(),
            outcome: Outcome::Dropped,
            data: Vec::new(),
            partition_keys: Vec::new(),
        }
    }

    /// Fail the record (only this one) to the `processing-failed` output.
    pub fn failed(record_id: impl Into<String>, message: impl Into<String>) -> Self {
        OutputRecord {
            record_id: record_id.into(),
            outcome: Outcome::ProcessingFailed(message.into()),
            data: Vec::new(),
            partition_keys: Vec::new(),
        }
    }

    /// Add a partition key (builder style).
    pub fn with_partition_key(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.partition_keys.push((key.into(), value.into()));
        self
    }
}

/// A transform plugin. sluice makes one instance per worker, calls [`init`]
/// once, then [`transform`] once per batch, possibly many times.
///
/// [`init`]: Transform::init
/// [`transform`]: Transform::transform
pub trait Transform {
    /// Builds the plugin from its configuration: the `key = value` pairs the
    /// stream's config gives this transform, in order. An `Err` is an init
    /// error: the batch is retried and then failed to `processing-failed`, so
    /// make the message say which option is wrong and why.
    fn init(config: &[(String, String)]) -> Result<Self, String>
    where
        Self: Sized;

    /// Processes one batch. Must return exactly one [`OutputRecord`] per input
    /// record, with its record id (order does not matter): a missing,
    /// duplicated or unknown id fails the whole batch. To fail one record,
    /// answer it with [`Outcome::ProcessingFailed`]; do not panic, as a panic
    /// traps and fails (after retries) every record of the batch.
    fn transform(&mut self, ctx: &BatchContext, records: Vec<InputRecord>) -> Vec<OutputRecord>;
}

/// What a per-record function passed to [`map_records`] decided for a record
/// it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// Keep the record with new data and optional partition keys.
    Ok {
        data: Vec<u8>,
        partition_keys: Vec<(String, String)>,
    },
    /// Drop the record on purpose.
    Dropped,
}

impl Mapped {
    /// Keep the record with `data` and no partition keys.
    pub fn ok(data: impl Into<Vec<u8>>) -> Self {
        Mapped::Ok {
            data: data.into(),
            partition_keys: Vec::new(),
        }
    }

    /// Add a partition key; no effect on [`Mapped::Dropped`].
    pub fn with_partition_key(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        if let Mapped::Ok { partition_keys, .. } = &mut self {
            partition_keys.push((key.into(), value.into()));
        }
        self
    }
}

/// The one-in-one-out case: calls `f` on each record and builds the answer
/// list, keeping ids and order. `Err(message)` fails that record alone to
/// `processing-failed`, so `?` with a descriptive message is the natural way
/// to reject bad input.
pub fn map_records<F>(records: Vec<InputRecord>, mut f: F) -> Vec<OutputRecord>
where
    F: FnMut(InputRecord) -> Result<Mapped, String>,
{
    records
        .into_iter()
        .map(|record| {
            // The id is cloned, not moved, so `f` still sees it (for log lines).
            let id = record.record_id.clone();
            match f(record) {
                Ok(Mapped::Ok {
                    data,
                    partition_keys,
                }) => OutputRecord {
                    record_id: id,
                    outcome: Outcome::Ok,
                    data,
                    partition_keys,
                },
                Ok(Mapped::Dropped) => OutputRecord::dropped(id),
                Err(message) => OutputRecord::failed(id, message),
            }
        })
        .collect()
}

/// Helpers for reading a transform's configuration pairs.
pub mod config {
    /// The last value given for `key` (later pairs override earlier ones, as
    /// in a TOML table merged over defaults).
    pub fn get<'a>(config: &'a [(String, String)], key: &str) -> Option<&'a str> {
        config
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Splits a comma-separated list, trimming blanks and dropping empty items,
    /// so `"a, b,"` is `["a", "b"]`.
    pub fn list(value: &str) -> Vec<String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// Fails with a message naming the unknown keys, so a typo in the stream's
    /// config is an init error rather than an option silently ignored.
    pub fn reject_unknown(config: &[(String, String)], known: &[&str]) -> Result<(), String> {
        let unknown: Vec<&str> = config
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !known.contains(k))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else if known.is_empty() {
            Err(format!("takes no options, got {}", unknown.join(", ")))
        } else {
            Err(format!(
                "unknown option(s) {}; known options: {}",
                unknown.join(", "),
                known.join(", ")
            ))
        }
    }
}

/// Wires a [`Transform`] type to the component's exports.
///
/// Use once, at the top level of the plugin's `lib.rs`:
/// `sluice_transform::export!(MyTransform);`. On the host it expands to
/// nothing, so the crate builds and tests as plain Rust; on `wasm32` it keeps
/// one instance of the type (made by `init`) for the component's lifetime.
#[macro_export]
macro_rules! export {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // A component instance is single-threaded; thread_local gives the
            // instance's one plugin value without `unsafe` or a lock.
            ::std::thread_local! {
                static INSTANCE: ::std::cell::RefCell<::std::option::Option<$ty>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            struct Guest;

            impl $crate::wasm::bindings::Guest for Guest {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::wasm::init::<$ty>(&INSTANCE, config)
                }

                fn transform(
                    ctx: $crate::wasm::bindings::BatchContext,
                    records: ::std::vec::Vec<$crate::wasm::bindings::InputRecord>,
                ) -> ::std::vec::Vec<$crate::wasm::bindings::OutputRecord> {
                    $crate::wasm::transform::<$ty>(&INSTANCE, ctx, records)
                }

                fn transform_packed(
                    ctx: $crate::wasm::bindings::BatchContext,
                    records: $crate::wasm::bindings::PackedRecords,
                ) -> ::std::result::Result<
                    $crate::wasm::bindings::PackedAnswer,
                    $crate::wasm::bindings::AnswerError,
                > {
                    $crate::wasm::transform_packed::<$ty>(&INSTANCE, ctx, records)
                }
            }

            $crate::wasm::bindings::__export_transformer!(Guest with_types_in $crate::wasm::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{batch, check_answer, context};

    #[test]
    fn map_records_keeps_ids_and_order_and_maps_errors_to_failed() {
        let records = batch(&[b"a", b"drop", b"bad", b"b"]);
        let out = map_records(records.clone(), |r| match r.data.as_slice() {
            b"drop" => Ok(Mapped::Dropped),
            b"bad" => Err("bad record".into()),
            d => Ok(Mapped::ok(d.to_ascii_uppercase()).with_partition_key("k", "v")),
        });
        check_answer(&records, &out).unwrap();
        let ids: Vec<&str> = out.iter().map(|o| o.record_id.as_str()).collect();
        assert_eq!(ids, ["0", "1", "2", "3"]);
        assert_eq!(
            out[0],
            OutputRecord::ok("0", "A").with_partition_key("k", "v")
        );
        assert_eq!(out[1], OutputRecord::dropped("1"));
        assert_eq!(out[2], OutputRecord::failed("2", "bad record"));
        assert_eq!(out[3].data, b"B");
    }

    #[test]
    fn dropped_ignores_partition_keys() {
        assert_eq!(
            Mapped::Dropped.with_partition_key("k", "v"),
            Mapped::Dropped
        );
    }

    #[test]
    fn config_helpers() {
        let cfg = vec![
            ("keys".to_string(), "a".to_string()),
            ("keys".to_string(), " b, c ,".to_string()),
            ("typo".to_string(), "x".to_string()),
        ];
        assert_eq!(config::get(&cfg, "keys"), Some(" b, c ,"));
        assert_eq!(config::get(&cfg, "missing"), None);
        assert_eq!(config::list(" b, c ,"), ["b", "c"]);
        let err = config::reject_unknown(&cfg, &["keys"]).unwrap_err();
        assert!(err.contains("typo"), "{err}");
        assert!(config::reject_unknown(&cfg[..2], &["keys"]).is_ok());
        assert_eq!(
            config::reject_unknown(&cfg[2..], &[]).unwrap_err(),
            "takes no options, got typo"
        );
    }

    #[test]
    fn transform_trait_is_usable_natively() {
        struct Count(usize);
        impl Transform for Count {
            fn init(_: &[(String, String)]) -> Result<Self, String> {
                Ok(Count(0))
            }
            fn transform(
                &mut self,
                _: &BatchContext,
                records: Vec<InputRecord>,
            ) -> Vec<OutputRecord> {
                self.0 += records.len();
                let n = self.0;
                map_records(records, |_| Ok(Mapped::ok(n.to_string())))
            }
        }
        let mut t = Count::init(&[]).unwrap();
        t.transform(&context(), batch(&[b"x"]));
        let out = t.transform(&context(), batch(&[b"y", b"z"]));
        assert_eq!(out[1].data, b"3");
    }
}
