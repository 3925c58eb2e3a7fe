//! Unit tests of the JSON deserializers and the batch builder.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimestampMillisecondType,
};
use arrow_array::{Array, RecordBatch};

use super::number::looks_numeric;
use super::*;

fn schema(cols: &[(&str, &str)]) -> Schema {
    Schema::parse(cols.iter().copied()).unwrap()
}

fn openx() -> Deserializer {
    Deserializer::default()
}

fn hive(formats: &[&str]) -> Deserializer {
    Deserializer::Hive {
        timestamp_formats: formats.iter().map(|s| s.to_string()).collect(),
    }
}

/// Builds one batch from `records`, returning it and the per-record results.
fn build(
    cols: &[(&str, &str)],
    d: &Deserializer,
    records: &[&str],
) -> (RecordBatch, Vec<Result<(), RecordError>>) {
    let mut b = RecordBatchBuilder::new(&schema(cols), d).unwrap();
    let results = records.iter().map(|r| b.append(r.as_bytes())).collect();
    (b.finish_batch(), results)
}

fn one(ty: &str, d: &Deserializer, json_value: &str) -> Result<RecordBatch, RecordError> {
    let mut b = RecordBatchBuilder::new(&schema(&[("v", ty)]), d).unwrap();
    b.append(format!("{{\"v\":{json_value}}}").as_bytes())?;
    Ok(b.finish_batch())
}

fn code(ty: &str, d: &Deserializer, json_value: &str) -> &'static str {
    match one(ty, d, json_value) {
        Ok(batch) => panic!("{ty} accepted {json_value}: {:?}", batch.column(0)),
        Err(e) => e.code,
    }
}

fn ts(d: &Deserializer, json_value: &str) -> Option<i64> {
    let batch = one("timestamp", d, json_value).ok()?;
    let col = batch.column(0).as_primitive::<TimestampMillisecondType>();
    Some(col.value(0))
}

const T0: i64 = 1_486_480_381_000; // 2017-02-07T15:13:01Z

#[test]
fn primitives_and_extremes() {
    let cols = [
        ("b", "boolean"),
        ("t", "tinyint"),
        ("s", "smallint"),
        ("i", "int"),
        ("l", "bigint"),
        ("f", "float"),
        ("d", "double"),
        ("str", "string"),
        ("dt", "date"),
        ("bin", "binary"),
    ];
    let (batch, res) = build(
        &cols,
        &openx(),
        &[
            r#"{"b":true,"t":-128,"s":32767,"i":-2147483648,"l":-9223372036854775808,"f":3.5,"d":1e308,"str":"h\u00e9llo \"w\" \ud83d\ude00 日本","dt":"2024-02-29","bin":"AAEC/w=="}"#,
            r#"{"b":false,"t":127,"l":9223372036854775807,"d":-0.0,"f":-1.5e-3,"str":"","dt":"1969-12-31","bin":""}"#,
            r#"{}"#,
        ],
    );
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    assert_eq!(batch.num_rows(), 3);
    let b = batch.column(0).as_boolean();
    assert!(b.value(0) && !b.value(1) && b.is_null(2));
    assert_eq!(
        batch.column(1).as_primitive::<Int8Type>().values()[..2],
        [-128, 127]
    );
    assert_eq!(batch.column(2).as_primitive::<Int16Type>().value(0), 32767);
    assert!(batch.column(2).is_null(1));
    assert_eq!(
        batch.column(3).as_primitive::<Int32Type>().value(0),
        i32::MIN
    );
    let l = batch.column(4).as_primitive::<Int64Type>();
    assert_eq!((l.value(0), l.value(1)), (i64::MIN, i64::MAX));
    assert_eq!(batch.column(5).as_primitive::<Float32Type>().value(0), 3.5);
    assert_eq!(
        batch.column(5).as_primitive::<Float32Type>().value(1),
        -1.5e-3
    );
    let d = batch.column(6).as_primitive::<Float64Type>();
    assert_eq!(d.value(0), 1e308);
    assert!(d.value(1) == 0.0 && d.value(1).is_sign_negative());
    let s = batch.column(7).as_string::<i32>();
    assert_eq!(s.value(0), "h\u{e9}llo \"w\" \u{1F600} 日本");
    assert_eq!(s.value(1), "");
    assert!(s.is_null(2));
    let dt = batch.column(8).as_primitive::<Date32Type>();
    assert_eq!((dt.value(0), dt.value(1)), (19782, -1));
    let bin = batch.column(9).as_binary::<i32>();
    assert_eq!(bin.value(0), [0, 1, 2, 255]);
    assert_eq!(bin.value(1), b"");
    for col in batch.columns() {
        assert!(col.is_null(2));
    }
}

#[test]
fn out_of_range_and_wrong_types() {
    let o = openx();
    let h = hive(&[]);
    assert_eq!(code("tinyint", &o, "128"), codes::OUT_OF_RANGE);
    assert_eq!(code("tinyint", &o, "-129"), codes::OUT_OF_RANGE);
    assert_eq!(code("smallint", &o, "40000"), codes::OUT_OF_RANGE);
    assert_eq!(code("int", &o, "2147483648"), codes::OUT_OF_RANGE);
    // 18 digits (the u64 path) and 19 (the checked path), both sides of bigint's range.
    assert_eq!(code("int", &o, "-999999999999999999"), codes::OUT_OF_RANGE);
    let at = |v: &str| {
        let batch = one("bigint", &o, v).unwrap();
        batch.column(0).as_primitive::<Int64Type>().value(0)
    };
    assert_eq!(at("-999999999999999999"), -999_999_999_999_999_999);
    assert_eq!(at("9223372036854775807"), i64::MAX);
    assert_eq!(
        code("bigint", &o, "9223372036854775808"),
        codes::OUT_OF_RANGE
    );
    assert_eq!(
        code("bigint", &o, "123456789012345678901234567890123456789012"),
        codes::OUT_OF_RANGE
    );
    assert_eq!(code("bigint", &o, "1.5"), codes::TYPE_MISMATCH);
    assert_eq!(code("bigint", &o, "1e3"), codes::TYPE_MISMATCH);
    assert_eq!(code("bigint", &o, "true"), codes::TYPE_MISMATCH);
    assert_eq!(code("bigint", &o, "[1]"), codes::TYPE_MISMATCH);
    assert_eq!(code("bigint", &o, "\"abc\""), codes::INVALID_VALUE);
    assert_eq!(code("float", &o, "1e39"), codes::OUT_OF_RANGE);
    assert_eq!(code("double", &o, "1e309"), codes::OUT_OF_RANGE);
    assert_eq!(code("boolean", &o, "1"), codes::TYPE_MISMATCH);
    assert_eq!(code("boolean", &o, "\"yes\""), codes::INVALID_VALUE);
    assert_eq!(code("struct<a:int>", &o, "[1]"), codes::TYPE_MISMATCH);
    assert_eq!(code("array<int>", &o, "{}"), codes::TYPE_MISMATCH);
    assert_eq!(code("map<string,int>", &o, "[]"), codes::TYPE_MISMATCH);
    assert_eq!(code("binary", &o, "\"not base64!\""), codes::INVALID_VALUE);
    assert_eq!(code("date", &o, "\"2023-02-29\""), codes::INVALID_TIMESTAMP);
    assert_eq!(code("date", &o, "20230101"), codes::TYPE_MISMATCH);
    // Hive rejects numbers (and booleans) given as strings, and nested JSON for strings.
    assert_eq!(code("int", &h, "\"123\""), codes::TYPE_MISMATCH);
    assert_eq!(code("double", &h, "\"1.5\""), codes::TYPE_MISMATCH);
    assert_eq!(code("decimal(5,2)", &h, "\"1.5\""), codes::TYPE_MISMATCH);
    assert_eq!(code("boolean", &h, "\"true\""), codes::TYPE_MISMATCH);
    assert_eq!(code("string", &h, "{\"a\":1}"), codes::TYPE_MISMATCH);
    // Invalid JSON anywhere, even in an ignored field.
    for bad in [
        "{\"v\":1",
        "{\"v\":01}",
        "{\"v\":1,}",
        "{\"x\":[1,}",
        "{\"x\":\"\\q\"}",
        "{'v':1}",
        "{\"v\":nul}",
        "{\"v\":\"a\nb\"}",
    ] {
        let mut b = RecordBatchBuilder::new(&schema(&[("v", "int")]), &o).unwrap();
        let e = b.append(bad.as_bytes()).unwrap_err();
        assert_eq!(e.code, codes::MALFORMED, "{bad}: {e}");
    }
    let mut b = RecordBatchBuilder::new(&schema(&[("v", "int")]), &o).unwrap();
    for bad in [
        &b"[1,2]"[..],
        b"",
        b"  \n",
        b"42",
        b"\"s\"",
        b"{\"v\":\"\xff\"}",
        b"nope",
    ] {
        assert_eq!(b.append(bad).unwrap_err().code, codes::MALFORMED, "{bad:?}");
    }
    // The byte that breaks UTF-8 is named, in a short record and past the first
    // 64 bytes of a long one (the SIMD check's blocks).
    let late = [&b"{\"v\":\""[..], &[b'a'; 100], b"\xe2\x82", b"\"}"].concat();
    for (bad, at) in [(&b"{\"v\":\"ok\xff\"}"[..], 9), (&late[..], 107)] {
        assert_eq!(
            b.append(bad).unwrap_err().message,
            format!("record is not valid UTF-8 (at byte {at})")
        );
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        b.append(deep.as_bytes()).unwrap_err().code,
        codes::MALFORMED
    );
    assert!(b.is_empty());
}

#[test]
fn openx_coerces_strings_and_stringifies() {
    let o = openx();
    let (batch, res) = build(
        &[
            ("i", "int"),
            ("d", "double"),
            ("b", "boolean"),
            ("dec", "decimal(6,2)"),
            ("s", "string"),
            ("t", "tinyint"),
        ],
        &o,
        &[
            r#"{"i":"42","d":" 2.5 ","b":"TRUE","dec":"12.345","s":{"a":[1, 2]},"t":" -7"}"#,
            r#"{"s":12.50}"#,
            r#"{"s":true}"#,
            r#"{"s":[]}"#,
        ],
    );
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    assert_eq!(batch.column(0).as_primitive::<Int32Type>().value(0), 42);
    assert_eq!(batch.column(1).as_primitive::<Float64Type>().value(0), 2.5);
    assert!(batch.column(2).as_boolean().value(0));
    assert_eq!(
        batch.column(3).as_primitive::<Decimal128Type>().value(0),
        1235
    );
    let s = batch.column(4).as_string::<i32>();
    assert_eq!(
        (s.value(0), s.value(1), s.value(2), s.value(3)),
        (r#"{"a":[1, 2]}"#, "12.50", "true", "[]")
    );
    assert_eq!(batch.column(5).as_primitive::<Int8Type>().value(0), -7);
}

#[test]
fn decimals() {
    let o = openx();
    let dec = |ty: &str, v: &str| -> Result<i128, &'static str> {
        one(ty, &o, v)
            .map(|b| b.column(0).as_primitive::<Decimal128Type>().value(0))
            .map_err(|e| e.code)
    };
    assert_eq!(dec("decimal(10,2)", "123.45"), Ok(12345));
    assert_eq!(dec("decimal(10,2)", "-123.455"), Ok(-12346)); // half-up, away from zero
    assert_eq!(dec("decimal(10,2)", "0.004"), Ok(0));
    assert_eq!(dec("decimal(10,2)", "0.005"), Ok(1));
    assert_eq!(dec("decimal(10,2)", "7"), Ok(700));
    assert_eq!(dec("decimal(10,2)", "1.5e2"), Ok(15000));
    assert_eq!(dec("decimal(10,2)", "12345e-4"), Ok(123));
    assert_eq!(dec("decimal(10,2)", "99999999.99"), Ok(9_999_999_999));
    assert_eq!(
        dec("decimal(10,2)", "99999999.995"),
        Err(codes::OUT_OF_RANGE)
    ); // rounds past p
    assert_eq!(dec("decimal(10,2)", "100000000"), Err(codes::OUT_OF_RANGE));
    assert_eq!(dec("decimal(10,2)", "1e400"), Err(codes::OUT_OF_RANGE));
    assert_eq!(dec("decimal(10,2)", "1e-400"), Ok(0));
    assert_eq!(
        dec("decimal(38,0)", "99999999999999999999999999999999999999"),
        Ok(10i128.pow(38) - 1)
    );
    assert_eq!(
        dec("decimal(38,0)", "100000000000000000000000000000000000000"),
        Err(codes::OUT_OF_RANGE)
    );
    // Ten times 38 nines passes i128::MAX: refused, not wrapped into range.
    for v in [
        "999999999999999999999999999999999999999",
        "99999999999999999999999999999999999999.99",
    ] {
        assert_eq!(dec("decimal(38,2)", v), Err(codes::OUT_OF_RANGE), "{v}");
        assert_eq!(dec("decimal(38,0)", v), Err(codes::OUT_OF_RANGE), "{v}");
    }
    assert_eq!(
        dec(
            "decimal(38,38)",
            "0.12345678901234567890123456789012345678901"
        ),
        Ok(12345678901234567890123456789012345679)
    );
    assert_eq!(dec("decimal(5,0)", "true"), Err(codes::TYPE_MISMATCH));
    assert_eq!(dec("decimal(5,0)", "\"1.2.3\""), Err(codes::INVALID_VALUE));
}

#[test]
fn openx_timestamps() {
    let o = openx();
    assert_eq!(ts(&o, "\"2017-02-07T15:13:01Z\""), Some(T0));
    assert_eq!(ts(&o, "\"2017-02-07T15:13:01.39256Z\""), Some(T0 + 392));
    assert_eq!(ts(&o, "\"2017-02-07T15:13:01.123456789Z\""), Some(T0 + 123));
    assert_eq!(ts(&o, "\"2017-02-07 15:13:01\""), Some(T0));
    assert_eq!(ts(&o, "\"2017-2-7 15:13:01.5\""), Some(T0 + 500));
    assert_eq!(ts(&o, "1486480381"), Some(T0));
    assert_eq!(ts(&o, "\"1486480381\""), Some(T0));
    assert_eq!(ts(&o, "1486480381123"), Some(T0 + 123));
    assert_eq!(ts(&o, "1486480381.25"), Some(T0 + 250));
    assert_eq!(ts(&o, "99999999999"), Some(99_999_999_999_000)); // just below 10^11: seconds
    assert_eq!(ts(&o, "100000000000"), Some(100_000_000_000)); // 10^11: millis
    assert_eq!(ts(&o, "-1"), Some(-1000));
    assert_eq!(ts(&o, "\"1969-12-31 23:59:59.999\""), Some(-1));
    // Offsets (sluice's extension) are normalised to UTC.
    assert_eq!(ts(&o, "\"2017-02-07T17:13:01+02:00\""), Some(T0));
    assert_eq!(ts(&o, "\"2017-02-07T09:43:01.392-05:30\""), Some(T0 + 392));
    assert_eq!(ts(&o, "\"2017-02-07T15:13:01+00:00\""), Some(T0));
    assert_eq!(ts(&o, "\"2017-02-08T00:13:01+09:00\""), Some(T0)); // previous UTC day
    assert_eq!(ts(&o, "\"1970-01-01T00:59:59.999+01:00\""), Some(-1));
    for bad in [
        "\"2017-02-07T15:13:01\"",
        "\"2017-02-07T15:13:01+0100\"",
        "\"2017-02-07T15:13:01+1:00\"",
        "\"2017-02-07T15:13:01+24:00\"",
        "\"2017-02-07T15:13:01+01:60\"",
        "\"2017-02-07T15:13:01Z+01:00\"",
        "\"2017-02-07T15:13:01+01:00 \"",
        "\"2017-02-07 15:13:01+01:00\"",
        "\"2017-02-07 15:13:01Z\"",
        "\"2017-02-07T15:13:01.1234567890Z\"",
        "\"2017-02-30 15:13:01\"",
        "\"2017-02-07 24:00:00\"",
        "\"yesterday\"",
        "true",
        "\"\"",
    ] {
        let want = if bad == "true" {
            codes::TYPE_MISMATCH
        } else {
            codes::INVALID_TIMESTAMP
        };
        assert_eq!(code("timestamp", &o, bad), want, "{bad}");
    }
}

#[test]
fn hive_timestamps() {
    let h = hive(&[]);
    assert_eq!(ts(&h, "\"2017-02-07 15:13:01\""), Some(T0));
    assert_eq!(ts(&h, "\"2017-02-07 15:13:01.123456789\""), Some(T0 + 123));
    assert_eq!(ts(&h, "\"2017-02-07T15:13:01Z\""), None);
    assert_eq!(ts(&h, "1486480381"), None);
    let h = hive(&[
        "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
        "dd/MMM/yyyy:HH:mm:ss Z",
        "yyyyMMddHHmmss",
        "MM/dd/yyyy hh:mm a",
        "millis",
    ]);
    assert_eq!(ts(&h, "1486480381123"), Some(T0 + 123));
    assert_eq!(ts(&h, "\"1486480381123\""), Some(T0 + 123));
    assert_eq!(ts(&h, "\"2017-02-07T16:13:01.123+0100\""), Some(T0 + 123));
    assert_eq!(ts(&h, "\"2017-02-07T15:13:01.123Z\""), Some(T0 + 123));
    assert_eq!(ts(&h, "\"07/Feb/2017:10:13:01 -0500\""), Some(T0));
    assert_eq!(ts(&h, "\"20170207151301\""), Some(T0));
    assert_eq!(ts(&h, "\"02/07/2017 03:13 PM\""), Some(T0 - 1000));
    assert_eq!(ts(&h, "\"2017-02-07 15:13:01\""), Some(T0)); // falls back to valueOf
    assert_eq!(ts(&h, "\"07/Feb/2017\""), None);
    // Timestamp.valueOf has no zone; an offset needs a `Z` pattern.
    assert_eq!(ts(&hive(&[]), "\"2017-02-07 17:13:01+02:00\""), None);
    let hz = hive(&["yyyy-MM-dd'T'HH:mm:ssZ"]);
    assert_eq!(ts(&hz, "\"2017-02-07T17:13:01+02:00\""), Some(T0));
    assert_eq!(ts(&hz, "\"2017-02-07T10:13:01-0500\""), Some(T0));
    assert_eq!(ts(&hz, "\"2017-02-07T15:13:01Z\""), Some(T0));
    assert_eq!(ts(&hz, "\"2017-02-07T15:13:01+25:00\""), None);
    assert!(matches!(
        RecordBatchBuilder::new(&schema(&[("a", "int")]), &hive(&["yyyy-MM-dd EEE"])),
        Err(ConvertError::Deserializer(_))
    ));
    assert!(matches!(
        RecordBatchBuilder::new(&schema(&[("a.b", "int")]), &hive(&[])),
        Err(ConvertError::Deserializer(_))
    ));
}

#[test]
fn keys_case_mappings_and_dots() {
    let cols = [
        ("userid", "int"),
        ("ts", "string"),
        ("a_b", "int"),
        ("nested", "struct<innerkey:int>"),
    ];
    let (batch, res) = build(
        &cols,
        &openx(),
        &[r#"{"UserID":1,"TS":"x","a_b":2,"Nested":{"InnerKey":3}}"#],
    );
    assert!(res[0].is_ok());
    assert_eq!(batch.column(0).as_primitive::<Int32Type>().value(0), 1);
    assert_eq!(batch.column(1).as_string::<i32>().value(0), "x");
    let nested = batch.column(3).as_struct();
    assert_eq!(nested.column(0).as_primitive::<Int32Type>().value(0), 3);

    let strict = Deserializer::OpenX {
        case_insensitive: false,
        column_to_json_key_mappings: BTreeMap::from([("ts".to_owned(), "timestamp".to_owned())]),
        convert_dots_in_json_keys_to_underscores: true,
    };
    let (batch, res) = build(
        &cols,
        &strict,
        &[r#"{"UserID":1,"userid":5,"timestamp":"t","ts":"no","a.b":7}"#],
    );
    assert!(res[0].is_ok());
    assert_eq!(batch.column(0).as_primitive::<Int32Type>().value(0), 5);
    assert_eq!(batch.column(1).as_string::<i32>().value(0), "t");
    assert_eq!(batch.column(2).as_primitive::<Int32Type>().value(0), 7);
    // Escaped keys are unescaped before matching; a repeated key keeps its last value.
    let (batch, _) = build(
        &cols,
        &openx(),
        &[r#"{"user\u0069d":1,"userid":9,"nested":{"innerkey":1},"nested":null}"#],
    );
    assert_eq!(batch.column(0).as_primitive::<Int32Type>().value(0), 9);
    assert!(batch.column(3).is_null(0));
    // A mapping for an unknown column is a config error.
    let bad = Deserializer::OpenX {
        case_insensitive: true,
        column_to_json_key_mappings: BTreeMap::from([("nope".to_owned(), "x".to_owned())]),
        convert_dots_in_json_keys_to_underscores: false,
    };
    assert!(RecordBatchBuilder::new(&schema(&cols), &bad).is_err());
}

/// Keys are matched by their bytes when they come in the hinted order;
/// every other order, a key that only starts like the hinted one, spacing
/// and repeats must select the same fields as before.
#[test]
fn keys_in_any_order_select_the_same_fields() {
    let cols = [("a", "int"), ("ab", "int"), ("abc", "int")];
    let records = [
        r#"{"a":1,"ab":2,"abc":3}"#,
        r#"{"abc":3,"ab":2,"a":1}"#,
        r#"{"abx":9,"a":1,"ab" :2, "abc"	:3}"#,
        r#"{"a":7,"a":1,"AB":2,"abc":3,"abcd":8}"#,
        r#"{"ab":2,"abc":3,"\u0061":1}"#,
    ];
    let (batch, res) = build(&cols, &openx(), &records);
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    for (i, want) in [1, 2, 3].into_iter().enumerate() {
        let col = batch.column(i).as_primitive::<Int32Type>();
        for (row, record) in records.iter().enumerate() {
            assert_eq!(col.value(row), want, "column {i} of {record}");
        }
    }
    // A key that only starts like the hinted one is not that field (here
    // too near the record's end for an 8-byte load).
    let (batch, res) = build(&cols, &openx(), &[r#"{"a":1,"abq":5}"#]);
    assert!(res[0].is_ok());
    assert!(batch.column(1).is_null(0) && batch.column(2).is_null(0));
    // Keys of 8 bytes or more are compared as slices.
    let cols = [("a_long_key", "int"), ("another_long_key", "int")];
    let records = [
        r#"{"a_long_key":1,"another_long_key":2}"#,
        r#"{"a_long_keyX":9,"another_long_ke":9,"A_Long_Key":1,"another_long_key":2}"#,
    ];
    let (batch, res) = build(&cols, &openx(), &records);
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    for row in 0..records.len() {
        assert_eq!(batch.column(0).as_primitive::<Int32Type>().value(row), 1);
        assert_eq!(batch.column(1).as_primitive::<Int32Type>().value(row), 2);
    }
}

#[test]
fn nested_types_nulls_and_empties() {
    let cols = [
        (
            "s",
            "struct<a:int,b:array<map<string,decimal(10,2)>>,c:struct<d:string>>",
        ),
        ("l", "array<array<int>>"),
        ("m", "map<int,array<string>>"),
        ("v", "varchar(3)"),
    ];
    let (batch, res) = build(
        &cols,
        &openx(),
        &[
            r#"{"s":{"a":1,"b":[{"x":1.5,"y":null},{}],"c":{"d":"é"}},"l":[[1,2],[],null,[3]],"m":{"1":["a"],"-2":[]},"v":"日本語です"}"#,
            r#"{"s":{"b":null},"l":[],"m":{},"v":null}"#,
            r#"{"s":null,"l":null,"m":null}"#,
        ],
    );
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let s = batch.column(0).as_struct();
    assert!(s.is_valid(0) && s.is_valid(1) && s.is_null(2));
    let a = s.column(0).as_primitive::<Int32Type>();
    assert!(a.value(0) == 1 && a.is_null(1) && a.is_null(2));
    let b = s.column(1).as_list::<i32>();
    assert_eq!(b.value_length(0), 2);
    assert!(b.is_null(1));
    let maps = b.values().as_map();
    assert_eq!(maps.value_length(0), 2);
    assert_eq!(maps.value_length(1), 0);
    assert_eq!(maps.keys().as_string::<i32>().value(1), "y");
    let vals = maps.values().as_primitive::<Decimal128Type>();
    assert!(vals.value(0) == 150 && vals.is_null(1));
    assert_eq!(
        s.column(2)
            .as_struct()
            .column(0)
            .as_string::<i32>()
            .value(0),
        "é"
    );
    let l = batch.column(1).as_list::<i32>();
    assert_eq!((l.value_length(0), l.value_length(1)), (4, 0));
    assert!(l.is_valid(1) && l.is_null(2));
    let inner = l.values().as_list::<i32>();
    assert!(inner.is_null(2) && inner.value_length(1) == 0);
    assert_eq!(
        inner.values().as_primitive::<Int32Type>().values().to_vec(),
        vec![1, 2, 3]
    );
    let m = batch.column(2).as_map();
    assert_eq!(
        m.keys().as_primitive::<Int32Type>().values().to_vec(),
        vec![1, -2]
    );
    assert!(m.is_valid(1) && m.value_length(1) == 0 && m.is_null(2));
    let v = batch.column(3).as_string::<i32>();
    assert_eq!(v.value(0), "日本語");
    // A map key that does not parse as the key type rejects the record.
    let e = one("map<int,string>", &openx(), r#"{"x":"y"}"#).unwrap_err();
    assert_eq!(e.code, codes::INVALID_VALUE);
    assert!(e.message.contains("column `v.key \"x\"`"), "{}", e.message);
}

#[test]
fn rejected_records_leave_the_batch_consistent() {
    let cols = [
        ("id", "bigint"),
        (
            "s",
            "struct<name:string,tags:array<string>,m:map<string,int>>",
        ),
        ("after", "string"),
    ];
    let good = |i: i64| {
        format!(
            r#"{{"id":{i},"s":{{"name":"n{i}","tags":["a{i}","b"],"m":{{"k":{i}}}}},"after":"x{i}"}}"#
        )
    };
    let bad = [
        // Fails deep inside, after strings, list items and map entries were appended.
        r#"{"id":100,"s":{"name":"bad","tags":["t1","t2"],"m":{"k":1,"j":"notint"}},"after":"z"}"#,
        r#"{"id":101,"s":{"name":"bad","tags":["t1",5,{"x":1}],"m":{"a":1,"b":true}},"after":"z"}"#,
        r#"{"id":102,"s":{"name":"bad"},"after":"z"} {"id":"x"}"#, // second document fails
        r#"{"id":103,"s":{"name":"bad","tags":["unterminated]}}"#,
        r#"{"after":"first","id":9223372036854775808}"#,
    ];
    let mut b = RecordBatchBuilder::new(&schema(&cols), &openx()).unwrap();
    let mut expect = Vec::new();
    for i in 0..6i64 {
        b.append(good(i).as_bytes()).unwrap();
        expect.push(i);
        if let Some(bad) = bad.get(i as usize) {
            let len = b.len();
            let err = b.append(bad.as_bytes()).unwrap_err();
            assert_eq!(b.len(), len, "{bad}: {err}");
        }
    }
    // Two documents in one record make two rows.
    b.append(format!("{}\n{}", good(6), good(7)).as_bytes())
        .unwrap();
    expect.extend([6, 7]);
    let batch = b.finish_batch();
    batch
        .columns()
        .iter()
        .for_each(|c| assert_eq!(c.len(), expect.len()));
    let ids = batch.column(0).as_primitive::<Int64Type>();
    assert_eq!(ids.values().to_vec(), expect);
    let s = batch.column(1).as_struct();
    let names = s.column(0).as_string::<i32>();
    let tags = s.column(1).as_list::<i32>();
    let m = s.column(2).as_map();
    let after = batch.column(2).as_string::<i32>();
    for (row, i) in expect.iter().enumerate() {
        assert_eq!(names.value(row), format!("n{i}"));
        let t = tags.value(row);
        let t = t.as_string::<i32>();
        assert_eq!(
            (t.len(), t.value(0), t.value(1)),
            (2, format!("a{i}").as_str(), "b")
        );
        assert_eq!(
            m.value(row).column(1).as_primitive::<Int32Type>().value(0),
            *i as i32
        );
        assert_eq!(after.value(row), format!("x{i}"));
    }
    // The builder is reusable after finishing.
    b.append(good(42).as_bytes()).unwrap();
    let next = b.finish_batch();
    assert_eq!(next.num_rows(), 1);
    assert_eq!(next.column(0).as_primitive::<Int64Type>().value(0), 42);
    assert_eq!(b.finish_batch().num_rows(), 0);
}

/// A builder that keeps its buffers' room between batches
/// ([`RecordBatchBuilder::keep_capacity`], `sluice convert`'s) gives the same
/// batches as one that starts each batch empty: batches larger and smaller
/// than the one before, nulls and nested values, and a record rejected right
/// after a batch started (cutting back buffers that already hold room).
#[test]
fn kept_capacity_gives_the_same_batches() {
    let cols = [
        ("id", "bigint"),
        (
            "s",
            "struct<name:string,tags:array<string>,m:map<string,int>>",
        ),
        ("ok", "boolean"),
        ("d", "decimal(10,2)"),
    ];
    let record = |i: usize| {
        if i % 7 == 3 {
            format!(r#"{{"id":{i}}}"#)
        } else {
            format!(
                r#"{{"id":{i},"s":{{"name":"{}","tags":[{}],"m":{{"k{i}":{i}}}}},"ok":{},"d":{i}.5}}"#,
                "n".repeat(i % 13),
                vec![r#""t""#; i % 4].join(","),
                i.is_multiple_of(2)
            )
        }
    };
    let mut plain = RecordBatchBuilder::new(&schema(&cols), &openx()).unwrap();
    let mut kept = RecordBatchBuilder::new(&schema(&cols), &openx())
        .unwrap()
        .keep_capacity();
    let mut i = 0;
    for rows in [50, 300, 7, 0, 120] {
        for b in [&mut plain, &mut kept] {
            let bad = r#"{"id":1,"s":{"name":"x","tags":["a"],"m":{"k":"not an int"}}}"#;
            assert!(b.append(bad.as_bytes()).is_err());
            for j in i..i + rows {
                b.append(record(j).as_bytes()).unwrap();
            }
        }
        i += rows;
        let (p, k) = (plain.finish_batch(), kept.finish_batch());
        assert_eq!(p.num_rows(), rows);
        assert_eq!(p, k, "batch of {rows} rows");
    }
}

#[test]
fn error_messages_name_the_column_path() {
    let cols = [("outer", "struct<list:array<struct<n:tinyint>>>")];
    let mut b = RecordBatchBuilder::new(&schema(&cols), &openx()).unwrap();
    let e = b
        .append(br#"{"outer":{"list":[{"n":1},{"n":300}]}}"#)
        .unwrap_err();
    assert_eq!(e.code, codes::OUT_OF_RANGE);
    assert!(
        e.message.starts_with("column `outer.list[1].n`:"),
        "{}",
        e.message
    );
}

#[test]
fn parquet_round_trip() {
    use crate::convert::{ParquetCompression, ParquetOptions};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let cols = [
        ("id", "bigint"),
        ("ts", "timestamp"),
        ("price", "decimal(12,3)"),
        ("tags", "array<string>"),
        ("attrs", "map<string,double>"),
        ("user", "struct<name:string,age:smallint,when:date>"),
        ("raw", "binary"),
        ("ok", "boolean"),
    ];
    let s = schema(&cols);
    for compression in [
        ParquetCompression::Snappy,
        ParquetCompression::Gzip,
        ParquetCompression::Zstd,
        ParquetCompression::Uncompressed,
    ] {
        let options = ParquetOptions {
            compression,
            block_size_bytes: 64 << 10,
            ..ParquetOptions::default()
        };
        let mut enc = crate::convert::parquet(Vec::new(), &s, &openx(), &options).unwrap();
        let mut expected = RecordBatchBuilder::new(&s, &openx()).unwrap();
        let mut rejected = 0;
        for i in 0..10_000 {
            let rec = if i % 997 == 5 {
                format!(r#"{{"id":{i},"price":"1e20"}}"#)
            } else {
                format!(
                    r#"{{"id":{i},"ts":{},"price":{}.{:03},"tags":["t{}","ü"],"attrs":{{"a":{i}.5}},"user":{{"name":"u{i}","age":{},"when":"2024-01-{:02}"}},"raw":"AQI=","ok":{}}}"#,
                    1_700_000_000_000i64 + i,
                    i / 7,
                    i % 1000,
                    i % 13,
                    i % 100,
                    1 + i % 28,
                    i % 2 == 0
                )
            };
            match enc.append(rec.as_bytes()) {
                Ok(()) => expected.append(rec.as_bytes()).unwrap(),
                Err(crate::encode::EncodeError::Record { code, .. }) => {
                    assert_eq!(code, codes::OUT_OF_RANGE);
                    rejected += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(rejected, 11);
        let bytes = enc.finish().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        assert!(
            reader.metadata().num_row_groups() > 1,
            "small block size gives several row groups"
        );
        let batches: Vec<RecordBatch> = reader
            .with_batch_size(100_000)
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let got = arrow_select_concat(&batches);
        let want = expected.finish_batch();
        assert_eq!(got.num_rows(), 10_000 - rejected);
        for (c, field) in want.schema().fields().iter().enumerate() {
            assert_eq!(
                got.column(c).to_data(),
                want.column(c).to_data(),
                "{compression:?} {}",
                field.name()
            );
        }
    }
}

/// Concatenates batches without arrow-select (not a dependency): read back
/// everything in one batch instead.
fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    assert_eq!(
        batches.len(),
        1,
        "read with a batch size above the row count"
    );
    batches[0].clone()
}

#[test]
fn unsupported_and_empty_outputs() {
    use crate::convert::ParquetOptions;
    let s = schema(&[("a", "int")]);
    let bad = ParquetOptions {
        page_size_bytes: 10,
        ..ParquetOptions::default()
    };
    assert!(matches!(
        crate::convert::parquet(Vec::new(), &s, &openx(), &bad),
        Err(ConvertError::Options { .. })
    ));
    assert!(
        ParquetOptions {
            block_size_bytes: 1 << 20,
            ..ParquetOptions::default()
        }
        .check_firehose_limits()
        .is_err()
    );
    // No records: still a valid Parquet file with the schema.
    let enc =
        crate::convert::parquet(Vec::new(), &s, &openx(), &ParquetOptions::default()).unwrap();
    let bytes = enc.finish().unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes),
    )
    .unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    assert_eq!(reader.schema().field(0).name(), "a");
}

#[test]
fn discovery_infers_timestamp_exactly_for_strings_openx_reads_as_dates() {
    for text in [
        "2017-02-07T15:13:01Z",
        "2017-02-07T17:13:01+02:00",
        "2017-02-07T15:13:01.5-00:30",
        "2017-2-7 15:13:01",
        "2017-02-07T15:13:01",
        "2017-02-07T15:13:01+0200",
        "2017-02-07 15:13:01Z",
        "2017-02-30T15:13:01Z",
        "1486480381",
        "yesterday",
    ] {
        let read = ts(&openx(), &format!("\"{text}\"")).is_some();
        // Digit strings are epoch times to OpenX but nothing marks them as times.
        let epoch = looks_numeric(text.as_bytes());
        assert_eq!(is_timestamp_text(text.as_bytes()), read && !epoch, "{text}");
    }
}

/// The word-at-a-time string scan finds exactly what a byte loop finds: every
/// byte value at every position (thresholds 0x1f/0x20, quote, backslash,
/// UTF-8 bytes), from several starts, with a second special byte after it.
#[test]
fn string_special_matches_a_byte_loop() {
    let naive = |s: &[u8], i: usize| {
        (i..s.len())
            .find(|&j| s[j] == b'"' || s[j] == b'\\' || s[j] < 0x20)
            .unwrap_or(s.len())
    };
    for len in [0, 1, 7, 8, 9, 16, 23] {
        for at in 0..len {
            for b in 0..=255u8 {
                let mut s = vec![b'a'; len];
                s[at] = b;
                if at + 3 < len {
                    s[at + 3] = b'"';
                }
                for start in 0..3.min(len + 1) {
                    assert_eq!(
                        super::scan::string_special(&s, start),
                        naive(&s, start),
                        "byte {b:#x} at {at} of {len}, from {start}"
                    );
                }
            }
        }
    }
}

/// The fast paths for plain numbers (`exact_float`, `plain_decimal`, the
/// eight-digit steps of `int_from_text`) give what the general ones give: the
/// same text with `e0` appended takes the general path (std's parser for
/// doubles), so both are compared, and integers with std's `i64` parser, over
/// many plain numbers: every length to 20 digits, the point anywhere, signs, leading and
/// trailing zeros, values at 2^53, and digits past a decimal's scale that
/// round up or not.
/// A deterministic generator for the tests that draw many cases: each call
/// gives a number below its argument (xorshift64 from `seed`).
pub(super) fn below(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}

#[test]
fn number_fast_paths_agree_with_the_general_ones() {
    let mut next = below(0x2545_f491_4f6c_dd1d);
    let mut texts: Vec<String> = [
        "0",
        "-0",
        "0.0",
        "-0.0",
        "9007199254740992",
        "9007199254740993",
        "0.1",
        "0.2",
        "0.30000000000000004",
        "1.7976931348623157",
        "00012.50",
        ".5",
        "5.",
        "123.455",
        "999.995",
        "-999.994",
        "1.0000000000000000000001",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for _ in 0..20_000 {
        let len = 1 + next(20);
        let mut t: String = (0..len)
            .map(|_| char::from(b'0' + next(10) as u8))
            .collect();
        if next(4) > 0 {
            t.insert(next(len + 1), '.');
        }
        if next(3) == 0 {
            t.insert(0, '-');
        }
        texts.push(t);
    }
    for t in &texts {
        let general = format!("{t}e0");
        let fast = float_from_text(t.as_bytes())
            .map(f64::to_bits)
            .map_err(|e| e.code);
        let slow = float_from_text(general.as_bytes())
            .map(f64::to_bits)
            .map_err(|e| e.code);
        assert_eq!(fast, slow, "double {t}");
        assert_eq!(
            fast.ok(),
            t.parse::<f64>().ok().map(f64::to_bits),
            "double {t} (std)"
        );
        let int = int_from_text(t.as_bytes(), i64::MIN.into(), i64::MAX.into());
        assert_eq!(
            int.ok(),
            t.parse::<i64>().ok().map(i128::from),
            "bigint {t} (std)"
        );
        for (precision, scale) in DECIMALS {
            let fast = parse_decimal(t.as_bytes(), precision, scale).map_err(|e| e.code);
            let slow = parse_decimal(general.as_bytes(), precision, scale).map_err(|e| e.code);
            assert_eq!(fast, slow, "decimal({precision},{scale}) {t}");
        }
    }
    json_numbers_agree_with_their_text(&texts);
}

const DECIMALS: [(u8, u8); 6] = [(38, 0), (38, 2), (18, 4), (10, 2), (5, 5), (38, 20)];

/// The same numbers as JSON values (`{"v":<text>}`): each valid JSON number
/// gives what its text gives (the value or the failure's code), whatever path
/// the column builders take through the scanner, and the other texts (`.5`,
/// `5.`, `00012.50`, leading zeros) are refused as malformed JSON.
fn json_numbers_agree_with_their_text(texts: &[String]) {
    // Per column type, what the text path gives, as i128 (a double's bits).
    type FromText = Box<dyn Fn(&[u8]) -> Result<i128, &'static str>>;
    let mut columns: Vec<(String, FromText)> = vec![
        (
            "bigint".into(),
            Box::new(|t| int_from_text(t, i64::MIN.into(), i64::MAX.into()).map_err(|e| e.code)),
        ),
        (
            "double".into(),
            Box::new(|t| {
                float_from_text(t)
                    .map(|x| i128::from(x.to_bits()))
                    .map_err(|e| e.code)
            }),
        ),
    ];
    for (p, s) in DECIMALS {
        columns.push((
            format!("decimal({p},{s})"),
            Box::new(move |t| parse_decimal(t, p, s).map_err(|e| e.code)),
        ));
    }
    for (ty, from_text) in columns {
        let mut b = RecordBatchBuilder::new(&schema(&[("v", ty.as_str())]), &openx()).unwrap();
        let mut want = Vec::new();
        for t in texts {
            let got = b
                .append(format!(r#"{{"v":{t}}}"#).as_bytes())
                .map_err(|e| e.code);
            if serde_json::from_str::<serde_json::Number>(t).is_err() {
                assert_eq!(got, Err(codes::MALFORMED), "{ty} {t}");
                continue;
            }
            let expected = from_text(t.as_bytes());
            assert_eq!(got, expected.map(|_| ()), "{ty} {t}");
            want.extend(expected.ok());
        }
        let batch = b.finish_batch();
        let column = batch.column(0);
        let got: Vec<i128> = match ty.as_str() {
            "bigint" => column
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|&v| v.into())
                .collect(),
            "double" => column
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|v| i128::from(v.to_bits()))
                .collect(),
            _ => column.as_primitive::<Decimal128Type>().values().to_vec(),
        };
        assert_eq!(got, want, "{ty}");
    }
}
