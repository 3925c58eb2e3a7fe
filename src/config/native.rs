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
//! Keys are checked before serde sees the file, against [`OPTIONS`], one table
//! of every option path: serde stops at the first unknown field and, inside
//! the `type`-tagged tables (which it buffers), reports it at the table's
//! header rather than at the key. The check walks the spanned document
//! (`toml::de::DeTable`), so it reports *every* unknown key at its own line
//! and column with the nearest valid name, and remembers where each option is,
//! so validation errors point at their key too. `deny_unknown_fields` stays on
//! the raw structs as a second line; tests keep [`OPTIONS`] equal to what
//! serde accepts and to what `config/example.toml` documents.
//!
//! Leaf values are `validate::Checked`: a value of the wrong type is reported naming
//! the option by its dotted path, like any other invalid value. Numbers are
//! read as `i64` (TOML's integer type) and range-checked here, so a negative
//! value gets the same "must be between" message as any out-of-range one.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::suggest::{self, Position};
use super::validate::{self, Checked, opt};
use super::{
    BackupConfig, Compression, ConfigError, ConfigErrors, DEFAULT_ATTEMPT_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_PARTS, DEFAULT_MAX_WAL_BYTES, DEFAULT_PART_SIZE_BYTES,
    DestinationConfig, DirectPutConfig, Encryption, FileError, KinesisConfig, S3Target,
    SourceConfig, StartPosition, StreamConfig, Target,
};
use super::{format, transform};
use crate::buffer::event_time::{EventTime, EventTimeSource, LateRecords};
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
    transform: Option<Vec<transform::RawTransform>>,
    dynamic_partitioning: Option<RawDynamicPartitioning>,
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
    transform: Option<Vec<transform::RawTransform>>,
    dynamic_partitioning: Option<RawDynamicPartitioning>,
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
    transform: Option<Vec<transform::RawTransform>>,
    dynamic_partitioning: Option<RawDynamicPartitioning>,
    format: Option<format::RawFormat>,
}

/// `[destination.dynamic_partitioning]`: present means enabled. Value types
/// are checked with the keys ([`OPTIONS`]) before serde sees the table.
#[derive(Debug, Deserialize)]
#[serde(rename = "destination.dynamic_partitioning", deny_unknown_fields)]
struct RawDynamicPartitioning {
    query: Option<String>,
    max_active_partitions: Option<u64>,
    memory_budget_bytes: Option<u64>,
    retry_duration_secs: Option<u64>,
    event_time: Option<RawEventTime>,
}

/// `[destination.dynamic_partitioning.event_time]`: the prefix's timestamps from a
/// time in each record (beyond Firehose).
#[derive(Debug, Deserialize)]
#[serde(
    rename = "destination.dynamic_partitioning.event_time",
    deny_unknown_fields
)]
struct RawEventTime {
    field: Option<String>,
    key: Option<String>,
    lateness_secs: Option<u64>,
    late: Option<String>,
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
pub(super) fn native_name(compression: Compression) -> &'static str {
    match compression {
        Compression::Uncompressed => "uncompressed",
        Compression::Gzip => "gzip",
        Compression::Zip => "zip",
        Compression::Snappy => "snappy",
        Compression::HadoopSnappy => "hadoop_snappy",
        Compression::Zstd => "zstd",
    }
}

/// One option of the native shape, by its dotted path. Arrays of tables are
/// transparent: a column of `[[destination.format.schema]]` has
/// `destination.format.schema.name`. A path that is the prefix of others is a
/// table (or, in [`ARRAYS_OF_TABLES`], an array of tables); every other path is
/// a leaf of the given [`Kind`].
#[derive(Debug, Clone, Copy)]
pub(super) struct NativeOption {
    /// Dotted path.
    pub(super) path: &'static str,
    /// For a key of a `type`-tagged table (`source`, `destination`): the
    /// types that have it. Empty: every type, or not in a tagged table.
    pub(super) types: &'static [&'static str],
    /// The TOML type of the value.
    pub(super) kind: Kind,
    /// Must be present whenever its table is (and its type applies).
    pub(super) required: bool,
}

/// The TOML type a leaf option takes. Checked with the keys, so a wrong type
/// is reported at its key even where serde could only point at the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Str,
    Int,
    /// A non-negative integer (the format options, read as unsigned).
    Count,
    /// A number: an integer or a float.
    Number,
    Bool,
    StrArray,
    /// A table of strings with keys of the user's choosing.
    StrTable,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Int => "an integer",
            Kind::Count => "a non-negative integer",
            Kind::Number => "a number",
            Kind::Bool => "true or false",
            Kind::StrArray => "an array of strings",
            Kind::StrTable => "a table of strings",
        }
    }

    fn accepts(self, value: &DeValue<'_>) -> bool {
        let strings = |mut values: Box<dyn Iterator<Item = &DeValue<'_>> + '_>| {
            values.all(|v| matches!(v, DeValue::String(_)))
        };
        match (self, value) {
            (Kind::Str, DeValue::String(_))
            | (Kind::Int, DeValue::Integer(_))
            | (Kind::Number, DeValue::Integer(_) | DeValue::Float(_))
            | (Kind::Bool, DeValue::Boolean(_)) => true,
            (Kind::Count, DeValue::Integer(i)) => !i.as_str().starts_with('-'),
            (Kind::StrArray, DeValue::Array(items)) => {
                strings(Box::new(items.iter().map(|v| v.get_ref())))
            }
            (Kind::StrTable, DeValue::Table(table)) => {
                strings(Box::new(table.values().map(|v| v.get_ref())))
            }
            _ => false,
        }
    }
}

const fn option(path: &'static str, kind: Kind) -> NativeOption {
    NativeOption {
        path,
        types: &[],
        kind,
        required: false,
    }
}

impl NativeOption {
    const fn only(self, types: &'static [&'static str]) -> Self {
        NativeOption { types, ..self }
    }
    const fn required(self) -> Self {
        NativeOption {
            required: true,
            ..self
        }
    }
}

/// The `type`-tagged tables and their types, in the order the docs give them.
pub(super) const TAGGED: [(&str, &[&str]); 2] = [
    ("source", &["direct_put", "kinesis"]),
    ("destination", &["local", "s3"]),
];

/// Tables written `[[...]]`, one per element.
const ARRAYS_OF_TABLES: [&str; 2] = ["destination.format.schema", "destination.transform"];

const DIRECT_PUT: &[&str] = &["direct_put"];
const KINESIS: &[&str] = &["kinesis"];
const LOCAL: &[&str] = &["local"];
const S3_ONLY: &[&str] = &["s3"];

use Kind::{Bool, Count, Int, Number, Str, StrArray, StrTable};

/// Every option the native shape accepts: the one list the key check, the
/// "did you mean" suggestions and the example-file test all use. serde derive
/// has no reflection to build it from the `Raw*` structs, so it is written out
/// and tests hold it to them (`options_table_is_what_serde_accepts` provokes
/// serde's own "expected one of" list for every table and compares) and to
/// `config/example.toml` (`example_toml_documents_every_option`). The
/// `type` keys of tagged tables are checked apart ([`TAGGED`]).
pub(super) const OPTIONS: &[NativeOption] = &[
    option("name", Str).required(),
    option("source.max_wal_bytes", Int).only(DIRECT_PUT),
    option("source.stream_name", Str).only(KINESIS),
    option("source.stream_arn", Str).only(KINESIS),
    option("source.endpoint_url", Str).only(KINESIS),
    option("source.start_position", Str).only(KINESIS),
    option("source.start_timestamp", Str).only(KINESIS),
    option("source.poll_interval_ms", Int).only(KINESIS),
    option("source.shard_sync_interval_secs", Int).only(KINESIS),
    option("source.max_records_per_call", Int).only(KINESIS),
    option("source.attempt_timeout_secs", Int).only(KINESIS),
    option("destination.path", Str).only(LOCAL).required(),
    option("destination.bucket", Str).only(S3_ONLY),
    option("destination.bucket_arn", Str).only(S3_ONLY),
    option("destination.endpoint_url", Str).only(S3_ONLY),
    option("destination.force_path_style", Bool).only(S3_ONLY),
    option("destination.part_size_bytes", Int).only(S3_ONLY),
    option("destination.max_concurrent_parts", Int).only(S3_ONLY),
    option("destination.attempt_timeout_secs", Int).only(S3_ONLY),
    option("destination.encryption", Str).only(S3_ONLY),
    option("destination.kms_key_arn", Str).only(S3_ONLY),
    option("destination.prefix", Str),
    option("destination.error_output_prefix", Str),
    option("destination.compression", Str),
    option("destination.file_extension", Str),
    option("destination.time_zone", Str),
    option("destination.append_delimiter", Bool),
    option("destination.buffering.size_bytes", Int),
    option("destination.buffering.interval_secs", Int),
    option("destination.backup.prefix", Str),
    option("destination.backup.compression", Str),
    option("destination.deaggregation.sub_record_type", Str).required(),
    option("destination.deaggregation.delimiter", Str),
    option("destination.dynamic_partitioning.query", Str),
    option(
        "destination.dynamic_partitioning.max_active_partitions",
        Count,
    ),
    option(
        "destination.dynamic_partitioning.memory_budget_bytes",
        Count,
    ),
    option(
        "destination.dynamic_partitioning.retry_duration_secs",
        Count,
    ),
    option("destination.dynamic_partitioning.event_time.field", Str),
    option("destination.dynamic_partitioning.event_time.key", Str),
    option(
        "destination.dynamic_partitioning.event_time.lateness_secs",
        Count,
    ),
    option("destination.dynamic_partitioning.event_time.late", Str),
    option("destination.transform.module", Str).required(),
    option("destination.transform.config", StrTable),
    option("destination.transform.retries", Count),
    option("destination.transform.batch_size_bytes", Count),
    option("destination.transform.batch_interval_secs", Count),
    option("destination.transform.deadline_ms", Count),
    option("destination.transform.memory_bytes", Count),
    option("destination.format.type", Str).required(),
    option("destination.format.deserializer", Str),
    option("destination.format.case_insensitive", Bool),
    option("destination.format.column_to_json_key_mappings", StrTable),
    option(
        "destination.format.convert_dots_in_json_keys_to_underscores",
        Bool,
    ),
    option("destination.format.timestamp_formats", StrArray),
    option("destination.format.compression", Str),
    option("destination.format.page_size_bytes", Count),
    option("destination.format.block_size_bytes", Count),
    option("destination.format.enable_dictionary", Bool),
    option("destination.format.writer_version", Str),
    option("destination.format.stripe_size_bytes", Count),
    option("destination.format.row_index_stride", Count),
    option("destination.format.bloom_filter_columns", StrArray),
    option(
        "destination.format.bloom_filter_false_positive_probability",
        Number,
    ),
    option("destination.format.schema.name", Str).required(),
    option("destination.format.schema.type", Str).required(),
    option("destination.format.glue.database", Str).required(),
    option("destination.format.glue.table", Str).required(),
    option("destination.format.glue.region", Str),
    option("destination.format.glue.catalog_id", Str),
    option("destination.format.glue.version_id", Str),
    option("destination.format.glue.endpoint_url", Str),
];

/// Where the user finds every option.
const REFERENCE: &str = "config/example.toml lists every option";

/// `parent.key`, or `key` at the top level.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// What is directly inside table `parent`: each key's name, and the option
/// itself when the key is a leaf (`None`: a table). With `kind`, only what
/// that type of a tagged table has; a table is listed once per option below it.
fn children<'a>(
    parent: &'a str,
    kind: Option<&'a str>,
) -> impl Iterator<Item = (&'static str, Option<&'static NativeOption>)> + 'a {
    OPTIONS.iter().filter_map(move |o| {
        let rest = if parent.is_empty() {
            o.path
        } else {
            o.path.strip_prefix(parent)?.strip_prefix('.')?
        };
        let fits = o.types.is_empty() || kind.is_none_or(|k| o.types.contains(&k));
        match rest.split_once('.') {
            None => fits.then_some((rest, Some(o))),
            Some((table, _)) => fits.then_some((table, None)),
        }
    })
}

/// What the key check found: errors at byte spans, and where each present
/// option's key is.
#[derive(Default)]
struct KeyCheck {
    errors: Vec<(Range<usize>, ConfigError)>,
    keys: BTreeMap<String, Range<usize>>,
}

impl KeyCheck {
    /// Checks the keys and leaf types of the table at `path`, whose own key
    /// (or, for the document, its start) is at `at`, and reports missing
    /// required options there.
    fn table(&mut self, table: &DeTable<'_>, path: &str, at: Range<usize>) {
        let tagged = TAGGED.iter().find(|(tagged, _)| *tagged == path);
        let kind = tagged.and_then(|(_, types)| self.kind(table, path, types, at.clone()));
        for (key, value) in table {
            let name: &str = key.get_ref();
            let option = join(path, name);
            self.keys.entry(option.clone()).or_insert(key.span());
            if tagged.is_some() && name == "type" {
                continue;
            }
            match children(path, kind).find(|(n, _)| *n == name) {
                Some((_, Some(leaf))) => {
                    if !leaf.kind.accepts(value.get_ref()) {
                        let reason = format!(
                            "must be {}, got {}",
                            leaf.kind.describe(),
                            shown(value.get_ref())
                        );
                        self.errors
                            .push((key.span(), ConfigError::invalid(option, reason)));
                    }
                }
                Some((_, None)) => self.value(value.get_ref(), &option, key.span()),
                None => {
                    let hint = self.hint(path, kind, name);
                    self.errors
                        .push((key.span(), ConfigError::Unknown { option, hint }));
                }
            }
        }
        // A required option is missing only if a bad `type` did not hide which apply.
        if tagged.is_none() || kind.is_some() {
            for (name, leaf) in children(path, kind) {
                if leaf.is_some_and(|o| o.required) && !table.contains_key(name) {
                    self.errors.push((
                        at.clone(),
                        ConfigError::invalid(join(path, name), "required, and missing here"),
                    ));
                }
            }
        }
    }

    /// Why `name` is not an option of table `path`.
    fn hint(&self, path: &str, kind: Option<&str>, name: &str) -> String {
        // A real option of another type of this table.
        if let Some((_, Some(o))) = children(path, None).find(|(n, _)| *n == name) {
            let types: Vec<String> = o.types.iter().map(|t| format!("{t:?}")).collect();
            return format!("only for `type = {}` in [{path}]", types.join(" or "));
        }
        let mut names: Vec<&str> = children(path, kind).map(|(n, _)| n).collect();
        if TAGGED.iter().any(|(tagged, _)| *tagged == path) {
            names.push("type");
        }
        match suggest::nearest(name, names) {
            Some(near) => format!("did you mean `{near}`?"),
            None => REFERENCE.to_owned(),
        }
    }

    /// A table's value: a table, or an array of tables (`[[...]]`).
    fn value(&mut self, value: &DeValue<'_>, path: &str, at: Range<usize>) {
        let array = ARRAYS_OF_TABLES.contains(&path);
        match value {
            DeValue::Table(table) if !array => self.table(table, path, at),
            DeValue::Array(items)
                if array
                    && items
                        .iter()
                        .all(|i| matches!(i.get_ref(), DeValue::Table(_))) =>
            {
                for item in items {
                    if let DeValue::Table(table) = item.get_ref() {
                        self.table(table, path, item.span());
                    }
                }
            }
            other => {
                let want = if array {
                    format!("an array of tables ([[{path}]])")
                } else {
                    format!("a table ([{path}])")
                };
                let reason = format!("must be {want}, got {}", shown(other));
                self.errors.push((at, ConfigError::invalid(path, reason)));
            }
        }
    }

    /// The `type` of a tagged table, when it is one of `types`; reports a
    /// missing or unknown one. `None` for a bad type: the keys are then
    /// checked against the options of every type.
    fn kind<'t>(
        &mut self,
        table: &'t DeTable<'_>,
        path: &str,
        types: &[&str],
        at: Range<usize>,
    ) -> Option<&'t str> {
        let option = join(path, "type");
        let listed = types.join(", ");
        let Some((key, value)) = table.get_key_value("type") else {
            self.errors.push((
                at,
                ConfigError::invalid(option, format!("required: one of {listed}")),
            ));
            return None;
        };
        match value.get_ref().as_str() {
            Some(kind) if types.contains(&kind) => Some(kind),
            found => {
                let hint = found
                    .and_then(|f| suggest::nearest(f, types.iter().copied()))
                    .map(|t| format!("; did you mean {t:?}?"))
                    .unwrap_or_default();
                let found = shown(value.get_ref());
                self.errors.push((
                    key.span(),
                    ConfigError::invalid(
                        option,
                        format!("must be one of {listed}, got {found}{hint}"),
                    ),
                ));
                None
            }
        }
    }
}

/// A value as an error message shows it: a scalar as written, else its type.
fn shown(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("{s:?}"),
        DeValue::Integer(i) if i.radix() == 10 => i.as_str().to_owned(),
        DeValue::Float(f) => f.as_str().to_owned(),
        DeValue::Boolean(b) => b.to_string(),
        other => format!("a {}", other.type_str()),
    }
}

/// Where the error is: the option's key, or the nearest enclosing table
/// that is present (a missing required option points at its table).
fn locate(keys: &BTreeMap<String, Range<usize>>, error: &ConfigError) -> Option<Range<usize>> {
    let ConfigError::Invalid { option, .. } = error else {
        return None;
    };
    let mut path = option.as_str();
    loop {
        if let Some(span) = keys.get(path) {
            return Some(span.clone());
        }
        path = &path[..path.rfind('.')?];
    }
}

/// Parses and validates a native TOML stream config. `path` names the file in
/// errors; relative paths inside the file resolve against `cwd`.
///
/// # Errors
/// Every error found, each with the file and the line and column of its key:
/// a syntax error alone; else every unknown key, missing or unknown `type`;
/// else the first error serde finds (a missing field, a wrong type of a table);
/// else the validation errors, one per part of the stream (name, source,
/// destination target, the rest of the destination): within a part,
/// validation stops at the first bad option.
pub fn parse(text: &str, path: &Path, cwd: &Path) -> Result<StreamConfig, ConfigErrors> {
    let at = |span: Option<Range<usize>>| span.map(|s| Position::of(text, s.start));
    let errors = |found: Vec<(Option<Range<usize>>, ConfigError)>| {
        let mut found: Vec<FileError> = found
            .into_iter()
            .map(|(span, error)| FileError {
                path: path.to_owned(),
                position: at(span),
                error,
            })
            .collect();
        found.sort_by_key(|e| e.position);
        ConfigErrors(found)
    };
    let document = DeTable::parse(text).map_err(|e| {
        ConfigErrors::one(
            path,
            at(e.span()),
            ConfigError::Parse(e.message().to_owned()),
        )
    })?;
    let mut check = KeyCheck::default();
    check.table(document.get_ref(), "", 0..0);
    let mut found: Vec<(Option<Range<usize>>, ConfigError)> = Vec::new();
    // serde and validation run even after key errors, for the errors the key
    // check cannot see (value ranges, rules between options); what they say
    // about an option the key check already reported is left out, and so is
    // serde's error then (most likely the same unknown key or wrong type).
    let reported: Vec<String> = check
        .errors
        .iter()
        .filter_map(|(_, e)| option_of(e))
        .collect();
    found.extend(check.errors.drain(..).map(|(span, e)| (Some(span), e)));
    match RawStream::deserialize(toml::de::Deserializer::from(document)) {
        Err(e) if found.is_empty() => found.push((
            e.span(),
            ConfigError::Parse(suggest::unknown_field(e.message(), REFERENCE)),
        )),
        Err(_) => {}
        Ok(raw) => match validate_stream(raw, cwd) {
            Ok(config) if found.is_empty() => return Ok(config),
            Ok(_) => {}
            Err(invalid) => found.extend(
                invalid
                    .into_iter()
                    .filter(|e| option_of(e).is_none_or(|o| !reported.contains(&o)))
                    .map(|e| (locate(&check.keys, &e), e)),
            ),
        },
    }
    Err(errors(found))
}

/// The option an error is about, if it names one.
fn option_of(error: &ConfigError) -> Option<String> {
    match error {
        ConfigError::Invalid { option, .. } | ConfigError::Unknown { option, .. } => {
            Some(option.clone())
        }
        _ => None,
    }
}

/// Keeps a part's value, or its error for the report.
fn keep<T>(result: Result<T, ConfigError>, errors: &mut Vec<ConfigError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// Validates the four parts of a stream independently (name, source,
/// destination target, the rest of the destination), so one run reports an
/// error in each; within a part the first error ends it, because later checks
/// there often depend on earlier values.
fn validate_stream(raw: RawStream, cwd: &Path) -> Result<StreamConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let name = keep(
        raw.name
            .get("name")
            .and_then(|name| validate::stream_name("name", name)),
        &mut errors,
    );
    let source = keep(
        match raw.source {
            RawSource::DirectPut(direct_put) => validate_direct_put(&direct_put),
            RawSource::Kinesis(k) => validate_kinesis(&k).map(SourceConfig::Kinesis),
        },
        &mut errors,
    );
    let (target, common) = match raw.destination {
        RawDestination::Local(local) => {
            const PATH: &str = "destination.path";
            let target = local
                .path
                .get(PATH)
                .and_then(|path| validate::local_dir(PATH, path, cwd))
                .map(|path| Target::Local { path });
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
                transform: local.transform,
                dynamic_partitioning: local.dynamic_partitioning,
                format: local.format,
            };
            (target, common)
        }
        RawDestination::S3(s3) => {
            let target = validate_s3(&s3);
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
                transform: s3.transform,
                dynamic_partitioning: s3.dynamic_partitioning,
                format: s3.format,
            };
            (target, common)
        }
    };
    let target = keep(target, &mut errors);
    let destination = keep(validate_destination(common), &mut errors);
    match (name, source, target, destination) {
        (Some(name), Some(source), Some(target), Some(destination)) => Ok(StreamConfig {
            name,
            version: 1,
            source,
            destination: destination(target),
        }),
        _ => Err(errors),
    }
}

fn validate_direct_put(raw: &RawDirectPut) -> Result<SourceConfig, ConfigError> {
    const MAX_WAL_BYTES: &str = "source.max_wal_bytes";
    Ok(SourceConfig::DirectPut(DirectPutConfig {
        max_wal_bytes: match opt(&raw.max_wal_bytes, MAX_WAL_BYTES)? {
            Some(&bytes) => validate::max_wal_bytes(MAX_WAL_BYTES, bytes)?,
            None => DEFAULT_MAX_WAL_BYTES,
        },
    }))
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

/// The destination options every target shares; the result takes the
/// target, validated separately so both report their errors.
fn validate_destination(
    raw: RawCommon,
) -> Result<impl FnOnce(Target) -> DestinationConfig, ConfigError> {
    const PREFIX: &str = "destination.prefix";
    const ERROR_OUTPUT_PREFIX: &str = "destination.error_output_prefix";
    const SIZE_BYTES: &str = "destination.buffering.size_bytes";
    const INTERVAL_SECS: &str = "destination.buffering.interval_secs";
    const COMPRESSION: &str = "destination.compression";
    const FILE_EXTENSION: &str = "destination.file_extension";
    const TIME_ZONE: &str = "destination.time_zone";
    const APPEND_DELIMITER: &str = "destination.append_delimiter";

    let metadata = raw
        .dynamic_partitioning
        .as_ref()
        .and_then(|d| d.query.as_deref())
        .map(|query| {
            crate::process::metadata::MetadataQuery::compile(query)
                .map_err(|why| ConfigError::invalid("destination.dynamic_partitioning.query", why))
        })
        .transpose()?;
    let processors = crate::process::Processors {
        metadata,
        deaggregation: raw
            .deaggregation
            .as_ref()
            .map(format::native_deaggregation)
            .transpose()?,
        transforms: transform::native_transforms(raw.transform.as_deref().unwrap_or_default())?,
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
    let dynamic_partitioning = raw
        .dynamic_partitioning
        .as_ref()
        .map(native_dynamic_partitioning)
        .transpose()?;
    let (prefix, error_output_prefix) = validate::prefixes(
        PREFIX,
        ERROR_OUTPUT_PREFIX,
        opt(&raw.prefix, PREFIX)?.map(String::as_str),
        opt(&raw.error_output_prefix, ERROR_OUTPUT_PREFIX)?.map(String::as_str),
        dynamic_partitioning.is_some(),
        dynamic_partitioning
            .as_ref()
            .is_some_and(|d| d.event_time.is_some()),
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
    // Firehose's default: records are concatenated as sent.
    let append_delimiter = opt(&raw.append_delimiter, APPEND_DELIMITER)?
        .copied()
        .unwrap_or(false);
    let backup = match &raw.backup {
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
    };
    Ok(move |target| DestinationConfig {
        target,
        prefix,
        error_output_prefix,
        buffering,
        compression,
        file_extension,
        time_zone,
        time_zone_name,
        append_delimiter,
        processors,
        format,
        backup,
        dynamic_partitioning,
    })
}

/// `[destination.dynamic_partitioning]`.
fn native_dynamic_partitioning(
    raw: &RawDynamicPartitioning,
) -> Result<crate::buffer::Partitioning, ConfigError> {
    const D: &str = "destination.dynamic_partitioning";
    let mut p = crate::buffer::Partitioning::default();
    let range = |key: &str, value: u64, min: u64, max: u64| {
        validate::within(&format!("{D}.{key}"), value, min, max)
    };
    if let Some(n) = raw.max_active_partitions {
        // Firehose allows up to 5,000 on request.
        p.max_active_partitions = range("max_active_partitions", n, 1, 5_000)? as usize;
    }
    if let Some(bytes) = raw.memory_budget_bytes {
        p.memory_budget_bytes = range("memory_budget_bytes", bytes, super::MIB, 64 << 30)?;
    }
    if let Some(secs) = raw.retry_duration_secs {
        p.retry_duration = Duration::from_secs(range("retry_duration_secs", secs, 0, 7200)?);
    }
    p.event_time = raw.event_time.as_ref().map(native_event_time).transpose()?;
    Ok(p)
}

/// `[destination.dynamic_partitioning.event_time]`.
fn native_event_time(raw: &RawEventTime) -> Result<EventTime, ConfigError> {
    const E: &str = "destination.dynamic_partitioning.event_time";
    let source = match (&raw.field, &raw.key) {
        (Some(field), None) => {
            // `.a.b` as in jq, or `a.b`.
            let path: Vec<String> = field
                .strip_prefix('.')
                .unwrap_or(field)
                .split('.')
                .map(str::to_owned)
                .collect();
            if path.iter().any(String::is_empty) {
                return Err(ConfigError::invalid(
                    format!("{E}.field"),
                    format!(
                        "{field:?} is not a path of field names such as \"ts\" or \"event.time\""
                    ),
                ));
            }
            EventTimeSource::Field(path)
        }
        (None, Some(key)) if !key.is_empty() => EventTimeSource::Key(key.clone()),
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{E}.key"),
                "must not be empty",
            ));
        }
        (Some(_), Some(_)) | (None, None) => {
            return Err(ConfigError::invalid(
                E,
                "give exactly one of `field` (a JSON field of the record, such as \"ts\") and `key` (a partition key of the query or a transform)",
            ));
        }
    };
    let lateness = match raw.lateness_secs {
        Some(secs) => Duration::from_secs(validate::within(
            &format!("{E}.lateness_secs"),
            secs,
            0,
            366 * 86_400,
        )?),
        None => EventTime::DEFAULT_LATENESS,
    };
    let late = match raw.late.as_deref() {
        None | Some("arrival") => LateRecords::Arrival,
        Some("error_output") => LateRecords::ErrorOutput,
        Some(other) => {
            return Err(ConfigError::invalid(
                format!("{E}.late"),
                format!(
                    "{other:?} is not \"arrival\" (into the partition of the record's arrival time) or \"error_output\" (to the `late` error output)"
                ),
            ));
        }
    };
    Ok(EventTime {
        source,
        lateness,
        late,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::validate::tests::{CWD, config_file};
    use crate::config::{Buffering, MIB};

    /// The first error of a native config: most cases have exactly one.
    fn parse_str(text: &str) -> Result<StreamConfig, ConfigError> {
        parse(text, Path::new("test.toml"), Path::new(CWD)).map_err(|mut e| e.0.remove(0).error)
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
    fn event_time_reads_a_field_or_a_key_and_needs_no_partition_key() {
        let with = |prefix: &str, table: &str| {
            format!(
                "{MINIMAL}\nprefix = \"{prefix}\"\nerror_output_prefix = \"e/!{{firehose:error-output-type}}/\"\n[destination.dynamic_partitioning]\n[destination.dynamic_partitioning.event_time]\n{table}\n"
            )
        };
        let config = parse_str(&with(
            "day=!{timestamp:yyyy-MM-dd}/",
            "field = \".event.time\"",
        ))
        .unwrap();
        let event_time = config
            .destination
            .dynamic_partitioning
            .and_then(|d| d.event_time)
            .unwrap();
        assert_eq!(
            event_time,
            EventTime {
                source: EventTimeSource::Field(vec!["event".into(), "time".into()]),
                lateness: EventTime::DEFAULT_LATENESS,
                late: LateRecords::Arrival,
            }
        );
        let config = parse_str(&with(
            "c=!{partitionKeyFromQuery:c}/",
            "key = \"t\"\nlateness_secs = 0\nlate = \"error_output\"",
        ))
        .unwrap();
        let event_time = config.destination.dynamic_partitioning.unwrap().event_time;
        assert_eq!(
            event_time.map(|e| (e.source, e.lateness, e.late)),
            Some((
                EventTimeSource::Key("t".into()),
                Duration::ZERO,
                LateRecords::ErrorOutput
            ))
        );
        for (table, needle) in [
            ("", "give exactly one of `field`"),
            ("field = \"a\"\nkey = \"b\"", "give exactly one of `field`"),
            ("field = \"a..b\"", "is not a path of field names"),
            ("key = \"\"", "event_time.key`: must not be empty"),
            (
                "field = \"ts\"\nlate = \"drop\"",
                "\"drop\" is not \"arrival\"",
            ),
            (
                "field = \"ts\"\nlateness_secs = 40000000",
                "event_time.lateness_secs",
            ),
            ("field = 3", "event_time.field"),
        ] {
            let err = parse_str(&with("d/", table)).unwrap_err().to_string();
            assert!(err.contains(needle), "{table:?}: {err}");
        }
        // Without event time, a dynamic prefix still needs a key (Firehose's rule).
        let err = parse_str(&format!(
            "{MINIMAL}\nprefix = \"d/\"\nerror_output_prefix = \"e/!{{firehose:error-output-type}}/\"\n[destination.dynamic_partitioning]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("or partition by event time"), "{err}");
    }

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
    fn example_toml_parses_as_it_stands() {
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
        let backup = d.backup.as_ref().expect("backup");
        assert_eq!(backup.compression, Compression::Gzip);
    }

    /// The option paths `config/example.toml` mentions, set or commented out:
    /// each line, with its leading `#`s removed, that is a table
    /// header or parses as one TOML `key = value`. A commented-out header
    /// applies to the commented-out keys after it until the next real header;
    /// real keys always belong to the last real header, as TOML reads them.
    fn example_mentions() -> Vec<(String, String)> {
        let text = std::fs::read_to_string(config_file("example.toml")).unwrap();
        let (mut real, mut commented) = (String::new(), None::<String>);
        let mut found = Vec::new();
        for line in text.lines() {
            // Commented-out blocks comment their own alternatives once more (`# # ...`).
            let body = line.trim_start_matches(|c: char| c == '#' || c.is_whitespace());
            let is_comment = line.trim_start().starts_with('#');
            let header = body
                .strip_prefix("[[")
                .and_then(|h| h.split_once("]]"))
                .or_else(|| body.strip_prefix('[').and_then(|h| h.split_once(']')))
                .map(|(h, _)| h.trim());
            if let Some(h) = header.filter(|h| {
                !h.is_empty()
                    && h.split('.').all(|p| {
                        !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    })
            }) {
                if is_comment {
                    commented = Some(h.to_owned());
                } else {
                    (real, commented) = (h.to_owned(), None);
                }
                continue;
            }
            let Ok(table) = toml::from_str::<toml::Table>(body) else {
                continue;
            };
            let Some((key, value)) = table.iter().next().filter(|_| table.len() == 1) else {
                continue;
            };
            let parent = if is_comment {
                commented.as_deref().unwrap_or(&real)
            } else {
                &real
            };
            found.push((
                join(parent, key),
                value.as_str().unwrap_or_default().to_owned(),
            ));
        }
        found
    }

    /// The file README calls the list of every option keeps being one: it
    /// mentions every option of [`OPTIONS`] and every type of the tagged
    /// tables, and nothing that is not an option.
    #[test]
    fn example_toml_documents_every_option() {
        let mentions = example_mentions();
        let paths: Vec<&str> = mentions.iter().map(|(p, _)| p.as_str()).collect();
        for option in OPTIONS {
            assert!(
                paths.contains(&option.path),
                "config/example.toml does not mention `{}`",
                option.path
            );
        }
        for (table, types) in TAGGED {
            for kind in types {
                let path = join(table, "type");
                assert!(
                    mentions.iter().any(|(p, v)| *p == path && v == kind),
                    "config/example.toml does not show {path} = {kind:?}"
                );
            }
        }
        for path in paths {
            let tagged_type = TAGGED.iter().any(|(t, _)| path == join(t, "type"));
            assert!(
                tagged_type || OPTIONS.iter().any(|o| o.path == path),
                "config/example.toml mentions `{path}`, which is not an option"
            );
        }
    }

    /// The table paths of [`OPTIONS`], each with the tagged-table type it
    /// needs (for `source` and `destination` themselves, once per type).
    fn tables() -> Vec<(String, Option<&'static str>)> {
        let mut out: Vec<(String, Option<&'static str>)> = vec![(String::new(), None)];
        for (table, types) in TAGGED {
            out.extend(types.iter().map(|t| (table.to_owned(), Some(*t))));
        }
        for o in OPTIONS {
            let mut path = o.path;
            while let Some((parent, _)) = path.rsplit_once('.') {
                if !TAGGED.iter().any(|(t, _)| *t == parent)
                    && !out.iter().any(|(p, _)| p == parent)
                {
                    out.push((parent.to_owned(), None));
                }
                path = parent;
            }
        }
        out
    }

    /// [`OPTIONS`] is exactly what serde accepts: for every table (and every
    /// type of a tagged one), an unknown key given straight to serde (past
    /// the key check) makes it list the table's fields, which must be the
    /// table's children in [`OPTIONS`]. A field added to a `Raw*` struct and
    /// not to the table (or the reverse) fails here.
    #[test]
    fn options_table_is_what_serde_accepts() {
        for (table, kind) in tables() {
            let mut doc: toml::Table = toml::from_str(MINIMAL).unwrap();
            let source_kind = if table == "source" {
                kind.unwrap_or("direct_put")
            } else {
                "direct_put"
            };
            let destination_kind = if table == "destination" {
                kind.unwrap_or("local")
            } else {
                "local"
            };
            doc["source"]["type"] = source_kind.into();
            doc["destination"]["type"] = destination_kind.into();
            if destination_kind != "local" {
                doc["destination"].as_table_mut().unwrap().remove("path");
            }
            // Walk down to the table, creating it (an array of tables gets one element).
            let mut t = &mut doc;
            let mut path = String::new();
            for part in table.split('.').filter(|p| !p.is_empty()) {
                path = join(&path, part);
                if ARRAYS_OF_TABLES.contains(&path.as_str()) {
                    let array = t
                        .entry(part)
                        .or_insert_with(|| toml::Value::Array(vec![toml::Table::new().into()]));
                    t = array.as_array_mut().unwrap()[0].as_table_mut().unwrap();
                } else {
                    let next = t.entry(part).or_insert_with(|| toml::Table::new().into());
                    t = next.as_table_mut().unwrap();
                }
            }
            t.insert("zz_not_an_option".into(), 0.into());
            let text = toml::to_string(&doc).unwrap();
            let err = toml::from_str::<RawStream>(&text).expect_err(&text);
            let message = err.message();
            assert!(
                message.starts_with("unknown field `zz_not_an_option`"),
                "{table}: {message}"
            );
            let mut serde_fields: Vec<&str> = message
                .split_once("expected")
                .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
                .unwrap_or_default();
            if kind.is_some() {
                // The tag is taken out by serde before the variant's fields.
                serde_fields.push("type");
            }
            serde_fields.sort_unstable();
            let mut ours: Vec<&str> = children(&table, kind).map(|(n, _)| n).collect();
            if kind.is_some() {
                ours.push("type");
            }
            ours.sort_unstable();
            ours.dedup();
            assert_eq!(ours, serde_fields, "table [{table}] (type {kind:?})");
        }
    }

    fn errors_of(text: &str) -> Vec<String> {
        match parse(text, Path::new("bad.toml"), Path::new(CWD)) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn unknown_keys_are_all_reported_at_their_own_line_with_a_suggestion() {
        let text = "name = \"s\"\n\
                    [source]\n\
                    type = \"direct_put\"\n\
                    max_wal_byte = 5\n\
                    [destination]\n\
                    type = \"local\"\n\
                    path = \"out\"\n\
                    colour = \"blue\"\n\
                    bucket = \"b\"\n\
                    [destination.buffering]\n\
                    \x20 interval_sec = 5\n";
        assert_eq!(
            errors_of(text),
            [
                "bad.toml:4:1: unknown option `source.max_wal_byte`: did you mean `max_wal_bytes`?",
                "bad.toml:8:1: unknown option `destination.colour`: config/example.toml lists every option",
                "bad.toml:9:1: unknown option `destination.bucket`: only for `type = \"s3\"` in [destination]",
                "bad.toml:11:3: unknown option `destination.buffering.interval_sec`: did you mean `interval_secs`?",
            ]
        );
    }

    #[test]
    fn type_and_validation_errors_point_at_their_key() {
        let text = "name = \"has space\"\n\
                    [source]\n\
                    type = \"direct_put\"\n\
                    max_wal_bytes = 5\n\
                    [destination]\n\
                    type = \"local\"\n\
                    path = \"out\"\n\
                    append_delimiter = \"yes\"\n";
        let errors = errors_of(text);
        // The wrong type from the key check; the stream name and the
        // write-ahead log cap from validation, whose parts run independently.
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].starts_with("bad.toml:1:1: invalid option `name`: may only contain"),
            "{errors:#?}"
        );
        assert!(
            errors[1].starts_with(
                "bad.toml:4:1: invalid option `source.max_wal_bytes`: must be at least"
            ),
            "{errors:#?}"
        );
        assert_eq!(
            errors[2],
            "bad.toml:8:1: invalid option `destination.append_delimiter`: must be true or false, got \"yes\""
        );
        // The format options are plain serde types, which serde would report
        // at [destination]; the key check reports them at the key.
        let text =
            format!("{MINIMAL}\n[destination.format]\ntype = \"parquet\"\ncase_insensitive = 1\n");
        assert_eq!(
            errors_of(&text),
            [
                "bad.toml:11:1: invalid option `destination.format.case_insensitive`: must be true or false, got 1"
            ]
        );
    }

    #[test]
    fn missing_options_and_bad_types_point_at_their_table() {
        let text = "name = \"s\"\n[source]\ntype = \"kinesys\"\n[destination]\ntype = \"s3\"\n";
        // An unknown type stops serde, so validation (the bucket) is not reached.
        assert_eq!(
            errors_of(text),
            [
                "bad.toml:3:1: invalid option `source.type`: must be one of direct_put, kinesis, got \"kinesys\"; did you mean \"kinesis\"?",
            ]
        );
        let text = "name = \"s\"\n[source]\ntype = \"direct_put\"\n[destination]\ntype = \"s3\"\n";
        assert_eq!(
            errors_of(text),
            [
                "bad.toml:4:2: invalid option `destination.bucket`: required for an s3 destination (or `bucket_arn`)",
            ]
        );
        let text = "name = \"s\"\n[source]\n[destination]\ntype = \"local\"\n";
        assert_eq!(
            errors_of(text),
            [
                "bad.toml:2:2: invalid option `source.type`: required: one of direct_put, kinesis",
                "bad.toml:3:2: invalid option `destination.path`: required, and missing here",
            ]
        );
        let errors = errors_of("name = \"s\"\n[destination\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("bad.toml:2:13: "), "{errors:?}");
    }

    #[test]
    fn load_all_reports_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let typo = write(
            "a.toml",
            &MINIMAL.replacen("path = \"out\"", "path = \"out\"\n        pth = 1", 1),
        );
        let good = write("b.toml", MINIMAL);
        let again = write("c.toml", MINIMAL);
        let json = write("d.json", "{\"DeliveryStreamName\": \"d\",\n \"Tgas\": []}");
        let missing = dir.path().join("e.toml");
        let err = crate::config::load_all(&[typo, good, again, json, missing], Path::new(CWD))
            .unwrap_err();
        let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        let d = dir.path().display();
        assert_eq!(
            lines[0],
            format!("{d}/a.toml:8:9: unknown option `destination.pth`: did you mean `path`?")
        );
        assert!(
            lines[1].starts_with(&format!(
                "{d}/c.toml: delivery stream `s` is already defined in {d}/b.toml"
            )),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[2],
            format!("{d}/d.json:2:2: unknown field `Tgas`: did you mean `Tags`?")
        );
        assert!(
            lines[3].starts_with(&format!("{d}/e.toml: cannot read the file")),
            "{}",
            lines[3]
        );
        assert_eq!(err.to_string(), lines.join("\n"));
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
            // Options of another type, and unknown types.
            (
                r#"type = "direct_put""#,
                r#"type = "kinesis""#,
                "`source.max_wal_bytes`: only for `type = \"direct_put\"`",
            ),
            (r#"type = "direct_put""#, r#"type = "kafka""#, "kafka"),
            (
                r#"type = "local""#,
                r#"type = "s3""#,
                "`destination.path`: only for `type = \"local\"`",
            ),
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
            matches!(&err, ConfigError::Unknown { option, .. } if option == "nmae"),
            "{err}"
        );
        for (table_line, extra, field) in [
            ("type = \"direct_put\"", "max_wal_mb = 5", "max_wal_mb"),
            ("type = \"local\"", "pth = \"x\"", "pth"),
            ("type = \"local\"", "interval_secs = 60", "interval_secs"),
        ] {
            let text = MINIMAL.replacen(table_line, &format!("{table_line}\n{extra}"), 1);
            let err = parse_str(&text).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
        let text = format!("{MINIMAL}\n[destination.buffering]\nsize_mb = 5\n");
        let err = parse_str(&text).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Unknown { option, .. } if option == "destination.buffering.size_mb"),
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
            assert!(err.to_string().contains(field), "{err}");
        }
    }
}
