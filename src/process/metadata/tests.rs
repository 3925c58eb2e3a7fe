use super::*;

fn query(q: &str) -> MetadataQuery {
    MetadataQuery::compile(q).unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A message of a failed extraction (the code checked on the way).
fn failure(q: &str, record: &[u8]) -> String {
    match query(q).extract(record) {
        Ok(keys) => panic!(
            "{q} on {:?}: expected a failure, got {keys:?}",
            String::from_utf8_lossy(record)
        ),
        Err(failure) => {
            assert_eq!(failure.code, FAILED);
            assert_eq!(failure.attempts, 1);
            assert_eq!(failure.transform, None);
            failure.message
        }
    }
}

/// 2023-11-14T22:13:20Z and its millisecond form.
const EVENT: &str = r#"{
    "customer_id": "C-42", "type": {"device": "mobile", "os": "Android"},
    "a": {"b": {"c": "deep"}}, "ts": 1700000000, "ts_ms": 1700000000123,
    "ts_f": 1700000000.75, "event_timestamp": 1700000000, "year": 2024,
    "ratio": 0.25, "ok": true, "region": "EU-West-1", "path": "/v1/orders",
    "empty": ""
}"#;

#[test]
fn what_users_write() {
    // (query, expected pairs); expectations checked against jq 1.6.
    let table: &[(&str, &[(&str, &str)])] = &[
        // field paths
        ("{customer_id: .customer_id}", &[("customer_id", "C-42")]),
        ("{device: .type.device}", &[("device", "mobile")]),
        ("{c: .a.b.c}", &[("c", "deep")]),
        (r#"{c: .["a"]["b"].c}"#, &[("c", "deep")]),
        // time on epoch seconds
        (r#"{y: .ts | strftime("%Y")}"#, &[("y", "2023")]),
        (r#"{m: .ts | strftime("%m")}"#, &[("m", "11")]),
        (r#"{d: .ts | strftime("%d")}"#, &[("d", "14")]),
        (r#"{h: .ts | strftime("%H")}"#, &[("h", "22")]),
        (
            r#"{p: .ts | strftime("%Y/%m/%d/%H")}"#,
            &[("p", "2023/11/14/22")],
        ),
        // epoch milliseconds: with floor, and a float straight into strftime
        // (jq 1.6 takes both; an operator in an object value needs the
        // parentheses in jq 1.6, not in jaq)
        (
            r#"{y: (.ts_ms / 1000 | floor | strftime("%Y"))}"#,
            &[("y", "2023")],
        ),
        (
            r#"{h: (.ts_ms / 1000 | strftime("%H:%M:%S"))}"#,
            &[("h", "22:13:20")],
        ),
        (r#"{s: .ts_f | strftime("%S")}"#, &[("s", "20")]),
        // todate: jq 1.6 drops the fraction
        ("{t: .ts | todate}", &[("t", "2023-11-14T22:13:20Z")]),
        ("{t: .ts_f | todate}", &[("t", "2023-11-14T22:13:20Z")]),
        (
            "{t: (.ts_ms / 1000 | todateiso8601)}",
            &[("t", "2023-11-14T22:13:20Z")],
        ),
        (
            r#"{t: "2023-11-14T22:13:20Z" | fromdate | tostring}"#,
            &[("t", "1700000000")],
        ),
        (
            r#"{d: .ts | gmtime | mktime | strftime("%j")}"#,
            &[("d", "318")],
        ),
        // string functions
        ("{r: .region | ascii_downcase}", &[("r", "eu-west-1")]),
        ("{r: .region | ascii_upcase}", &[("r", "EU-WEST-1")]),
        (r#"{r: .region | split("-")[0]}"#, &[("r", "EU")]),
        (r#"{p: .path | ltrimstr("/")}"#, &[("p", "v1/orders")]),
        (r#"{p: .path | rtrimstr("/orders")}"#, &[("p", "/v1")]),
        ("{y: .year | tostring}", &[("y", "2024")]),
        (
            "{t: .type | tostring}",
            &[("t", r#"{"device":"mobile","os":"Android"}"#)],
        ),
        (r#"{c: "cust-\(.customer_id)"}"#, &[("c", "cust-C-42")]),
        (
            r#"{r: (.region | test("west"; "i") | tostring)}"#,
            &[("r", "true")],
        ),
        (r#"{r: .region | sub("-[0-9]+$"; "")}"#, &[("r", "EU-West")]),
        ("{n: .customer_id | length}", &[("n", "4")]),
        (r#"{n: "42" | tonumber}"#, &[("n", "42")]),
        ("{c: .customer_id[0:1]}", &[("c", "C")]),
        // defaults for missing fields
        (r#"{d: (.missing // "default")}"#, &[("d", "default")]),
        (r#"{d: (.type.missing // .type.os)}"#, &[("d", "Android")]),
        (r#"{d: (.customer_id // "default")}"#, &[("d", "C-42")]),
        // numbers and booleans as values
        ("{year: .year}", &[("year", "2024")]),
        ("{ms: .ts_ms}", &[("ms", "1700000000123")]),
        ("{r: .ratio}", &[("r", "0.25")]),
        ("{y: (.year / 2)}", &[("y", "1012")]),
        ("{ok: .ok}", &[("ok", "true")]),
        ("{no: (.ok | not)}", &[("no", "false")]),
        // an empty string is a value
        ("{e: .empty}", &[("e", "")]),
        // jq 1.6 builtins jaq lacks
        (
            r#"{eu: (.region | IN("EU-West-1", "US-East-1") | tostring)}"#,
            &[("eu", "true")],
        ),
        (
            r#"{n: (IN(.type[]; "mobile", "tv") | tostring)}"#,
            &[("n", "true")],
        ),
        ("{n: ([.type | leaf_paths] | length)}", &[("n", "2")]),
        // conditionals
        (r#"{k: (if .ok then "yes" else "no" end)}"#, &[("k", "yes")]),
        // Firehose's documented example
        (
            r#"{customer_id: .customer_id, device: .type.device, year: .event_timestamp|strftime("%Y")}"#,
            &[
                ("customer_id", "C-42"),
                ("device", "mobile"),
                ("year", "2023"),
            ],
        ),
        // keys in the object's order, not sorted
        (
            "{z: .customer_id, a: .year}",
            &[("z", "C-42"), ("a", "2024")],
        ),
        ("{}", &[]),
        // a whole-object query that is already flat
        (".type", &[("device", "mobile"), ("os", "Android")]),
    ];
    // SLUICE_DUMP_JQ_CASES=FILE writes the table as JSON lines, to run each
    // query through a real jq 1.6 and compare (done when it was written).
    if let Ok(path) = std::env::var("SLUICE_DUMP_JQ_CASES") {
        let lines: Vec<String> = table
            .iter()
            .map(|(q, e)| serde_json::json!({"q": q, "e": e}).to_string())
            .collect();
        std::fs::write(path, lines.join("\n")).ok();
    }
    for (q, expected) in table {
        assert_eq!(
            query(q).extract(EVENT.as_bytes()),
            Ok(pairs(expected)),
            "query {q}"
        );
    }
}

/// jaq's grammar is wider than jq 1.6's: an object value may be any
/// expression, where jq 1.6 wants a pipe of terms or parentheses. Queries
/// written for Firehose have the parentheses; these work here too.
#[test]
fn unparenthesized_object_values_work_though_jq_1_6_refuses_them() {
    let table: &[(&str, &[(&str, &str)])] = &[
        (
            r#"{y: .ts_ms / 1000 | floor | strftime("%Y")}"#,
            &[("y", "2023")],
        ),
        (r#"{d: .missing // "default"}"#, &[("d", "default")]),
        (r#"{k: if .ok then "yes" else "no" end}"#, &[("k", "yes")]),
        ("{y: .year + 1}", &[("y", "2025")]),
    ];
    for (q, expected) in table {
        assert_eq!(
            query(q).extract(EVENT.as_bytes()),
            Ok(pairs(expected)),
            "query {q}"
        );
    }
}

#[test]
fn numbers_print_as_jq_1_6_prints_them() {
    // Right-hand sides are jq 1.6's output for `{a: .}` on each number.
    let table = [
        ("0", "0"),
        ("-0.0", "-0"),
        ("2024", "2024"),
        ("2024.0", "2024"),
        ("-17", "-17"),
        ("1.5", "1.5"),
        ("-1.5", "-1.5"),
        ("0.1", "0.1"),
        ("0.0001", "0.0001"),
        ("0.00012", "0.00012"),
        ("0.00001", "1e-05"),
        ("2.5e-7", "2.5e-07"),
        ("5e-324", "5e-324"),
        ("1700000000.123", "1700000000.123"),
        ("1000000000000000", "1000000000000000"),
        ("10000000000000000", "1e+16"),
        ("12000000000000000", "12000000000000000"),
        ("123456789012345678", "123456789012345680"),
        ("9007199254740993", "9007199254740992"),
        ("12345678901234567890", "12345678901234567000"),
        ("1e19", "1e+19"),
        ("1.5e300", "1.5e+300"),
        ("3.3333333333333335", "3.3333333333333335"),
    ];
    let q = query("{a: .}");
    for (input, printed) in table {
        assert_eq!(
            q.extract(input.as_bytes()),
            Ok(pairs(&[("a", printed)])),
            "number {input}"
        );
    }
    // Infinities are clamped as jq prints them; NaN is null to jq.
    assert_eq!(
        query("{a: infinite}").extract(b"null"),
        Ok(pairs(&[("a", "1.7976931348623157e+308")]))
    );
    assert_eq!(
        query("{a: -infinite}").extract(b"null"),
        Ok(pairs(&[("a", "-1.7976931348623157e+308")]))
    );
    assert!(failure("{a: nan}", b"null").contains("key `a` is NaN"));
    // Numbers written in the query, too.
    assert_eq!(
        query("{a: 1.50, b: 100, c: 1e3}").extract(b"null"),
        Ok(pairs(&[("a", "1.5"), ("b", "100"), ("c", "1000")]))
    );
}

#[test]
fn records_that_fail() {
    let table: &[(&str, &[u8], &str)] = &[
        // not one JSON value
        (
            "{a: .a}",
            b"",
            "record is not JSON: EOF while parsing a value at line 1 column 0",
        ),
        (
            "{a: .a}",
            b"not json",
            "record is not JSON: expected ident at line 1 column 2",
        ),
        (
            "{a: .a}",
            br#"{"a": 1"#,
            "record is not JSON: EOF while parsing an object at line 1 column 7",
        ),
        (
            "{a: .a}",
            br#"{"a":1} {"a":2}"#,
            "record is not JSON: trailing characters at line 1 column 9",
        ),
        (
            "{a: .a}",
            b"{\"a\": \"\xff\"}",
            "record is not JSON: invalid unicode code point at line 1 column 8",
        ),
        // values that are not key text
        ("{a: .missing}", br#"{"a":1}"#, "key `a` is null"),
        ("{a: .a}", br#"{"a":null}"#, "key `a` is null"),
        ("{a: .a}", br#"{"a":[1]}"#, "key `a` is an array"),
        ("{a: .a}", br#"{"a":{"b":1}}"#, "key `a` is an object"),
        (
            "{ok: .ok, a: .a}",
            br#"{"ok":1,"a":[]}"#,
            "key `a` is an array",
        ),
        // not exactly one object
        ("empty", b"{}", "query produced no output"),
        (".[] | {a: .}", b"[]", "query produced no output"),
        ("{a: (1, 2)}", b"{}", "query produced more than one output"),
        (
            ".[] | {a: .}",
            b"[1,2,3]",
            "query produced more than one output",
        ),
        (
            ".a",
            br#"{"a":"x"}"#,
            "query produced a string, not an object",
        ),
        (
            ".a",
            br#"{"a":1}"#,
            "query produced a number, not an object",
        ),
        (".", b"[1]", "query produced an array, not an object"),
        (".a", b"{}", "query produced null, not an object"),
        (
            "{(1): 2}",
            b"{}",
            "query produced an object key that is not a string: 1",
        ),
        // run-time errors, in jq's words
        (
            "{a: .a.b}",
            br#"{"a":"x"}"#,
            "query failed: cannot index \"x\" with \"b\"",
        ),
        (
            r#"{y: .ts | strftime("%Y")}"#,
            br#"{"ts":"2024"}"#,
            "query failed: cannot use \"2024\" as number",
        ),
        (r#"{a: error("custom")}"#, b"{}", "query failed: custom"),
        (
            r#"{a: error({code: 1})}"#,
            b"{}",
            r#"query failed: {"code":1} (not a string)"#,
        ),
        (
            "{a: (.a | ascii_downcase)}",
            br#"{"a":1}"#,
            "query failed: cannot use 1 as string",
        ),
        ("halt", b"{}", "query called halt (exit code 0)"),
        (
            r#""x" | halt_error(3)"#,
            b"{}",
            "query called halt (exit code 3)",
        ),
    ];
    for (q, record, message) in table {
        assert_eq!(
            failure(q, record),
            *message,
            "query {q} on {:?}",
            String::from_utf8_lossy(record)
        );
    }
}

#[test]
fn whitespace_around_the_record_is_fine() {
    let q = query("{a: .a}");
    for record in [
        &b"{\"a\":\"x\"}\n"[..],
        b"  {\"a\":\"x\"}\r\n\t",
        b"\n{\"a\":\"x\"}",
    ] {
        assert_eq!(q.extract(record), Ok(pairs(&[("a", "x")])));
    }
}

#[test]
fn compile_errors_say_what_and_where() {
    let table = [
        (
            "{a: .a",
            "MetadataExtractionQuery is invalid: expected the closing delimiter of `{`, found end of query",
        ),
        (
            "{a: (.a | strftme(\"%Y\"))}",
            "MetadataExtractionQuery is invalid: undefined filter `strftme/1` at column 11",
        ),
        (
            "{a: $nothing}",
            "MetadataExtractionQuery is invalid: undefined variable `$nothing` at column 5",
        ),
        (
            "{a: .a}\n| {b: input}",
            "MetadataExtractionQuery is invalid: undefined filter `input/0` at line 2, column 7",
        ),
        (
            "{a: .a,, b: 1}",
            "MetadataExtractionQuery is invalid: expected key, found `,` at column 8",
        ),
        (
            "include \"x\"; .",
            "MetadataExtractionQuery is invalid: cannot load module `x`: ",
        ),
    ];
    for (q, start) in table {
        let err = MetadataQuery::compile(q).expect_err(q);
        assert!(err.starts_with(start), "query {q:?}: {err}");
    }
}

#[test]
fn a_query_compares_shows_and_clones_as_its_text() {
    let text = r#"{y: .ts | strftime("%Y")}"#;
    let a = query(text);
    assert_eq!(a.as_str(), text);
    assert_eq!(a, query(text));
    assert_ne!(a, query("{y: .ts}"));
    assert_eq!(format!("{a:?}"), format!("MetadataQuery({text:?})"));
    let b = a.clone();
    assert_eq!(b.extract(br#"{"ts":0}"#), Ok(pairs(&[("y", "1970")])));

    fn send_sync<T: Send + Sync + 'static>(_: &T) {}
    send_sync(&a);
    let q = a.clone();
    let thread = std::thread::spawn(move || q.extract(br#"{"ts":1700000000}"#));
    assert_eq!(thread.join().ok(), Some(Ok(pairs(&[("y", "2023")]))));
}

fn nested(depth: usize, open: &str, close: &str, inner: &str) -> Vec<u8> {
    let mut out = open.repeat(depth);
    out.push_str(inner);
    out.push_str(&close.repeat(depth));
    out.into_bytes()
}

#[test]
fn hostile_records_fail_cleanly() {
    let q = query("{a: (.. | tostring)}");
    // 10,000 nested arrays and objects: refused by the parser, not a stack overflow.
    for record in [
        nested(10_000, "[", "]", ""),
        nested(10_000, r#"{"a":"#, "}", "1"),
    ] {
        let message = q.extract(&record).expect_err("too deep").message;
        assert!(
            message.starts_with("record is not JSON: recursion limit exceeded at line 1 column"),
            "{message}"
        );
    }
    // 128 levels are fine.
    let ok = nested(127, "[", "]", "1");
    assert_eq!(
        query("{a: (.. | numbers)}").extract(&ok),
        Ok(pairs(&[("a", "1")]))
    );
    // The same depth in a string the query parses.
    let inner = String::from_utf8(nested(10_000, "[", "]", "")).unwrap_or_default();
    let record = serde_json::json!({ "s": inner }).to_string();
    let message = failure("{a: (.s | fromjson | tostring)}", record.as_bytes());
    assert!(
        message.starts_with("query failed: cannot parse \"[[[["),
        "{message}"
    );
    assert!(message.contains("recursion limit exceeded"), "{message}");
    assert!(message.len() < 2 * MAX_MESSAGE_CHARS, "{message}");
    // fromjson still works on ordinary JSON.
    assert_eq!(
        query("{a: (.s | fromjson | .k)}").extract(br#"{"s":"{\"k\":\"v\"}"}"#),
        Ok(pairs(&[("a", "v")]))
    );

    // A 10 MB string: a result, and a short message when it fails.
    let big = "x".repeat(10 << 20);
    let record = format!(r#"{{"s":"{big}","n":"{big}"}}"#);
    let keys = query("{s: .s}")
        .extract(record.as_bytes())
        .expect("big string");
    assert_eq!(keys[0].1.len(), 10 << 20);
    let message = failure("{a: (.n | tonumber)}", record.as_bytes());
    assert!(
        message.len() < 2 * MAX_MESSAGE_CHARS,
        "{} bytes",
        message.len()
    );
    let message = failure("{a: (.n | . + 1)}", record.as_bytes());
    assert!(message.ends_with("..."), "{message:.80}");
    assert!(
        message.len() < 2 * MAX_MESSAGE_CHARS,
        "{} bytes",
        message.len()
    );

    // Invalid UTF-8 inside and outside strings.
    for record in [
        &b"{\"a\":\"\xc3\x28\"}"[..],
        b"\xff\xfe{}",
        b"{\"\xed\xa0\x80\":1}",
    ] {
        let message = failure("{a: .a}", record);
        assert!(message.starts_with("record is not JSON: "), "{message}");
    }
    // Escapes of lone surrogates are refused by serde_json too.
    assert!(failure("{a: .a}", br#"{"a":"\ud800"}"#).starts_with("record is not JSON: "));

    // Epochs jaq would overflow on (10^6 x epoch in i64), and merely huge ones.
    for epoch in [
        "100000000000000000",
        "-9223372036854775808",
        "1e300",
        "253402300800",
    ] {
        let record = format!(r#"{{"ts":{epoch}}}"#);
        for q in [
            r#"{y: .ts | strftime("%Y")}"#,
            "{y: .ts | todate}",
            "{y: (.ts | gmtime | tostring)}",
            r#"{y: .ts | strflocaltime("%Y")}"#,
            "{y: (.ts | localtime | tostring)}",
        ] {
            let message = failure(q, record.as_bytes());
            assert!(
                message.contains("is outside the years -9999 to 9999"),
                "{q} on {epoch}: {message}"
            );
        }
    }
    assert_eq!(
        failure(r#"{y: (nan | strftime("%Y"))}"#, b"null"),
        "query failed: epoch NaN is outside the years -9999 to 9999"
    );
    // The latest epoch jiff takes (9999-12-30T22:00:00Z) is fine.
    assert_eq!(
        query(r#"{y: .ts | strftime("%Y")}"#).extract(br#"{"ts":253402207200}"#),
        Ok(pairs(&[("y", "9999")]))
    );
    // Huge numbers elsewhere (jq 1.6's output; it reads 1e400 as the
    // largest double, serde_json refuses it).
    assert_eq!(
        query("{a: .n, b: .m}").extract(br#"{"n":123456789012345678901234567890,"m":1e29}"#),
        Ok(pairs(&[
            ("a", "123456789012345680000000000000"),
            ("b", "1e+29")
        ]))
    );
    assert!(
        failure("{a: .n}", br#"{"n":1e400}"#)
            .starts_with("record is not JSON: number out of range")
    );
}

/// Only the second output is asked for, so a query whose outputs never end
/// still fails.
#[test]
fn outputs_are_examined_two_at_most() {
    assert_eq!(
        failure("{a: repeat(.)}", br#""x""#),
        "query produced more than one output"
    );
    assert_eq!(
        failure(r#"{a: range(1e15) | tostring}"#, b"null"),
        "query produced more than one output"
    );
    // The first output's errors are reported; an error after it is not looked for.
    assert_eq!(
        query(r#"{a: "x"}, error("later")"#).extract(b"null"),
        Err(fail("query produced more than one output"))
    );
}

#[test]
fn the_prelude_parses() {
    assert!(load::parse(PRELUDE, |p| p.defs()).is_some());
    // Every renamed native exists under its new name.
    let names: Vec<&str> = natives().map(|(name, ..)| name).collect();
    for (from, to) in RENAMED {
        assert!(names.contains(&to), "{to}");
        assert!(!names.contains(&from), "{from}");
    }
    assert_eq!(names.iter().filter(|n| **n == "fromjson").count(), 1);
}

/// ns per record, printed (not asserted): `cargo test --release -- --ignored --nocapture speed`.
#[test]
#[ignore]
fn speed() {
    let q = query(
        r#"{customer_id: .customer_id, device: .type.device, year: .event_timestamp|strftime("%Y")}"#,
    );
    let record = br#"{"customer_id":"C-000042","type":{"device":"mobile","os":"Android 14","model":"Pixel 8"},"event_timestamp":1700000000,"session":"5f0c8a2e-6b1d-4c1e-9d3a-7e2f1b0c9a11","amount":129.95,"currency":"EUR","ok":true}"#;
    assert!((190..=210).contains(&record.len()), "{}", record.len());
    let n = 200_000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        let keys = q.extract(record).expect("extracts");
        std::hint::black_box(keys);
    }
    let elapsed = start.elapsed();
    println!(
        "extract: {} ns/record ({} bytes, {n} records)",
        elapsed.as_nanos() / n as u128,
        record.len()
    );
}

mod property {
    use super::*;
    use proptest::prelude::*;

    fn queries() -> Vec<MetadataQuery> {
        [
            r#"{customer_id: .customer_id, device: .type.device, year: .event_timestamp|strftime("%Y")}"#,
            "{a: .a}",
            r#"{a: (.a // "none")}"#,
            "{a: tojson}",
            r#"{a: (.. | numbers | todate)}"#,
            r#"{a: (.a | tostring | ascii_downcase | split("-")[0])}"#,
            r#"{a: (.s | fromjson? | tostring // "x")}"#,
            ".",
        ]
        .into_iter()
        .map(query)
        .collect()
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let text = prop::collection::vec(any::<char>(), 0..6).prop_map(String::from_iter);
        let key = prop_oneof![
            Just("a".to_owned()),
            Just("customer_id".to_owned()),
            Just("type".to_owned()),
            Just("device".to_owned()),
            Just("event_timestamp".to_owned()),
            Just("s".to_owned()),
            text.clone(),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            text.prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                // JSON inside a string, for fromjson.
                inner_string(),
            ]
        })
    }

    fn inner_string() -> impl Strategy<Value = serde_json::Value> {
        prop::collection::vec(any::<u8>(), 0..12)
            .prop_map(|b| serde_json::Value::String(String::from_utf8_lossy(&b).into_owned()))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            for q in queries() {
                if let Err(failure) = q.extract(&bytes) {
                    prop_assert_eq!(failure.code, FAILED);
                }
            }
        }

        #[test]
        fn arbitrary_json_never_panics(value in json(), cut in any::<prop::sample::Index>()) {
            let text = value.to_string();
            for q in queries() {
                match q.extract(text.as_bytes()) {
                    Ok(keys) => {
                        // An object's keys are unique.
                        let mut names: Vec<_> = keys.iter().map(|(k, _)| k).collect();
                        names.sort();
                        names.dedup();
                        prop_assert_eq!(names.len(), keys.len());
                    }
                    Err(failure) => prop_assert_eq!(failure.code, FAILED),
                }
                // And a truncated record.
                let cut = cut.index(text.len() + 1);
                if let Err(failure) = q.extract(&text.as_bytes()[..cut]) {
                    prop_assert_eq!(failure.code, FAILED);
                }
            }
        }
    }
}
