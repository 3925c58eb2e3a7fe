//! WASM transform options, in both shapes.
//!
//! Firehose JSON: a `Lambda` processor of `ProcessingConfiguration`, whose
//! `LambdaArn` names the component `<transforms dir>/<function name>.wasm`
//! (`--transforms-dir`); `NumberOfRetries`, `BufferSizeInMBs`,
//! `BufferIntervalInSeconds` and `RoleArn` as Firehose defines them. Native
//! TOML: `[[destination.transform]]` tables, one per transform in chain order,
//! with the module path and what Firehose has no field for: the `init`
//! configuration, the deadline and the memory cap. Both validate into
//! [`TransformConfig`]; whether the module exists and loads is checked when the
//! stream starts and by `sluice validate` (`crate::app::check_transforms`),
//! because it depends on the transforms directory, not on the file alone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::validate::within as range;
use crate::process::{MAX_BATCH_BYTES, ModuleRef, TransformConfig};

/// `[[destination.transform]]`. Value types are checked with the keys
/// (`native::OPTIONS`) before serde sees the table.
#[derive(Debug, Deserialize)]
#[serde(rename = "destination.transform", deny_unknown_fields)]
pub(super) struct RawTransform {
    module: String,
    config: Option<BTreeMap<String, String>>,
    retries: Option<u64>,
    batch_size_bytes: Option<u64>,
    batch_interval_secs: Option<u64>,
    deadline_ms: Option<u64>,
    memory_bytes: Option<u64>,
}

/// Most retries of one batch: Firehose's `NumberOfRetries` range is 0-300.
const MAX_RETRIES: u64 = 300;
/// Lambda's longest timeout is 15 minutes; Firehose supports up to 5.
const MAX_DEADLINE_MS: u64 = 900_000;
/// Below this a Python or JavaScript component does not even start.
const MIN_MEMORY_BYTES: u64 = 1 << 20;
/// wasm32's address space.
const MAX_MEMORY_BYTES: u64 = 4 << 30;
/// Firehose's `BufferIntervalInSeconds` range for a Lambda processor.
const MAX_BATCH_INTERVAL_SECS: u64 = 900;

/// The native `[[destination.transform]]` tables, in chain order.
pub(super) fn native_transforms(raw: &[RawTransform]) -> Result<Vec<TransformConfig>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, raw)| {
            let at = |key: &str| format!("destination.transform[{i}].{key}");
            if raw.module.trim().is_empty() {
                return Err(ConfigError::invalid(at("module"), "must name a .wasm file"));
            }
            let mut config = TransformConfig::new(ModuleRef::Path(PathBuf::from(&raw.module)));
            config.init = raw.config.clone().unwrap_or_default().into_iter().collect();
            if let Some(retries) = raw.retries {
                config.retries = range(&at("retries"), retries, 0, MAX_RETRIES)? as u32;
            }
            if let Some(bytes) = raw.batch_size_bytes {
                config.batch_bytes =
                    range(&at("batch_size_bytes"), bytes, 1, MAX_BATCH_BYTES as u64)? as usize;
            }
            if let Some(secs) = raw.batch_interval_secs {
                config.batch_interval = Duration::from_secs(range(
                    &at("batch_interval_secs"),
                    secs,
                    0,
                    MAX_BATCH_INTERVAL_SECS,
                )?);
            }
            if let Some(ms) = raw.deadline_ms {
                config.deadline =
                    Duration::from_millis(range(&at("deadline_ms"), ms, 1, MAX_DEADLINE_MS)?);
            }
            if let Some(bytes) = raw.memory_bytes {
                config.memory_bytes = range(
                    &at("memory_bytes"),
                    bytes,
                    MIN_MEMORY_BYTES,
                    MAX_MEMORY_BYTES,
                )? as usize;
            }
            Ok(config)
        })
        .collect()
}

/// A Firehose `Lambda` processor's parameters (`option` is the processor's
/// path, `ExtendedS3DestinationConfiguration.ProcessingConfiguration.Processors[i]`).
pub(super) fn firehose_lambda(
    option: &str,
    parameters: &BTreeMap<String, String>,
) -> Result<TransformConfig, ConfigError> {
    const KNOWN: [&str; 5] = [
        "LambdaArn",
        "NumberOfRetries",
        "BufferSizeInMBs",
        "BufferIntervalInSeconds",
        "RoleArn",
    ];
    let param = |name: &str| format!("{option}.Parameters[{name}]");
    if let Some(name) = parameters.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ConfigError::invalid(
            format!("{option}.Parameters"),
            format!(
                "unknown parameter {name:?} for Lambda (known: {})",
                KNOWN.join(", ")
            ),
        ));
    }
    let arn = parameters
        .get("LambdaArn")
        .ok_or_else(|| ConfigError::invalid(param("LambdaArn"), "required"))?;
    let function =
        lambda_function(arn).map_err(|why| ConfigError::invalid(param("LambdaArn"), why))?;
    let mut config = TransformConfig::new(ModuleRef::Lambda {
        arn: arn.clone(),
        function,
    });
    if let Some(value) = parameters.get("NumberOfRetries") {
        let retries = value.parse::<u64>().map_err(|_| {
            ConfigError::invalid(
                param("NumberOfRetries"),
                format!("must be a whole number, got {value:?}"),
            )
        })?;
        config.retries = range(&param("NumberOfRetries"), retries, 0, MAX_RETRIES)? as u32;
    }
    if let Some(value) = parameters.get("BufferSizeInMBs") {
        let mb = value
            .parse::<f64>()
            .ok()
            .filter(|mb| (0.2..=3.0).contains(mb));
        let Some(mb) = mb else {
            return Err(ConfigError::invalid(
                param("BufferSizeInMBs"),
                format!("must be a number from 0.2 to 3, got {value:?}"),
            ));
        };
        config.batch_bytes = (mb * f64::from(1u32 << 20)) as usize;
    }
    if let Some(value) = parameters.get("BufferIntervalInSeconds") {
        let secs = value.parse::<u64>().map_err(|_| {
            ConfigError::invalid(
                param("BufferIntervalInSeconds"),
                format!("must be a whole number of seconds, got {value:?}"),
            )
        })?;
        config.batch_interval = Duration::from_secs(range(
            &param("BufferIntervalInSeconds"),
            secs,
            0,
            MAX_BATCH_INTERVAL_SECS,
        )?);
    }
    // RoleArn: the role Firehose assumes to invoke the function. sluice calls
    // the component in-process; there is nothing to assume.
    Ok(config)
}

/// The function name of `arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`.
/// The qualifier (a version or alias) is accepted and does not change the file:
/// a component file is one version.
fn lambda_function(arn: &str) -> Result<String, String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let shape = "must look like arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]";
    if !(7..=8).contains(&parts.len())
        || parts[0] != "arn"
        || !parts[1].starts_with("aws")
        || parts[2] != "lambda"
        || parts[5] != "function"
    {
        return Err(format!("{shape}, got {arn:?}"));
    }
    let name = parts[6];
    // Lambda's function-name rule; it also keeps the name a plain file name.
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(format!(
            "function name {name:?} must be 1-64 letters, digits, - or _"
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn lambda_arn_names_the_component() {
        let c = firehose_lambda(
            "P",
            &params(&[(
                "LambdaArn",
                "arn:aws:lambda:eu-west-1:123456789012:function:redact:prod",
            )]),
        )
        .unwrap();
        assert_eq!(
            c.module.resolve(std::path::Path::new("/t")),
            PathBuf::from("/t/redact.wasm")
        );
        assert_eq!(
            c.module.to_string(),
            "arn:aws:lambda:eu-west-1:123456789012:function:redact:prod"
        );
        assert_eq!((c.retries, c.batch_bytes), (3, 1 << 20));
    }

    #[test]
    fn lambda_parameters_follow_firehose_ranges() {
        let arn = ("LambdaArn", "arn:aws:lambda:us-east-1:1:function:f");
        let c = firehose_lambda(
            "P",
            &params(&[
                arn,
                ("NumberOfRetries", "0"),
                ("BufferSizeInMBs", "0.5"),
                ("BufferIntervalInSeconds", "120"),
                ("RoleArn", "arn:aws:iam::1:role/r"),
            ]),
        )
        .unwrap();
        assert_eq!(c.retries, 0);
        assert_eq!(c.batch_bytes, 1 << 19);
        assert_eq!(c.batch_interval, Duration::from_secs(120));
        for (bad, name, says) in [
            (("BufferSizeInMBs", "4"), "BufferSizeInMBs", "from 0.2 to 3"),
            (("NumberOfRetries", "-1"), "NumberOfRetries", "whole number"),
            (
                ("NumberOfRetries", "301"),
                "NumberOfRetries",
                "between 0 and 300",
            ),
            (
                ("Timeout", "3"),
                "Parameters",
                "unknown parameter \"Timeout\"",
            ),
        ] {
            let err = firehose_lambda("P", &params(&[arn, bad]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name) && err.contains(says), "{err}");
        }
        for arn in [
            "arn:aws:lambda:us-east-1:1:function:../../etc",
            "arn:aws:s3:::bucket",
            "redact",
        ] {
            let err = firehose_lambda("P", &params(&[("LambdaArn", arn)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("LambdaArn"), "{err}");
        }
        let err = firehose_lambda("P", &params(&[])).unwrap_err().to_string();
        assert!(
            err.contains("LambdaArn") && err.contains("required"),
            "{err}"
        );
    }
}
