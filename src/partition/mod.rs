//! S3 key prefixes: Firehose's `!{namespace:value}` expressions, parsed once at
//! config time and evaluated for every object.
//!
//! Neighbours: `config` parses and validates prefixes into [`Prefix`]; `buffer`
//! evaluates them when an object is opened, with the arrival time of the
//! object's oldest record.
//!
//! PLACEHOLDER: implemented by the prefix work item.

use crate::error::{Classify, Fault};

/// Which prefix a string is, for Firehose's rules (`error-output-type` is only
/// allowed in the error output prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixKind {
    /// `Prefix`.
    Output,
    /// `ErrorOutputPrefix`.
    ErrorOutput,
}

/// A parsed, validated prefix template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    raw: String,
}

/// What a prefix is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct PrefixContext<'a> {
    /// Arrival time of the oldest record of the object, in the configured zone.
    pub timestamp: &'a jiff::Zoned,
    /// `processing-failed`, `format-conversion-failed`, ... for error outputs.
    pub error_output_type: Option<&'a str>,
}

/// A prefix that cannot be parsed or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum PrefixError {
    /// Syntax or rule violation.
    #[error("{0}")]
    Invalid(String),
}

impl Classify for PrefixError {
    fn is_retriable(&self) -> bool {
        false
    }
    fn fault(&self) -> Fault {
        Fault::Config
    }
}

impl Prefix {
    /// The template as written (after Firehose's implicit additions).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Evaluates the template.
    ///
    /// # Errors
    /// [`PrefixError`] when a needed value is missing or the result is too long.
    pub fn evaluate(&self, _ctx: &PrefixContext<'_>) -> Result<String, PrefixError> {
        Ok(self.raw.clone())
    }
}

/// Applies Firehose's rules to a `Prefix` / `ErrorOutputPrefix` pair.
///
/// # Errors
/// [`PrefixError`] naming the broken rule.
pub fn resolve(prefix: Option<&str>, error_output_prefix: Option<&str>) -> Result<(Prefix, Prefix), PrefixError> {
    Ok((
        Prefix { raw: prefix.unwrap_or("").to_owned() },
        Prefix { raw: error_output_prefix.unwrap_or("").to_owned() },
    ))
}
