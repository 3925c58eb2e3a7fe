//! The unit of data that flows through every stage, and source positions.
//!
//! A [`Record`] is produced by a source (the Direct PUT write-ahead log or a
//! Kinesis shard), may be rewritten by processors, is placed in a buffer and is
//! finally encoded into an output object. It carries its source [`Position`]
//! so that delivery can commit exactly what an object covers; [`Positions`]
//! is that committed state: for every source, how far delivery has got.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A position in the Direct PUT write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WalPosition {
    /// Segment number (segment files are numbered from 1 upwards).
    pub segment: u64,
    /// Byte offset inside the segment.
    pub offset: u64,
}

impl WalPosition {
    /// The position of the first record ever written.
    pub const START: WalPosition = WalPosition {
        segment: 1,
        offset: 0,
    };
}

impl std::fmt::Display for WalPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}

/// Where one record sits in its source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Position {
    /// Write-ahead log: the position just *after* the record (committing it
    /// means this record and everything before it are delivered).
    Wal(WalPosition),
    /// Kinesis: the record's own shard, sequence number and KPL sub-sequence
    /// number (0 for records that were not aggregated).
    Shard {
        /// Shard id.
        shard: Arc<str>,
        /// Sequence number of the Kinesis record (a decimal string of up to
        /// 128 bits; compare with [`cmp_sequence`]).
        sequence: Arc<str>,
        /// Index of the user record inside a KPL aggregate.
        sub_sequence: u64,
    },
}

/// Kinesis metadata of a record, for transforms and error documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisMeta {
    /// Shard id.
    pub shard: Arc<str>,
    /// Partition key (of the user record, for KPL aggregates).
    pub partition_key: String,
    /// Explicit hash key of a KPL user record, if it had one.
    pub explicit_hash_key: Option<String>,
}

/// One record on its way through the pipeline.
#[derive(Debug, Clone)]
pub struct Record {
    /// The payload; `Bytes` so stages pass it on without copying.
    pub data: Bytes,
    /// When sluice (Direct PUT) or Kinesis (`ApproximateArrivalTimestamp`)
    /// received the record, in Unix milliseconds. Object keys use the
    /// arrival time of the oldest record in the object.
    pub arrival_ms: i64,
    /// Where the record sits in its source.
    pub position: Position,
    /// Kinesis metadata; `None` for Direct PUT records.
    pub kinesis: Option<Arc<KinesisMeta>>,
    /// Set on bytes salvaged from a damaged stretch of the write-ahead log
    /// (`sluice wal repair`): they are not a record anyone sent, so they skip
    /// processing and go to the `processing-failed` error output with this
    /// message, never silently dropped.
    pub damaged: Option<Arc<str>>,
}

/// Compares two Kinesis sequence numbers: decimal integers without leading
/// zeros, longer than `u128` in some emulators, so compared as strings.
pub fn cmp_sequence(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Committed progress of one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardCheckpoint {
    /// Every record up to and including this (sequence, sub-sequence) is delivered.
    At {
        /// Sequence number.
        sequence: String,
        /// Sub-sequence number inside a KPL aggregate.
        sub_sequence: u64,
    },
    /// The shard is closed and every record in it is delivered (KCL's
    /// `SHARD_END`): its children may be read.
    Ended,
}

/// How far delivery has got in every source of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    /// Write-ahead log: everything before this position is delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalPosition>,
    /// Kinesis shards by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shards: BTreeMap<String, ShardCheckpoint>,
}

impl std::fmt::Display for Positions {
    /// For logs: `log 1:4096`, `shardId-000000000000 49590...#2, shardId-... ended`,
    /// or `the beginning` when nothing is recorded.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(w) = self.wal {
            parts.push(format!("log {w}"));
        }
        for (shard, at) in &self.shards {
            parts.push(match at {
                ShardCheckpoint::At {
                    sequence,
                    sub_sequence,
                } => format!("{shard} {sequence}#{sub_sequence}"),
                ShardCheckpoint::Ended => format!("{shard} ended"),
            });
        }
        if parts.is_empty() {
            f.write_str("the beginning")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

impl Positions {
    /// Records that `position` (and everything before it in its source) is covered.
    pub fn advance(&mut self, position: &Position) {
        match position {
            Position::Wal(p) => self.wal = Some(self.wal.map_or(*p, |w| w.max(*p))),
            Position::Shard {
                shard,
                sequence,
                sub_sequence,
            } => match self.shards.get_mut(&**shard) {
                Some(ShardCheckpoint::At {
                    sequence: s,
                    sub_sequence: sub,
                }) => {
                    // Allocation-free in the common case: reuse the string.
                    s.clear();
                    s.push_str(sequence);
                    *sub = *sub_sequence;
                }
                Some(ShardCheckpoint::Ended) => {}
                None => {
                    self.shards.insert(
                        shard.to_string(),
                        ShardCheckpoint::At {
                            sequence: sequence.to_string(),
                            sub_sequence: *sub_sequence,
                        },
                    );
                }
            },
        }
    }

    /// Records that a shard was read to its end.
    pub fn end_shard(&mut self, shard: &str) {
        self.shards.insert(shard.to_owned(), ShardCheckpoint::Ended);
    }

    /// Folds a later epoch's positions into these (cumulative checkpoints:
    /// shards an epoch did not touch keep their committed position).
    pub fn merge(&mut self, later: &Positions) {
        if let Some(w) = later.wal {
            self.wal = Some(self.wal.map_or(w, |mine| mine.max(w)));
        }
        for (shard, checkpoint) in &later.shards {
            self.shards.insert(shard.clone(), checkpoint.clone());
        }
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.wal.is_none() && self.shards.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(s: &str, seq: &str, sub: u64) -> Position {
        Position::Shard {
            shard: s.into(),
            sequence: seq.into(),
            sub_sequence: sub,
        }
    }

    #[test]
    fn sequence_numbers_compare_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(cmp_sequence("9", "10"), Less);
        assert_eq!(
            cmp_sequence(
                "49590338271490256608559692538361571095921575989136588898",
                "9"
            ),
            Greater
        );
        assert_eq!(cmp_sequence("123", "123"), Equal);
        assert_eq!(cmp_sequence("124", "123"), Greater);
    }

    #[test]
    fn positions_advance_per_source_and_merge_cumulatively() {
        let mut committed = Positions::default();
        committed.advance(&shard("a", "5", 0));
        committed.advance(&shard("b", "7", 2));
        committed.advance(&Position::Wal(WalPosition {
            segment: 1,
            offset: 10,
        }));

        let mut epoch = Positions::default();
        epoch.advance(&shard("a", "9", 0));
        epoch.advance(&shard("a", "11", 3));
        epoch.end_shard("c");
        epoch.advance(&Position::Wal(WalPosition {
            segment: 1,
            offset: 5,
        }));
        committed.merge(&epoch);

        assert_eq!(
            committed.shards["a"],
            ShardCheckpoint::At {
                sequence: "11".into(),
                sub_sequence: 3
            }
        );
        assert_eq!(
            committed.shards["b"],
            ShardCheckpoint::At {
                sequence: "7".into(),
                sub_sequence: 2
            }
        );
        assert_eq!(committed.shards["c"], ShardCheckpoint::Ended);
        // The log never moves backwards.
        assert_eq!(
            committed.wal,
            Some(WalPosition {
                segment: 1,
                offset: 10
            })
        );
        // An ended shard stays ended.
        committed.advance(&shard("c", "1", 0));
        assert_eq!(committed.shards["c"], ShardCheckpoint::Ended);
    }
}
