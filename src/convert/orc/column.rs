//! Column writers: one per ORC column id, in a tree mirroring the type tree.
//!
//! ORC writes a child value only where every ancestor is present: a struct's
//! fields hold entries for non-null struct rows only, a list's child holds
//! the elements of non-null lists only. Each writer therefore receives the
//! rows it must write as ranges into its arrow array, and hands its children
//! the ranges of its non-null rows (or of their elements).

use std::ops::Range;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{Array, OffsetSizeTrait};
use arrow_schema::{DataType, TimeUnit};

use super::OrcError;
use super::proto::{self, encoding_kind, stream_kind, type_kind};
use super::rle::{BoolRle, ByteRle, IntRle, put_varint128, zigzag128};
use super::stream::{Compressor, OutStream};

/// Seconds from the Unix epoch to ORC's timestamp base, 2015-01-01 00:00:00 UTC.
const ORC_EPOCH: i64 = 1_420_070_400;
/// String statistics longer than this are left out (ORC Java truncates
/// them to bounds instead; leaving them out is always safe for readers).
const MAX_STAT_STRING: usize = 1024;

// ------------------------------------------------------------- statistics

#[derive(Clone, Copy, PartialEq, Eq)]
enum StatKind {
    None,
    Int,
    Double,
    Str,
    Bin,
    Bool,
    Date,
}

/// Column statistics of a row group, stripe or file.
#[derive(Clone)]
struct Stats {
    kind: StatKind,
    count: u64,
    has_null: bool,
    int: Option<(i64, i64)>,
    int_sum: Option<i64>,
    dbl: Option<(f64, f64)>,
    dbl_sum: f64,
    nan: bool,
    str: Option<(Vec<u8>, Vec<u8>)>,
    str_too_long: bool,
    len_sum: Option<i64>,
    trues: u64,
}

impl Stats {
    fn new(kind: StatKind) -> Self {
        Stats {
            kind,
            count: 0,
            has_null: false,
            int: None,
            int_sum: Some(0),
            dbl: None,
            dbl_sum: 0.0,
            nan: false,
            str: None,
            str_too_long: false,
            len_sum: Some(0),
            trues: 0,
        }
    }

    #[inline]
    fn int(&mut self, v: i64) {
        self.int = Some(match self.int {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
        self.int_sum = self.int_sum.and_then(|s| s.checked_add(v));
    }

    #[inline]
    fn dbl(&mut self, v: f64) {
        if v.is_nan() {
            self.nan = true;
            return;
        }
        self.dbl = Some(match self.dbl {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
        self.dbl_sum += v;
    }

    #[inline]
    fn bytes(&mut self, v: &[u8]) {
        self.len_sum = self.len_sum.and_then(|s| s.checked_add(v.len() as i64));
        if self.kind != StatKind::Str {
            return;
        }
        if v.len() > MAX_STAT_STRING {
            self.str_too_long = true;
            return;
        }
        match &mut self.str {
            None => self.str = Some((v.to_vec(), v.to_vec())),
            Some((lo, hi)) => {
                if v < lo.as_slice() {
                    *lo = v.to_vec();
                } else if v > hi.as_slice() {
                    *hi = v.to_vec();
                }
            }
        }
    }

    fn merge(&mut self, o: &Stats) {
        self.count += o.count;
        self.has_null |= o.has_null;
        if let Some((lo, hi)) = o.int {
            self.int = Some(match self.int {
                None => (lo, hi),
                Some((a, b)) => (a.min(lo), b.max(hi)),
            });
        }
        self.int_sum = match (self.int_sum, o.int_sum) {
            (Some(a), Some(b)) => a.checked_add(b),
            _ => None,
        };
        if let Some((lo, hi)) = o.dbl {
            self.dbl = Some(match self.dbl {
                None => (lo, hi),
                Some((a, b)) => (a.min(lo), b.max(hi)),
            });
        }
        self.dbl_sum += o.dbl_sum;
        self.nan |= o.nan;
        if let Some((lo, hi)) = &o.str {
            match &mut self.str {
                None => self.str = Some((lo.clone(), hi.clone())),
                Some((a, b)) => {
                    if lo < a {
                        *a = lo.clone();
                    }
                    if hi > b {
                        *b = hi.clone();
                    }
                }
            }
        }
        self.str_too_long |= o.str_too_long;
        self.len_sum = match (self.len_sum, o.len_sum) {
            (Some(a), Some(b)) => a.checked_add(b),
            _ => None,
        };
        self.trues += o.trues;
    }

    fn to_proto(&self) -> proto::ColumnStatistics {
        let mut s = proto::ColumnStatistics {
            number_of_values: Some(self.count),
            has_null: Some(self.has_null),
            ..Default::default()
        };
        match self.kind {
            StatKind::None => {}
            StatKind::Int => {
                s.int_statistics = Some(proto::IntegerStatistics {
                    minimum: self.int.map(|m| m.0),
                    maximum: self.int.map(|m| m.1),
                    sum: self.int_sum,
                })
            }
            StatKind::Date => {
                s.date_statistics = Some(proto::DateStatistics {
                    minimum: self.int.map(|m| m.0 as i32),
                    maximum: self.int.map(|m| m.1 as i32),
                })
            }
            StatKind::Double => {
                // A NaN makes min/max meaningless for range checks: leave them out.
                let mm = if self.nan { None } else { self.dbl };
                s.double_statistics = Some(proto::DoubleStatistics {
                    minimum: mm.map(|m| m.0),
                    maximum: mm.map(|m| m.1),
                    sum: (!self.nan).then_some(self.dbl_sum),
                })
            }
            StatKind::Str => {
                let mm = if self.str_too_long {
                    None
                } else {
                    self.str.as_ref()
                };
                let text = |b: &Vec<u8>| String::from_utf8(b.clone()).ok();
                let (min, max) = match mm {
                    Some((lo, hi)) => match (text(lo), text(hi)) {
                        (Some(lo), Some(hi)) => (Some(lo), Some(hi)),
                        _ => (None, None),
                    },
                    None => (None, None),
                };
                s.string_statistics = Some(proto::StringStatistics {
                    minimum: min,
                    maximum: max,
                    sum: self.len_sum,
                })
            }
            StatKind::Bin => {
                s.binary_statistics = Some(proto::BinaryStatistics { sum: self.len_sum })
            }
            StatKind::Bool => {
                s.bucket_statistics = Some(proto::BucketStatistics {
                    count: vec![self.trues],
                })
            }
        }
        s
    }
}

// ----------------------------------------------------------- column kinds

enum Kind {
    Bool(BoolRle),
    Byte(ByteRle),
    /// Short, Int, Long and Date (signed RLE v2).
    Int(IntRle),
    Float(OutStream),
    Double(OutStream),
    /// String or binary, DIRECT_V2: DATA bytes + LENGTH.
    Bytes {
        data: OutStream,
        length: IntRle,
    },
    Timestamp {
        secs: IntRle,
        nanos: IntRle,
        unit: TimeUnit,
    },
    Decimal {
        data: OutStream,
        scale: IntRle,
        scale_value: i64,
        scratch: Vec<u8>,
    },
    Struct(Vec<Column>),
    List {
        length: IntRle,
        child: Box<Column>,
    },
    Map {
        length: IntRle,
        key: Box<Column>,
        value: Box<Column>,
    },
}

/// Where a row group starts in this column's streams.
#[derive(Default)]
struct GroupStart {
    /// `None` while the PRESENT stream is still implicit (no null yet).
    present: Option<Vec<u64>>,
    /// Values in PRESENT before the group (to place it once materialized).
    present_count: u64,
    data: Vec<u64>,
}

struct IndexEntry {
    start: GroupStart,
    stats: proto::ColumnStatistics,
}

/// A column writer.
pub(super) struct Column {
    id: u32,
    path: String,
    data_type: DataType,
    /// PRESENT bits; stays implicit (`present_implicit` counts the all-true
    /// prefix) until the first null of the stripe, and is dropped at the end
    /// of a stripe without nulls.
    present: BoolRle,
    present_materialized: bool,
    present_count: u64,
    kind: Kind,
    group: Stats,
    stripe: Stats,
    file: Stats,
    start: GroupStart,
    index: Vec<IndexEntry>,
    ranges: Vec<Range<usize>>,
}

/// Streams of one stripe, in file order.
#[derive(Default)]
pub(super) struct StripeStreams {
    pub(super) index: Vec<(proto::Stream, Vec<u8>)>,
    pub(super) data: Vec<(proto::Stream, Vec<u8>)>,
    pub(super) encodings: Vec<proto::ColumnEncoding>,
    pub(super) stats: Vec<proto::ColumnStatistics>,
}

fn stream(kind: i32, column: u32, bytes: Vec<u8>) -> (proto::Stream, Vec<u8>) {
    (
        proto::Stream {
            kind: Some(kind),
            column: Some(column),
            length: Some(bytes.len() as u64),
        },
        bytes,
    )
}

fn unsupported(path: &str, dt: &DataType) -> OrcError {
    OrcError::UnsupportedType {
        column: path.to_string(),
        data_type: dt.to_string(),
    }
}

impl Column {
    /// Builds the writer tree for `dt` and appends the ORC types (pre-order)
    /// to `types`. Refuses arrow types ORC/Hive has no mapping for.
    pub(super) fn build(
        path: String,
        dt: &DataType,
        types: &mut Vec<proto::Type>,
    ) -> Result<Column, OrcError> {
        let id = types.len() as u32;
        let mut t = proto::Type::default();
        types.push(t.clone());
        let (tk, kind, sk) = match dt {
            DataType::Boolean => (
                type_kind::BOOLEAN,
                Kind::Bool(BoolRle::default()),
                StatKind::Bool,
            ),
            DataType::Int8 => (
                type_kind::BYTE,
                Kind::Byte(ByteRle::default()),
                StatKind::Int,
            ),
            DataType::Int16 => (
                type_kind::SHORT,
                Kind::Int(IntRle::new(true)),
                StatKind::Int,
            ),
            DataType::Int32 => (type_kind::INT, Kind::Int(IntRle::new(true)), StatKind::Int),
            DataType::Int64 => (type_kind::LONG, Kind::Int(IntRle::new(true)), StatKind::Int),
            DataType::Date32 => (
                type_kind::DATE,
                Kind::Int(IntRle::new(true)),
                StatKind::Date,
            ),
            DataType::Float32 => (
                type_kind::FLOAT,
                Kind::Float(OutStream::default()),
                StatKind::Double,
            ),
            DataType::Float64 => (
                type_kind::DOUBLE,
                Kind::Double(OutStream::default()),
                StatKind::Double,
            ),
            DataType::Utf8 | DataType::LargeUtf8 => (
                type_kind::STRING,
                Kind::Bytes {
                    data: OutStream::default(),
                    length: IntRle::new(false),
                },
                StatKind::Str,
            ),
            DataType::Binary | DataType::LargeBinary => (
                type_kind::BINARY,
                Kind::Bytes {
                    data: OutStream::default(),
                    length: IntRle::new(false),
                },
                StatKind::Bin,
            ),
            DataType::Timestamp(unit, None) => (
                type_kind::TIMESTAMP,
                Kind::Timestamp {
                    secs: IntRle::new(true),
                    nanos: IntRle::new(false),
                    unit: *unit,
                },
                StatKind::None,
            ),
            DataType::Decimal128(p, s) => {
                if *p == 0 || *p > 38 || *s < 0 || *s as u8 > *p {
                    return Err(unsupported(&path, dt));
                }
                t.precision = Some(u32::from(*p));
                t.scale = Some(*s as u32);
                (
                    type_kind::DECIMAL,
                    Kind::Decimal {
                        data: OutStream::default(),
                        scale: IntRle::new(true),
                        scale_value: i64::from(*s),
                        scratch: Vec::new(),
                    },
                    StatKind::None,
                )
            }
            DataType::Struct(fields) => {
                let mut children = Vec::with_capacity(fields.len());
                for f in fields {
                    t.subtypes.push(types.len() as u32);
                    t.field_names.push(f.name().clone());
                    let child_path = if path.is_empty() {
                        f.name().clone()
                    } else {
                        format!("{path}.{}", f.name())
                    };
                    children.push(Column::build(child_path, f.data_type(), types)?);
                }
                (type_kind::STRUCT, Kind::Struct(children), StatKind::None)
            }
            DataType::List(f) | DataType::LargeList(f) => {
                t.subtypes.push(types.len() as u32);
                let child = Column::build(format!("{path}[]"), f.data_type(), types)?;
                (
                    type_kind::LIST,
                    Kind::List {
                        length: IntRle::new(false),
                        child: Box::new(child),
                    },
                    StatKind::None,
                )
            }
            DataType::Map(entries, _) => {
                let DataType::Struct(kv) = entries.data_type() else {
                    return Err(unsupported(&path, dt));
                };
                if kv.len() != 2 {
                    return Err(unsupported(&path, dt));
                }
                t.subtypes.push(types.len() as u32);
                let key = Column::build(format!("{path}.key"), kv[0].data_type(), types)?;
                t.subtypes.push(types.len() as u32);
                let value = Column::build(format!("{path}.value"), kv[1].data_type(), types)?;
                (
                    type_kind::MAP,
                    Kind::Map {
                        length: IntRle::new(false),
                        key: Box::new(key),
                        value: Box::new(value),
                    },
                    StatKind::None,
                )
            }
            other => return Err(unsupported(&path, other)),
        };
        t.kind = Some(tk);
        types[id as usize] = t;
        Ok(Column {
            id,
            path,
            data_type: dt.clone(),
            present: BoolRle::default(),
            present_materialized: false,
            present_count: 0,
            kind,
            group: Stats::new(sk),
            stripe: Stats::new(sk),
            file: Stats::new(sk),
            start: GroupStart::default(),
            index: Vec::new(),
            ranges: Vec::new(),
        })
    }

    /// Writes rows `ranges` of `array` (all of them present in the parent).
    pub(super) fn write(
        &mut self,
        array: &dyn Array,
        ranges: &[Range<usize>],
        c: &mut Compressor,
    ) -> Result<(), OrcError> {
        // PRESENT, and the ranges of non-null rows.
        let mut valid = std::mem::take(&mut self.ranges);
        valid.clear();
        match array.nulls().filter(|n| n.null_count() > 0) {
            None => {
                let n: usize = ranges.iter().map(|r| r.len()).sum();
                if self.present_materialized {
                    for _ in 0..n {
                        self.present.push(true, c)?;
                    }
                }
                self.present_count += n as u64;
                valid.extend(ranges.iter().cloned());
            }
            Some(nulls) => {
                for r in ranges {
                    for i in r.clone() {
                        let ok = nulls.is_valid(i);
                        if !ok && !self.present_materialized {
                            self.materialize_present(c)?;
                        }
                        if self.present_materialized {
                            self.present.push(ok, c)?;
                        }
                        self.present_count += 1;
                        if ok {
                            match valid.last_mut() {
                                Some(last) if last.end == i => last.end = i + 1,
                                _ => valid.push(i..i + 1),
                            }
                        } else {
                            self.group.has_null = true;
                        }
                    }
                }
            }
        }
        let result = self.write_values(array, &valid, c);
        self.ranges = valid;
        result
    }

    /// Turns the implicit all-true PRESENT prefix into real bits, placing the
    /// row groups that started meanwhile.
    fn materialize_present(&mut self, c: &mut Compressor) -> Result<(), OrcError> {
        let mut written = 0u64;
        let starts = self
            .index
            .iter_mut()
            .map(|e| &mut e.start)
            .chain(std::iter::once(&mut self.start));
        for g in starts {
            if g.present.is_some() {
                continue;
            }
            for _ in written..g.present_count {
                self.present.push(true, c)?;
            }
            written = g.present_count;
            self.present.flush_run(c)?;
            let mut pos = Vec::new();
            self.present.position(&mut pos, c);
            g.present = Some(pos);
        }
        for _ in written..self.present_count {
            self.present.push(true, c)?;
        }
        self.present_materialized = true;
        Ok(())
    }

    fn write_values(
        &mut self,
        array: &dyn Array,
        valid: &[Range<usize>],
        c: &mut Compressor,
    ) -> Result<(), OrcError> {
        let n: usize = valid.iter().map(|r| r.len()).sum();
        self.group.count += n as u64;
        let st = &mut self.group;
        let rows = || valid.iter().cloned().flatten();
        let (path, data_type) = (&self.path, &self.data_type);
        let mismatch =
            || OrcError::SchemaMismatch(format!("column {path} is not of type {data_type}"));
        macro_rules! prim {
            ($t:ty) => {
                match array.as_primitive_opt::<$t>() {
                    Some(a) => a.values(),
                    None => return Err(mismatch()),
                }
            };
        }
        match &mut self.kind {
            Kind::Bool(data) => {
                let Some(a) = array.as_boolean_opt() else {
                    return Err(mismatch());
                };
                for i in rows() {
                    let v = a.value(i);
                    st.trues += u64::from(v);
                    data.push(v, c)?;
                }
            }
            Kind::Byte(data) => {
                let vals = prim!(Int8Type);
                for i in rows() {
                    st.int(i64::from(vals[i]));
                    data.push(vals[i] as u8, c)?;
                }
            }
            Kind::Int(data) => match array.data_type() {
                DataType::Int16 => {
                    let vals = prim!(Int16Type);
                    for i in rows() {
                        st.int(i64::from(vals[i]));
                        data.push(i64::from(vals[i]), c)?;
                    }
                }
                DataType::Int32 => {
                    let vals = prim!(Int32Type);
                    for i in rows() {
                        st.int(i64::from(vals[i]));
                        data.push(i64::from(vals[i]), c)?;
                    }
                }
                DataType::Int64 => {
                    let vals = prim!(Int64Type);
                    for i in rows() {
                        st.int(vals[i]);
                        data.push(vals[i], c)?;
                    }
                }
                DataType::Date32 => {
                    let vals = prim!(Date32Type);
                    for i in rows() {
                        st.int(i64::from(vals[i]));
                        data.push(i64::from(vals[i]), c)?;
                    }
                }
                _ => return Err(mismatch()),
            },
            Kind::Float(data) => {
                let vals = prim!(Float32Type);
                let mut buf = Vec::with_capacity(n * 4);
                for i in rows() {
                    st.dbl(f64::from(vals[i]));
                    buf.extend_from_slice(&vals[i].to_le_bytes());
                }
                data.write(&buf, c)?;
            }
            Kind::Double(data) => {
                let vals = prim!(Float64Type);
                let mut buf = Vec::with_capacity(n * 8);
                for i in rows() {
                    st.dbl(vals[i]);
                    buf.extend_from_slice(&vals[i].to_le_bytes());
                }
                data.write(&buf, c)?;
            }
            Kind::Bytes { data, length } => {
                let (offsets, bytes): (OffsetsRef<'_>, &[u8]) = match array.data_type() {
                    DataType::Utf8 => match array.as_string_opt::<i32>() {
                        Some(a) => (OffsetsRef::I32(a.value_offsets()), a.value_data()),
                        None => return Err(mismatch()),
                    },
                    DataType::LargeUtf8 => match array.as_string_opt::<i64>() {
                        Some(a) => (OffsetsRef::I64(a.value_offsets()), a.value_data()),
                        None => return Err(mismatch()),
                    },
                    DataType::Binary => match array.as_binary_opt::<i32>() {
                        Some(a) => (OffsetsRef::I32(a.value_offsets()), a.value_data()),
                        None => return Err(mismatch()),
                    },
                    DataType::LargeBinary => match array.as_binary_opt::<i64>() {
                        Some(a) => (OffsetsRef::I64(a.value_offsets()), a.value_data()),
                        None => return Err(mismatch()),
                    },
                    _ => return Err(mismatch()),
                };
                match offsets {
                    OffsetsRef::I32(o) => write_bytes(o, bytes, valid, data, length, st, c)?,
                    OffsetsRef::I64(o) => write_bytes(o, bytes, valid, data, length, st, c)?,
                }
            }
            Kind::Timestamp { secs, nanos, unit } => {
                let (vals, per_sec, nanos_per) = match unit {
                    TimeUnit::Second => (prim!(TimestampSecondType), 1, 1_000_000_000),
                    TimeUnit::Millisecond => (prim!(TimestampMillisecondType), 1_000, 1_000_000),
                    TimeUnit::Microsecond => (prim!(TimestampMicrosecondType), 1_000_000, 1_000),
                    TimeUnit::Nanosecond => (prim!(TimestampNanosecondType), 1_000_000_000, 1),
                };
                for i in rows() {
                    let v = vals[i];
                    let mut s = v.div_euclid(per_sec);
                    let ns = v.rem_euclid(per_sec) * nanos_per;
                    // Readers (C++, Java, orc-rust) subtract one second from
                    // negative seconds when nanos > 999_999, so writers add it.
                    // For the last second before 1970 that makes the stored
                    // second 0, which readers do not correct: such a value
                    // reads back one second late (ORC-763). ORC Java writes
                    // the same bytes, so sluice does as Firehose does.
                    if s < 0 && ns > 999_999 {
                        s += 1;
                    }
                    let Some(rel) = s.checked_sub(ORC_EPOCH) else {
                        return Err(OrcError::Value {
                            column: path.clone(),
                            reason: format!("timestamp {v} ({unit:?}) is out of ORC's range"),
                        });
                    };
                    secs.push(rel, c)?;
                    nanos.push(encode_nanos(ns), c)?;
                }
            }
            Kind::Decimal {
                data,
                scale,
                scale_value,
                scratch,
            } => {
                let vals = prim!(Decimal128Type);
                scratch.clear();
                for i in rows() {
                    put_varint128(scratch, zigzag128(vals[i]));
                    scale.push(*scale_value, c)?;
                    if scratch.len() >= 64 * 1024 {
                        data.write(scratch, c)?;
                        scratch.clear();
                    }
                }
                data.write(scratch, c)?;
                scratch.clear();
            }
            Kind::Struct(children) => {
                let Some(s) = array.as_struct_opt() else {
                    return Err(mismatch());
                };
                if s.num_columns() != children.len() {
                    return Err(mismatch());
                }
                for (child, col) in children.iter_mut().zip(s.columns()) {
                    child.write(col.as_ref(), valid, c)?;
                }
            }
            Kind::List { length, child } => {
                let mut child_ranges = Vec::new();
                match array.data_type() {
                    DataType::List(_) => {
                        let Some(l) = array.as_list_opt::<i32>() else {
                            return Err(mismatch());
                        };
                        lengths(l.value_offsets(), valid, length, &mut child_ranges, c)?;
                        child.write(l.values().as_ref(), &child_ranges, c)?;
                    }
                    DataType::LargeList(_) => {
                        let Some(l) = array.as_list_opt::<i64>() else {
                            return Err(mismatch());
                        };
                        lengths(l.value_offsets(), valid, length, &mut child_ranges, c)?;
                        child.write(l.values().as_ref(), &child_ranges, c)?;
                    }
                    _ => return Err(mismatch()),
                }
            }
            Kind::Map { length, key, value } => {
                let Some(m) = array.as_map_opt() else {
                    return Err(mismatch());
                };
                let mut child_ranges = Vec::new();
                lengths(m.value_offsets(), valid, length, &mut child_ranges, c)?;
                key.write(m.keys().as_ref(), &child_ranges, c)?;
                value.write(m.values().as_ref(), &child_ranges, c)?;
            }
        }
        Ok(())
    }

    fn children_mut(&mut self) -> Vec<&mut Column> {
        match &mut self.kind {
            Kind::Struct(ch) => ch.iter_mut().collect(),
            Kind::List { child, .. } => vec![child.as_mut()],
            Kind::Map { key, value, .. } => vec![key.as_mut(), value.as_mut()],
            _ => Vec::new(),
        }
    }

    /// Records where the next row group starts in every stream (ending the
    /// current RLE runs so the positions fall between runs).
    pub(super) fn start_group(&mut self, c: &mut Compressor) -> Result<(), OrcError> {
        let mut g = GroupStart {
            present_count: self.present_count,
            ..Default::default()
        };
        if self.present_materialized {
            self.present.flush_run(c)?;
            let mut pos = Vec::new();
            self.present.position(&mut pos, c);
            g.present = Some(pos);
        }
        let pos = &mut g.data;
        match &mut self.kind {
            Kind::Bool(d) => {
                d.flush_run(c)?;
                d.position(pos, c);
            }
            Kind::Byte(d) => {
                d.flush(c)?;
                d.position(pos, c);
            }
            Kind::Int(d) => {
                d.flush(c)?;
                d.position(pos, c);
            }
            Kind::Float(d) | Kind::Double(d) => d.position(pos, c),
            Kind::Bytes { data, length } => {
                length.flush(c)?;
                data.position(pos, c);
                length.position(pos, c);
            }
            Kind::Timestamp { secs, nanos, .. } => {
                secs.flush(c)?;
                nanos.flush(c)?;
                secs.position(pos, c);
                nanos.position(pos, c);
            }
            Kind::Decimal { data, scale, .. } => {
                scale.flush(c)?;
                data.position(pos, c);
                scale.position(pos, c);
            }
            Kind::Struct(_) => {}
            Kind::List { length, .. } | Kind::Map { length, .. } => {
                length.flush(c)?;
                length.position(pos, c);
            }
        }
        self.start = g;
        for ch in self.children_mut() {
            ch.start_group(c)?;
        }
        Ok(())
    }

    /// Closes the current row group: its statistics go to the index (when
    /// `indexed`) and into the stripe's.
    pub(super) fn end_group(&mut self, indexed: bool) {
        if indexed {
            let start = std::mem::take(&mut self.start);
            self.index.push(IndexEntry {
                start,
                stats: self.group.to_proto(),
            });
        }
        self.stripe.merge(&self.group);
        self.group = Stats::new(self.group.kind);
        for ch in self.children_mut() {
            ch.end_group(indexed);
        }
    }

    /// Bytes buffered for the current stripe.
    pub(super) fn buffered(&self) -> usize {
        let own = self.present.buffered()
            + match &self.kind {
                Kind::Bool(d) => d.buffered(),
                Kind::Byte(d) => d.buffered(),
                Kind::Int(d) => d.buffered(),
                Kind::Float(d) | Kind::Double(d) => d.buffered(),
                Kind::Bytes { data, length } => data.buffered() + length.buffered(),
                Kind::Timestamp { secs, nanos, .. } => secs.buffered() + nanos.buffered(),
                Kind::Decimal { data, scale, .. } => data.buffered() + scale.buffered(),
                Kind::Struct(ch) => ch.iter().map(Column::buffered).sum(),
                Kind::List { length, child } => length.buffered() + child.buffered(),
                Kind::Map { length, key, value } => {
                    length.buffered() + key.buffered() + value.buffered()
                }
            };
        own + self.index.len() * 64
    }

    /// Moves this column's streams (and its children's) for the finished
    /// stripe into `out`, and resets for the next stripe. The caller has
    /// ended the last row group.
    pub(super) fn finish_stripe(
        &mut self,
        indexed: bool,
        c: &mut Compressor,
        out: &mut StripeStreams,
    ) -> Result<(), OrcError> {
        let id = self.id;
        let has_present = self.present_materialized;
        // Row index.
        if indexed {
            let entries = std::mem::take(&mut self.index);
            let index = proto::RowIndex {
                entry: entries
                    .into_iter()
                    .map(|e| {
                        let mut positions = Vec::new();
                        if has_present {
                            positions.extend(e.start.present.unwrap_or_default());
                        }
                        positions.extend(e.start.data);
                        proto::RowIndexEntry {
                            positions,
                            statistics: Some(e.stats),
                        }
                    })
                    .collect(),
            };
            let bytes = c.whole(&prost::Message::encode_to_vec(&index))?;
            out.index.push(stream(stream_kind::ROW_INDEX, id, bytes));
        }
        let present = self.present.take(c)?;
        if has_present {
            out.data.push(stream(stream_kind::PRESENT, id, present));
        }
        let enc = match &mut self.kind {
            Kind::Bool(d) => {
                out.data.push(stream(stream_kind::DATA, id, d.take(c)?));
                encoding_kind::DIRECT
            }
            Kind::Byte(d) => {
                out.data.push(stream(stream_kind::DATA, id, d.take(c)?));
                encoding_kind::DIRECT
            }
            Kind::Int(d) => {
                out.data.push(stream(stream_kind::DATA, id, d.take(c)?));
                encoding_kind::DIRECT_V2
            }
            Kind::Float(d) | Kind::Double(d) => {
                out.data.push(stream(stream_kind::DATA, id, d.take(c)?));
                encoding_kind::DIRECT
            }
            Kind::Bytes { data, length } => {
                out.data.push(stream(stream_kind::DATA, id, data.take(c)?));
                out.data
                    .push(stream(stream_kind::LENGTH, id, length.take(c)?));
                encoding_kind::DIRECT_V2
            }
            Kind::Timestamp { secs, nanos, .. } => {
                out.data.push(stream(stream_kind::DATA, id, secs.take(c)?));
                out.data
                    .push(stream(stream_kind::SECONDARY, id, nanos.take(c)?));
                encoding_kind::DIRECT_V2
            }
            Kind::Decimal { data, scale, .. } => {
                out.data.push(stream(stream_kind::DATA, id, data.take(c)?));
                out.data
                    .push(stream(stream_kind::SECONDARY, id, scale.take(c)?));
                encoding_kind::DIRECT_V2
            }
            Kind::Struct(_) => encoding_kind::DIRECT,
            Kind::List { length, .. } | Kind::Map { length, .. } => {
                out.data
                    .push(stream(stream_kind::LENGTH, id, length.take(c)?));
                encoding_kind::DIRECT_V2
            }
        };
        debug_assert_eq!(out.encodings.len(), id as usize);
        out.encodings.push(proto::ColumnEncoding {
            kind: Some(enc),
            ..Default::default()
        });
        out.stats.push(self.stripe.to_proto());
        self.file.merge(&self.stripe);
        self.stripe = Stats::new(self.stripe.kind);
        self.present_materialized = false;
        self.present_count = 0;
        self.start = GroupStart::default();
        for ch in self.children_mut() {
            ch.finish_stripe(indexed, c, out)?;
        }
        Ok(())
    }

    /// File statistics of this column and its children, pre-order.
    pub(super) fn file_stats(&mut self, out: &mut Vec<proto::ColumnStatistics>) {
        out.push(self.file.to_proto());
        for ch in self.children_mut() {
            ch.file_stats(out);
        }
    }
}

enum OffsetsRef<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

fn write_bytes<O: OffsetSizeTrait>(
    offsets: &[O],
    bytes: &[u8],
    valid: &[Range<usize>],
    data: &mut OutStream,
    length: &mut IntRle,
    st: &mut Stats,
    c: &mut Compressor,
) -> Result<(), OrcError> {
    for r in valid {
        let (a, b) = (offsets[r.start].as_usize(), offsets[r.end].as_usize());
        data.write(&bytes[a..b], c)?;
        for i in r.clone() {
            let (s, e) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
            length.push((e - s) as i64, c)?;
            st.bytes(&bytes[s..e]);
        }
    }
    Ok(())
}

/// Writes the LENGTH of each non-null list/map and collects the child ranges.
fn lengths<O: OffsetSizeTrait>(
    offsets: &[O],
    valid: &[Range<usize>],
    length: &mut IntRle,
    child_ranges: &mut Vec<Range<usize>>,
    c: &mut Compressor,
) -> Result<(), OrcError> {
    for r in valid {
        for i in r.clone() {
            let (s, e) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
            length.push((e - s) as i64, c)?;
            if e > s {
                match child_ranges.last_mut() {
                    Some(last) if last.end == s => last.end = e,
                    _ => child_ranges.push(s..e),
                }
            }
        }
    }
    Ok(())
}

/// ORC's nanosecond encoding: trailing decimal zeros are stripped and their
/// count (minus one, when at least two) goes in the low 3 bits.
fn encode_nanos(ns: i64) -> i64 {
    if ns == 0 {
        return 0;
    }
    if ns % 100 != 0 {
        return ns << 3;
    }
    let mut v = ns / 100;
    let mut zeros = 1;
    while v % 10 == 0 && zeros < 7 {
        v /= 10;
        zeros += 1;
    }
    (v << 3) | zeros
}
