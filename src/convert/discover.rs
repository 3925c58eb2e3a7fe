//! Schema inference from sample JSON records (`sluice schema discover`).
//!
//! # Types
//! Integers -> `bigint` (beyond i64 -> `double`), other numbers -> `double`,
//! booleans -> `boolean`, strings the OpenX deserializer reads as a date-time
//! (`yyyy-MM-ddTHH:mm:ss[.f]` with `Z` or `±HH:MM`, or
//! `yyyy-MM-dd HH:mm:ss[.f]`; the very function conversion uses, see
//! `json::is_timestamp_text`) -> `timestamp`, other strings -> `string`,
//! arrays -> `array` of the merged element type, objects -> `struct` or
//! `map<string,T>` (below). The rules target the OpenX deserializer, the
//! default; the Hive one reads only the space-separated timestamp form
//! unless given `TimestampFormats`.
//!
//! # Order and names
//! Columns and struct fields come in first-seen order: the order of the
//! first record that has them, new ones appended as later records bring
//! them. Names are lower-cased as Hive does (keys differing only in case are
//! one field).
//!
//! # Maps
//! An object whose keys are data rather than field names becomes
//! `map<string,T>`. Every non-empty object seen at one place in the records
//! (a column, a struct field, array elements) is an *occurrence*; the place
//! becomes a map when all its values, across all occurrences, have one kind
//! (`bigint` and `double` agree, as do `timestamp` and `string`; nulls are
//! ignored) and at least one of these holds:
//! - the keys vary: at least two occurrences, and no key is in all of them
//!   (`{"a":1}` then `{"zz":2,"q":5}`), whereas a struct's records share
//!   at least one field;
//! - the keys look like data: every key is an integer, a UUID, a date
//!   (`yyyy-MM-dd`) or a hex id (8+ hex digits with a digit among them);
//! - there are more than [`MAP_MIN_KEYS`] distinct keys.
//!
//! `T` is the merged value type. Past [`MAX_STRUCT_KEYS`] distinct keys an
//! object is a map whatever its values (`map<string,string>` when they
//! disagree: OpenX stores other JSON as its text), so a map keyed by ids
//! never grows a struct of millions of fields. (Top-level keys are always
//! columns; a record with more than that many keys adds no columns.)
//!
//! # Merging
//! null/absent adds nothing, `bigint` and `double` give `double`,
//! `timestamp` and `string` give `string`, objects merge key by key, arrays
//! element by element, and any other conflict gives `string` (which the
//! OpenX deserializer fills with the JSON text). A field only ever null, an
//! object only ever empty, or an array only ever empty, becomes
//! `string`/`array<string>`.
//!
//! Records are deserialized straight into the inferred types (a serde
//! visitor, no `serde_json::Value`, whose map would sort the keys). A line
//! may hold several JSON documents, as conversion accepts.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};

use super::schema::{Column, ColumnType, Schema, StructField};

/// More distinct keys than this make an object whose values agree a map.
pub const MAP_MIN_KEYS: usize = 64;

/// More distinct keys than this make any object a map.
pub const MAX_STRUCT_KEYS: usize = 4096;

/// The type inferred so far for one place in the records.
#[derive(Debug, Clone, PartialEq, Default)]
enum Inferred {
    #[default]
    Null,
    Bool,
    Int,
    Float,
    Timestamp,
    String,
    Array(Box<Inferred>),
    Object(Box<Object>),
}

/// What is known about the objects seen at one place.
#[derive(Debug, Clone, PartialEq, Default)]
struct Object {
    /// Lower-cased keys in first-seen order with their merged types; empty
    /// once `overflow` is set.
    fields: Vec<(String, Inferred)>,
    /// More than [`MAX_STRUCT_KEYS`] distinct keys were seen.
    overflow: bool,
    /// Non-empty occurrences.
    occurrences: u64,
    /// Keys present in every non-empty occurrence (`None` before the first).
    common: Option<Vec<String>>,
    /// All values merged, as a map's value type would be.
    values: Inferred,
    /// Two values had different kinds.
    values_disagree: bool,
    /// Every key so far looks like data (see [`data_key`]).
    data_keys: bool,
}

impl Object {
    fn is_map(&self) -> bool {
        if self.overflow {
            return true;
        }
        if self.fields.is_empty() || self.values_disagree {
            return false;
        }
        let keys_vary = self.occurrences >= 2 && self.common.as_ref().is_some_and(|c| c.is_empty());
        keys_vary || self.data_keys || self.fields.len() > MAP_MIN_KEYS
    }

    /// Adds `t` under `name` (merging with an earlier field of that name).
    fn add_field(&mut self, name: String, t: Inferred) {
        if self.overflow {
            return;
        }
        if let Some((_, existing)) = self.fields.iter_mut().find(|(n, _)| *n == name) {
            let old = std::mem::take(existing);
            *existing = merge(old, t);
        } else if self.fields.len() >= MAX_STRUCT_KEYS {
            self.overflow = true;
            self.fields = Vec::new();
            self.common = Some(Vec::new());
        } else {
            self.fields.push((name, t));
        }
    }

    fn add_value(&mut self, t: &Inferred) {
        if !kinds_agree(&self.values, t) {
            self.values_disagree = true;
        }
        let old = std::mem::take(&mut self.values);
        self.values = merge(old, t.clone());
    }

    /// Merges another place's objects into this one.
    fn absorb(&mut self, other: Object) {
        for (name, t) in other.fields {
            self.add_field(name, t);
        }
        self.overflow |= other.overflow;
        if self.overflow {
            self.fields = Vec::new();
        }
        self.occurrences += other.occurrences;
        self.common = match (self.common.take(), other.common) {
            (Some(mut a), Some(b)) => {
                a.retain(|k| b.contains(k));
                Some(a)
            }
            (a, b) => a.or(b),
        };
        self.values_disagree |= other.values_disagree;
        self.add_value(&other.values);
        self.data_keys &= other.data_keys;
    }
}

/// Whether two inferred types may be values of one map.
fn kinds_agree(a: &Inferred, b: &Inferred) -> bool {
    use Inferred::*;
    matches!(
        (a, b),
        (Null, _)
            | (_, Null)
            | (Bool, Bool)
            | (Int | Float, Int | Float)
            | (Timestamp | String, Timestamp | String)
            | (Array(_), Array(_))
            | (Object(_), Object(_))
    )
}

/// Whether a key looks like data rather than a field name.
fn data_key(key: &str) -> bool {
    let b = key.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
        return true;
    }
    let uuid = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    let date = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    let hex_id =
        b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit) && b.iter().any(u8::is_ascii_digit);
    uuid || date || hex_id
}

/// Accumulates records and produces a schema.
#[derive(Debug, Default)]
pub struct Discoverer {
    columns: Object,
    records: u64,
    skipped: u64,
}

impl Discoverer {
    /// An empty discoverer.
    pub fn new() -> Discoverer {
        Discoverer::default()
    }

    /// Adds the records of one line (JSON objects, usually one); returns
    /// false (and counts the line as skipped) when it is not valid JSON or
    /// holds something other than objects. A skipped line adds nothing.
    pub fn add(&mut self, line: &[u8]) -> bool {
        let mut objects = Vec::new();
        for doc in serde_json::Deserializer::from_slice(line).into_iter::<Inferred>() {
            match doc {
                Ok(Inferred::Object(o)) => objects.push(*o),
                _ => {
                    self.skipped += 1;
                    return false;
                }
            }
        }
        if objects.is_empty() {
            self.skipped += 1;
            return false;
        }
        for o in objects {
            // Top-level keys are columns whatever they look like.
            for (name, t) in o.fields {
                self.columns.add_field(name, t);
            }
            self.records += 1;
        }
        true
    }

    /// Records added so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Lines that were not JSON objects.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The inferred schema (no columns when no record was added).
    pub fn schema(&self) -> Schema {
        Schema {
            columns: self
                .columns
                .fields
                .iter()
                .map(|(name, t)| Column {
                    name: name.clone(),
                    ty: to_type(t),
                })
                .collect(),
        }
    }
}

impl<'de> Deserialize<'de> for Inferred {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Inferred, D::Error> {
        d.deserialize_any(InferVisitor)
    }
}

/// Builds the [`Inferred`] type of one JSON value while it is parsed.
struct InferVisitor;

impl<'de> Visitor<'de> for InferVisitor {
    type Value = Inferred;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Inferred, E> {
        Ok(Inferred::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Inferred, E> {
        Ok(Inferred::Bool)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Inferred, E> {
        Ok(Inferred::Int)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Inferred, E> {
        Ok(if i64::try_from(v).is_ok() {
            Inferred::Int
        } else {
            Inferred::Float
        })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Inferred, E> {
        Ok(Inferred::Float)
    }
    fn visit_str<E>(self, s: &str) -> Result<Inferred, E> {
        Ok(if super::json::is_timestamp_text(s.as_bytes()) {
            Inferred::Timestamp
        } else {
            Inferred::String
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inferred, A::Error> {
        let mut element = Inferred::Null;
        while let Some(item) = seq.next_element::<Inferred>()? {
            element = merge(element, item);
        }
        Ok(Inferred::Array(Box::new(element)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Inferred, A::Error> {
        let mut o = Object {
            data_keys: true,
            ..Object::default()
        };
        let mut any = false;
        while let Some(key) = map.next_key::<String>()? {
            let t = map.next_value::<Inferred>()?;
            any = true;
            o.data_keys &= data_key(&key);
            o.add_value(&t);
            o.add_field(key.to_lowercase(), t);
        }
        if any {
            // This occurrence's keys are exactly the fields so far.
            o.occurrences = 1;
            o.common = Some(o.fields.iter().map(|(n, _)| n.clone()).collect());
        }
        Ok(Inferred::Object(Box::new(o)))
    }
}

fn merge(a: Inferred, b: Inferred) -> Inferred {
    use Inferred::*;
    match (a, b) {
        (Null, x) | (x, Null) => x,
        (Int, Float) | (Float, Int) => Float,
        (Array(x), Array(y)) => Array(Box::new(merge(*x, *y))),
        (Object(mut x), Object(y)) => {
            x.absorb(*y);
            Object(x)
        }
        (x, y) if x == y => x,
        _ => String,
    }
}

fn to_type(t: &Inferred) -> ColumnType {
    match t {
        Inferred::Null | Inferred::String => ColumnType::String,
        Inferred::Bool => ColumnType::Boolean,
        Inferred::Int => ColumnType::BigInt,
        Inferred::Float => ColumnType::Double,
        Inferred::Timestamp => ColumnType::Timestamp,
        Inferred::Array(e) => ColumnType::Array(Box::new(to_type(e))),
        Inferred::Object(o) if o.is_map() => {
            let value = if o.values_disagree {
                ColumnType::String
            } else {
                to_type(&o.values)
            };
            ColumnType::Map(Box::new(ColumnType::String), Box::new(value))
        }
        Inferred::Object(o) if o.fields.is_empty() => ColumnType::String,
        Inferred::Object(o) => ColumnType::Struct(
            o.fields
                .iter()
                .map(|(n, t)| StructField {
                    name: n.clone(),
                    ty: to_type(t),
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discover(lines: &[&str]) -> Vec<String> {
        let mut d = Discoverer::new();
        for line in lines {
            d.add(line.as_bytes());
        }
        let s = d.schema();
        // The printed form parses back.
        assert_eq!(Schema::from_toml(&s.to_toml()).unwrap(), s);
        s.columns
            .iter()
            .map(|c| format!("{}:{}", c.name, c.ty))
            .collect()
    }

    #[test]
    fn infers_and_merges() {
        let mut d = Discoverer::new();
        for line in [
            r#"{"id":1,"price":2,"name":"a","ts":"2024-01-02T03:04:05.678Z","tags":[],"o":{"a":1},"x":1,"n":null}"#,
            r#"{"ID":2,"price":2.5,"name":"b","ts":"2024-01-02 03:04:05","tags":["t"],"o":{"b":[1.5]},"x":"s","extra":true}"#,
            "not json",
            "[1,2]",
            r#"{"id":3} [4]"#,
        ] {
            d.add(line.as_bytes());
        }
        assert_eq!((d.records(), d.skipped()), (2, 3));
        let got: Vec<String> = d
            .schema()
            .columns
            .iter()
            .map(|c| format!("{}:{}", c.name, c.ty))
            .collect();
        assert_eq!(
            got,
            [
                "id:bigint",
                "price:double",
                "name:string",
                "ts:timestamp",
                "tags:array<string>",
                // Values of different kinds: a struct although no key recurs.
                "o:struct<a:bigint,b:array<double>>",
                "x:string",
                "n:string",
                "extra:boolean",
            ]
        );
    }

    #[test]
    fn columns_and_fields_keep_first_seen_order() {
        let got = discover(&[
            r#"{"zeta":1,"Alpha":{"y":1,"b":"s","A":true},"mid":2}"#,
            r#"{"new":1,"mid":3,"alpha":{"c":2,"y":4},"zeta":5}"#,
            r#"{"id":7}{"zeta":6,"late":"x"}"#,
        ]);
        assert_eq!(
            got,
            [
                "zeta:bigint",
                "alpha:struct<y:bigint,b:string,a:boolean,c:bigint>",
                "mid:bigint",
                "new:bigint",
                "id:bigint",
                "late:string",
            ]
        );
    }

    #[test]
    fn objects_with_varying_keys_are_maps() {
        let got = discover(&[
            r#"{"counts":{"a":1},"user":{"name":"x","age":3},"by_id":{"1234":{"n":1}}}"#,
            r#"{"counts":{"zz":2,"q":5.5},"user":{"name":"y"},"by_id":{"77":{"n":2,"m":"s"}}}"#,
            r#"{"counts":{},"user":{"age":4,"name":"z"},"sessions":{"5f0c2a9e-1b2c-4d3e-8f90-0a1b2c3d4e5f":"2026-01-02T03:04:05+02:00"}}"#,
            r#"{"days":{"2026-01-02":[1],"2026-01-03":[]},"hashes":{"a1b2c3d4e5":true}}"#,
            r#"{"mixed":{"a":1},"one":{"k":1}}"#,
            r#"{"mixed":{"b":"s"},"one":{"k":2}}"#,
        ]);
        assert_eq!(
            got,
            [
                "counts:map<string,double>",
                // `name` is in every occurrence: a struct.
                "user:struct<name:string,age:bigint>",
                "by_id:map<string,struct<n:bigint,m:string>>",
                "sessions:map<string,timestamp>",
                "days:map<string,array<bigint>>",
                "hashes:map<string,boolean>",
                // Values of different kinds: a struct.
                "mixed:struct<a:bigint,b:string>",
                "one:struct<k:bigint>",
            ]
        );
    }

    #[test]
    fn many_keys_make_a_map() {
        let wide: Vec<String> = (0..=MAP_MIN_KEYS)
            .map(|i| format!("\"k{i}\":{i}"))
            .collect();
        let line = format!("{{\"wide\":{{{}}}}}", wide.join(","));
        assert_eq!(discover(&[&line]), ["wide:map<string,bigint>"]);
        let narrow: Vec<String> = (0..MAP_MIN_KEYS).map(|i| format!("\"k{i}\":{i}")).collect();
        let line = format!("{{\"narrow\":{{{}}}}}", narrow.join(","));
        assert!(discover(&[&line])[0].starts_with("narrow:struct<k0:bigint,"));
        // Past MAX_STRUCT_KEYS even disagreeing values give a map.
        let huge: Vec<String> = (0..=MAX_STRUCT_KEYS)
            .map(|i| {
                if i % 2 == 0 {
                    format!("\"k{i}\":{i}")
                } else {
                    format!("\"k{i}\":\"s\"")
                }
            })
            .collect();
        let line = format!("{{\"huge\":{{{}}}}}", huge.join(","));
        assert_eq!(discover(&[&line]), ["huge:map<string,string>"]);
    }

    #[test]
    fn data_keys() {
        for key in [
            "0",
            "-12",
            "2026-01-02",
            "5f0c2a9e-1b2c-4d3e-8f90-0a1b2c3d4e5f",
            "deadbeef01",
        ] {
            assert!(data_key(key), "{key}");
        }
        for key in [
            "", "-", "name", "deadbeef", "a1b2", "2026-1-2", "user_1", "12a",
        ] {
            assert!(!data_key(key), "{key}");
        }
    }

    #[test]
    fn timestamps_only_where_conversion_reads_them() {
        let got = discover(&[
            r#"{"a":"2026-01-02T03:04:05+02:00","b":"2026-01-02T03:04:05","c":"1486480381","d":"2026-01-02 03:04:05.5","e":"2026-01-02T03:04:05+0200"}"#,
        ]);
        assert_eq!(
            got,
            [
                "a:timestamp",
                "b:string",
                "c:string",
                "d:timestamp",
                "e:string"
            ]
        );
    }
}
