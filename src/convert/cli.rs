//! The `sluice convert` and `sluice schema discover` commands (argument
//! types derive clap so `main.rs` only adds two variants).
//!
//! `sluice convert INPUT... --schema FILE -o OUT` reads JSON Lines (one
//! record per line; blank lines skipped), writes one Parquet or ORC file
//! (`--format`), and writes each bad record to `OUT.errors.jsonl` as a
//! Firehose error document (also reported on stderr with file and line).
//!
//! `--schema` takes either a schema file (`[[schema]]` tables, what
//! `sluice schema discover` prints) or a daemon stream config (native TOML
//! or Firehose JSON, validated as `sluice validate` does): then the columns
//! *and the deserializer settings* come from the config's format section
//! (`deserializer`, `case_insensitive`, `column_to_json_key_mappings`,
//! `convert_dots_in_json_keys_to_underscores`, `timestamp_formats`), so a
//! backfill reads records exactly as the daemon would. Deserializer flags
//! add to the config's settings (`--map-key` overrides a column's mapping);
//! a flag for the other deserializer is refused. The output format and its
//! options always come from the flags.
//!
//! Exit codes: 0 when every record converted (or at most `--max-errors`
//! failed); 1 when more records failed than that (the output still holds
//! the good ones), or reading or writing failed; 2 when the arguments,
//! schema, config or options are invalid.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::discover::Discoverer;
use super::{Deserializer, ParquetCompression, ParquetOptions, Schema, WriterThread};
use crate::encode::{EncodeError, Encoder};
use crate::error::{Classify, Fault};
use crate::error_doc::{ErrorDocument, Failed};

/// Why `sluice convert` stops or fails.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An argument is invalid or contradicts the schema file.
    #[error("{0}")]
    Usage(String),
    /// The `--schema` file cannot be used.
    #[error("schema {path}: {message}")]
    Schema {
        /// The `--schema` argument.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The `--schema` file is a daemon config that does not validate.
    #[error("--schema {path} is a stream config that does not validate:\n{source}")]
    Config {
        /// The `--schema` argument.
        path: PathBuf,
        /// The config's own errors, each naming its file, place and option.
        source: crate::config::ConfigErrors,
    },
    /// More records failed than `--max-errors` allows.
    #[error(
        "{failed} of {records} records failed, more than --max-errors {max_errors} allows (see {errors})"
    )]
    TooManyFailed {
        /// Records that failed.
        failed: u64,
        /// Records read.
        records: u64,
        /// The allowed number.
        max_errors: u64,
        /// The error documents.
        errors: String,
    },
}

impl Classify for CliError {
    fn is_retriable(&self) -> bool {
        false
    }
    fn fault(&self) -> Fault {
        match self {
            CliError::TooManyFailed { .. } => Fault::Data,
            CliError::Config { source, .. } => source.fault(),
            CliError::Usage(_) | CliError::Schema { .. } => Fault::Config,
        }
    }
}

impl CliError {
    /// The process exit code: 2 for what the invocation got wrong, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.fault() == Fault::Config { 2 } else { 1 }
    }
}

/// Arguments of `sluice convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// JSON Lines input files (`-` reads stdin), converted in order into one output.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Schema file (`[[schema]]` tables with `name` and `type`, as `schema discover`
    /// prints), or a daemon stream config (TOML or Firehose JSON): then its columns and
    /// deserializer settings (key mappings included) are used; flags add to them.
    #[arg(long)]
    pub schema: PathBuf,
    /// Output format: `parquet` or `orc`.
    #[arg(long, default_value = "parquet")]
    pub format: String,
    /// Compression, the same names for Parquet and ORC: snappy, gzip (= zlib), zstd,
    /// uncompressed (= none).
    #[arg(long, default_value = "snappy")]
    pub compression: String,
    /// JSON deserializer: `openx` or `hive` [default: openx, or the config's].
    #[arg(long)]
    pub deserializer: Option<String>,
    /// Exit 0 although up to N records failed; with 0, any failed record exits 1.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_errors: u64,
    /// OpenX: match keys to column names case-sensitively (CaseInsensitive=false).
    #[arg(long)]
    pub case_sensitive: bool,
    /// OpenX ColumnToJsonKeyMappings entry, `COLUMN=JSON_KEY`; repeatable.
    #[arg(long = "map-key", value_name = "COLUMN=KEY")]
    pub map_keys: Vec<String>,
    /// OpenX ConvertDotsInJsonKeysToUnderscores.
    #[arg(long)]
    pub dots_to_underscores: bool,
    /// Hive TimestampFormats entry (a Joda pattern, `Z` for an offset, or `millis`);
    /// repeatable. (OpenX takes none: it reads `yyyy-MM-ddTHH:mm:ss[.f]` with `Z` or
    /// `±HH:MM`, `yyyy-MM-dd HH:mm:ss[.f]` and epoch numbers.)
    #[arg(long = "timestamp-format")]
    pub timestamp_formats: Vec<String>,
    /// Parquet row-group target in bytes (BlockSizeBytes). 64 MiB rather than the
    /// daemon's 256 MiB (Firehose's default): a row group is held in memory until it is
    /// written, and a backfill's one file would otherwise hold 256 MiB; measured on 1.3 GB
    /// of input (docs/benchmarks), peak RSS 293 -> 105 MiB for 2% more output, and DuckDB
    /// scans the file faster (more row groups to read in parallel).
    #[arg(long, default_value_t = 64 << 20)]
    pub block_size_bytes: usize,
    /// Parquet page size in bytes (PageSizeBytes).
    #[arg(long, default_value_t = 1 << 20)]
    pub page_size_bytes: usize,
    /// Disable dictionary encoding (EnableDictionaryCompression=false).
    #[arg(long)]
    pub no_dictionary: bool,
    /// Parquet writer version: V1 or V2.
    #[arg(long, default_value = "V1")]
    pub writer_version: String,
    /// Output file (Parquet or ORC); bad records go to OUT.errors.jsonl.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

/// `sluice schema` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SchemaCommand {
    /// Infer a schema from JSON Lines files and print it as TOML.
    Discover {
        /// JSON Lines files (`-` reads stdin).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Stop after this many records in total.
        #[arg(long)]
        max_records: Option<u64>,
    },
}

fn open_input(path: &Path) -> io::Result<Box<dyn BufRead>> {
    if path == Path::new("-") {
        Ok(Box::new(BufReader::with_capacity(1 << 20, io::stdin())))
    } else {
        Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            File::open(path)?,
        )))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Calls `each` with every line of `reader`, its `\n` included (the last
/// line may lack one). Lines that lie whole in the reader's buffer (1 MiB,
/// so nearly all) are passed in place; one across the buffer's end is
/// gathered in `carry`. Copying every line out, as `read_until` does, was
/// about 3% of `sluice convert`'s CPU.
fn for_each_line<E>(
    reader: &mut dyn BufRead,
    carry: &mut Vec<u8>,
    read_error: impl Fn(io::Error) -> E,
    mut each: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    carry.clear();
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        if buf.is_empty() {
            if !carry.is_empty() {
                each(carry)?;
                carry.clear();
            }
            return Ok(());
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', buf) {
            let line = &buf[start..=end];
            if carry.is_empty() {
                each(line)?;
            } else {
                carry.extend_from_slice(line);
                each(carry)?;
                carry.clear();
            }
            start = end + 1;
        }
        carry.extend_from_slice(&buf[start..]);
        let used = buf.len();
        reader.consume(used);
    }
}

/// Strips the line ending; `None` for a blank line.
fn record_of(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(line)
    }
}

/// Reads `--schema`: a schema file, or a daemon config whose schema and
/// deserializer are used (see the module docs).
fn load_schema(path: &Path) -> Result<(Schema, Option<Deserializer>), CliError> {
    let schema_err = |message: String| CliError::Schema {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| schema_err(e.to_string()))?;
    // A schema file has top-level `schema` tables; a stream config has a
    // `destination` (TOML) or is a JSON object (Firehose's shape).
    let is_config = text.trim_start().starts_with('{')
        || text
            .parse::<toml::Table>()
            .is_ok_and(|t| !t.contains_key("schema") && t.contains_key("destination"));
    if !is_config {
        return Schema::from_toml(&text)
            .map(|s| (s, None))
            .map_err(schema_err);
    }
    let cwd = std::env::current_dir().map_err(|e| schema_err(e.to_string()))?;
    let config = crate::config::load(path, &cwd).map_err(|source| CliError::Config {
        path: path.to_owned(),
        source,
    })?;
    let Some(format) = config.destination.format.as_deref() else {
        return Err(schema_err(
            "the stream config has no format conversion (no columns to use)".into(),
        ));
    };
    match &format.schema {
        crate::config::SchemaSource::Inline(schema) => {
            Ok((schema.clone(), Some(format.deserializer.clone())))
        }
        crate::config::SchemaSource::Glue(glue) => Err(schema_err(format!(
            "the columns are in Glue table {}.{}, which convert does not read; \
             put them in a schema file (`[[schema]]` tables)",
            glue.database, glue.table
        ))),
    }
}

/// The deserializer: the config's (when `--schema` is a config) or the
/// `--deserializer` one, with the flags' settings added.
fn deserializer_of(
    args: &ConvertArgs,
    from_config: Option<Deserializer>,
) -> Result<Deserializer, CliError> {
    let usage = |m: String| Err(CliError::Usage(m));
    let mut d = match (args.deserializer.as_deref(), from_config) {
        (None, Some(d)) => d,
        (named, config) => {
            let name = named.unwrap_or("openx").to_ascii_lowercase();
            let d = match name.as_str() {
                "openx" => Deserializer::default(),
                "hive" => Deserializer::Hive {
                    timestamp_formats: Vec::new(),
                },
                other => return usage(format!("--deserializer `{other}`: expected openx or hive")),
            };
            match config {
                Some(c) if std::mem::discriminant(&c) != std::mem::discriminant(&d) => {
                    return usage(format!(
                        "--deserializer {name} contradicts the config in --schema, which uses the other one"
                    ));
                }
                Some(c) => c,
                None => d,
            }
        }
    };
    match &mut d {
        Deserializer::OpenX {
            case_insensitive,
            column_to_json_key_mappings,
            convert_dots_in_json_keys_to_underscores,
        } => {
            if !args.timestamp_formats.is_empty() {
                return usage("--timestamp-format applies to the hive deserializer only".into());
            }
            for entry in &args.map_keys {
                let Some((column, key)) = entry.split_once('=') else {
                    return usage(format!("--map-key `{entry}`: expected COLUMN=KEY"));
                };
                column_to_json_key_mappings.insert(column.to_owned(), key.to_owned());
            }
            *case_insensitive &= !args.case_sensitive;
            *convert_dots_in_json_keys_to_underscores |= args.dots_to_underscores;
        }
        Deserializer::Hive { timestamp_formats } => {
            if !args.map_keys.is_empty() || args.case_sensitive || args.dots_to_underscores {
                return usage(
                    "--map-key, --case-sensitive and --dots-to-underscores apply to the openx \
                     deserializer only"
                        .into(),
                );
            }
            timestamp_formats.extend(args.timestamp_formats.iter().cloned());
        }
    }
    Ok(d)
}

/// Counts of one conversion.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConvertSummary {
    /// Records read (non-blank lines).
    pub records: u64,
    /// Records written to the output.
    pub converted: u64,
    /// Records written to the errors file.
    pub failed: u64,
}

/// How many bad records are described on stderr before only counting.
const MAX_REPORTED: u64 = 100;

/// Runs `sluice convert`; returns the process exit code (0, 1 or 2).
pub fn convert(args: &ConvertArgs) -> u8 {
    keep_freed_memory();
    let (schema, deserializer) = match load_schema(&args.schema)
        .and_then(|(schema, from_config)| Ok((schema, deserializer_of(args, from_config)?)))
    {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    let encoder: Box<dyn Encoder<BufWriter<File>>> = match args.format.to_ascii_lowercase().as_str()
    {
        "parquet" => {
            let compression = match args.compression.parse::<ParquetCompression>() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: --compression: {e}");
                    return 2;
                }
            };
            let writer_version = match args.writer_version.to_ascii_uppercase().as_str() {
                "V1" => super::ParquetWriterVersion::V1,
                "V2" => super::ParquetWriterVersion::V2,
                other => {
                    eprintln!("error: --writer-version `{other}`: expected V1 or V2");
                    return 2;
                }
            };
            let options = ParquetOptions {
                compression,
                page_size_bytes: args.page_size_bytes,
                block_size_bytes: args.block_size_bytes,
                enable_dictionary: !args.no_dictionary,
                writer_version,
            };
            if let Err(e) = options.validate() {
                eprintln!("error: {e}");
                return 2;
            }
            let file = match File::create(&args.output) {
                Ok(f) => BufWriter::with_capacity(1 << 20, f),
                Err(e) => {
                    eprintln!("error: cannot create {}: {e}", args.output.display());
                    return 1;
                }
            };
            // Parsing and encoding overlap on two threads (see `pipeline`).
            match super::parquet_with(file, &schema, &deserializer, &options, WriterThread::Own) {
                Ok(encoder) => encoder,
                Err(e) => {
                    let _ = std::fs::remove_file(&args.output);
                    eprintln!("error: {e}");
                    return if matches!(e, super::ConvertError::Io(_)) {
                        1
                    } else {
                        2
                    };
                }
            }
        }
        "orc" => {
            let compression = match args.compression.parse::<super::orc::OrcCompression>() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: --compression: {e}");
                    return 2;
                }
            };
            let options = super::orc::OrcOptions {
                compression,
                ..Default::default()
            };
            let file = match File::create(&args.output) {
                Ok(f) => BufWriter::with_capacity(1 << 20, f),
                Err(e) => {
                    eprintln!("error: cannot create {}: {e}", args.output.display());
                    return 1;
                }
            };
            match super::orc::orc_with(file, &schema, &deserializer, &options, WriterThread::Own) {
                Ok(encoder) => encoder,
                Err(e) => {
                    let _ = std::fs::remove_file(&args.output);
                    eprintln!("error: {e}");
                    return if matches!(e, super::ConvertError::Io(_)) {
                        1
                    } else {
                        2
                    };
                }
            }
        }
        other => {
            eprintln!("error: --format must be parquet or orc, got `{other}`");
            return 2;
        }
    };
    match run(args, encoder) {
        Ok(summary) => {
            let errors = errors_path(&args.output);
            eprintln!(
                "converted {} of {} records to {}; {} failed{}",
                summary.converted,
                summary.records,
                args.output.display(),
                summary.failed,
                if summary.failed > 0 {
                    format!(" (error documents in {})", errors.display())
                } else {
                    String::new()
                }
            );
            match check_failures(&summary, args.max_errors, &errors) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e}");
                    e.exit_code()
                }
            }
        }
        Err(e) => {
            let _ = std::fs::remove_file(&args.output);
            eprintln!("error: {e}");
            1
        }
    }
}

/// A conversion with more failed records than `max_errors` is a failure
/// (the output is kept: it holds every good record).
fn check_failures(
    summary: &ConvertSummary,
    max_errors: u64,
    errors: &Path,
) -> Result<(), CliError> {
    if summary.failed > max_errors {
        return Err(CliError::TooManyFailed {
            failed: summary.failed,
            records: summary.records,
            max_errors,
            errors: errors.display().to_string(),
        });
    }
    Ok(())
}

/// `OUT.errors.jsonl` next to `OUT`.
pub fn errors_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".errors.jsonl");
    PathBuf::from(name)
}

/// Tells glibc's allocator to keep memory this process frees for its next
/// allocations instead of handing it back to the kernel at once.
///
/// Every batch frees its Arrow arrays and every page its buffers, and the next
/// ones ask for the same sizes again. By default glibc maps each allocation
/// above its (adaptive) threshold afresh and unmaps it when freed, and trims
/// the heap's top once 128 KiB of it are free (twice the mmap threshold, once
/// that has adapted), so those pages came back zeroed through page faults. On
/// 500,000 records: 19,400 faults, 0.07-0.10 s of kernel time (3 runs) and
/// 0.60 s CPU (median of 7); with a fixed 32 MiB threshold (glibc's cap) and
/// trimming only past 128 MiB, 10,900 faults and 0.53 s, peak RSS 52 -> 56
/// MiB. Only `convert`, a run that ends: the daemon keeps glibc's defaults,
/// so an idle daemon gives memory back.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning parameters; it is
    // called before this command allocates from another thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

fn run(
    args: &ConvertArgs,
    mut encoder: Box<dyn Encoder<BufWriter<File>>>,
) -> Result<ConvertSummary, String> {
    let errors_at = errors_path(&args.output);
    match std::fs::remove_file(&errors_at) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove old {}: {e}", errors_at.display())),
    }
    let mut errors: Option<BufWriter<File>> = None;
    let mut summary = ConvertSummary::default();
    let progress = io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_progress = started;
    let mut bytes_read: u64 = 0;
    let mut carry = Vec::new();
    for input in &args.inputs {
        let mut reader =
            open_input(input).map_err(|e| format!("cannot open {}: {e}", input.display()))?;
        let mut line_no: u64 = 0;
        let read_error = |e: io::Error| format!("reading {}: {e}", input.display());
        for_each_line(&mut reader, &mut carry, read_error, |line| {
            line_no += 1;
            bytes_read += line.len() as u64;
            let Some(record) = record_of(line) else {
                return Ok(());
            };
            summary.records += 1;
            match encoder.append(record) {
                Ok(()) => summary.converted += 1,
                Err(EncodeError::Record { code, message }) => {
                    summary.failed += 1;
                    if summary.failed <= MAX_REPORTED {
                        eprintln!("{}:{line_no}: {code}: {message}", input.display());
                    } else if summary.failed == MAX_REPORTED + 1 {
                        eprintln!("(further bad records are only counted)");
                    }
                    if errors.is_none() {
                        let file = File::create(&errors_at)
                            .map_err(|e| format!("cannot create {}: {e}", errors_at.display()))?;
                        errors = Some(BufWriter::new(file));
                    }
                    if let Some(w) = errors.as_mut() {
                        w.write_all(
                            &ErrorDocument::new(
                                Failed::FormatConversion,
                                record,
                                now_ms(),
                                code,
                                &message,
                            )
                            .to_line(),
                        )
                        .map_err(|e| format!("writing {}: {e}", errors_at.display()))?;
                    }
                }
                Err(e) => return Err(format!("writing {}: {e}", args.output.display())),
            }
            if progress
                && summary.records % 4096 == 0
                && last_progress.elapsed() > Duration::from_millis(200)
            {
                last_progress = Instant::now();
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                eprint!(
                    "\r{} records, {:.1} MiB read, {:.1} MiB/s, {} failed   ",
                    summary.records,
                    bytes_read as f64 / 1048576.0,
                    bytes_read as f64 / 1048576.0 / secs,
                    summary.failed
                );
            }
            Ok(())
        })?;
    }
    if progress {
        eprint!("\r\x1b[K");
    }
    let out = encoder
        .finish()
        .map_err(|e| format!("writing {}: {e}", args.output.display()))?;
    out.into_inner()
        .map_err(|e| format!("writing {}: {}", args.output.display(), e.error()))?
        .sync_all()
        .map_err(|e| format!("writing {}: {e}", args.output.display()))?;
    if let Some(w) = errors {
        w.into_inner()
            .map_err(|e| format!("writing {}: {}", errors_at.display(), e.error()))?
            .sync_all()
            .map_err(|e| format!("writing {}: {e}", errors_at.display()))?;
    }
    Ok(summary)
}

/// Runs `sluice schema ...`; returns the process exit code.
pub fn schema(command: &SchemaCommand) -> u8 {
    match command {
        SchemaCommand::Discover { files, max_records } => {
            let mut d = Discoverer::new();
            let mut carry = Vec::new();
            for path in files {
                let mut reader = match open_input(path) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("error: cannot open {}: {e}", path.display());
                        return 1;
                    }
                };
                // `Err(None)`: enough records; `Err(Some(..))`: a read failed.
                let read = for_each_line(
                    &mut reader,
                    &mut carry,
                    |e| Some(format!("reading {}: {e}", path.display())),
                    |line| {
                        if max_records.is_some_and(|max| d.records() >= max) {
                            return Err(None);
                        }
                        if let Some(record) = record_of(line) {
                            d.add(record);
                        }
                        Ok(())
                    },
                );
                match read {
                    Ok(()) => {}
                    Err(None) => break,
                    Err(Some(message)) => {
                        eprintln!("error: {message}");
                        return 1;
                    }
                }
            }
            if d.skipped() > 0 {
                eprintln!("skipped {} lines that are not JSON objects", d.skipped());
            }
            if d.records() == 0 {
                eprintln!("error: no JSON object records found");
                return 1;
            }
            eprintln!("# inferred from {} records", d.records());
            print!("{}", d.schema().to_toml());
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::Parser as _;

    use super::*;

    /// Every line comes out whole and in order whatever the buffer's size:
    /// lines inside one buffer, across two or more, and a last line
    /// without its newline; an error from `each` stops the reading.
    #[test]
    fn lines_come_out_whole_across_buffer_ends() {
        let text = b"{\"a\":1}\n\n{\"b\":22}\r\nlonger line across buffers\nlast";
        let expected: Vec<&[u8]> = vec![
            b"{\"a\":1}\n",
            b"\n",
            b"{\"b\":22}\r\n",
            b"longer line across buffers\n",
            b"last",
        ];
        for capacity in [1, 2, 3, 7, 64, 1 << 20] {
            let mut reader = BufReader::with_capacity(capacity, &text[..]);
            let mut carry = b"stale".to_vec();
            let mut got = Vec::new();
            for_each_line(
                &mut reader,
                &mut carry,
                |e| e.to_string(),
                |line| {
                    got.push(line.to_vec());
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(got, expected, "buffer of {capacity}");
        }
        let mut reader = BufReader::with_capacity(3, &text[..]);
        let mut seen = 0;
        let stopped = for_each_line(
            &mut reader,
            &mut Vec::new(),
            |e| e.to_string(),
            |_| {
                seen += 1;
                if seen == 2 {
                    Err("stop".to_string())
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!((stopped, seen), (Err("stop".to_string()), 2));
        let mut empty = BufReader::new(&b""[..]);
        for_each_line(
            &mut empty,
            &mut Vec::new(),
            |e| e.to_string(),
            |_| panic!("no line in an empty input"),
        )
        .unwrap();
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConvertArgs,
    }

    fn args(extra: &[&str]) -> ConvertArgs {
        let base = ["convert", "in.jsonl", "--schema", "s.toml", "-o", "out"];
        Cli::parse_from(base.iter().chain(extra)).args
    }

    fn openx(mappings: &[(&str, &str)]) -> Deserializer {
        Deserializer::OpenX {
            case_insensitive: true,
            column_to_json_key_mappings: mappings
                .iter()
                .map(|(c, k)| (c.to_string(), k.to_string()))
                .collect::<BTreeMap<_, _>>(),
            convert_dots_in_json_keys_to_underscores: false,
        }
    }

    #[test]
    fn flags_add_to_the_config_deserializer() {
        let config = openx(&[("ts", "timestamp"), ("uid", "user")]);
        let got = deserializer_of(&args(&["--map-key", "uid=u"]), Some(config.clone())).unwrap();
        assert_eq!(got, openx(&[("ts", "timestamp"), ("uid", "u")]));
        let got = deserializer_of(&args(&["--deserializer", "OpenX"]), Some(config)).unwrap();
        assert_eq!(got, openx(&[("ts", "timestamp"), ("uid", "user")]));
        let hive = Deserializer::Hive {
            timestamp_formats: vec!["millis".into()],
        };
        let got = deserializer_of(&args(&["--timestamp-format", "yyyy"]), Some(hive)).unwrap();
        assert_eq!(
            got,
            Deserializer::Hive {
                timestamp_formats: vec!["millis".into(), "yyyy".into()]
            }
        );
        assert_eq!(deserializer_of(&args(&[]), None).unwrap(), openx(&[]));
    }

    #[test]
    fn contradicting_or_inapplicable_flags_are_usage_errors() {
        for (extra, config) in [
            (&["--deserializer", "hive"][..], Some(openx(&[]))),
            (&["--timestamp-format", "millis"][..], Some(openx(&[]))),
            (&["--timestamp-format", "millis"][..], None),
            (&["--deserializer", "hive", "--map-key", "a=b"][..], None),
            (&["--deserializer", "json"][..], None),
            (&["--map-key", "no-equals"][..], None),
        ] {
            let e = deserializer_of(&args(extra), config).unwrap_err();
            assert!(matches!(e, CliError::Usage(_)), "{extra:?}: {e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn failed_records_fail_the_run_beyond_max_errors() {
        let summary = ConvertSummary {
            records: 10,
            converted: 7,
            failed: 3,
        };
        let errors = Path::new("out.errors.jsonl");
        assert!(check_failures(&summary, 3, errors).is_ok());
        let e = check_failures(&summary, 2, errors).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert_eq!(e.fault(), Fault::Data);
        assert_eq!(
            e.to_string(),
            "3 of 10 records failed, more than --max-errors 2 allows (see out.errors.jsonl)"
        );
        let clean = ConvertSummary {
            failed: 0,
            ..summary
        };
        assert!(check_failures(&clean, 0, errors).is_ok());
    }
}
