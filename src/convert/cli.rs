//! The `sluice convert` and `sluice schema discover` commands (argument
//! types derive clap so `main.rs` only adds two variants).
//!
//! `sluice convert INPUT... --schema SCHEMA.toml -o OUT` reads JSON Lines
//! (one record per line; blank lines skipped), writes one Parquet file, and
//! writes each bad record to `OUT.errors.jsonl` as a Firehose error document
//! (also reported on stderr with file and line). Bad records are not a
//! failure: the exit code is 0 unless reading or writing failed (1) or the
//! arguments, schema or options are invalid (2).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::discover::Discoverer;
use super::{Deserializer, ParquetCompression, ParquetOptions, Schema, error_document};
use crate::encode::{EncodeError, Encoder};

/// Arguments of `sluice convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// JSON Lines input files (`-` reads stdin), converted in order into one output.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Schema file: `[[schema]]` tables with `name` and `type` (Glue type strings).
    #[arg(long)]
    pub schema: PathBuf,
    /// Output format: `parquet` or `orc`.
    #[arg(long, default_value = "parquet")]
    pub format: String,
    /// Compression: snappy, gzip, zstd or uncompressed.
    #[arg(long, default_value = "snappy")]
    pub compression: String,
    /// JSON deserializer: `openx` or `hive`.
    #[arg(long, default_value = "openx")]
    pub deserializer: String,
    /// OpenX: match keys to column names case-sensitively (CaseInsensitive=false).
    #[arg(long)]
    pub case_sensitive: bool,
    /// OpenX ColumnToJsonKeyMappings entry, `COLUMN=JSON_KEY`; repeatable.
    #[arg(long = "map-key", value_name = "COLUMN=KEY")]
    pub map_keys: Vec<String>,
    /// OpenX ConvertDotsInJsonKeysToUnderscores.
    #[arg(long)]
    pub dots_to_underscores: bool,
    /// Hive TimestampFormats entry (a Joda pattern or `millis`); repeatable.
    #[arg(long = "timestamp-format")]
    pub timestamp_formats: Vec<String>,
    /// Parquet row-group target in bytes (BlockSizeBytes).
    #[arg(long, default_value_t = 256 << 20)]
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
    /// Output file.
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

fn deserializer_of(args: &ConvertArgs) -> Result<Deserializer, String> {
    match args.deserializer.to_ascii_lowercase().as_str() {
        "openx" => {
            let mut mappings = std::collections::BTreeMap::new();
            for entry in &args.map_keys {
                let Some((column, key)) = entry.split_once('=') else {
                    return Err(format!("--map-key `{entry}`: expected COLUMN=KEY"));
                };
                mappings.insert(column.to_owned(), key.to_owned());
            }
            Ok(Deserializer::OpenX {
                case_insensitive: !args.case_sensitive,
                column_to_json_key_mappings: mappings,
                convert_dots_in_json_keys_to_underscores: args.dots_to_underscores,
            })
        }
        "hive" => Ok(Deserializer::Hive {
            timestamp_formats: args.timestamp_formats.clone(),
        }),
        other => Err(format!("--deserializer `{other}`: expected openx or hive")),
    }
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
    let schema = match std::fs::read_to_string(&args.schema)
        .map_err(|e| e.to_string())
        .and_then(|text| Schema::from_toml(&text))
    {
        Ok(schema) => schema,
        Err(e) => {
            eprintln!("error: schema {}: {e}", args.schema.display());
            return 2;
        }
    };
    let deserializer = match deserializer_of(args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
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
            match super::parquet(file, &schema, &deserializer, &options) {
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
            match super::orc::orc(file, &schema, &deserializer, &options) {
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
            eprintln!(
                "converted {} of {} records to {}; {} failed{}",
                summary.converted,
                summary.records,
                args.output.display(),
                summary.failed,
                if summary.failed > 0 {
                    format!(" (see {})", errors_path(&args.output).display())
                } else {
                    String::new()
                }
            );
            0
        }
        Err(e) => {
            let _ = std::fs::remove_file(&args.output);
            eprintln!("error: {e}");
            1
        }
    }
}

/// `OUT.errors.jsonl` next to `OUT`.
pub fn errors_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".errors.jsonl");
    PathBuf::from(name)
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
    let mut line = Vec::with_capacity(64 * 1024);
    for input in &args.inputs {
        let mut reader =
            open_input(input).map_err(|e| format!("cannot open {}: {e}", input.display()))?;
        let mut line_no: u64 = 0;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("reading {}: {e}", input.display()))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            bytes_read += n as u64;
            let Some(record) = record_of(&line) else {
                continue;
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
                        w.write_all(&error_document(record, now_ms(), code, &message))
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
        }
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
            let mut line = Vec::new();
            'files: for path in files {
                let mut reader = match open_input(path) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("error: cannot open {}: {e}", path.display());
                        return 1;
                    }
                };
                loop {
                    if max_records.is_some_and(|max| d.records() >= max) {
                        break 'files;
                    }
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("error: reading {}: {e}", path.display());
                            return 1;
                        }
                    }
                    if let Some(record) = record_of(&line) {
                        d.add(record);
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
