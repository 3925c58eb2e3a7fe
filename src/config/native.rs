//! Native TOML configuration shape: one file per delivery stream.
//!
//! The file is deserialized into the `Raw*` structs below (every struct
//! `deny_unknown_fields`, so a misspelt option is an error that names it, and
//! units are part of the names: `size_bytes`, `interval_secs`), then validated
//! into a [`StreamConfig`] by the rules shared with the Firehose shape
//! (`super::validate`). Alternatives (the source, the destination) are tables
//! tagged by a `type` key, so later kinds (`kinesis`, `s3`) are new variants.
//! `config/example.toml` documents every option and its default.
//!
//! Leaf values are `validate::Checked`: a value of the wrong type is reported naming
//! the option by its dotted path, like any other invalid value. Numbers are
//! read as `i64` (TOML's integer type) and range-checked here, so a negative
//! value gets the same "must be between" message as any out-of-range one.

use std::path::Path;

use serde::Deserialize;

use super::format;
use super::validate::{self, Checked, opt};
use super::{
    BackupConfig, Compression, ConfigError, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_MAX_CONCURRENT_PARTS,
    DEFAULT_MAX_WAL_BYTES, DEFAULT_PART_SIZE_BYTES, DestinationConfig, DirectPutConfig, Encryption,
    KinesisConfig, S3Target, SourceConfig, StartPosition, StreamConfig, Target,
};
use std::time::Duration;

/// A whole native config file. The `rename`s of the raw structs only change
/// how serde's messages refer to a table ("expected struct destination").
#[derive(Debug, Deserialize)]
#[serde(rename = "config", deny_unknown_fields)]
struct RawStream {
    name: Checked<String>,
    source: RawSource,
    destination: RawDestination,
}

/// `[source]`, tagged by `type`.
// Parsed once at start-up: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Deserialize)]
#[serde(
    rename = "source",
    tag = "type",
    rename_all = "snake_case",
    deny_unknown_fields
)]
enum RawSource {
    DirectPut(RawDirectPut),
    Kinesis(RawKinesis),
}

/// `[source]` with `type = "kinesis"`.
#[derive(Debug, Deserialize)]
#[serde(rename = "source", deny_unknown_fields)]
struct RawKinesis {
    stream_name: Option<Checked<String>>,
    stream_arn: Option<Checked<String>>,
    endpoint_url: Option<Checked<String>>,
    start_position: Option<Checked<String>>,
    start_timestamp: Option<Checked<String>>,
    poll_interval_ms: Option<Checked<i64>>,
    shard_sync_interval_secs: Option<Checked<i64>>,
    max_records_per_call: Option<Checked<i64>>,
    attempt_timeout_secs: Option<Checked<i64>>,
}

/// `[source]` with `type = "direct_put"`.
#[derive(Debug, Deserialize)]
#[serde(rename = "source", deny_unknown_fields)]
struct RawDirectPut {
    max_wal_bytes: Option<Checked<i64>>,
}

/// `[destination]`, tagged by `type`.
#[derive(Debug, Deserialize)]
#[serde(
    rename = "destination",
    tag = "type",
    rename_all = "snake_case",
    deny_unknown_fields
)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum RawDestination {
    Local(RawLocal),
    S3(RawS3),
}

/// `[destination.backup]`: source-record backup (Firehose `S3BackupMode`
/// Enabled), in the destination's own bucket or directory.
#[derive(Debug, Deserialize)]
#[serde(rename = "destination.backup", deny_unknown_fields)]
struct RawBackup {
    prefix: Option<Checked<String>>,
    compression: Option<Checked<String>>,
}

/// `[destination]` with `type = "s3"`: the options every destination has,
/// plus the bucket and how to reach it.
#[derive(Debug, Deserialize)]
#[serde(rename = "destination", deny_unknown_fields)]
struct RawS3 {
    bucket: Option<Checked<String>>,
    bucket_arn: Option<Checked<String>>,
    endpoint_url: Option<Checked<String>>,
    force_path_style: Option<Checked<bool>>,
    part_size_bytes: Option<Checked<i64>>,
    max_concurrent_parts: Option<Checked<i64>>,
    attempt_timeout_secs: Option<Checked<i64>>,
    encryption: Option<Checked<String>>,
    kms_key_arn: Option<Checked<String>>,
    prefix: Option<Checked<String>>,
    error_output_prefix: Option<Checked<String>>,
    compression: Option<Checked<String>>,
    file_extension: Option<Checked<String>>,
    time_zone: Option<Checked<String>>,
    append_delimiter: Option<Checked<bool>>,
    buffering: Option<RawBuffering>,
    backup: Option<RawBackup>,
    deaggregation: Option<format::RawDeaggregation>,
    format: Option<format::RawFormat>,
}

/// `[destination]` with `type = "local"`.
#[derive(Debug, Deserialize)]
#[serde(rename = "destination", deny_unknown_fields)]
struct RawLocal {
    path: Checked<String>,
    prefix: Option<Checked<String>>,
    error_output_prefix: Option<Checked<String>>,
    /// A string, not a serde enum, so a wrong value is reported by
    /// `validate::compression` with the option's dotted name.
    compression: Option<Checked<String>>,
    file_extension: Option<Checked<String>>,
    time_zone: Option<Checked<String>>,
    append_delimiter: Option<Checked<bool>>,
    buffering: Option<RawBuffering>,
    backup: Option<RawBackup>,
    deaggregation: Option<format::RawDeaggregation>,
    format: Option<format::RawFormat>,
}

/// The options every destination kind shares, taken out of its raw table.
struct RawCommon {
    prefix: Option<Checked<String>>,
    error_output_prefix: Option<Checked<String>>,
    compression: Option<Checked<String>>,
    file_extension: Option<Checked<String>>,
    time_zone: Option<Checked<String>>,
    append_delimiter: Option<Checked<bool>>,
    buffering: Option<RawBuffering>,
    backup: Option<RawBackup>,
    deaggregation: Option<format::RawDeaggregation>,
    format: Option<format::RawFormat>,
}

/// `[destination.buffering]`. Unlike Firehose's `BufferingHints`, either
/// field may be given alone: the other keeps its default, which is what
/// "specify both or neither" protects against in Firehose anyway.
#[derive(Debug, Default, Deserialize)]
#[serde(rename = "destination.buffering", deny_unknown_fields)]
struct RawBuffering {
    size_bytes: Option<Checked<i64>>,
    interval_secs: Option<Checked<i64>>,
}

/// The native spelling of a compression (`hadoop_snappy`), the counterpart of
/// [`Compression::firehose_name`].
fn native_name(compression: Compression) -> &'static str {
    match compression {
        Compression::Uncompressed => "uncompressed",
        Compression::Gzip => "gzip",
        Compression::Zip => "zip",
        Compression::Snappy => "snappy",
        Compression::HadoopSnappy => "hadoop_snappy",
        Compression::Zstd => "zstd",
    }
}

/// Parses and validates a native TOML stream config. `path` is only used in
/// error messages; relative paths inside the file resolve against `cwd`.
///
/// # Errors
/// [`ConfigError::Parse`] for TOML syntax and unknown or missing fields (the
/// message names the field and its line); [`ConfigError::Invalid`] naming the
/// option by its dotted path for a value of the wrong type or outside its
/// rules.
pub fn parse(text: &str, path: &Path, cwd: &Path) -> Result<StreamConfig, ConfigError> {
    let raw: RawStream = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    validate_stream(raw, cwd)
}

fn validate_stream(raw: RawStream, cwd: &Path) -> Result<StreamConfig, ConfigError> {
    let name = validate::stream_name("name", raw.name.get("name")?)?;
    let source = match raw.source {
        RawSource::DirectPut(direct_put) => {
            const MAX_WAL_BYTES: &str = "source.max_wal_bytes";
            SourceConfig::DirectPut(DirectPutConfig {
                max_wal_bytes: match opt(&direct_put.max_wal_bytes, MAX_WAL_BYTES)? {
                    Some(&bytes) => validate::max_wal_bytes(MAX_WAL_BYTES, bytes)?,
                    None => DEFAULT_MAX_WAL_BYTES,
                },
            })
        }
        RawSource::Kinesis(k) => SourceConfig::Kinesis(validate_kinesis(&k)?),
    };
    let destination = match raw.destination {
        RawDestination::Local(local) => {
            const PATH: &str = "destination.path";
            let target = Target::Local {
                path: validate::local_dir(PATH, local.path.get(PATH)?, cwd)?,
            };
            let common = RawCommon {
                prefix: local.prefix,
                error_output_prefix: local.error_output_prefix,
                compression: local.compression,
                file_extension: local.file_extension,
                time_zone: local.time_zone,
                append_delimiter: local.append_delimiter,
                buffering: local.buffering,
                backup: local.backup,
                deaggregation: local.deaggregation,
                format: local.format,
            };
            validate_destination(target, common)?
        }
        RawDestination::S3(s3) => {
            let target = validate_s3(&s3)?;
            let common = RawCommon {
                prefix: s3.prefix,
                error_output_prefix: s3.error_output_prefix,
                compression: s3.compression,
                file_extension: s3.file_extension,
                time_zone: s3.time_zone,
                append_delimiter: s3.append_delimiter,
                buffering: s3.buffering,
                backup: s3.backup,
                deaggregation: s3.deaggregation,
                format: s3.format,
            };
            validate_destination(target, common)?
        }
    };
    Ok(StreamConfig {
        name,
        version: 1,
        source,
        destination,
    })
}

fn validate_kinesis(raw: &RawKinesis) -> Result<KinesisConfig, ConfigError> {
    const NAME: &str = "source.stream_name";
    const ARN: &str = "source.stream_arn";
    const START: &str = "source.start_position";
    const TIMESTAMP: &str = "source.start_timestamp";
    const POLL: &str = "source.poll_interval_ms";
    const SYNC: &str = "source.shard_sync_interval_secs";
    const LIMIT: &str = "source.max_records_per_call";
    const TIMEOUT: &str = "source.attempt_timeout_secs";
    let stream_name = match (opt(&raw.stream_name, NAME)?, opt(&raw.stream_arn, ARN)?) {
        (Some(name), None) => validate::kinesis_stream_name(NAME, name)?,
        (None, Some(arn)) => validate::kinesis_stream_arn(ARN, arn)?,
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                ARN,
                "give `stream_name` or `stream_arn`, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                NAME,
                "required for a kinesis source (or `stream_arn`)",
            ));
        }
    };
    let timestamp = opt(&raw.start_timestamp, TIMESTAMP)?;
    let start = match opt(&raw.start_position, START)?.map(String::as_str) {
        None | Some("at_creation") => StartPosition::AtCreation,
        Some("trim_horizon") => StartPosition::TrimHorizon,
        Some("latest") => StartPosition::Latest,
        Some("at_timestamp") => {
            let text = timestamp.ok_or_else(|| {
                ConfigError::invalid(TIMESTAMP, "required when start_position = \"at_timestamp\"")
            })?;
            StartPosition::AtTimestamp(text.parse().map_err(|e| {
                ConfigError::invalid(
                    TIMESTAMP,
                    format!("must be an RFC 3339 instant like 2026-01-01T00:00:00Z: {e}"),
                )
            })?)
        }
        Some(other) => {
            return Err(ConfigError::invalid(
                START,
                format!("must be at_creation, trim_horizon, latest or at_timestamp, got {other:?}"),
            ));
        }
    };
    if timestamp.is_some() && !matches!(start, StartPosition::AtTimestamp(_)) {
        return Err(ConfigError::invalid(
            TIMESTAMP,
            "only meaningful with start_position = \"at_timestamp\"",
        ));
    }
    let defaults = KinesisConfig::defaults(stream_name);
    Ok(KinesisConfig {
        endpoint_url: opt(&raw.endpoint_url, "source.endpoint_url")?
            .map(|url| validate::endpoint_url("source.endpoint_url", url))
            .transpose()?,
        start,
        poll_interval: match opt(&raw.poll_interval_ms, POLL)? {
            Some(&ms) => Duration::from_millis(validate::in_range(POLL, ms, 200, 60_000)?),
            None => defaults.poll_interval,
        },
        shard_sync_interval: match opt(&raw.shard_sync_interval_secs, SYNC)? {
            Some(&secs) => Duration::from_secs(validate::in_range(SYNC, secs, 1, 3600)?),
            None => defaults.shard_sync_interval,
        },
        max_records_per_call: match opt(&raw.max_records_per_call, LIMIT)? {
            Some(&n) => validate::in_range(LIMIT, n, 1, 10_000)? as i32,
            None => defaults.max_records_per_call,
        },
        attempt_timeout: match opt(&raw.attempt_timeout_secs, TIMEOUT)? {
            Some(&secs) => Duration::from_secs(validate::in_range(TIMEOUT, secs, 1, 3600)?),
            None => defaults.attempt_timeout,
        },
        ..defaults
    })
}

fn validate_s3(raw: &RawS3) -> Result<Target, ConfigError> {
    const BUCKET: &str = "destination.bucket";
    const BUCKET_ARN: &str = "destination.bucket_arn";
    const ENDPOINT_URL: &str = "destination.endpoint_url";
    const PART_SIZE: &str = "destination.part_size_bytes";
    const CONCURRENCY: &str = "destination.max_concurrent_parts";
    const ATTEMPT_TIMEOUT: &str = "destination.attempt_timeout_secs";
    const ENCRYPTION: &str = "destination.encryption";
    const KMS_KEY_ARN: &str = "destination.kms_key_arn";

    let bucket = match (opt(&raw.bucket, BUCKET)?, opt(&raw.bucket_arn, BUCKET_ARN)?) {
        (Some(bucket), None) => validate::bucket_name(BUCKET, bucket)?,
        (None, Some(arn)) => validate::bucket_arn(BUCKET_ARN, arn)?,
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                BUCKET_ARN,
                "give `bucket` or `bucket_arn`, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                BUCKET,
                "required for an s3 destination (or `bucket_arn`)",
            ));
        }
    };
    let kms_key_arn = opt(&raw.kms_key_arn, KMS_KEY_ARN)?;
    let encryption = match opt(&raw.encryption, ENCRYPTION)?.map(String::as_str) {
        None | Some("sse_s3") => Encryption::SseS3,
        Some("none") => Encryption::None,
        Some("sse_kms") => Encryption::SseKms {
            key_arn: kms_key_arn
                .ok_or_else(|| {
                    ConfigError::invalid(KMS_KEY_ARN, "required when encryption = \"sse_kms\"")
                })?
                .clone(),
        },
        Some(other) => {
            return Err(ConfigError::invalid(
                ENCRYPTION,
                format!("must be none, sse_s3 or sse_kms, got {other:?}"),
            ));
        }
    };
    if kms_key_arn.is_some() && !matches!(encryption, Encryption::SseKms { .. }) {
        return Err(ConfigError::invalid(
            KMS_KEY_ARN,
            "only meaningful with encryption = \"sse_kms\"",
        ));
    }
    Ok(Target::S3(S3Target {
        bucket,
        endpoint_url: opt(&raw.endpoint_url, ENDPOINT_URL)?
            .map(|url| validate::endpoint_url(ENDPOINT_URL, url))
            .transpose()?,
        force_path_style: opt(&raw.force_path_style, "destination.force_path_style")?.copied(),
        part_size_bytes: match opt(&raw.part_size_bytes, PART_SIZE)? {
            Some(&bytes) => validate::part_size_bytes(PART_SIZE, bytes)?,
            None => DEFAULT_PART_SIZE_BYTES,
        },
        max_concurrent_parts: match opt(&raw.max_concurrent_parts, CONCURRENCY)? {
            Some(&n) => validate::in_range(CONCURRENCY, n, 1, 64)? as usize,
            None => DEFAULT_MAX_CONCURRENT_PARTS,
        },
        attempt_timeout: match opt(&raw.attempt_timeout_secs, ATTEMPT_TIMEOUT)? {
            Some(&secs) => Duration::from_secs(validate::in_range(ATTEMPT_TIMEOUT, secs, 1, 3600)?),
            None => DEFAULT_ATTEMPT_TIMEOUT,
        },
        encryption,
    }))
}

fn validate_destination(target: Target, raw: RawCommon) -> Result<DestinationConfig, ConfigError> {
    const PREFIX: &str = "destination.prefix";
    const ERROR_OUTPUT_PREFIX: &str = "destination.error_output_prefix";
    const SIZE_BYTES: &str = "destination.buffering.size_bytes";
    const INTERVAL_SECS: &str = "destination.buffering.interval_secs";
    const COMPRESSION: &str = "destination.compression";
    const FILE_EXTENSION: &str = "destination.file_extension";
    const TIME_ZONE: &str = "destination.time_zone";
    const APPEND_DELIMITER: &str = "destination.append_delimiter";

    let processors = crate::process::Processors {
        deaggregation: raw
            .deaggregation
            .as_ref()
            .map(format::native_deaggregation)
            .transpose()?,
    };
    let format = raw
        .format
        .as_ref()
        .map(format::native_format)
        .transpose()?
        .map(std::sync::Arc::new);
    if format.is_some() && opt(&raw.compression, COMPRESSION)?.is_some_and(|c| c != "uncompressed")
    {
        return Err(ConfigError::invalid(
            COMPRESSION,
            "must be uncompressed with [destination.format]: Parquet and ORC compress inside the file (format.compression)",
        ));
    }
    const BACKUP_PREFIX: &str = "destination.backup.prefix";
    const BACKUP_COMPRESSION: &str = "destination.backup.compression";
    let (prefix, error_output_prefix) = validate::prefixes(
        PREFIX,
        ERROR_OUTPUT_PREFIX,
        opt(&raw.prefix, PREFIX)?.map(String::as_str),
        opt(&raw.error_output_prefix, ERROR_OUTPUT_PREFIX)?.map(String::as_str),
    )?;
    let hints = raw.buffering.unwrap_or_default();
    let size_bytes = opt(&hints.size_bytes, SIZE_BYTES)?
        .map(|&bytes| validate::buffer_size_bytes(SIZE_BYTES, bytes))
        .transpose()?;
    let buffering = validate::buffering(
        size_bytes,
        INTERVAL_SECS,
        opt(&hints.interval_secs, INTERVAL_SECS)?.copied(),
    )?;
    let compression = match opt(&raw.compression, COMPRESSION)? {
        Some(name) => validate::compression(COMPRESSION, name, native_name)?,
        None => Compression::Uncompressed,
    };
    let file_extension = validate::file_extension(
        FILE_EXTENSION,
        opt(&raw.file_extension, FILE_EXTENSION)?.map(String::as_str),
    )?;
    let (time_zone, time_zone_name) = validate::time_zone(
        TIME_ZONE,
        opt(&raw.time_zone, TIME_ZONE)?.map(String::as_str),
    )?;
    Ok(DestinationConfig {
        target,
        prefix,
        error_output_prefix,
        buffering,
        compression,
        file_extension,
        time_zone,
        time_zone_name,
        // Firehose's default: records are concatenated as sent.
        append_delimiter: opt(&raw.append_delimiter, APPEND_DELIMITER)?
            .copied()
            .unwrap_or(false),
        processors,
        format,
        backup: match &raw.backup {
            None => None,
            Some(backup) => Some(BackupConfig {
                prefix: validate::backup_prefix(
                    BACKUP_PREFIX,
                    opt(&backup.prefix, BACKUP_PREFIX)?.map(String::as_str),
                )?,
                compression: match opt(&backup.compression, BACKUP_COMPRESSION)? {
                    Some(name) => validate::compression(BACKUP_COMPRESSION, name, native_name)?,
                    None => Compression::Uncompressed,
                },
            }),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::validate::tests::{CWD, config_file};
    use crate::config::{Buffering, MIB};

    fn parse_str(text: &str) -> Result<StreamConfig, ConfigError> {
        parse(text, Path::new("test.toml"), Path::new(CWD))
    }

    const MINIMAL: &str = r#"
        name = "s"
        [source]
        type = "direct_put"
        [destination]
        type = "local"
        path = "out"
    "#;

    #[test]
    fn local_toml_is_the_documented_default_stream() {
        let config = crate::config::load(&config_file("local.toml"), Path::new(CWD)).unwrap();
        assert_eq!(config.name, "local");
        assert_eq!(config.version, 1);
        let SourceConfig::DirectPut(direct_put) = &config.source else {
            panic!("Direct PUT source expected")
        };
        assert_eq!(direct_put.max_wal_bytes, DEFAULT_MAX_WAL_BYTES);
        let d = &config.destination;
        assert_eq!(
            d.target,
            Target::Local {
                path: PathBuf::from("/srv/sluice/data")
            }
        );
        assert_eq!(
            d.buffering,
            Buffering {
                size_bytes: 5 * MIB,
                interval: Duration::from_secs(60)
            }
        );
        assert_eq!(d.compression, Compression::Uncompressed);
        assert_eq!(d.extension(), "");
        assert!(d.append_delimiter);
        assert_eq!(d.time_zone_name, "UTC");
    }

    #[test]
    fn example_toml_parses_with_every_option() {
        let config = crate::config::load(&config_file("example.toml"), Path::new(CWD)).unwrap();
        assert_eq!(config.name, "clickstream");
        let SourceConfig::DirectPut(direct_put) = &config.source else {
            panic!("Direct PUT source expected")
        };
        assert_eq!(direct_put.max_wal_bytes, DEFAULT_MAX_WAL_BYTES);
        let d = &config.destination;
        assert_eq!(
            d.target,
            Target::Local {
                path: PathBuf::from("/srv/sluice/data")
            }
        );
        assert_eq!(d.prefix.as_str(), "clicks/!{timestamp:yyyy/MM/dd}/");
        assert_eq!(d.buffering, Buffering::default());
        assert_eq!(d.compression, Compression::Gzip);
        assert_eq!(d.extension(), ".json.gz");
        assert_eq!(d.time_zone, jiff::tz::TimeZone::UTC);
        assert!(d.append_delimiter);
    }

    #[test]
    fn absent_options_take_firehose_defaults() {
        let config = parse_str(MINIMAL).unwrap();
        let SourceConfig::DirectPut(direct_put) = &config.source else {
            panic!("Direct PUT source expected")
        };
        assert_eq!(direct_put.max_wal_bytes, DEFAULT_MAX_WAL_BYTES);
        let d = &config.destination;
        assert_eq!(
            d.buffering,
            Buffering {
                size_bytes: 5 * MIB,
                interval: Duration::from_secs(300)
            }
        );
        assert_eq!(d.compression, Compression::Uncompressed);
        assert_eq!(d.file_extension, None);
        assert_eq!(d.time_zone, jiff::tz::TimeZone::UTC);
        assert_eq!(d.time_zone_name, "UTC");
        assert!(!d.append_delimiter);
    }

    #[test]
    fn one_buffering_field_keeps_the_other_default() {
        let config = parse_str(&format!(
            "{MINIMAL}\n[destination.buffering]\ninterval_secs = 0\n"
        ))
        .unwrap();
        assert_eq!(
            config.destination.buffering,
            Buffering {
                size_bytes: 5 * MIB,
                interval: Duration::ZERO
            }
        );
    }

    #[test]
    fn every_compression_has_a_native_name() {
        for compression in validate::ALL_COMPRESSIONS {
            let text = format!("{MINIMAL}compression = {:?}\n", native_name(compression));
            assert_eq!(
                parse_str(&text).unwrap().destination.compression,
                compression
            );
        }
    }

    #[test]
    fn relative_paths_resolve_against_cwd() {
        for (path, cwd, want) in [
            ("out", "/srv/sluice", "/srv/sluice/out"),
            ("./out/x", "/srv/sluice", "/srv/sluice/out/x"),
            ("../out", "/srv/sluice", "/srv/sluice/../out"),
            ("/var/lib/sluice/out", "/srv/sluice", "/var/lib/sluice/out"),
            ("out", "/elsewhere", "/elsewhere/out"),
        ] {
            let text = MINIMAL.replace(r#"path = "out""#, &format!("path = {path:?}"));
            let config = parse(&text, Path::new("t.toml"), Path::new(cwd)).unwrap();
            assert_eq!(
                config.destination.target,
                Target::Local {
                    path: PathBuf::from(want)
                },
                "{path} in {cwd}"
            );
        }
    }

    /// Each case replaces one line of a valid config; the error must name the
    /// option by its dotted path (or, for serde errors, by its key).
    #[test]
    fn every_invalid_option_is_named() {
        let base = r#"
name = "s"
[source]
type = "direct_put"
max_wal_bytes = 1073741824
[destination]
type = "local"
path = "out"
compression = "gzip"
file_extension = ".gz"
time_zone = "UTC"
append_delimiter = true
[destination.buffering]
size_bytes = 5242880
interval_secs = 300
"#;
        assert!(parse_str(base).is_ok(), "the base case must be valid");
        let cases: &[(&str, &str, &str)] = &[
            (r#"name = "s""#, r#"name = """#, "`name`"),
            (r#"name = "s""#, r#"name = "has space""#, "`name`"),
            (
                r#"name = "s""#,
                &format!("name = {:?}", "x".repeat(65)),
                "`name`",
            ),
            (
                "max_wal_bytes = 1073741824",
                "max_wal_bytes = 1048575",
                "`source.max_wal_bytes`",
            ),
            (
                "max_wal_bytes = 1073741824",
                "max_wal_bytes = -1",
                "`source.max_wal_bytes`",
            ),
            (r#"path = "out""#, r#"path = """#, "`destination.path`"),
            (
                r#"compression = "gzip""#,
                r#"compression = "GZIP""#,
                "`destination.compression`",
            ),
            (
                r#"compression = "gzip""#,
                r#"compression = "lz4""#,
                "`destination.compression`",
            ),
            (
                r#"file_extension = ".gz""#,
                r#"file_extension = "gz""#,
                "`destination.file_extension`",
            ),
            (
                r#"file_extension = ".gz""#,
                r#"file_extension = ".GZ""#,
                "`destination.file_extension`",
            ),
            (
                r#"file_extension = ".gz""#,
                &format!("file_extension = \".{}\"", "a".repeat(128)),
                "`destination.file_extension`",
            ),
            (
                r#"time_zone = "UTC""#,
                r#"time_zone = "Mars/Olympus""#,
                "`destination.time_zone`",
            ),
            (
                r#"time_zone = "UTC""#,
                r#"time_zone = "UTC+1""#,
                "`destination.time_zone`",
            ),
            (
                "size_bytes = 5242880",
                "size_bytes = 0",
                "`destination.buffering.size_bytes`",
            ),
            (
                "size_bytes = 5242880",
                "size_bytes = 134217729",
                "`destination.buffering.size_bytes`",
            ),
            (
                "interval_secs = 300",
                "interval_secs = 901",
                "`destination.buffering.interval_secs`",
            ),
            (
                "interval_secs = 300",
                "interval_secs = -1",
                "`destination.buffering.interval_secs`",
            ),
            // Wrong types.
            (
                "interval_secs = 300",
                r#"interval_secs = "300""#,
                "`destination.buffering.interval_secs`",
            ),
            (
                "interval_secs = 300",
                "interval_secs = 1.5",
                "`destination.buffering.interval_secs`",
            ),
            (
                "append_delimiter = true",
                r#"append_delimiter = "yes""#,
                "`destination.append_delimiter`",
            ),
            (r#"name = "s""#, "name = 1", "`name`"),
            (r#"name = "s""#, "name = 1979-05-27", "`name`"),
            (r#"path = "out""#, "path = []", "`destination.path`"),
            (
                r#"compression = "gzip""#,
                "compression = true",
                "`destination.compression`",
            ),
            (
                "max_wal_bytes = 1073741824",
                r#"max_wal_bytes = "1 GiB""#,
                "`source.max_wal_bytes`",
            ),
            // Unknown alternatives: serde names the value.
            (
                r#"type = "direct_put""#,
                r#"type = "kinesis""#,
                "`max_wal_bytes`",
            ),
            (r#"type = "direct_put""#, r#"type = "kafka""#, "kafka"),
            (r#"type = "local""#, r#"type = "s3""#, "`path`"),
            (r#"type = "local""#, r#"type = "hdfs""#, "hdfs"),
        ];
        for (from, to, option) in cases {
            assert!(base.contains(from), "case {to:?} does not apply");
            let text = base.replacen(from, to, 1);
            let err = parse_str(&text).expect_err(to).to_string();
            assert!(
                err.contains(option),
                "{to:?}: message {err:?} does not name {option}"
            );
        }
    }

    #[test]
    fn names_and_prefixes_that_leave_the_output_are_refused() {
        for bad in [".", ".."] {
            let text = MINIMAL.replacen(r#"name = "s""#, &format!("name = {bad:?}"), 1);
            let err = parse_str(&text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid option `name`: {bad:?} is not allowed")),
                "{err}"
            );
        }
        let with_dest = |line: &str| format!("{MINIMAL}\n{line}\n");
        for (line, option) in [
            (r#"prefix = "../""#, "destination.prefix"),
            (r#"prefix = "a/../../x/""#, "destination.prefix"),
            (r#"prefix = "/etc/x/""#, "destination.prefix"),
            (r#"prefix = "a/./b/""#, "destination.prefix"),
            (
                r#"error_output_prefix = "../errors/""#,
                "destination.error_output_prefix",
            ),
        ] {
            let err = parse_str(&with_dest(line)).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid option `{option}`: it evaluates to e.g.")),
                "{line}: {err}"
            );
            assert!(err.contains("must stay below the destination"), "{err}");
        }
        let backup = format!("{MINIMAL}\n[destination.backup]\nprefix = \"raw/../../x/\"\n");
        let err = parse_str(&backup).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid option `destination.backup.prefix`: it evaluates to e.g."),
            "{err}"
        );
    }

    const S3: &str = r#"
        name = "s"
        [source]
        type = "direct_put"
        [destination]
        type = "s3"
        bucket = "my-bucket"
        endpoint_url = "http://127.0.0.1:9000/"
        force_path_style = true
        part_size_bytes = 5242880
        max_concurrent_parts = 2
        attempt_timeout_secs = 5
        encryption = "sse_kms"
        kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/k"
        [destination.backup]
        prefix = "raw/"
        compression = "zstd"
    "#;

    #[test]
    fn kinesis_source_options() {
        let base = r#"
            name = "s"
            [source]
            type = "kinesis"
            stream_arn = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
            endpoint_url = "http://127.0.0.1:4567"
            start_position = "at_timestamp"
            start_timestamp = "2026-01-02T03:04:05Z"
            poll_interval_ms = 250
            shard_sync_interval_secs = 2
            max_records_per_call = 500
            [destination]
            type = "local"
            path = "out"
        "#;
        let config = parse_str(base).unwrap();
        let SourceConfig::Kinesis(k) = &config.source else {
            panic!("expected Kinesis")
        };
        assert_eq!(k.stream_name, "orders");
        assert_eq!(
            k.start,
            StartPosition::AtTimestamp("2026-01-02T03:04:05Z".parse().unwrap())
        );
        assert_eq!(k.poll_interval, Duration::from_millis(250));
        assert_eq!(k.shard_sync_interval, Duration::from_secs(2));
        assert_eq!(k.max_records_per_call, 500);
        let cases = [
            (
                r#"start_position = "at_timestamp""#,
                r#"start_position = "earliest""#,
                "`source.start_position`",
            ),
            (
                r#"start_timestamp = "2026-01-02T03:04:05Z""#,
                r#"start_timestamp = "yesterday""#,
                "`source.start_timestamp`",
            ),
            (
                "max_records_per_call = 500",
                "max_records_per_call = 10001",
                "`source.max_records_per_call`",
            ),
            (
                "poll_interval_ms = 250",
                "poll_interval_ms = 10",
                "`source.poll_interval_ms`",
            ),
            (
                r#"stream_arn = "arn:aws:kinesis:us-east-1:123456789012:stream/orders""#,
                r#"stream_arn = "orders""#,
                "`source.stream_arn`",
            ),
            (
                r#"stream_arn = "arn:aws:kinesis:us-east-1:123456789012:stream/orders""#,
                "",
                "`source.stream_name`",
            ),
        ];
        for (from, to, option) in cases {
            assert!(base.contains(from), "case {to:?} does not apply");
            let err = parse_str(&base.replacen(from, to, 1))
                .expect_err(to)
                .to_string();
            assert!(
                err.contains(option),
                "{to:?}: message {err:?} does not name {option}"
            );
        }
    }

    #[test]
    fn kinesis_parquet_example_toml_parses() {
        let config =
            crate::config::load(&config_file("kinesis-parquet-example.toml"), Path::new(CWD))
                .unwrap();
        let SourceConfig::Kinesis(k) = &config.source else {
            panic!("expected Kinesis")
        };
        assert_eq!(k.stream_name, "clicks");
        let format = config.destination.format.as_ref().expect("conversion");
        let crate::config::SchemaSource::Inline(schema) = &format.schema else {
            panic!("inline schema")
        };
        assert_eq!(schema.columns.len(), 5);
        assert!(matches!(
            format.output,
            crate::config::OutputFormat::Parquet(_)
        ));
        assert_eq!(config.destination.extension(), ".parquet");
        assert_eq!(
            config.destination.processors.deaggregation,
            Some(crate::process::Deaggregation::Json)
        );
    }

    #[test]
    fn s3_example_toml_parses() {
        let config = crate::config::load(&config_file("s3-example.toml"), Path::new(CWD)).unwrap();
        let Target::S3(s3) = &config.destination.target else {
            panic!("expected S3")
        };
        assert_eq!(s3.bucket, "my-delivery-bucket");
        assert_eq!(s3.encryption, Encryption::SseS3);
        assert!(config.destination.backup.is_some());
    }

    #[test]
    fn s3_destination_options() {
        let config = parse_str(S3).unwrap();
        let Target::S3(s3) = &config.destination.target else {
            panic!("expected S3")
        };
        assert_eq!(
            s3,
            &S3Target {
                bucket: "my-bucket".into(),
                endpoint_url: Some("http://127.0.0.1:9000".into()),
                force_path_style: Some(true),
                part_size_bytes: 5 * 1024 * 1024,
                max_concurrent_parts: 2,
                attempt_timeout: Duration::from_secs(5),
                encryption: Encryption::SseKms {
                    key_arn: "arn:aws:kms:us-east-1:123456789012:key/k".into()
                },
            }
        );
        let backup = config.destination.backup.unwrap();
        assert_eq!(backup.prefix.as_str(), "raw/!{timestamp:yyyy/MM/dd/HH/}");
        assert_eq!(backup.compression, Compression::Zstd);

        let cases = [
            (
                r#"bucket = "my-bucket""#,
                r#"bucket = "My_Bucket""#,
                "`destination.bucket`",
            ),
            (r#"bucket = "my-bucket""#, "", "`destination.bucket`"),
            (
                r#"bucket = "my-bucket""#,
                r#"bucket_arn = "arn:aws:sqs:::x""#,
                "`destination.bucket_arn`",
            ),
            (
                "part_size_bytes = 5242880",
                "part_size_bytes = 5242879",
                "`destination.part_size_bytes`",
            ),
            (
                "max_concurrent_parts = 2",
                "max_concurrent_parts = 0",
                "`destination.max_concurrent_parts`",
            ),
            (
                "attempt_timeout_secs = 5",
                "attempt_timeout_secs = 0",
                "`destination.attempt_timeout_secs`",
            ),
            (
                r#"encryption = "sse_kms""#,
                r#"encryption = "aes""#,
                "`destination.encryption`",
            ),
            (
                r#"encryption = "sse_kms""#,
                r#"encryption = "sse_s3""#,
                "`destination.kms_key_arn`",
            ),
            (
                r#"endpoint_url = "http://127.0.0.1:9000/""#,
                r#"endpoint_url = "127.0.0.1:9000""#,
                "`destination.endpoint_url`",
            ),
            (
                r#"prefix = "raw/""#,
                r#"prefix = "raw/!{nope:x}""#,
                "`destination.backup.prefix`",
            ),
        ];
        for (from, to, option) in cases {
            assert!(S3.contains(from), "case {to:?} does not apply");
            let err = parse_str(&S3.replacen(from, to, 1))
                .expect_err(to)
                .to_string();
            assert!(
                err.contains(option),
                "{to:?}: message {err:?} does not name {option}"
            );
        }
        let no_key = S3.replacen(
            r#"kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/k""#,
            "",
            1,
        );
        let err = parse_str(&no_key).unwrap_err().to_string();
        assert!(err.contains("`destination.kms_key_arn`"), "{err}");
    }

    #[test]
    fn range_message_is_the_documented_one() {
        let err = parse_str(&format!(
            "{MINIMAL}\n[destination.buffering]\nsize_bytes = 0\n"
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid option `destination.buffering.size_bytes`: \
             must be between 1048576 and 134217728 bytes (1-128 MiB), got 0"
        );
    }

    #[test]
    fn unknown_fields_are_parse_errors_naming_the_field() {
        let err = parse_str(&format!("nmae = \"x\"\n{MINIMAL}")).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Parse { message, .. } if message.contains("nmae")),
            "{err}"
        );
        for (table_line, extra, field) in [
            ("type = \"direct_put\"", "max_wal_mb = 5", "max_wal_mb"),
            ("type = \"local\"", "pth = \"x\"", "pth"),
            ("type = \"local\"", "interval_secs = 60", "interval_secs"),
        ] {
            let text = MINIMAL.replacen(table_line, &format!("{table_line}\n{extra}"), 1);
            let err = parse_str(&text).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Parse { message, .. } if message.contains(field)),
                "{err}"
            );
        }
        let text = format!("{MINIMAL}\n[destination.buffering]\nsize_mb = 5\n");
        let err = parse_str(&text).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Parse { message, .. } if message.contains("size_mb")),
            "{err}"
        );
    }

    #[test]
    fn missing_required_options_are_named() {
        for (remove, field) in [
            (r#"name = "s""#, "name"),
            (r#"path = "out""#, "path"),
            (r#"type = "local""#, "type"),
        ] {
            let err = parse_str(&MINIMAL.replacen(remove, "", 1)).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Parse { message, .. } if message.contains(field)),
                "{err}"
            );
        }
    }
}
