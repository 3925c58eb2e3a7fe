//! sluice: a self-hosted, single-binary replacement for Amazon Data Firehose.
//!
//! ```text
//!  Direct PUT API ─> write-ahead log ─┐
//!  (PutRecord[Batch])  (fsync, ack)   ├─> processors ─> partitioner ─> buffer ──> encoder ────────> sink
//!  Kinesis shards ─> KPL de-agg ──────┘   (de-agg)      (prefix)     (size/time) (raw | Parquet   (staged)
//!                                                                                 | ORC)             │
//!                        checkpoint store <── commit (positions + staged objects) <──────────────────┘
//!                                             then complete (objects become visible)
//! ```
//!
//! Delivery is exactly-once: an output object is first *staged* (invisible to
//! readers), then one atomic checkpoint commit records the source position the
//! object covers together with the staged object, and only then is the object
//! *completed*. Recovery completes committed objects and aborts the rest, then
//! resumes after the committed position (see [`delivery`]).
//!
//! # Layout
//! - [`app`]: wiring of streams, signals and shutdown; `run` is testable in-process.
//! - [`config`]: native TOML and Firehose JSON into one validated [`config::StreamConfig`];
//!   `sluice import` rewrites Firehose JSON as native TOML ([`config::import`]).
//! - [`api`]: the Firehose data-plane HTTP API (AWS JSON 1.1) and its
//!   self-protecting server ([`api::server`]).
//! - [`source`]: the source seam; [`source::direct_put`] with its write-ahead log,
//!   [`source::kinesis`] with shard lifecycle and KPL de-aggregation.
//! - [`process`]: the batch processor chain: record de-aggregation, WASM
//!   transforms run by the host in [`process::wasm`], and its
//!   `sluice transform test|new` commands ([`process::wasm::cli`]).
//! - [`partition`]: prefix expressions `!{...}`, parsed and evaluated.
//! - [`buffer`]: the per-stream buffer with Firehose's size and interval triggers,
//!   epochs of one object or (dynamic partitioning) many, and the error outputs.
//! - [`encode`]: the encoder seam; raw output with compression.
//! - [`convert`]: JSON -> Arrow (OpenX/Hive SerDe), Parquet and ORC encoders.
//! - [`sink`]: the object sink seam; local directory and S3.
//! - [`checkpoint`]: the checkpoint store seam; local file.
//! - [`delivery`]: the stage -> commit -> complete protocol and recovery.
//! - [`metrics`]: counters and gauges served on `GET /metrics`.
//! - [`record`], [`error`], [`error_doc`], [`fsutil`], [`java_pattern`]: the
//!   record and position types, error classification, Firehose's error
//!   documents, durable-file helpers, and Java date-pattern lexing, which the
//!   stages share.

#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod app;
pub mod buffer;
pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod delivery;
pub mod encode;
pub mod error;
pub mod error_doc;
pub mod fsutil;
pub mod java_pattern;
pub mod metrics;
pub mod partition;
pub mod process;
pub mod record;
pub mod service;
pub mod sink;
pub mod source;
pub mod status;
