//! Record format conversion and de-aggregation options, in both shapes.
//!
//! Native TOML: `[destination.format]` (type `parquet` or `orc`, the
//! deserializer and serializer options, `[[destination.format.schema]]`
//! columns or a `[destination.format.glue]` table) and
//! `[destination.deaggregation]`. Firehose JSON:
//! `DataFormatConversionConfiguration` and the `RecordDeAggregation`
//! processor. Both validate into [`FormatConfig`] / [`Deaggregation`]; a Glue
//! table is read at start-up (`crate::app`), so validation only checks its
//! name.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::{ConfigError, FormatConfig, GlueTable, OutputFormat, SchemaSource};
use crate::convert::orc::{OrcCompression, OrcOptions};
use crate::convert::{
    Deserializer, ParquetCompression, ParquetOptions, ParquetWriterVersion, Schema,
};
use crate::process::Deaggregation;

/// `[destination.format]`.
#[derive(Debug, Deserialize)]
#[serde(rename = "destination.format", deny_unknown_fields)]
pub(super) struct RawFormat {
    #[serde(rename = "type")]
    kind: String,
    deserializer: Option<String>,
    case_insensitive: Option<bool>,
    column_to_json_key_mappings: Option<BTreeMap<String, String>>,
    convert_dots_in_json_keys_to_underscores: Option<bool>,
    timestamp_formats: Option<Vec<String>>,
    compression: Option<String>,
    page_size_bytes: Option<u64>,
    block_size_bytes: Option<u64>,
    enable_dictionary: Option<bool>,
    writer_version: Option<String>,
    stripe_size_bytes: Option<u64>,
    row_index_stride: Option<u32>,
    bloom_filter_columns: Option<Vec<String>>,
    bloom_filter_false_positive_probability: Option<f64>,
    schema: Option<Schema>,
    glue: Option<RawGlue>,
}

/// `[destination.format.glue]`.
#[derive(Debug, Deserialize)]
#[serde(rename = "destination.format.glue", deny_unknown_fields)]
pub(super) struct RawGlue {
    database: String,
    table: String,
    region: Option<String>,
    catalog_id: Option<String>,
    version_id: Option<String>,
    endpoint_url: Option<String>,
}

/// `[destination.deaggregation]`.
#[derive(Debug, Deserialize)]
#[serde(rename = "destination.deaggregation", deny_unknown_fields)]
pub(super) struct RawDeaggregation {
    sub_record_type: String,
    delimiter: Option<String>,
}

const F: &str = "destination.format";

pub(super) fn native_format(raw: &RawFormat) -> Result<FormatConfig, ConfigError> {
    let deserializer = match raw.deserializer.as_deref() {
        None | Some("openx") => {
            if raw.timestamp_formats.is_some() {
                return Err(ConfigError::invalid(
                    format!("{F}.timestamp_formats"),
                    "only for deserializer = \"hive\"",
                ));
            }
            Deserializer::OpenX {
                case_insensitive: raw.case_insensitive.unwrap_or(true),
                column_to_json_key_mappings: raw
                    .column_to_json_key_mappings
                    .clone()
                    .unwrap_or_default(),
                convert_dots_in_json_keys_to_underscores: raw
                    .convert_dots_in_json_keys_to_underscores
                    .unwrap_or(false),
            }
        }
        Some("hive") => {
            for (set, name) in [
                (raw.case_insensitive.is_some(), "case_insensitive"),
                (
                    raw.column_to_json_key_mappings.is_some(),
                    "column_to_json_key_mappings",
                ),
                (
                    raw.convert_dots_in_json_keys_to_underscores.is_some(),
                    "convert_dots_in_json_keys_to_underscores",
                ),
            ] {
                if set {
                    return Err(ConfigError::invalid(
                        format!("{F}.{name}"),
                        "only for deserializer = \"openx\"",
                    ));
                }
            }
            Deserializer::Hive {
                timestamp_formats: raw.timestamp_formats.clone().unwrap_or_default(),
            }
        }
        Some(other) => {
            return Err(ConfigError::invalid(
                format!("{F}.deserializer"),
                format!("must be openx or hive, got {other:?}"),
            ));
        }
    };
    let output = match raw.kind.as_str() {
        "parquet" => {
            for (set, name) in [
                (raw.stripe_size_bytes.is_some(), "stripe_size_bytes"),
                (raw.row_index_stride.is_some(), "row_index_stride"),
                (raw.bloom_filter_columns.is_some(), "bloom_filter_columns"),
                (
                    raw.bloom_filter_false_positive_probability.is_some(),
                    "bloom_filter_false_positive_probability",
                ),
            ] {
                if set {
                    return Err(ConfigError::invalid(
                        format!("{F}.{name}"),
                        "only for type = \"orc\"",
                    ));
                }
            }
            let defaults = ParquetOptions::default();
            let options = ParquetOptions {
                compression: parse_enum(&format!("{F}.compression"), raw.compression.as_deref())?
                    .unwrap_or(defaults.compression),
                page_size_bytes: raw
                    .page_size_bytes
                    .map_or(defaults.page_size_bytes, |v| v as usize),
                block_size_bytes: raw
                    .block_size_bytes
                    .map_or(defaults.block_size_bytes, |v| v as usize),
                enable_dictionary: raw.enable_dictionary.unwrap_or(defaults.enable_dictionary),
                writer_version: match raw.writer_version.as_deref() {
                    None | Some("v1") => ParquetWriterVersion::V1,
                    Some("v2") => ParquetWriterVersion::V2,
                    Some(other) => {
                        return Err(ConfigError::invalid(
                            format!("{F}.writer_version"),
                            format!("must be v1 or v2, got {other:?}"),
                        ));
                    }
                },
            };
            options
                .validate()
                .map_err(|e| ConfigError::invalid(F, e.to_string()))?;
            OutputFormat::Parquet(options)
        }
        "orc" => {
            for (set, name) in [
                (raw.page_size_bytes.is_some(), "page_size_bytes"),
                (raw.enable_dictionary.is_some(), "enable_dictionary"),
                (raw.writer_version.is_some(), "writer_version"),
            ] {
                if set {
                    return Err(ConfigError::invalid(
                        format!("{F}.{name}"),
                        "only for type = \"parquet\"",
                    ));
                }
            }
            let defaults = OrcOptions::default();
            let options = OrcOptions {
                compression: parse_enum(&format!("{F}.compression"), raw.compression.as_deref())?
                    .unwrap_or(defaults.compression),
                stripe_size_bytes: raw.stripe_size_bytes.unwrap_or(defaults.stripe_size_bytes),
                row_index_stride: raw.row_index_stride.unwrap_or(defaults.row_index_stride),
                bloom_filter_columns: raw.bloom_filter_columns.clone().unwrap_or_default(),
                bloom_filter_fpp: raw
                    .bloom_filter_false_positive_probability
                    .unwrap_or(defaults.bloom_filter_fpp),
                ..defaults
            };
            options
                .validate()
                .map_err(|e| ConfigError::invalid(F, e.to_string()))?;
            OutputFormat::Orc(options)
        }
        other => {
            return Err(ConfigError::invalid(
                format!("{F}.type"),
                format!("must be parquet or orc, got {other:?}"),
            ));
        }
    };
    let schema = match (&raw.schema, &raw.glue) {
        (Some(schema), None) => {
            schema
                .validate()
                .map_err(|e| ConfigError::invalid(format!("{F}.schema"), e.to_string()))?;
            SchemaSource::Inline(schema.clone())
        }
        (None, Some(glue)) => SchemaSource::Glue(GlueTable {
            database: glue.database.clone(),
            table: glue.table.clone(),
            region: glue.region.clone(),
            catalog_id: glue.catalog_id.clone(),
            version_id: glue.version_id.clone().filter(|v| v != "LATEST"),
            endpoint_url: glue.endpoint_url.clone(),
        }),
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{F}.glue"),
                "give `schema` columns or a `glue` table, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                format!("{F}.schema"),
                "required: [[destination.format.schema]] columns or [destination.format.glue]",
            ));
        }
    };
    let format = FormatConfig {
        schema,
        deserializer,
        output,
    };
    check_bloom_columns(&format, &format!("{F}.bloom_filter_columns"))?;
    Ok(format)
}

fn parse_enum<T: std::str::FromStr<Err = String>>(
    option: &str,
    value: Option<&str>,
) -> Result<Option<T>, ConfigError> {
    value
        .map(|v| v.parse::<T>().map_err(|e| ConfigError::invalid(option, e)))
        .transpose()
}

fn check_bloom_columns(format: &FormatConfig, option: &str) -> Result<(), ConfigError> {
    let (OutputFormat::Orc(orc), SchemaSource::Inline(schema)) = (&format.output, &format.schema)
    else {
        return Ok(());
    };
    for column in &orc.bloom_filter_columns {
        if !schema
            .columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(column))
        {
            return Err(ConfigError::invalid(
                option,
                format!("{column:?} is not a column of the schema"),
            ));
        }
    }
    Ok(())
}

pub(super) fn native_deaggregation(raw: &RawDeaggregation) -> Result<Deaggregation, ConfigError> {
    const D: &str = "destination.deaggregation";
    match (raw.sub_record_type.as_str(), &raw.delimiter) {
        ("json", None) => Ok(Deaggregation::Json),
        ("json", Some(_)) => Err(ConfigError::invalid(
            format!("{D}.delimiter"),
            "only for sub_record_type = \"delimited\"",
        )),
        ("delimited", Some(d)) if !d.is_empty() => {
            Ok(Deaggregation::Delimited(d.as_bytes().to_vec()))
        }
        ("delimited", _) => Err(ConfigError::invalid(
            format!("{D}.delimiter"),
            "required (non-empty) for sub_record_type = \"delimited\"",
        )),
        (other, _) => Err(ConfigError::invalid(
            format!("{D}.sub_record_type"),
            format!("must be json or delimited, got {other:?}"),
        )),
    }
}

/// Firehose `RecordDeAggregation` processor parameters.
pub(super) fn firehose_deaggregation(
    option: &str,
    parameters: &BTreeMap<String, String>,
) -> Result<Deaggregation, ConfigError> {
    for name in parameters.keys() {
        if name != "SubRecordType" && name != "Delimiter" {
            return Err(ConfigError::invalid(
                format!("{option}.Parameters"),
                format!("unknown parameter {name:?} for RecordDeAggregation"),
            ));
        }
    }
    match (
        parameters.get("SubRecordType").map(String::as_str),
        parameters.get("Delimiter"),
    ) {
        (Some("JSON"), None) => Ok(Deaggregation::Json),
        (Some("DELIMITED"), Some(b64)) => {
            let delimiter = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| {
                    ConfigError::invalid(
                        format!("{option}.Delimiter"),
                        format!("must be base64: {e}"),
                    )
                })?;
            if delimiter.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{option}.Delimiter"),
                    "must not be empty",
                ));
            }
            Ok(Deaggregation::Delimited(delimiter))
        }
        (Some("DELIMITED"), None) => Err(ConfigError::invalid(
            format!("{option}.Delimiter"),
            "required for SubRecordType DELIMITED",
        )),
        (Some("JSON"), Some(_)) => Err(ConfigError::invalid(
            format!("{option}.Delimiter"),
            "only for SubRecordType DELIMITED",
        )),
        (other, _) => Err(ConfigError::invalid(
            format!("{option}.SubRecordType"),
            format!("must be JSON or DELIMITED, got {other:?}"),
        )),
    }
}

/// Firehose `DataFormatConversionConfiguration` (already known to be enabled).
pub(super) fn firehose_format(option: &str, value: &Value) -> Result<FormatConfig, ConfigError> {
    let known = [
        "Enabled",
        "SchemaConfiguration",
        "InputFormatConfiguration",
        "OutputFormatConfiguration",
    ];
    check_keys(option, value, &known)?;
    let schema = {
        let o = format!("{option}.SchemaConfiguration");
        let s = value
            .get("SchemaConfiguration")
            .ok_or_else(|| ConfigError::invalid(&o, "required"))?;
        check_keys(
            &o,
            s,
            &[
                "RoleARN",
                "CatalogId",
                "DatabaseName",
                "TableName",
                "Region",
                "VersionId",
            ],
        )?;
        let text = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_owned);
        SchemaSource::Glue(GlueTable {
            database: text("DatabaseName")
                .ok_or_else(|| ConfigError::invalid(format!("{o}.DatabaseName"), "required"))?,
            table: text("TableName")
                .ok_or_else(|| ConfigError::invalid(format!("{o}.TableName"), "required"))?,
            region: text("Region"),
            catalog_id: text("CatalogId"),
            version_id: text("VersionId").filter(|v| v != "LATEST"),
            endpoint_url: None,
        })
    };
    let deserializer = {
        let o = format!("{option}.InputFormatConfiguration.Deserializer");
        let d = value
            .pointer("/InputFormatConfiguration/Deserializer")
            .ok_or_else(|| ConfigError::invalid(&o, "required"))?;
        check_keys(&o, d, &["OpenXJsonSerDe", "HiveJsonSerDe"])?;
        match (d.get("OpenXJsonSerDe"), d.get("HiveJsonSerDe")) {
            (Some(x), None) => {
                let o = format!("{o}.OpenXJsonSerDe");
                check_keys(
                    &o,
                    x,
                    &[
                        "CaseInsensitive",
                        "ColumnToJsonKeyMappings",
                        "ConvertDotsInJsonKeysToUnderscores",
                    ],
                )?;
                Deserializer::OpenX {
                    case_insensitive: bool_field(&o, x, "CaseInsensitive")?.unwrap_or(true),
                    column_to_json_key_mappings: match x.get("ColumnToJsonKeyMappings") {
                        None | Some(Value::Null) => BTreeMap::new(),
                        Some(m) => serde_json::from_value(m.clone()).map_err(|e| {
                            ConfigError::invalid(
                                format!("{o}.ColumnToJsonKeyMappings"),
                                e.to_string(),
                            )
                        })?,
                    },
                    convert_dots_in_json_keys_to_underscores: bool_field(
                        &o,
                        x,
                        "ConvertDotsInJsonKeysToUnderscores",
                    )?
                    .unwrap_or(false),
                }
            }
            (None, Some(h)) => {
                let o = format!("{o}.HiveJsonSerDe");
                check_keys(&o, h, &["TimestampFormats"])?;
                Deserializer::Hive {
                    timestamp_formats: match h.get("TimestampFormats") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                            ConfigError::invalid(format!("{o}.TimestampFormats"), e.to_string())
                        })?,
                    },
                }
            }
            _ => {
                return Err(ConfigError::invalid(
                    o,
                    "exactly one of OpenXJsonSerDe and HiveJsonSerDe",
                ));
            }
        }
    };
    let output = {
        let o = format!("{option}.OutputFormatConfiguration.Serializer");
        let s = value
            .pointer("/OutputFormatConfiguration/Serializer")
            .ok_or_else(|| ConfigError::invalid(&o, "required"))?;
        check_keys(&o, s, &["ParquetSerDe", "OrcSerDe"])?;
        match (s.get("ParquetSerDe"), s.get("OrcSerDe")) {
            (Some(p), None) => {
                let o = format!("{o}.ParquetSerDe");
                let keys = [
                    "BlockSizeBytes",
                    "PageSizeBytes",
                    "Compression",
                    "EnableDictionaryCompression",
                    "MaxPaddingBytes",
                    "WriterVersion",
                ];
                check_keys(&o, p, &keys)?;
                let defaults = ParquetOptions::default();
                let options = ParquetOptions {
                    compression: parse_enum::<ParquetCompression>(
                        &format!("{o}.Compression"),
                        str_field(&o, p, "Compression")?,
                    )?
                    .unwrap_or(defaults.compression),
                    page_size_bytes: int_field(&o, p, "PageSizeBytes")?
                        .map_or(defaults.page_size_bytes, |v| v as usize),
                    block_size_bytes: int_field(&o, p, "BlockSizeBytes")?
                        .map_or(defaults.block_size_bytes, |v| v as usize),
                    enable_dictionary: bool_field(&o, p, "EnableDictionaryCompression")?
                        .unwrap_or(defaults.enable_dictionary),
                    writer_version: match str_field(&o, p, "WriterVersion")? {
                        None | Some("V1") => ParquetWriterVersion::V1,
                        Some("V2") => ParquetWriterVersion::V2,
                        Some(other) => {
                            return Err(ConfigError::invalid(
                                format!("{o}.WriterVersion"),
                                format!("must be V1 or V2, got {other:?}"),
                            ));
                        }
                    },
                };
                options
                    .check_firehose_limits()
                    .map_err(|e| ConfigError::invalid(&o, e.to_string()))?;
                OutputFormat::Parquet(options)
            }
            (None, Some(orc)) => {
                let o = format!("{o}.OrcSerDe");
                let keys = [
                    "StripeSizeBytes",
                    "BlockSizeBytes",
                    "RowIndexStride",
                    "EnablePadding",
                    "PaddingTolerance",
                    "Compression",
                    "BloomFilterColumns",
                    "BloomFilterFalsePositiveProbability",
                    "DictionaryKeyThreshold",
                    "FormatVersion",
                ];
                check_keys(&o, orc, &keys)?;
                if let Some(v) = str_field(&o, orc, "FormatVersion")?
                    && v != "V0_12"
                {
                    return Err(ConfigError::invalid(
                        format!("{o}.FormatVersion"),
                        format!("only V0_12 is written, got {v:?}"),
                    ));
                }
                let defaults = OrcOptions::default();
                let options = OrcOptions {
                    compression: parse_enum::<OrcCompression>(
                        &format!("{o}.Compression"),
                        str_field(&o, orc, "Compression")?,
                    )?
                    .unwrap_or(defaults.compression),
                    stripe_size_bytes: int_field(&o, orc, "StripeSizeBytes")?
                        .unwrap_or(defaults.stripe_size_bytes),
                    row_index_stride: int_field(&o, orc, "RowIndexStride")?
                        .map_or(defaults.row_index_stride, |v| v as u32),
                    bloom_filter_columns: match orc.get("BloomFilterColumns") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                            ConfigError::invalid(format!("{o}.BloomFilterColumns"), e.to_string())
                        })?,
                    },
                    bloom_filter_fpp: match orc.get("BloomFilterFalsePositiveProbability") {
                        None | Some(Value::Null) => defaults.bloom_filter_fpp,
                        Some(v) => v.as_f64().ok_or_else(|| {
                            ConfigError::invalid(
                                format!("{o}.BloomFilterFalsePositiveProbability"),
                                "must be a number",
                            )
                        })?,
                    },
                    ..defaults
                };
                options
                    .validate()
                    .map_err(|e| ConfigError::invalid(&o, e.to_string()))?;
                OutputFormat::Orc(options)
            }
            _ => {
                return Err(ConfigError::invalid(
                    o,
                    "exactly one of ParquetSerDe and OrcSerDe",
                ));
            }
        }
    };
    Ok(FormatConfig {
        schema,
        deserializer,
        output,
    })
}

fn check_keys(option: &str, value: &Value, known: &[&str]) -> Result<(), ConfigError> {
    let Some(map) = value.as_object() else {
        return Err(ConfigError::invalid(option, "must be an object"));
    };
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            return Err(ConfigError::invalid(
                format!("{option}.{key}"),
                format!("unknown field; expected one of {}", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn str_field<'a>(
    option: &str,
    value: &'a Value,
    key: &str,
) -> Result<Option<&'a str>, ConfigError> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ConfigError::invalid(
            format!("{option}.{key}"),
            "must be a string",
        )),
    }
}

fn bool_field(option: &str, value: &Value, key: &str) -> Result<Option<bool>, ConfigError> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ConfigError::invalid(
            format!("{option}.{key}"),
            "must be true or false",
        )),
    }
}

fn int_field(option: &str, value: &Value, key: &str) -> Result<Option<u64>, ConfigError> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ConfigError::invalid(format!("{option}.{key}"), "must be a non-negative integer")
        }),
    }
}
