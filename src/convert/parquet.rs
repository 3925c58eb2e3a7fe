//! The Parquet encoder: [`RecordBatchBuilder`] batches into an arrow-rs
//! `ArrowWriter` that writes straight into the staging writer, opened after a
//! sample of rows has chosen which columns get a dictionary ([`ParquetWriter`]).
//!
//! Writer settings follow Firehose's `ParquetSerDe` (see [`ParquetOptions`]);
//! besides those, statistics are kept per column chunk (min/max/null count
//! in the footer, as parquet-mr writes them) rather than per page, which
//! saves CPU and bytes while keeping row-group pruning.

use std::io::Write;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder, WriterVersion,
};

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
    /// `EnableDictionaryCompression` (default true). Even then, a column whose
    /// first values are nearly all distinct gets no dictionary (see
    /// [`ParquetWriter`]), and one whose dictionary outgrows 1 MiB falls back
    /// to plain pages.
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

    fn properties_builder(&self) -> WriterPropertiesBuilder {
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
    }
}

pub(super) fn build<W: Write + Send + 'static>(
    out: W,
    schema: &Schema,
    deserializer: &Deserializer,
    options: &ParquetOptions,
) -> Result<(RecordBatchBuilder, ParquetWriter<W>), ConvertError> {
    options.validate()?;
    let builder = RecordBatchBuilder::new(schema, deserializer)?;
    let arrow_schema = builder.schema();
    // Converted now, so a schema Parquet cannot take fails here (the writer
    // itself opens after the sample); the leaves' paths serve the sample.
    let parquet_schema = parquet::arrow::ArrowSchemaConverter::new()
        .convert(&arrow_schema)
        .map_err(|e| ConvertError::Unsupported {
            format: "Parquet",
            message: e.to_string(),
        })?;
    let writer = ParquetWriter::Sampling {
        out,
        schema: arrow_schema,
        parquet_schema,
        properties: options.properties_builder(),
        dictionary: options.enable_dictionary,
        held: Vec::new(),
    };
    Ok((builder, writer))
}

/// Rows held back before the writer opens, to judge each column's dictionary.
const SAMPLE_ROWS: usize = 4096;
/// Values of a column looked at (of its first [`SAMPLE_ROWS`] rows).
const SAMPLE_VALUES: usize = 4096;
/// A column with fewer repeats than this among [`SAMPLE_VALUES`] values is
/// written without a dictionary (see [`ParquetWriter`]).
const MIN_REPEATS: usize = SAMPLE_VALUES / 20;

/// The Parquet writer of one file. It holds back the first [`SAMPLE_ROWS`]
/// rows, then opens arrow-rs's `ArrowWriter` with the dictionary off for
/// every column whose sample is nearly all distinct (under 5% repeats in
/// 4,096 values: by the birthday estimate n²/2r, about 40,000 distinct
/// values or more).
///
/// Why: such a column's dictionary does not pay for its CPU. A unique id,
/// timestamp or measurement outgrows the dictionary page limit (1 MiB:
/// 131,072 eight-byte values) and falls back to plain pages after hashing
/// and storing every value up to there. A column of tens of thousands of
/// values (zip codes, user names) may fit, but then every value is a hash
/// probe into a table larger than the CPU's cache, for an index that saves
/// a few bytes. Measured on the benchmark's clickstream (interleaved runs of
/// `sluice convert`): id, ts, price, score and msg off saved about 8% of its
/// CPU and made the file 26.6 -> 25.5 MB; then user.name and user.address.zip
/// (about 100,000 and 90,000 distinct values) off saved about 7% more (9
/// interleaved runs: user+sys median 1.14 -> 1.06 s) for 1.2 MB more file
/// (+5%), the choice DuckDB makes for those two columns.
/// `EnableDictionaryCompression=false` turns the dictionary off everywhere.
pub(super) enum ParquetWriter<W: Write + Send> {
    Sampling {
        out: W,
        schema: arrow_schema::SchemaRef,
        parquet_schema: parquet::schema::types::SchemaDescriptor,
        properties: WriterPropertiesBuilder,
        dictionary: bool,
        held: Vec<RecordBatch>,
    },
    Open(ArrowWriter<W>),
    /// Only while changing state.
    Gone,
}

impl<W: Write + Send> ParquetWriter<W> {
    /// Opens the `ArrowWriter` and writes the held batches into it.
    fn open(&mut self) -> Result<(), EncodeError> {
        if !matches!(self, ParquetWriter::Sampling { .. }) {
            return Ok(());
        }
        let ParquetWriter::Sampling {
            out,
            schema,
            parquet_schema,
            mut properties,
            dictionary,
            held,
        } = std::mem::replace(self, ParquetWriter::Gone)
        else {
            unreachable!("checked above")
        };
        if dictionary {
            for path in nearly_unique_columns(&parquet_schema, &held) {
                properties = properties.set_column_dictionary_enabled(path, false);
            }
        }
        let mut writer =
            ArrowWriter::try_new(out, schema, Some(properties.build())).map_err(write_error)?;
        for batch in &held {
            writer.write(batch).map_err(write_error)?;
        }
        *self = ParquetWriter::Open(writer);
        Ok(())
    }
}

/// The error of a writer that failed to open before: its output is gone.
fn gone() -> EncodeError {
    EncodeError::Io(std::io::Error::other(
        "Parquet writer: it failed before; the object must be rewritten",
    ))
}

/// The Parquet paths of the leaf columns whose values in `batches` are
/// nearly all distinct. Leaves are visited in the order Parquet numbers
/// them (struct fields, list elements, map keys then values, depth first).
fn nearly_unique_columns(
    descr: &parquet::schema::types::SchemaDescriptor,
    batches: &[RecordBatch],
) -> Vec<parquet::schema::types::ColumnPath> {
    let mut leaves: Vec<Vec<arrow_array::ArrayRef>> = Vec::new();
    for batch in batches {
        let mut of_batch = Vec::new();
        for column in batch.columns() {
            collect_leaves(column, &mut of_batch);
        }
        if leaves.is_empty() {
            leaves = of_batch.into_iter().map(|a| vec![a]).collect();
        } else {
            for (all, a) in leaves.iter_mut().zip(of_batch) {
                all.push(a);
            }
        }
    }
    if leaves.len() != descr.num_columns() {
        return Vec::new(); // a shape this walk does not know: keep the defaults
    }
    leaves
        .iter()
        .zip(descr.columns())
        .filter(|(arrays, _)| nearly_unique(arrays))
        .map(|(_, column)| column.path().clone())
        .collect()
}

fn collect_leaves(array: &arrow_array::ArrayRef, out: &mut Vec<arrow_array::ArrayRef>) {
    use arrow_array::cast::AsArray;
    use arrow_schema::DataType;
    match array.data_type() {
        DataType::Struct(_) => {
            for child in array.as_struct().columns() {
                collect_leaves(child, out);
            }
        }
        DataType::List(_) => collect_leaves(array.as_list::<i32>().values(), out),
        DataType::LargeList(_) => collect_leaves(array.as_list::<i64>().values(), out),
        DataType::Map(_, _) => {
            let map = array.as_map();
            collect_leaves(map.keys(), out);
            collect_leaves(map.values(), out);
        }
        _ => out.push(array.clone()),
    }
}

/// Whether the first [`SAMPLE_VALUES`] non-null values of `arrays` repeat
/// fewer than [`MIN_REPEATS`] times. Only byte strings and fixed-width
/// values are judged; a column with too few values keeps its dictionary.
fn nearly_unique(arrays: &[arrow_array::ArrayRef]) -> bool {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_schema::DataType;
    use std::hash::BuildHasher;
    // 64-bit hashes stand for the values: a collision only adds a repeat.
    let hasher = std::collections::hash_map::RandomState::new();
    let mut seen = std::collections::HashSet::with_capacity(SAMPLE_VALUES);
    let (mut values, mut repeats) = (0, 0);
    let mut look = |value: &[u8]| {
        values += 1;
        if !seen.insert(hasher.hash_one(value)) {
            repeats += 1;
        }
        // Stop as soon as the answer is known.
        values < SAMPLE_VALUES && repeats < MIN_REPEATS
    };
    for array in arrays {
        // Each value's bytes: between two offsets, or `width` bytes apiece.
        let (offsets, bytes): (Option<&[i32]>, &[u8]) = match array.data_type() {
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                (Some(a.value_offsets()), a.value_data())
            }
            DataType::Binary => {
                let a = array.as_binary::<i32>();
                (Some(a.value_offsets()), a.value_data())
            }
            t if t.is_primitive() => (None, &[]),
            _ => return false,
        };
        let data = array.to_data();
        let width = array.data_type().primitive_width().unwrap_or(0);
        let value = |i: usize| match offsets {
            Some(o) => &bytes[o[i] as usize..o[i + 1] as usize],
            None => {
                &data.buffers()[0][(data.offset() + i) * width..(data.offset() + i + 1) * width]
            }
        };
        if !(0..array.len())
            .filter(|&i| array.is_valid(i))
            .all(|i| look(value(i)))
        {
            break;
        }
    }
    values >= SAMPLE_VALUES && repeats < MIN_REPEATS
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

impl<W: Write + Send> BatchWriter<W> for ParquetWriter<W> {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), EncodeError> {
        match self {
            ParquetWriter::Sampling { held, .. } => {
                held.push(batch.clone());
                if held.iter().map(RecordBatch::num_rows).sum::<usize>() >= SAMPLE_ROWS {
                    self.open()?;
                }
                Ok(())
            }
            ParquetWriter::Open(writer) => writer.write(batch).map_err(write_error),
            ParquetWriter::Gone => Err(gone()),
        }
    }

    fn finish(mut self) -> Result<W, EncodeError> {
        self.open()?;
        let ParquetWriter::Open(writer) = self else {
            return Err(gone());
        };
        let mut out = writer.into_inner().map_err(write_error)?;
        out.flush()?;
        Ok(out)
    }

    fn buffered_bytes(&self) -> usize {
        match self {
            ParquetWriter::Sampling { held, .. } => {
                held.iter().map(RecordBatch::get_array_memory_size).sum()
            }
            ParquetWriter::Open(writer) => writer.memory_size(),
            ParquetWriter::Gone => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// Writes `rows` records through the Parquet encoder and returns, per
    /// leaf column path, whether its first column chunk has a dictionary.
    fn dictionaries(rows: usize, options: &ParquetOptions) -> Vec<(String, bool)> {
        let schema = Schema::parse([
            ("id", "bigint"),
            ("ts", "timestamp"),
            ("user", "struct<name:string,city:string,zip:string>"),
            ("tags", "array<string>"),
            ("score", "double"),
        ])
        .unwrap();
        let mut enc =
            crate::convert::parquet(Vec::new(), &schema, &Deserializer::default(), options)
                .unwrap();
        let cities = ["Oslo", "Lima", "Kyiv", "Pune"];
        for i in 0..rows {
            let record = format!(
                r#"{{"id":{i},"ts":{},"user":{{"name":"user-{}","city":"{}","zip":"{}"}},"tags":["t{}"],"score":{}}}"#,
                1_700_000_000_000u64 + i as u64 * 7,
                i % 3_700,
                cities[i % 4],
                i % 4_000,
                i % 3,
                i as f64 * 0.37
            );
            enc.append(record.as_bytes()).unwrap();
        }
        let bytes = bytes::Bytes::from(enc.finish().unwrap());
        let reader = SerializedFileReader::new(bytes).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows() as usize, rows);
        if rows == 0 {
            return Vec::new();
        }
        let group = reader.metadata().row_group(0);
        group
            .columns()
            .iter()
            .map(|c| {
                (
                    c.column_path().string(),
                    c.dictionary_page_offset().is_some(),
                )
            })
            .collect()
    }

    #[test]
    fn nearly_unique_columns_are_written_without_a_dictionary() {
        let got = dictionaries(20_000, &ParquetOptions::default());
        let expected = [
            ("id", false),
            ("ts", false),
            // 396 repeats (9.7%) among the first 4,096: kept.
            ("user.name", true),
            ("user.city", true),
            // 96 repeats (2.3%): a dictionary of 4,000 values for 20,000
            // rows would pay in size, but the sample cannot tell it from
            // 90,000 values for 500,000 rows, where it costs CPU for little.
            ("user.zip", false),
            ("tags.list.element", true),
            ("score", false),
        ];
        let expected: Vec<(String, bool)> =
            expected.iter().map(|(p, d)| (p.to_string(), *d)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn without_dictionary_compression_no_column_has_one() {
        let options = ParquetOptions {
            enable_dictionary: false,
            ..ParquetOptions::default()
        };
        assert!(dictionaries(20_000, &options).iter().all(|(_, d)| !d));
    }

    /// Fewer rows than the sample: the writer opens at the end and, with too
    /// few values to judge, keeps every dictionary; no rows is still a file.
    #[test]
    fn a_file_smaller_than_the_sample_keeps_its_dictionaries() {
        let got = dictionaries(100, &ParquetOptions::default());
        assert_eq!(got.len(), 7);
        assert!(got.iter().all(|(_, d)| *d), "{got:?}");
        assert!(dictionaries(0, &ParquetOptions::default()).is_empty());
    }
}
