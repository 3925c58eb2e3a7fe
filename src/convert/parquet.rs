//! The Parquet encoder: [`RecordBatchBuilder`] batches into an arrow-rs
//! `ArrowWriter` that writes straight into the staging writer.
//!
//! Writer settings follow Firehose's `ParquetSerDe` (see [`ParquetOptions`]);
//! besides those, statistics are kept per column chunk (min/max/null count
//! in the footer, as parquet-mr writes them) rather than per page, which
//! saves CPU and bytes while keeping row-group pruning.

use std::io::Write;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};

use super::json::RecordBatchBuilder;
use super::{BatchWriter, ConvertError, Deserializer, Schema};
use crate::encode::EncodeError;
use arrow_array::RecordBatch;

/// Parquet page compression (`ParquetSerDe.Compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParquetCompression {
    /// Snappy (Firehose's default).
    #[default]
    Snappy,
    /// Gzip at the default level.
    Gzip,
    /// Zstandard at the default level (not offered by Firehose; an extension).
    Zstd,
    /// No compression.
    Uncompressed,
}

impl std::str::FromStr for ParquetCompression {
    type Err = String;
    /// The names shared with ORC ([`super::Codec`]): `SNAPPY`, `GZIP` (or
    /// `ZLIB`), `ZSTD`, `UNCOMPRESSED` (or `NONE`), case-insensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        let codec = s
            .parse::<super::Codec>()
            .map_err(|_| format!("unknown Parquet compression `{s}` ({})", super::CODEC_NAMES))?;
        Ok(match codec {
            super::Codec::Snappy => ParquetCompression::Snappy,
            super::Codec::Deflate => ParquetCompression::Gzip,
            super::Codec::Zstd => ParquetCompression::Zstd,
            super::Codec::None => ParquetCompression::Uncompressed,
        })
    }
}

/// Parquet format version of data pages (`ParquetSerDe.WriterVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParquetWriterVersion {
    /// `V1` (Firehose's default; readable everywhere).
    #[default]
    V1,
    /// `V2` data pages.
    V2,
}

/// `ParquetSerDe` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetOptions {
    /// Page compression.
    pub compression: ParquetCompression,
    /// Target data page size (`PageSizeBytes`, default 1 MiB).
    pub page_size_bytes: usize,
    /// Row-group size target in encoded bytes (`BlockSizeBytes`, default
    /// 256 MiB as Firehose). Firehose uses it as the HDFS block size that
    /// row groups are padded to; sluice writes no padding and uses it as the
    /// row-group target, so an encoder holds at most about this much encoded
    /// data in memory. Firehose's minimum is 64 MiB
    /// ([`ParquetOptions::check_firehose_limits`]); the encoder itself
    /// accepts down to 64 KiB so tests and small hosts can use small row groups.
    pub block_size_bytes: usize,
    /// `EnableDictionaryCompression` (default true). Columns whose dictionary
    /// outgrows 1 MiB fall back to plain encoding per page.
    pub enable_dictionary: bool,
    /// `WriterVersion`.
    pub writer_version: ParquetWriterVersion,
}

/// Firehose's minimum `BlockSizeBytes`.
pub const FIREHOSE_MIN_BLOCK_SIZE_BYTES: usize = 64 << 20;
/// Firehose's minimum `PageSizeBytes` (and the encoder's).
pub const MIN_PAGE_SIZE_BYTES: usize = 64 << 10;
/// The encoder's smallest row-group target.
pub const MIN_BLOCK_SIZE_BYTES: usize = 64 << 10;

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            compression: ParquetCompression::Snappy,
            page_size_bytes: 1 << 20,
            block_size_bytes: 256 << 20,
            enable_dictionary: true,
            writer_version: ParquetWriterVersion::V1,
        }
    }
}

impl ParquetOptions {
    /// Checks the values the encoder can use.
    ///
    /// # Errors
    /// [`ConvertError::Options`] naming the option.
    pub fn validate(&self) -> Result<(), ConvertError> {
        let bad = |message: String| {
            Err(ConvertError::Options {
                format: "Parquet",
                message,
            })
        };
        if self.page_size_bytes < MIN_PAGE_SIZE_BYTES {
            return bad(format!(
                "page_size_bytes must be at least {MIN_PAGE_SIZE_BYTES}, got {}",
                self.page_size_bytes
            ));
        }
        if self.block_size_bytes < MIN_BLOCK_SIZE_BYTES {
            return bad(format!(
                "block_size_bytes must be at least {MIN_BLOCK_SIZE_BYTES}, got {}",
                self.block_size_bytes
            ));
        }
        Ok(())
    }

    /// Checks Firehose's own limits (for configs in the Firehose shape).
    ///
    /// # Errors
    /// [`ConvertError::Options`] naming the option.
    pub fn check_firehose_limits(&self) -> Result<(), ConvertError> {
        self.validate()?;
        if self.block_size_bytes < FIREHOSE_MIN_BLOCK_SIZE_BYTES {
            return Err(ConvertError::Options {
                format: "Parquet",
                message: format!(
                    "BlockSizeBytes must be at least {FIREHOSE_MIN_BLOCK_SIZE_BYTES}, got {}",
                    self.block_size_bytes
                ),
            });
        }
        Ok(())
    }

    fn properties(&self) -> WriterProperties {
        let compression = match self.compression {
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Gzip => Compression::GZIP(GzipLevel::default()),
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
            ParquetCompression::Uncompressed => Compression::UNCOMPRESSED,
        };
        WriterProperties::builder()
            .set_compression(compression)
            .set_data_page_size_limit(self.page_size_bytes)
            .set_dictionary_enabled(self.enable_dictionary)
            .set_dictionary_page_size_limit(self.page_size_bytes.max(1 << 20))
            .set_writer_version(match self.writer_version {
                ParquetWriterVersion::V1 => WriterVersion::PARQUET_1_0,
                ParquetWriterVersion::V2 => WriterVersion::PARQUET_2_0,
            })
            .set_max_row_group_row_count(None)
            .set_max_row_group_bytes(Some(self.block_size_bytes))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
            .build()
    }
}

pub(super) fn build<W: Write + Send + 'static>(
    out: W,
    schema: &Schema,
    deserializer: &Deserializer,
    options: &ParquetOptions,
) -> Result<(RecordBatchBuilder, ArrowWriter<W>), ConvertError> {
    options.validate()?;
    let builder = RecordBatchBuilder::new(schema, deserializer)?;
    let writer = ArrowWriter::try_new(out, builder.schema(), Some(options.properties())).map_err(
        |e| match e {
            parquet::errors::ParquetError::External(inner) => {
                match inner.downcast::<std::io::Error>() {
                    Ok(io) => ConvertError::Io(*io),
                    Err(other) => ConvertError::Unsupported {
                        format: "Parquet",
                        message: other.to_string(),
                    },
                }
            }
            other => ConvertError::Unsupported {
                format: "Parquet",
                message: other.to_string(),
            },
        },
    )?;
    Ok((builder, writer))
}

fn write_error(e: parquet::errors::ParquetError) -> EncodeError {
    // With the schema checked at construction, what fails is the writer
    // underneath (disk full, S3 part upload): retriable with a fresh object.
    match e {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<std::io::Error>() {
                Ok(io) => EncodeError::Io(*io),
                Err(other) => EncodeError::Io(std::io::Error::other(other)),
            }
        }
        other => EncodeError::Io(std::io::Error::other(format!("Parquet writer: {other}"))),
    }
}

impl<W: Write + Send> BatchWriter<W> for ArrowWriter<W> {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), EncodeError> {
        self.write(batch).map_err(write_error)
    }

    fn finish(self) -> Result<W, EncodeError> {
        let mut out = self.into_inner().map_err(write_error)?;
        out.flush()?;
        Ok(out)
    }

    fn buffered_bytes(&self) -> usize {
        self.memory_size()
    }
}
