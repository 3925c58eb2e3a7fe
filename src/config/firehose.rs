//! Firehose configuration shape: the JSON document
//! `aws firehose create-delivery-stream --cli-input-json` takes
//! (`CreateDeliveryStreamInput`), so a Firehose user migrates by bringing the
//! stream definition they already have.
//!
//! The raw structs below name every field of `CreateDeliveryStreamInput` and of
//! `ExtendedS3DestinationConfiguration` in the botocore service model
//! (`firehose-2015-08-04`), with `deny_unknown_fields`: a misspelt field is a
//! parse error naming it at its line and column, with the nearest valid field, while a real Firehose field sluice does not implement
//! is kept as raw JSON and reported. Validation then runs in two passes:
//!
//! 1. every present (non-null) field sluice does not implement is collected,
//!    and all of them are reported in one [`ConfigError::Unsupported`], so the
//!    user sees the whole migration gap at once and nothing is silently
//!    ignored;
//! 2. the supported fields are validated by the rules shared with the native
//!    shape (`super::validate`), naming options by their dotted Firehose path.
//!
//! Fields with no meaning for a self-hosted daemon (`RoleARN`,
//! `CloudWatchLoggingOptions`, `Tags`, `DeliveryStreamEncryptionConfigurationInput`,
//! `DirectPutSourceConfiguration`'s throughput hint) are accepted and logged
//! once each at `info`: credentials come from the standard AWS chain and logs
//! go to stderr.
//!
//! sluice extension: `BucketARN` `file://<directory>` selects a local directory
//! (`file://./data` relative to the working directory, `file:///srv/data`
//! absolute); `arn:aws:s3:::<bucket>` selects S3, as in Firehose.
//! `config/example.toml` says the same for users; `config/firehose-example.json`
//! is its equivalent.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::suggest::{self, Position};
use super::validate::{self, Checked, opt};
use super::{
    BackupConfig, Buffering, Compression, ConfigError, ConfigErrors, DEFAULT_ATTEMPT_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_PARTS, DEFAULT_MAX_WAL_BYTES, DEFAULT_PART_SIZE_BYTES,
    DestinationConfig, DirectPutConfig, Encryption, KinesisConfig, S3Target, SourceConfig,
    StreamConfig, Target,
};
use super::{MIB, format, transform};
use crate::process::Processors;

/// Dotted-path root of every destination option.
const ES3: &str = "ExtendedS3DestinationConfiguration";

/// The `file://` scheme of sluice's local-directory `BucketARN` extension.
const FILE_SCHEME: &str = "file://";

/// Firehose's `AppendDelimiterToRecord` processor type.
const APPEND_DELIMITER: &str = "AppendDelimiterToRecord";
/// The `RecordDeAggregation` processor type.
const RECORD_DEAGGREGATION: &str = "RecordDeAggregation";
/// The `Lambda` processor type: a WASM component here.
const LAMBDA: &str = "Lambda";

/// The `MetadataExtraction` processor type: jq partition keys.
const METADATA_EXTRACTION: &str = "MetadataExtraction";

/// The other processor types of the service model: known, not implemented.
const UNSUPPORTED_PROCESSORS: [&str; 2] = ["Decompression", "CloudWatchLogProcessing"];

/// `CreateDeliveryStreamInput`: every top-level field of the service model.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDeliveryStreamInput {
    #[serde(rename = "DeliveryStreamName")]
    delivery_stream_name: Checked<String>,
    #[serde(rename = "DeliveryStreamType")]
    delivery_stream_type: Option<Checked<String>>,
    #[serde(rename = "DirectPutSourceConfiguration")]
    direct_put_source_configuration: Option<Value>,
    #[serde(rename = "KinesisStreamSourceConfiguration")]
    kinesis_stream_source_configuration: Option<KinesisStreamSourceConfiguration>,
    #[serde(rename = "DeliveryStreamEncryptionConfigurationInput")]
    delivery_stream_encryption_configuration_input: Option<Value>,
    #[serde(rename = "S3DestinationConfiguration")]
    s3_destination_configuration: Option<Value>,
    #[serde(rename = "ExtendedS3DestinationConfiguration")]
    extended_s3_destination_configuration: Option<ExtendedS3DestinationConfiguration>,
    #[serde(rename = "RedshiftDestinationConfiguration")]
    redshift_destination_configuration: Option<Value>,
    #[serde(rename = "ElasticsearchDestinationConfiguration")]
    elasticsearch_destination_configuration: Option<Value>,
    // Sic: the service model spells this one in lower case.
    #[serde(rename = "AmazonopensearchserviceDestinationConfiguration")]
    amazonopensearchservice_destination_configuration: Option<Value>,
    #[serde(rename = "SplunkDestinationConfiguration")]
    splunk_destination_configuration: Option<Value>,
    #[serde(rename = "HttpEndpointDestinationConfiguration")]
    http_endpoint_destination_configuration: Option<Value>,
    #[serde(rename = "Tags")]
    tags: Option<Value>,
    #[serde(rename = "AmazonOpenSearchServerlessDestinationConfiguration")]
    amazon_open_search_serverless_destination_configuration: Option<Value>,
    #[serde(rename = "MSKSourceConfiguration")]
    msk_source_configuration: Option<Value>,
    #[serde(rename = "SnowflakeDestinationConfiguration")]
    snowflake_destination_configuration: Option<Value>,
    #[serde(rename = "IcebergDestinationConfiguration")]
    iceberg_destination_configuration: Option<Value>,
    #[serde(rename = "DatabaseSourceConfiguration")]
    database_source_configuration: Option<Value>,
}

/// `KinesisStreamSourceConfiguration`. The role is not used (credentials come
/// from the standard AWS chain).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KinesisStreamSourceConfiguration {
    #[serde(rename = "KinesisStreamARN")]
    stream_arn: Option<Checked<String>>,
    #[serde(rename = "RoleARN")]
    _role_arn: Option<Value>,
}

/// `ExtendedS3DestinationConfiguration`: every field of the service model.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendedS3DestinationConfiguration {
    /// Ignored, so any value.
    #[serde(rename = "RoleARN")]
    role_arn: Option<Value>,
    #[serde(rename = "BucketARN")]
    bucket_arn: Option<Checked<String>>,
    #[serde(rename = "Prefix")]
    prefix: Option<Checked<String>>,
    #[serde(rename = "ErrorOutputPrefix")]
    error_output_prefix: Option<Checked<String>>,
    #[serde(rename = "BufferingHints")]
    buffering_hints: Option<BufferingHints>,
    /// A string, not a serde enum, so a wrong value is reported with its path.
    #[serde(rename = "CompressionFormat")]
    compression_format: Option<Checked<String>>,
    #[serde(rename = "EncryptionConfiguration")]
    encryption_configuration: Option<EncryptionConfiguration>,
    #[serde(rename = "CloudWatchLoggingOptions")]
    cloud_watch_logging_options: Option<Value>,
    #[serde(rename = "ProcessingConfiguration")]
    processing_configuration: Option<ProcessingConfiguration>,
    #[serde(rename = "S3BackupMode")]
    s3_backup_mode: Option<Checked<String>>,
    #[serde(rename = "S3BackupConfiguration")]
    s3_backup_configuration: Option<S3BackupConfiguration>,
    #[serde(rename = "DataFormatConversionConfiguration")]
    data_format_conversion_configuration: Option<Value>,
    #[serde(rename = "DynamicPartitioningConfiguration")]
    dynamic_partitioning_configuration: Option<Value>,
    #[serde(rename = "FileExtension")]
    file_extension: Option<Checked<String>>,
    #[serde(rename = "CustomTimeZone")]
    custom_time_zone: Option<Checked<String>>,
}

/// `BufferingHints`. Integers are `i64` so a negative value gets the range
/// message rather than a type error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BufferingHints {
    #[serde(rename = "SizeInMBs")]
    size_in_mbs: Option<Checked<i64>>,
    #[serde(rename = "IntervalInSeconds")]
    interval_in_seconds: Option<Checked<i64>>,
}

/// `S3BackupConfiguration` (an `S3DestinationConfiguration`). Firehose
/// ignores its `ErrorOutputPrefix`; sluice writes backups with the
/// destination's buffers and credentials, so `BufferingHints`, `RoleARN`,
/// `EncryptionConfiguration` and `CloudWatchLoggingOptions` are accepted and
/// not used.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3BackupConfiguration {
    #[serde(rename = "RoleARN")]
    _role_arn: Option<Value>,
    #[serde(rename = "BucketARN")]
    bucket_arn: Option<Checked<String>>,
    #[serde(rename = "Prefix")]
    prefix: Option<Checked<String>>,
    #[serde(rename = "ErrorOutputPrefix")]
    _error_output_prefix: Option<Value>,
    #[serde(rename = "BufferingHints")]
    _buffering_hints: Option<Value>,
    #[serde(rename = "CompressionFormat")]
    compression_format: Option<Checked<String>>,
    #[serde(rename = "EncryptionConfiguration")]
    _encryption_configuration: Option<Value>,
    #[serde(rename = "CloudWatchLoggingOptions")]
    _cloud_watch_logging_options: Option<Value>,
}

/// `KMSEncryptionConfig`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KmsEncryptionConfig {
    #[serde(rename = "AWSKMSKeyARN")]
    key_arn: Checked<String>,
}

/// `EncryptionConfiguration` (of the S3 objects).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptionConfiguration {
    #[serde(rename = "NoEncryptionConfig")]
    no_encryption_config: Option<Checked<String>>,
    #[serde(rename = "KMSEncryptionConfig")]
    kms_encryption_config: Option<KmsEncryptionConfig>,
}

/// `ProcessingConfiguration`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessingConfiguration {
    #[serde(rename = "Enabled")]
    enabled: Option<Checked<bool>>,
    #[serde(rename = "Processors")]
    processors: Option<Vec<Processor>>,
}

/// `Processor`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Processor {
    #[serde(rename = "Type")]
    kind: Checked<String>,
    #[serde(rename = "Parameters")]
    parameters: Option<Vec<ProcessorParameter>>,
}

/// `ProcessorParameter`. Both fields are required by the service model.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessorParameter {
    #[serde(rename = "ParameterName")]
    parameter_name: Value,
    #[serde(rename = "ParameterValue")]
    parameter_value: Value,
}

/// Parses and validates a Firehose-shaped stream config. `path` names the
/// file in errors; a relative `file://` directory resolves against `cwd`.
///
/// # Errors
/// One error, with the file: [`ConfigError::Parse`] for malformed JSON and
/// misspelt or missing fields, at serde_json's line and column (a misspelt
/// field at its key, with the nearest valid name); else
/// [`ConfigError::Unsupported`] listing every Firehose feature present that
/// sluice does not implement; else [`ConfigError::Invalid`] naming the first
/// bad option by its dotted path (serde_json keeps no positions of values, so
/// these have none).
pub fn parse(text: &str, path: &Path, cwd: &Path) -> Result<StreamConfig, ConfigErrors> {
    let input: CreateDeliveryStreamInput = serde_json::from_str(text).map_err(|e| {
        let (message, position) = json_error(text, &e);
        ConfigErrors::one(path, position, ConfigError::Parse(message))
    })?;
    let unsupported = unsupported_options(&input);
    if !unsupported.is_empty() {
        return Err(ConfigErrors::one(
            path,
            None,
            ConfigError::Unsupported {
                options: unsupported,
            },
        ));
    }
    let config = validate_input(&input, cwd).map_err(|e| ConfigErrors::one(path, None, e))?;
    for (option, why) in ignored_options(&input) {
        tracing::info!(stream = %config.name, option, "Firehose option accepted but ignored: {why}");
    }
    Ok(config)
}

/// serde_json's message without its " at line L column C" (the position is
/// reported apart), an unknown field's list of every valid field replaced by
/// the nearest one, and the position: for an unknown field, its key's opening
/// quote, not the place after it where serde_json noticed.
pub(super) fn json_error(text: &str, e: &serde_json::Error) -> (String, Option<Position>) {
    let full = e.to_string();
    let message = full
        .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
        .unwrap_or(&full);
    let message = suggest::unknown_field(
        message,
        "config/firehose-example.json and Firehose's CreateDeliveryStream reference",
    );
    if e.line() == 0 {
        return (message, None);
    }
    // serde_json counts the column in bytes, 1 = the line's first byte.
    let line_start: usize = text
        .split_inclusive('\n')
        .take(e.line() - 1)
        .map(str::len)
        .sum();
    let mut offset = (line_start + e.column().saturating_sub(1)).min(text.len());
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
        && let Some(start) = text
            .get(..(offset + 1).min(text.len()))
            .and_then(|before| before.rfind(&format!("\"{field}\"")))
    {
        offset = start;
    }
    (message, Some(Position::of(text, offset)))
}

/// What a processor `Type` means to sluice.
enum ProcessorKind {
    AppendDelimiter,
    Deaggregation,
    Lambda,
    MetadataExtraction,
    Unsupported,
    Unknown,
}

fn processor_kind(kind: &str) -> ProcessorKind {
    if kind == APPEND_DELIMITER {
        ProcessorKind::AppendDelimiter
    } else if kind == RECORD_DEAGGREGATION {
        ProcessorKind::Deaggregation
    } else if kind == LAMBDA {
        ProcessorKind::Lambda
    } else if kind == METADATA_EXTRACTION {
        ProcessorKind::MetadataExtraction
    } else if UNSUPPORTED_PROCESSORS.contains(&kind) {
        ProcessorKind::Unsupported
    } else {
        ProcessorKind::Unknown
    }
}

/// Whether an optional feature section is switched on. Firehose skips a
/// section with `"Enabled": false` while keeping its settings (the console
/// exports them that way), so such a section asks nothing of sluice either;
/// any other present section is taken as enabled.
fn section_enabled(section: &Value) -> bool {
    section.get("Enabled") != Some(&Value::Bool(false))
}

/// Pass 1: the dotted path of every present field sluice does not implement,
/// with a hint where there is something better to say than "unsupported".
/// Values of the wrong type are left to pass 2, which names them.
fn unsupported_options(input: &CreateDeliveryStreamInput) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(kind @ ("MSKAsSource" | "DatabaseAsSource")) = input
        .delivery_stream_type
        .as_ref()
        .and_then(Checked::ok)
        .map(String::as_str)
    {
        out.push(format!(
            "DeliveryStreamType ({kind}; only DirectPut and KinesisStreamAsSource are supported)"
        ));
    }
    let sections = [
        ("MSKSourceConfiguration", &input.msk_source_configuration),
        (
            "DatabaseSourceConfiguration",
            &input.database_source_configuration,
        ),
        (
            "S3DestinationConfiguration (use ExtendedS3DestinationConfiguration instead)",
            &input.s3_destination_configuration,
        ),
        (
            "RedshiftDestinationConfiguration",
            &input.redshift_destination_configuration,
        ),
        (
            "ElasticsearchDestinationConfiguration",
            &input.elasticsearch_destination_configuration,
        ),
        (
            "AmazonopensearchserviceDestinationConfiguration",
            &input.amazonopensearchservice_destination_configuration,
        ),
        (
            "SplunkDestinationConfiguration",
            &input.splunk_destination_configuration,
        ),
        (
            "HttpEndpointDestinationConfiguration",
            &input.http_endpoint_destination_configuration,
        ),
        (
            "AmazonOpenSearchServerlessDestinationConfiguration",
            &input.amazon_open_search_serverless_destination_configuration,
        ),
        (
            "SnowflakeDestinationConfiguration",
            &input.snowflake_destination_configuration,
        ),
        (
            "IcebergDestinationConfiguration",
            &input.iceberg_destination_configuration,
        ),
    ];
    out.extend(
        sections
            .into_iter()
            .filter(|(_, value)| value.is_some())
            .map(|(name, _)| name.to_owned()),
    );

    let Some(d) = &input.extended_s3_destination_configuration else {
        return out;
    };
    if let Some(pc) = &d.processing_configuration
        && pc.enabled.as_ref().and_then(Checked::ok) == Some(&true)
    {
        for (i, p) in pc.processors.iter().flatten().enumerate() {
            if let Some(kind) = p.kind.ok()
                && let ProcessorKind::Unsupported = processor_kind(kind)
            {
                out.push(format!(
                    "{ES3}.ProcessingConfiguration.Processors[{i}] (Type {kind})"
                ));
            }
        }
    }
    out
}

/// Pass 2: validates the supported fields (pass 1 found nothing unsupported).
fn validate_input(
    input: &CreateDeliveryStreamInput,
    cwd: &Path,
) -> Result<StreamConfig, ConfigError> {
    const NAME: &str = "DeliveryStreamName";
    const TYPE: &str = "DeliveryStreamType";
    let name = validate::stream_name(NAME, input.delivery_stream_name.get(NAME)?)?;
    let kinesis_option = "KinesisStreamSourceConfiguration";
    let source = match opt(&input.delivery_stream_type, TYPE)?.map(String::as_str) {
        // Firehose's default when the type is absent.
        None | Some("DirectPut") => {
            if input.kinesis_stream_source_configuration.is_some() {
                return Err(ConfigError::invalid(
                    kinesis_option,
                    "only valid with DeliveryStreamType KinesisStreamAsSource",
                ));
            }
            SourceConfig::DirectPut(DirectPutConfig {
                max_wal_bytes: DEFAULT_MAX_WAL_BYTES,
            })
        }
        Some("KinesisStreamAsSource") => {
            let arn_option = format!("{kinesis_option}.KinesisStreamARN");
            let k = input
                .kinesis_stream_source_configuration
                .as_ref()
                .ok_or_else(|| {
                    ConfigError::invalid(
                        kinesis_option,
                        "required when DeliveryStreamType is KinesisStreamAsSource",
                    )
                })?;
            let arn = k
                .stream_arn
                .as_ref()
                .ok_or_else(|| ConfigError::invalid(&arn_option, "required"))?
                .get(&arn_option)?;
            SourceConfig::Kinesis(KinesisConfig::defaults(validate::kinesis_stream_arn(
                &arn_option,
                arn,
            )?))
        }
        Some(other) => {
            return Err(ConfigError::invalid(
                TYPE,
                format!(
                    "must be one of DirectPut, KinesisStreamAsSource, MSKAsSource, DatabaseAsSource, got {other:?}"
                ),
            ));
        }
    };
    let d = input.extended_s3_destination_configuration.as_ref().ok_or_else(|| {
        ConfigError::invalid(
            ES3,
            format!("required: sluice delivers through an Extended S3 destination (BucketARN {FILE_SCHEME}<directory>)"),
        )
    })?;
    let destination = validate_destination(d, cwd)?;
    Ok(StreamConfig {
        name,
        version: 1,
        source,
        destination,
    })
}

fn validate_destination(
    d: &ExtendedS3DestinationConfiguration,
    cwd: &Path,
) -> Result<DestinationConfig, ConfigError> {
    let bucket_arn = format!("{ES3}.BucketARN");
    let target = match opt(&d.bucket_arn, &bucket_arn)? {
        None => {
            return Err(ConfigError::invalid(
                bucket_arn,
                format!(
                    "required: arn:aws:s3:::<bucket>, or {FILE_SCHEME}<directory> for a local directory"
                ),
            ));
        }
        Some(arn) => match arn.strip_prefix(FILE_SCHEME) {
            Some(dir) => Target::Local {
                path: validate::local_dir(&bucket_arn, dir, cwd)?,
            },
            None => Target::S3(S3Target {
                bucket: validate::bucket_arn(&bucket_arn, arn)?,
                // The Firehose shape has no endpoint field: the standard
                // AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL variables apply.
                endpoint_url: None,
                force_path_style: None,
                part_size_bytes: DEFAULT_PART_SIZE_BYTES,
                max_concurrent_parts: DEFAULT_MAX_CONCURRENT_PARTS,
                attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
                encryption: encryption(d)?,
            }),
        },
    };
    let (prefix_option, error_output_prefix_option) =
        (format!("{ES3}.Prefix"), format!("{ES3}.ErrorOutputPrefix"));
    let dynamic_partitioning = match &d.dynamic_partitioning_configuration {
        Some(value) if section_enabled(value) => Some(dynamic_partitioning(value)?),
        _ => None,
    };
    let (prefix, error_output_prefix) = validate::prefixes(
        &prefix_option,
        &error_output_prefix_option,
        opt(&d.prefix, &prefix_option)?.map(String::as_str),
        opt(&d.error_output_prefix, &error_output_prefix_option)?.map(String::as_str),
        dynamic_partitioning.is_some(),
        // Event time is native only: Firehose's shape has no place for it.
        false,
    )?;
    let mut buffering = buffering(d.buffering_hints.as_ref())?;
    let compression_option = format!("{ES3}.CompressionFormat");
    let compression = match opt(&d.compression_format, &compression_option)? {
        Some(name) => validate::compression(&compression_option, name, Compression::firehose_name)?,
        None => Compression::Uncompressed,
    };
    let extension_option = format!("{ES3}.FileExtension");
    let file_extension = validate::file_extension(
        &extension_option,
        opt(&d.file_extension, &extension_option)?.map(String::as_str),
    )?;
    let zone_option = format!("{ES3}.CustomTimeZone");
    let (time_zone, time_zone_name) = validate::time_zone(
        &zone_option,
        opt(&d.custom_time_zone, &zone_option)?.map(String::as_str),
    )?;
    if matches!(target, Target::Local { .. }) {
        // Validated for the message; a local directory has no encryption.
        encryption(d)?;
    }
    let backup = backup(d, &target)?;
    let (append_delimiter, processors) = match &d.processing_configuration {
        Some(pc) => processing(pc)?,
        None => (false, Processors::default()),
    };
    if processors.metadata.is_some() && dynamic_partitioning.is_none() {
        return Err(ConfigError::invalid(
            format!("{ES3}.ProcessingConfiguration"),
            "a MetadataExtraction processor needs DynamicPartitioningConfiguration enabled",
        ));
    }
    let conversion = format!("{ES3}.DataFormatConversionConfiguration");
    let format = match &d.data_format_conversion_configuration {
        Some(value) if section_enabled(value) => {
            // Firehose's rules for conversion: compression comes from the
            // serializer, and buffers are at least 64 MiB (128 by default).
            if compression != Compression::Uncompressed {
                return Err(ConfigError::invalid(
                    compression_option,
                    "must be UNCOMPRESSED with DataFormatConversionConfiguration (set the serializer's Compression)",
                ));
            }
            if d.buffering_hints.is_some() && buffering.size_bytes < 64 * MIB {
                return Err(ConfigError::invalid(
                    format!("{ES3}.BufferingHints.SizeInMBs"),
                    "must be at least 64 with DataFormatConversionConfiguration",
                ));
            }
            if d.buffering_hints.is_none() {
                buffering.size_bytes = 128 * MIB;
            }
            Some(std::sync::Arc::new(format::firehose_format(
                &conversion,
                value,
            )?))
        }
        _ => None,
    };
    Ok(DestinationConfig {
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
    })
}

/// `DynamicPartitioningConfiguration` (enabled): `RetryOptions` is accepted;
/// the partition limit and memory budget have no Firehose field and keep
/// their defaults (the native shape sets them).
fn dynamic_partitioning(value: &Value) -> Result<crate::buffer::Partitioning, ConfigError> {
    let option = format!("{ES3}.DynamicPartitioningConfiguration");
    let Value::Object(fields) = value else {
        return Err(ConfigError::invalid(option, "must be an object"));
    };
    let mut partitioning = crate::buffer::Partitioning::default();
    for (key, field) in fields {
        match (key.as_str(), field) {
            ("Enabled", Value::Bool(_)) => {}
            ("RetryOptions", Value::Object(retry)) => {
                for (k, v) in retry {
                    match (k.as_str(), v.as_u64()) {
                        ("DurationInSeconds", Some(secs)) if secs <= 7200 => {
                            partitioning.retry_duration = std::time::Duration::from_secs(secs);
                        }
                        ("DurationInSeconds", _) => {
                            return Err(ConfigError::invalid(
                                format!("{option}.RetryOptions.DurationInSeconds"),
                                format!("must be a whole number from 0 to 7200, got {v}"),
                            ));
                        }
                        _ => {
                            return Err(ConfigError::invalid(
                                format!("{option}.RetryOptions"),
                                format!("unknown field {k:?} (known: DurationInSeconds)"),
                            ));
                        }
                    }
                }
            }
            _ => {
                return Err(ConfigError::invalid(
                    format!("{option}.{key}"),
                    "unknown field or wrong type (known: Enabled, a boolean; RetryOptions, an object)",
                ));
            }
        }
    }
    Ok(partitioning)
}

/// `EncryptionConfiguration`: absent means SSE-S3 (sluice's default),
/// `NoEncryption` leaves the bucket's default, a KMS key selects SSE-KMS.
fn encryption(d: &ExtendedS3DestinationConfiguration) -> Result<Encryption, ConfigError> {
    let Some(e) = &d.encryption_configuration else {
        return Ok(Encryption::SseS3);
    };
    let none_option = format!("{ES3}.EncryptionConfiguration.NoEncryptionConfig");
    let kms_option = format!("{ES3}.EncryptionConfiguration.KMSEncryptionConfig.AWSKMSKeyARN");
    match (
        opt(&e.no_encryption_config, &none_option)?,
        &e.kms_encryption_config,
    ) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            format!("{ES3}.EncryptionConfiguration"),
            "give NoEncryptionConfig or KMSEncryptionConfig, not both",
        )),
        (Some(value), None) if value == "NoEncryption" => Ok(Encryption::None),
        (Some(value), None) => Err(ConfigError::invalid(
            none_option,
            format!("must be \"NoEncryption\", got {value:?}"),
        )),
        (None, Some(kms)) => {
            let key_arn = kms.key_arn.get(&kms_option)?;
            if !key_arn.starts_with("arn:") {
                return Err(ConfigError::invalid(
                    kms_option,
                    format!("must be a KMS key ARN, got {key_arn:?}"),
                ));
            }
            Ok(Encryption::SseKms {
                key_arn: key_arn.clone(),
            })
        }
        (None, None) => Ok(Encryption::SseS3),
    }
}

/// `S3BackupMode` and `S3BackupConfiguration`.
fn backup(
    d: &ExtendedS3DestinationConfiguration,
    target: &Target,
) -> Result<Option<BackupConfig>, ConfigError> {
    let mode_option = format!("{ES3}.S3BackupMode");
    let config_option = format!("{ES3}.S3BackupConfiguration");
    let enabled = match opt(&d.s3_backup_mode, &mode_option)?.map(String::as_str) {
        None | Some("Disabled") => false,
        Some("Enabled") => true,
        Some(other) => {
            return Err(ConfigError::invalid(
                mode_option,
                format!("must be Disabled or Enabled, got {other:?}"),
            ));
        }
    };
    let Some(b) = d.s3_backup_configuration.as_ref().filter(|_| enabled) else {
        if enabled {
            return Err(ConfigError::invalid(
                config_option,
                "required when S3BackupMode is Enabled",
            ));
        }
        return Ok(None);
    };
    let arn_option = format!("{config_option}.BucketARN");
    let same_place = match (opt(&b.bucket_arn, &arn_option)?, target) {
        (None, _) => true,
        (Some(arn), Target::Local { .. }) => {
            arn.starts_with(FILE_SCHEME) && d.bucket_arn.as_ref().and_then(Checked::ok) == Some(arn)
        }
        (Some(arn), Target::S3(s3)) => validate::bucket_arn(&arn_option, arn)? == s3.bucket,
    };
    if !same_place {
        return Err(ConfigError::invalid(
            arn_option,
            "sluice writes backups to the destination's own bucket (or directory); use a backup Prefix instead",
        ));
    }
    let prefix_option = format!("{config_option}.Prefix");
    let compression_option = format!("{config_option}.CompressionFormat");
    Ok(Some(BackupConfig {
        prefix: validate::backup_prefix(
            &prefix_option,
            opt(&b.prefix, &prefix_option)?.map(String::as_str),
        )?,
        compression: match opt(&b.compression_format, &compression_option)? {
            Some(name) => {
                validate::compression(&compression_option, name, Compression::firehose_name)?
            }
            None => Compression::Uncompressed,
        },
    }))
}

/// `BufferingHints`: both fields or neither, as Firehose requires, so a
/// half-written hint is not silently completed with a default.
fn buffering(hints: Option<&BufferingHints>) -> Result<Buffering, ConfigError> {
    let size_option = format!("{ES3}.BufferingHints.SizeInMBs");
    let interval_option = format!("{ES3}.BufferingHints.IntervalInSeconds");
    let (size, interval) = match hints {
        None => (None, None),
        Some(h) => match (
            opt(&h.size_in_mbs, &size_option)?,
            opt(&h.interval_in_seconds, &interval_option)?,
        ) {
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    interval_option,
                    "required when SizeInMBs is given (both or neither)",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    size_option,
                    "required when IntervalInSeconds is given (both or neither)",
                ));
            }
            (size, interval) => (size.copied(), interval.copied()),
        },
    };
    let size_bytes = size
        .map(|mib| validate::buffer_size_mib(&size_option, mib))
        .transpose()?;
    validate::buffering(size_bytes, &interval_option, interval)
}

/// Whether the processing configuration appends a delimiter. `Enabled: false`
/// switches every processor off, as in Firehose. Processors without an
/// explicit `Enabled` are refused: the service model gives no default, and
/// guessing wrong either drops a transform or changes the output bytes.
fn processing(pc: &ProcessingConfiguration) -> Result<(bool, Processors), ConfigError> {
    let enabled_option = format!("{ES3}.ProcessingConfiguration.Enabled");
    let processors = pc.processors.as_deref().unwrap_or_default();
    match opt(&pc.enabled, &enabled_option)? {
        Some(false) => return Ok((false, Processors::default())),
        None if processors.is_empty() => return Ok((false, Processors::default())),
        None => {
            return Err(ConfigError::invalid(
                enabled_option,
                "required (true or false) when Processors are given",
            ));
        }
        Some(true) => {}
    }
    let mut append = false;
    let mut chain = Processors::default();
    for (i, p) in processors.iter().enumerate() {
        let path = format!("{ES3}.ProcessingConfiguration.Processors[{i}]");
        let type_option = format!("{path}.Type");
        let kind = p.kind.get(&type_option)?;
        match processor_kind(kind) {
            ProcessorKind::AppendDelimiter => {
                if p.parameters
                    .as_ref()
                    .is_some_and(|params| !params.is_empty())
                {
                    return Err(ConfigError::invalid(
                        format!("{path}.Parameters"),
                        format!("{APPEND_DELIMITER} takes no parameters"),
                    ));
                }
                append = true;
            }
            ProcessorKind::Deaggregation => {
                let parameters = processor_parameters(p, &path)?;
                chain.deaggregation = Some(format::firehose_deaggregation(&path, &parameters)?);
            }
            ProcessorKind::Lambda => {
                let parameters = processor_parameters(p, &path)?;
                chain
                    .transforms
                    .push(transform::firehose_lambda(&path, &parameters)?);
            }
            ProcessorKind::MetadataExtraction => {
                let parameters = processor_parameters(p, &path)?;
                if chain.metadata.is_some() {
                    return Err(ConfigError::invalid(
                        path,
                        "only one MetadataExtraction processor is allowed",
                    ));
                }
                chain.metadata = Some(metadata_extraction(&path, &parameters)?);
            }
            // Pass 1 reports these; kept for totality.
            ProcessorKind::Unsupported => {
                return Err(ConfigError::Unsupported {
                    options: vec![format!("{path} (Type {kind})")],
                });
            }
            ProcessorKind::Unknown => {
                let mut known = vec![
                    APPEND_DELIMITER,
                    RECORD_DEAGGREGATION,
                    LAMBDA,
                    METADATA_EXTRACTION,
                ];
                known.extend(UNSUPPORTED_PROCESSORS);
                return Err(ConfigError::invalid(
                    type_option,
                    format!("must be one of {}, got {kind:?}", known.join(", ")),
                ));
            }
        }
    }
    Ok((append, chain))
}

/// A `MetadataExtraction` processor: `MetadataExtractionQuery` (required)
/// and `JsonParsingEngine` (`JQ-1.6`, the only engine Firehose has).
fn metadata_extraction(
    path: &str,
    parameters: &std::collections::BTreeMap<String, String>,
) -> Result<crate::process::metadata::MetadataQuery, ConfigError> {
    for name in parameters.keys() {
        if name != "MetadataExtractionQuery" && name != "JsonParsingEngine" {
            return Err(ConfigError::invalid(
                format!("{path}.Parameters"),
                format!(
                    "unknown parameter {name:?} for MetadataExtraction (known: MetadataExtractionQuery, JsonParsingEngine)"
                ),
            ));
        }
    }
    if let Some(engine) = parameters.get("JsonParsingEngine")
        && engine != "JQ-1.6"
    {
        return Err(ConfigError::invalid(
            format!("{path}.Parameters[JsonParsingEngine]"),
            format!("must be JQ-1.6, got {engine:?}"),
        ));
    }
    let option = format!("{path}.Parameters[MetadataExtractionQuery]");
    let query = parameters
        .get("MetadataExtractionQuery")
        .ok_or_else(|| ConfigError::invalid(&option, "required"))?;
    crate::process::metadata::MetadataQuery::compile(query)
        .map_err(|why| ConfigError::invalid(option, why))
}

/// A processor's `Parameters` by name. A name given twice is refused:
/// Firehose would keep one of them, and which is not documented.
fn processor_parameters(
    p: &Processor,
    path: &str,
) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    let mut parameters = std::collections::BTreeMap::new();
    for (j, parameter) in p.parameters.iter().flatten().enumerate() {
        let (Value::String(name), Value::String(value)) =
            (&parameter.parameter_name, &parameter.parameter_value)
        else {
            return Err(ConfigError::invalid(
                format!("{path}.Parameters[{j}]"),
                "ParameterName and ParameterValue must be strings",
            ));
        };
        if parameters.insert(name.clone(), value.clone()).is_some() {
            return Err(ConfigError::invalid(
                format!("{path}.Parameters[{j}]"),
                format!("parameter {name:?} is given twice"),
            ));
        }
    }
    Ok(parameters)
}

/// Present fields that mean nothing to a self-hosted daemon, each with why;
/// logged once per stream when the config is accepted.
fn ignored_options(input: &CreateDeliveryStreamInput) -> Vec<(String, &'static str)> {
    const CREDENTIALS: &str =
        "sluice uses the standard AWS credential chain (environment, profile, instance role)";
    let mut out = Vec::new();
    if input.tags.is_some() {
        out.push((
            "Tags".to_owned(),
            "tags label AWS resources; sluice creates none",
        ));
    }
    if input
        .delivery_stream_encryption_configuration_input
        .is_some()
    {
        out.push((
            "DeliveryStreamEncryptionConfigurationInput".to_owned(),
            "it encrypts Firehose's internal buffer; sluice's write-ahead log is a local file",
        ));
    }
    if input.direct_put_source_configuration.is_some() {
        out.push((
            "DirectPutSourceConfiguration".to_owned(),
            "its throughput hint sizes Firehose's capacity; sluice has no provisioned capacity",
        ));
    }
    let Some(d) = &input.extended_s3_destination_configuration else {
        return out;
    };
    if d.role_arn.is_some() {
        out.push((format!("{ES3}.RoleARN"), CREDENTIALS));
    }
    if d.cloud_watch_logging_options.is_some() {
        out.push((
            format!("{ES3}.CloudWatchLoggingOptions"),
            "sluice logs to stderr (the journal under systemd)",
        ));
    }
    if d.data_format_conversion_configuration
        .as_ref()
        .is_some_and(|v| !section_enabled(v))
    {
        out.push((
            format!("{ES3}.DataFormatConversionConfiguration"),
            "it is disabled (\"Enabled\": false)",
        ));
    }
    if d.dynamic_partitioning_configuration
        .as_ref()
        .is_some_and(|v| !section_enabled(v))
    {
        out.push((
            format!("{ES3}.DynamicPartitioningConfiguration"),
            "it is disabled (\"Enabled\": false)",
        ));
    }
    if let Some(pc) = &d.processing_configuration
        && pc.enabled.as_ref().and_then(Checked::ok) == Some(&false)
        && pc.processors.as_ref().is_some_and(|p| !p.is_empty())
    {
        out.push((
            format!("{ES3}.ProcessingConfiguration.Processors"),
            "processing is disabled (\"Enabled\": false)",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::config::MIB;
    use crate::config::validate::tests::{CWD, assert_same, config_file};

    fn parse_json(doc: &Value) -> Result<StreamConfig, ConfigError> {
        parse(&doc.to_string(), Path::new("test.json"), Path::new(CWD))
            .map_err(|mut e| e.0.remove(0).error)
    }

    fn native(text: &str) -> StreamConfig {
        super::super::native::parse(text, Path::new("test.toml"), Path::new(CWD)).unwrap()
    }

    /// A valid document using every supported field.
    fn base() -> Value {
        json!({
            "DeliveryStreamName": "s",
            "DeliveryStreamType": "DirectPut",
            "ExtendedS3DestinationConfiguration": {
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "BucketARN": "file://./data",
                "Prefix": "p/",
                "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
                "CompressionFormat": "GZIP",
                "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
                "FileExtension": ".gz",
                "CustomTimeZone": "UTC",
                "ProcessingConfiguration": {
                    "Enabled": true,
                    "Processors": [{"Type": "AppendDelimiterToRecord", "Parameters": []}]
                },
                "S3BackupMode": "Disabled",
                "CloudWatchLoggingOptions": {"Enabled": false}
            },
            "Tags": [{"Key": "k", "Value": "v"}]
        })
    }

    /// `doc` with the value at JSON pointer `at` replaced (`Some`) or removed (`None`).
    fn with(mut doc: Value, at: &str, value: Option<Value>) -> Value {
        let (parent, key) = at.rsplit_once('/').expect("pointer");
        let parent = doc.pointer_mut(parent).expect("parent exists");
        match (parent, value) {
            (Value::Object(map), Some(v)) => {
                map.insert(key.to_owned(), v);
            }
            (Value::Object(map), None) => {
                map.remove(key);
            }
            (Value::Array(items), Some(v)) => items[key.parse::<usize>().expect("index")] = v,
            (Value::Array(items), None) => {
                items.remove(key.parse::<usize>().expect("index"));
            }
            _ => panic!("cannot edit {at}"),
        }
        doc
    }

    #[test]
    fn example_json_equals_example_toml() {
        let from_json =
            crate::config::load(&config_file("firehose-example.json"), Path::new(CWD)).unwrap();
        let from_toml = crate::config::load(&config_file("example.toml"), Path::new(CWD)).unwrap();
        assert_same(&from_json, &from_toml);
        // Guard against both sides silently falling back to the same defaults.
        assert_eq!(from_json.destination.compression, Compression::Gzip);
        assert!(from_json.destination.append_delimiter);
        assert_eq!(
            from_json.destination.target,
            Target::Local {
                path: PathBuf::from("/srv/sluice/data")
            }
        );
    }

    #[test]
    fn equivalent_documents_give_identical_configs() {
        let toml = r#"
            name = "orders.v2"
            [source]
            type = "direct_put"
            [destination]
            type = "local"
            path = "/var/lib/sluice/orders"
            prefix = "orders/!{timestamp:yyyy-MM-dd}/!{firehose:random-string}/"
            error_output_prefix = "failed/!{firehose:error-output-type}/"
            compression = "hadoop_snappy"
            file_extension = ".snappy"
            time_zone = "Asia/Tokyo"
            [destination.buffering]
            size_bytes = 134217728
            interval_secs = 0
        "#;
        let json = json!({
            "DeliveryStreamName": "orders.v2",
            "KinesisStreamSourceConfiguration": null,
            "ExtendedS3DestinationConfiguration": {
                "BucketARN": "file:///var/lib/sluice/orders",
                "Prefix": "orders/!{timestamp:yyyy-MM-dd}/!{firehose:random-string}/",
                "ErrorOutputPrefix": "failed/!{firehose:error-output-type}/",
                "BufferingHints": {"SizeInMBs": 128, "IntervalInSeconds": 0},
                "CompressionFormat": "HADOOP_SNAPPY",
                "FileExtension": ".snappy",
                "CustomTimeZone": "Asia/Tokyo",
                // Disabled sections change nothing.
                "ProcessingConfiguration": {
                    "Enabled": false,
                    "Processors": [{"Type": "Lambda", "Parameters": [
                        {"ParameterName": "LambdaArn", "ParameterValue": "arn:aws:lambda:eu-west-1:1:function:f"}
                    ]}]
                },
                "DataFormatConversionConfiguration": {"Enabled": false, "SchemaConfiguration": {}},
                "DynamicPartitioningConfiguration": {"Enabled": false}
            }
        });
        let from_toml = native(toml);
        let from_json = parse_json(&json).unwrap();
        assert_same(&from_json, &from_toml);
        let d = &from_json.destination;
        assert_eq!(
            d.buffering,
            Buffering {
                size_bytes: 128 * MIB,
                interval: Duration::ZERO
            }
        );
        assert_eq!(d.compression, Compression::HadoopSnappy);
        assert_eq!(d.time_zone_name, "Asia/Tokyo");
        assert!(!d.append_delimiter);
    }

    #[test]
    fn defaults_match_the_native_defaults() {
        let json = json!({
            "DeliveryStreamName": "s",
            "ExtendedS3DestinationConfiguration": {"BucketARN": "file://out"}
        });
        let toml = r#"
            name = "s"
            [source]
            type = "direct_put"
            [destination]
            type = "local"
            path = "out"
        "#;
        assert_same(&parse_json(&json).unwrap(), &native(toml));
    }

    #[test]
    fn every_compression_has_a_firehose_name() {
        for compression in validate::ALL_COMPRESSIONS {
            let doc = with(
                base(),
                "/ExtendedS3DestinationConfiguration/CompressionFormat",
                Some(json!(compression.firehose_name())),
            );
            assert_eq!(
                parse_json(&doc).unwrap().destination.compression,
                compression
            );
        }
    }

    #[test]
    fn bucket_arn_file_paths_resolve_against_cwd() {
        for (arn, want) in [
            ("file://./data", "/srv/sluice/data"),
            ("file://data/x", "/srv/sluice/data/x"),
            ("file:///var/lib/out", "/var/lib/out"),
        ] {
            let doc = with(
                base(),
                "/ExtendedS3DestinationConfiguration/BucketARN",
                Some(json!(arn)),
            );
            let config = parse_json(&doc).unwrap();
            assert_eq!(
                config.destination.target,
                Target::Local {
                    path: PathBuf::from(want)
                },
                "{arn}"
            );
        }
    }

    #[test]
    fn every_unsupported_option_is_listed_in_one_error() {
        let mut doc = base();
        // An invalid value as well: unsupported options are reported first.
        doc = with(
            doc,
            "/ExtendedS3DestinationConfiguration/BufferingHints/SizeInMBs",
            Some(json!(0)),
        );
        doc = with(doc, "/DeliveryStreamType", Some(json!("MSKAsSource")));
        let some = json!({"RoleARN": "arn:aws:iam::1:role/r"});
        for key in [
            "MSKSourceConfiguration",
            "DatabaseSourceConfiguration",
            "S3DestinationConfiguration",
            "RedshiftDestinationConfiguration",
            "ElasticsearchDestinationConfiguration",
            "AmazonopensearchserviceDestinationConfiguration",
            "SplunkDestinationConfiguration",
            "HttpEndpointDestinationConfiguration",
            "AmazonOpenSearchServerlessDestinationConfiguration",
            "SnowflakeDestinationConfiguration",
            "IcebergDestinationConfiguration",
        ] {
            doc = with(doc, &format!("/{key}"), Some(some.clone()));
        }
        let d = "/ExtendedS3DestinationConfiguration";
        doc = with(
            doc,
            &format!("{d}/ProcessingConfiguration/Processors"),
            Some(
                json!([{"Type": "AppendDelimiterToRecord"}, {"Type": "Decompression"}, {"Type": "CloudWatchLogProcessing"}]),
            ),
        );

        let Err(ConfigError::Unsupported { options }) = parse_json(&doc) else {
            panic!("expected one Unsupported error");
        };
        let expected = [
            "DeliveryStreamType",
            "MSKSourceConfiguration",
            "DatabaseSourceConfiguration",
            "S3DestinationConfiguration (use ExtendedS3DestinationConfiguration",
            "RedshiftDestinationConfiguration",
            "ElasticsearchDestinationConfiguration",
            "AmazonopensearchserviceDestinationConfiguration",
            "SplunkDestinationConfiguration",
            "HttpEndpointDestinationConfiguration",
            "AmazonOpenSearchServerlessDestinationConfiguration",
            "SnowflakeDestinationConfiguration",
            "IcebergDestinationConfiguration",
            "ExtendedS3DestinationConfiguration.ProcessingConfiguration.Processors[1] (Type Decompression)",
            "ExtendedS3DestinationConfiguration.ProcessingConfiguration.Processors[2] (Type CloudWatchLogProcessing)",
        ];
        assert_eq!(options.len(), expected.len(), "{options:#?}");
        for (got, want) in options.iter().zip(expected) {
            assert!(got.starts_with(want), "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn data_format_conversion_and_deaggregation() {
        let d = "/ExtendedS3DestinationConfiguration";
        let conversion = json!({
            "Enabled": true,
            "SchemaConfiguration": {"DatabaseName": "db", "TableName": "t", "Region": "us-east-1", "RoleARN": "arn:aws:iam::1:role/r", "VersionId": "LATEST"},
            "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {"CaseInsensitive": false, "ColumnToJsonKeyMappings": {"ts": "timestamp"}}}},
            "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": "GZIP", "WriterVersion": "V2", "BlockSizeBytes": 67108864}}},
        });
        let mut doc = with(
            base(),
            &format!("{d}/DataFormatConversionConfiguration"),
            Some(conversion),
        );
        doc = with(doc, &format!("{d}/BufferingHints"), None);
        doc = with(
            doc,
            &format!("{d}/CompressionFormat"),
            Some(json!("UNCOMPRESSED")),
        );
        doc = with(
            doc,
            &format!("{d}/ProcessingConfiguration"),
            Some(
                json!({"Enabled": true, "Processors": [{"Type": "RecordDeAggregation", "Parameters": [
                {"ParameterName": "SubRecordType", "ParameterValue": "DELIMITED"},
                {"ParameterName": "Delimiter", "ParameterValue": "IyMjIw=="}]}]}),
            ),
        );
        let config = parse_json(&doc).unwrap();
        let dest = &config.destination;
        assert_eq!(
            dest.buffering.size_bytes,
            128 * MIB,
            "conversion defaults buffers to 128 MiB"
        );
        assert_eq!(
            dest.processors.deaggregation,
            Some(crate::process::Deaggregation::Delimited(b"####".to_vec()))
        );
        let format = dest.format.as_ref().expect("conversion enabled");
        let crate::config::SchemaSource::Glue(glue) = &format.schema else {
            panic!("expected Glue")
        };
        assert_eq!(
            (
                glue.database.as_str(),
                glue.table.as_str(),
                glue.version_id.as_ref()
            ),
            ("db", "t", None)
        );
        let crate::config::OutputFormat::Parquet(parquet) = &format.output else {
            panic!("expected Parquet")
        };
        assert_eq!(
            parquet.compression,
            crate::convert::ParquetCompression::Gzip
        );
        assert_eq!(
            parquet.writer_version,
            crate::convert::ParquetWriterVersion::V2
        );

        let gzip = with(
            doc.clone(),
            &format!("{d}/CompressionFormat"),
            Some(json!("GZIP")),
        );
        let err = parse_json(&gzip).unwrap_err().to_string();
        assert!(err.contains("CompressionFormat"), "{err}");
        let small = with(
            doc.clone(),
            &format!("{d}/BufferingHints"),
            Some(json!({"SizeInMBs": 5, "IntervalInSeconds": 60})),
        );
        let err = parse_json(&small).unwrap_err().to_string();
        assert!(err.contains("SizeInMBs"), "{err}");
        let typo = with(
            doc.clone(),
            &format!(
                "{d}/DataFormatConversionConfiguration/OutputFormatConfiguration/Serializer/ParquetSerDe/Compresion"
            ),
            Some(json!("GZIP")),
        );
        let err = parse_json(&typo).unwrap_err().to_string();
        assert!(err.contains("ParquetSerDe.Compresion"), "{err}");
        let no_delim = with(
            doc,
            &format!("{d}/ProcessingConfiguration/Processors/0/Parameters/1"),
            None,
        );
        let err = parse_json(&no_delim).unwrap_err().to_string();
        assert!(err.contains("Delimiter"), "{err}");
    }

    #[test]
    fn kinesis_stream_as_source() {
        let mut doc = with(
            base(),
            "/DeliveryStreamType",
            Some(json!("KinesisStreamAsSource")),
        );
        doc = with(
            doc,
            "/KinesisStreamSourceConfiguration",
            Some(
                json!({"KinesisStreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/orders", "RoleARN": "arn:aws:iam::1:role/r"}),
            ),
        );
        let config = parse_json(&doc).unwrap();
        let SourceConfig::Kinesis(k) = &config.source else {
            panic!("expected Kinesis")
        };
        assert_eq!(k, &KinesisConfig::defaults("orders".into()));
        assert_eq!(k.start, crate::config::StartPosition::AtCreation);

        let missing = with(doc.clone(), "/KinesisStreamSourceConfiguration", None);
        let err = parse_json(&missing).unwrap_err().to_string();
        assert!(err.contains("KinesisStreamSourceConfiguration"), "{err}");
        let bad = with(
            doc.clone(),
            "/KinesisStreamSourceConfiguration/KinesisStreamARN",
            Some(json!("arn:aws:kinesis:us-east-1:1:table/x")),
        );
        let err = parse_json(&bad).unwrap_err().to_string();
        assert!(
            err.contains("KinesisStreamSourceConfiguration.KinesisStreamARN"),
            "{err}"
        );
        let direct = with(doc, "/DeliveryStreamType", Some(json!("DirectPut")));
        let err = parse_json(&direct).unwrap_err().to_string();
        assert!(err.contains("KinesisStreamSourceConfiguration"), "{err}");
    }

    #[test]
    fn s3_bucket_arn_encryption_and_backup() {
        let d = "/ExtendedS3DestinationConfiguration";
        let mut doc = with(
            base(),
            &format!("{d}/BucketARN"),
            Some(json!("arn:aws:s3:::my-bucket")),
        );
        doc = with(doc, &format!("{d}/EncryptionConfiguration"), None);
        let config = parse_json(&doc).unwrap();
        let Target::S3(s3) = &config.destination.target else {
            panic!("expected S3")
        };
        assert_eq!(s3.bucket, "my-bucket");
        assert_eq!(
            s3.encryption,
            Encryption::SseS3,
            "absent EncryptionConfiguration means SSE-S3"
        );
        assert_eq!(s3.part_size_bytes, DEFAULT_PART_SIZE_BYTES);

        let key = "arn:aws:kms:eu-west-1:123456789012:key/k";
        doc = with(
            doc,
            &format!("{d}/EncryptionConfiguration"),
            Some(json!({"KMSEncryptionConfig": {"AWSKMSKeyARN": key}})),
        );
        doc = with(doc, &format!("{d}/S3BackupMode"), Some(json!("Enabled")));
        doc = with(
            doc,
            &format!("{d}/S3BackupConfiguration"),
            Some(
                json!({"BucketARN": "arn:aws:s3:::my-bucket", "Prefix": "raw/", "CompressionFormat": "GZIP",
                        "RoleARN": "arn:aws:iam::1:role/r", "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300}}),
            ),
        );
        let config = parse_json(&doc).unwrap();
        let Target::S3(s3) = &config.destination.target else {
            panic!("expected S3")
        };
        assert_eq!(
            s3.encryption,
            Encryption::SseKms {
                key_arn: key.into()
            }
        );
        let backup = config.destination.backup.as_ref().expect("backup enabled");
        assert_eq!(backup.prefix.as_str(), "raw/!{timestamp:yyyy/MM/dd/HH/}");
        assert_eq!(backup.compression, Compression::Gzip);

        let other = with(
            doc.clone(),
            &format!("{d}/S3BackupConfiguration/BucketARN"),
            Some(json!("arn:aws:s3:::other")),
        );
        let err = parse_json(&other).unwrap_err().to_string();
        assert!(err.contains("S3BackupConfiguration.BucketARN"), "{err}");
        let missing = with(doc.clone(), &format!("{d}/S3BackupConfiguration"), None);
        let err = parse_json(&missing).unwrap_err().to_string();
        assert!(
            err.contains("S3BackupConfiguration") && err.contains("required"),
            "{err}"
        );
        let bad_arn = with(
            doc,
            &format!("{d}/BucketARN"),
            Some(json!("arn:aws:s3:::BAD_bucket")),
        );
        let err = parse_json(&bad_arn).unwrap_err().to_string();
        assert!(
            err.contains("ExtendedS3DestinationConfiguration.BucketARN"),
            "{err}"
        );
    }

    #[test]
    fn dynamic_partitioning_takes_a_jq_query_and_needs_keys_in_the_prefix() {
        let es3 = "/ExtendedS3DestinationConfiguration";
        let query = |q: &str, engine: &str| {
            json!({"Enabled": true, "Processors": [{"Type": "MetadataExtraction", "Parameters": [
                {"ParameterName": "MetadataExtractionQuery", "ParameterValue": q},
                {"ParameterName": "JsonParsingEngine", "ParameterValue": engine},
            ]}]})
        };
        let doc = |processing: Value, dp: Option<Value>, prefix: &str| {
            let doc = with(
                base(),
                &format!("{es3}/ProcessingConfiguration"),
                Some(processing),
            );
            let doc = with(doc, &format!("{es3}/DynamicPartitioningConfiguration"), dp);
            let doc = with(doc, &format!("{es3}/Prefix"), Some(json!(prefix)));
            with(
                doc,
                &format!("{es3}/ErrorOutputPrefix"),
                Some(json!("e/!{firehose:error-output-type}/")),
            )
        };
        let on = Some(json!({"Enabled": true, "RetryOptions": {"DurationInSeconds": 60}}));
        let keyed = "c=!{partitionKeyFromQuery:c}/";
        let config = parse_json(&doc(query("{c: .c}", "JQ-1.6"), on.clone(), keyed)).unwrap();
        let d = &config.destination;
        assert_eq!(d.processors.metadata.as_ref().unwrap().as_str(), "{c: .c}");
        assert_eq!(
            d.dynamic_partitioning.as_ref().unwrap().retry_duration,
            Duration::from_secs(60)
        );
        for (document, says) in [
            (
                doc(query("{c: .c}", "JQ-1.5"), on.clone(), keyed),
                "must be JQ-1.6",
            ),
            (
                doc(query("{c: .c", "JQ-1.6"), on.clone(), keyed),
                "MetadataExtractionQuery",
            ),
            (
                doc(query("{c: .c}", "JQ-1.6"), None, keyed),
                "need dynamic partitioning enabled",
            ),
            (
                doc(query("{c: .c}", "JQ-1.6"), None, "plain/"),
                "needs DynamicPartitioningConfiguration",
            ),
            (
                doc(query("{c: .c}", "JQ-1.6"), on.clone(), "plain/"),
                "at least one !{partitionKeyFromQuery",
            ),
            (
                doc(
                    query("{c: .c}", "JQ-1.6"),
                    Some(json!({"Enabled": true, "RetryOptions": {"DurationInSeconds": 9000}})),
                    keyed,
                ),
                "from 0 to 7200",
            ),
        ] {
            let err = parse_json(&document).unwrap_err().to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
    }

    #[test]
    fn a_single_unsupported_option_is_reported_alone() {
        let doc = with(
            base(),
            "/ExtendedS3DestinationConfiguration/ProcessingConfiguration",
            Some(json!({"Enabled": true, "Processors": [{"Type": "Decompression"}]})),
        );
        let err = parse_json(&doc).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported Firehose option(s): ExtendedS3DestinationConfiguration.ProcessingConfiguration.Processors[0] (Type Decompression)"
        );
    }

    #[test]
    fn names_and_prefixes_that_leave_the_output_are_refused() {
        let d = "/ExtendedS3DestinationConfiguration";
        let es3 = "ExtendedS3DestinationConfiguration";
        for bad in [".", ".."] {
            let doc = with(base(), "/DeliveryStreamName", Some(json!(bad)));
            let err = parse_json(&doc).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!(
                    "invalid option `DeliveryStreamName`: {bad:?} is not allowed"
                )),
                "{err}"
            );
        }
        for (field, value) in [
            ("Prefix", "../"),
            ("Prefix", "a/../../x/"),
            ("Prefix", "/etc/x/"),
            ("Prefix", "a\\b/"),
            ("ErrorOutputPrefix", "/errors/"),
        ] {
            let doc = with(base(), &format!("{d}/{field}"), Some(json!(value)));
            let err = parse_json(&doc).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!(
                    "invalid option `{es3}.{field}`: it evaluates to e.g."
                )),
                "{value}: {err}"
            );
        }
        let doc = with(base(), &format!("{d}/S3BackupMode"), Some(json!("Enabled")));
        let doc = with(
            doc,
            &format!("{d}/S3BackupConfiguration"),
            Some(
                json!({"RoleARN": "arn:aws:iam::123456789012:role/x", "BucketARN": "file://./data", "Prefix": "../raw/"}),
            ),
        );
        let err = parse_json(&doc).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "invalid option `{es3}.S3BackupConfiguration.Prefix`: it evaluates to e.g."
            )),
            "{err}"
        );
    }

    /// Each case edits one field of a valid document; the error must name the
    /// option by its dotted Firehose path.
    #[test]
    fn every_invalid_option_is_named() {
        assert!(parse_json(&base()).is_ok(), "the base case must be valid");
        let d = "/ExtendedS3DestinationConfiguration";
        let es3 = "ExtendedS3DestinationConfiguration";
        let cases: Vec<(String, Option<Value>, String)> = vec![
            (
                "/DeliveryStreamName".into(),
                Some(json!("")),
                "`DeliveryStreamName`".into(),
            ),
            (
                "/DeliveryStreamName".into(),
                Some(json!("a b")),
                "`DeliveryStreamName`".into(),
            ),
            (
                "/DeliveryStreamType".into(),
                Some(json!("Direct")),
                "`DeliveryStreamType`".into(),
            ),
            (d.into(), None, format!("`{es3}`")),
            (d.into(), Some(Value::Null), format!("`{es3}`")),
            (format!("{d}/BucketARN"), None, format!("`{es3}.BucketARN`")),
            (
                format!("{d}/BucketARN"),
                Some(json!("s3://bucket")),
                format!("`{es3}.BucketARN`"),
            ),
            (
                format!("{d}/BucketARN"),
                Some(json!("file://")),
                format!("`{es3}.BucketARN`"),
            ),
            (
                format!("{d}/BufferingHints/SizeInMBs"),
                Some(json!(0)),
                format!("`{es3}.BufferingHints.SizeInMBs`"),
            ),
            (
                format!("{d}/BufferingHints/SizeInMBs"),
                Some(json!(129)),
                format!("`{es3}.BufferingHints.SizeInMBs`"),
            ),
            (
                format!("{d}/BufferingHints/IntervalInSeconds"),
                Some(json!(901)),
                format!("`{es3}.BufferingHints.IntervalInSeconds`"),
            ),
            (
                format!("{d}/BufferingHints/IntervalInSeconds"),
                Some(json!(-1)),
                format!("`{es3}.BufferingHints.IntervalInSeconds`"),
            ),
            (
                format!("{d}/BufferingHints/IntervalInSeconds"),
                None,
                format!("`{es3}.BufferingHints.IntervalInSeconds`"),
            ),
            (
                format!("{d}/BufferingHints/SizeInMBs"),
                None,
                format!("`{es3}.BufferingHints.SizeInMBs`"),
            ),
            (
                format!("{d}/CompressionFormat"),
                Some(json!("gzip")),
                format!("`{es3}.CompressionFormat`"),
            ),
            (
                format!("{d}/CompressionFormat"),
                Some(json!("SNAPPY")),
                format!("`{es3}.CompressionFormat`"),
            ),
            (
                format!("{d}/FileExtension"),
                Some(json!("gz")),
                format!("`{es3}.FileExtension`"),
            ),
            (
                format!("{d}/CustomTimeZone"),
                Some(json!("Mars/Olympus")),
                format!("`{es3}.CustomTimeZone`"),
            ),
            (
                format!("{d}/CustomTimeZone"),
                Some(json!("UTC+9")),
                format!("`{es3}.CustomTimeZone`"),
            ),
            (
                format!("{d}/EncryptionConfiguration/NoEncryptionConfig"),
                Some(json!("None")),
                format!("`{es3}.EncryptionConfiguration.NoEncryptionConfig`"),
            ),
            (
                format!("{d}/S3BackupMode"),
                Some(json!("Sometimes")),
                format!("`{es3}.S3BackupMode`"),
            ),
            (
                format!("{d}/ProcessingConfiguration/Enabled"),
                None,
                format!("`{es3}.ProcessingConfiguration.Enabled`"),
            ),
            (
                format!("{d}/ProcessingConfiguration/Processors/0"),
                Some(json!({"Type": "Lamda"})),
                format!("`{es3}.ProcessingConfiguration.Processors[0].Type`"),
            ),
            (
                format!("{d}/ProcessingConfiguration/Processors/0"),
                Some(json!({"Type": "AppendDelimiterToRecord", "Parameters": [
                    {"ParameterName": "Delimiter", "ParameterValue": "\\n"}
                ]})),
                format!("`{es3}.ProcessingConfiguration.Processors[0].Parameters`"),
            ),
            // Wrong types.
            (
                "/DeliveryStreamName".into(),
                Some(json!(7)),
                "`DeliveryStreamName`".into(),
            ),
            (
                format!("{d}/BucketARN"),
                Some(json!(["file://x"])),
                format!("`{es3}.BucketARN`"),
            ),
            (
                format!("{d}/BufferingHints/SizeInMBs"),
                Some(json!("5")),
                format!("`{es3}.BufferingHints.SizeInMBs`"),
            ),
            (
                format!("{d}/BufferingHints/IntervalInSeconds"),
                Some(json!(1.5)),
                format!("`{es3}.BufferingHints.IntervalInSeconds`"),
            ),
            (
                format!("{d}/ProcessingConfiguration/Enabled"),
                Some(json!("true")),
                format!("`{es3}.ProcessingConfiguration.Enabled`"),
            ),
            (
                format!("{d}/ProcessingConfiguration/Processors/0/Type"),
                Some(json!(1)),
                format!("`{es3}.ProcessingConfiguration.Processors[0].Type`"),
            ),
            (
                format!("{d}/Prefix"),
                Some(json!(false)),
                format!("`{es3}.Prefix`"),
            ),
            // Missing required fields: serde names them.
            (
                "/DeliveryStreamName".into(),
                None,
                "DeliveryStreamName".into(),
            ),
            (
                format!("{d}/ProcessingConfiguration/Processors/0"),
                Some(json!({})),
                "Type".into(),
            ),
            // Wrong container types: serde names the struct, which has the field's name.
            (
                format!("{d}/BufferingHints"),
                Some(json!(5)),
                "BufferingHints".into(),
            ),
        ];
        for (at, value, option) in cases {
            let doc = with(base(), &at, value.clone());
            let err = parse_json(&doc).expect_err(&at).to_string();
            assert!(
                err.contains(&option),
                "{at} = {value:?}: message {err:?} does not name {option}"
            );
        }
    }

    #[test]
    fn misspelt_fields_are_parse_errors_naming_them() {
        let d = "/ExtendedS3DestinationConfiguration";
        for (at, field) in [
            ("/DeliveryStreamNme".to_owned(), "DeliveryStreamNme"),
            (format!("{d}/Prefx"), "Prefx"),
            (format!("{d}/BufferingHints/SizeInMB"), "SizeInMB"),
            (
                format!("{d}/EncryptionConfiguration/KmsEncryptionConfig"),
                "KmsEncryptionConfig",
            ),
            (
                format!("{d}/ProcessingConfiguration/Processor"),
                "Processor",
            ),
        ] {
            let doc = with(base(), &at, Some(json!(1)));
            let err = parse_json(&doc).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Parse(message) if message.contains(field)),
                "{at}: {err}"
            );
        }
    }

    #[test]
    fn stream_type_defaults_to_direct_put_and_nulls_are_absent() {
        let mut doc = with(base(), "/DeliveryStreamType", None);
        for key in [
            "KinesisStreamSourceConfiguration",
            "S3DestinationConfiguration",
            "Tags",
        ] {
            doc = with(doc, &format!("/{key}"), Some(Value::Null));
        }
        doc = with(
            doc,
            "/ExtendedS3DestinationConfiguration/S3BackupConfiguration",
            Some(Value::Null),
        );
        let config = parse_json(&doc).unwrap();
        assert!(matches!(
            config.source,
            SourceConfig::DirectPut(DirectPutConfig {
                max_wal_bytes: DEFAULT_MAX_WAL_BYTES
            })
        ));
    }

    #[test]
    fn append_delimiter_follows_the_processing_configuration() {
        let pc = "/ExtendedS3DestinationConfiguration/ProcessingConfiguration";
        assert!(parse_json(&base()).unwrap().destination.append_delimiter);
        for (value, want) in [
            (None, false),
            (
                Some(
                    json!({"Enabled": false, "Processors": [{"Type": "AppendDelimiterToRecord"}]}),
                ),
                false,
            ),
            (Some(json!({"Enabled": true, "Processors": []})), false),
            (Some(json!({"Enabled": true})), false),
            (Some(json!({})), false),
            (
                Some(json!({"Enabled": true, "Processors": [{"Type": "AppendDelimiterToRecord"}]})),
                true,
            ),
        ] {
            let doc = with(base(), pc, value.clone());
            assert_eq!(
                parse_json(&doc).unwrap().destination.append_delimiter,
                want,
                "{value:?}"
            );
        }
    }

    #[test]
    fn options_without_meaning_are_logged_once_each() {
        let mut doc = base();
        doc = with(
            doc,
            "/DeliveryStreamEncryptionConfigurationInput",
            Some(json!({"KeyType": "AWS_OWNED_CMK"})),
        );
        doc = with(
            doc,
            "/DirectPutSourceConfiguration",
            Some(json!({"ThroughputHintInMBs": 5})),
        );
        let input: CreateDeliveryStreamInput = serde_json::from_value(doc.clone()).unwrap();
        let options: Vec<String> = ignored_options(&input)
            .into_iter()
            .map(|(option, _)| option)
            .collect();
        assert_eq!(
            options,
            [
                "Tags",
                "DeliveryStreamEncryptionConfigurationInput",
                "DirectPutSourceConfiguration",
                "ExtendedS3DestinationConfiguration.RoleARN",
                "ExtendedS3DestinationConfiguration.CloudWatchLoggingOptions",
            ]
        );
        assert!(parse_json(&doc).is_ok());
    }

    /// `partition::resolve` says which prefix breaks a rule; the error names
    /// that option by its Firehose path and keeps resolve's reason.
    #[test]
    fn prefix_errors_name_the_broken_prefix() {
        let d = "/ExtendedS3DestinationConfiguration";
        let cases = [
            // error-output-type is only allowed in ErrorOutputPrefix.
            (Some("!{firehose:error-output-type}/"), None, "Prefix"),
            (
                Some("a/!{nope"),
                Some("e/!{firehose:error-output-type}/"),
                "Prefix",
            ),
            // An expression in Prefix requires an ErrorOutputPrefix.
            (Some("!{timestamp:yyyy}/"), None, "ErrorOutputPrefix"),
            // An ErrorOutputPrefix with expressions must use error-output-type.
            (
                Some("p/"),
                Some("e/!{timestamp:yyyy}/"),
                "ErrorOutputPrefix",
            ),
        ];
        for (prefix, error_prefix, option) in cases {
            let mut doc = with(base(), &format!("{d}/Prefix"), prefix.map(|p| json!(p)));
            doc = with(
                doc,
                &format!("{d}/ErrorOutputPrefix"),
                error_prefix.map(|p| json!(p)),
            );
            let Err(crate::partition::PrefixError::Invalid {
                reason: expected, ..
            }) = crate::partition::resolve(prefix, error_prefix, false, false)
            else {
                panic!("{prefix:?}, {error_prefix:?} should break a prefix rule");
            };
            match parse_json(&doc) {
                Err(ConfigError::Invalid {
                    option: got,
                    reason,
                }) => {
                    assert_eq!(
                        got,
                        format!("{ES3}.{option}"),
                        "{prefix:?}, {error_prefix:?}"
                    );
                    assert_eq!(reason, expected);
                }
                other => panic!("{prefix:?}, {error_prefix:?}: {other:?}"),
            }
            // The native shape names the same option in its own spelling.
            let native_option = if option == "Prefix" {
                "destination.prefix"
            } else {
                "destination.error_output_prefix"
            };
            let mut toml = String::from(
                "name = \"s\"\n[source]\ntype = \"direct_put\"\n[destination]\ntype = \"local\"\npath = \"out\"\n",
            );
            for (key, value) in [("prefix", prefix), ("error_output_prefix", error_prefix)] {
                if let Some(value) = value {
                    toml.push_str(&format!("{key} = {value:?}\n"));
                }
            }
            let err = super::super::native::parse(&toml, Path::new("t.toml"), Path::new(CWD))
                .unwrap_err()
                .0
                .remove(0)
                .error;
            assert!(
                matches!(&err, ConfigError::Invalid { option, .. } if option == native_option),
                "{toml}: {err}"
            );
        }
    }
}
