//! Hive/Glue column types, their type-string syntax, and their Arrow mapping.
//!
//! A schema is a list of columns, each a name and a Glue type string, exactly
//! what a Glue table's `StorageDescriptor.Columns` holds. The inline TOML
//! form is a list of `{ name, type }` tables:
//!
//! ```toml
//! [[destination.format.schema]]
//! name = "id"
//! type = "bigint"
//! [[destination.format.schema]]
//! name = "tags"
//! type = "map<string, array<struct<k:string,v:decimal(10,2)>>>"
//! ```
//!
//! # Arrow mapping (and why)
//! - `string`, `char(n)`, `varchar(n)` -> `Utf8`; longer values are cut to
//!   `n` characters as Hive does on insert (no padding for `char`).
//! - `tinyint`/`smallint`/`int`/`bigint` -> `Int8`/`Int16`/`Int32`/`Int64`.
//! - `float`/`double` -> `Float32`/`Float64`; `boolean` -> `Boolean`.
//! - `decimal(p,s)` -> `Decimal128(p,s)` (`decimal` alone is Hive's
//!   `decimal(10,0)`); `p` is 1..=38, `s` 0..=`p`.
//! - `date` -> `Date32`; `binary` -> `Binary` (JSON gives base64 text).
//! - `timestamp` -> `Timestamp(Millisecond, None)`, written to Parquet as
//!   INT64 `TIMESTAMP(MILLIS, isAdjustedToUTC=false)`. Firehose itself writes
//!   INT96 (Hive's writer), which arrow-rs cannot write; Athena's `timestamp`
//!   has millisecond resolution, so milliseconds keep every digit Athena
//!   would show, and INT64 millis is read by Athena, Trino, Spark, Hive 3,
//!   DuckDB and pyarrow. No time zone: Hive timestamps are zone-less, and
//!   the values are UTC wall-clock times (epoch inputs are UTC). Sub-
//!   millisecond digits are truncated toward the past.
//! - `array<T>` -> `List` with a nullable `element` field (Parquet's name).
//! - `map<K,V>` -> `Map` with a `key_value` entry struct (Parquet's name),
//!   non-null `key`, nullable `value`; not sorted.
//! - `struct<a:T,...>` -> `Struct` with nullable fields.
//!
//! Every column and nested field is nullable: JSON can omit any field.

use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

/// Largest precision a `decimal` can have (Hive's and Decimal128's limit).
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// A Hive/Glue column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    /// `string`.
    String,
    /// `char(n)`: at most `n` characters are kept.
    Char(u32),
    /// `varchar(n)`: at most `n` characters are kept.
    Varchar(u32),
    /// `tinyint`: 8-bit signed.
    TinyInt,
    /// `smallint`: 16-bit signed.
    SmallInt,
    /// `int` (or `integer`): 32-bit signed.
    Int,
    /// `bigint`: 64-bit signed.
    BigInt,
    /// `float`: 32-bit IEEE.
    Float,
    /// `double`: 64-bit IEEE.
    Double,
    /// `decimal(precision, scale)`.
    Decimal {
        /// Total significant digits, 1..=38.
        precision: u8,
        /// Digits after the point, 0..=precision.
        scale: u8,
    },
    /// `boolean`.
    Boolean,
    /// `date`: a calendar day.
    Date,
    /// `timestamp`: a zone-less date and time (stored in milliseconds).
    Timestamp,
    /// `binary`: bytes (base64 text in JSON).
    Binary,
    /// `array<T>`.
    Array(Box<ColumnType>),
    /// `struct<name:T,...>`.
    Struct(Vec<StructField>),
    /// `map<K,V>`.
    Map(Box<ColumnType>, Box<ColumnType>),
}

/// One field of a `struct<...>` type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructField {
    /// Field name as written (Hive lower-cases it; lookups are by the
    /// deserializer's key rules).
    pub name: String,
    /// Field type.
    pub ty: ColumnType,
}

/// One top-level column: a name and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Column type.
    pub ty: ColumnType,
}

/// The table schema: an ordered list of columns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schema {
    /// Columns in table order (the output file's column order).
    pub columns: Vec<Column>,
}

/// A type string or schema that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The type string does not parse.
    #[error("column `{column}`: invalid type `{ty}`: {reason}")]
    InvalidType {
        /// The column whose type is bad.
        column: String,
        /// The type string as given.
        ty: String,
        /// What is wrong, with the position.
        reason: String,
    },
    /// Two columns (or two fields of one struct) have the same name,
    /// compared case-insensitively as Hive does.
    #[error("column `{0}` appears twice (names are case-insensitive)")]
    Duplicate(String),
    /// A column or struct field has an empty name.
    #[error("a column or struct field has an empty name")]
    EmptyName,
    /// The schema has no columns.
    #[error("the schema has no columns")]
    Empty,
}

impl ColumnType {
    /// Parses a Glue/Hive type string such as
    /// `struct<a:int,b:array<map<string,decimal(10,2)>>>`. Keywords are
    /// case-insensitive and spaces are allowed between tokens. `column`
    /// names the column in the error.
    ///
    /// # Errors
    /// [`SchemaError::InvalidType`] saying what was expected where.
    pub fn parse(column: &str, ty: &str) -> Result<ColumnType, SchemaError> {
        let mut p = TypeParser {
            s: ty.as_bytes(),
            pos: 0,
        };
        let parsed = p.ty().and_then(|t| {
            p.ws();
            if p.pos < p.s.len() {
                Err(p.err("unexpected text after the type"))
            } else {
                Ok(t)
            }
        });
        parsed.map_err(|reason| SchemaError::InvalidType {
            column: column.to_owned(),
            ty: ty.to_owned(),
            reason,
        })
    }

    /// The Arrow type values of this column are built as.
    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::String | ColumnType::Char(_) | ColumnType::Varchar(_) => DataType::Utf8,
            ColumnType::TinyInt => DataType::Int8,
            ColumnType::SmallInt => DataType::Int16,
            ColumnType::Int => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Float => DataType::Float32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Decimal { precision, scale } => {
                DataType::Decimal128(*precision, *scale as i8)
            }
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            ColumnType::Binary => DataType::Binary,
            ColumnType::Array(element) => {
                DataType::List(Arc::new(Field::new("element", element.arrow_type(), true)))
            }
            ColumnType::Struct(fields) => DataType::Struct(struct_fields(fields)),
            ColumnType::Map(key, value) => DataType::Map(
                Arc::new(Field::new(
                    "key_value",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", key.arrow_type(), false),
                        Field::new("value", value.arrow_type(), true),
                    ])),
                    false,
                )),
                false,
            ),
        }
    }

    fn check_names(&self) -> Result<(), SchemaError> {
        match self {
            ColumnType::Array(t) => t.check_names(),
            ColumnType::Map(k, v) => {
                k.check_names()?;
                v.check_names()
            }
            ColumnType::Struct(fields) => {
                check_unique(fields.iter().map(|f| f.name.as_str()))?;
                fields.iter().try_for_each(|f| f.ty.check_names())
            }
            _ => Ok(()),
        }
    }
}

pub(crate) fn struct_fields(fields: &[StructField]) -> Fields {
    fields
        .iter()
        .map(|f| Field::new(&f.name, f.ty.arrow_type(), true))
        .collect()
}

fn check_unique<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), SchemaError> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if name.is_empty() {
            return Err(SchemaError::EmptyName);
        }
        if !seen.insert(name.to_lowercase()) {
            return Err(SchemaError::Duplicate(name.to_owned()));
        }
    }
    Ok(())
}

impl fmt::Display for ColumnType {
    /// The canonical (lower-case, no spaces) Glue type string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::String => f.write_str("string"),
            ColumnType::Char(n) => write!(f, "char({n})"),
            ColumnType::Varchar(n) => write!(f, "varchar({n})"),
            ColumnType::TinyInt => f.write_str("tinyint"),
            ColumnType::SmallInt => f.write_str("smallint"),
            ColumnType::Int => f.write_str("int"),
            ColumnType::BigInt => f.write_str("bigint"),
            ColumnType::Float => f.write_str("float"),
            ColumnType::Double => f.write_str("double"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp => f.write_str("timestamp"),
            ColumnType::Binary => f.write_str("binary"),
            ColumnType::Array(t) => write!(f, "array<{t}>"),
            ColumnType::Map(k, v) => write!(f, "map<{k},{v}>"),
            ColumnType::Struct(fields) => {
                f.write_str("struct<")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    if field
                        .name
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_')
                    {
                        write!(f, "{}:{}", field.name, field.ty)?;
                    } else {
                        write!(f, "`{}`:{}", field.name, field.ty)?;
                    }
                }
                f.write_str(">")
            }
        }
    }
}

/// Recursive-descent parser over a type string.
struct TypeParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl TypeParser<'_> {
    fn err(&self, what: &str) -> String {
        format!("{what} at character {}", self.pos + 1)
    }

    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err(&format!("expected `{}`", c as char)))
        }
    }

    /// An identifier: letters, digits, `_` (struct field names may also be
    /// backquoted to allow other characters).
    fn ident(&mut self) -> Result<String, String> {
        self.ws();
        if self.s.get(self.pos) == Some(&b'`') {
            let start = self.pos + 1;
            let Some(len) = self.s[start..].iter().position(|&c| c == b'`') else {
                return Err(self.err("unterminated backquote"));
            };
            self.pos = start + len + 1;
            return Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned());
        }
        let start = self.pos;
        while self.pos < self.s.len()
            && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_')
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("expected a name"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn number(&mut self) -> Result<u32, String> {
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos])
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| {
                self.pos = start;
                self.err("expected a number")
            })
    }

    fn ty(&mut self) -> Result<ColumnType, String> {
        let start = self.pos;
        let word = self.ident()?.to_ascii_lowercase();
        Ok(match word.as_str() {
            "string" => ColumnType::String,
            "char" | "varchar" => {
                self.expect(b'(')?;
                let n = self.number()?;
                if n == 0 {
                    return Err(self.err("length must be at least 1"));
                }
                self.expect(b')')?;
                if word == "char" {
                    ColumnType::Char(n)
                } else {
                    ColumnType::Varchar(n)
                }
            }
            "tinyint" => ColumnType::TinyInt,
            "smallint" => ColumnType::SmallInt,
            "int" | "integer" => ColumnType::Int,
            "bigint" => ColumnType::BigInt,
            "float" => ColumnType::Float,
            "double" => ColumnType::Double,
            "boolean" => ColumnType::Boolean,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            "binary" => ColumnType::Binary,
            "decimal" | "numeric" => {
                // Hive's bare `decimal` is decimal(10,0).
                let (mut precision, mut scale) = (10, 0);
                if self.eat(b'(') {
                    precision = self.number()?;
                    scale = if self.eat(b',') { self.number()? } else { 0 };
                    self.expect(b')')?;
                }
                if precision == 0 || precision > u32::from(MAX_DECIMAL_PRECISION) {
                    return Err(self.err("decimal precision must be 1..=38"));
                }
                if scale > precision {
                    return Err(self.err("decimal scale must not exceed its precision"));
                }
                ColumnType::Decimal {
                    precision: precision as u8,
                    scale: scale as u8,
                }
            }
            "array" => {
                self.expect(b'<')?;
                let element = self.ty()?;
                self.expect(b'>')?;
                ColumnType::Array(Box::new(element))
            }
            "map" => {
                self.expect(b'<')?;
                let key = self.ty()?;
                if matches!(
                    key,
                    ColumnType::Array(_) | ColumnType::Map(..) | ColumnType::Struct(_)
                ) {
                    return Err(self.err("map keys must be a primitive type"));
                }
                self.expect(b',')?;
                let value = self.ty()?;
                self.expect(b'>')?;
                ColumnType::Map(Box::new(key), Box::new(value))
            }
            "struct" => {
                self.expect(b'<')?;
                let mut fields = Vec::new();
                if !self.eat(b'>') {
                    loop {
                        let name = self.ident()?;
                        self.expect(b':')?;
                        let ty = self.ty()?;
                        fields.push(StructField { name, ty });
                        if self.eat(b'>') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                if fields.is_empty() {
                    return Err(self.err("a struct needs at least one field"));
                }
                ColumnType::Struct(fields)
            }
            "uniontype" => return Err(self.err("uniontype is not supported (nor by Firehose)")),
            _ => {
                self.pos = start;
                self.ws();
                return Err(self.err(&format!("unknown type `{word}`")));
            }
        })
    }
}

impl Schema {
    /// Builds a schema from `(name, type string)` pairs.
    ///
    /// # Errors
    /// [`SchemaError`] for a bad type (naming the column), duplicate names,
    /// or no columns.
    pub fn parse<'a>(
        columns: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Schema, SchemaError> {
        let columns = columns
            .into_iter()
            .map(|(name, ty)| {
                Ok(Column {
                    name: name.to_owned(),
                    ty: ColumnType::parse(name, ty)?,
                })
            })
            .collect::<Result<Vec<_>, SchemaError>>()?;
        let schema = Schema { columns };
        schema.validate()?;
        Ok(schema)
    }

    /// Checks names: none empty, none repeated (case-insensitively) at any level,
    /// and at least one column.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.columns.is_empty() {
            return Err(SchemaError::Empty);
        }
        check_unique(self.columns.iter().map(|c| c.name.as_str()))?;
        self.columns.iter().try_for_each(|c| c.ty.check_names())
    }

    /// Parses a standalone schema file: `[[schema]]` tables with `name` and
    /// `type` (the form `sluice schema discover` prints). A delivery stream
    /// config holding `[[destination.format.schema]]` is accepted too.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn from_toml(text: &str) -> Result<Schema, String> {
        #[derive(Deserialize)]
        struct File {
            schema: Option<Schema>,
            destination: Option<toml::Table>,
        }
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(schema) = file.schema {
            return Ok(schema);
        }
        let nested = file
            .destination
            .and_then(|d| d.get("format").cloned())
            .and_then(|f| f.get("schema").cloned());
        match nested {
            Some(value) => value.try_into::<Schema>().map_err(|e| e.to_string()),
            None => Err("no `[[schema]]` (or `[[destination.format.schema]]`) tables found".into()),
        }
    }

    /// The TOML form (`[[schema]]` tables), as `sluice schema discover` prints it.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for c in &self.columns {
            out.push_str("[[schema]]\n");
            out.push_str(&format!("name = {}\n", toml_string(&c.name)));
            out.push_str(&format!("type = {}\n\n", toml_string(&c.ty.to_string())));
        }
        out
    }
}

fn toml_string(s: &str) -> String {
    // A TOML basic string is a JSON string minus a few escapes JSON never emits.
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// The Arrow schema of the batches built for `schema` (all fields nullable).
pub fn arrow_schema(schema: &Schema) -> SchemaRef {
    Arc::new(arrow_schema::Schema::new(
        schema
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.ty.arrow_type(), true))
            .collect::<Vec<_>>(),
    ))
}

/// The serde form of one column: `{ name = "...", type = "..." }`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnForm {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

impl Serialize for Schema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.columns.len()))?;
        for c in &self.columns {
            seq.serialize_element(&ColumnForm {
                name: c.name.clone(),
                ty: c.ty.to_string(),
            })?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Schema, D::Error> {
        let forms = Vec::<ColumnForm>::deserialize(d)?;
        Schema::parse(forms.iter().map(|c| (c.name.as_str(), c.ty.as_str())))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> ColumnType {
        ColumnType::parse("c", s).unwrap()
    }

    #[test]
    fn parses_every_type() {
        for (text, canonical) in [
            ("string", "string"),
            ("CHAR(3)", "char(3)"),
            ("varchar( 12 )", "varchar(12)"),
            ("tinyint", "tinyint"),
            ("SmallInt", "smallint"),
            ("int", "int"),
            ("integer", "int"),
            ("bigint", "bigint"),
            ("float", "float"),
            ("double", "double"),
            ("decimal", "decimal(10,0)"),
            ("decimal(38, 10)", "decimal(38,10)"),
            ("decimal(5)", "decimal(5,0)"),
            ("boolean", "boolean"),
            ("date", "date"),
            ("timestamp", "timestamp"),
            ("binary", "binary"),
            ("array<int>", "array<int>"),
            (
                " Struct < a : INT , b : array< map<string ,decimal(10,2)> > >",
                "struct<a:int,b:array<map<string,decimal(10,2)>>>",
            ),
            (
                "map<int,array<array<struct<x:timestamp>>>>",
                "map<int,array<array<struct<x:timestamp>>>>",
            ),
        ] {
            let ty = t(text);
            assert_eq!(ty.to_string(), canonical, "{text}");
            // The canonical string parses back to the same type.
            assert_eq!(t(canonical), ty);
        }
    }

    #[test]
    fn bad_types_name_the_column_and_position() {
        for (text, want) in [
            ("strin", "unknown type `strin`"),
            ("array<int", "expected `>`"),
            ("decimal(39,2)", "precision"),
            ("decimal(5,6)", "scale"),
            ("map<array<int>,int>", "primitive"),
            ("struct<>", "at least one field"),
            ("struct<a int>", "expected `:`"),
            ("int int", "unexpected text"),
            ("varchar(0)", "at least 1"),
            ("uniontype<int,string>", "uniontype"),
            ("", "expected a name"),
        ] {
            let err = ColumnType::parse("price", text).unwrap_err().to_string();
            assert!(
                err.contains("column `price`") && err.contains(want),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn toml_round_trip_and_duplicates() {
        let text = r#"
            [[schema]]
            name = "id"
            type = "bigint"
            [[schema]]
            name = "nested"
            type = "struct<a:int, b:array<string>>"
        "#;
        let schema = Schema::from_toml(text).unwrap();
        assert_eq!(schema.columns.len(), 2);
        assert_eq!(Schema::from_toml(&schema.to_toml()).unwrap(), schema);
        let config =
            "[destination.format]\n[[destination.format.schema]]\nname = \"x\"\ntype = \"int\"\n";
        assert_eq!(
            Schema::from_toml(config).unwrap().columns[0].ty,
            ColumnType::Int
        );
        let dup =
            "[[schema]]\nname = \"A\"\ntype = \"int\"\n[[schema]]\nname = \"a\"\ntype = \"int\"\n";
        assert!(Schema::from_toml(dup).unwrap_err().contains("twice"));
        let bad = "[[schema]]\nname = \"when\"\ntype = \"timestmp\"\n";
        assert!(
            Schema::from_toml(bad)
                .unwrap_err()
                .contains("column `when`")
        );
        assert!(Schema::parse([("s", "struct<a:int,A:int>")]).is_err());
    }

    #[test]
    fn arrow_types() {
        let s = Schema::parse([
            ("ts", "timestamp"),
            ("m", "map<string,int>"),
            ("d", "decimal(10,2)"),
        ])
        .unwrap();
        let a = arrow_schema(&s);
        assert_eq!(
            a.field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, None)
        );
        assert!(
            matches!(a.field(1).data_type(), DataType::Map(f, false) if !matches!(f.data_type(), DataType::Struct(fs) if fs[0].is_nullable()))
        );
        assert_eq!(a.field(2).data_type(), &DataType::Decimal128(10, 2));
    }
}
