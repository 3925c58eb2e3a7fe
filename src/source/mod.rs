//! Record sources.
//!
//! A source yields batches of [`Record`]s, each carrying its
//! [`crate::record::Position`]; it never advances a checkpoint itself.
//! [`crate::delivery`] tells it, through [`SourceProgress`], what has been
//! committed, and only then may it forget data (delete write-ahead-log
//! segments) or move on (read a child shard after its parents ended).
//!
//! - [`direct_put`]: records put through the Firehose API, made durable in a
//!   local write-ahead log before they are acknowledged.
//! - [`kinesis`]: a polling consumer of a Kinesis Data Stream with KCL's shard
//!   lifecycle and KPL de-aggregation.

pub mod direct_put;
pub mod kinesis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{Classify, Fault};
use crate::record::{Positions, Record};

/// A boxed future, so the seam can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a source yields at a time.
#[derive(Debug, Default)]
pub struct SourceBatch {
    /// Records in source order (per shard).
    pub records: Vec<Record>,
    /// Shards read to their end after the records above (KCL's `SHARD_END`).
    pub ended_shards: Vec<Arc<str>>,
}

/// A failure of a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The write-ahead log failed.
    #[error(transparent)]
    Wal(#[from] direct_put::WalError),
    /// Kinesis failed in a way retries do not fix.
    #[error(transparent)]
    Kinesis(#[from] kinesis::KinesisError),
}

impl Classify for SourceError {
    fn is_retriable(&self) -> bool {
        match self {
            SourceError::Wal(e) => e.is_retriable(),
            SourceError::Kinesis(e) => e.is_retriable(),
        }
    }
    fn fault(&self) -> Fault {
        match self {
            SourceError::Wal(e) => e.fault(),
            SourceError::Kinesis(e) => e.fault(),
        }
    }
}

/// The source seam, as the buffer stage reads it.
pub trait Source: Send {
    /// Waits for records and returns up to about `max_bytes` of them;
    /// `Ok(None)` when the source has ended (shutdown) and everything was read.
    /// Cancel-safe: dropping the future loses nothing.
    fn next_batch(
        &mut self,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Option<SourceBatch>, SourceError>>;
}

/// Told by delivery after every commit (and after recovery) what is durably
/// delivered.
pub trait SourceProgress: Send + Sync + std::fmt::Debug {
    /// Everything up to `positions` is committed.
    fn committed(&self, positions: &Positions);
}
