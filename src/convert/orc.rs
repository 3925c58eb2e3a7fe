//! ORC output: an ORC v1 (file version 0.12) writer for arrow record
//! batches, with every type a Glue/Hive table can declare, nested to any
//! depth.
//!
//! orc-rust's writer handles flat primitive columns only (and panics on
//! struct, list, map and decimal), so the format is written here. The
//! writer streams: a stripe is built in memory (compressed block by block)
//! and written out when its buffered size reaches `stripe_size_bytes`, so
//! memory is bounded by one stripe, never by the file.
//!
//! # What is written
//! - Types: boolean, tinyint (Int8), smallint, int, bigint, float, double,
//!   string (Utf8/LargeUtf8), binary, date (Date32), timestamp (arrow
//!   `Timestamp(_, None)`: seconds from 2015-01-01 UTC + nanos with ORC's
//!   trailing-zero scheme), decimal(p≤38, s≥0) (DATA: zigzag varints;
//!   SECONDARY: scale), struct, array (List/LargeList), map.
//! - Encodings: integer RLE v2 (SHORT_REPEAT, DIRECT, fixed-step DELTA; no
//!   PATCHED_BASE), byte RLE, boolean RLE, strings/binary DIRECT_V2 (no
//!   dictionary), IEEE-754 little-endian floats. PRESENT streams only for
//!   columns that have a null in the stripe.
//! - Compression NONE, ZLIB, SNAPPY, ZSTD in ORC chunks (3-byte headers,
//!   "original" chunks when compression does not pay).
//! - Row index (ROW_INDEX streams, one entry per `row_index_stride` rows,
//!   positions + statistics), stripe statistics (file metadata section),
//!   file statistics: number of values, hasNull, and min/max/sum for
//!   integers, dates (min/max), floating point, strings (min/max ≤ 1024
//!   bytes, total length), binary (total length), boolean (true count).
//! - Not written: bloom filters (`bloom_filter_columns` is validated, then
//!   ignored with a warning), dictionary encoding, timestamp/decimal/
//!   collection statistics, stripe padding.
//!
//! Layout: `orc/rle.rs` (run-length encoders), `orc/stream.rs` (chunked
//! compression), `orc/column.rs` (the column writer tree and statistics),
//! `orc/proto.rs` (the protobuf messages of the file tail).

use arrow_array::{Array, RecordBatch, StructArray};
use arrow_schema::{DataType, SchemaRef};
use prost::Message;
use std::io::Write;

use super::json::RecordBatchBuilder;
use super::{BatchWriter, ConvertError, Deserializer, Schema, WriterThread};
use crate::encode::{EncodeError, Encoder};
use crate::error::{Classify, Fault};

mod column;
mod proto;
mod rle;
mod stream;

use column::{Column, StripeStreams};
use stream::Compressor;

/// Firehose's smallest `StripeSizeBytes`.
pub const MIN_STRIPE_SIZE_BYTES: u64 = 8 * 1024 * 1024;
/// Firehose's smallest non-zero `RowIndexStride`.
pub const MIN_ROW_INDEX_STRIDE: u32 = 1000;
/// Value of the postscript's `writerVersion` (6 = ORC-135: timestamp
/// statistics are UTC; the first value writers other than ORC Java may use).
const WRITER_VERSION: u32 = 6;

/// Compression codec of an ORC file (Firehose's OrcSerDe `Compression`, plus ZSTD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrcCompression {
    /// `NONE`.
    None,
    /// `ZLIB` (raw deflate streams).
    Zlib,
    /// `SNAPPY` (raw snappy blocks); Firehose's default.
    Snappy,
    /// `ZSTD`.
    Zstd,
}

impl std::str::FromStr for OrcCompression {
    type Err = String;
    /// The names shared with Parquet ([`super::Codec`]): `NONE` (or
    /// `UNCOMPRESSED`), `ZLIB` (or `GZIP`: ORC's only deflate codec),
    /// `SNAPPY`, `ZSTD`, case-insensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        let codec = s
            .parse::<super::Codec>()
            .map_err(|_| format!("unknown ORC compression `{s}` ({})", super::CODEC_NAMES))?;
        Ok(match codec {
            super::Codec::None => OrcCompression::None,
            super::Codec::Deflate => OrcCompression::Zlib,
            super::Codec::Snappy => OrcCompression::Snappy,
            super::Codec::Zstd => OrcCompression::Zstd,
        })
    }
}

impl OrcCompression {
    fn proto_kind(self) -> i32 {
        use proto::compression_kind as k;
        match self {
            OrcCompression::None => k::NONE,
            OrcCompression::Zlib => k::ZLIB,
            OrcCompression::Snappy => k::SNAPPY,
            OrcCompression::Zstd => k::ZSTD,
        }
    }
}

/// ORC writer options, mirroring Firehose's `OrcSerDe`.
///
/// `BlockSizeBytes`, `EnablePadding` and `PaddingTolerance` concern HDFS
/// block alignment and have no meaning for objects on S3; `FormatVersion`
/// `V0_11` and `DictionaryKeyThreshold` are not implemented (files are 0.12,
/// strings always DIRECT).
#[derive(Debug, Clone, PartialEq)]
pub struct OrcOptions {
    /// Compression codec. Default SNAPPY (as Firehose).
    pub compression: OrcCompression,
    /// A stripe is written out once its buffered (compressed) size reaches
    /// this. Default 64 MiB; at least 8 MiB (Firehose's minimum).
    pub stripe_size_bytes: u64,
    /// Rows per row-index entry. Default 10,000; 0 writes no row index,
    /// otherwise at least 1,000 (Firehose's minimum).
    pub row_index_stride: u32,
    /// Uncompressed size of a compression chunk. Default 256 KiB; 4 KiB up
    /// to 8 MiB - 1 (the chunk header holds 23 bits).
    pub compression_block_size: usize,
    /// Top-level columns that should get bloom filters. Validated, but no
    /// bloom filter is written (a warning is logged).
    pub bloom_filter_columns: Vec<String>,
    /// Bloom filter false-positive probability, in (0, 1). Default 0.05.
    pub bloom_filter_fpp: f64,
}

impl Default for OrcOptions {
    fn default() -> Self {
        OrcOptions {
            compression: OrcCompression::Snappy,
            stripe_size_bytes: 64 * 1024 * 1024,
            row_index_stride: 10_000,
            compression_block_size: 256 * 1024,
            bloom_filter_columns: Vec::new(),
            bloom_filter_fpp: 0.05,
        }
    }
}

impl OrcOptions {
    /// Checks the options against Firehose's limits.
    ///
    /// # Errors
    /// [`OrcError::InvalidOption`] naming the first option out of range.
    pub fn validate(&self) -> Result<(), OrcError> {
        if self.stripe_size_bytes < MIN_STRIPE_SIZE_BYTES {
            return Err(OrcError::InvalidOption(format!(
                "stripe size {} bytes is below the minimum {MIN_STRIPE_SIZE_BYTES}",
                self.stripe_size_bytes
            )));
        }
        if self.row_index_stride != 0 && self.row_index_stride < MIN_ROW_INDEX_STRIDE {
            return Err(OrcError::InvalidOption(format!(
                "row index stride {} is below the minimum {MIN_ROW_INDEX_STRIDE} (0 disables the index)",
                self.row_index_stride
            )));
        }
        self.validate_shape()
    }

    /// The checks that hold whatever the Firehose limits (tests use smaller
    /// stripes and strides).
    fn validate_shape(&self) -> Result<(), OrcError> {
        if self.stripe_size_bytes == 0 {
            return Err(OrcError::InvalidOption(
                "stripe size must be positive".into(),
            ));
        }
        if !(4096..=stream::MAX_CHUNK).contains(&self.compression_block_size) {
            return Err(OrcError::InvalidOption(format!(
                "compression block size {} is outside 4096..={}",
                self.compression_block_size,
                stream::MAX_CHUNK
            )));
        }
        if !(self.bloom_filter_fpp > 0.0 && self.bloom_filter_fpp < 1.0) {
            return Err(OrcError::InvalidOption(format!(
                "bloom filter false positive probability {} is outside (0, 1)",
                self.bloom_filter_fpp
            )));
        }
        Ok(())
    }
}

/// Failure while writing ORC.
#[derive(Debug, thiserror::Error)]
pub enum OrcError {
    /// An option is out of range.
    #[error("invalid ORC option: {0}")]
    InvalidOption(String),
    /// The schema holds a type ORC (as Hive/Glue use it) cannot store.
    #[error("column {column}: arrow type {data_type} cannot be written to ORC")]
    UnsupportedType {
        /// Dotted column path.
        column: String,
        /// The arrow type.
        data_type: String,
    },
    /// A batch does not have the writer's schema.
    #[error("record batch does not match the ORC writer's schema: {0}")]
    SchemaMismatch(String),
    /// A value cannot be represented in ORC.
    #[error("column {column}: {reason}")]
    Value {
        /// Dotted column path.
        column: String,
        /// Why.
        reason: String,
    },
    /// Writing the output failed.
    #[error("writing ORC output failed: {0}")]
    Io(#[from] std::io::Error),
    /// The compressor failed.
    #[error("ORC compression failed: {0}")]
    Compression(String),
    /// An earlier call failed; the output is incomplete.
    #[error("the ORC writer failed earlier; its output is unusable")]
    Failed,
}

impl Classify for OrcError {
    fn is_retriable(&self) -> bool {
        matches!(self, OrcError::Io(_))
    }
    fn fault(&self) -> Fault {
        match self {
            OrcError::InvalidOption(_) | OrcError::UnsupportedType { .. } => Fault::Config,
            OrcError::Value { .. } => Fault::Data,
            OrcError::Io(_) => Fault::Remote,
            OrcError::SchemaMismatch(_) | OrcError::Compression(_) | OrcError::Failed => Fault::Bug,
        }
    }
}

/// Streams record batches into one ORC file written to `W`.
pub struct OrcWriter<W: Write> {
    out: W,
    /// Bytes written to `out` so far.
    offset: u64,
    schema: SchemaRef,
    root: Column,
    types: Vec<proto::Type>,
    c: Compressor,
    stripe_size: u64,
    stride: u64,
    compression: OrcCompression,
    block_size: usize,
    stripe_rows: u64,
    group_rows: u64,
    total_rows: u64,
    stripes: Vec<proto::StripeInformation>,
    stripe_stats: Vec<proto::StripeStatistics>,
    failed: bool,
}

impl<W: Write> std::fmt::Debug for OrcWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrcWriter")
            .field("offset", &self.offset)
            .field("rows", &(self.total_rows + self.stripe_rows))
            .finish_non_exhaustive()
    }
}

impl<W: Write> OrcWriter<W> {
    /// Builds a writer for batches of `schema`. Nothing is written to `out`
    /// before the first stripe (or `finish`).
    ///
    /// # Errors
    /// [`OrcError::InvalidOption`] for options outside Firehose's limits,
    /// [`OrcError::UnsupportedType`] for a column type ORC cannot hold.
    pub fn try_new(out: W, schema: SchemaRef, options: &OrcOptions) -> Result<Self, OrcError> {
        options.validate()?;
        Self::build(out, schema, options)
    }

    fn build(out: W, schema: SchemaRef, options: &OrcOptions) -> Result<Self, OrcError> {
        options.validate_shape()?;
        for name in &options.bloom_filter_columns {
            if schema.field_with_name(name).is_err() {
                return Err(OrcError::InvalidOption(format!(
                    "bloom filter column {name:?} is not a column of the schema"
                )));
            }
        }
        if !options.bloom_filter_columns.is_empty() {
            tracing::warn!(
                columns = ?options.bloom_filter_columns,
                "ORC bloom filters are not implemented; the files are written without them"
            );
        }
        let mut types = Vec::new();
        let root = Column::build(
            String::new(),
            &DataType::Struct(schema.fields().clone()),
            &mut types,
        )?;
        Ok(OrcWriter {
            out,
            offset: 0,
            schema,
            root,
            types,
            c: Compressor::new(options.compression, options.compression_block_size)?,
            stripe_size: options.stripe_size_bytes,
            stride: u64::from(options.row_index_stride),
            compression: options.compression,
            block_size: options.compression_block_size,
            stripe_rows: 0,
            group_rows: 0,
            total_rows: 0,
            stripes: Vec::new(),
            stripe_stats: Vec::new(),
            failed: false,
        })
    }

    /// The schema batches must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows written so far (including the stripe in memory).
    pub fn rows(&self) -> u64 {
        self.total_rows + self.stripe_rows
    }

    /// Bytes written to the output so far (stripes already flushed).
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Appends a batch; writes a stripe out whenever one is full.
    ///
    /// # Errors
    /// [`OrcError::SchemaMismatch`] if the batch's column types differ from
    /// the writer's schema, [`OrcError::Value`] for an unrepresentable value,
    /// [`OrcError::Io`] when the output fails. After an error the writer is
    /// unusable (later calls return [`OrcError::Failed`]).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), OrcError> {
        if self.failed {
            return Err(OrcError::Failed);
        }
        self.check_schema(batch)?;
        self.failed = true;
        self.write_inner(batch)?;
        self.failed = false;
        Ok(())
    }

    fn check_schema(&self, batch: &RecordBatch) -> Result<(), OrcError> {
        let fields = self.schema.fields();
        if batch.num_columns() != fields.len() {
            return Err(OrcError::SchemaMismatch(format!(
                "{} columns, expected {}",
                batch.num_columns(),
                fields.len()
            )));
        }
        for (col, f) in batch.columns().iter().zip(fields) {
            if !col.data_type().equals_datatype(f.data_type()) {
                return Err(OrcError::SchemaMismatch(format!(
                    "column {} has type {}, expected {}",
                    f.name(),
                    col.data_type(),
                    f.data_type()
                )));
            }
        }
        Ok(())
    }

    fn write_inner(&mut self, batch: &RecordBatch) -> Result<(), OrcError> {
        let n = batch.num_rows();
        let root = StructArray::from(batch.clone());
        let mut start = 0usize;
        while start < n {
            let mut take = n - start;
            if self.stride > 0 {
                if self.group_rows == 0 {
                    self.root.start_group(&mut self.c)?;
                }
                take = take.min((self.stride - self.group_rows) as usize);
            }
            let rows = start..start + take;
            self.root.write(
                &root as &dyn Array,
                std::slice::from_ref(&rows),
                &mut self.c,
            )?;
            start += take;
            self.stripe_rows += take as u64;
            self.group_rows += take as u64;
            if self.stride > 0 && self.group_rows == self.stride {
                self.root.end_group(true);
                self.group_rows = 0;
            }
            if self.root.buffered() as u64 >= self.stripe_size {
                self.flush_stripe()?;
            }
        }
        Ok(())
    }

    fn write_out(&mut self, bytes: &[u8]) -> Result<(), OrcError> {
        if self.offset == 0 {
            self.out.write_all(b"ORC")?;
            self.offset = 3;
        }
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Writes the stripe in memory out (no-op when it is empty).
    fn flush_stripe(&mut self) -> Result<(), OrcError> {
        if self.stripe_rows == 0 {
            return Ok(());
        }
        let indexed = self.stride > 0;
        if !indexed || self.group_rows > 0 {
            self.root.end_group(indexed);
        }
        let mut s = StripeStreams::default();
        self.root.finish_stripe(indexed, &mut self.c, &mut s)?;
        self.write_out(&[])?;
        let offset = self.offset;
        let mut streams = Vec::with_capacity(s.index.len() + s.data.len());
        let mut index_length = 0;
        for (meta, bytes) in s.index {
            index_length += bytes.len() as u64;
            self.write_out(&bytes)?;
            streams.push(meta);
        }
        let mut data_length = 0;
        for (meta, bytes) in s.data {
            data_length += bytes.len() as u64;
            self.write_out(&bytes)?;
            streams.push(meta);
        }
        let footer = proto::StripeFooter {
            streams,
            columns: s.encodings,
            writer_timezone: Some("UTC".into()),
        };
        let footer = self.c.whole(&footer.encode_to_vec())?;
        self.write_out(&footer)?;
        self.stripes.push(proto::StripeInformation {
            offset: Some(offset),
            index_length: Some(index_length),
            data_length: Some(data_length),
            footer_length: Some(footer.len() as u64),
            number_of_rows: Some(self.stripe_rows),
        });
        self.stripe_stats
            .push(proto::StripeStatistics { col_stats: s.stats });
        self.total_rows += self.stripe_rows;
        self.stripe_rows = 0;
        self.group_rows = 0;
        Ok(())
    }

    /// Writes the last stripe and the file tail, flushes and hands back the output.
    ///
    /// # Errors
    /// [`OrcError::Io`] when the output fails; [`OrcError::Failed`] after an
    /// earlier error.
    pub fn finish(mut self) -> Result<W, OrcError> {
        if self.failed {
            return Err(OrcError::Failed);
        }
        self.flush_stripe()?;
        self.write_out(&[])?;
        let content_length = self.offset;
        let metadata = proto::Metadata {
            stripe_stats: std::mem::take(&mut self.stripe_stats),
        };
        let metadata = self.c.whole(&metadata.encode_to_vec())?;
        self.write_out(&metadata)?;
        let mut statistics = Vec::with_capacity(self.types.len());
        self.root.file_stats(&mut statistics);
        let footer = proto::Footer {
            header_length: Some(3),
            content_length: Some(content_length),
            stripes: std::mem::take(&mut self.stripes),
            types: std::mem::take(&mut self.types),
            number_of_rows: Some(self.total_rows),
            statistics,
            row_index_stride: Some(self.stride as u32),
            writer: None,
            software_version: Some(concat!("sluice-", env!("CARGO_PKG_VERSION")).into()),
        };
        let footer = self.c.whole(&footer.encode_to_vec())?;
        self.write_out(&footer)?;
        let postscript = proto::PostScript {
            footer_length: Some(footer.len() as u64),
            compression: Some(self.compression.proto_kind()),
            compression_block_size: Some(self.block_size as u64),
            version: vec![0, 12],
            metadata_length: Some(metadata.len() as u64),
            writer_version: Some(WRITER_VERSION),
            magic: Some("ORC".into()),
        };
        let ps = postscript.encode_to_vec();
        debug_assert!(ps.len() < 256);
        self.write_out(&ps)?;
        self.write_out(&[ps.len() as u8])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Builds the streaming ORC encoder writing to `out`: records are parsed
/// into batches of [`BATCH_ROWS`](super::BATCH_ROWS) rows (or
/// [`BATCH_INPUT_BYTES`](super::BATCH_INPUT_BYTES) of input),
/// each handed to an [`OrcWriter`]; a stripe goes out once it holds
/// `options.stripe_size_bytes`, so memory is one stripe plus one batch.
///
/// # Errors
/// [`ConvertError`] for an invalid schema, deserializer or option.
pub fn orc<W: Write + Send + 'static>(
    out: W,
    schema: &Schema,
    deserializer: &Deserializer,
    options: &OrcOptions,
) -> Result<Box<dyn Encoder<W>>, ConvertError> {
    orc_with(out, schema, deserializer, options, WriterThread::Inline)
}

/// [`orc()`] with the writer where `thread` says.
///
/// # Errors
/// As [`orc()`], and [`ConvertError::Io`] when the writer thread cannot start.
pub fn orc_with<W: Write + Send + 'static>(
    out: W,
    schema: &Schema,
    deserializer: &Deserializer,
    options: &OrcOptions,
    thread: WriterThread,
) -> Result<Box<dyn Encoder<W>>, ConvertError> {
    let builder = RecordBatchBuilder::new(schema, deserializer)?;
    let writer = OrcWriter::try_new(out, builder.schema(), options).map_err(|e| match e {
        OrcError::InvalidOption(message) => ConvertError::Options {
            format: "ORC",
            message,
        },
        OrcError::Io(io) => ConvertError::Io(io),
        other => ConvertError::Unsupported {
            format: "ORC",
            message: other.to_string(),
        },
    })?;
    super::batching(builder, writer, thread)
}

fn write_error(e: OrcError) -> EncodeError {
    match e {
        OrcError::Io(io) => EncodeError::Io(io),
        // The schema was checked at construction and the builder produces
        // it, so nothing else is expected here; report it as a failed write.
        other => EncodeError::Io(std::io::Error::other(other)),
    }
}

impl<W: Write + Send> BatchWriter<W> for OrcWriter<W> {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), EncodeError> {
        self.write(batch).map_err(write_error)
    }

    fn finish(self) -> Result<W, EncodeError> {
        OrcWriter::finish(self).map_err(write_error)
    }

    fn buffered_bytes(&self) -> usize {
        self.root.buffered()
    }
}

#[cfg(test)]
mod tests;
