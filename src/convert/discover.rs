//! Schema inference from sample JSON records (`sluice schema discover`).
//!
//! Rules: integers -> `bigint` (beyond i64 -> `double`), other numbers ->
//! `double`, booleans -> `boolean`, strings that parse as an OpenX timestamp
//! string (`yyyy-MM-ddTHH:mm:ss[.f]Z` or `yyyy-MM-dd HH:mm:ss[.f]`) ->
//! `timestamp`, other strings -> `string`, objects -> `struct` (fields in
//! name order, as serde_json's map keeps them; names lower-cased as Hive does), arrays -> `array` of
//! the merged element type. Merging: null/absent adds nothing, `bigint` and
//! `double` give `double`, `timestamp` and `string` give `string`, structs
//! merge field by field, and any other conflict gives `string` (which the
//! OpenX deserializer fills with the JSON text). A field only ever null, or
//! an array only ever empty, becomes `string`/`array<string>`.
//! Not on the hot path: records are parsed with `serde_json::Value`.

use serde_json::Value;

use super::schema::{Column, ColumnType, Schema, StructField};

/// The type inferred so far for one field.
#[derive(Debug, Clone, PartialEq)]
enum Inferred {
    Null,
    Bool,
    Int,
    Float,
    Timestamp,
    String,
    Array(Box<Inferred>),
    Struct(Vec<(String, Inferred)>),
}

/// Accumulates records and produces a schema.
#[derive(Debug, Default)]
pub struct Discoverer {
    columns: Vec<(String, Inferred)>,
    records: u64,
    skipped: u64,
}

impl Discoverer {
    /// An empty discoverer.
    pub fn new() -> Discoverer {
        Discoverer::default()
    }

    /// Adds one record (a JSON object); returns false (and counts it as
    /// skipped) when it is not one.
    pub fn add(&mut self, record: &[u8]) -> bool {
        match serde_json::from_slice::<Value>(record) {
            Ok(Value::Object(map)) => {
                merge_fields(&mut self.columns, &map);
                self.records += 1;
                true
            }
            _ => {
                self.skipped += 1;
                false
            }
        }
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
                .iter()
                .map(|(name, t)| Column {
                    name: name.clone(),
                    ty: to_type(t),
                })
                .collect(),
        }
    }
}

fn infer(v: &Value) -> Inferred {
    match v {
        Value::Null => Inferred::Null,
        Value::Bool(_) => Inferred::Bool,
        Value::Number(n) if n.is_i64() => Inferred::Int,
        Value::Number(_) => Inferred::Float,
        Value::String(s) if super::json::is_timestamp_text(s.as_bytes()) => Inferred::Timestamp,
        Value::String(_) => Inferred::String,
        Value::Array(items) => {
            let mut element = Inferred::Null;
            for item in items {
                element = merge(element, infer(item));
            }
            Inferred::Array(Box::new(element))
        }
        Value::Object(map) => {
            let mut fields = Vec::new();
            merge_fields(&mut fields, map);
            Inferred::Struct(fields)
        }
    }
}

fn merge_fields(fields: &mut Vec<(String, Inferred)>, map: &serde_json::Map<String, Value>) {
    for (key, value) in map {
        let name = key.to_lowercase();
        let t = infer(value);
        match fields.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                let old = std::mem::replace(existing, Inferred::Null);
                *existing = merge(old, t);
            }
            None => fields.push((name, t)),
        }
    }
}

fn merge(a: Inferred, b: Inferred) -> Inferred {
    use Inferred::*;
    match (a, b) {
        (Null, x) | (x, Null) => x,
        (Int, Float) | (Float, Int) => Float,
        (Array(x), Array(y)) => Array(Box::new(merge(*x, *y))),
        (Struct(mut x), Struct(y)) => {
            for (name, t) in y {
                match x.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, existing)) => {
                        let old = std::mem::replace(existing, Null);
                        *existing = merge(old, t);
                    }
                    None => x.push((name, t)),
                }
            }
            Struct(x)
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
        Inferred::Struct(fields) if fields.is_empty() => ColumnType::String,
        Inferred::Struct(fields) => ColumnType::Struct(
            fields
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

    #[test]
    fn infers_and_merges() {
        let mut d = Discoverer::new();
        for line in [
            r#"{"id":1,"price":2,"name":"a","ts":"2024-01-02T03:04:05.678Z","tags":[],"o":{"a":1},"x":1,"n":null}"#,
            r#"{"ID":2,"price":2.5,"name":"b","ts":"2024-01-02 03:04:05","tags":["t"],"o":{"b":[1.5]},"x":"s","extra":true}"#,
            "not json",
            "[1,2]",
        ] {
            d.add(line.as_bytes());
        }
        assert_eq!((d.records(), d.skipped()), (2, 2));
        let s = d.schema();
        let got: Vec<String> = s
            .columns
            .iter()
            .map(|c| format!("{}:{}", c.name, c.ty))
            .collect();
        assert_eq!(
            got,
            [
                "id:bigint",
                "n:string",
                "name:string",
                "o:struct<a:bigint,b:array<double>>",
                "price:double",
                "tags:array<string>",
                "ts:timestamp",
                "x:string",
                "extra:boolean",
            ]
        );
        // The printed form parses back.
        assert_eq!(Schema::from_toml(&s.to_toml()).unwrap(), s);
    }
}
