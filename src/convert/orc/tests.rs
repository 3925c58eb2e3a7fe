//! Round trips through orc-rust's reader (an independent implementation).

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::*;
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;

use super::*;

/// xorshift64*: deterministic data without a rand dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn nulls(rng: &mut Rng, len: usize, percent: u64) -> Option<NullBuffer> {
    if percent == 0 || rng.chance(20) {
        return None;
    }
    Some(NullBuffer::from(
        (0..len)
            .map(|_| !rng.chance(percent))
            .collect::<Vec<bool>>(),
    ))
}

/// Integers in runs of the shapes RLE v2 distinguishes.
fn ints(rng: &mut Rng, len: usize, min: i64, max: i64) -> Vec<i64> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let run = 1 + rng.below(700) as usize;
        let base =
            min.wrapping_add((rng.next() % (max.abs_diff(min).saturating_add(1)).max(1)) as i64);
        match rng.below(6) {
            0 => out.extend(std::iter::repeat_n(base, run)),
            1 => {
                let step = rng.below(7) as i64 - 3;
                let mut v = base;
                for _ in 0..run {
                    out.push(v.clamp(min, max));
                    v = v.saturating_add(step);
                }
            }
            2 => out.extend(
                (0..run).map(|_| [min, max, 0, -1, 1][rng.below(5) as usize].clamp(min, max)),
            ),
            3 => out.extend((0..run).map(|_| (rng.below(16) as i64).clamp(min, max))),
            _ => out.extend((0..run).map(|_| {
                min.wrapping_add((rng.next() % (max.abs_diff(min).saturating_add(1)).max(1)) as i64)
            })),
        }
    }
    out.truncate(len);
    out
}

const WORDS: &[&str] = &[
    "",
    "a",
    "héllo",
    "日本語テキスト",
    "🦀 crab",
    "x\u{0}y",
    "line\nbreak",
    "Zürich",
];

fn gen_string(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(4) {
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    if rng.chance(5) {
        s.push_str(&"long".repeat(400)); // longer than the statistics limit
    }
    s
}

/// A random array of `dt` with nulls at every level.
fn gen_array(rng: &mut Rng, dt: &DataType, len: usize, null_pct: u64) -> ArrayRef {
    let nb = nulls(rng, len, null_pct);
    match dt {
        DataType::Boolean => Arc::new(BooleanArray::new(
            (0..len)
                .map(|_| {
                    let p = if rng.chance(50) { 90 } else { 30 };
                    rng.chance(p)
                })
                .collect(),
            nb,
        )),
        DataType::Int8 => Arc::new(Int8Array::new(
            ints(rng, len, i8::MIN.into(), i8::MAX.into())
                .into_iter()
                .map(|v| v as i8)
                .collect(),
            nb,
        )),
        DataType::Int16 => Arc::new(Int16Array::new(
            ints(rng, len, i16::MIN.into(), i16::MAX.into())
                .into_iter()
                .map(|v| v as i16)
                .collect(),
            nb,
        )),
        DataType::Int32 => Arc::new(Int32Array::new(
            ints(rng, len, i32::MIN.into(), i32::MAX.into())
                .into_iter()
                .map(|v| v as i32)
                .collect(),
            nb,
        )),
        DataType::Int64 => Arc::new(Int64Array::new(
            ints(rng, len, i64::MIN, i64::MAX).into(),
            nb,
        )),
        DataType::Date32 => Arc::new(Date32Array::new(
            ints(rng, len, -800_000, 800_000)
                .into_iter()
                .map(|v| v as i32)
                .collect(),
            nb,
        )),
        DataType::Float32 => Arc::new(Float32Array::new(
            (0..len)
                .map(|_| match rng.below(10) {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    2 => -0.0,
                    _ => (rng.next() as i64 as f32) / 1e9,
                })
                .collect(),
            nb,
        )),
        DataType::Float64 => Arc::new(Float64Array::new(
            (0..len)
                .map(|_| match rng.below(10) {
                    0 => f64::INFINITY,
                    1 => f64::MIN_POSITIVE,
                    _ => f64::from_bits(rng.next() & !(0x7ff << 52) | (rng.below(2046) + 1) << 52),
                })
                .collect(),
            nb,
        )),
        DataType::Utf8 => Arc::new(StringArray::from_iter((0..len).map(|i| {
            nb.as_ref()
                .is_none_or(|n| n.is_valid(i))
                .then(|| gen_string(rng))
        }))),
        DataType::LargeUtf8 => Arc::new(LargeStringArray::from_iter((0..len).map(|i| {
            nb.as_ref()
                .is_none_or(|n| n.is_valid(i))
                .then(|| gen_string(rng))
        }))),
        DataType::Binary => Arc::new(BinaryArray::from_iter((0..len).map(|i| {
            nb.as_ref().is_none_or(|n| n.is_valid(i)).then(|| {
                (0..rng.below(20))
                    .map(|_| rng.next() as u8)
                    .collect::<Vec<u8>>()
            })
        }))),
        DataType::Timestamp(unit, None) => {
            let per_sec: i64 = match unit {
                TimeUnit::Second => 1,
                TimeUnit::Millisecond => 1_000,
                TimeUnit::Microsecond => 1_000_000,
                TimeUnit::Nanosecond => 1_000_000_000,
            };
            let vals: Vec<i64> = (0..len)
                .map(|_| {
                    // 1900..2100, plus values around 1970 and 2015.
                    let secs = match rng.below(4) {
                        0 => rng.below(20) as i64 - 10,
                        1 => 1_420_070_400 + rng.below(20) as i64 - 10,
                        _ => -2_208_988_800 + rng.below(6_311_390_400) as i64,
                    };
                    let frac = match rng.below(3) {
                        0 => 0,
                        1 => rng.below(1000) as i64 * (per_sec / 1000).max(1),
                        _ => rng.below(per_sec as u64) as i64,
                    };
                    let v = secs * per_sec + frac;
                    // Skip the ORC-763 window (see its test below).
                    if v < 0 && v >= -per_sec && (v + per_sec) * (1_000_000_000 / per_sec) > 999_999
                    {
                        -per_sec
                    } else {
                        v
                    }
                })
                .collect();
            let a: ArrayRef = match unit {
                TimeUnit::Second => Arc::new(TimestampSecondArray::new(vals.into(), nb)),
                TimeUnit::Millisecond => Arc::new(TimestampMillisecondArray::new(vals.into(), nb)),
                TimeUnit::Microsecond => Arc::new(TimestampMicrosecondArray::new(vals.into(), nb)),
                TimeUnit::Nanosecond => Arc::new(TimestampNanosecondArray::new(vals.into(), nb)),
            };
            a
        }
        DataType::Decimal128(p, s) => {
            let max = 10i128.pow(u32::from(*p)) - 1;
            let vals: Vec<i128> = (0..len)
                .map(|_| match rng.below(5) {
                    0 => max,
                    1 => -max,
                    2 => rng.below(1000) as i128 - 500,
                    _ => (((rng.next() as i128) << 64) | rng.next() as i128) % (max + 1),
                })
                .collect();
            Arc::new(
                Decimal128Array::new(vals.into(), nb)
                    .with_precision_and_scale(*p, *s)
                    .unwrap(),
            )
        }
        DataType::Struct(fields) => {
            let cols = fields
                .iter()
                .map(|f| gen_array(rng, f.data_type(), len, null_pct))
                .collect();
            Arc::new(StructArray::new(fields.clone(), cols, nb))
        }
        DataType::List(f) => {
            let mut offsets = vec![0i32];
            for i in 0..len {
                let null = nb.as_ref().is_some_and(|n| n.is_null(i));
                // Null lists sometimes keep elements (arrow allows it; ORC drops them).
                let n = if null && rng.chance(70) {
                    0
                } else {
                    rng.below(5) as i32
                };
                offsets.push(offsets[i] + n);
            }
            let values = gen_array(
                rng,
                f.data_type(),
                *offsets.last().unwrap() as usize,
                null_pct,
            );
            Arc::new(ListArray::new(
                f.clone(),
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                values,
                nb,
            ))
        }
        DataType::Map(entries, false) => {
            let DataType::Struct(kv) = entries.data_type() else {
                unreachable!()
            };
            let mut offsets = vec![0i32];
            for i in 0..len {
                let null = nb.as_ref().is_some_and(|n| n.is_null(i));
                let n = if null { 0 } else { rng.below(4) as i32 };
                offsets.push(offsets[i] + n);
            }
            let total = *offsets.last().unwrap() as usize;
            let keys = gen_array(rng, kv[0].data_type(), total, 0);
            let values = gen_array(rng, kv[1].data_type(), total, null_pct);
            let entries_arr = StructArray::new(kv.clone(), vec![keys, values], None);
            Arc::new(MapArray::new(
                entries.clone(),
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                entries_arr,
                nb,
                false,
            ))
        }
        other => panic!("generator lacks {other}"),
    }
}

fn list(dt: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", dt, true)))
}

fn map(k: DataType, v: DataType) -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", k, false),
                Field::new("value", v, true),
            ])),
            false,
        )),
        false,
    )
}

fn strukt(fields: Vec<(&str, DataType)>) -> DataType {
    DataType::Struct(Fields::from(
        fields
            .into_iter()
            .map(|(n, t)| Field::new(n, t, true))
            .collect::<Vec<_>>(),
    ))
}

fn flat_types() -> Vec<(&'static str, DataType)> {
    vec![
        ("b", DataType::Boolean),
        ("i8", DataType::Int8),
        ("i16", DataType::Int16),
        ("i32", DataType::Int32),
        ("i64", DataType::Int64),
        ("f32", DataType::Float32),
        ("f64", DataType::Float64),
        ("s", DataType::Utf8),
        ("bin", DataType::Binary),
        ("d", DataType::Date32),
        ("ts_ms", DataType::Timestamp(TimeUnit::Millisecond, None)),
        ("ts_us", DataType::Timestamp(TimeUnit::Microsecond, None)),
        ("ts_ns", DataType::Timestamp(TimeUnit::Nanosecond, None)),
        ("dec", DataType::Decimal128(10, 2)),
        ("dec38", DataType::Decimal128(38, 6)),
        ("dec38_0", DataType::Decimal128(38, 0)),
    ]
}

/// Every type, with struct/list/map nested three deep.
fn all_types_schema() -> SchemaRef {
    let mut fields = flat_types();
    let inner = strukt(vec![
        ("x", DataType::Int32),
        ("tags", list(DataType::Utf8)),
        ("m", map(DataType::Utf8, DataType::Decimal128(20, 4))),
    ]);
    fields.push((
        "st",
        strukt(vec![
            ("inner", inner.clone()),
            ("when", DataType::Timestamp(TimeUnit::Millisecond, None)),
        ]),
    ));
    fields.push(("lst", list(list(inner.clone()))));
    fields.push(("mp", map(DataType::Utf8, list(map(DataType::Int64, inner)))));
    fields.push(("lmap", list(map(DataType::Int32, list(DataType::Boolean)))));
    Arc::new(Schema::new(
        fields
            .into_iter()
            .map(|(n, t)| Field::new(n, t, true))
            .collect::<Vec<_>>(),
    ))
}

fn batch(rng: &mut Rng, schema: &SchemaRef, len: usize, null_pct: u64) -> RecordBatch {
    let cols = schema
        .fields()
        .iter()
        .map(|f| gen_array(rng, f.data_type(), len, null_pct))
        .collect();
    RecordBatch::try_new(schema.clone(), cols).unwrap()
}

fn small_opts(compression: OrcCompression) -> OrcOptions {
    OrcOptions {
        compression,
        stripe_size_bytes: 200 * 1024,
        row_index_stride: 1000,
        compression_block_size: 8 * 1024,
        ..OrcOptions::default()
    }
}

fn write_orc(schema: &SchemaRef, batches: &[RecordBatch], opts: &OrcOptions) -> Vec<u8> {
    let mut w = OrcWriter::build(Vec::new(), schema.clone(), opts).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap()
}

fn read_orc(bytes: Vec<u8>, schema: &SchemaRef) -> Vec<RecordBatch> {
    let reader = orc_rust::ArrowReaderBuilder::try_new(Bytes::from(bytes))
        .unwrap()
        .with_schema(schema.clone())
        .with_batch_size(3000)
        .build();
    reader.collect::<Result<Vec<_>, _>>().unwrap()
}

fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Vec<ArrayRef> {
    (0..schema.fields().len())
        .map(|i| {
            let cols: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
            arrow_select_concat(&cols)
        })
        .collect()
}

fn arrow_select_concat(arrays: &[&dyn Array]) -> ArrayRef {
    arrow_select::concat::concat(arrays).unwrap()
}

fn assert_round_trip(schema: &SchemaRef, input: &[RecordBatch], opts: &OrcOptions) -> usize {
    let bytes = write_orc(schema, input, opts);
    let size = bytes.len();
    let output = read_orc(bytes, schema);
    let want = concat(schema, input);
    let got = concat(schema, &output);
    for (i, f) in schema.fields().iter().enumerate() {
        assert_eq!(want[i].len(), got[i].len(), "column {} length", f.name());
        if want[i].as_ref() != got[i].as_ref() {
            // Find the first differing row for a readable failure.
            for r in 0..want[i].len() {
                let (a, b) = (want[i].slice(r, 1), got[i].slice(r, 1));
                assert!(
                    a.as_ref() == b.as_ref(),
                    "column {} row {r}: wrote {a:?}\nread {b:?}",
                    f.name()
                );
            }
            panic!("column {} differs", f.name());
        }
    }
    size
}

#[test]
fn round_trip_all_types_every_compression() {
    let schema = all_types_schema();
    for compression in [
        OrcCompression::None,
        OrcCompression::Zlib,
        OrcCompression::Snappy,
        OrcCompression::Zstd,
    ] {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let batches: Vec<_> = [1, 700, 4096, 2500, 0, 3333]
            .iter()
            .enumerate()
            .map(|(i, &n)| batch(&mut rng, &schema, n, [10, 0, 30, 50, 10, 5][i]))
            .collect();
        let opts = small_opts(compression);
        assert_round_trip(&schema, &batches, &opts);
        // Several stripes were written.
        let bytes = write_orc(&schema, &batches, &opts);
        let reader = orc_rust::ArrowReaderBuilder::try_new(Bytes::from(bytes)).unwrap();
        assert!(
            reader.file_metadata().stripe_metadatas().len() > 1,
            "{compression:?}"
        );
    }
}

#[test]
fn round_trip_without_index_and_default_sizes() {
    let schema = all_types_schema();
    let mut rng = Rng(7);
    let batches: Vec<_> = (0..3).map(|_| batch(&mut rng, &schema, 3000, 20)).collect();
    let opts = OrcOptions {
        row_index_stride: 0,
        ..OrcOptions::default()
    };
    assert_round_trip(&schema, &batches, &opts);
    assert_round_trip(&schema, &batches, &OrcOptions::default());
}

#[test]
fn round_trip_all_nulls_and_no_nulls() {
    let schema = all_types_schema();
    let mut rng = Rng(99);
    let all_null: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| arrow_array::new_null_array(f.data_type(), 1500))
        .collect();
    let all_null = RecordBatch::try_new(schema.clone(), all_null).unwrap();
    let no_null = batch(&mut rng, &schema, 2500, 0);
    assert_round_trip(
        &schema,
        &[all_null.clone(), no_null.clone(), all_null],
        &small_opts(OrcOptions::default().compression),
    );
}

#[test]
fn sliced_batches_round_trip() {
    let schema = all_types_schema();
    let mut rng = Rng(3);
    let b = batch(&mut rng, &schema, 5000, 25);
    let parts = [b.slice(0, 1234), b.slice(1234, 1), b.slice(1235, 3765)];
    assert_round_trip(&schema, &parts, &small_opts(OrcCompression::Zstd));
}

#[test]
fn empty_file_is_readable() {
    let schema = all_types_schema();
    let bytes = write_orc(&schema, &[], &OrcOptions::default());
    assert_eq!(&bytes[..3], b"ORC");
    let reader = orc_rust::ArrowReaderBuilder::try_new(Bytes::from(bytes.clone())).unwrap();
    assert_eq!(reader.file_metadata().number_of_rows(), 0);
    assert!(read_orc(bytes, &schema).iter().all(|b| b.num_rows() == 0));
}

#[test]
fn specific_values_round_trip() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("dec", DataType::Decimal128(38, 10), true),
        Field::new("d", DataType::Date32, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let ts = TimestampMicrosecondArray::from(vec![
        Some(0),
        Some(-1_000_000),             // 1969-12-31T23:59:59
        Some(-1_000_001),             // just under, with micros
        Some(-86_400_000_001),        // pre-1970 with micros
        Some(-2_208_988_800_123_456), // 1900 with micros
        Some(1_420_070_399_999_999),  // just before ORC's epoch
        Some(1_420_070_400_000_000),
        Some(1_700_000_000_000_001),
        None,
        Some(253_402_300_799_999_999), // 9999-12-31T23:59:59.999999
    ]);
    let max = 10i128.pow(38) - 1;
    let dec = Decimal128Array::from(vec![
        Some(max),
        Some(-max),
        Some(0),
        Some(-1),
        Some(1),
        None,
        Some(i64::MIN as i128),
        Some(123_456_789_012_345_678_901_234_567),
        Some(-5),
        Some(10),
    ])
    .with_precision_and_scale(38, 10)
    .unwrap();
    let d = Date32Array::from(vec![
        Some(0),
        Some(-1),
        Some(-719_162),
        Some(2_932_896),
        None,
        Some(-25_000),
        Some(1),
        Some(19_000),
        Some(i32::MIN / 2),
        Some(-365),
    ]);
    let s = StringArray::from(vec![
        Some(""),
        Some("ü"),
        None,
        Some("𝄞"),
        Some("a\u{0}b"),
        Some("x"),
        Some(""),
        Some("zz"),
        Some("日本"),
        Some("end"),
    ]);
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(ts), Arc::new(dec), Arc::new(d), Arc::new(s)],
    )
    .unwrap();
    for c in [OrcCompression::None, OrcCompression::Snappy] {
        assert_round_trip(&schema, std::slice::from_ref(&b), &small_opts(c));
    }
}

#[test]
fn timestamps_in_the_orc763_window_read_back_as_orc_java_writes_them() {
    // ORC Java and C++ write -0.5 s as second 0 + 0.5e9 ns, and every reader
    // decodes that as +0.5 s (ORC-763). sluice writes the same bytes.
    let schema = Arc::new(Schema::new(vec![Field::new(
        "ts",
        DataType::Timestamp(TimeUnit::Millisecond, None),
        true,
    )]));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(TimestampMillisecondArray::from(vec![
            -500, -1, -1000, -1001, -1500,
        ]))],
    )
    .unwrap();
    let got = read_orc(write_orc(&schema, &[b], &OrcOptions::default()), &schema);
    let got = got[0]
        .column(0)
        .as_primitive::<TimestampMillisecondType>()
        .values()
        .to_vec();
    assert_eq!(got, vec![500, 999, -1000, -1001, -1500]);
}

#[test]
fn unsupported_types_are_refused_not_panicking() {
    for dt in [
        DataType::UInt32,
        DataType::Float16,
        DataType::Null,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        DataType::Decimal128(10, -2),
        DataType::Decimal256(40, 2),
        list(DataType::UInt8),
        strukt(vec![
            ("ok", DataType::Int32),
            (
                "bad",
                map(DataType::Utf8, DataType::Duration(TimeUnit::Second)),
            ),
        ]),
    ] {
        let schema = Arc::new(Schema::new(vec![Field::new("c", dt.clone(), true)]));
        let err = OrcWriter::try_new(Vec::new(), schema, &OrcOptions::default()).unwrap_err();
        assert!(
            matches!(err, OrcError::UnsupportedType { .. }),
            "{dt}: {err}"
        );
        assert_eq!(err.fault(), Fault::Config);
    }
}

#[test]
fn options_are_validated() {
    let schema = Arc::new(Schema::new(vec![Field::new("c", DataType::Int32, true)]));
    let bad = [
        OrcOptions {
            stripe_size_bytes: 8 * 1024 * 1024 - 1,
            ..OrcOptions::default()
        },
        OrcOptions {
            row_index_stride: 999,
            ..OrcOptions::default()
        },
        OrcOptions {
            compression_block_size: 1 << 23,
            ..OrcOptions::default()
        },
        OrcOptions {
            compression_block_size: 100,
            ..OrcOptions::default()
        },
        OrcOptions {
            bloom_filter_fpp: 0.0,
            ..OrcOptions::default()
        },
        OrcOptions {
            bloom_filter_fpp: 1.0,
            ..OrcOptions::default()
        },
        OrcOptions {
            bloom_filter_columns: vec!["nope".into()],
            ..OrcOptions::default()
        },
    ];
    for o in bad {
        let err = OrcWriter::try_new(Vec::new(), schema.clone(), &o).unwrap_err();
        assert!(matches!(err, OrcError::InvalidOption(_)), "{o:?}");
    }
    let ok = OrcOptions {
        row_index_stride: 0,
        bloom_filter_columns: vec!["c".into()],
        ..OrcOptions::default()
    };
    OrcWriter::try_new(Vec::new(), schema, &ok).unwrap();
}

#[test]
fn schema_mismatch_is_an_error() {
    let schema = Arc::new(Schema::new(vec![Field::new("c", DataType::Int32, true)]));
    let other = Arc::new(Schema::new(vec![Field::new("c", DataType::Int64, true)]));
    let b = RecordBatch::try_new(other, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
    let mut w = OrcWriter::try_new(Vec::new(), schema, &OrcOptions::default()).unwrap();
    assert!(matches!(w.write(&b), Err(OrcError::SchemaMismatch(_))));
}

fn id_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

/// Several stripes even for the small `id_batch` files.
fn id_opts(c: OrcCompression) -> OrcOptions {
    OrcOptions {
        stripe_size_bytes: 16 * 1024,
        ..small_opts(c)
    }
}

fn id_batch(from: i64, n: i64) -> RecordBatch {
    let mut ids = Int64Builder::new();
    let mut names = StringBuilder::new();
    for i in from..from + n {
        ids.append_value(i);
        if i % 7 == 0 {
            names.append_null();
        } else {
            names.append_value(format!("name-{i:08}"));
        }
    }
    RecordBatch::try_new(
        id_schema(),
        vec![Arc::new(ids.finish()), Arc::new(names.finish())],
    )
    .unwrap()
}

#[test]
fn statistics_are_written() {
    let schema = id_schema();
    let batches: Vec<_> = (0..5).map(|i| id_batch(i * 4000, 4000)).collect();
    let bytes = write_orc(&schema, &batches, &id_opts(OrcCompression::Snappy));
    let reader = orc_rust::ArrowReaderBuilder::try_new(Bytes::from(bytes)).unwrap();
    let meta = reader.file_metadata();
    assert_eq!(meta.number_of_rows(), 20_000);
    assert_eq!(meta.row_index_stride(), Some(1000));
    let stats = meta.column_file_statistics();
    assert_eq!(stats.len(), 3);
    assert_eq!(stats[0].number_of_values(), 20_000);
    assert_eq!(stats[1].number_of_values(), 20_000);
    assert!(!stats[1].has_null());
    match stats[1].type_statistics() {
        Some(orc_rust::statistics::TypeStatistics::Integer { min, max, sum }) => {
            assert_eq!((*min, *max, *sum), (0, 19_999, Some(19_999 * 20_000 / 2)));
        }
        other => panic!("{other:?}"),
    }
    let nulls = (0..20_000).filter(|i| i % 7 == 0).count() as u64;
    assert_eq!(stats[2].number_of_values(), 20_000 - nulls);
    assert!(stats[2].has_null());
    match stats[2].type_statistics() {
        Some(orc_rust::statistics::TypeStatistics::String {
            lower_bound,
            upper_bound,
            ..
        }) => {
            // 0 and 19,999 are multiples of 7, so null.
            assert_eq!(
                (lower_bound.as_str(), upper_bound.as_str()),
                ("name-00000001", "name-00019998")
            );
        }
        other => panic!("{other:?}"),
    }
    // Stripe statistics add up to the file's.
    let stripes = meta.stripe_metadatas();
    assert!(stripes.len() > 1);
    let sum: u64 = stripes
        .iter()
        .map(|s| s.column_statistics()[1].number_of_values())
        .sum();
    assert_eq!(sum, 20_000);
}

#[test]
fn row_index_statistics_drive_predicate_pushdown() {
    let schema = id_schema();
    let batches: Vec<_> = (0..5).map(|i| id_batch(i * 4000, 4000)).collect();
    let bytes = write_orc(
        &schema,
        &batches,
        &OrcOptions {
            stripe_size_bytes: 64 << 20,
            ..small_opts(OrcCompression::Zlib)
        },
    );
    let reader = orc_rust::ArrowReaderBuilder::try_new(Bytes::from(bytes))
        .unwrap()
        .with_predicate(orc_rust::Predicate::gte(
            "id",
            orc_rust::PredicateValue::Int64(Some(15_500)),
        ))
        .build();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    // Row groups of 1000 rows: the group holding 15,500 and the later ones.
    assert_eq!(rows, 5000);
}

/// A writer that records how much was written, to see stripes leave early.
struct Counting(Arc<std::sync::atomic::AtomicUsize>);
impl std::io::Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .fetch_add(buf.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn stripes_are_streamed_out_with_bounded_buffering() {
    let schema = all_types_schema();
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let opts = OrcOptions {
        stripe_size_bytes: 256 * 1024,
        ..small_opts(OrcCompression::Snappy)
    };
    let mut w = OrcWriter::build(Counting(written.clone()), schema.clone(), &opts).unwrap();
    let mut rng = Rng(11);
    let mut max_buffered = 0;
    for _ in 0..12 {
        w.write(&batch(&mut rng, &schema, 1000, 10)).unwrap();
        max_buffered = max_buffered.max(w.root.buffered());
    }
    assert!(
        written.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "nothing written before finish"
    );
    // One stripe plus at most one batch's growth.
    assert!(max_buffered < 256 * 1024 + 256 * 1024, "{max_buffered}");
    let before = written.load(std::sync::atomic::Ordering::Relaxed) as u64;
    assert_eq!(before, w.bytes_written());
    w.finish().unwrap();
}

#[test]
fn writer_is_send() {
    fn is_send<T: Send>() {}
    is_send::<OrcWriter<Vec<u8>>>();
}

/// Writes sample files for `tests/test_orc.py` (pyarrow and pyorc read them).
/// Run with `SLUICE_ORC_OUT=dir cargo test --lib convert::orc -- --ignored`.
#[test]
#[ignore = "helper for tests/test_orc.py"]
fn write_sample_files_for_python() {
    let Ok(dir) = std::env::var("SLUICE_ORC_OUT") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    let schema = all_types_schema();
    for (name, c) in [
        ("none", OrcCompression::None),
        ("zlib", OrcCompression::Zlib),
        ("snappy", OrcCompression::Snappy),
        ("zstd", OrcCompression::Zstd),
    ] {
        let mut rng = Rng(42);
        let batches: Vec<_> = (0..6)
            .map(|i| batch(&mut rng, &schema, 1500, [0, 10, 30, 5, 60, 10][i]))
            .collect();
        let bytes = write_orc(&schema, &batches, &small_opts(c));
        std::fs::write(dir.join(format!("all_{name}.orc")), bytes).unwrap();
        // One stripe with 9 row groups: seeks land mid-stripe.
        let bytes = write_orc(
            &schema,
            &batches,
            &OrcOptions {
                stripe_size_bytes: 64 << 20,
                ..small_opts(c)
            },
        );
        std::fs::write(dir.join(format!("all_idx_{name}.orc")), bytes).unwrap();
        // Default stripe and index sizes, for size comparisons.
        let bytes = write_orc(
            &schema,
            &batches,
            &OrcOptions {
                compression: c,
                ..OrcOptions::default()
            },
        );
        std::fs::write(dir.join(format!("all_default_{name}.orc")), bytes).unwrap();
        // The same rows as Arrow IPC: what the Python readers must see.
        let file = std::fs::File::create(dir.join(format!("all_{name}.arrow"))).unwrap();
        let mut ipc = arrow_ipc::writer::FileWriter::try_new(file, &schema).unwrap();
        for b in &batches {
            ipc.write(b).unwrap();
        }
        ipc.finish().unwrap();
    }
    // Log-like rows (low-cardinality strings, increasing timestamps), default options:
    // for size comparisons with pyarrow's writer, which dictionary-encodes such strings.
    let events = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("level", DataType::Utf8, true),
        Field::new("path", DataType::Utf8, true),
        Field::new("user_id", DataType::Int64, true),
        Field::new("latency", DataType::Float64, true),
    ]));
    let mut rng = Rng(5);
    let mut ts = 1_700_000_000_000i64;
    let batches: Vec<_> = (0..50)
        .map(|_| {
            let n = 2048;
            let tsv: Vec<i64> = (0..n)
                .map(|_| {
                    ts += rng.below(50) as i64;
                    ts
                })
                .collect();
            let levels = ["INFO", "WARN", "ERROR", "DEBUG", "TRACE"];
            let level: Vec<&str> = (0..n).map(|_| levels[rng.below(5) as usize]).collect();
            let path: Vec<String> = (0..n)
                .map(|_| format!("/api/v1/resource/{}", rng.below(50)))
                .collect();
            let user: Vec<i64> = (0..n).map(|_| rng.below(1000) as i64).collect();
            let lat: Vec<f64> = (0..n).map(|_| rng.below(100_000) as f64 / 100.0).collect();
            RecordBatch::try_new(
                events.clone(),
                vec![
                    Arc::new(TimestampMillisecondArray::from(tsv)),
                    Arc::new(StringArray::from(level)),
                    Arc::new(StringArray::from(path)),
                    Arc::new(Int64Array::from(user)),
                    Arc::new(Float64Array::from(lat)),
                ],
            )
            .unwrap()
        })
        .collect();
    for (name, c) in [
        ("none", OrcCompression::None),
        ("zlib", OrcCompression::Zlib),
        ("snappy", OrcCompression::Snappy),
        ("zstd", OrcCompression::Zstd),
    ] {
        let bytes = write_orc(
            &events,
            &batches,
            &OrcOptions {
                compression: c,
                ..OrcOptions::default()
            },
        );
        std::fs::write(dir.join(format!("events_default_{name}.orc")), bytes).unwrap();
    }
    // A simple file with known values for exact checks (row index seeks).
    let batches: Vec<_> = (0..5).map(|i| id_batch(i * 4000, 4000)).collect();
    for (name, c) in [
        ("none", OrcCompression::None),
        ("zlib", OrcCompression::Zlib),
        ("snappy", OrcCompression::Snappy),
        ("zstd", OrcCompression::Zstd),
    ] {
        let bytes = write_orc(&id_schema(), &batches, &id_opts(c));
        std::fs::write(dir.join(format!("ids_{name}.orc")), bytes).unwrap();
        let bytes = write_orc(
            &id_schema(),
            &batches,
            &OrcOptions {
                compression: c,
                ..OrcOptions::default()
            },
        );
        std::fs::write(dir.join(format!("ids_default_{name}.orc")), bytes).unwrap();
    }
}
