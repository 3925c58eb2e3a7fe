//! Record sources.
//!
//! A source yields batches of [`crate::record::Record`]s, each carrying the
//! position just after it; it never advances a checkpoint itself. Delivery
//! tells it when a position is committed, and only then may it forget data
//! (delete write-ahead-log segments).
//!
//! - [`direct_put`]: records put through the Firehose API, made durable in a
//!   local write-ahead log before they are acknowledged.
//! - Kinesis Data Streams polling (with KPL de-aggregation) comes next and
//!   will share this module's shape: a reader per shard, positions per shard.

pub mod direct_put;
