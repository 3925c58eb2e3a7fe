//! Direct PUT source: the write-ahead log behind Firehose's PutRecord and
//! PutRecordBatch.
//!
//! Neighbours: [`crate::api`] appends each request's records with
//! [`Wal::append`] and acknowledges them once the group commit that holds them
//! is fsynced; the stream pipeline ([`crate::buffer`]) reads records back with
//! a [`WalReader`] starting after the committed checkpoint position; and
//! [`crate::delivery`] calls [`Wal::release`] after each commit so delivered
//! segments are deleted.
//!
//! The log is the source's replayable position: after kill -9, the pipeline
//! re-reads everything after the last committed position, so acknowledged
//! records are never lost and (because uncommitted objects are aborted) never
//! delivered twice.

pub mod wal;

pub use wal::{Wal, WalError, WalReader};
