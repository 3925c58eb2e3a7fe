//! `sluice import`: a Firehose stream definition turned into a native TOML
//! config that means the same, with comments where the two shapes differ.
//!
//! Input is either the whole output of `aws firehose describe-delivery-stream`
//! (`{"DeliveryStreamDescription": {...}}`), a bare `DeliveryStreamDescription`
//! (it has `Destinations`), or a `create-delivery-stream` input
//! ([`super::firehose`]'s shape). A description is first turned into the
//! create input it stands for ([`create_input`]: read-only members dropped,
//! `...Description` members renamed to their `...Configuration` twins), so
//! both go through the same [`super::firehose::parse`] as a JSON config file:
//! what it refuses (unsupported features, by name) `import` refuses too.
//!
//! The TOML is then rendered from the validated [`StreamConfig`], plus the
//! JSON for what the config does not keep (a Lambda ARN, role ARNs, the
//! prefixes as written, a Kinesis stream ARN). Every option the Firehose
//! definition can set is written out with its value, defaults included: the
//! two shapes' defaults differ in places (buffering with format conversion is
//! 128 MiB in Firehose, 5 MiB natively), so leaving one out could change what
//! the file means. Options only the native shape has are left out and keep
//! their defaults, which are the values `firehose::parse` gives them too.
//!
//! Before returning, the TOML is parsed back with [`super::native::parse`]: an
//! import that would not validate is an error, never a file. The unit tests
//! below hold the round trip to the stronger rule: the TOML's config equals
//! the JSON's, field by field.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value};

use super::native::native_name;
use super::{
    ConfigError, ConfigErrors, DestinationConfig, Encryption, FileError, OutputFormat,
    SchemaSource, SourceConfig, StreamConfig, Target,
};
use crate::convert::orc::OrcCompression;
use crate::convert::{Deserializer, ParquetCompression, ParquetWriterVersion};
use crate::process::{Deaggregation, ModuleRef};

/// Dotted-path root of the destination in a create-delivery-stream input.
const ES3: &str = "ExtendedS3DestinationConfiguration";
/// The same destination in a description.
const ES3_DESCRIPTION: &str =
    "DeliveryStreamDescription.Destinations[0].ExtendedS3DestinationDescription";

/// What sluice does instead of assuming an IAM role.
const CREDENTIALS: &str = "sluice does not assume roles: it uses the standard AWS credential \
     chain of its own process (environment, profile, ECS/EKS task role, EC2 instance profile)";

/// Which Firehose document the input was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputKind {
    /// `aws firehose describe-delivery-stream` output, or its description alone.
    Description,
    /// `aws firehose create-delivery-stream --cli-input-json` input.
    CreateInput,
}

/// A create-delivery-stream input made from a description, with what the
/// description had that the input has no place for.
#[derive(Debug)]
struct Converted {
    /// The `CreateDeliveryStreamInput` document.
    input: Value,
    /// The description's `VersionId`.
    version_id: Option<String>,
    /// Read-only members left out, as dotted paths.
    dropped: Vec<String>,
}

/// Turns the Firehose JSON `text` (a description or a create input) into a
/// native TOML config. `path` names the input in errors and in the header
/// comment; a relative `file://` directory resolves against `cwd` for
/// validation and is written as given, so the TOML resolves it the same way.
///
/// # Errors
/// [`ConfigErrors`] with one error, as `sluice validate` reports them: a
/// malformed document ([`ConfigError::Parse`], with its position for a create
/// input); a description sluice cannot take (more than one destination, or a
/// destination other than Extended S3: [`ConfigError::Unsupported`] naming
/// it); anything [`super::firehose::parse`] refuses (for a description, the
/// option is named by its place in the description); or an option whose
/// value the native shape cannot express (a non-UTF-8 delimiter).
pub fn import(text: &str, path: &Path, cwd: &Path) -> Result<String, ConfigErrors> {
    let one = |position, error| ConfigErrors::one(path, position, error);
    let document: Value = serde_json::from_str(text).map_err(|e| {
        let (message, position) = super::firehose::json_error(text, &e);
        one(position, ConfigError::Parse(message))
    })?;
    let Value::Object(object) = &document else {
        return Err(one(
            None,
            ConfigError::Parse(
                "expected a JSON object: a describe-delivery-stream output or a create-delivery-stream input"
                    .to_owned(),
            ),
        ));
    };
    let description = match object.get("DeliveryStreamDescription") {
        Some(d) => Some(d),
        None if object.contains_key("Destinations") => Some(&document),
        None => None,
    };
    let (kind, converted) = match description {
        Some(d) => (
            InputKind::Description,
            create_input(d).map_err(|e| one(None, e))?,
        ),
        None => (
            InputKind::CreateInput,
            Converted {
                input: document.clone(),
                version_id: None,
                dropped: Vec::new(),
            },
        ),
    };
    let config = match kind {
        // The user's own text: errors keep their line and column.
        InputKind::CreateInput => super::firehose::parse(text, path, cwd)?,
        // A document of our making: positions in it would mislead, and
        // options are named where the description has them.
        InputKind::Description => super::firehose::parse(&converted.input.to_string(), path, cwd)
            .map_err(|errors| {
            ConfigErrors(
                errors
                    .0
                    .into_iter()
                    .map(|e| FileError {
                        path: e.path,
                        position: None,
                        error: in_description(e.error),
                    })
                    .collect(),
            )
        })?,
    };
    let source_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let toml = render(&config, &converted, kind, &source_name).map_err(|e| one(None, e))?;
    // The promise of the command: what it writes validates.
    if let Err(errors) = super::native::parse(&toml, path, cwd) {
        return Err(one(
            None,
            ConfigError::Parse(format!(
                "internal error: the imported TOML does not validate ({errors}); please report it with the input"
            )),
        ));
    }
    Ok(toml)
}

/// The create-delivery-stream input a description stands for (member names
/// from botocore's `firehose/2015-08-04/service-2.json`).
fn create_input(description: &Value) -> Result<Converted, ConfigError> {
    const D: &str = "DeliveryStreamDescription";
    let Value::Object(d) = description else {
        return Err(ConfigError::invalid(D, "must be an object"));
    };
    let mut input = Map::new();
    let mut dropped = Vec::new();
    let mut version_id = None;
    for (key, value) in d {
        match key.as_str() {
            "DeliveryStreamName" | "DeliveryStreamType" => {
                input.insert(key.clone(), value.clone());
            }
            "VersionId" => {
                version_id = value
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| Some(value.to_string()));
            }
            "DeliveryStreamARN"
            | "DeliveryStreamStatus"
            | "FailureDescription"
            | "CreateTimestamp"
            | "LastUpdateTimestamp"
            | "DeliveryStreamEncryptionConfiguration" => dropped.push(format!("{D}.{key}")),
            "HasMoreDestinations" => {
                if value == &Value::Bool(true) {
                    return Err(ConfigError::Unsupported {
                        options: vec![format!(
                            "{D}.HasMoreDestinations (more than one destination; sluice delivers a stream to one)"
                        )],
                    });
                }
                dropped.push(format!("{D}.{key}"));
            }
            "Source" => source(value, &mut input, &mut dropped)?,
            "Destinations" => destination(value, &mut input, &mut dropped)?,
            // Left in: firehose::parse names it as an unknown field.
            _ => {
                input.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(Converted {
        input: Value::Object(input),
        version_id,
        dropped,
    })
}

/// `Source`: each `XDescription` becomes `XConfiguration` (so an MSK or
/// database source is refused by `firehose::parse` by name); Kinesis keeps
/// the stream and role ARNs, and its `DeliveryStartTimestamp` is dropped.
fn source(
    value: &Value,
    input: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
) -> Result<(), ConfigError> {
    const S: &str = "DeliveryStreamDescription.Source";
    let Value::Object(source) = value else {
        return Err(ConfigError::invalid(S, "must be an object"));
    };
    for (key, value) in source {
        match key.as_str() {
            "KinesisStreamSourceDescription" => {
                let mut k = value.as_object().cloned().unwrap_or_default();
                if k.remove("DeliveryStartTimestamp").is_some() {
                    dropped.push(format!("{S}.{key}.DeliveryStartTimestamp"));
                }
                input.insert("KinesisStreamSourceConfiguration".into(), Value::Object(k));
            }
            // Its throughput hint sizes Firehose's capacity; the create
            // input's twin is ignored by sluice too.
            "DirectPutSourceDescription" => dropped.push(format!("{S}.{key}")),
            other => {
                let name = other.strip_suffix("Description").unwrap_or(other);
                input.insert(format!("{name}Configuration"), value.clone());
            }
        }
    }
    Ok(())
}

/// `Destinations`: exactly one, an Extended S3 destination. Real describe
/// outputs show it twice, as `ExtendedS3DestinationDescription` and as the
/// legacy `S3DestinationDescription` view of the same bucket; the latter
/// alone (or another kind) is a destination sluice does not have.
fn destination(
    value: &Value,
    input: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
) -> Result<(), ConfigError> {
    const DS: &str = "DeliveryStreamDescription.Destinations";
    let destinations = value
        .as_array()
        .ok_or_else(|| ConfigError::invalid(DS, "must be an array"))?;
    let destination = match destinations.as_slice() {
        [one] => one
            .as_object()
            .ok_or_else(|| ConfigError::invalid(format!("{DS}[0]"), "must be an object"))?,
        [] => return Err(ConfigError::invalid(DS, "holds no destination")),
        more => {
            return Err(ConfigError::Unsupported {
                options: vec![format!(
                    "{DS} ({} destinations; sluice delivers a stream to one)",
                    more.len()
                )],
            });
        }
    };
    let extended = destination.contains_key("ExtendedS3DestinationDescription");
    for (key, value) in destination {
        match key.as_str() {
            "DestinationId" => dropped.push(format!("{DS}[0].{key}")),
            "S3DestinationDescription" if extended => dropped.push(format!(
                "{DS}[0].{key} (the legacy view of the Extended S3 destination)"
            )),
            "ExtendedS3DestinationDescription" => {
                let mut d = value.as_object().cloned().unwrap_or_default();
                if let Some(backup) = d.remove("S3BackupDescription") {
                    d.insert("S3BackupConfiguration".into(), backup);
                }
                input.insert(ES3.into(), Value::Object(d));
            }
            // Another destination kind: firehose::parse refuses its
            // `...Configuration` twin by name.
            other => {
                let name = other.strip_suffix("Description").unwrap_or(other);
                input.insert(format!("{name}Configuration"), value.clone());
            }
        }
    }
    Ok(())
}

/// A `firehose::parse` error about the made-up create input, with its
/// options named where the description has them.
fn in_description(error: ConfigError) -> ConfigError {
    const D: &str = "DeliveryStreamDescription";
    let rename = |option: &str| -> String {
        let split = option.find(['.', ' ']).unwrap_or(option.len());
        let (head, tail) = option.split_at(split);
        let description = |place: &str, name: &str| {
            let name = name.strip_suffix("Configuration").unwrap_or(name);
            format!("{D}{place}.{name}Description{tail}")
        };
        match head {
            ES3 => format!(
                "{ES3_DESCRIPTION}{}",
                tail.replacen(".S3BackupConfiguration", ".S3BackupDescription", 1)
            ),
            h if h.ends_with("SourceConfiguration") => description(".Source", h),
            h if h.ends_with("DestinationConfiguration") => description(".Destinations[0]", h),
            _ => format!("{D}.{option}"),
        }
    };
    match error {
        ConfigError::Invalid { option, reason } => ConfigError::Invalid {
            option: rename(&option),
            reason,
        },
        ConfigError::Unsupported { options } => ConfigError::Unsupported {
            options: options.iter().map(|o| rename(o)).collect(),
        },
        other => other,
    }
}

/// A TOML file being written: keys, tables and comments, in order.
#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    /// `# text`, wrapped at 92 columns.
    fn comment(&mut self, text: &str) {
        let mut line = String::from("#");
        for word in text.split_whitespace() {
            if line.len() + 1 + word.len() > 92 && line.len() > 1 {
                self.out.push_str(&line);
                self.out.push('\n');
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        self.out.push_str(&line);
        self.out.push('\n');
    }

    fn key(&mut self, key: &str, value: impl Into<toml::Value>) {
        let _ = writeln!(self.out, "{key} = {}", literal(&value.into()));
    }

    fn table(&mut self, header: &str) {
        let _ = writeln!(self.out, "\n{header}");
    }

    fn blank(&mut self) {
        self.out.push('\n');
    }
}

/// A TOML value as written after `key = `; tables inline, keys quoted.
fn literal(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(table) => {
            let items: Vec<String> = table
                .iter()
                .map(|(k, v)| format!("{} = {}", toml::Value::String(k.clone()), literal(v)))
                .collect();
            if items.is_empty() {
                "{}".to_owned()
            } else {
                format!("{{ {} }}", items.join(", "))
            }
        }
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(literal).collect();
            format!("[{}]", items.join(", "))
        }
        // `{:?}` keeps a decimal point or exponent: a TOML float, never an integer.
        toml::Value::Float(f) => format!("{f:?}"),
        other => other.to_string(),
    }
}

/// The value at `path` below `value`, if every step is there.
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path).and_then(Value::as_str)
}

/// The native TOML of a validated config.
fn render(
    config: &StreamConfig,
    converted: &Converted,
    kind: InputKind,
    source_name: &str,
) -> Result<String, ConfigError> {
    let input = &converted.input;
    let d = &config.destination;
    let dest_json = input.get(ES3).cloned().unwrap_or(Value::Null);
    let mut w = Writer::default();

    let from = match kind {
        InputKind::Description => "the describe-delivery-stream output",
        InputKind::CreateInput => "the create-delivery-stream input",
    };
    w.comment(&format!(
        "Imported by `sluice import` from {from} {source_name}. Every option the Firehose \
         definition sets is written out, defaults included; options only sluice has keep their \
         defaults (config/example.toml lists them all). Comments say where sluice differs."
    ));
    if !converted.dropped.is_empty() {
        w.comment(&format!(
            "Read-only members of the description left out: {}.",
            converted
                .dropped
                .iter()
                .map(|p| p.strip_prefix("DeliveryStreamDescription.").unwrap_or(p))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(version) = &converted.version_id {
        w.comment(&format!(
            "Firehose VersionId {version:?}: sluice has no version option; its object names \
             always carry version 1 (`{}-1-...`), so readers that match the version in names \
             must expect 1.",
            config.name
        ));
    }
    if let Some(tags) = input.get("Tags").filter(|t| !t.is_null()) {
        let listed: Vec<String> = tags
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "{}={}",
                    text(t, &["Key"]).unwrap_or("?"),
                    text(t, &["Value"]).unwrap_or("")
                )
            })
            .collect();
        w.comment(&format!(
            "Tags dropped ({}): they label AWS resources, and sluice creates none; the native \
             shape has no tags.",
            listed.join(", ")
        ));
    }
    if input
        .get("DeliveryStreamEncryptionConfigurationInput")
        .is_some()
        || converted
            .dropped
            .iter()
            .any(|p| p.contains("DeliveryStreamEncryptionConfiguration"))
    {
        w.comment(
            "DeliveryStreamEncryptionConfiguration dropped: it encrypts Firehose's internal \
             buffer; sluice's write-ahead log is a local file (encrypt its disk).",
        );
    }
    if input.get("DirectPutSourceConfiguration").is_some()
        || converted
            .dropped
            .iter()
            .any(|p| p.contains("DirectPutSourceDescription"))
    {
        w.comment(
            "The Direct PUT throughput hint is dropped: it sizes Firehose's capacity, and sluice \
             has no provisioned capacity (max_wal_bytes bounds its backlog).",
        );
    }
    w.key("name", config.name.as_str());

    w.table("[source]");
    match &config.source {
        SourceConfig::DirectPut(_) => {
            w.comment("Firehose DirectPut: PutRecord/PutRecordBatch on sluice's own API (`sluice run --listen`).");
            w.key("type", "direct_put");
        }
        SourceConfig::Kinesis(_) => {
            let k = input.get("KinesisStreamSourceConfiguration");
            if let Some(role) = k.and_then(|k| text(k, &["RoleARN"])) {
                w.comment(&format!("RoleARN {role} dropped: {CREDENTIALS}."));
            }
            w.comment(
                "Shards without a checkpoint start when sluice first sees the stream, as a new \
                 Firehose stream does; a migration that must not miss records while both run \
                 can set start_position.",
            );
            w.key("type", "kinesis");
            match k.and_then(|k| text(k, &["KinesisStreamARN"])) {
                Some(arn) => w.key("stream_arn", arn),
                None => {
                    if let SourceConfig::Kinesis(k) = &config.source {
                        w.key("stream_name", k.stream_name.as_str());
                    }
                }
            }
        }
    }

    w.table("[destination]");
    if let Some(role) = text(&dest_json, &["RoleARN"]) {
        w.comment(&format!("RoleARN {role} dropped: {CREDENTIALS}."));
    }
    if at(&dest_json, &["CloudWatchLoggingOptions"]).is_some() {
        w.comment(
            "CloudWatchLoggingOptions dropped: sluice logs to stderr (the journal under \
             systemd; --log-format json for shippers) and serves Prometheus metrics at /metrics.",
        );
    }
    match &d.target {
        Target::Local { path } => {
            // As written after `file://`: a relative directory stays relative
            // to the directory sluice starts in, as it was in the JSON.
            let written = text(&dest_json, &["BucketARN"])
                .and_then(|arn| arn.strip_prefix("file://"))
                .map(str::to_owned)
                .unwrap_or_else(|| path.display().to_string());
            if at(&dest_json, &["EncryptionConfiguration"]).is_some() {
                w.comment("EncryptionConfiguration dropped: a local directory has no server-side encryption.");
            }
            w.key("type", "local");
            w.key("path", written);
        }
        Target::S3(s3) => {
            w.key("type", "s3");
            w.key("bucket", s3.bucket.as_str());
            w.comment(
                "The endpoint and region come from the environment (AWS_REGION, \
                 AWS_ENDPOINT_URL_S3), as for the Firehose shape.",
            );
            match &s3.encryption {
                Encryption::None => w.key("encryption", "none"),
                Encryption::SseS3 => w.key("encryption", "sse_s3"),
                Encryption::SseKms { key_arn } => {
                    w.key("encryption", "sse_kms");
                    w.key("kms_key_arn", key_arn.as_str());
                }
            }
        }
    }
    if let Some(prefix) = text(&dest_json, &["Prefix"]) {
        w.key("prefix", prefix);
    }
    if let Some(prefix) = text(&dest_json, &["ErrorOutputPrefix"]) {
        w.key("error_output_prefix", prefix);
    }
    w.key("compression", native_name(d.compression));
    if let Some(ext) = &d.file_extension {
        w.key("file_extension", ext.as_str());
    }
    w.key("time_zone", d.time_zone_name.as_str());
    if d.append_delimiter {
        w.comment("Firehose's AppendDelimiterToRecord processor.");
    }
    w.key("append_delimiter", d.append_delimiter);

    w.table("[destination.buffering]");
    if d.format.is_some() && at(&dest_json, &["BufferingHints"]).is_none() {
        w.comment(
            "Firehose's default with format conversion (128 MiB); sluice's own default is 5 MiB.",
        );
    }
    w.key("size_bytes", d.buffering.size_bytes as i64);
    w.key("interval_secs", d.buffering.interval.as_secs() as i64);

    render_backup(&mut w, d, &dest_json);
    render_processing(&mut w, d, &dest_json)?;
    render_format(&mut w, d, &dest_json)?;
    Ok(w.out)
}

/// `[destination.backup]` (Firehose `S3BackupMode` Enabled).
fn render_backup(w: &mut Writer, d: &DestinationConfig, dest_json: &Value) {
    let Some(backup) = &d.backup else {
        if at(dest_json, &["S3BackupConfiguration"]).is_some() {
            w.blank();
            w.comment("S3BackupConfiguration left out: S3BackupMode is Disabled.");
        }
        return;
    };
    let b = at(dest_json, &["S3BackupConfiguration"]).unwrap_or(&Value::Null);
    w.table("[destination.backup]");
    w.comment(
        "Firehose S3BackupMode Enabled: source records, before any processor, in the \
         destination's own bucket (or directory), written with the destination's buffering \
         and encryption.",
    );
    let unused: Vec<&str> = [
        "RoleARN",
        "BufferingHints",
        "EncryptionConfiguration",
        "ErrorOutputPrefix",
        "CloudWatchLoggingOptions",
    ]
    .into_iter()
    .filter(|k| at(b, &[k]).is_some())
    .collect();
    if !unused.is_empty() {
        w.comment(&format!(
            "Of S3BackupConfiguration, {} are not used (credentials: the process's chain).",
            unused.join(", ")
        ));
    }
    if let Some(prefix) = text(b, &["Prefix"]) {
        w.key("prefix", prefix);
    }
    w.key("compression", native_name(backup.compression));
}

/// De-aggregation, dynamic partitioning (with the MetadataExtraction query)
/// and the Lambda processors as WASM transforms.
fn render_processing(
    w: &mut Writer,
    d: &DestinationConfig,
    dest_json: &Value,
) -> Result<(), ConfigError> {
    let pc = at(dest_json, &["ProcessingConfiguration"]);
    if pc.is_some_and(|pc| pc.get("Enabled") == Some(&Value::Bool(false)))
        && pc
            .and_then(|pc| pc.get("Processors"))
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty())
    {
        w.blank();
        w.comment("ProcessingConfiguration's Processors left out: processing is disabled (\"Enabled\": false).");
    }
    let processors: Vec<&Value> = pc
        .filter(|pc| pc.get("Enabled") == Some(&Value::Bool(true)))
        .and_then(|pc| pc.get("Processors"))
        .and_then(Value::as_array)
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    let parameter = |p: &Value, name: &str| -> Option<String> {
        p.get("Parameters")?
            .as_array()?
            .iter()
            .find(|x| text(x, &["ParameterName"]) == Some(name))
            .and_then(|x| text(x, &["ParameterValue"]))
            .map(str::to_owned)
    };

    if let Some(deaggregation) = &d.processors.deaggregation {
        w.table("[destination.deaggregation]");
        w.comment("Firehose's RecordDeAggregation processor.");
        match deaggregation {
            Deaggregation::Json => w.key("sub_record_type", "json"),
            Deaggregation::Delimited(bytes) => {
                let delimiter = std::str::from_utf8(bytes).map_err(|_| {
                    ConfigError::invalid(
                        format!("{ES3}.ProcessingConfiguration (RecordDeAggregation Delimiter)"),
                        "the native shape takes the delimiter as text, and this one is not UTF-8",
                    )
                })?;
                w.key("sub_record_type", "delimited");
                w.key("delimiter", delimiter);
            }
        }
    }

    let dp_json = at(dest_json, &["DynamicPartitioningConfiguration"]);
    if let Some(p) = &d.dynamic_partitioning {
        w.table("[destination.dynamic_partitioning]");
        w.comment("Firehose DynamicPartitioningConfiguration (enabled).");
        if let Some(query) = &d.processors.metadata {
            w.comment("Firehose's MetadataExtraction processor (JQ-1.6).");
            w.key("query", query.as_str());
        }
        w.comment(
            "RetryOptions.DurationInSeconds: accepted; sluice retries a delivery until it \
             succeeds and never skips records.",
        );
        w.key("retry_duration_secs", p.retry_duration.as_secs() as i64);
    } else if dp_json.is_some() {
        w.blank();
        w.comment(
            "DynamicPartitioningConfiguration left out: it is disabled (\"Enabled\": false).",
        );
    }

    let lambdas: Vec<&&Value> = processors
        .iter()
        .filter(|p| text(p, &["Type"]) == Some("Lambda"))
        .collect();
    for (i, t) in d.processors.transforms.iter().enumerate() {
        w.table("[[destination.transform]]");
        let module = match &t.module {
            ModuleRef::Lambda { arn, function } => {
                w.comment(&format!(
                    "Firehose Lambda processor {arn}. sluice runs a WASM component in its place: \
                     <transforms dir>/{function}.wasm, where the transforms dir is `sluice run \
                     --transforms-dir DIR` (env SLUICE_TRANSFORMS_DIR, default ./transforms); a \
                     qualifier (version, alias) does not change the file. Error documents name \
                     the transform by this module path instead of the ARN."
                ));
                format!("{function}.wasm")
            }
            ModuleRef::Path(path) => path.display().to_string(),
        };
        if let Some(role) = lambdas.get(i).and_then(|p| parameter(p, "RoleArn")) {
            w.comment(&format!(
                "RoleArn {role} dropped: the component runs inside sluice; nothing is invoked."
            ));
        }
        w.key("module", module);
        if !t.init.is_empty() {
            let table: toml::map::Map<String, toml::Value> = t
                .init
                .iter()
                .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
                .collect();
            w.key("config", toml::Value::Table(table));
        }
        w.key("retries", i64::from(t.retries));
        w.key("batch_size_bytes", t.batch_bytes as i64);
        w.comment(
            "BufferIntervalInSeconds: accepted; sluice transforms each batch as it is read and \
             never holds records back to fill a call.",
        );
        w.key("batch_interval_secs", t.batch_interval.as_secs() as i64);
    }
    Ok(())
}

/// `[destination.format]` (Firehose `DataFormatConversionConfiguration`).
fn render_format(
    w: &mut Writer,
    d: &DestinationConfig,
    dest_json: &Value,
) -> Result<(), ConfigError> {
    let conversion = at(dest_json, &["DataFormatConversionConfiguration"]);
    let Some(format) = &d.format else {
        if conversion.is_some() {
            w.blank();
            w.comment(
                "DataFormatConversionConfiguration left out: it is disabled (\"Enabled\": false).",
            );
        }
        return Ok(());
    };
    let conversion = conversion.unwrap_or(&Value::Null);
    w.table("[destination.format]");
    w.comment("Firehose DataFormatConversionConfiguration.");
    let serializer = at(conversion, &["OutputFormatConfiguration", "Serializer"]);
    let ignored: Vec<String> = match &format.output {
        OutputFormat::Parquet(_) => vec![("ParquetSerDe", "MaxPaddingBytes")],
        OutputFormat::Orc(_) => vec![
            ("OrcSerDe", "BlockSizeBytes"),
            ("OrcSerDe", "EnablePadding"),
            ("OrcSerDe", "PaddingTolerance"),
            ("OrcSerDe", "DictionaryKeyThreshold"),
            ("OrcSerDe", "FormatVersion"),
        ],
    }
    .into_iter()
    .filter(|(serde, key)| serializer.and_then(|s| at(s, &[serde, key])).is_some())
    .map(|(serde, key)| format!("{serde}.{key}"))
    .collect();
    if !ignored.is_empty() {
        w.comment(&format!(
            "Accepted and not used by sluice's writer: {} ({}).",
            ignored.join(", "),
            match &format.output {
                OutputFormat::Parquet(_) => "row groups are not padded to HDFS blocks",
                OutputFormat::Orc(_) => "stripes are not padded; files are ORC 0.12",
            }
        ));
    }
    match &format.output {
        OutputFormat::Parquet(p) => {
            w.key("type", "parquet");
            render_deserializer(w, &format.deserializer);
            w.key(
                "compression",
                match p.compression {
                    ParquetCompression::Snappy => "snappy",
                    ParquetCompression::Gzip => "gzip",
                    ParquetCompression::Zstd => "zstd",
                    ParquetCompression::Uncompressed => "uncompressed",
                },
            );
            w.key("page_size_bytes", p.page_size_bytes as i64);
            w.key("block_size_bytes", p.block_size_bytes as i64);
            w.key("enable_dictionary", p.enable_dictionary);
            w.key(
                "writer_version",
                match p.writer_version {
                    ParquetWriterVersion::V1 => "v1",
                    ParquetWriterVersion::V2 => "v2",
                },
            );
        }
        OutputFormat::Orc(o) => {
            w.key("type", "orc");
            render_deserializer(w, &format.deserializer);
            w.key(
                "compression",
                match o.compression {
                    OrcCompression::None => "none",
                    OrcCompression::Zlib => "zlib",
                    OrcCompression::Snappy => "snappy",
                    OrcCompression::Zstd => "zstd",
                },
            );
            w.key("stripe_size_bytes", o.stripe_size_bytes as i64);
            w.key("row_index_stride", i64::from(o.row_index_stride));
            if !o.bloom_filter_columns.is_empty() {
                w.key("bloom_filter_columns", o.bloom_filter_columns.clone());
            }
            w.key(
                "bloom_filter_false_positive_probability",
                o.bloom_filter_fpp,
            );
        }
    }
    match &format.schema {
        SchemaSource::Glue(glue) => {
            w.table("[destination.format.glue]");
            w.comment(
                "Firehose SchemaConfiguration: sluice reads the table's columns from the Glue \
                 Data Catalog when the stream starts, with the standard \
                 AWS credential chain of its process; the endpoint comes from \
                 AWS_ENDPOINT_URL_GLUE (or endpoint_url here).",
            );
            if let Some(role) = text(conversion, &["SchemaConfiguration", "RoleARN"]) {
                w.comment(&format!("RoleARN {role} dropped: {CREDENTIALS}."));
            }
            w.key("database", glue.database.as_str());
            w.key("table", glue.table.as_str());
            if let Some(region) = &glue.region {
                w.key("region", region.as_str());
            }
            if let Some(catalog) = &glue.catalog_id {
                w.key("catalog_id", catalog.as_str());
            }
            w.key("version_id", glue.version_id.as_deref().unwrap_or("LATEST"));
        }
        // The Firehose shape only names Glue tables.
        SchemaSource::Inline(_) => {
            return Err(ConfigError::invalid(
                format!("{ES3}.DataFormatConversionConfiguration.SchemaConfiguration"),
                "internal error: an inline schema cannot come from the Firehose shape",
            ));
        }
    }
    Ok(())
}

fn render_deserializer(w: &mut Writer, deserializer: &Deserializer) {
    match deserializer {
        Deserializer::OpenX {
            case_insensitive,
            column_to_json_key_mappings,
            convert_dots_in_json_keys_to_underscores,
        } => {
            w.key("deserializer", "openx");
            w.key("case_insensitive", *case_insensitive);
            if !column_to_json_key_mappings.is_empty() {
                let table: toml::map::Map<String, toml::Value> = column_to_json_key_mappings
                    .iter()
                    .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
                    .collect();
                w.key("column_to_json_key_mappings", toml::Value::Table(table));
            }
            w.key(
                "convert_dots_in_json_keys_to_underscores",
                *convert_dots_in_json_keys_to_underscores,
            );
        }
        Deserializer::Hive { timestamp_formats } => {
            w.key("deserializer", "hive");
            if !timestamp_formats.is_empty() {
                w.key("timestamp_formats", timestamp_formats.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_json::{Value, json};

    use super::*;
    use crate::config::validate::tests::{CWD, assert_same};

    const TRANSFORMS: &str = "/srv/sluice/transforms";

    fn import_json(doc: &Value) -> Result<String, ConfigError> {
        import(&doc.to_string(), Path::new("in.json"), Path::new(CWD))
            .map_err(|mut e| e.0.remove(0).error)
    }

    fn from_json(doc: &Value) -> StreamConfig {
        crate::config::firehose::parse(&doc.to_string(), Path::new("in.json"), Path::new(CWD))
            .unwrap()
    }

    fn from_toml(text: &str) -> StreamConfig {
        crate::config::native::parse(text, Path::new("out.toml"), Path::new(CWD))
            .unwrap_or_else(|e| panic!("the imported TOML does not validate: {e}\n{text}"))
    }

    /// The TOML imported from `input` means what `create` (the equivalent
    /// create-delivery-stream input, written by hand) means. The one field
    /// that legitimately differs is a transform's `module`: a Lambda ARN in
    /// the JSON, a path in the TOML; both must name the same component file,
    /// and are then compared as equal.
    fn assert_round_trip(input: &Value, create: &Value) -> String {
        let toml = import_json(input).unwrap();
        let mut imported = from_toml(&toml);
        let expected = from_json(create);
        let dir = Path::new(TRANSFORMS);
        assert_eq!(
            imported.destination.processors.transforms.len(),
            expected.destination.processors.transforms.len()
        );
        for (got, want) in imported
            .destination
            .processors
            .transforms
            .iter_mut()
            .zip(&expected.destination.processors.transforms)
        {
            assert!(matches!(got.module, ModuleRef::Path(_)), "{:?}", got.module);
            assert!(matches!(want.module, ModuleRef::Lambda { .. }));
            assert_eq!(got.module.resolve(dir), want.module.resolve(dir));
            got.module = want.module.clone();
        }
        assert_same(&imported, &expected);
        assert_eq!(format!("{imported:?}"), format!("{expected:?}"));
        toml
    }

    const ROLE: &str = "arn:aws:iam::123456789012:role/firehose-orders";
    const LAMBDA: &str = "arn:aws:lambda:us-east-1:123456789012:function:enrich:prod";

    /// The realistic destination, in its create-input spelling.
    fn realistic_destination() -> Value {
        json!({
            "RoleARN": ROLE,
            "BucketARN": "file://./out",
            "Prefix": "orders/customer=!{partitionKeyFromQuery:customer}/!{timestamp:yyyy/MM/dd/HH}/",
            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/",
            "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
            "CompressionFormat": "UNCOMPRESSED",
            "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
            "CloudWatchLoggingOptions": {
                "Enabled": true,
                "LogGroupName": "/aws/kinesisfirehose/orders",
                "LogStreamName": "DestinationDelivery"
            },
            "ProcessingConfiguration": {
                "Enabled": true,
                "Processors": [
                    {"Type": "Lambda", "Parameters": [
                        {"ParameterName": "LambdaArn", "ParameterValue": LAMBDA},
                        {"ParameterName": "NumberOfRetries", "ParameterValue": "5"},
                        {"ParameterName": "RoleArn", "ParameterValue": ROLE},
                        {"ParameterName": "BufferSizeInMBs", "ParameterValue": "0.5"},
                        {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "120"}
                    ]},
                    {"Type": "MetadataExtraction", "Parameters": [
                        {"ParameterName": "MetadataExtractionQuery",
                         "ParameterValue": "{customer: .customer_id, \"kind\": (.kind // \"none\")}"},
                        {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}
                    ]}
                ]
            },
            "S3BackupMode": "Enabled",
            "DataFormatConversionConfiguration": {
                "Enabled": true,
                "SchemaConfiguration": {
                    "RoleARN": ROLE, "CatalogId": "123456789012", "DatabaseName": "shop",
                    "TableName": "orders", "Region": "us-east-1", "VersionId": "LATEST"
                },
                "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {
                    "CaseInsensitive": false,
                    "ColumnToJsonKeyMappings": {"ts": "timestamp", "order id": "id"},
                    "ConvertDotsInJsonKeysToUnderscores": true
                }}},
                "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {
                    "Compression": "ZSTD", "EnableDictionaryCompression": false,
                    "PageSizeBytes": 2097152, "BlockSizeBytes": 134217728,
                    "MaxPaddingBytes": 0, "WriterVersion": "V2"
                }}}
            },
            "DynamicPartitioningConfiguration": {"Enabled": true, "RetryOptions": {"DurationInSeconds": 900}},
            "FileExtension": ".parquet",
            "CustomTimeZone": "Asia/Tokyo"
        })
    }

    fn realistic_backup() -> Value {
        json!({
            "RoleARN": ROLE,
            "BucketARN": "file://./out",
            "Prefix": "backup/!{timestamp:yyyy/MM/dd}/",
            "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
            "CompressionFormat": "GZIP",
            "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"}
        })
    }

    fn realistic_create() -> Value {
        let mut d = realistic_destination();
        d["S3BackupConfiguration"] = realistic_backup();
        json!({
            "DeliveryStreamName": "orders",
            "DeliveryStreamType": "DirectPut",
            "ExtendedS3DestinationConfiguration": d,
            "Tags": [{"Key": "team", "Value": "shop"}]
        })
    }

    /// What `aws firehose describe-delivery-stream` prints for it.
    fn realistic_describe() -> Value {
        let mut d = realistic_destination();
        d["S3BackupDescription"] = realistic_backup();
        let legacy = json!({
            "RoleARN": ROLE, "BucketARN": "file://./out",
            "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
            "CompressionFormat": "UNCOMPRESSED",
            "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"}
        });
        json!({"DeliveryStreamDescription": {
            "DeliveryStreamName": "orders",
            "DeliveryStreamARN": "arn:aws:firehose:us-east-1:123456789012:deliverystream/orders",
            "DeliveryStreamStatus": "ACTIVE",
            "DeliveryStreamEncryptionConfiguration": {"Status": "DISABLED"},
            "DeliveryStreamType": "DirectPut",
            "VersionId": "4",
            "CreateTimestamp": "2025-03-04T10:11:12.345000+00:00",
            "LastUpdateTimestamp": "2025-06-01T08:00:00+00:00",
            "Source": {"DirectPutSourceDescription": {"ThroughputHintInMBs": 5}},
            "Destinations": [{
                "DestinationId": "destinationId-000000000001",
                "S3DestinationDescription": legacy,
                "ExtendedS3DestinationDescription": d
            }],
            "HasMoreDestinations": false
        }})
    }

    /// The file with each comment's wrapped lines joined, so phrases are found
    /// wherever the wrapping broke them.
    fn unwrapped(toml: &str) -> String {
        toml.replace("\n# ", " ")
    }

    /// Keys and tables only: what a config means, without its comments.
    fn content(toml: &str) -> Vec<&str> {
        toml.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect()
    }

    #[test]
    fn realistic_description_round_trips_with_comments() {
        let toml = assert_round_trip(&realistic_describe(), &realistic_create());
        // Guard against both sides falling back to the same defaults.
        let config = from_toml(&toml);
        let d = &config.destination;
        assert!(d.format.is_some() && d.dynamic_partitioning.is_some() && d.backup.is_some());
        assert_eq!(d.processors.transforms[0].retries, 5);
        assert_eq!(d.time_zone_name, "Asia/Tokyo");
        assert_eq!(
            d.target,
            Target::Local {
                path: PathBuf::from("/srv/sluice/out")
            }
        );
        assert!(toml.contains("path = \"./out\""), "{toml}");
        for says in [
            LAMBDA,
            "module = \"enrich.wasm\"",
            "<transforms dir>/enrich.wasm",
            "--transforms-dir",
            "SLUICE_TRANSFORMS_DIR",
            "standard AWS credential chain",
            "RoleARN arn:aws:iam::123456789012:role/firehose-orders dropped",
            "RoleArn arn:aws:iam::123456789012:role/firehose-orders dropped",
            "Glue Data Catalog when the stream starts",
            "CloudWatchLoggingOptions dropped",
            "/metrics",
            "VersionId \"4\"",
            "`orders-1-...`",
            "DeliveryStreamARN",
            "ParquetSerDe.MaxPaddingBytes",
        ] {
            assert!(unwrapped(&toml).contains(says), "missing {says:?}:\n{toml}");
        }
        // The destination's, the Lambda's and Glue's RoleARN, each where it
        // was dropped (the backup's is listed as not used).
        assert_eq!(toml.matches(ROLE).count(), 3, "{toml}");
    }

    #[test]
    fn description_and_create_input_import_to_the_same_config() {
        let described = import_json(&realistic_describe()).unwrap();
        let created = assert_round_trip(&realistic_create(), &realistic_create());
        assert_eq!(content(&described), content(&created));
        // The comments differ where the inputs do: the description's
        // read-only members and version, the create input's tags.
        assert!(
            unwrapped(&created).contains("Tags dropped (team=shop)"),
            "{created}"
        );
        assert!(!created.contains("VersionId"));
        assert!(described.contains("VersionId"));
    }

    #[test]
    fn kinesis_description_to_s3_round_trips() {
        let destination = json!({
            "RoleARN": ROLE,
            "BucketARN": "arn:aws:s3:::analytics-bucket",
            "Prefix": "clicks/",
            "BufferingHints": {"SizeInMBs": 128, "IntervalInSeconds": 900},
            "CompressionFormat": "UNCOMPRESSED",
            "EncryptionConfiguration": {"KMSEncryptionConfig": {
                "AWSKMSKeyARN": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
            }},
            "ProcessingConfiguration": {"Enabled": true, "Processors": [
                {"Type": "RecordDeAggregation", "Parameters": [
                    {"ParameterName": "SubRecordType", "ParameterValue": "DELIMITED"},
                    // "\t|\n": escapes in the TOML string.
                    {"ParameterName": "Delimiter", "ParameterValue": "CXwK"}
                ]},
                {"Type": "Lambda", "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": "arn:aws:lambda:eu-west-1:123456789012:function:redact"}
                ]},
                {"Type": "AppendDelimiterToRecord", "Parameters": []}
            ]},
            "S3BackupMode": "Disabled",
            "DataFormatConversionConfiguration": {
                "Enabled": true,
                "SchemaConfiguration": {"DatabaseName": "web", "TableName": "clicks", "VersionId": "3"},
                "InputFormatConfiguration": {"Deserializer": {"HiveJsonSerDe": {
                    "TimestampFormats": ["yyyy-MM-dd'T'HH:mm:ss", "millis"]
                }}},
                "OutputFormatConfiguration": {"Serializer": {"OrcSerDe": {
                    "StripeSizeBytes": 33554432, "BlockSizeBytes": 268435456,
                    "RowIndexStride": 5000, "EnablePadding": false, "PaddingTolerance": 0.05,
                    "Compression": "ZLIB", "BloomFilterColumns": ["user_id"],
                    "BloomFilterFalsePositiveProbability": 0.01,
                    "DictionaryKeyThreshold": 0.0, "FormatVersion": "V0_12"
                }}}
            },
            "DynamicPartitioningConfiguration": {"Enabled": false}
        });
        let stream_arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/clicks";
        let describe = json!({"DeliveryStreamDescription": {
            "DeliveryStreamName": "clicks",
            "DeliveryStreamARN": "arn:aws:firehose:eu-west-1:123456789012:deliverystream/clicks",
            "DeliveryStreamStatus": "ACTIVE",
            "DeliveryStreamType": "KinesisStreamAsSource",
            "VersionId": "1",
            "CreateTimestamp": 1741083072.345,
            "Source": {"KinesisStreamSourceDescription": {
                "KinesisStreamARN": stream_arn, "RoleARN": ROLE,
                "DeliveryStartTimestamp": 1741083072.5
            }},
            "Destinations": [{"DestinationId": "destinationId-000000000001",
                              "ExtendedS3DestinationDescription": destination.clone()}],
            "HasMoreDestinations": false
        }});
        let create = json!({
            "DeliveryStreamName": "clicks",
            "DeliveryStreamType": "KinesisStreamAsSource",
            "KinesisStreamSourceConfiguration": {"KinesisStreamARN": stream_arn, "RoleARN": ROLE},
            "ExtendedS3DestinationConfiguration": destination
        });
        let toml = assert_round_trip(&describe, &create);
        let config = from_toml(&toml);
        let SourceConfig::Kinesis(k) = &config.source else {
            panic!("{:?}", config.source)
        };
        assert_eq!(k.stream_name, "clicks");
        assert!(matches!(
            config.destination.processors.deaggregation,
            Some(Deaggregation::Delimited(ref d)) if d == b"\t|\n"
        ));
        assert!(matches!(
            config.destination.target,
            Target::S3(ref s3) if matches!(s3.encryption, Encryption::SseKms { .. })
        ));
        for says in [
            "stream_arn = \"arn:aws:kinesis:eu-west-1:123456789012:stream/clicks\"",
            "Source.KinesisStreamSourceDescription.DeliveryStartTimestamp",
            "DynamicPartitioningConfiguration left out: it is disabled",
            "OrcSerDe.EnablePadding",
            "version_id = \"3\"",
            "<transforms dir>/redact.wasm",
        ] {
            assert!(unwrapped(&toml).contains(says), "missing {says:?}:\n{toml}");
        }
    }

    #[test]
    fn minimal_direct_put_round_trips() {
        let create = json!({
            "DeliveryStreamName": "m",
            "ExtendedS3DestinationConfiguration": {"BucketARN": "file:///srv/out"}
        });
        let toml = assert_round_trip(&create, &create);
        assert!(!toml.contains("[destination.backup]"), "{toml}");
        // A bare description (no DeliveryStreamDescription wrapper) works too.
        let bare = json!({
            "DeliveryStreamName": "m", "DeliveryStreamARN": "arn:aws:firehose:us-east-1:1:deliverystream/m",
            "DeliveryStreamStatus": "ACTIVE", "DeliveryStreamType": "DirectPut", "VersionId": "1",
            "Destinations": [{"DestinationId": "d", "ExtendedS3DestinationDescription": {
                "RoleARN": ROLE, "BucketARN": "file:///srv/out",
                "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
                "CompressionFormat": "UNCOMPRESSED",
                "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"}
            }}],
            "HasMoreDestinations": false
        });
        assert_eq!(content(&assert_round_trip(&bare, &create)), content(&toml));
    }

    #[test]
    fn unsupported_features_are_refused_by_name() {
        // A create input: exactly the error a JSON config file gets.
        let mut msk = realistic_create();
        msk["DeliveryStreamType"] = json!("MSKAsSource");
        msk["MSKSourceConfiguration"] = json!({"MSKClusterARN": "arn:aws:kafka:::x"});
        let direct =
            crate::config::firehose::parse(&msk.to_string(), Path::new("in.json"), Path::new(CWD))
                .unwrap_err();
        assert_eq!(
            import_json(&msk).unwrap_err().to_string(),
            direct.0[0].error.to_string()
        );

        let err = |doc: &Value| import_json(doc).unwrap_err().to_string();
        let mut describe = realistic_describe();
        let d = &mut describe["DeliveryStreamDescription"];
        d["Destinations"][0]["ExtendedS3DestinationDescription"]["ProcessingConfiguration"]["Processors"]
            [0]["Type"] = json!("Decompression");
        let e = err(&describe);
        assert!(
            e.contains("unsupported Firehose option")
                && e.contains("Destinations[0].ExtendedS3DestinationDescription.ProcessingConfiguration.Processors[0] (Type Decompression)"),
            "{e}"
        );

        let mut two = realistic_describe();
        let first = two["DeliveryStreamDescription"]["Destinations"][0].clone();
        two["DeliveryStreamDescription"]["Destinations"] = json!([first.clone(), first]);
        assert!(err(&two).contains("2 destinations"), "{}", err(&two));

        let redshift = json!({"DeliveryStreamDescription": {
            "DeliveryStreamName": "r", "DeliveryStreamType": "DirectPut", "VersionId": "1",
            "Destinations": [{"DestinationId": "d", "RedshiftDestinationDescription": {"ClusterJDBCURL": "jdbc:x"}}],
            "HasMoreDestinations": false
        }});
        let e = err(&redshift);
        assert!(
            e.contains("Destinations[0].RedshiftDestinationDescription"),
            "{e}"
        );

        let mut s3_only = redshift.clone();
        s3_only["DeliveryStreamDescription"]["Destinations"][0] = json!({
            "DestinationId": "d", "S3DestinationDescription": {"BucketARN": "arn:aws:s3:::b"}
        });
        let e = err(&s3_only);
        assert!(
            e.contains("Destinations[0].S3DestinationDescription"),
            "{e}"
        );

        // Invalid values are named where the description has them.
        let mut bad = realistic_describe();
        bad["DeliveryStreamDescription"]["Destinations"][0]["ExtendedS3DestinationDescription"]["S3BackupDescription"]
            ["CompressionFormat"] = json!("BROTLI");
        let e = err(&bad);
        assert!(
            e.contains("ExtendedS3DestinationDescription.S3BackupDescription.CompressionFormat"),
            "{e}"
        );
        assert!(err(&json!([1])).contains("expected a JSON object"));
    }

    #[test]
    fn literals_are_valid_toml() {
        let mut table = toml::map::Map::new();
        table.insert("a b".into(), toml::Value::String("x\"y".into()));
        table.insert("c".into(), toml::Value::String("\u{1}\n".into()));
        let text = format!(
            "t = {}\nf = {}\na = {}\n",
            literal(&toml::Value::Table(table.clone())),
            literal(&toml::Value::Float(1.0)),
            literal(&toml::Value::from(vec!["'q'".to_owned()]))
        );
        let parsed: toml::Table = text.parse().unwrap();
        assert_eq!(parsed["t"], toml::Value::Table(table));
        assert_eq!(parsed["f"], toml::Value::Float(1.0));
        assert_eq!(parsed["a"][0].as_str(), Some("'q'"));
    }
}
