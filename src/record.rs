//! The unit of data that flows through every stage.
//!
//! A [`Record`] is produced by a source (Direct PUT write-ahead log or, later,
//! Kinesis shards), may be rewritten by processors, is placed in a buffer by the
//! partitioner and is finally encoded into an output object. It carries its
//! source [`Position`] so that delivery can commit exactly the range an object
//! covers.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Where a record sits in its source; committing a position means every record
/// before it has been delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WalPosition {
    /// Segment number (segment files are numbered from 1 upwards).
    pub segment: u64,
    /// Byte offset inside the segment.
    pub offset: u64,
}

impl WalPosition {
    /// The position of the first record ever written.
    pub const START: WalPosition = WalPosition { segment: 1, offset: 0 };
}

impl std::fmt::Display for WalPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}

/// One record on its way through the pipeline.
#[derive(Debug, Clone)]
pub struct Record {
    /// The payload; `Bytes` so stages pass it on without copying.
    pub data: Bytes,
    /// When sluice (or Kinesis) received the record, in Unix milliseconds.
    /// Object keys use the arrival time of the oldest record in the object.
    pub arrival_ms: i64,
    /// The source position just *after* this record: committing it means this
    /// record and everything before it in its source are delivered.
    pub next: WalPosition,
}
