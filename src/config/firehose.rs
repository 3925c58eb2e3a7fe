//! Firehose `CreateDeliveryStream` JSON configuration shape.
//!
//! PLACEHOLDER: implemented by the config work item.

use std::path::Path;

use super::{ConfigError, StreamConfig};

/// Parses and validates a Firehose-shaped stream config.
///
/// # Errors
/// [`ConfigError`] naming the option.
pub fn parse(_text: &str, path: &Path, _cwd: &Path) -> Result<StreamConfig, ConfigError> {
    Err(ConfigError::Parse { path: path.to_owned(), message: "not implemented".into() })
}
