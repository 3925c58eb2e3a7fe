//! Tests of the WASM host against a real component: `tests/wasm-fixtures`, one guest
//! whose behaviour `init`'s `mode` or a `!MODE` first record picks.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::*;

/// The fixture component's file: `SLUICE_WASM_FIXTURE`, else built by
/// `tests/wasm-fixtures/build.sh` (a no-op when up to date). `None` only when the
/// wasm32-wasip2 target cannot be installed; the tests then skip, loudly.
pub(crate) fn fixture_path() -> Option<&'static std::path::Path> {
    static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    PATH.get_or_init(|| match std::env::var_os("SLUICE_WASM_FIXTURE") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wasm-fixtures/build.sh");
            let out = std::process::Command::new("bash")
                .arg(script)
                .output()
                .expect("run tests/wasm-fixtures/build.sh");
            assert!(
                out.status.success(),
                "tests/wasm-fixtures/build.sh failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if printed.is_empty() {
                eprintln!(
                    "\n*** SKIPPING WASM host tests: wasm32-wasip2 cannot be installed ***\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                return None;
            }
            Some(PathBuf::from(printed))
        }
    })
    .as_deref()
}

/// The fixture component's bytes.
fn fixture() -> Option<&'static [u8]> {
    static WASM: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    WASM.get_or_init(|| {
        let path = fixture_path()?;
        Some(std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    })
    .as_deref()
}

/// One cache directory for the test process: the fixture is compiled once (seconds in a
/// debug build, where cranelift itself is unoptimized), the other loads deserialize it.
pub(crate) fn shared_cache() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some(wasm) = fixture() {
            // Compile once, before the tests that share the directory race to do it.
            TransformHost::load("warm-up", wasm, Some(dir.path()), vec![], limits())
                .expect("load fixture");
        }
        dir
    })
    .path()
}

fn limits() -> Limits {
    Limits {
        deadline: Duration::from_millis(200),
        memory_bytes: 32 << 20,
        max_output_bytes: 1 << 20,
        instances: 1,
    }
}

fn host(mode: &str, limits: Limits) -> Option<TransformHost> {
    let wasm = fixture()?;
    let cache = shared_cache();
    Some(
        TransformHost::load(
            &format!("fixture-{mode}"),
            wasm,
            Some(cache),
            vec![("mode".into(), mode.into())],
            limits,
        )
        .expect("load fixture"),
    )
}

/// The fixture as `host` loads it, twice: calling `transform-packed` (what sluice does
/// with a component that exports it) and calling `transform`, so each test covers both.
fn both_calls(mode: &str, limits: Limits) -> Vec<TransformHost> {
    let Some(packed) = host(mode, limits.clone()) else {
        return Vec::new();
    };
    assert!(packed.packed(), "the fixture exports transform-packed");
    let plain = host(mode, limits).unwrap().plain_calls();
    assert!(!plain.packed());
    vec![packed, plain]
}

/// Records `0`, `1`, ...; every one carries Kinesis metadata (a stream has one source).
fn batch(data: &[&str]) -> Vec<Record> {
    data.iter()
        .enumerate()
        .map(|(i, d)| Record {
            arrival_ms: 1_700_000_000_000 + i as i64,
            data: Bytes::copy_from_slice(d.as_bytes()),
            kinesis: Some(KinesisMetadata {
                shard_id: "shardId-000000000000".into(),
                partition_key: format!("pk{i}"),
                sequence_number: format!("495{i}"),
                subsequence_number: Some(1),
                arrival_ms: 1_700_000_000_000,
            }),
        })
        .collect()
}

fn ok_data(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Ok { data, .. } => String::from_utf8_lossy(data).into_owned(),
            other => panic!("expected Ok, got {other:?}"),
        })
        .collect()
}

#[test]
fn well_behaved_guests_answer_in_input_order() {
    let ctx = BatchContext::default();
    for upper in both_calls("upper", limits()) {
        let out = upper.call(&ctx, &batch(&["a", "bc", "{\"x\":1}"])).unwrap();
        assert_eq!(ok_data(&out), ["A", "BC", "{\"X\":1}"]);
        for o in &out {
            let Outcome::Ok { partition_keys, .. } = o else {
                unreachable!()
            };
            assert_eq!(partition_keys, &[("case".to_string(), "upper".to_string())]);
        }
    }
    for mixed in both_calls("drop-odd", limits()) {
        let records = batch(&["a", "b", "c", "d"]);
        let out = mixed.call(&ctx, &records).unwrap();
        assert_eq!(ok_data(&out[..1]), ["a"]);
        assert_eq!(out[1], Outcome::Dropped);
        assert_eq!(
            out[2],
            Outcome::Failed(Failure::new(PROCESSING_FAILED, "not wanted"))
        );
        assert_eq!(ok_data(&out[3..]), ["d"]);
        // An empty batch is a valid call with an empty answer.
        assert_eq!(mixed.call(&ctx, &[]).unwrap(), []);
    }
    // What the guest saw: each record's arrival time and Kinesis metadata, through
    // either call (the `meta` mode answers them as data).
    for meta in both_calls("meta", limits()) {
        let out = meta.call(&ctx, &batch(&["a", "b"])).unwrap();
        assert_eq!(
            ok_data(&out),
            [
                "1700000000000 shardId-000000000000 pk0 4950 Some(1) 1700000000000",
                "1700000000001 shardId-000000000000 pk1 4951 Some(1) 1700000000000",
            ],
            "packed: {}",
            meta.packed()
        );
        // A batch with Kinesis metadata on some records only does not fit the packed
        // shape: the host takes the plain call for it, even on a packed component.
        let mut mixed = batch(&["a", "b"]);
        mixed[1].kinesis = None;
        let out = meta.call(&ctx, &mixed).unwrap();
        assert_eq!(
            ok_data(&out),
            [
                "1700000000000 shardId-000000000000 pk0 4950 Some(1) 1700000000000",
                "1700000000001 no kinesis",
            ],
            "packed: {}",
            meta.packed()
        );
    }
}

/// Through `transform-packed`, a record the guest answers with its own bytes comes back
/// as the very buffer the host sent (no copy); changed ones as consecutive slices of
/// the one answer buffer (no copy per record either).
#[test]
fn unchanged_records_keep_the_hosts_bytes() {
    let (Some(identity), Some(upper)) = (host("identity", limits()), host("upper", limits()))
    else {
        return;
    };
    let ctx = BatchContext::default();
    let records = batch(&["one", "two"]);
    let data = |o: &Outcome| match o {
        Outcome::Ok { data, .. } => data.clone(),
        other => panic!("{other:?}"),
    };
    for (o, r) in identity.call(&ctx, &records).unwrap().iter().zip(&records) {
        assert_eq!(data(o).as_ptr(), r.data.as_ptr(), "copied");
    }
    let out = upper.call(&ctx, &records).unwrap();
    let (first, second) = (data(&out[0]), data(&out[1]));
    assert_eq!((&first[..], &second[..]), (&b"ONE"[..], &b"TWO"[..]));
    assert_eq!(
        second.as_ptr(),
        first.as_ptr().wrapping_add(first.len()),
        "not one buffer"
    );
}

/// A packed answer whose lists do not fit together fails the batch with
/// `Lambda.JsonProcessingException` (or Firehose's missing-id code when records are
/// left unanswered), naming what is wrong; the instance keeps serving.
#[test]
fn malformed_packed_answers_fail_the_batch_by_name() {
    let Some(host) = host("identity", limits()) else {
        return;
    };
    let ctx = BatchContext::default();
    let cases: &[(&str, &str, &str)] = &[
        (
            "!bad-end",
            "Lambda.JsonProcessingException",
            "record 0 ends at 5, outside 0..=1",
        ),
        (
            "!short",
            "Lambda.MissingRecordId",
            "1 of 3 records (first: \"2\")",
        ),
        (
            "!long",
            "Lambda.JsonProcessingException",
            "4 dispositions for a batch of 3",
        ),
        (
            "!extra-data",
            "Lambda.JsonProcessingException",
            "4 bytes after the last replaced",
        ),
        (
            "!no-message",
            "Lambda.JsonProcessingException",
            "record 0 failed but `messages`",
        ),
        (
            "!key-outside",
            "Lambda.JsonProcessingException",
            "names record 3, in a batch of 3",
        ),
    ];
    for &(first, code, words) in cases {
        let err = host.call(&ctx, &batch(&[first, "b", "c"])).unwrap_err();
        assert_eq!(err.code(), code, "{first}: {err}");
        assert!(!err.is_retriable(), "{first}: {err}");
        assert_eq!(err.fault(), Fault::Data);
        assert!(err.to_string().contains(words), "{first}: {err}");
        assert_eq!(ok_data(&host.call(&ctx, &batch(&["ok"])).unwrap()), ["ok"]);
    }
}

/// Every hostile batch fails as a whole with a clear, classified error; after the last
/// retry each record carries the code and message; and the same host then serves a
/// good batch on a fresh instance (the batch counter restarts).
#[test]
fn hostile_batches_fail_their_records_and_the_host_keeps_serving() {
    for host in both_calls("count", limits()) {
        hostile_batches(&host);
    }
}

fn hostile_batches(host: &TransformHost) {
    let ctx = BatchContext::default();
    let good = batch(&["x", "y"]);
    assert_eq!(ok_data(&host.call(&ctx, &good).unwrap()), ["1", "1"]);
    assert_eq!(ok_data(&host.call(&ctx, &good).unwrap()), ["2", "2"]);

    // (first record, code, retriable, words the message must hold, fresh instance after)
    let cases: &[(&str, &str, bool, &str, bool)] = &[
        ("!loop", "Lambda.Timeout", true, "deadline of 200 ms", true),
        (
            "!alloc",
            "Lambda.OutOfMemory",
            true,
            "memory limit of 33554432",
            true,
        ),
        ("!panic", "Lambda.FunctionError", true, "trapped", true),
        (
            "!huge",
            "Lambda.ResponseSizeTooLarge",
            false,
            "more than 1048576 bytes",
            true,
        ),
        (
            "!dup",
            "Lambda.DuplicatedRecordId",
            false,
            "\"0\" more than once",
            false,
        ),
        (
            "!missing",
            "Lambda.MissingRecordId",
            false,
            "1 of 3 records",
            false,
        ),
        (
            "!unknown",
            "Lambda.UnknownRecordId",
            false,
            "\"no-such-id\"",
            false,
        ),
    ];
    let mut batches_on_instance = 2;
    for &(first, code, retriable, words, fresh) in cases {
        let records = batch(&[first, "b", "c"]);
        let started = Instant::now();
        let err = host.call(&ctx, &records).unwrap_err();
        let took = started.elapsed();
        eprintln!("{first} (packed: {}, {took:?}): {err}", host.packed());
        assert_eq!(err.code(), code, "{first}: {err}");
        assert_eq!(err.is_retriable(), retriable, "{first}: {err}");
        assert!(err.to_string().contains(words), "{first}: {err}");
        assert!(err.to_string().contains("fixture-count"), "{first}: {err}");
        assert!(took < Duration::from_secs(5), "{first} took {took:?}");
        if first == "!panic" {
            assert!(err.to_string().contains("panic mode"), "{err}");
        }

        let outcomes = host.call_with_retries(&ctx, &records, 1);
        assert_eq!(outcomes.len(), 3);
        for o in &outcomes {
            let Outcome::Failed(f) = o else {
                panic!("{first}: expected Failed, got {o:?}")
            };
            assert_eq!(f.code, code);
            assert!(f.message.contains(words), "{first}: {}", f.message);
        }

        // The next good batch works; a trapped instance was replaced by a fresh one.
        batches_on_instance = if fresh { 1 } else { batches_on_instance + 3 };
        let expect = batches_on_instance.to_string();
        assert_eq!(
            ok_data(&host.call(&ctx, &good).unwrap()),
            [expect.as_str(), expect.as_str()],
            "after {first}"
        );
    }
}

#[test]
fn init_failure_fails_every_record_after_the_retries() {
    let Some(host) = host("init-fail", limits()) else {
        return;
    };
    let err = host.check_init().unwrap_err();
    assert_eq!(err.code(), "Lambda.InitError");
    assert_eq!(err.fault(), Fault::Config);
    // Firehose retries an invocation whose init failed; so does sluice.
    assert!(err.is_retriable());
    assert!(err.to_string().contains("refusing to start"), "{err}");
    let outcomes = host.call_with_retries(&BatchContext::default(), &batch(&["a", "b"]), 3);
    assert!(outcomes.iter().all(
        |o| matches!(o, Outcome::Failed(f) if f.code == "Lambda.InitError" && f.attempts == 4)
    ));
}

#[test]
fn the_sandbox_gives_no_files_network_or_environment() {
    let Some(file) = host("file", limits()) else {
        return;
    };
    let ctx = BatchContext::default();
    let seen = ok_data(&file.call(&ctx, &batch(&["a"])).unwrap());
    assert_eq!(seen, ["read=false write=false list=false"]);

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let socket = TransformHost::load(
        "fixture-socket",
        fixture().unwrap(),
        Some(shared_cache()),
        vec![("mode".into(), "socket".into()), ("addr".into(), addr)],
        limits(),
    )
    .unwrap();
    let seen = ok_data(&socket.call(&ctx, &batch(&["a"])).unwrap());
    assert!(seen[0].starts_with("denied"), "{seen:?}");
    assert!(
        listener.accept().is_err(),
        "the guest reached a host socket"
    );

    let env = host("env", limits()).unwrap();
    let seen = ok_data(&env.call(&ctx, &batch(&["a"])).unwrap());
    assert_eq!(seen, ["vars=0 args=0 cwd=Some(\"/\")"]);

    // 1,000 log messages, stdout and stderr lines are rate-limited and the call succeeds
    // (what reaches the log: tests/test_transform_cli.py).
    let chatty = host(
        "chatty",
        Limits {
            deadline: Duration::from_secs(10),
            ..limits()
        },
    )
    .unwrap();
    assert_eq!(ok_data(&chatty.call(&ctx, &batch(&["a"])).unwrap()), ["a"]);
}

/// The second load of the same bytes comes from the cache and is faster; a damaged entry
/// or an untrusted directory is never deserialized, the module is compiled instead.
#[test]
fn the_disk_cache_serves_restarts_and_rejects_damage() {
    let Some(wasm) = fixture() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let load = || {
        let host = TransformHost::load("cached", wasm, Some(&cache), vec![], limits()).unwrap();
        let out = host.call(&BatchContext::default(), &batch(&["a"])).unwrap();
        assert_eq!(ok_data(&out), ["a"]);
        host.load_info()
    };
    let (first, compile) = load();
    let (second, cached) = load();
    eprintln!("component load: compile {compile:?}, from cache {cached:?}");
    assert_eq!(first, ModuleSource::Compiled);
    assert_eq!(second, ModuleSource::Cache);
    assert!(cached < compile, "cache {cached:?} vs compile {compile:?}");

    // Damage the payload: checksum mismatch -> recompiled, entry rewritten.
    let engine_entry = {
        let host =
            TransformHost::load("probe", wasm, Some(shared_cache()), vec![], limits()).unwrap();
        cache::CacheEntry::new(&cache, &host.engine, wasm).unwrap()
    };
    let path = engine_entry.path().to_path_buf();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(load().0, ModuleSource::Compiled);
    assert_eq!(load().0, ModuleSource::Cache);

    // Truncated to the header, or not ours to trust: never read (no recompile needed to
    // show it, the load path is the one above).
    std::fs::write(&path, &bytes[..20]).unwrap();
    assert!(engine_entry.read().is_none());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let host = TransformHost::load("probe", wasm, Some(shared_cache()), vec![], limits()).unwrap();
    let why = cache::CacheEntry::new(&cache, &host.engine, wasm)
        .err()
        .unwrap_or_default();
    assert!(why.contains("writable by group or others"), "{why}");
}

/// Per-batch cost of the identity guest on 500-record batches of 200 bytes: the whole
/// path (copy in, call, copy out, id matching). Prints the numbers; the bound is loose
/// so a slow shared machine does not fail it.
#[test]
fn identity_overhead_per_500_record_batch() {
    let Some(host) = host("identity", Limits::default()) else {
        return;
    };
    let payload = "x".repeat(200);
    let records = batch(&vec![payload.as_str(); 500]);
    let ctx = BatchContext::default();
    host.call(&ctx, &records).unwrap(); // instance creation and init
    let rounds = 50;
    let started = Instant::now();
    for _ in 0..rounds {
        let out = host.call(&ctx, &records).unwrap();
        assert_eq!(out.len(), 500);
    }
    let per_batch = started.elapsed() / rounds;
    eprintln!(
        "identity guest: {per_batch:?} per 500-record batch ({:?} per record)",
        per_batch / 500
    );
    assert!(per_batch < Duration::from_millis(500), "{per_batch:?}");
}

/// The intended use: shared between threads, called from `spawn_blocking` (WASI's sync
/// bindings must not run on the async reactor itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_concurrent_callers_from_spawn_blocking() {
    fn shareable<T: Send + Sync>() {}
    shareable::<TransformHost>();
    let Some(host) = host(
        "chatty",
        Limits {
            deadline: Duration::from_secs(10),
            instances: 2,
            ..limits()
        },
    ) else {
        return;
    };
    let host = Arc::new(host);
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let host = host.clone();
            tokio::task::spawn_blocking(move || {
                let data = format!("call {i}");
                host.call(&BatchContext::default(), &batch(&[data.as_str()]))
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let out = call.await.unwrap().unwrap();
        assert_eq!(ok_data(&out), [format!("call {i}")]);
    }
    assert!(host.lock_pool().live <= 2);
}
