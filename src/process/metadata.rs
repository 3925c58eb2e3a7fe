//! Firehose's `MetadataExtraction` processor: partition keys from a jq query.
//!
//! A stream with dynamic partitioning and inline parsing configures a
//! `MetadataExtractionQuery`, a jq program that makes one JSON object of each
//! record, such as `{customer_id: .customer_id, year: .ts | strftime("%Y")}`.
//! [`MetadataQuery::compile`] compiles it once per stream (a bad query is a
//! config error); [`MetadataQuery::extract`] runs it on each record.
//!
//! Neighbours: the processor chain ([`crate::process`]) calls `extract` after
//! the transforms, on the data a record will be delivered as; the pairs it
//! returns feed `!{partitionKeyFromQuery:KEY}` in the S3 prefix
//! ([`crate::partition`]), which also checks that values are safe in a key.
//! A record whose keys cannot be extracted fails to the error output with
//! [`FAILED`].
//!
//! # jq 1.6 as Firehose runs it
//!
//! Firehose's `JsonParsingEngine` is `JQ-1.6`. The interpreter here is jaq
//! (jaq-core, jaq-std, jaq-json), which runs the queries users write for it,
//! with these adjustments towards jq 1.6:
//!
//! - Values become key strings as jq 1.6 prints numbers: every number is a
//!   double, printed with the shortest digits that read back the same, in
//!   exponent form past 17 significant places or below 0.0001 (`2024`,
//!   `1700000000.123`, `1e+16`, `1e-05`). Integers beyond 2^53 lose precision
//!   as they do in jq 1.6 (`9007199254740993` gives `9007199254740992`), so
//!   records land in the partitions Firehose would choose. Booleans are
//!   `true` / `false`.
//! - `todate` / `todateiso8601` are jq 1.6's
//!   `strftime("%Y-%m-%dT%H:%M:%SZ")`: a fractional epoch drops its fraction
//!   (jaq alone would print it, and a key would change with it).
//! - `strftime` / `gmtime` (and their local-time forms) accept epochs of the
//!   years -9999 to 9999 only; jaq multiplies an integer epoch by 10^6 in
//!   `i64` and would overflow (a panic in debug builds) on an epoch past 9.2e12.
//! - `fromjson` (and `tonumber`, which uses it) parses with serde_json, like
//!   records, instead of jaq's recursive parser, so a deeply nested JSON
//!   string inside a record cannot exhaust the stack.
//!
//! Left as jaq has them: its grammar is wider (jq 1.6 wants an object value
//! to be a pipe of terms, so `{y: (.ms / 1000 | floor)}` needs the
//! parentheses there and not here); numbers serde_json cannot hold (`1e400`,
//! which jq 1.6 reads as the largest double) fail the record; jq 1.6
//! builtins jaq lacks (but `IN` and `leaf_paths`: `INDEX`, `JOIN`,
//! `tostream`, `fromstream`, `format/1`, `builtins`, ...), and `$ENV`, are
//! compile errors. `input` / `inputs`
//! are not defined: a query sees its one record.
//!
//! # Failures
//!
//! Firehose documents no error code for keys that cannot be extracted; sluice
//! names it [`FAILED`] (`DynamicPartitioning.MetadataExtractionFailed`), for a
//! record that is not one JSON value, a query that fails at run time, and a
//! query that gives no output, more than one, something other than an object,
//! or a value that is null, an array or an object. An empty string is a
//! value; whether it makes a usable prefix is the prefix's business.
//!
//! # Hostile records and hostile queries
//!
//! Records come from anyone who can write to the stream, so every record
//! yields a result or a [`Failure`], never a panic or a stack overflow:
//! serde_json refuses nesting deeper than 128 arrays/objects (jq 1.6's limit
//! is 256, so records nested 129 to 256 deep fail here and pass in
//! Firehose), which also bounds every recursion jaq does over the data
//! (`..`, `tojson`, comparisons, dropping the value). At most two outputs
//! are examined. Messages quote at most [`MAX_MESSAGE_CHARS`] characters of
//! jq's error, which may quote the data. A panic inside the interpreter
//! (a bug in it) is caught and fails the one record.
//!
//! The query is the operator's, and it can do what any program can: jaq runs
//! tail calls in constant stack (`def f: f; f` and `last(repeat(.))` loop
//! forever, as in jq), a non-tail recursion without end (`def f: [f]; f`)
//! exhausts the stack and aborts the process, and `[range(1e10)]` takes all
//! memory. Those are config errors that no record can cause; evaluation has
//! no step budget.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::native::{Fun, bome, v};
use jaq_core::{Compiler, Ctx, Native, Vars, data::JustLut};
use jaq_json::Val;
use serde::Deserialize as _;

use crate::process::Failure;

/// `errorCode` of records whose partition keys cannot be extracted (a sluice
/// name: Firehose documents none).
pub const FAILED: &str = "DynamicPartitioning.MetadataExtractionFailed";

/// Longest quotation of a jq error (or a value) in a failure message.
pub const MAX_MESSAGE_CHARS: usize = 300;

type Data = JustLut<Val>;

/// Definitions compiled after jaq's standard library, shadowing it where jq
/// 1.6 differs (module docs), and jq 1.6 builtins jaq lacks that a key query
/// may well use (`IN`, `leaf_paths`). `_sluice_*` are jaq's natives, renamed.
const PRELUDE: &str = r#"
def strftime($f): _sluice_epoch | _sluice_strftime($f);
def strflocaltime($f): _sluice_epoch | _sluice_strflocaltime($f);
def gmtime: _sluice_epoch | _sluice_gmtime;
def localtime: _sluice_epoch | _sluice_localtime;
def todateiso8601: strftime("%Y-%m-%dT%H:%M:%SZ");
def todate: todateiso8601;
def IN(s): any(s == .; .);
def IN(src; s): any(src == s; .);
def leaf_paths: paths(scalars);
"#;

/// The epochs jiff can convert, in seconds (its `Timestamp` range).
const EPOCHS: std::ops::RangeInclusive<f64> = -377_705_023_201.0..=253_402_207_200.0;

/// Natives the prelude wraps, under their new names.
const RENAMED: [(&str, &str); 4] = [
    ("strftime", "_sluice_strftime"),
    ("strflocaltime", "_sluice_strflocaltime"),
    ("gmtime", "_sluice_gmtime"),
    ("localtime", "_sluice_localtime"),
];

/// A compiled `MetadataExtractionQuery` (a jq program yielding an object).
/// Compiled once per stream; cheap to clone and shared across threads.
#[derive(Clone)]
pub struct MetadataQuery {
    text: Arc<str>,
    filter: Arc<jaq_core::Filter<Data>>,
}

impl fmt::Debug for MetadataQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MetadataQuery").field(&&*self.text).finish()
    }
}

/// Queries compare by their text: that is what configs compare.
impl PartialEq for MetadataQuery {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for MetadataQuery {}

impl MetadataQuery {
    /// Compiles `query`. The error says what is wrong and where, from jaq's
    /// report (``expected the closing delimiter of `{`, found end of query``;
    /// ``undefined filter `strftme/1` at column 11``).
    pub fn compile(query: &str) -> Result<MetadataQuery, String> {
        let prelude = load::parse(PRELUDE, |p| p.defs())
            .ok_or("the built-in jq definitions of sluice do not parse (a bug)")?;
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .chain(prelude);
        let arena = Arena::default();
        let modules = Loader::new(defs)
            .load(
                &arena,
                File {
                    code: query,
                    path: (),
                },
            )
            .map_err(|errors| load_errors(query, errors))?;
        let filter = Compiler::default()
            .with_funs(natives())
            .compile(modules)
            .map_err(|errors| compile_errors(query, errors))?;
        Ok(MetadataQuery {
            text: query.into(),
            filter: Arc::new(filter),
        })
    }

    /// The query text as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Runs the query on one record: `data` must be one JSON value
    /// (whitespace around it allowed), and the query must produce exactly one
    /// object whose values are strings, numbers or booleans. Returns its
    /// (key, value) pairs in the object's order, values as key text (numbers
    /// as jq 1.6 prints them).
    pub fn extract(&self, data: &[u8]) -> Result<Vec<(String, String)>, Failure> {
        let input = parse_json(data).map_err(|e| fail(format!("record is not JSON: {e}")))?;
        // The interpreter is only given data parsed under the depth limit; a
        // panic in it would be its own bug, and fails this record only (the
        // compiled filter is immutable, so nothing is left half-changed).
        catch_unwind(AssertUnwindSafe(|| self.run(input))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(fail(format!("query evaluation panicked: {}", clip(&what))))
        })
    }

    fn run(&self, input: Val) -> Result<Vec<(String, String)>, Failure> {
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
        let mut outputs = self.filter.id.run((ctx, input));
        let first = match outputs.next() {
            None => return Err(fail("query produced no output")),
            Some(Err(exn)) => return Err(fail(exception(exn))),
            Some(Ok(value)) => value,
        };
        // Only whether a second output exists matters; stop there.
        if outputs.next().is_some() {
            return Err(fail("query produced more than one output"));
        }
        let Val::Obj(object) = first else {
            return Err(fail(format!(
                "query produced {}, not an object",
                describe(&first)
            )));
        };
        object
            .iter()
            .map(|(key, value)| {
                let key = match key {
                    Val::TStr(s) | Val::BStr(s) => String::from_utf8_lossy(s).into_owned(),
                    other => {
                        return Err(fail(format!(
                            "query produced an object key that is not a string: {}",
                            clip(&other.to_string())
                        )));
                    }
                };
                let value =
                    key_value(value).map_err(|what| fail(format!("key `{key}` is {what}")))?;
                Ok((key, value))
            })
            .collect()
    }
}

fn fail(message: impl Into<String>) -> Failure {
    Failure::new(FAILED, message)
}

/// jaq's and jaq-json's natives, with the time natives the prelude guards
/// renamed, and `fromjson` replaced by [`fromjson`].
fn natives() -> impl Iterator<Item = Fun<Data>> {
    let renamed = |(name, args, native): Fun<Data>| {
        let name = RENAMED
            .iter()
            .find(|(from, _)| *from == name)
            .map_or(name, |(_, to)| *to);
        (name, args, native)
    };
    jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs().filter(|(name, ..)| *name != "fromjson"))
        .map(renamed)
        .chain([
            ("fromjson", v(0), native(fromjson)),
            ("_sluice_epoch", v(0), native(epoch)),
        ])
}

fn native(run: jaq_core::RunPtr<Data>) -> Native<Data> {
    Native::<Data>::new(run)
}

/// `_sluice_epoch`: a number must be an epoch jiff can convert (the time
/// natives' guard, native because it runs on every `strftime`); anything else
/// passes through for the time native to judge.
fn epoch<'a>(cv: jaq_core::Cv<'a, Data>) -> jaq_core::ValXs<'a, Val> {
    if let Val::Num(_) = cv.1 {
        let x = jaq_std::ValT::as_f64(&cv.1).unwrap_or(f64::NAN);
        if !EPOCHS.contains(&x) {
            let error = format!("epoch {} is outside the years -9999 to 9999", cv.1);
            return bome(Err(jaq_core::Error::str(clip(&error))));
        }
    }
    bome(Ok(cv.1))
}

/// `fromjson` on serde_json: one JSON value, the same depth limit as records.
fn fromjson<'a>(cv: jaq_core::Cv<'a, Data>) -> jaq_core::ValXs<'a, Val> {
    let parsed = match &cv.1 {
        Val::TStr(s) | Val::BStr(s) => parse_json(s).map_err(|e| {
            let quoted = clip_to(&cv.1.to_string(), MAX_MESSAGE_CHARS / 4);
            jaq_core::Error::str(format!("cannot parse {quoted} as JSON: {e}"))
        }),
        other => Err(jaq_core::Error::str(format!(
            "{} cannot be parsed as JSON (not a string)",
            clip_to(&other.to_string(), MAX_MESSAGE_CHARS / 4)
        ))),
    };
    bome(parsed)
}

/// One JSON value with optional whitespace around it. serde_json's recursion
/// limit (128) bounds the depth.
fn parse_json(data: &[u8]) -> Result<Val, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let value = Val::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The text of a key's value, or what it is instead.
fn key_value(value: &Val) -> Result<String, &'static str> {
    match value {
        Val::TStr(s) | Val::BStr(s) => Ok(String::from_utf8_lossy(s).into_owned()),
        Val::Bool(b) => Ok(b.to_string()),
        Val::Num(_) => {
            let x = jaq_std::ValT::as_f64(value).unwrap_or(f64::NAN);
            if x.is_nan() {
                // jq prints NaN as null.
                Err("NaN (null to jq)")
            } else {
                Ok(jq_number(x))
            }
        }
        Val::Null => Err("null"),
        Val::Arr(_) => Err("an array"),
        Val::Obj(_) => Err("an object"),
    }
}

/// A value's jq type, with an article, for messages.
fn describe(value: &Val) -> &'static str {
    match value {
        Val::Null => "null",
        Val::Bool(_) => "a boolean",
        Val::Num(_) => "a number",
        Val::TStr(_) | Val::BStr(_) => "a string",
        Val::Arr(_) => "an array",
        Val::Obj(_) => "an object",
    }
}

/// A number as jq 1.6 prints it (its `jvp_dtoa_fmt`): shortest round-trip
/// digits; exponent form (`1e+16`, `1.5e-05`, two exponent digits at least)
/// when the decimal point would fall more than 15 places past the digits or
/// 4 or more places before them; infinities clamped to the largest double.
fn jq_number(x: f64) -> String {
    let x = x.clamp(-f64::MAX, f64::MAX);
    // The common case, integers below 10^16, print as themselves.
    if x.fract() == 0.0 && x.abs() < 1e16 {
        return if x == 0.0 && x.is_sign_negative() {
            "-0".to_owned()
        } else {
            format!("{}", x as i64)
        };
    }
    // `{:e}` gives the shortest round-trip digits: `1.2345e-7`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let n = digits.len() as i32;
    // Digits are 0.DIGITS x 10^point.
    let point = exponent + 1;
    let mut out = String::with_capacity(digits.len() + 8);
    if x < 0.0 {
        out.push('-');
    }
    if point <= -4 || point > n + 15 {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = point - 1;
        out.push_str(&format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()));
    } else if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(&digits);
    } else if point >= n {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (point - n) as usize));
    } else {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    }
    out
}

/// jq's message for a failed evaluation.
fn exception(exn: jaq_core::Exn<'_, Val>) -> String {
    match exn.get_err() {
        // A string error (`error("..")`, and jaq's own) reads as its text.
        Ok(error) => match error.into_val() {
            Val::TStr(s) | Val::BStr(s) => {
                format!("query failed: {}", clip(&String::from_utf8_lossy(&s)))
            }
            other => format!("query failed: {} (not a string)", clip(&other.to_string())),
        },
        Err(exn) => match exn.get_halt() {
            Ok(code) => format!("query called halt (exit code {code})"),
            Err(_) => "query failed: unexpected control flow out of the query".to_owned(),
        },
    }
}

/// At most [`MAX_MESSAGE_CHARS`] characters of `s`, marked when cut.
fn clip(s: &str) -> String {
    clip_to(s, MAX_MESSAGE_CHARS)
}

/// At most `max` characters of `s`, marked when cut.
fn clip_to(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}...", &s[..end]),
    }
}

/// 1-based line and column of byte `offset` of the query, for messages.
fn position(query: &str, offset: usize) -> String {
    let before = &query[..offset.min(query.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    if line == 1 {
        format!("column {column}")
    } else {
        format!("line {line}, column {column}")
    }
}

/// Where `part` (a slice of `query`, or something else) starts.
fn offset_in(query: &str, part: &str) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(query.as_ptr() as usize)?;
    (start <= query.len()).then_some(start)
}

/// What the lexer/parser found, as the message names it.
fn found(query: &str, part: &str) -> String {
    if part.is_empty() {
        "end of query".to_owned()
    } else {
        let near: String = part.chars().take(20).collect();
        let at = offset_in(query, part).map(|o| format!(" at {}", position(query, o)));
        format!("`{near}`{}", at.unwrap_or_default())
    }
}

fn load_errors(query: &str, errors: load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let mut messages = Vec::new();
    for (_file, error) in errors {
        match error {
            Error::Io(errors) => {
                for (path, message) in errors {
                    messages.push(format!("cannot load module `{path}`: {message}"));
                }
            }
            Error::Lex(errors) => {
                for (expect, part) in errors {
                    use jaq_core::load::lex::Expect;
                    let expected = match expect {
                        Expect::Digit => "a digit".to_owned(),
                        Expect::Ident => "an identifier".to_owned(),
                        Expect::Delim(open) => format!("the closing delimiter of `{open}`"),
                        Expect::Escape => "a string escape sequence".to_owned(),
                        Expect::Unicode => "4 hexadecimal digits".to_owned(),
                        Expect::Token => "a token".to_owned(),
                        _ => "something else".to_owned(),
                    };
                    messages.push(format!("expected {expected}, found {}", found(query, part)));
                }
            }
            Error::Parse(errors) => {
                for (expect, part) in errors {
                    messages.push(format!(
                        "expected {}, found {}",
                        expect.as_str(),
                        found(query, part)
                    ));
                }
            }
        }
    }
    format!(
        "MetadataExtractionQuery is invalid: {}",
        messages.join("; ")
    )
}

fn compile_errors(query: &str, errors: jaq_core::compile::Errors<&str, ()>) -> String {
    let messages: Vec<String> = errors
        .into_iter()
        .flat_map(|(_file, errors)| errors)
        .map(|(name, undefined)| {
            use jaq_core::compile::Undefined;
            let what = match undefined {
                Undefined::Filter(arity) => format!("filter `{name}/{arity}`"),
                other => format!("{} `{name}`", other.as_str()),
            };
            let at = offset_in(query, name).map(|o| format!(" at {}", position(query, o)));
            format!("undefined {what}{}", at.unwrap_or_default())
        })
        .collect();
    format!(
        "MetadataExtractionQuery is invalid: {}",
        messages.join("; ")
    )
}

#[cfg(test)]
mod tests;
