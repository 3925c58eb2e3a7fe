//! Firehose's two JSON deserializers, as a schema-directed streaming parser
//! that builds Arrow arrays directly.
//!
//! One hand-written byte scanner walks each record once, guided by the
//! schema: a key is looked up among the fields of the struct being parsed
//! (the field after the previous match is tried first, so records with a
//! stable key order cost one comparison per key), and its value is parsed
//! straight into that column's buffers (`Vec<i64>`, offsets + bytes, ...).
//! No `serde_json::Value` or other per-record allocation happens; keys not in
//! the schema are skipped (but still checked to be valid JSON).
//!
//! # Atomic records
//! A record that does not fit (invalid JSON, wrong type, out of range, bad
//! timestamp) fails as a whole with a [`RecordError`], and the builder is
//! left exactly as before it: every column is *truncated* back to the row
//! count it had before the record (each column builder knows how to cut its
//! offsets, child columns and bytes back to `n` rows). Truncating costs
//! nothing on the good path, unlike validating into a scratch row first.
//! A record may hold several JSON documents (`{"a":1}{"a":2}`, as Firehose
//! accepts); they become several rows, all or none.
//!
//! # Deserializer semantics (see [`Deserializer`])
//! Common to both: a missing field, or JSON `null`, is a null; fields not in
//! the schema are ignored; a repeated key keeps its last value; keys match
//! column names ASCII-case-insensitively (OpenX's default `CaseInsensitive`;
//! Hive lower-cases column names itself), nested struct fields included.
//! Integers must be JSON integers within the column's range (no fraction,
//! no exponent); `decimal(p,s)` rounds extra fraction digits half-up as
//! HiveDecimal does and rejects values needing more than `p - s` integer
//! digits; `float` rejects finite values beyond its range; `char(n)` and
//! `varchar(n)` keep the first `n` characters (Hive's truncation);
//! `binary` takes standard base64 text; `date` takes `yyyy-[M]M-[d]d`.
//! Numbers and booleans given to a string column become their JSON text.
//!
//! OpenX only: numbers, booleans, dates and timestamps given as JSON strings
//! are parsed from the string (`"42"` fits `int`); nested objects/arrays
//! given to a `string` column are stored as their JSON text.
//! Hive only: a JSON string given to a numeric or boolean column is
//! rejected, and so is an object/array given to a string column.
//!
//! Timestamps (stored as milliseconds, UTC wall clock; finer digits are
//! truncated toward the past):
//! - OpenX: `yyyy-MM-dd'T'HH:mm:ss[.f]` followed by `Z` or a `±HH:MM`
//!   offset, and `yyyy-[M]M-[d]d HH:mm:ss[.f]` (no zone: taken as UTC),
//!   with up to 9 fraction digits. An offset is normalised to UTC
//!   (`03:04:05+02:00` is stored as `01:04:05`). Firehose documents only the
//!   `Z` form; offsets are sluice's extension, because `schema discover`
//!   and most producers (RFC 3339, `java.time`, Python's `isoformat()`)
//!   emit them, and refusing an unambiguous instant loses data. A `T` form
//!   without a zone stays refused, as in Firehose. An integer (JSON number or digit string)
//!   is epoch **milliseconds when its magnitude is at least 10^11** and epoch
//!   seconds below that. 10^11 s is the year 5138 and 10^11 ms is March
//!   1973, so neither real seconds nor real millis fall on the wrong side in
//!   practice. A number with a fraction or exponent is floating epoch seconds.
//! - Hive: each of `TimestampFormats` in order (Joda-Time patterns: `y M d H
//!   h m s S a Z`, quoted literals and punctuation; the special value
//!   `millis` takes an epoch-milliseconds integer); then, as Hive falls back,
//!   `java.sql.Timestamp.valueOf`'s `yyyy-[M]M-[d]d HH:mm:ss[.f]`, which
//!   has no zone (Firehose's behaviour, kept). An offset is accepted only
//!   through a pattern's `Z` (`Z`, `±HH:MM` or `±HHMM`), and converts the
//!   time to UTC: e.g. `TimestampFormats = ["yyyy-MM-dd'T'HH:mm:ssZ"]`.
//!
//! Calendar fields are checked strictly (no February 30th, hours 0–23).
//!
//! # Layout
//! This file holds the column builders, the field sets that match keys to
//! them, and the public [`RecordBatchBuilder`]; `scan` is the byte scanner
//! they drive, `number` reads integers, doubles and decimals from a value's
//! text, and `time` reads dates and timestamps (the Joda patterns included).
//! Neighbours: [`super::schema`] gives the columns; the Parquet and ORC
//! writers ([`super::parquet`], [`super::orc`]) take the finished batches.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimestampMillisecondType,
};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, ListArray, MapArray, PrimitiveArray, RecordBatch,
    StringArray, StructArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, FieldRef, SchemaRef};
use base64::Engine as _;

use super::ConvertError;
use super::schema::{ColumnType, Schema, arrow_schema};

mod number;
mod scan;
mod time;

use number::{float_from_text, int_from_text, parse_decimal};
use scan::{Parser, unescape_into};
pub(crate) use time::is_timestamp_text;
use time::{HiveFormat, compile_joda, parse_date, timestamp_from_number, timestamp_from_text};

/// Error codes of rejected records (`lastErrorCode` of the error document).
pub mod codes {
    /// Not valid JSON, not a JSON object, empty, invalid UTF-8, or nested too deep.
    pub const MALFORMED: &str = "DataFormatConversion.MalformedData";
    /// A value of the wrong JSON type for its column.
    pub const TYPE_MISMATCH: &str = "DataFormatConversion.TypeMismatch";
    /// A number too large or too precise for its column.
    pub const OUT_OF_RANGE: &str = "DataFormatConversion.ValueOutOfRange";
    /// A timestamp or date in no accepted form, or not a real calendar time.
    pub const INVALID_TIMESTAMP: &str = "DataFormatConversion.InvalidTimestamp";
    /// Text that should hold a value but does not (a non-number string for
    /// an OpenX numeric column, bad base64 for binary).
    pub const INVALID_VALUE: &str = "DataFormatConversion.InvalidValue";
}

/// Nesting limit for JSON values (schema-directed or skipped), so hostile
/// input cannot exhaust the stack.
const MAX_DEPTH: usize = 256;

/// Which Firehose deserializer reads the JSON, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deserializer {
    /// `OpenXJsonSerDe`.
    OpenX {
        /// `CaseInsensitive` (default true). When false, keys must match
        /// column names exactly.
        case_insensitive: bool,
        /// `ColumnToJsonKeyMappings`: column name -> JSON key, for top-level
        /// columns whose JSON key differs (e.g. `{"ts": "timestamp"}`).
        column_to_json_key_mappings: BTreeMap<String, String>,
        /// `ConvertDotsInJsonKeysToUnderscores` (default false): `a.b` in
        /// JSON matches column `a_b` (at every nesting level; map keys are
        /// data and are left alone).
        convert_dots_in_json_keys_to_underscores: bool,
    },
    /// `HiveJsonSerDe`.
    Hive {
        /// `TimestampFormats`: Joda-Time patterns tried in order, or
        /// `millis`; empty means `java.sql.Timestamp.valueOf` only.
        timestamp_formats: Vec<String>,
    },
}

impl Default for Deserializer {
    /// OpenX with Firehose's defaults.
    fn default() -> Self {
        Deserializer::OpenX {
            case_insensitive: true,
            column_to_json_key_mappings: BTreeMap::new(),
            convert_dots_in_json_keys_to_underscores: false,
        }
    }
}

/// Why one record was rejected. The builder is unchanged by it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RecordError {
    /// One of [`codes`].
    pub code: &'static str,
    /// What is wrong, naming the column path (e.g. ``column `a.b[2]` ``).
    pub message: String,
}

/// Internal failure while the error unwinds: the path is built on the way up.
struct Fail {
    code: &'static str,
    msg: String,
    path: Vec<String>,
}

type R<T> = Result<T, Fail>;

fn fail<T>(code: &'static str, msg: impl Into<String>) -> R<T> {
    Err(Fail {
        code,
        msg: msg.into(),
        path: Vec::new(),
    })
}

/// Options the value parsers need.
struct Opts {
    openx: bool,
    case_insensitive: bool,
    dots: bool,
    hive_formats: Vec<HiveFormat>,
}

// ---------------------------------------------------------------------------
// Column builders
// ---------------------------------------------------------------------------

/// Values of one column; every variant can be cut back to `n` rows.
enum Values {
    Bool(Vec<bool>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Decimal {
        values: Vec<i128>,
        precision: u8,
        scale: u8,
    },
    Date(Vec<i32>),
    Timestamp(Vec<i64>),
    Utf8 {
        offsets: Vec<i32>,
        data: Vec<u8>,
        max_chars: Option<u32>,
    },
    Binary {
        offsets: Vec<i32>,
        data: Vec<u8>,
    },
    List {
        offsets: Vec<i32>,
        child: Box<Builder>,
    },
    Struct(Box<FieldSet>),
    Map {
        offsets: Vec<i32>,
        keys: Box<Builder>,
        values: Box<Builder>,
    },
}

/// One column (or nested field) being built.
struct Builder {
    valid: Vec<bool>,
    values: Values,
    data_type: DataType,
}

/// The fields of a struct (or the top-level columns) and how JSON keys find them.
struct FieldSet {
    builders: Vec<Builder>,
    /// Per field, the JSON key that selects it, already normalised
    /// (lower-cased when keys are case-insensitive).
    keys: Vec<Vec<u8>>,
    /// Names for error messages.
    names: Vec<String>,
    fields: arrow_schema::Fields,
    /// Field tried first for the next key.
    hint: usize,
    /// Per field, how a key spelled exactly as `keys[i]` is recognised by
    /// its bytes (see `parse_object`).
    spelled: Vec<Spelled>,
    len: usize,
}

#[inline]
fn offset(len: usize) -> R<i32> {
    i32::try_from(len).map_err(|_| Fail {
        code: codes::OUT_OF_RANGE,
        msg: "batch exceeds 2 GiB of variable-length data".into(),
        path: Vec::new(),
    })
}

/// The vector's items, leaving it empty: with `keep`, with room for as many
/// (the next batch is likely as large), else with no allocation.
fn take<T>(v: &mut Vec<T>, keep: bool) -> Vec<T> {
    let room = if keep { v.len() } else { 0 };
    std::mem::replace(v, Vec::with_capacity(room))
}

impl Builder {
    fn new(ty: &ColumnType, opts: &Opts) -> Builder {
        let values = match ty {
            ColumnType::String => Values::Utf8 {
                offsets: vec![0],
                data: Vec::new(),
                max_chars: None,
            },
            ColumnType::Char(n) | ColumnType::Varchar(n) => Values::Utf8 {
                offsets: vec![0],
                data: Vec::new(),
                max_chars: Some(*n),
            },
            ColumnType::TinyInt => Values::I8(Vec::new()),
            ColumnType::SmallInt => Values::I16(Vec::new()),
            ColumnType::Int => Values::I32(Vec::new()),
            ColumnType::BigInt => Values::I64(Vec::new()),
            ColumnType::Float => Values::F32(Vec::new()),
            ColumnType::Double => Values::F64(Vec::new()),
            ColumnType::Decimal { precision, scale } => Values::Decimal {
                values: Vec::new(),
                precision: *precision,
                scale: *scale,
            },
            ColumnType::Boolean => Values::Bool(Vec::new()),
            ColumnType::Date => Values::Date(Vec::new()),
            ColumnType::Timestamp => Values::Timestamp(Vec::new()),
            ColumnType::Binary => Values::Binary {
                offsets: vec![0],
                data: Vec::new(),
            },
            ColumnType::Array(element) => Values::List {
                offsets: vec![0],
                child: Box::new(Builder::new(element, opts)),
            },
            ColumnType::Map(key, value) => Values::Map {
                offsets: vec![0],
                keys: Box::new(Builder::new(key, opts)),
                values: Box::new(Builder::new(value, opts)),
            },
            ColumnType::Struct(fields) => Values::Struct(Box::new(FieldSet::new(
                fields
                    .iter()
                    .map(|f| (f.name.as_str(), f.name.as_str(), &f.ty)),
                opts,
            ))),
        };
        Builder {
            valid: Vec::new(),
            values,
            data_type: ty.arrow_type(),
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.valid.len()
    }

    /// Cuts the column back to `n` rows, including whatever a failed value
    /// left behind past row `n` (string bytes, list items, map entries,
    /// struct fields appended before the failure). Requires `len() >= n`.
    fn truncate(&mut self, n: usize) {
        if self.valid.len() < n {
            return;
        }
        self.valid.truncate(n);
        match &mut self.values {
            Values::Bool(v) => v.truncate(n),
            Values::I8(v) => v.truncate(n),
            Values::I16(v) => v.truncate(n),
            Values::I32(v) | Values::Date(v) => v.truncate(n),
            Values::I64(v) | Values::Timestamp(v) => v.truncate(n),
            Values::F32(v) => v.truncate(n),
            Values::F64(v) => v.truncate(n),
            Values::Decimal { values, .. } => values.truncate(n),
            Values::Utf8 { offsets, data, .. } | Values::Binary { offsets, data } => {
                offsets.truncate(n + 1);
                data.truncate(offsets[n] as usize);
            }
            Values::List { offsets, child } => {
                offsets.truncate(n + 1);
                child.truncate(offsets[n] as usize);
            }
            Values::Map {
                offsets,
                keys,
                values,
            } => {
                offsets.truncate(n + 1);
                keys.truncate(offsets[n] as usize);
                values.truncate(offsets[n] as usize);
            }
            Values::Struct(fields) => fields.truncate(n),
        }
    }

    /// Appends a null (child slots of a struct get nulls too).
    fn push_null(&mut self) {
        self.valid.push(false);
        match &mut self.values {
            Values::Bool(v) => v.push(false),
            Values::I8(v) => v.push(0),
            Values::I16(v) => v.push(0),
            Values::I32(v) | Values::Date(v) => v.push(0),
            Values::I64(v) | Values::Timestamp(v) => v.push(0),
            Values::F32(v) => v.push(0.0),
            Values::F64(v) => v.push(0.0),
            Values::Decimal { values, .. } => values.push(0),
            Values::Utf8 { offsets, .. }
            | Values::Binary { offsets, .. }
            | Values::List { offsets, .. }
            | Values::Map { offsets, .. } => {
                let last = *offsets.last().unwrap_or(&0);
                offsets.push(last);
            }
            Values::Struct(fields) => fields.push_null_row(),
        }
    }

    /// Parses one JSON value at the parser's position into this column.
    fn parse(&mut self, p: &mut Parser<'_>, o: &Opts, depth: usize) -> R<()> {
        if depth > MAX_DEPTH {
            return fail(codes::MALFORMED, "JSON nested too deeply");
        }
        p.ws();
        let Some(first) = p.peek() else {
            return fail(codes::MALFORMED, "unexpected end of JSON");
        };
        if first == b'n' {
            p.literal(b"null")?;
            self.push_null();
            return Ok(());
        }
        match &mut self.values {
            Values::Utf8 {
                offsets,
                data,
                max_chars,
            } => {
                let start = data.len();
                match first {
                    b'"' => {
                        p.pos += 1;
                        p.string_into(data)?;
                    }
                    b'-' | b'0'..=b'9' => data.extend_from_slice(p.number()?),
                    b't' | b'f' => {
                        data.extend_from_slice(if p.boolean()? { b"true" } else { b"false" })
                    }
                    b'{' | b'[' if o.openx => {
                        let begin = p.pos;
                        p.skip_value(depth)?;
                        data.extend_from_slice(&p.s[begin..p.pos]);
                    }
                    b'{' | b'[' => {
                        return fail(
                            codes::TYPE_MISMATCH,
                            "expected a string, found a JSON object or array",
                        );
                    }
                    _ => return Err(p.syntax()),
                }
                if let Some(max) = *max_chars {
                    truncate_chars(data, start, max as usize);
                }
                offsets.push(offset(data.len())?);
            }
            Values::I64(v) => {
                v.push(int_value(p, o, first, i64::MIN as i128, i64::MAX as i128)? as i64)
            }
            Values::I32(v) => {
                v.push(int_value(p, o, first, i32::MIN as i128, i32::MAX as i128)? as i32)
            }
            Values::I16(v) => {
                v.push(int_value(p, o, first, i16::MIN as i128, i16::MAX as i128)? as i16)
            }
            Values::I8(v) => {
                v.push(int_value(p, o, first, i8::MIN as i128, i8::MAX as i128)? as i8)
            }
            Values::F64(v) => v.push(float_value(p, o, first)?),
            Values::F32(v) => {
                let x = float_value(p, o, first)?;
                let y = x as f32;
                if y.is_infinite() && x.is_finite() {
                    return fail(
                        codes::OUT_OF_RANGE,
                        format!("{x} is out of range for float"),
                    );
                }
                v.push(y);
            }
            Values::Decimal {
                values,
                precision,
                scale,
            } => {
                let (precision, scale) = (*precision, *scale);
                let text = scalar_text(p, o, first, "a decimal number")?;
                values.push(parse_decimal(&text, precision, scale)?);
            }
            Values::Bool(v) => v.push(match first {
                b't' | b'f' => p.boolean()?,
                b'"' if o.openx => {
                    let text = p.string_slice()?;
                    if text.eq_ignore_ascii_case(b"true") {
                        true
                    } else if text.eq_ignore_ascii_case(b"false") {
                        false
                    } else {
                        return fail(
                            codes::INVALID_VALUE,
                            format!("{} is not a boolean", quote(&text)),
                        );
                    }
                }
                _ => return mismatch(p, first, "a boolean"),
            }),
            Values::Date(v) => {
                let text = match first {
                    b'"' => p.string_slice()?,
                    _ => return mismatch(p, first, "a date string"),
                };
                v.push(parse_date(&text)?);
            }
            Values::Timestamp(v) => {
                let millis = match first {
                    b'"' => {
                        let text = p.string_slice()?;
                        timestamp_from_text(&text, o)?
                    }
                    b'-' | b'0'..=b'9' => {
                        let text = p.number()?;
                        timestamp_from_number(text, o)?
                    }
                    _ => return mismatch(p, first, "a timestamp"),
                };
                v.push(millis);
            }
            Values::Binary { offsets, data } => {
                if first != b'"' {
                    return mismatch(p, first, "a base64 string");
                }
                let text = p.string_slice()?;
                let start = data.len();
                if base64::engine::general_purpose::STANDARD
                    .decode_vec(text, data)
                    .is_err()
                {
                    data.truncate(start);
                    return fail(codes::INVALID_VALUE, "binary value is not valid base64");
                }
                offsets.push(offset(data.len())?);
            }
            Values::List { offsets, child } => {
                if first != b'[' {
                    return mismatch(p, first, "an array");
                }
                p.pos += 1;
                p.ws();
                if p.peek() == Some(b']') {
                    p.pos += 1;
                } else {
                    let mut index = 0usize;
                    loop {
                        child.parse(p, o, depth + 1).map_err(|mut e| {
                            e.path.push(format!("[{index}]"));
                            e
                        })?;
                        index += 1;
                        p.ws();
                        match p.next() {
                            Some(b',') => {}
                            Some(b']') => break,
                            _ => return Err(p.syntax_at(p.pos.saturating_sub(1))),
                        }
                    }
                }
                offsets.push(offset(child.len())?);
            }
            Values::Map {
                offsets,
                keys,
                values,
            } => {
                if first != b'{' {
                    return mismatch(p, first, "a JSON object (map)");
                }
                p.pos += 1;
                p.ws();
                if p.peek() == Some(b'}') {
                    p.pos += 1;
                } else {
                    loop {
                        p.ws();
                        if p.next() != Some(b'"') {
                            return Err(p.syntax_at(p.pos.saturating_sub(1)));
                        }
                        let key = p.string_slice_after_quote()?;
                        let key_text = String::from_utf8_lossy(&key).into_owned();
                        keys.push_text(&key, o).map_err(|mut e| {
                            e.path.push(format!("key {}", quote(key_text.as_bytes())));
                            e
                        })?;
                        p.ws();
                        if p.next() != Some(b':') {
                            return Err(p.syntax_at(p.pos.saturating_sub(1)));
                        }
                        values.parse(p, o, depth + 1).map_err(|mut e| {
                            e.path.push(format!("[{}]", quote(key_text.as_bytes())));
                            e
                        })?;
                        p.ws();
                        match p.next() {
                            Some(b',') => {}
                            Some(b'}') => break,
                            _ => return Err(p.syntax_at(p.pos.saturating_sub(1))),
                        }
                    }
                }
                offsets.push(offset(keys.len())?);
            }
            Values::Struct(fields) => {
                if first != b'{' {
                    return mismatch(p, first, "a JSON object (struct)");
                }
                fields.parse_object(p, o, depth + 1)?;
            }
        }
        self.valid.push(true);
        Ok(())
    }

    /// Appends a value given as text (a map key): strings as they are,
    /// other primitives parsed from the text whatever the deserializer.
    fn push_text(&mut self, text: &[u8], o: &Opts) -> R<()> {
        match &mut self.values {
            Values::Utf8 {
                offsets,
                data,
                max_chars,
            } => {
                let start = data.len();
                data.extend_from_slice(text);
                if let Some(max) = *max_chars {
                    truncate_chars(data, start, max as usize);
                }
                offsets.push(offset(data.len())?);
            }
            Values::I64(v) => {
                v.push(int_from_text(text, i64::MIN as i128, i64::MAX as i128)? as i64)
            }
            Values::I32(v) => {
                v.push(int_from_text(text, i32::MIN as i128, i32::MAX as i128)? as i32)
            }
            Values::I16(v) => {
                v.push(int_from_text(text, i16::MIN as i128, i16::MAX as i128)? as i16)
            }
            Values::I8(v) => v.push(int_from_text(text, i8::MIN as i128, i8::MAX as i128)? as i8),
            Values::F64(v) => v.push(float_from_text(text)?),
            Values::F32(v) => v.push(float_from_text(text)? as f32),
            Values::Decimal {
                values,
                precision,
                scale,
            } => values.push(parse_decimal(text, *precision, *scale)?),
            Values::Bool(v) => v.push(if text.eq_ignore_ascii_case(b"true") {
                true
            } else if text.eq_ignore_ascii_case(b"false") {
                false
            } else {
                return fail(
                    codes::INVALID_VALUE,
                    format!("{} is not a boolean", quote(text)),
                );
            }),
            Values::Date(v) => v.push(parse_date(text)?),
            Values::Timestamp(v) => v.push(timestamp_from_text(text, o)?),
            Values::Binary { offsets, data } => {
                data.extend_from_slice(text);
                offsets.push(offset(data.len())?);
            }
            Values::List { .. } | Values::Map { .. } | Values::Struct(_) => {
                return fail(codes::TYPE_MISMATCH, "a nested type cannot be a map key");
            }
        }
        self.valid.push(true);
        Ok(())
    }

    /// Moves the built values out as an Arrow array, leaving the builder empty.
    ///
    /// The buffers are consistent by construction (offsets monotonic and
    /// within the data, strings valid UTF-8 cut at character boundaries,
    /// every child as long as its parent says), so the checked Arrow
    /// constructors cannot fail; a failure would be a bug in this module.
    ///
    /// With `keep`, each buffer starts the next batch with room for as many
    /// items as it just gave (see [`RecordBatchBuilder::keep_capacity`]).
    fn finish(&mut self, keep: bool) -> ArrayRef {
        let valid = take(&mut self.valid, keep);
        let nulls = if valid.iter().all(|&v| v) {
            None
        } else {
            Some(NullBuffer::from(valid))
        };
        fn prim<T: arrow_array::ArrowPrimitiveType>(
            v: &mut Vec<T::Native>,
            nulls: Option<NullBuffer>,
            keep: bool,
        ) -> PrimitiveArray<T> {
            PrimitiveArray::<T>::new(ScalarBuffer::from(take(v, keep)), nulls)
        }
        let offsets_of = |offsets: &mut Vec<i32>| {
            let taken = take(offsets, keep);
            offsets.push(0);
            OffsetBuffer::new(ScalarBuffer::from(taken))
        };
        match &mut self.values {
            Values::Bool(v) => Arc::new(BooleanArray::new(take(v, keep).into(), nulls)),
            Values::I8(v) => Arc::new(prim::<Int8Type>(v, nulls, keep)),
            Values::I16(v) => Arc::new(prim::<Int16Type>(v, nulls, keep)),
            Values::I32(v) => Arc::new(prim::<Int32Type>(v, nulls, keep)),
            Values::I64(v) => Arc::new(prim::<Int64Type>(v, nulls, keep)),
            Values::F32(v) => Arc::new(prim::<Float32Type>(v, nulls, keep)),
            Values::F64(v) => Arc::new(prim::<Float64Type>(v, nulls, keep)),
            Values::Date(v) => Arc::new(prim::<Date32Type>(v, nulls, keep)),
            Values::Timestamp(v) => Arc::new(prim::<TimestampMillisecondType>(v, nulls, keep)),
            Values::Decimal {
                values,
                precision,
                scale,
            } => Arc::new(
                prim::<Decimal128Type>(values, nulls, keep)
                    .with_precision_and_scale(*precision, *scale as i8)
                    .expect("decimal precision and scale were validated with the schema"),
            ),
            Values::Utf8 { offsets, data, .. } => Arc::new(StringArray::new(
                offsets_of(offsets),
                take(data, keep).into(),
                nulls,
            )),
            Values::Binary { offsets, data } => Arc::new(BinaryArray::new(
                offsets_of(offsets),
                take(data, keep).into(),
                nulls,
            )),
            Values::List { offsets, child } => {
                let DataType::List(field) = &self.data_type else {
                    unreachable!("list type")
                };
                let field = Arc::clone(field);
                let values = child.finish(keep);
                Arc::new(ListArray::new(field, offsets_of(offsets), values, nulls))
            }
            Values::Map {
                offsets,
                keys,
                values,
            } => {
                let DataType::Map(entries, _) = &self.data_type else {
                    unreachable!("map type")
                };
                let DataType::Struct(entry_fields) = entries.data_type() else {
                    unreachable!("map entries are a struct")
                };
                let entry_struct = StructArray::new(
                    entry_fields.clone(),
                    vec![keys.finish(keep), values.finish(keep)],
                    None,
                );
                Arc::new(MapArray::new(
                    Arc::clone(entries) as FieldRef,
                    offsets_of(offsets),
                    entry_struct,
                    nulls,
                    false,
                ))
            }
            Values::Struct(fields) => {
                let children = fields.finish_children(keep);
                Arc::new(StructArray::new(fields.fields.clone(), children, nulls))
            }
        }
    }

    /// Rough heap bytes held (for batch sizing).
    fn bytes(&self) -> usize {
        self.valid.len()
            + match &self.values {
                Values::Bool(v) => v.len(),
                Values::I8(v) => v.len(),
                Values::I16(v) => v.len() * 2,
                Values::I32(v) | Values::Date(v) => v.len() * 4,
                Values::I64(v) | Values::Timestamp(v) => v.len() * 8,
                Values::F32(v) => v.len() * 4,
                Values::F64(v) => v.len() * 8,
                Values::Decimal { values, .. } => values.len() * 16,
                Values::Utf8 { offsets, data, .. } | Values::Binary { offsets, data } => {
                    offsets.len() * 4 + data.len()
                }
                Values::List { offsets, child } => offsets.len() * 4 + child.bytes(),
                Values::Map {
                    offsets,
                    keys,
                    values,
                } => offsets.len() * 4 + keys.bytes() + values.bytes(),
                Values::Struct(f) => f.builders.iter().map(Builder::bytes).sum(),
            }
    }
}

impl FieldSet {
    /// `entries` are (name, JSON key, type).
    fn new<'a>(
        entries: impl Iterator<Item = (&'a str, &'a str, &'a ColumnType)>,
        o: &Opts,
    ) -> FieldSet {
        let mut set = FieldSet {
            builders: Vec::new(),
            keys: Vec::new(),
            names: Vec::new(),
            fields: arrow_schema::Fields::empty(),
            hint: 0,
            spelled: Vec::new(),
            len: 0,
        };
        let mut fields = Vec::new();
        for (name, key, ty) in entries {
            let mut key = key.as_bytes().to_vec();
            if o.case_insensitive {
                key.make_ascii_lowercase();
            }
            set.spelled.push(Spelled::new(&key, o));
            set.keys.push(key);
            set.names.push(name.to_owned());
            set.builders.push(Builder::new(ty, o));
            fields.push(Field::new(name, ty.arrow_type(), true));
        }
        set.fields = fields.into();
        set
    }

    fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
        for b in &mut self.builders {
            b.truncate(n);
        }
    }

    fn push_null_row(&mut self) {
        for b in &mut self.builders {
            b.push_null();
        }
        self.len += 1;
    }

    fn finish_children(&mut self, keep: bool) -> Vec<ArrayRef> {
        self.len = 0;
        self.builders.iter_mut().map(|b| b.finish(keep)).collect()
    }

    /// The field tried first for the next key: the one after the last
    /// matched, as records of one stream mostly repeat their keys in order.
    #[inline]
    fn hinted(&self) -> usize {
        if self.hint < self.keys.len() {
            self.hint
        } else {
            0
        }
    }

    /// Finds the field a JSON key selects.
    #[inline]
    fn find(&mut self, key: &[u8], o: &Opts) -> Option<usize> {
        let hint = self.hinted();
        if key_eq(&self.keys[hint], key, o) {
            self.hint = hint + 1;
            return Some(hint);
        }
        for i in 0..self.keys.len() {
            if i != hint && key_eq(&self.keys[i], key, o) {
                self.hint = i + 1;
                return Some(i);
            }
        }
        None
    }

    /// Reads a key (the parser is past its opening quote and ends past the
    /// closing one): the field it selects, if any. When the bytes there are
    /// the hinted field's key spelled exactly, that is the field `find` would
    /// return (it tries the hint first), without scanning for the key's end.
    #[inline]
    fn read_key(&mut self, p: &mut Parser<'_>, o: &Opts) -> R<Option<usize>> {
        let hint = self.hinted();
        if let Some(spelled) = self.spelled.get(hint)
            && let Some(used) = spelled.at(&self.keys[hint], p.s, p.pos)
        {
            p.pos += used;
            self.hint = hint + 1;
            return Ok(Some(hint));
        }
        self.scan_key(p, o)
    }

    /// [`FieldSet::read_key`] for any other key: scanned, unescaped, looked
    /// up. Kept out of line, so the common path above stays small where it
    /// is inlined (inlined too, this cost 1.7% more instructions).
    #[inline(never)]
    fn scan_key(&mut self, p: &mut Parser<'_>, o: &Opts) -> R<Option<usize>> {
        let (start, end, escaped) = p.key_span()?;
        Ok(if escaped {
            let mut scratch = Vec::new();
            unescape_into(&p.s[start..end], &mut scratch)?;
            self.find(&scratch, o)
        } else {
            let key = &p.s[start..end];
            self.find(key, o)
        })
    }

    /// Parses a JSON object (the parser is at its `{`) into one row.
    fn parse_object(&mut self, p: &mut Parser<'_>, o: &Opts, depth: usize) -> R<()> {
        let row = self.len;
        p.pos += 1; // '{'
        p.ws();
        if p.peek() == Some(b'}') {
            p.pos += 1;
        } else {
            loop {
                p.ws();
                if p.next() != Some(b'"') {
                    return Err(p.syntax_at(p.pos.saturating_sub(1)));
                }
                let found = self.read_key(p, o)?;
                p.ws();
                if p.next() != Some(b':') {
                    return Err(p.syntax_at(p.pos.saturating_sub(1)));
                }
                match found {
                    Some(i) => {
                        let b = &mut self.builders[i];
                        // A repeated key: the last value wins.
                        if b.len() > row {
                            b.truncate(row);
                        }
                        if let Err(mut e) = b.parse(p, o, depth) {
                            e.path.push(self.names[i].clone());
                            return Err(e);
                        }
                    }
                    None => p.skip_value(depth)?,
                }
                p.ws();
                match p.next() {
                    Some(b',') => {}
                    Some(b'}') => break,
                    _ => return Err(p.syntax_at(p.pos.saturating_sub(1))),
                }
            }
        }
        for b in &mut self.builders {
            if b.len() == row {
                b.push_null();
            }
        }
        self.len = row + 1;
        Ok(())
    }
}

/// How a field's key is recognised from the bytes after its opening quote
/// when it is spelled exactly as its normalised key: possible when that key
/// needs no JSON escape and stays itself when normalised, so those bytes
/// are the key `find` would match.
#[derive(Clone, Copy)]
enum Spelled {
    /// Only by scanning and unescaping (`find`).
    No,
    /// The key and its closing quote fit in 8 bytes: one masked load and
    /// compare (the common case; a call to `memcmp` per key was 2% of
    /// `sluice convert`'s instructions).
    Word { bits: u64, mask: u64, len: usize },
    /// A longer key: its bytes, then the quote.
    Long,
}

impl Spelled {
    fn new(key: &[u8], o: &Opts) -> Spelled {
        let escapes = key.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20);
        if escapes || !key_eq(key, key, o) {
            return Spelled::No;
        }
        let len = key.len() + 1;
        if len > 8 {
            return Spelled::Long;
        }
        let mut word = [0u8; 8];
        word[..key.len()].copy_from_slice(key);
        word[key.len()] = b'"';
        Spelled::Word {
            bits: u64::from_le_bytes(word),
            mask: u64::MAX >> (64 - 8 * len),
            len,
        }
    }

    /// The bytes the key and its closing quote take at `s[pos..]`, if they
    /// are `key` spelled exactly.
    #[inline]
    fn at(self, key: &[u8], s: &[u8], pos: usize) -> Option<usize> {
        let used = key.len() + 1;
        let matched = match self {
            Spelled::No => false,
            Spelled::Word { bits, mask, len } => match s.get(pos..pos + 8) {
                Some(w) => {
                    let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
                    w & mask == bits
                }
                None => s
                    .get(pos..pos + len)
                    .is_some_and(|w| w[..len - 1] == *key && w[len - 1] == b'"'),
            },
            Spelled::Long => s[pos..].starts_with(key) && s.get(pos + key.len()) == Some(&b'"'),
        };
        matched.then_some(used)
    }
}

/// Whether a JSON key selects a field whose normalised key is `want`.
#[inline]
fn key_eq(want: &[u8], key: &[u8], o: &Opts) -> bool {
    if want.len() != key.len() {
        return false;
    }
    if !o.case_insensitive && !o.dots {
        return want == key;
    }
    want.iter().zip(key).all(|(&w, &k)| {
        let k = if o.dots && k == b'.' { b'_' } else { k };
        let k = if o.case_insensitive {
            k.to_ascii_lowercase()
        } else {
            k
        };
        w == k
    })
}

/// Keeps at most `max` characters of the UTF-8 text `data[start..]`.
fn truncate_chars(data: &mut Vec<u8>, start: usize, max: usize) {
    let text = &data[start..];
    if text.len() <= max {
        return;
    }
    // Char starts are bytes that are not continuation bytes (0b10xxxxxx).
    let mut chars = 0;
    for (i, &b) in text.iter().enumerate() {
        if b & 0xC0 != 0x80 {
            if chars == max {
                data.truncate(start + i);
                return;
            }
            chars += 1;
        }
    }
}

fn quote(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(text);
    if s.chars().count() > 64 {
        let cut: String = s.chars().take(64).collect();
        format!("\"{cut}...\"")
    } else {
        format!("\"{s}\"")
    }
}

fn json_kind(first: u8) -> &'static str {
    match first {
        b'"' => "a string",
        b'{' => "an object",
        b'[' => "an array",
        b't' | b'f' => "a boolean",
        b'-' | b'0'..=b'9' => "a number",
        _ => "invalid JSON",
    }
}

fn mismatch<T>(p: &Parser<'_>, first: u8, want: &str) -> R<T> {
    if !matches!(first, b'"' | b'{' | b'[' | b't' | b'f' | b'-' | b'0'..=b'9') {
        return Err(p.syntax());
    }
    fail(
        codes::TYPE_MISMATCH,
        format!("expected {want}, found {}", json_kind(first)),
    )
}

/// The text of a scalar for numeric columns: a JSON number, or for OpenX
/// the contents of a JSON string.
fn scalar_text<'a>(
    p: &mut Parser<'a>,
    o: &Opts,
    first: u8,
    want: &str,
) -> R<std::borrow::Cow<'a, [u8]>> {
    match first {
        b'-' | b'0'..=b'9' => Ok(std::borrow::Cow::Borrowed(p.number()?)),
        b'"' if o.openx => p.string_slice(),
        _ => mismatch(p, first, want),
    }
}

fn int_value(p: &mut Parser<'_>, o: &Opts, first: u8, min: i128, max: i128) -> R<i128> {
    match first {
        b'-' | b'0'..=b'9' => {
            let text = p.number()?;
            int_from_text(text, min, max)
        }
        b'"' if o.openx => {
            let text = p.string_slice()?;
            int_from_text(text.trim_ascii(), min, max)
        }
        _ => mismatch(p, first, "an integer"),
    }
}

fn float_value(p: &mut Parser<'_>, o: &Opts, first: u8) -> R<f64> {
    match first {
        b'-' | b'0'..=b'9' => {
            let text = p.number()?;
            float_from_text(text)
        }
        b'"' if o.openx => {
            let text = p.string_slice()?;
            float_from_text(text.trim_ascii())
        }
        _ => mismatch(p, first, "a number"),
    }
}

// ---------------------------------------------------------------------------
// The public builder
// ---------------------------------------------------------------------------

/// Builds Arrow [`RecordBatch`]es from JSON records, directed by a [`Schema`]
/// and a [`Deserializer`]. Reusable across batches; not thread-safe (one per
/// encoder).
pub struct RecordBatchBuilder {
    schema: SchemaRef,
    top: FieldSet,
    opts: Opts,
    /// See [`RecordBatchBuilder::keep_capacity`].
    keep_capacity: bool,
}

impl std::fmt::Debug for RecordBatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatchBuilder")
            .field("schema", &self.schema)
            .field("rows", &self.top.len)
            .finish()
    }
}

impl RecordBatchBuilder {
    /// A builder for `schema` read with `deserializer`.
    ///
    /// # Errors
    /// [`ConvertError::Schema`] for an invalid schema,
    /// [`ConvertError::Deserializer`] for an option that cannot work (a bad
    /// Joda pattern, a mapping for an unknown column, a Hive column name with
    /// a dot).
    pub fn new(
        schema: &Schema,
        deserializer: &Deserializer,
    ) -> Result<RecordBatchBuilder, ConvertError> {
        schema.validate()?;
        let opts = match deserializer {
            Deserializer::OpenX {
                case_insensitive,
                column_to_json_key_mappings,
                convert_dots_in_json_keys_to_underscores,
            } => {
                for column in column_to_json_key_mappings.keys() {
                    if !schema
                        .columns
                        .iter()
                        .any(|c| c.name.eq_ignore_ascii_case(column))
                    {
                        return Err(ConvertError::Deserializer(format!(
                            "ColumnToJsonKeyMappings names column `{column}`, which is not in the schema"
                        )));
                    }
                }
                Opts {
                    openx: true,
                    case_insensitive: *case_insensitive,
                    dots: *convert_dots_in_json_keys_to_underscores,
                    hive_formats: Vec::new(),
                }
            }
            Deserializer::Hive { timestamp_formats } => {
                if let Some(c) = schema.columns.iter().find(|c| c.name.contains('.')) {
                    return Err(ConvertError::Deserializer(format!(
                        "column `{}`: the Hive JSON SerDe does not allow `.` in column names",
                        c.name
                    )));
                }
                let hive_formats = timestamp_formats
                    .iter()
                    .map(|f| {
                        if f == "millis" {
                            Ok(HiveFormat::Millis)
                        } else {
                            compile_joda(f).map(HiveFormat::Pattern).map_err(|e| {
                                ConvertError::Deserializer(format!("TimestampFormats `{f}`: {e}"))
                            })
                        }
                    })
                    .collect::<Result<_, _>>()?;
                Opts {
                    openx: false,
                    case_insensitive: true,
                    dots: false,
                    hive_formats,
                }
            }
        };
        let mappings = match deserializer {
            Deserializer::OpenX {
                column_to_json_key_mappings,
                ..
            } => Some(column_to_json_key_mappings),
            Deserializer::Hive { .. } => None,
        };
        let top = FieldSet::new(
            schema.columns.iter().map(|c| {
                let key = mappings
                    .and_then(|m| m.iter().find(|(col, _)| col.eq_ignore_ascii_case(&c.name)))
                    .map_or(c.name.as_str(), |(_, key)| key.as_str());
                (c.name.as_str(), key, &c.ty)
            }),
            &opts,
        );
        Ok(RecordBatchBuilder {
            schema: arrow_schema(schema),
            top,
            opts,
            keep_capacity: false,
        })
    }

    /// Makes every batch start with the room the one before it took, instead
    /// of each column growing from empty by doubling: growth had been 5% of
    /// `sluice convert`'s CPU in perf (realloc's copies and the page faults of
    /// fresh memory). For a builder that stays busy (`convert`'s one); not
    /// for the daemon's, one per open object, where an idle one would keep a
    /// batch's worth of memory that `buffered_bytes` does not count.
    pub(crate) fn keep_capacity(mut self) -> Self {
        self.keep_capacity = true;
        self
    }

    /// The Arrow schema of the batches ([`arrow_schema()`] of the schema).
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Appends one record: one JSON object, or several concatenated
    /// (`{"a":1}{"a":2}`, optionally whitespace-separated), each a row.
    ///
    /// # Errors
    /// [`RecordError`] when any document of the record does not fit; then
    /// no row of the record was added and the builder is as before.
    pub fn append(&mut self, record: &[u8]) -> Result<(), RecordError> {
        let before = self.top.len;
        match self.append_rows(record) {
            Ok(()) => Ok(()),
            Err(fail) => {
                self.top.truncate(before);
                let message = if fail.path.is_empty() {
                    fail.msg
                } else {
                    let mut path = String::new();
                    for part in fail.path.iter().rev() {
                        if !path.is_empty() && !part.starts_with('[') {
                            path.push('.');
                        }
                        path.push_str(part);
                    }
                    format!("column `{path}`: {}", fail.msg)
                };
                Err(RecordError {
                    code: fail.code,
                    message,
                })
            }
        }
    }

    fn append_rows(&mut self, record: &[u8]) -> R<()> {
        // Checked whole with SIMD (simdutf8's `basic` check has no position, so
        // std finds it for the message, only for a record that fails): std's
        // check of every record was 1.9% of `convert`'s instructions.
        if simdutf8::basic::from_utf8(record).is_err()
            && let Err(e) = std::str::from_utf8(record)
        {
            return fail(
                codes::MALFORMED,
                format!(
                    "record is not valid UTF-8 (at byte {})",
                    e.valid_up_to() + 1
                ),
            );
        }
        let mut p = Parser { s: record, pos: 0 };
        let mut rows = 0;
        loop {
            p.ws();
            match p.peek() {
                None => break,
                Some(b'{') => {
                    self.top.parse_object(&mut p, &self.opts, 0)?;
                    rows += 1;
                }
                Some(c) if rows == 0 && c != b'{' => {
                    let rest = &record[p.pos..];
                    let scalar = match c {
                        b'n' => rest.starts_with(b"null"),
                        b't' => rest.starts_with(b"true"),
                        b'f' => rest.starts_with(b"false"),
                        _ => true,
                    };
                    return if scalar
                        && matches!(c, b'"' | b'[' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9')
                    {
                        fail(
                            codes::MALFORMED,
                            format!("record is {}, not a JSON object", json_kind_or_null(c)),
                        )
                    } else {
                        Err(p.syntax())
                    };
                }
                Some(_) => return Err(p.syntax()),
            }
        }
        if rows == 0 {
            return fail(codes::MALFORMED, "record is empty");
        }
        Ok(())
    }

    /// Rows appended since the last [`finish_batch`](Self::finish_batch).
    pub fn len(&self) -> usize {
        self.top.len
    }

    /// Whether no rows are waiting.
    pub fn is_empty(&self) -> bool {
        self.top.len == 0
    }

    /// Approximate heap bytes held by the waiting rows.
    pub fn buffered_bytes(&self) -> usize {
        self.top.builders.iter().map(Builder::bytes).sum()
    }

    /// Moves the waiting rows out as a batch (possibly empty) and starts the next.
    pub fn finish_batch(&mut self) -> RecordBatch {
        let rows = self.top.len;
        let columns = self.top.finish_children(self.keep_capacity);
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)
            .expect("columns are built to the schema's types and the same length")
    }
}

fn json_kind_or_null(c: u8) -> &'static str {
    if c == b'n' { "null" } else { json_kind(c) }
}

#[cfg(test)]
mod tests;
