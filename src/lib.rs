//! sluice: a self-hosted, single-binary replacement for Amazon Data Firehose.
//!
//! ```text
//!  Direct PUT API ──> write-ahead log ──> processors ──> partitioner ──> buffer ──> encoder ──> sink
//!  (PutRecord[Batch])  (fsync, ack)                      (prefix)        (size/time) (raw+compr.) (staged)
//!                                                                                              │
//!                        checkpoint store <── commit (positions + staged objects) <─────────────┘
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
//! - [`config`]: native TOML and Firehose JSON into one validated [`config::StreamConfig`].
//! - [`api`]: the Firehose data-plane HTTP API (AWS JSON 1.1).
//! - [`source`]: record sources; [`source::direct_put`] with its write-ahead log.
//! - [`process`]: the processor chain (de-aggregation, transforms, delimiter).
//! - [`partition`]: prefix expressions `!{...}`, parsed and evaluated.
//! - [`buffer`]: the per-stream buffer with Firehose's size and interval triggers.
//! - [`encode`]: raw output with compression (Parquet and ORC later).
//! - [`sink`]: the object sink seam; local directory.
//! - [`checkpoint`]: the checkpoint store seam; local file.
//! - [`delivery`]: the stage -> commit -> complete protocol and recovery.
//! - [`metrics`]: counters and gauges served on `GET /metrics`.
//! - [`record`], [`error`]: the record type and error classification every stage shares.

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
pub mod fsutil;
pub mod metrics;
pub mod partition;
pub mod process;
pub mod record;
pub mod sink;
pub mod source;
