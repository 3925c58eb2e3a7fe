//! Validation shared by both config shapes.
//!
//! [`super::native`] and [`super::firehose`] each deserialize their own raw
//! structs, then call these functions for every value the two shapes have in
//! common, so one rule (a range, a pattern, a default) lives in one place and
//! both shapes produce identical [`super::StreamConfig`]s for equivalent input.
//! Every function takes the option's name in the calling shape's own spelling
//! (`destination.buffering.size_bytes` or
//! `ExtendedS3DestinationConfiguration.BufferingHints.SizeInMBs`) and puts it in
//! the [`ConfigError`] it returns.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserialize, DeserializeOwned, Deserializer};

use super::{Buffering, Compression, ConfigError, MIB};
use crate::partition::{self, Prefix, PrefixError, PrefixKind};

/// A leaf value whose type is checked during validation instead of during
/// deserialization. Neither serde_json nor toml (inside the `type`-tagged
/// tables, which serde buffers) can say *which* field had the wrong type;
/// deferring the check lets [`Checked::get`] name the option by its full
/// dotted path. Structure errors (unknown or missing fields) stay parse
/// errors, which already name the field.
#[derive(Debug)]
pub(super) struct Checked<T>(Result<T, String>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Any self-describing value: JSON's own, or TOML's seen through serde.
        let value = serde_json::Value::deserialize(deserializer)?;
        // serde's type names are Rust's; a config author knows "integer".
        let reason =
            |e: serde_json::Error| e.to_string().replace("expected i64", "expected an integer");
        Ok(Checked(serde_json::from_value(value).map_err(reason)))
    }
}

impl<T> Checked<T> {
    /// The value, or [`ConfigError::Invalid`] naming `option` when it had the
    /// wrong type.
    pub(super) fn get(&self, option: &str) -> Result<&T, ConfigError> {
        self.0
            .as_ref()
            .map_err(|reason| ConfigError::invalid(option, reason.clone()))
    }

    /// The value if it had the right type (for checks that leave type errors
    /// to [`Checked::get`]).
    pub(super) fn ok(&self) -> Option<&T> {
        self.0.as_ref().ok()
    }
}

/// [`Checked::get`] for an optional field.
pub(super) fn opt<'a, T>(
    field: &'a Option<Checked<T>>,
    option: &str,
) -> Result<Option<&'a T>, ConfigError> {
    field.as_ref().map(|f| f.get(option)).transpose()
}

/// Smallest buffer size trigger (Firehose `SizeInMBs` minimum: 1 MiB).
pub(super) const MIN_BUFFER_SIZE_BYTES: u64 = MIB;
/// Largest buffer size trigger (Firehose `SizeInMBs` maximum: 128 MiB).
pub(super) const MAX_BUFFER_SIZE_BYTES: u64 = 128 * MIB;
/// Largest buffer interval (Firehose `IntervalInSeconds` maximum). The minimum
/// is 0: Firehose's "zero buffering".
pub(super) const MAX_BUFFER_INTERVAL_SECS: u64 = 900;
/// Smallest write-ahead log cap: the largest PutRecordBatch the API accepts
/// (500 records, 4 MiB of data) as the log stores it, plus two segment
/// headers. A smaller cap would answer that request a retriable 503 that could
/// never succeed.
pub(super) const MIN_MAX_WAL_BYTES: u64 = crate::source::direct_put::wal::format::frame_bytes(
    crate::api::MAX_BATCH_RECORDS,
    crate::api::MAX_BATCH_BYTES,
) + 2
    * crate::source::direct_put::wal::format::SEGMENT_HEADER;

/// Firehose `FileExtension` maximum length.
const MAX_FILE_EXTENSION_CHARS: usize = 128;
/// Firehose `CustomTimeZone` maximum length.
const MAX_TIME_ZONE_CHARS: usize = 50;
/// Firehose `DeliveryStreamName` maximum length.
const MAX_NAME_CHARS: usize = 64;

/// Every compression, for mapping names to values without a second table.
pub(super) const ALL_COMPRESSIONS: [Compression; 6] = [
    Compression::Uncompressed,
    Compression::Gzip,
    Compression::Zip,
    Compression::Snappy,
    Compression::HadoopSnappy,
    Compression::Zstd,
];

/// A delivery stream name: Firehose's `^[a-zA-Z0-9_.-]{1,64}$`, and not `.`
/// or `..`. The name is part of every object name and of the Direct PUT API,
/// so it must be a name Firehose clients accept; it also names directories
/// (`<state dir>/<stream>/`, `<output>/.sluice-staging/<stream>/`), where `.`
/// and `..` would point at the parent or the directory itself and let one
/// stream's recovery delete files that are not its own.
pub(super) fn stream_name(option: &str, name: &str) -> Result<String, ConfigError> {
    let len = name.chars().count();
    if len == 0 || len > MAX_NAME_CHARS {
        return Err(ConfigError::invalid(
            option,
            format!("must be 1-{MAX_NAME_CHARS} characters long, got {len}"),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(ConfigError::invalid(
            option,
            format!(
                "may only contain letters, digits, `_`, `.` and `-`; found {bad:?} in {name:?}"
            ),
        ));
    }
    if name == "." || name == ".." {
        return Err(ConfigError::invalid(
            option,
            format!(
                "{name:?} is not allowed: it names a directory's parent or the directory \
                 itself, and the stream name is used as a directory name"
            ),
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(ConfigError::invalid(
            option,
            format!(
                "{name:?} is reserved: the state directory keeps sluice's own {name} there, \
                 next to each stream's directory; choose another name"
            ),
        ));
    }
    Ok(name.to_owned())
}

/// Entries of the state directory that are not streams' directories.
const RESERVED_NAMES: [&str; 4] = ["api-streams", "wasm-cache", "instance-id", "sluice.lock"];

/// Buffer size trigger given in bytes (native shape).
pub(super) fn buffer_size_bytes(option: &str, bytes: i64) -> Result<u64, ConfigError> {
    match u64::try_from(bytes) {
        Ok(b) if (MIN_BUFFER_SIZE_BYTES..=MAX_BUFFER_SIZE_BYTES).contains(&b) => Ok(b),
        _ => Err(ConfigError::invalid(
            option,
            format!(
                "must be between {MIN_BUFFER_SIZE_BYTES} and {MAX_BUFFER_SIZE_BYTES} bytes \
                 ({}-{} MiB), got {bytes}",
                MIN_BUFFER_SIZE_BYTES / MIB,
                MAX_BUFFER_SIZE_BYTES / MIB
            ),
        )),
    }
}

/// Buffer size trigger given in MiB (Firehose `SizeInMBs`), returned in bytes.
pub(super) fn buffer_size_mib(option: &str, mib: i64) -> Result<u64, ConfigError> {
    let (min, max) = (MIN_BUFFER_SIZE_BYTES / MIB, MAX_BUFFER_SIZE_BYTES / MIB);
    match u64::try_from(mib) {
        Ok(m) if (min..=max).contains(&m) => Ok(m * MIB),
        _ => Err(ConfigError::invalid(
            option,
            format!("must be between {min} and {max} (MiB), got {mib}"),
        )),
    }
}

/// Buffer interval trigger in seconds (same unit in both shapes).
pub(super) fn buffer_interval(option: &str, secs: i64) -> Result<Duration, ConfigError> {
    match u64::try_from(secs) {
        Ok(s) if s <= MAX_BUFFER_INTERVAL_SECS => Ok(Duration::from_secs(s)),
        _ => Err(ConfigError::invalid(
            option,
            format!("must be between 0 and {MAX_BUFFER_INTERVAL_SECS} seconds, got {secs}"),
        )),
    }
}

/// Both buffering triggers, each defaulting to Firehose's default when absent.
/// `size_bytes` has already been validated (it arrives in different units).
pub(super) fn buffering(
    size_bytes: Option<u64>,
    interval_option: &str,
    interval_secs: Option<i64>,
) -> Result<Buffering, ConfigError> {
    let default = Buffering::default();
    Ok(Buffering {
        size_bytes: size_bytes.unwrap_or(default.size_bytes),
        interval: match interval_secs {
            Some(secs) => buffer_interval(interval_option, secs)?,
            None => default.interval,
        },
    })
}

/// The write-ahead log cap of a Direct PUT source.
pub(super) fn max_wal_bytes(option: &str, bytes: i64) -> Result<u64, ConfigError> {
    match u64::try_from(bytes) {
        Ok(b) if b >= MIN_MAX_WAL_BYTES => Ok(b),
        _ => Err(ConfigError::invalid(
            option,
            format!(
                "must be at least {MIN_MAX_WAL_BYTES} bytes (the largest PutRecordBatch, 500 records of 4 MiB in all, as the log stores it), got {bytes}"
            ),
        )),
    }
}

/// A compression given by one of the shape's spellings: `name_of` maps each
/// [`Compression`] to that shape's name. Matching is exact (Firehose's enum
/// is case-sensitive: `Snappy` but `HADOOP_SNAPPY`).
pub(super) fn compression(
    option: &str,
    value: &str,
    name_of: fn(Compression) -> &'static str,
) -> Result<Compression, ConfigError> {
    ALL_COMPRESSIONS
        .into_iter()
        .find(|c| name_of(*c) == value)
        .ok_or_else(|| {
            let names: Vec<&str> = ALL_COMPRESSIONS.into_iter().map(name_of).collect();
            ConfigError::invalid(
                option,
                format!("must be one of {}, got {value:?}", names.join(", ")),
            )
        })
}

/// Firehose `FileExtension`: 0-128 characters matching `^$|\.[0-9a-z!\-_.*'()]+`.
/// An empty or absent extension means "the compression's default": a
/// `--generate-cli-skeleton` document has `""` for every string it leaves unset.
pub(super) fn file_extension(
    option: &str,
    ext: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    let Some(ext) = ext.filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let len = ext.chars().count();
    if len > MAX_FILE_EXTENSION_CHARS {
        return Err(ConfigError::invalid(
            option,
            format!("must be at most {MAX_FILE_EXTENSION_CHARS} characters, got {len}"),
        ));
    }
    let allowed = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')')
    };
    let valid = ext.len() > 1 && ext.starts_with('.') && ext.chars().all(allowed);
    if !valid {
        return Err(ConfigError::invalid(
            option,
            format!(
                "must start with `.` followed by lowercase letters, digits or any of !-_.*'() \
                 (Firehose pattern `^$|\\.[0-9a-z!\\-_.*'()]+`), got {ext:?}"
            ),
        ));
    }
    Ok(Some(ext.to_owned()))
}

/// Firehose `CustomTimeZone`: an IANA name of 0-50 characters matching
/// `^$|[a-zA-Z/_]+`, looked up in the system time zone database. Empty or
/// absent means UTC (Firehose's default). Returns the zone and its name.
pub(super) fn time_zone(
    option: &str,
    name: Option<&str>,
) -> Result<(jiff::tz::TimeZone, String), ConfigError> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok((jiff::tz::TimeZone::UTC, "UTC".to_owned()));
    };
    let len = name.chars().count();
    let valid = len <= MAX_TIME_ZONE_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphabetic() || matches!(c, '/' | '_'));
    if !valid {
        return Err(ConfigError::invalid(
            option,
            format!(
                "must be an IANA time zone name of at most {MAX_TIME_ZONE_CHARS} letters, `/` and `_` \
                 (like `Asia/Tokyo`), got {name:?}"
            ),
        ));
    }
    let zone = jiff::tz::TimeZone::get(name)
        .map_err(|e| ConfigError::invalid(option, format!("unknown time zone {name:?}: {e}")))?;
    Ok((zone, name.to_owned()))
}

/// A local output directory, resolved against `cwd` when relative and stored
/// absolute, so the daemon's behaviour does not depend on a later `chdir`.
/// `.` components are dropped (`./data` and `data` are the same directory);
/// `..` is kept because removing it lexically is wrong across symlinks.
pub(super) fn local_dir(option: &str, path: &str, cwd: &Path) -> Result<PathBuf, ConfigError> {
    if path.is_empty() {
        return Err(ConfigError::invalid(
            option,
            "must name a directory, got an empty path",
        ));
    }
    let joined = cwd.join(path);
    // `cwd` is normally absolute already; `absolute` covers a relative one.
    let absolute = std::path::absolute(&joined).map_err(|e| {
        ConfigError::invalid(
            option,
            format!("cannot make {} absolute: {e}", joined.display()),
        )
    })?;
    Ok(absolute
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect())
}

/// `Prefix` and `ErrorOutputPrefix`, checked together because Firehose's rules
/// relate them (an expression in the prefix requires an error output prefix).
/// [`partition::resolve`] says which of the two breaks a rule; the error
/// names that one in the calling shape's spelling.
pub(super) fn prefixes(
    prefix_option: &str,
    error_output_prefix_option: &str,
    prefix: Option<&str>,
    error_output_prefix: Option<&str>,
    dynamic_partitioning: bool,
    event_time: bool,
) -> Result<(Prefix, Prefix), ConfigError> {
    partition::resolve(
        prefix,
        error_output_prefix,
        dynamic_partitioning,
        event_time,
    )
    .map_err(|err| match err {
        PrefixError::Invalid { kind, reason } => {
            let option = match kind {
                PrefixKind::Output => prefix_option,
                PrefixKind::ErrorOutput => error_output_prefix_option,
            };
            ConfigError::invalid(option, reason)
        }
        // Evaluation errors; `resolve` does not return them, but if it ever
        // does, the message still names the Firehose option.
        other => ConfigError::invalid(
            format!("{prefix_option}, {error_output_prefix_option}"),
            other.to_string(),
        ),
    })
}

/// The backup destination's lone prefix.
pub(super) fn backup_prefix(option: &str, prefix: Option<&str>) -> Result<Prefix, ConfigError> {
    partition::resolve_backup(prefix).map_err(|err| match err {
        PrefixError::Invalid { reason, .. } => ConfigError::invalid(option, reason),
        other => ConfigError::invalid(option, other.to_string()),
    })
}

/// An integer option within `[min, max]`.
pub(super) fn in_range(option: &str, value: i64, min: u64, max: u64) -> Result<u64, ConfigError> {
    match u64::try_from(value) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ConfigError::invalid(
            option,
            format!("must be between {min} and {max}, got {value}"),
        )),
    }
}

/// A non-negative option (read as unsigned) within `[min, max]`.
pub(super) fn within(option: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            option,
            format!("must be between {min} and {max}, got {value}"),
        ))
    }
}

/// Multipart part size: S3 needs at least 5 MiB per part (but the last);
/// at most 5 GiB.
pub(super) fn part_size_bytes(option: &str, bytes: i64) -> Result<u64, ConfigError> {
    in_range(option, bytes, 5 * MIB, 5 * 1024 * MIB)
}

/// An S3 bucket name (3-63 characters of lowercase letters, digits, `.` and
/// `-`, starting and ending with a letter or digit).
pub(super) fn bucket_name(option: &str, bucket: &str) -> Result<String, ConfigError> {
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = bucket
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && bucket
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if (3..=63).contains(&bucket.len()) && ok_chars && ok_ends {
        Ok(bucket.to_owned())
    } else {
        Err(ConfigError::invalid(
            option,
            format!(
                "{bucket:?} is not a valid S3 bucket name (3-63 characters: a-z, 0-9, '.', '-')"
            ),
        ))
    }
}

/// `arn:<partition>:s3:::<bucket>` -> the bucket name.
pub(super) fn bucket_arn(option: &str, arn: &str) -> Result<String, ConfigError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "s3", "", "", bucket] => bucket_name(option, bucket),
        _ => Err(ConfigError::invalid(
            option,
            format!("must be arn:aws:s3:::<bucket>, got {arn:?}"),
        )),
    }
}

/// A Kinesis stream name: 1-128 characters of `[a-zA-Z0-9_.-]`.
pub(super) fn kinesis_stream_name(option: &str, name: &str) -> Result<String, ConfigError> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ConfigError::invalid(
            option,
            format!("{name:?} is not a valid Kinesis stream name (1-128 of a-z A-Z 0-9 _ . -)"),
        ))
    }
}

/// `arn:<partition>:kinesis:<region>:<account>:stream/<name>` -> the name.
pub(super) fn kinesis_stream_arn(option: &str, arn: &str) -> Result<String, ConfigError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "kinesis", _, _, resource] => match resource.strip_prefix("stream/") {
            Some(name) => kinesis_stream_name(option, name),
            None => Err(ConfigError::invalid(
                option,
                format!("{arn:?} does not name a stream (…:stream/<name>)"),
            )),
        },
        _ => Err(ConfigError::invalid(
            option,
            format!("must be arn:aws:kinesis:<region>:<account>:stream/<name>, got {arn:?}"),
        )),
    }
}

/// An endpoint override URL (`http://` or `https://`).
pub(super) fn endpoint_url(option: &str, url: &str) -> Result<String, ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.trim_end_matches('/').to_owned())
    } else {
        Err(ConfigError::invalid(
            option,
            format!("must start with http:// or https://, got {url:?}"),
        ))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The working directory the shape tests resolve relative paths against.
    pub(in crate::config) const CWD: &str = "/srv/sluice";

    /// A file of the repository's `config/` directory.
    pub(in crate::config) fn config_file(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join(name)
    }
    use crate::config::{SourceConfig, StreamConfig};

    /// Asserts two configs are identical, field by field (the config types do
    /// not implement `PartialEq`: `Prefix` and `TimeZone` do, the rest is
    /// compared here so a new field fails to compile until it is added).
    pub(in crate::config) fn assert_same(a: &StreamConfig, b: &StreamConfig) {
        let StreamConfig {
            name,
            version,
            source,
            destination,
        } = a;
        assert_eq!(name, &b.name, "name");
        assert_eq!(version, &b.version, "version");
        match (source, &b.source) {
            (SourceConfig::DirectPut(x), SourceConfig::DirectPut(y)) => {
                assert_eq!(x.max_wal_bytes, y.max_wal_bytes, "max_wal_bytes");
            }
            (SourceConfig::Kinesis(x), SourceConfig::Kinesis(y)) => assert_eq!(x, y, "kinesis"),
            (x, y) => panic!("sources differ: {x:?} vs {y:?}"),
        }
        let crate::config::DestinationConfig {
            target,
            prefix,
            error_output_prefix,
            buffering,
            compression,
            file_extension,
            time_zone,
            time_zone_name,
            append_delimiter,
            backup,
            processors,
            format,
            dynamic_partitioning,
        } = destination;
        let d = &b.destination;
        assert_eq!(target, &d.target, "target");
        assert_eq!(prefix, &d.prefix, "prefix");
        assert_eq!(
            error_output_prefix, &d.error_output_prefix,
            "error_output_prefix"
        );
        assert_eq!(buffering, &d.buffering, "buffering");
        assert_eq!(compression, &d.compression, "compression");
        assert_eq!(file_extension, &d.file_extension, "file_extension");
        assert_eq!(time_zone, &d.time_zone, "time_zone");
        assert_eq!(time_zone_name, &d.time_zone_name, "time_zone_name");
        assert_eq!(append_delimiter, &d.append_delimiter, "append_delimiter");
        let backup = backup.as_ref().map(|b| (&b.prefix, b.compression));
        let other = d.backup.as_ref().map(|b| (&b.prefix, b.compression));
        assert_eq!(backup, other, "backup");
        assert_eq!(processors, &d.processors, "processors");
        assert_eq!(
            dynamic_partitioning, &d.dynamic_partitioning,
            "dynamic_partitioning"
        );
        assert_eq!(format.is_some(), d.format.is_some(), "format");
        if let (Some(x), Some(y)) = (format, &d.format) {
            assert_eq!(format!("{x:?}"), format!("{y:?}"), "format");
        }
    }

    #[test]
    fn file_extension_follows_firehose_pattern() {
        for ok in [".gz", ".json", ".json.gz", ".a-b_c!*'()", ".0"] {
            assert_eq!(
                file_extension("x", Some(ok)).unwrap().as_deref(),
                Some(ok),
                "{ok}"
            );
        }
        assert_eq!(file_extension("x", Some("")).unwrap(), None);
        assert_eq!(file_extension("x", None).unwrap(), None);
        let long = format!(".{}", "a".repeat(MAX_FILE_EXTENSION_CHARS));
        for bad in ["gz", ".", ".GZ", ".g z", ".gz/", "..é", long.as_str()] {
            assert!(file_extension("x", Some(bad)).is_err(), "{bad:?} accepted");
        }
        let at_max = format!(".{}", "a".repeat(MAX_FILE_EXTENSION_CHARS - 1));
        assert!(file_extension("x", Some(&at_max)).is_ok());
    }

    #[test]
    fn stream_name_follows_firehose_pattern() {
        for ok in ["a", "local", "my-stream_1.v2", &"x".repeat(64)] {
            assert!(stream_name("n", ok).is_ok(), "{ok:?} rejected");
        }
        for ok in ["...", ".a", "a..b", "-"] {
            assert!(stream_name("n", ok).is_ok(), "{ok:?} rejected");
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "a\\b",
            "ü",
            ".",
            "..",
            &"x".repeat(65),
            "api-streams",
            "wasm-cache",
        ] {
            assert!(stream_name("n", bad).is_err(), "{bad:?} accepted");
        }
        let err = stream_name("name", "..").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid option `name`: \"..\" is not allowed"),
            "{err}"
        );
    }

    #[test]
    fn ranges_include_their_bounds() {
        assert_eq!(buffer_size_bytes("o", MIB as i64).unwrap(), MIB);
        assert_eq!(buffer_size_bytes("o", 128 * MIB as i64).unwrap(), 128 * MIB);
        assert!(buffer_size_bytes("o", MIB as i64 - 1).is_err());
        assert!(buffer_size_bytes("o", 128 * MIB as i64 + 1).is_err());
        assert_eq!(buffer_size_mib("o", 1).unwrap(), MIB);
        assert_eq!(buffer_size_mib("o", 128).unwrap(), 128 * MIB);
        assert!(buffer_size_mib("o", 0).is_err());
        assert!(buffer_size_mib("o", 129).is_err());
        assert_eq!(buffer_interval("o", 0).unwrap(), Duration::ZERO);
        assert_eq!(buffer_interval("o", 900).unwrap(), Duration::from_secs(900));
        assert!(buffer_interval("o", 901).is_err());
        assert!(buffer_interval("o", -1).is_err());
        // The largest batch the API accepts must fit an empty log.
        const { assert!(MIN_MAX_WAL_BYTES > 4 * MIB + 500 * 16) };
        assert!(max_wal_bytes("o", MIN_MAX_WAL_BYTES as i64 - 1).is_err());
        assert_eq!(
            max_wal_bytes("o", MIN_MAX_WAL_BYTES as i64).unwrap(),
            MIN_MAX_WAL_BYTES
        );
    }

    #[test]
    fn time_zone_defaults_to_utc_and_looks_names_up() {
        let (zone, name) = time_zone("tz", None).unwrap();
        assert_eq!((zone, name.as_str()), (jiff::tz::TimeZone::UTC, "UTC"));
        let (zone, _) = time_zone("tz", Some("")).unwrap();
        assert_eq!(zone, jiff::tz::TimeZone::UTC);
        let (zone, name) = time_zone("tz", Some("Asia/Tokyo")).unwrap();
        assert_eq!(name, "Asia/Tokyo");
        assert_eq!(zone.iana_name(), Some("Asia/Tokyo"));
        assert!(time_zone("tz", Some("Mars/Olympus_Mons")).is_err());
        assert!(
            time_zone("tz", Some("Etc/GMT+5")).is_err(),
            "outside Firehose's pattern"
        );
    }

    #[test]
    fn local_dir_is_absolute_without_dot_components() {
        let cwd = Path::new("/srv/sluice");
        assert_eq!(
            local_dir("p", "./data", cwd).unwrap(),
            Path::new("/srv/sluice/data")
        );
        assert_eq!(
            local_dir("p", "data/./x", cwd).unwrap(),
            Path::new("/srv/sluice/data/x")
        );
        assert_eq!(
            local_dir("p", "../data", cwd).unwrap(),
            Path::new("/srv/sluice/../data")
        );
        assert_eq!(
            local_dir("p", "/var/lib/out", cwd).unwrap(),
            Path::new("/var/lib/out")
        );
        assert!(local_dir("p", "", cwd).is_err());
    }
}
