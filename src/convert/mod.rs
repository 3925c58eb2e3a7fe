//! Record format conversion: JSON records -> Parquet (and ORC), as Firehose's
//! `DataFormatConversionConfiguration` does.
//!
//! # API for other encoders (ORC builds on this)
//! - [`Schema`] / [`ColumnType`] (`schema`): Glue column types, parsed from
//!   type strings; [`arrow_schema()`]`(&Schema) -> SchemaRef` gives the Arrow
//!   schema of the batches (mapping documented in `schema`).
//! - [`RecordBatchBuilder`] (`json`): `new(&Schema, &Deserializer)?`,
//!   `append(&[u8]) -> Result<(), RecordError>` (one record; a rejected record
//!   leaves the builder untouched), `len()`, `finish_batch() -> RecordBatch`.
//!   Keep batches at 1k-4k rows: that is where it is fastest.
//! - [`Deserializer`]: OpenX or Hive JSON SerDe with Firehose's options.
//! - [`Codec`]: the compression names both formats accept (`GZIP` = `ZLIB`).
//! - A rejected record's `format-conversion-failed` document is written by
//!   [`crate::error_doc`], from its [`RecordError`]'s code and message.
//! - [`parquet()`]: the streaming Parquet [`Encoder`]. A rejected record
//!   surfaces as [`EncodeError::Record`]; the encoder stays usable.
//! - The ORC encoder lives in `orc` (another module, same shape:
//!   `orc(out, &Schema, &Deserializer, &OrcOptions)`), declared below when present.
//!
//! # Layout
//! - `schema`: type strings, TOML form, Arrow mapping.
//! - `json`: the schema-directed JSON parser and [`RecordBatchBuilder`].
//! - `parquet`: [`ParquetOptions`] and the Parquet encoder (arrow-rs `ArrowWriter`).
//! - `pipeline`: a writer on its own thread ([`WriterThread`]), for `sluice convert`.
//! - `discover`: schema inference for `sluice schema discover`.
//! - `cli`: the `sluice convert` and `sluice schema` commands.

use std::io::Write;

use crate::encode::{EncodeError, Encoder};
use crate::error::{Classify, Fault};

pub mod cli;
pub mod discover;
pub mod json;
pub mod orc;
mod parquet;
mod pipeline;
pub mod schema;

pub use pipeline::WriterThread;

pub use json::{Deserializer, RecordBatchBuilder, RecordError, codes};
pub use parquet::{
    FIREHOSE_MIN_BLOCK_SIZE_BYTES, MIN_BLOCK_SIZE_BYTES, MIN_PAGE_SIZE_BYTES, ParquetCompression,
    ParquetOptions, ParquetWriterVersion,
};
pub use schema::{Column, ColumnType, Schema, SchemaError, StructField, arrow_schema};

/// A converter that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The schema is invalid.
    #[error("invalid schema: {0}")]
    Schema(#[from] SchemaError),
    /// A deserializer option cannot work.
    #[error("invalid deserializer option: {0}")]
    Deserializer(String),
    /// A serializer option is out of range.
    #[error("invalid {format} option: {message}")]
    Options {
        /// `Parquet` or `ORC`.
        format: &'static str,
        /// Which option and why.
        message: String,
    },
    /// The writer rejected the schema (a type it cannot write).
    #[error("{format} writer cannot write this schema: {message}")]
    Unsupported {
        /// `Parquet` or `ORC`.
        format: &'static str,
        /// The writer's reason.
        message: String,
    },
    /// Writing the file header failed.
    #[error("writing the output failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Classify for ConvertError {
    fn is_retriable(&self) -> bool {
        matches!(self, ConvertError::Io(_))
    }
    fn fault(&self) -> Fault {
        match self {
            ConvertError::Io(_) => Fault::Remote,
            _ => Fault::Config,
        }
    }
}

/// Builds the streaming Parquet encoder writing to `out`.
///
/// Records are parsed into batches of [`BATCH_ROWS`] rows, each written to
/// an `ArrowWriter` straight over `out`; a row group is closed when its
/// encoded size reaches `options.block_size_bytes`, so memory is bounded by
/// one row group plus one batch whatever the object size.
///
/// # Errors
/// [`ConvertError`] for an invalid schema or option, or when the Parquet
/// header cannot be written to `out`.
pub fn parquet<W: Write + Send + 'static>(
    out: W,
    schema: &Schema,
    deserializer: &Deserializer,
    options: &ParquetOptions,
) -> Result<Box<dyn Encoder<W>>, ConvertError> {
    parquet_with(out, schema, deserializer, options, WriterThread::Inline)
}

/// [`parquet()`] with the writer where `thread` says ([`WriterThread::Own`]: parsing
/// and encoding overlap on two cores).
///
/// # Errors
/// As [`parquet()`], and [`ConvertError::Io`] when the writer thread cannot start.
pub fn parquet_with<W: Write + Send + 'static>(
    out: W,
    schema: &Schema,
    deserializer: &Deserializer,
    options: &ParquetOptions,
    thread: WriterThread,
) -> Result<Box<dyn Encoder<W>>, ConvertError> {
    let (builder, writer) = parquet::build(out, schema, deserializer, options)?;
    batching(builder, writer, thread)
}

/// The encoder over `builder` and `writer`, the writer where `thread` says.
fn batching<W: Send + 'static, B: BatchWriter<W> + 'static>(
    builder: RecordBatchBuilder,
    writer: B,
    thread: WriterThread,
) -> Result<Box<dyn Encoder<W>>, ConvertError> {
    Ok(match thread {
        WriterThread::Inline => Box::new(BatchingEncoder::new(builder, writer)),
        WriterThread::Own => Box::new(BatchingEncoder::new(
            builder.keep_capacity(),
            pipeline::Pipelined::spawn(writer).map_err(ConvertError::Io)?,
        )),
    })
}

/// A compression codec named the same way for Parquet and ORC, so one
/// spelling works for `--compression`, `destination.format.compression` and
/// Firehose's `ParquetSerDe`/`OrcSerDe` `Compression` alike.
///
/// Names are case-insensitive. Each format has exactly one deflate codec,
/// so `GZIP` and `ZLIB` both name it: Parquet's `GZIP` (deflate in gzip
/// framing, Firehose's Parquet name) and ORC's `ZLIB` (raw deflate chunks,
/// Firehose's ORC name). `UNCOMPRESSED` and `NONE` both mean none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `UNCOMPRESSED` or `NONE`.
    None,
    /// `SNAPPY`.
    Snappy,
    /// `GZIP` or `ZLIB`: the format's deflate codec.
    Deflate,
    /// `ZSTD` (not offered by Firehose; an extension).
    Zstd,
}

/// The accepted codec names, for error messages.
pub const CODEC_NAMES: &str = "SNAPPY, GZIP (= ZLIB), ZSTD or UNCOMPRESSED (= NONE)";

impl std::str::FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> Result<Codec, String> {
        match s.to_ascii_uppercase().as_str() {
            "UNCOMPRESSED" | "NONE" => Ok(Codec::None),
            "SNAPPY" => Ok(Codec::Snappy),
            "GZIP" | "ZLIB" => Ok(Codec::Deflate),
            "ZSTD" => Ok(Codec::Zstd),
            _ => Err(format!("unknown compression `{s}` ({CODEC_NAMES})")),
        }
    }
}

/// Rows per Arrow batch handed to a writer.
pub const BATCH_ROWS: usize = 2048;

/// A batch is also handed over once its records total this many bytes, so a
/// batch of huge records stays small.
pub const BATCH_INPUT_BYTES: usize = 16 << 20;

/// A columnar file writer fed whole Arrow batches (Parquet, ORC).
pub(crate) trait BatchWriter<W>: Send {
    /// Writes one batch (buffered into the current row group / stripe).
    fn write_batch(&mut self, batch: &arrow_array::RecordBatch) -> Result<(), EncodeError>;
    /// Writes the footer and hands back the output.
    fn finish(self) -> Result<W, EncodeError>;
    /// Bytes of the open row group / stripe held in memory.
    fn buffered_bytes(&self) -> usize;
}

/// The pipeline encoder of every columnar format: JSON records go into a
/// [`RecordBatchBuilder`], and every [`BATCH_ROWS`] rows (or
/// [`BATCH_INPUT_BYTES`] of input) the batch goes to the format's writer.
pub(crate) struct BatchingEncoder<B> {
    builder: RecordBatchBuilder,
    writer: B,
    /// Record bytes appended since the last batch was written.
    batch_bytes: usize,
}

impl<B> BatchingEncoder<B> {
    pub(crate) fn new(builder: RecordBatchBuilder, writer: B) -> Self {
        BatchingEncoder {
            builder,
            writer,
            batch_bytes: 0,
        }
    }
}

impl<B> BatchingEncoder<B> {
    fn flush_batch<W>(&mut self) -> Result<(), EncodeError>
    where
        B: BatchWriter<W>,
    {
        if self.builder.is_empty() {
            return Ok(());
        }
        let batch = self.builder.finish_batch();
        self.batch_bytes = 0;
        self.writer.write_batch(&batch)
    }
}

impl<W, B: BatchWriter<W>> Encoder<W> for BatchingEncoder<B> {
    fn append(&mut self, data: &[u8]) -> Result<(), EncodeError> {
        self.builder.append(data)?;
        self.batch_bytes += data.len();
        if self.builder.len() >= BATCH_ROWS || self.batch_bytes >= BATCH_INPUT_BYTES {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<W, EncodeError> {
        self.flush_batch()?;
        self.writer.finish()
    }

    fn buffered_bytes(&self) -> usize {
        // The batch being built holds about its input's size in Arrow arrays.
        self.batch_bytes + self.writer.buffered_bytes()
    }
}

impl From<RecordError> for EncodeError {
    fn from(e: RecordError) -> EncodeError {
        EncodeError::Record {
            code: e.code,
            message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_names_are_shared_by_both_formats() {
        use orc::OrcCompression;
        for (name, parquet, orc) in [
            ("snappy", ParquetCompression::Snappy, OrcCompression::Snappy),
            ("GZIP", ParquetCompression::Gzip, OrcCompression::Zlib),
            ("zlib", ParquetCompression::Gzip, OrcCompression::Zlib),
            ("Zstd", ParquetCompression::Zstd, OrcCompression::Zstd),
            (
                "uncompressed",
                ParquetCompression::Uncompressed,
                OrcCompression::None,
            ),
            (
                "NONE",
                ParquetCompression::Uncompressed,
                OrcCompression::None,
            ),
        ] {
            assert_eq!(name.parse::<ParquetCompression>(), Ok(parquet), "{name}");
            assert_eq!(name.parse::<OrcCompression>(), Ok(orc), "{name}");
        }
        for bad in ["lz4", "", "deflate", "gzip9"] {
            let parquet = bad.parse::<ParquetCompression>().unwrap_err();
            let orc = bad.parse::<OrcCompression>().unwrap_err();
            assert!(
                parquet.contains("Parquet") && parquet.contains(CODEC_NAMES),
                "{parquet}"
            );
            assert!(orc.contains("ORC") && orc.contains(CODEC_NAMES), "{orc}");
        }
    }

    #[test]
    fn record_errors_classify_as_data() {
        let e: EncodeError = RecordError {
            code: codes::MALFORMED,
            message: "x".into(),
        }
        .into();
        assert!(!e.is_retriable());
        assert_eq!(e.fault(), Fault::Data);
        assert!(!ConvertError::Deserializer("x".into()).is_retriable());
        assert_eq!(
            ConvertError::Deserializer("x".into()).fault(),
            Fault::Config
        );
    }
}
