//! Configuration: one file per delivery stream, in either of two shapes, parsed
//! into one validated [`StreamConfig`].
//!
//! - [`native`]: sluice's own TOML (`deny_unknown_fields`, units in names).
//! - [`firehose`]: the JSON document `aws firehose create-delivery-stream
//!   --cli-input-json` takes, so a Firehose user migrates by exporting a config.
//! - [`import`]: `sluice import`, a Firehose definition (that input, or a
//!   `describe-delivery-stream` output) rewritten as native TOML.
//!
//! Both shapes are parsed into raw serde structs, then validated into the typed
//! values below. Nothing downstream ever sees a raw config. Errors name the
//! offending option ([`ConfigError`]) and, as [`FileError`], the file and the
//! line and column of the key where the shape can tell (`suggest` computes
//! positions and the "did you mean" of an unknown key); [`load_all`] returns
//! the errors of every file at once ([`ConfigErrors`]). The rules both shapes
//! share (ranges, patterns, defaults) live once, in `validate`. Runtime knobs (listen address,
//! state directory, log level) are command-line flags, not config.

pub mod firehose;
mod format;
pub mod import;
pub mod native;
mod suggest;
mod transform;
mod validate;

pub use suggest::Position;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Classify, Fault};
use crate::partition::Prefix;

/// A validated delivery stream.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Delivery stream name: 1–64 characters of `[a-zA-Z0-9_.-]`, as Firehose.
    pub name: String,
    /// Firehose's destination version, part of every object name (`<name>-<version>-...`).
    pub version: u32,
    /// Where records come from.
    pub source: SourceConfig,
    /// Where and how objects are written.
    pub destination: DestinationConfig,
}

/// The record source of a stream.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// Firehose's Direct PUT API, backed by a local write-ahead log.
    DirectPut(DirectPutConfig),
    /// A Kinesis Data Stream (Firehose `KinesisStreamAsSource`).
    Kinesis(KinesisConfig),
}

/// Kinesis source settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisConfig {
    /// Stream name (from `stream_name` or the name part of a stream ARN).
    pub stream_name: String,
    /// Endpoint override; `None` = `AWS_ENDPOINT_URL_KINESIS` /
    /// `AWS_ENDPOINT_URL` or AWS's own endpoints.
    pub endpoint_url: Option<String>,
    /// Where to start shards that have no checkpoint.
    pub start: StartPosition,
    /// Pause between GetRecords calls on a shard that is caught up
    /// (Firehose polls each shard once per second).
    pub poll_interval: Duration,
    /// How often the shard list is refreshed (new shards after resharding).
    pub shard_sync_interval: Duration,
    /// `Limit` of each GetRecords call (1-10,000).
    pub max_records_per_call: i32,
    /// Timeout of one Kinesis request attempt.
    pub attempt_timeout: Duration,
}

impl KinesisConfig {
    /// Defaults for a stream: Firehose's once-per-second polling, shard
    /// list refreshed every 10 s, KCL's 10,000 records per call.
    pub fn defaults(stream_name: String) -> Self {
        KinesisConfig {
            stream_name,
            endpoint_url: None,
            start: StartPosition::AtCreation,
            poll_interval: Duration::from_secs(1),
            shard_sync_interval: Duration::from_secs(10),
            max_records_per_call: 10_000,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }
}

/// Where a shard without a checkpoint starts. Child shards of a known parent
/// always start at `TRIM_HORIZON` (after their parents ended), as in KCL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// Firehose's behaviour for a new delivery stream: records from the
    /// moment sluice first saw the stream (`AT_TIMESTAMP` of that moment,
    /// kept in the state directory), so records put just after start-up are
    /// never missed.
    AtCreation,
    /// The oldest record in the shard.
    TrimHorizon,
    /// Only records put after the reader starts.
    Latest,
    /// Records that arrived at or after this instant.
    AtTimestamp(jiff::Timestamp),
}

/// Direct PUT settings.
#[derive(Debug, Clone)]
pub struct DirectPutConfig {
    /// Cap on undelivered bytes in the write-ahead log; beyond it PutRecord and
    /// PutRecordBatch answer `ServiceUnavailableException` (backpressure).
    pub max_wal_bytes: u64,
}

/// Default write-ahead log cap: 1 GiB.
pub const DEFAULT_MAX_WAL_BYTES: u64 = 1 << 30;

/// Where output objects go and how they are named and encoded.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    /// The object store.
    pub target: Target,
    /// Key prefix for delivered objects (Firehose `Prefix`), already validated.
    pub prefix: Prefix,
    /// Key prefix for error outputs (Firehose `ErrorOutputPrefix`).
    pub error_output_prefix: Prefix,
    /// Size and time triggers.
    pub buffering: Buffering,
    /// Compression of raw (non-converted) output.
    pub compression: Compression,
    /// Extension appended to object names; `None` = the compression's default.
    pub file_extension: Option<String>,
    /// Time zone for `!{timestamp:...}` and the object name's timestamp.
    pub time_zone: jiff::tz::TimeZone,
    /// Name of that time zone as configured (for describing the stream).
    pub time_zone_name: String,
    /// Append `\n` after each record (Firehose's `AppendDelimiterToRecord` processor).
    pub append_delimiter: bool,
    /// Processors run on every record (Firehose `ProcessingConfiguration`
    /// other than `AppendDelimiterToRecord`).
    pub processors: crate::process::Processors,
    /// Record format conversion (Firehose `DataFormatConversionConfiguration`).
    pub format: Option<std::sync::Arc<FormatConfig>>,
    /// Dynamic partitioning (Firehose `DynamicPartitioningConfiguration`).
    pub dynamic_partitioning: Option<crate::buffer::Partitioning>,
    /// Source-record backup (Firehose `S3BackupMode` Enabled): every source
    /// record is also written, before any processor, below the backup prefix
    /// of the same bucket or directory, followed by `\n` when
    /// `append_delimiter` is set (so a backup object splits back into records).
    pub backup: Option<BackupConfig>,
}

/// JSON -> Parquet/ORC conversion.
#[derive(Debug, Clone)]
pub struct FormatConfig {
    /// Table schema: inline, or a Glue table read at start-up.
    pub schema: SchemaSource,
    /// OpenX or Hive JSON SerDe.
    pub deserializer: crate::convert::Deserializer,
    /// Output format and its options.
    pub output: OutputFormat,
}

/// Where a conversion's schema comes from.
#[derive(Debug, Clone)]
pub enum SchemaSource {
    /// Columns given in the config.
    Inline(crate::convert::Schema),
    /// A Glue Data Catalog table (Firehose `SchemaConfiguration`).
    Glue(GlueTable),
}

/// A Glue table holding the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlueTable {
    /// Database name.
    pub database: String,
    /// Table name.
    pub table: String,
    /// Region of the catalog; default: the process's region.
    pub region: Option<String>,
    /// Catalog (account) id; default: the caller's account.
    pub catalog_id: Option<String>,
    /// Table version; `None` = the latest.
    pub version_id: Option<String>,
    /// Endpoint override (native config only; else `AWS_ENDPOINT_URL_GLUE` / `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
}

/// Columnar output of a conversion.
#[derive(Debug, Clone)]
pub enum OutputFormat {
    /// Parquet (`ParquetSerDe`).
    Parquet(crate::convert::ParquetOptions),
    /// ORC (`OrcSerDe`).
    Orc(crate::convert::orc::OrcOptions),
}

/// Where and how source records are backed up.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// Backup key prefix (Firehose rules; the implicit `YYYY/MM/dd/HH/` applies).
    pub prefix: Prefix,
    /// Compression of backup objects.
    pub compression: Compression,
}

impl DestinationConfig {
    /// The extension appended to every delivered object name.
    pub fn extension(&self) -> &str {
        self.file_extension.as_deref().unwrap_or_else(|| {
            match self.format.as_deref().map(|f| &f.output) {
                Some(OutputFormat::Parquet(_)) => ".parquet",
                Some(OutputFormat::Orc(_)) => ".orc",
                None => self.compression.default_extension(),
            }
        })
    }
}

/// Object store of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local directory; keys become relative paths below it.
    Local {
        /// The directory (absolute after validation).
        path: PathBuf,
    },
    /// An S3 (or S3-compatible) bucket.
    S3(S3Target),
}

/// An S3 destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint override; `None` = `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`
    /// or AWS's own endpoints.
    pub endpoint_url: Option<String>,
    /// Path-style addressing; `None` = automatic (on for IP and localhost
    /// endpoints, which cannot serve virtual-hosted buckets).
    pub force_path_style: Option<bool>,
    /// Bytes per multipart part (at least 5 MiB).
    pub part_size_bytes: u64,
    /// Parts uploaded concurrently per object.
    pub max_concurrent_parts: usize,
    /// Timeout of one S3 request attempt.
    pub attempt_timeout: Duration,
    /// Server-side encryption.
    pub encryption: Encryption,
}

/// Default multipart part size: 8 MiB.
pub const DEFAULT_PART_SIZE_BYTES: u64 = 8 * MIB;
/// Default parts in flight per object.
pub const DEFAULT_MAX_CONCURRENT_PARTS: usize = 4;
/// Default S3 attempt timeout.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Server-side encryption of delivered objects (Firehose `EncryptionConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// No header: the bucket's default encryption applies (`NoEncryption`).
    None,
    /// SSE-S3 (`AES256`): sluice's default.
    SseS3,
    /// SSE-KMS with a key ARN (`KMSEncryptionConfig`).
    SseKms {
        /// The KMS key ARN.
        key_arn: String,
    },
}

/// Firehose `BufferingHints`: whichever of size and interval is reached first
/// closes the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffering {
    /// Size trigger, measured before compression: 1–128 MiB, default 5 MiB.
    pub size_bytes: u64,
    /// Time trigger since the first record entered the buffer: 0–900 s, default 300 s.
    pub interval: Duration,
}

impl Default for Buffering {
    fn default() -> Self {
        Buffering {
            size_bytes: 5 * MIB,
            interval: Duration::from_secs(300),
        }
    }
}

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// Firehose `CompressionFormat` (plus ZSTD, which Firehose lacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression, no extension.
    Uncompressed,
    /// gzip, `.gz`.
    Gzip,
    /// A ZIP archive holding one entry, `.zip`.
    Zip,
    /// Snappy framing format, `.snappy`.
    Snappy,
    /// Hadoop's block Snappy (what Athena reads), `.hsnappy`.
    HadoopSnappy,
    /// Zstandard, `.zst`.
    Zstd,
}

impl Compression {
    /// Firehose's default file extension for this compression.
    pub fn default_extension(self) -> &'static str {
        match self {
            Compression::Uncompressed => "",
            Compression::Gzip => ".gz",
            Compression::Zip => ".zip",
            Compression::Snappy => ".snappy",
            Compression::HadoopSnappy => ".hsnappy",
            Compression::Zstd => ".zst",
        }
    }

    /// The Firehose enum spelling (`UNCOMPRESSED`, `GZIP`, `Snappy`, ...).
    pub fn firehose_name(self) -> &'static str {
        match self {
            Compression::Uncompressed => "UNCOMPRESSED",
            Compression::Gzip => "GZIP",
            Compression::Zip => "ZIP",
            Compression::Snappy => "Snappy",
            Compression::HadoopSnappy => "HADOOP_SNAPPY",
            Compression::Zstd => "ZSTD",
        }
    }
}

/// A configuration that cannot be used. Every variant names the option; the
/// file and the place in it are added by [`FileError`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Read(#[source] std::io::Error),
    /// The file is not valid TOML/JSON of the expected shape (syntax, a missing
    /// field, a value serde itself refused).
    #[error("{0}")]
    Parse(String),
    /// A key that is not an option where it stands.
    #[error("unknown option `{option}`: {hint}")]
    Unknown {
        /// The key, as a dotted path (`destination.buffering.interval_sec`).
        option: String,
        /// "did you mean `...`?", or where the valid options are listed.
        hint: String,
    },
    /// An option has an invalid value.
    #[error("invalid option `{option}`: {reason}")]
    Invalid {
        /// The option, in the shape's own spelling (`destination.buffering.size_bytes`,
        /// `ExtendedS3DestinationConfiguration.BufferingHints.SizeInMBs`).
        option: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Firehose fields sluice does not support (yet); never silently ignored.
    #[error("unsupported Firehose option(s): {}", .options.join(", "))]
    Unsupported {
        /// The fields, as dotted paths.
        options: Vec<String>,
    },
    /// A `--config` directory holds no stream config: running nothing (or a
    /// reload removing every stream) is far likelier a mistake than the intent.
    #[error("the directory holds no stream config (*.toml or *.json files directly in it)")]
    EmptyDirectory,
    /// Two config files define the same stream name.
    #[error("delivery stream `{name}` is already defined in {}", .first.display())]
    DuplicateStream {
        /// The stream name.
        name: String,
        /// The file that defined it first.
        first: PathBuf,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(option: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            option: option.into(),
            reason: reason.into(),
        }
    }
}

impl Classify for ConfigError {
    fn is_retriable(&self) -> bool {
        false
    }
    fn fault(&self) -> Fault {
        Fault::Config
    }
}

/// A [`ConfigError`] with the file it is in and, when known, where in it:
/// the key's own line and column for unknown keys, mistyped and invalid
/// values (native TOML), or serde_json's position (Firehose JSON).
/// Displayed as `<file>:<line>:<column>: <error>`, as compilers do, so
/// editors and terminals can jump to it.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {error}", .path.display(), .position.map(|p| format!(":{p}")).unwrap_or_default())]
pub struct FileError {
    /// The config file.
    pub path: PathBuf,
    /// Where in it; `None` when the error belongs to the file as a whole or
    /// the shape cannot say (Firehose validation errors name the option).
    pub position: Option<Position>,
    /// What is wrong.
    #[source]
    pub error: ConfigError,
}

/// Every error found in a set of config files, in file order and, within a
/// file, in the order found (native TOML: by position). Not empty.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<FileError>);

impl ConfigErrors {
    /// One error of one file.
    pub(crate) fn one(path: &Path, position: Option<Position>, error: ConfigError) -> Self {
        ConfigErrors(vec![FileError {
            path: path.to_owned(),
            position,
            error,
        }])
    }
}

/// One error per line, so a caller that prints it shows every one.
impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Classify for ConfigErrors {
    fn is_retriable(&self) -> bool {
        false
    }
    fn fault(&self) -> Fault {
        Fault::Config
    }
}

/// Checks a delivery stream name as configs do (Firehose's 1-64 characters of
/// `[a-zA-Z0-9_.-]`, not `.`/`..`, not a name the state directory uses itself),
/// for names that arrive elsewhere (the API).
///
/// # Errors
/// What is wrong with it.
pub fn check_stream_name(name: &str) -> Result<(), String> {
    match validate::stream_name("name", name) {
        Ok(_) => Ok(()),
        Err(ConfigError::Invalid { reason, .. }) => Err(reason),
        Err(other) => Err(other.to_string()),
    }
}

/// `--config env:NAME`: the config is in the environment variable NAME.
pub const ENV_PREFIX: &str = "env:";

/// Reads one config file, choosing the shape by content: a JSON object is the
/// Firehose shape, anything else is native TOML. Relative paths inside resolve
/// against `cwd`.
///
/// # Errors
/// Every [`FileError`] found in the file (see [`native::parse`] and
/// [`firehose::parse`] for how many each shape can find at once).
///
/// `env:NAME` is not a file but the environment variable NAME holding the
/// config (a sidecar container configured without mounting files).
pub fn load(path: &Path, cwd: &Path) -> Result<StreamConfig, ConfigErrors> {
    let text = match path.to_str().and_then(|p| p.strip_prefix(ENV_PREFIX)) {
        Some(name) => std::env::var(name).map_err(|e| {
            let why = match e {
                std::env::VarError::NotPresent => "is not set".to_owned(),
                std::env::VarError::NotUnicode(_) => "is not UTF-8".to_owned(),
            };
            ConfigErrors::one(
                path,
                None,
                ConfigError::Read(std::io::Error::other(format!(
                    "the environment variable {name} {why}"
                ))),
            )
        })?,
        None => std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::one(path, None, ConfigError::Read(e)))?,
    };
    if text.trim_start().starts_with('{') {
        firehose::parse(&text, path, cwd)
    } else {
        native::parse(&text, path, cwd)
    }
}

/// Loads every file and checks stream names are unique. A directory stands
/// for the `*.toml` and `*.json` files directly in it, in name order, so a
/// stream is added or removed (at the next start or reload) by adding or
/// removing its file.
///
/// # Errors
/// The errors of every file, not only the first bad one: a user fixing
/// several files (or `sluice validate` in CI) sees everything in one run.
pub fn load_all(paths: &[PathBuf], cwd: &Path) -> Result<Vec<StreamConfig>, ConfigErrors> {
    let mut streams: Vec<(StreamConfig, &Path)> = Vec::new();
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        let full = cwd.join(path);
        if path.to_str().is_some_and(|p| p.starts_with(ENV_PREFIX)) || !full.is_dir() {
            files.push(path.clone());
            continue;
        }
        match std::fs::read_dir(&full) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.is_file() && p.extension().is_some_and(|x| x == "toml" || x == "json")
                    })
                    .collect();
                found.sort();
                if found.is_empty() {
                    errors.push(FileError {
                        path: path.clone(),
                        position: None,
                        error: ConfigError::EmptyDirectory,
                    });
                }
                files.extend(found);
            }
            Err(e) => errors.push(FileError {
                path: path.clone(),
                position: None,
                error: ConfigError::Read(e),
            }),
        }
    }
    for path in &files {
        match load(path, cwd) {
            Ok(stream) => {
                if let Some((_, first)) = streams.iter().find(|(s, _)| s.name == stream.name) {
                    errors.push(FileError {
                        path: path.clone(),
                        position: None,
                        error: ConfigError::DuplicateStream {
                            name: stream.name,
                            first: first.to_path_buf(),
                        },
                    });
                } else {
                    streams.push((stream, path));
                }
            }
            Err(ConfigErrors(file_errors)) => errors.extend(file_errors),
        }
    }
    if errors.is_empty() {
        Ok(streams.into_iter().map(|(s, _)| s).collect())
    } else {
        Err(ConfigErrors(errors))
    }
}
