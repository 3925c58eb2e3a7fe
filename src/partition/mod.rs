//! S3 key prefixes: Firehose's `!{namespace:value}` expressions, parsed once at
//! config time and evaluated for every object.
//!
//! Neighbours: `config` calls [`resolve`] at startup (and for `sluice validate`),
//! which parses `Prefix` / `ErrorOutputPrefix` and applies Firehose's rules
//! between them; `buffer` calls [`Prefix::evaluate`] when an output object is
//! opened, with the arrival time of the object's oldest record. Everything that
//! can be checked without a record (syntax, pattern letters, the pair rules) is
//! checked at parse time so a bad config fails before the daemon starts.
//!
//! Timestamp patterns are a hand-written subset of Java's `DateTimeFormatter`
//! (`y M d H h m s S a`, quoted literals), tokenised once at parse time.
//!
//! # Keys stay below the destination
//!
//! An evaluated prefix is the start of an object key, and the local sink joins
//! keys to its output directory, so a prefix must never name a path outside it
//! or inside sluice's own staging area: no leading `/`, no `.` or `..` path
//! segment, no `\` (a separator to Windows tools and some S3 clients), no NUL,
//! and not `.sluice-staging/` first ([`escape_reason`]). The rule is applied
//! twice: at config time on a sample evaluation (exact for every expression
//! but partition keys, since timestamps, random strings and error output types
//! never produce `.`, `/` or `\`), and at every [`Prefix::evaluate`], because
//! partition keys come from record data. The sinks check keys once more.

use std::fmt::{self, Write as _};

use crate::error::{Classify, Fault};
use crate::java_pattern::{self, Piece};
use crate::sink::local::STAGING_DIR;

/// Longest `Prefix` / `ErrorOutputPrefix` as written (Firehose service model).
pub const MAX_TEMPLATE_CHARS: usize = 1024;
/// Longest prefix after evaluation (Firehose semantic rule).
pub const MAX_EVALUATED_CHARS: usize = 512;
/// Appended by Firehose to a prefix that has no `timestamp` expression.
const IMPLICIT_TIMESTAMP: &str = "!{timestamp:yyyy/MM/dd/HH/}";
const ERROR_OUTPUT_TYPE: &str = "!{firehose:error-output-type}";
/// Length of `!{firehose:random-string}`: the start of a UUID v4 (`046b6c7f-0b`).
const RANDOM_STRING_CHARS: usize = 11;

/// Which prefix a string is, for Firehose's rules (`error-output-type` is only
/// allowed in the error output prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixKind {
    /// `Prefix`.
    Output,
    /// `ErrorOutputPrefix`.
    ErrorOutput,
}

impl fmt::Display for PrefixKind {
    /// The Firehose option name, so messages point at what the user wrote.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrefixKind::Output => "Prefix",
            PrefixKind::ErrorOutput => "ErrorOutputPrefix",
        })
    }
}

/// Where a dynamic partition key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `!{partitionKeyFromQuery:key}`: the jq `MetadataExtractionQuery`.
    Query,
    /// `!{partitionKeyFromLambda:key}`: partition keys returned by a transform.
    Lambda,
}

impl KeySource {
    /// The expression namespace, as written in prefixes.
    pub fn namespace(self) -> &'static str {
        match self {
            KeySource::Query => "partitionKeyFromQuery",
            KeySource::Lambda => "partitionKeyFromLambda",
        }
    }
}

/// A parsed, validated prefix template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    raw: String,
    /// What the configuration said, before Firehose's implicit additions
    /// (empty when it said nothing), for `DescribeDeliveryStream`.
    given: String,
    kind: PrefixKind,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Timestamp(Vec<TimeToken>),
    RandomString,
    ErrorOutputType,
    PartitionKey(KeySource, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TimeToken {
    Literal(String),
    /// `width` is the number of pattern letters: minimum digits, or fraction digits for `S`.
    Field {
        field: Field,
        width: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Year,
    YearOfCentury,
    Month,
    Day,
    Hour,
    Hour12,
    Minute,
    Second,
    Fraction,
    AmPm,
}

/// What a prefix is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct PrefixContext<'a> {
    /// Arrival time of the oldest record of the object, in the configured zone.
    pub timestamp: &'a jiff::Zoned,
    /// `processing-failed`, `format-conversion-failed`, ... for error outputs.
    pub error_output_type: Option<&'a str>,
    /// Dynamic partition keys of the object's records; `None` when dynamic
    /// partitioning is off.
    pub partition_keys: Option<PartitionKeys<'a>>,
}

/// A record's dynamic partition keys, by where they came from: the two
/// namespaces are separate, so a transform's key `customer` and the query's
/// `customer` are different keys, as they are different expressions.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionKeys<'a> {
    /// From the jq `MetadataExtractionQuery`, for `partitionKeyFromQuery`.
    pub query: &'a [(String, String)],
    /// From transforms' answers, for `partitionKeyFromLambda`.
    pub lambda: &'a [(String, String)],
}

impl<'a> PartitionKeys<'a> {
    /// The value of `key` from `source`.
    pub fn get(&self, source: KeySource, key: &str) -> Option<&'a str> {
        let keys = match source {
            KeySource::Query => self.query,
            KeySource::Lambda => self.lambda,
        };
        keys.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A prefix that cannot be parsed or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum PrefixError {
    /// Syntax or rule violation, found at config time.
    #[error("{kind} is invalid: {reason}")]
    Invalid {
        /// Which option is wrong.
        kind: PrefixKind,
        /// Which rule it breaks.
        reason: String,
    },
    /// A record lacks a partition key the prefix uses.
    #[error("{kind} uses !{{{namespace}:{key}}} but the record has no partition key `{key}`")]
    MissingPartitionKey {
        /// Which prefix was evaluated.
        kind: PrefixKind,
        /// `partitionKeyFromQuery` or `partitionKeyFromLambda`.
        namespace: &'static str,
        /// The missing key.
        key: String,
    },
    /// The evaluated prefix is longer than Firehose allows.
    #[error("{kind} evaluates to {chars} characters, more than the {MAX_EVALUATED_CHARS} allowed")]
    TooLong {
        /// Which prefix was evaluated.
        kind: PrefixKind,
        /// Length of the evaluated prefix.
        chars: usize,
    },
    /// The evaluated prefix would put objects outside the destination (or in
    /// sluice's staging area), e.g. a partition key evaluated to `..`.
    #[error(
        "{kind} evaluates to {prefix:?}, which {reason}; object keys must stay below the destination"
    )]
    Escapes {
        /// Which prefix was evaluated.
        kind: PrefixKind,
        /// The evaluated prefix.
        prefix: String,
        /// Which rule it breaks ([`escape_reason`]).
        reason: &'static str,
    },
    /// `!{firehose:error-output-type}` evaluated without an error output type.
    #[error(
        "ErrorOutputPrefix uses !{{firehose:error-output-type}} but no error output type was given"
    )]
    NoErrorOutputType,
}

impl Classify for PrefixError {
    fn is_retriable(&self) -> bool {
        false
    }
    fn fault(&self) -> Fault {
        match self {
            PrefixError::Invalid { .. } => Fault::Config,
            // Record-dependent: the record goes to the error output, like Firehose.
            PrefixError::MissingPartitionKey { .. }
            | PrefixError::TooLong { .. }
            | PrefixError::Escapes { .. } => Fault::Data,
            // Callers always know whether they are writing an error output.
            PrefixError::NoErrorOutputType => Fault::Bug,
        }
    }
}

impl Prefix {
    /// The template as written (after Firehose's implicit additions).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The template as the configuration gave it (empty when it gave none).
    pub fn given(&self) -> &str {
        &self.given
    }

    /// Whether this is the output or the error output prefix.
    pub fn kind(&self) -> PrefixKind {
        self.kind
    }

    /// The `(namespace, key)` of every `partitionKeyFrom*` expression, in order.
    pub fn partition_keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.key_references()
            .map(|(source, key)| (source.namespace(), key))
    }

    /// The `(source, key)` of every `partitionKeyFrom*` expression, in order.
    pub fn key_references(&self) -> impl Iterator<Item = (KeySource, &str)> {
        self.segments.iter().filter_map(|s| match s {
            Segment::PartitionKey(source, key) => Some((*source, key.as_str())),
            _ => None,
        })
    }

    /// Which partition a record with these keys belongs to: the values of
    /// the referenced keys, in order. Records with the same values share an
    /// object; the object's key is evaluated once, when it opens, with the
    /// arrival time of its oldest record (Firehose's timestamp rule).
    ///
    /// # Errors
    /// [`PrefixError::MissingPartitionKey`] when the record lacks a key the
    /// prefix uses.
    pub fn partition_of(&self, keys: PartitionKeys<'_>) -> Result<Vec<String>, PrefixError> {
        self.key_references()
            .map(|(source, key)| {
                keys.get(source, key).map(str::to_owned).ok_or_else(|| {
                    PrefixError::MissingPartitionKey {
                        kind: self.kind,
                        namespace: source.namespace(),
                        key: key.to_owned(),
                    }
                })
            })
            .collect()
    }

    /// What the prefix's `timestamp` expressions make of `t`, and nothing else: with
    /// event-time partitioning, records whose times give the same text share an
    /// object, so this is part of a partition's identity.
    pub fn time_bucket(&self, t: &jiff::Zoned) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            if let Segment::Timestamp(tokens) = segment {
                format_time(tokens, t, &mut out);
                // A separator no pattern prints, so `yyyy` + `MM` never equals a
                // single `yyyyMM`-like run of another template.
                out.push('\u{1}');
            }
        }
        out
    }

    /// Evaluates the template. All `timestamp` expressions use the same instant
    /// (`ctx.timestamp`); each `random-string` is drawn anew.
    ///
    /// # Errors
    /// [`PrefixError`] when a needed value is missing, the result is longer
    /// than [`MAX_EVALUATED_CHARS`], or it would leave the destination
    /// ([`escape_reason`]).
    pub fn evaluate(&self, ctx: &PrefixContext<'_>) -> Result<String, PrefixError> {
        let out = self.evaluate_unchecked(ctx)?;
        let chars = out.chars().count();
        if chars > MAX_EVALUATED_CHARS {
            return Err(PrefixError::TooLong {
                kind: self.kind,
                chars,
            });
        }
        if let Some(reason) = escape_reason(&out) {
            return Err(PrefixError::Escapes {
                kind: self.kind,
                prefix: out,
                reason,
            });
        }
        Ok(out)
    }

    /// The evaluated text, before the length and path rules.
    fn evaluate_unchecked(&self, ctx: &PrefixContext<'_>) -> Result<String, PrefixError> {
        let mut out = String::with_capacity(self.raw.len());
        for segment in &self.segments {
            match segment {
                Segment::Literal(s) => out.push_str(s),
                Segment::Timestamp(tokens) => format_time(tokens, ctx.timestamp, &mut out),
                Segment::RandomString => {
                    let mut buf = uuid::Uuid::encode_buffer();
                    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
                    out.extend(id.chars().take(RANDOM_STRING_CHARS));
                }
                Segment::ErrorOutputType => {
                    out.push_str(
                        ctx.error_output_type
                            .ok_or(PrefixError::NoErrorOutputType)?,
                    );
                }
                Segment::PartitionKey(source, key) => {
                    let value = ctx
                        .partition_keys
                        .and_then(|keys| keys.get(*source, key))
                        .ok_or_else(|| PrefixError::MissingPartitionKey {
                            kind: self.kind,
                            namespace: source.namespace(),
                            key: key.clone(),
                        })?;
                    out.push_str(value);
                }
            }
        }
        Ok(out)
    }

    /// Config-time path rule: evaluates the template once with sample values
    /// and refuses it if the result breaks [`escape_reason`]. Only partition
    /// keys can change where `/`, `.` and `\` fall (they get a plain sample
    /// value here and are checked again at every evaluation).
    fn check_stays_below_destination(&self) -> Result<(), PrefixError> {
        let sample_time = jiff::Timestamp::UNIX_EPOCH.to_zoned(jiff::tz::TimeZone::UTC);
        let sample_keys: Vec<(String, String)> = self
            .partition_keys()
            .map(|(_, key)| (key.to_owned(), "key".to_owned()))
            .collect();
        let evaluated = self.evaluate_unchecked(&PrefixContext {
            timestamp: &sample_time,
            error_output_type: Some("processing-failed"),
            partition_keys: Some(PartitionKeys {
                query: &sample_keys,
                lambda: &sample_keys,
            }),
        })?;
        match escape_reason(&evaluated) {
            None => Ok(()),
            Some(reason) => Err(invalid(
                self.kind,
                format!(
                    "it evaluates to e.g. {evaluated:?}, which {reason}: object keys must stay \
                     below the destination, so a prefix must not start with `/` or `{STAGING_DIR}/` \
                     and must not contain `\\`, NUL, or a `.` or `..` path segment"
                ),
            )),
        }
    }

    fn has_expressions(&self) -> bool {
        self.segments
            .iter()
            .any(|s| !matches!(s, Segment::Literal(_)))
    }

    /// Appends, merging literals so evaluation walks as few segments as possible.
    fn push(&mut self, segment: Segment) {
        match (self.segments.last_mut(), segment) {
            (_, Segment::Literal(s)) if s.is_empty() => {}
            (Some(Segment::Literal(last)), Segment::Literal(s)) => last.push_str(&s),
            (_, segment) => self.segments.push(segment),
        }
    }

    /// Firehose's rule: no `timestamp` expression means `yyyy/MM/dd/HH/` is appended.
    fn add_implicit_timestamp(&mut self) -> Result<(), PrefixError> {
        if self
            .segments
            .iter()
            .any(|s| matches!(s, Segment::Timestamp(_)))
        {
            return Ok(());
        }
        let tokens =
            parse_pattern("yyyy/MM/dd/HH/").map_err(|reason| invalid(self.kind, reason))?;
        self.raw.push_str(IMPLICIT_TIMESTAMP);
        self.push(Segment::Timestamp(tokens));
        Ok(())
    }

    /// A lower bound of the evaluated length, to refuse at config time a prefix
    /// that can never fit in [`MAX_EVALUATED_CHARS`].
    fn min_len(&self) -> usize {
        let token_len = |t: &TimeToken| match t {
            TimeToken::Literal(s) => s.chars().count(),
            TimeToken::Field {
                field: Field::AmPm, ..
            } => 2,
            TimeToken::Field { width, .. } => usize::from(*width),
        };
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(s) => s.chars().count(),
                Segment::Timestamp(tokens) => tokens.iter().map(token_len).sum(),
                Segment::RandomString => RANDOM_STRING_CHARS,
                Segment::ErrorOutputType | Segment::PartitionKey(..) => 0,
            })
            .sum()
    }
}

/// Why an evaluated prefix (or a whole key) would leave the destination
/// directory or reach into sluice's staging area, or `None` when it stays
/// below the destination. Segments are split at `/`; the last, partial
/// segment counts too (a prefix `a/..` is refused even though the object name
/// would follow it), which keeps the rule simple to state.
pub fn escape_reason(path: &str) -> Option<&'static str> {
    if path.starts_with('/') {
        return Some("starts with `/` (an absolute path)");
    }
    if path.contains('\\') {
        return Some("contains `\\` (a path separator to Windows tools and some S3 clients)");
    }
    if path.contains('\0') {
        return Some("contains a NUL character");
    }
    let mut segments = path.split('/');
    if segments.clone().next() == Some(STAGING_DIR) {
        return Some("starts with the local sink's staging directory `.sluice-staging`");
    }
    segments.find_map(|segment| match segment {
        ".." => Some("has a `..` path segment (the parent directory)"),
        "." => Some("has a `.` path segment"),
        _ => None,
    })
}

fn invalid(kind: PrefixKind, reason: impl Into<String>) -> PrefixError {
    PrefixError::Invalid {
        kind,
        reason: reason.into(),
    }
}

/// Parses one prefix as written, without Firehose's implicit additions or the
/// rules between `Prefix` and `ErrorOutputPrefix` (that is [`resolve`]).
/// Accepts `partitionKeyFrom*` expressions so dynamic partitioning can use it.
///
/// # Errors
/// [`PrefixError::Invalid`] naming the prefix and the broken rule.
pub fn parse(s: &str, kind: PrefixKind) -> Result<Prefix, PrefixError> {
    let len = s.chars().count();
    if len > MAX_TEMPLATE_CHARS {
        return Err(invalid(
            kind,
            format!("it is {len} characters long, more than the {MAX_TEMPLATE_CHARS} allowed"),
        ));
    }
    let mut prefix = Prefix {
        raw: s.to_owned(),
        given: s.to_owned(),
        kind,
        segments: Vec::new(),
    };
    let mut rest = s;
    while let Some((literal, after)) = rest.split_once("!{") {
        prefix.push(Segment::Literal(literal.to_owned()));
        let Some((body, after)) = after.split_once('}') else {
            return Err(invalid(
                kind,
                format!("`!{{` is not closed by `}}` in {s:?}"),
            ));
        };
        let segment = parse_expression(body, kind)
            .map_err(|r| invalid(kind, format!("{r} (in `!{{{body}}}`)")))?;
        prefix.push(segment);
        rest = after;
    }
    prefix.push(Segment::Literal(rest.to_owned()));
    Ok(prefix)
}

fn parse_expression(body: &str, kind: PrefixKind) -> Result<Segment, String> {
    if body.contains("!{") {
        return Err("`!{` may only appear as an expression opener".into());
    }
    let Some((namespace, value)) = body.split_once(':') else {
        return Err("an expression must be `!{namespace:value}`".into());
    };
    match (namespace, value) {
        ("timestamp", "") => Err("the timestamp pattern is empty".into()),
        ("timestamp", pattern) => parse_pattern(pattern).map(Segment::Timestamp),
        ("firehose", "random-string") => Ok(Segment::RandomString),
        ("firehose", "error-output-type") if kind == PrefixKind::ErrorOutput => {
            Ok(Segment::ErrorOutputType)
        }
        ("firehose", "error-output-type") => {
            Err("`!{firehose:error-output-type}` is only allowed in ErrorOutputPrefix".into())
        }
        ("firehose", other) => Err(format!(
            "unknown firehose value `{other}`; expected random-string or error-output-type"
        )),
        ("partitionKeyFromQuery" | "partitionKeyFromLambda", "") => {
            Err("the partition key name is empty".into())
        }
        ("partitionKeyFromQuery", key) => {
            Ok(Segment::PartitionKey(KeySource::Query, key.to_owned()))
        }
        ("partitionKeyFromLambda", key) => {
            Ok(Segment::PartitionKey(KeySource::Lambda, key.to_owned()))
        }
        (other, _) => Err(format!(
            "unknown namespace `{other}`; expected timestamp, firehose, partitionKeyFromQuery or partitionKeyFromLambda"
        )),
    }
}

/// Tokenises a Java `DateTimeFormatter` pattern (the supported subset).
fn parse_pattern(pattern: &str) -> Result<Vec<TimeToken>, String> {
    let pieces = java_pattern::pieces(pattern)
        .map_err(|e| format!("timestamp pattern {pattern:?} has an {e}"))?;
    let mut tokens = Vec::new();
    let mut literal = String::new();
    for piece in pieces {
        match piece {
            Piece::Quoted(text) => literal.push_str(&text),
            Piece::Letters { letter, count } => {
                let field = letter_field(letter, count)?;
                if !literal.is_empty() {
                    tokens.push(TimeToken::Literal(std::mem::take(&mut literal)));
                }
                // letter_field caps every count at 19, so this never saturates.
                tokens.push(TimeToken::Field {
                    field,
                    width: u8::try_from(count).unwrap_or(u8::MAX),
                });
            }
            // Java reserves these (optional sections, future use); refuse rather than guess.
            Piece::Other(c @ ('[' | ']' | '{' | '}' | '#')) => {
                return Err(format!(
                    "`{c}` is reserved in timestamp patterns; quote it as '{c}'"
                ));
            }
            Piece::Other(c) => literal.push(c),
        }
    }
    if !literal.is_empty() {
        tokens.push(TimeToken::Literal(literal));
    }
    Ok(tokens)
}

fn letter_field(c: char, count: usize) -> Result<Field, String> {
    let (field, max) = match c {
        'y' if count == 2 => (Field::YearOfCentury, 2),
        'y' => (Field::Year, 19),
        'M' if count > 2 => {
            return Err("month names (`MMM`, `MMMM`) are not supported; use `MM`".into());
        }
        'M' => (Field::Month, 2),
        'd' => (Field::Day, 2),
        'H' => (Field::Hour, 2),
        'h' => (Field::Hour12, 2),
        'm' => (Field::Minute, 2),
        's' => (Field::Second, 2),
        'S' => (Field::Fraction, 9),
        'a' => (Field::AmPm, 1),
        other => {
            return Err(format!(
                "unsupported letter `{other}` in timestamp pattern (supported: y M d H h m s S a); quote literal text, e.g. '{other}'"
            ));
        }
    };
    if count > max {
        return Err(format!("too many pattern letters `{c}` (at most {max})"));
    }
    Ok(field)
}

fn format_time(tokens: &[TimeToken], t: &jiff::Zoned, out: &mut String) {
    // Java's `y` is year-of-era: 1 BC is year 1.
    let year = i64::from(t.year());
    let year_of_era = if year <= 0 { 1 - year } else { year };
    for token in tokens {
        let (field, width) = match token {
            TimeToken::Literal(s) => {
                out.push_str(s);
                continue;
            }
            TimeToken::Field { field, width } => (*field, *width),
        };
        let value = match field {
            Field::Year => year_of_era,
            Field::YearOfCentury => year_of_era % 100,
            Field::Month => i64::from(t.month()),
            Field::Day => i64::from(t.day()),
            Field::Hour => i64::from(t.hour()),
            Field::Hour12 => match t.hour() % 12 {
                0 => 12,
                h => i64::from(h),
            },
            Field::Minute => i64::from(t.minute()),
            Field::Second => i64::from(t.second()),
            // Truncated, as Java: `SSS` of .123456789 is 123.
            Field::Fraction => {
                i64::from(t.subsec_nanosecond())
                    / 10_i64.pow(9_u32.saturating_sub(u32::from(width)))
            }
            Field::AmPm => {
                out.push_str(if t.hour() < 12 { "AM" } else { "PM" });
                continue;
            }
        };
        // Writing to a String cannot fail.
        let _ = write!(out, "{value:0width$}", width = usize::from(width));
    }
}

/// Applies Firehose's rules to a `Prefix` / `ErrorOutputPrefix` pair and
/// returns `(output prefix, error output prefix)`, implicit additions included.
///
/// An empty `ErrorOutputPrefix` counts as unset, as the console sends a blank
/// field; otherwise error objects would land among delivered ones.
///
/// With `dynamic` (dynamic partitioning enabled), `Prefix` must reference at
/// least one partition key (or, with `event_time`, may partition by its
/// timestamps alone) and `ErrorOutputPrefix` must be set, as in Firehose; without it, partition keys are refused (nothing would produce
/// them). `ErrorOutputPrefix` never takes partition keys: a record that
/// failed may have none.
///
/// # Errors
/// [`PrefixError::Invalid`] naming the prefix and the broken rule.
pub fn resolve(
    prefix: Option<&str>,
    error_output_prefix: Option<&str>,
    dynamic: bool,
    event_time: bool,
) -> Result<(Prefix, Prefix), PrefixError> {
    let mut output = parse(prefix.unwrap_or(""), PrefixKind::Output)?;
    match (dynamic, output.partition_keys().next().is_some()) {
        (false, true) => {
            return Err(invalid(
                PrefixKind::Output,
                "partitionKeyFromQuery/partitionKeyFromLambda need dynamic partitioning enabled (DynamicPartitioningConfiguration / [destination.dynamic_partitioning])",
            ));
        }
        (true, false) if !event_time => {
            return Err(invalid(
                PrefixKind::Output,
                "dynamic partitioning is enabled, so it must use at least one !{partitionKeyFromQuery:KEY} or !{partitionKeyFromLambda:KEY} (or partition by event time: [destination.dynamic_partitioning.event_time])",
            ));
        }
        _ => {}
    }
    if dynamic && error_output_prefix.is_none_or(str::is_empty) {
        return Err(invalid(
            PrefixKind::ErrorOutput,
            "it must be set when dynamic partitioning is enabled",
        ));
    }
    let mut error = match error_output_prefix.filter(|s| !s.is_empty()) {
        Some(s) => {
            let error = parse(s, PrefixKind::ErrorOutput)?;
            refuse_partition_keys(&error)?;
            if error.has_expressions() && !error.segments.contains(&Segment::ErrorOutputType) {
                return Err(invalid(
                    PrefixKind::ErrorOutput,
                    format!(
                        "{s:?} contains expressions, so it must contain at least one {ERROR_OUTPUT_TYPE}"
                    ),
                ));
            }
            error
        }
        None if output.has_expressions() => {
            return Err(invalid(
                PrefixKind::ErrorOutput,
                "it must be set because Prefix contains expressions (`!{...}`)",
            ));
        }
        None => {
            // Built from segments, not re-parsed, so the 1024-character limit
            // applies to what the user wrote only.
            let mut error = Prefix {
                raw: format!("{}{ERROR_OUTPUT_TYPE}/", output.raw),
                given: String::new(),
                kind: PrefixKind::ErrorOutput,
                segments: output.segments.clone(),
            };
            error.push(Segment::ErrorOutputType);
            error.push(Segment::Literal("/".into()));
            error
        }
    };
    for p in [&mut output, &mut error] {
        p.add_implicit_timestamp()?;
        p.check_stays_below_destination()?;
        let min = p.min_len();
        if min > MAX_EVALUATED_CHARS {
            return Err(invalid(
                p.kind,
                format!(
                    "it evaluates to at least {min} characters, more than the {MAX_EVALUATED_CHARS} allowed"
                ),
            ));
        }
    }
    Ok((output, error))
}

/// Applies Firehose's rules to a lone `Prefix`, as the source-record backup
/// destination has (its `ErrorOutputPrefix` is ignored by Firehose): the
/// implicit timestamp is appended and the evaluated length is bounded.
///
/// # Errors
/// [`PrefixError`] naming the broken rule.
pub fn resolve_backup(prefix: Option<&str>) -> Result<Prefix, PrefixError> {
    let mut output = parse(prefix.unwrap_or(""), PrefixKind::Output)?;
    refuse_partition_keys(&output)?;
    output.add_implicit_timestamp()?;
    output.check_stays_below_destination()?;
    let min = output.min_len();
    if min > MAX_EVALUATED_CHARS {
        return Err(invalid(
            output.kind,
            format!(
                "it evaluates to at least {min} characters, more than the {MAX_EVALUATED_CHARS} allowed"
            ),
        ));
    }
    Ok(output)
}

/// Error outputs and backups are not partitioned: their records may have no keys.
fn refuse_partition_keys(p: &Prefix) -> Result<(), PrefixError> {
    match p.partition_keys().next() {
        Some(_) => Err(invalid(
            p.kind,
            "partitionKeyFromQuery/partitionKeyFromLambda are only for Prefix (the delivered records): error outputs and backups are not partitioned",
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn at(instant: &str, tz: TimeZone) -> jiff::Zoned {
        instant.parse::<jiff::Timestamp>().unwrap().to_zoned(tz)
    }

    fn utc() -> jiff::Zoned {
        at("2018-08-27T13:05:09.123456789Z", TimeZone::UTC)
    }

    fn eval_with(
        p: &Prefix,
        t: &jiff::Zoned,
        error_type: Option<&str>,
    ) -> Result<String, PrefixError> {
        p.evaluate(&PrefixContext {
            timestamp: t,
            error_output_type: error_type,
            partition_keys: None,
        })
    }

    fn eval(p: &Prefix) -> String {
        eval_with(p, &utc(), Some("processing-failed")).unwrap()
    }

    fn pattern(p: &str) -> String {
        eval(&parse(&format!("!{{timestamp:{p}}}"), PrefixKind::Output).unwrap())
    }

    fn resolve_static(
        prefix: Option<&str>,
        error: Option<&str>,
    ) -> Result<(Prefix, Prefix), PrefixError> {
        resolve(prefix, error, false, false)
    }

    fn resolve_err(prefix: Option<&str>, error: Option<&str>) -> String {
        resolve_static(prefix, error).unwrap_err().to_string()
    }

    #[test]
    fn default_prefix() {
        let (out, err) = resolve_static(None, None).unwrap();
        assert_eq!(out.as_str(), "!{timestamp:yyyy/MM/dd/HH/}");
        assert_eq!(eval(&out), "2018/08/27/13/");
        assert_eq!(
            err.as_str(),
            "!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH/}"
        );
        assert_eq!(eval(&err), "processing-failed/2018/08/27/13/");
        assert_eq!(resolve_static(Some(""), Some("")).unwrap(), (out, err));
    }

    #[test]
    fn custom_prefix_without_timestamp_gets_implicit_suffix() {
        let (out, err) = resolve_static(Some("myFirehosePrefix/"), None).unwrap();
        assert_eq!(out.as_str(), "myFirehosePrefix/!{timestamp:yyyy/MM/dd/HH/}");
        assert_eq!(eval(&out), "myFirehosePrefix/2018/08/27/13/");
        assert_eq!(
            eval(&err),
            "myFirehosePrefix/processing-failed/2018/08/27/13/"
        );
        // A specified ErrorOutputPrefix without expressions is fine, and gets the suffix too.
        let (_, err) = resolve_static(Some("data/"), Some("errors/")).unwrap();
        assert_eq!(eval(&err), "errors/2018/08/27/13/");
    }

    #[test]
    fn quoted_literals() {
        assert_eq!(pattern("'year='yyyy'/month='MM'/'"), "year=2018/month=08/");
        assert_eq!(pattern("yyyy''MM"), "2018'08");
        assert_eq!(pattern("'it''s 'HH"), "it's 13");
        assert_eq!(pattern("'dd MM'"), "dd MM");
    }

    #[test]
    fn pattern_letters() {
        assert_eq!(
            pattern("yyyy-MM-dd HH:mm:ss.SSS"),
            "2018-08-27 13:05:09.123"
        );
        assert_eq!(pattern("y/yy/yyyyy"), "2018/18/02018");
        assert_eq!(pattern("M/d/H/m/s"), "8/27/13/5/9");
        assert_eq!(pattern("h/hh a"), "1/01 PM");
        assert_eq!(pattern("S/SSSSSSSSS"), "1/123456789");
        let midnight = at("2018-01-02T00:00:00Z", TimeZone::UTC);
        let p = parse("!{timestamp:M/d hh a}", PrefixKind::Output).unwrap();
        assert_eq!(eval_with(&p, &midnight, None).unwrap(), "1/2 12 AM");
    }

    #[test]
    fn all_timestamps_use_the_same_instant() {
        let (out, _) = resolve_static(
            Some("!{timestamp:yyyy}/x/!{timestamp:HH:mm:ss.SSSSSSSSS}/"),
            Some("e/!{firehose:error-output-type}"),
        )
        .unwrap();
        // Has a timestamp expression: no implicit suffix.
        assert_eq!(
            out.as_str(),
            "!{timestamp:yyyy}/x/!{timestamp:HH:mm:ss.SSSSSSSSS}/"
        );
        assert_eq!(eval(&out), "2018/x/13:05:09.123456789/");
    }

    #[test]
    fn time_zone() {
        let tokyo =
            TimeZone::get("Asia/Tokyo").unwrap_or_else(|_| TimeZone::fixed(jiff::tz::offset(9)));
        let (out, _) = resolve_static(None, None).unwrap();
        let instant = "2018-08-27T20:30:00Z";
        assert_eq!(
            eval_with(&out, &at(instant, TimeZone::UTC), None).unwrap(),
            "2018/08/27/20/"
        );
        assert_eq!(
            eval_with(&out, &at(instant, tokyo), None).unwrap(),
            "2018/08/28/05/"
        );
    }

    #[test]
    fn random_string() {
        let (out, _) = resolve_static(
            Some("!{firehose:random-string}/!{firehose:random-string}/"),
            Some("e/!{firehose:error-output-type}/"),
        )
        .unwrap();
        let first = eval(&out);
        let parts: Vec<&str> = first.split('/').collect();
        assert_eq!(parts.len(), 7, "{first}"); // two random strings, then yyyy/MM/dd/HH/
        for r in &parts[..2] {
            assert_eq!(r.len(), 11, "{r}");
            assert_eq!(r.as_bytes()[8], b'-', "{r}");
            assert!(
                r.chars()
                    .filter(|&c| c != '-')
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{r}"
            );
        }
        assert_ne!(parts[0], parts[1]);
        assert_eq!(&parts[2..], ["2018", "08", "27", "13", ""]);
        assert_ne!(eval(&out), first);
    }

    #[test]
    fn error_output_type() {
        let (_, err) = resolve_static(
            Some("data/!{timestamp:yyyy}/"),
            Some("errors/!{firehose:error-output-type}/!{timestamp:yyyy}/"),
        )
        .unwrap();
        assert_eq!(
            eval_with(&err, &utc(), Some("format-conversion-failed")).unwrap(),
            "errors/format-conversion-failed/2018/"
        );
        let missing = eval_with(&err, &utc(), None).unwrap_err();
        assert!(matches!(missing, PrefixError::NoErrorOutputType));
        assert_eq!(missing.fault(), Fault::Bug);
    }

    #[test]
    fn syntax_errors_name_prefix_and_rule() {
        assert_eq!(
            resolve_err(Some("a/!{timestamp:yyyy"), None),
            "Prefix is invalid: `!{` is not closed by `}` in \"a/!{timestamp:yyyy\""
        );
        assert_eq!(
            resolve_err(Some("!{foo:bar}"), None),
            "Prefix is invalid: unknown namespace `foo`; expected timestamp, firehose, partitionKeyFromQuery or partitionKeyFromLambda (in `!{foo:bar}`)"
        );
        assert_eq!(
            resolve_err(Some("x/"), Some("!{firehose:uuid}")),
            "ErrorOutputPrefix is invalid: unknown firehose value `uuid`; expected random-string or error-output-type (in `!{firehose:uuid}`)"
        );
        assert_eq!(
            resolve_err(Some("!{timestamp}"), None),
            "Prefix is invalid: an expression must be `!{namespace:value}` (in `!{timestamp}`)"
        );
        assert_eq!(
            resolve_err(Some("a!{b!{timestamp:yyyy}"), None),
            "Prefix is invalid: `!{` may only appear as an expression opener (in `!{b!{timestamp:yyyy}`)"
        );
        assert_eq!(
            resolve_err(Some("!{timestamp:}"), None),
            "Prefix is invalid: the timestamp pattern is empty (in `!{timestamp:}`)"
        );
        let err = resolve_static(Some("!{timestamp:}"), None).unwrap_err();
        assert_eq!(err.fault(), Fault::Config);
    }

    #[test]
    fn pair_rules() {
        assert_eq!(
            resolve_err(Some("x/!{firehose:error-output-type}/"), None),
            "Prefix is invalid: `!{firehose:error-output-type}` is only allowed in ErrorOutputPrefix (in `!{firehose:error-output-type}`)"
        );
        assert_eq!(
            resolve_err(Some("x/!{timestamp:yyyy}/"), None),
            "ErrorOutputPrefix is invalid: it must be set because Prefix contains expressions (`!{...}`)"
        );
        assert_eq!(
            resolve_err(Some("x/"), Some("err/!{timestamp:yyyy}/")),
            "ErrorOutputPrefix is invalid: \"err/!{timestamp:yyyy}/\" contains expressions, so it must contain at least one !{firehose:error-output-type}"
        );
    }

    #[test]
    fn length_limits_as_written() {
        let long = "a".repeat(1025);
        assert_eq!(
            resolve_err(Some(&long), None),
            "Prefix is invalid: it is 1025 characters long, more than the 1024 allowed"
        );
        assert_eq!(
            resolve_err(Some("x/"), Some(&long)),
            "ErrorOutputPrefix is invalid: it is 1025 characters long, more than the 1024 allowed"
        );
        // Within 1024 as written, but can never evaluate to 512 or fewer.
        assert_eq!(
            resolve_err(Some(&"a".repeat(600)), None),
            "Prefix is invalid: it evaluates to at least 614 characters, more than the 512 allowed"
        );
    }

    #[test]
    fn evaluated_limit_512() {
        // `y` can be as short as one digit, so resolve accepts; 2018 makes it 3 longer.
        let with_year = |n: usize| {
            let prefix = format!("{}!{{timestamp:y}}", "a".repeat(n));
            resolve_static(Some(&prefix), Some("e/!{firehose:error-output-type}/"))
                .unwrap()
                .0
        };
        assert_eq!(eval(&with_year(508)), format!("{}2018", "a".repeat(508)));
        let over = with_year(509);
        let err = eval_with(&over, &utc(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Prefix evaluates to 513 characters, more than the 512 allowed"
        );
        assert_eq!(err.fault(), Fault::Data);
    }

    #[test]
    fn pattern_letter_errors() {
        assert_eq!(
            resolve_err(Some("!{timestamp:yyyyQ}"), None),
            "Prefix is invalid: unsupported letter `Q` in timestamp pattern (supported: y M d H h m s S a); quote literal text, e.g. 'Q' (in `!{timestamp:yyyyQ}`)"
        );
        assert_eq!(
            resolve_err(Some("!{timestamp:MMM}"), None),
            "Prefix is invalid: month names (`MMM`, `MMMM`) are not supported; use `MM` (in `!{timestamp:MMM}`)"
        );
        assert_eq!(
            resolve_err(Some("!{timestamp:ddd}"), None),
            "Prefix is invalid: too many pattern letters `d` (at most 2) (in `!{timestamp:ddd}`)"
        );
        assert_eq!(
            resolve_err(Some("!{timestamp:'year=yyyy}"), None),
            "Prefix is invalid: timestamp pattern \"'year=yyyy\" has an unclosed quote (in `!{timestamp:'year=yyyy}`)"
        );
        assert_eq!(
            resolve_err(Some("!{timestamp:yyyy[MM]}"), None),
            "Prefix is invalid: `[` is reserved in timestamp patterns; quote it as '[' (in `!{timestamp:yyyy[MM]}`)"
        );
    }

    #[test]
    fn partition_keys_evaluate_from_their_namespace_and_need_dynamic_partitioning() {
        let p = parse(
            "c=!{partitionKeyFromQuery:customer}/d=!{partitionKeyFromLambda:device}/",
            PrefixKind::Output,
        )
        .unwrap();
        let keys: Vec<_> = p.partition_keys().collect();
        assert_eq!(
            keys,
            [
                ("partitionKeyFromQuery", "customer"),
                ("partitionKeyFromLambda", "device")
            ]
        );

        let query = vec![("customer".to_owned(), "42".to_owned())];
        let mut lambda = vec![("customer".to_owned(), "not this one".to_owned())];
        let t = utc();
        let ctx = |lambda: &[(String, String)]| {
            p.evaluate(&PrefixContext {
                timestamp: &t,
                error_output_type: None,
                partition_keys: Some(PartitionKeys {
                    query: &query,
                    lambda,
                }),
            })
        };
        let err = ctx(&lambda).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Prefix uses !{partitionKeyFromLambda:device} but the record has no partition key `device`"
        );
        assert_eq!(err.fault(), Fault::Data);
        lambda.push(("device".to_owned(), "phone".to_owned()));
        // Each expression reads its own namespace.
        assert_eq!(ctx(&lambda).unwrap(), "c=42/d=phone/");
        let keys = PartitionKeys {
            query: &query,
            lambda: &lambda,
        };
        assert_eq!(p.partition_of(keys).unwrap(), ["42", "phone"]);

        // Keys need dynamic partitioning, and dynamic partitioning needs keys
        // and an error output prefix; error outputs take no keys.
        assert!(
            resolve_err(Some(p.as_str()), Some("e/!{firehose:error-output-type}/"))
                .contains("need dynamic partitioning enabled")
        );
        resolve(
            Some(p.as_str()),
            Some("e/!{firehose:error-output-type}/"),
            true,
            false,
        )
        .unwrap();
        let err = resolve(
            Some("x/"),
            Some("e/!{firehose:error-output-type}/"),
            true,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("at least one !{partitionKeyFromQuery:KEY}"),
            "{err}"
        );
        // Event time partitions by the timestamps alone.
        resolve(
            Some("x/"),
            Some("e/!{firehose:error-output-type}/"),
            true,
            true,
        )
        .unwrap();
        let err = resolve(Some(p.as_str()), None, true, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("ErrorOutputPrefix is invalid: it must be set"),
            "{err}"
        );
        let err = resolve(
            Some(p.as_str()),
            Some("e/!{firehose:error-output-type}/!{partitionKeyFromLambda:k}/"),
            true,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("error outputs and backups are not partitioned"),
            "{err}"
        );
        assert_eq!(
            resolve_err(Some("!{partitionKeyFromQuery:}"), None),
            "Prefix is invalid: the partition key name is empty (in `!{partitionKeyFromQuery:}`)"
        );
    }

    #[test]
    fn prefixes_that_leave_the_destination_are_refused_at_config_time() {
        let rule = "object keys must stay below the destination";
        for (prefix, reason) in [
            ("../", "has a `..` path segment"),
            ("a/../../x/", "has a `..` path segment"),
            ("/etc/x/", "starts with `/`"),
            ("./a/", "has a `.` path segment"),
            ("a/./b/", "has a `.` path segment"),
            ("a\\..\\b/", "contains `\\`"),
            (".sluice-staging/s/", "staging directory"),
            // A quoted literal inside a timestamp is text too.
            ("a/!{timestamp:'..'}/", "has a `..` path segment"),
            ("a/!{timestamp:'.'}./", "has a `..` path segment"),
        ] {
            let err = resolve_err(Some(prefix), Some("e/!{firehose:error-output-type}/"));
            assert!(
                err.starts_with("Prefix is invalid: it evaluates to e.g."),
                "{prefix}: {err}"
            );
            assert!(
                err.contains(reason) && err.contains(rule),
                "{prefix}: {err}"
            );
            let err = resolve_err(Some("ok/"), Some(prefix));
            assert!(
                err.starts_with("ErrorOutputPrefix is invalid:"),
                "{prefix}: {err}"
            );
            assert!(resolve_backup(Some(prefix)).is_err(), "backup {prefix}");
        }
        // The default error output prefix derives from Prefix and is checked too.
        assert!(resolve_err(Some("/abs/"), None).starts_with("Prefix is invalid"));
        // Dots inside names, `..` glued to the implicit timestamp (`a/..2018/`),
        // empty segments: fine, the rule is on what the prefix evaluates to.
        for ok in [
            "a.b/",
            "..a/",
            "a/...b/",
            "v1.2/x..y/",
            "..",
            "a/..",
            "a//b/",
            ".hidden/",
        ] {
            resolve_static(Some(ok), None).unwrap_or_else(|e| panic!("{ok}: {e}"));
            resolve_backup(Some(ok)).unwrap_or_else(|e| panic!("backup {ok}: {e}"));
        }
        let err = resolve_static(Some("../"), None).unwrap_err();
        assert_eq!(err.fault(), Fault::Config);
    }

    #[test]
    fn evaluated_prefixes_that_leave_the_destination_are_data_errors() {
        // Partition keys come from records; `parse` accepts them (resolve
        // refuses dynamic partitioning until it is wired), so evaluate directly.
        let p = parse(
            "c=!{partitionKeyFromQuery:c}/!{partitionKeyFromQuery:d}/",
            PrefixKind::Output,
        )
        .unwrap();
        p.check_stays_below_destination().unwrap();
        let t = utc();
        let eval_keys = |c: &str, d: &str| {
            let keys = [
                ("c".to_owned(), c.to_owned()),
                ("d".to_owned(), d.to_owned()),
            ];
            p.evaluate(&PrefixContext {
                timestamp: &t,
                error_output_type: None,
                partition_keys: Some(PartitionKeys {
                    query: &keys,
                    lambda: &[],
                }),
            })
        };
        assert_eq!(eval_keys("1", "2").unwrap(), "c=1/2/");
        for (c, d) in [
            ("1", ".."),
            ("1", "."),
            ("1/..", "x"),
            ("x", "..\\y"),
            ("1", "a/../.."),
        ] {
            let err = eval_keys(c, d).unwrap_err();
            assert!(matches!(err, PrefixError::Escapes { .. }), "{c} {d}: {err}");
            assert_eq!(err.fault(), Fault::Data);
            assert!(!err.is_retriable());
        }
        let err = eval_keys("1", "..").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Prefix evaluates to \"c=1/../\", which has a `..` path segment (the parent directory); object keys must stay below the destination"
        );
        // A key at the start that evaluates to nothing would make the key absolute.
        let lead = parse("!{partitionKeyFromLambda:a}/x/", PrefixKind::Output).unwrap();
        let keys = [("a".to_owned(), String::new())];
        let err = lead
            .evaluate(&PrefixContext {
                timestamp: &t,
                error_output_type: None,
                partition_keys: Some(PartitionKeys {
                    query: &[],
                    lambda: &keys,
                }),
            })
            .unwrap_err();
        assert!(err.to_string().contains("starts with `/`"), "{err}");
    }
}
