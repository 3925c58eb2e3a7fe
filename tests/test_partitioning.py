"""Dynamic partitioning end to end: many open partitions per stream, keys from a WASM
transform (`!{partitionKeyFromLambda:KEY}`), Hive-style paths read back with DuckDB,
the active-partition limit, records whose keys give no prefix, the memory budget with
Parquet, and kill -9 with many partitions open: every record exactly once."""

from __future__ import annotations

import base64
import json
import os
import random
import time
import urllib.request
from collections import Counter
from pathlib import Path

import duckdb
import pytest
import pyarrow.parquet as pq

from conftest import (
    KillLoop,
    assert_exactly_once,
    wait_until,
    wasm_component,
    firehose_config,
    firehose_client,
    list_objects,
    put_batch_ok,
    staged_files,
    write_config,
)
from kinesis_support import Producer, create_stream, kinesis_client, kinesis_moto, kinesis_source  # noqa: F401
from s3_support import list_keys, read_s3_delivered, s3_client, s3_native_config
from test_crash import check_no_dup_no_foreign, kill9_cycles
from test_transforms import data_records, error_docs

PREFIX = "data/customer=!{partitionKeyFromLambda:customer_id}/"
ERRORS = "errors/!{firehose:error-output-type}/"


def stream_toml(name: str, out: Path, *, interval_secs: int = 2, size_bytes: int = 1048576,
                partitioning: dict | None = None, fmt: str | None = None) -> str:
    """A Direct PUT stream into `out`, partitioned by the enrich component's keys."""
    lines = [
        f'name = "{name}"', "[source]", 'type = "direct_put"',
        "[destination]", 'type = "local"', f"path = {json.dumps(str(out))}",
        "append_delimiter = true", f'prefix = "{PREFIX}"', f'error_output_prefix = "{ERRORS}"',
        "[destination.buffering]", f"size_bytes = {size_bytes}", f"interval_secs = {interval_secs}",
        "[destination.dynamic_partitioning]",
    ]
    lines += [f"{k} = {v}" for k, v in (partitioning or {}).items()]
    lines += [
        "[[destination.transform]]",
        f"module = {json.dumps(str(wasm_component('enrich')))}",
        'config = { keys = "customer_id" }',
    ]
    if fmt:
        lines.append(fmt)
    return "\n".join(lines) + "\n"


def records(ids, customers: int, pad: int = 40) -> list[bytes]:
    return [
        json.dumps({"customer_id": f"c{n % customers:03d}", "id": n, "pad": "x" * pad}, separators=(",", ":")).encode()
        for n in ids
    ]


def test_records_over_300_keys_land_under_their_partitions(tmp_path, start_daemon):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "p.toml", stream_toml("parts", out, interval_secs=2))
    d = start_daemon(cfg)
    client = firehose_client(d.endpoint)
    sent = records(range(50_000), customers=300)
    for i in range(0, len(sent), 500):
        put_batch_ok(client, "parts", sent[i : i + 500])
    d.stop_ok()

    keys = list_objects(out)
    data_keys = [k for k in keys if k.startswith("data/")]
    assert not [k for k in keys if not k.startswith("data/")], keys[:5]
    # Every object sits under its own partition and holds only that customer's records.
    for key in data_keys:
        customer = key.split("/")[1].removeprefix("customer=")
        lines = (out / key).read_bytes().splitlines()
        assert lines and all(json.loads(line)["customer_id"] == customer for line in lines), key
    assert data_records(out) == Counter(sent)

    # An independent reader: DuckDB with Hive partitioning sees the key as a column.
    rows = duckdb.sql(
        f"SELECT customer, count(*) AS n, count(DISTINCT id) AS ids "
        f"FROM read_json_auto('{out}/data/**/*', hive_partitioning = true, format = 'newline_delimited') "
        f"GROUP BY customer ORDER BY customer"
    ).fetchall()
    expected = Counter(f"c{n % 300:03d}" for n in range(50_000))
    assert len(rows) == 300
    assert {c: n for c, n, _ in rows} == dict(expected)
    assert all(n == ids for _, n, ids in rows)
    assert not staged_files(out)


def test_partition_limit_and_records_without_a_prefix_go_to_error_outputs(tmp_path, start_daemon):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "p.toml", stream_toml("limited", out, interval_secs=60,
                                                         partitioning={"max_active_partitions": 5}))
    d = start_daemon(cfg)
    client = firehose_client(d.endpoint)
    # Eight customers in one batch: the first five seen open partitions.
    ok = records(range(80), customers=8)
    # Keys that cannot name a prefix: a path segment `..`, and no key at all (enrich
    # fails a record without the field itself, so that one is its processing-failed).
    escaping = json.dumps({"customer_id": "x/../../etc", "id": -1}).encode()
    keyless = json.dumps({"id": -2}).encode()
    put_batch_ok(client, "limited", ok + [escaping, keyless])
    d.stop_ok()

    delivered = data_records(out)
    first_five = {f"c{n:03d}" for n in range(5)}
    assert delivered == Counter(r for r in ok if json.loads(r)["customer_id"] in first_five)
    exceeded = [json.loads(line) for key in list_objects(out) if key.startswith("errors/activePartitionExceeded/")
                for line in (out / key).read_bytes().splitlines()]
    assert Counter(base64.b64decode(doc["rawData"]) for doc in exceeded) == Counter(
        r for r in ok if json.loads(r)["customer_id"] not in first_five)
    assert all(doc["errorCode"] == "DynamicPartitioning.ActivePartitionsLimitExceeded" for doc in exceeded)
    failed = {base64.b64decode(doc["rawData"]): doc for doc in error_docs(out)}
    assert set(failed) == {escaping, keyless}
    assert failed[escaping]["errorCode"] == "DynamicPartitioning.InvalidPartitionKey"
    assert "`..`" in failed[escaping]["errorMessage"]
    assert failed[keyless]["errorCode"] == "Lambda.ProcessingFailed"


def test_a_burst_of_10000_keys_overflows_exactly_past_500(tmp_path, start_daemon):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "p.toml", stream_toml("burst", out, interval_secs=60))
    d = start_daemon(cfg)
    client = firehose_client(d.endpoint)
    sent = records(range(10_000), customers=10_000, pad=0)
    for i in range(0, len(sent), 500):
        put_batch_ok(client, "burst", sent[i : i + 500])
    want = ['sluice_error_records_total{stream="burst",type="activePartitionExceeded"} 9500',
            'sluice_partition_count{stream="burst"} 500', 'sluice_partitions_created_total{stream="burst"} 500']
    wait_until(lambda: all(w in urllib.request.urlopen(f"{d.endpoint}/metrics", timeout=10).read().decode() for w in want),
               30, f"metrics {want}")
    d.stop_ok()
    # Records are routed in order: the first 500 keys open partitions (Firehose's
    # default limit), every later key's record is an activePartitionExceeded document.
    assert data_records(out) == Counter(sent[:500])
    exceeded = [base64.b64decode(json.loads(line)["rawData"]) for key in list_objects(out)
                if key.startswith("errors/activePartitionExceeded/") for line in (out / key).read_bytes().splitlines()]
    assert Counter(exceeded) == Counter(sent[500:])
    assert len({k.split("/")[1] for k in list_objects(out) if k.startswith("data/")}) == 500


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


@pytest.mark.parametrize("budget", ["stream", "process"])
def test_memory_budget_finishes_parquet_objects_early(tmp_path, start_daemon, budget):
    """Parquet holds its row group in memory: 40 partitions under a 1 MiB budget are
    finished early, into more (smaller) objects, and nothing is lost. `stream`: the
    stream's own memory_budget_bytes; `process`: two streams with the default (512 MiB)
    each under `sluice run --memory-budget-bytes` of 1 MiB for both."""
    fmt = "\n".join([
        "[destination.format]", 'type = "parquet"',
        "[[destination.format.schema]]", 'name = "customer_id"', 'type = "string"',
        "[[destination.format.schema]]", 'name = "id"', 'type = "bigint"',
        "[[destination.format.schema]]", 'name = "pad"', 'type = "string"',
    ])
    names = ["budget"] if budget == "stream" else ["budget-a", "budget-b"]
    own = {"memory_budget_bytes": 1 << 20} if budget == "stream" else {}
    cfgs = [
        write_config(tmp_path / f"{name}.toml", stream_toml(
            name, tmp_path / name, interval_secs=60, size_bytes=64 << 20, partitioning=own, fmt=fmt))
        for name in names
    ]
    extra = ["--memory-budget-bytes", str(1 << 20)] if budget == "process" else None
    d = start_daemon(cfgs, extra_args=extra)
    client = firehose_client(d.endpoint)
    total = 40_000
    sent = records(range(total), customers=40, pad=200)
    put_batch_ok(client, names[0], sent[:500])
    base = rss_kib(d.pid, "VmRSS")
    for n, i in enumerate(range(500, len(sent), 500)):
        put_batch_ok(client, names[n % len(names)], sent[i : i + 500])

    def finished_early():
        with urllib.request.urlopen(f"{d.endpoint}/metrics", timeout=10) as r:
            text = r.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("sluice_partitions_finished_for_memory_total")
                   and f'budget="{budget}"' in line)
    wait_until(finished_early, what=f"objects finished for the {budget} memory budget")
    # Growth over the daemon's size after its first batch: the 1 MiB budget plus what a
    # batch in flight holds (a 4 MiB read, its outcomes, 40 open Arrow builders).
    grown_mib = (rss_kib(d.pid, "VmHWM") - base) / 1024
    print(f"{budget} budget: peak RSS grew {grown_mib:.1f} MiB over {base / 1024:.1f} MiB with 1 MiB")
    assert grown_mib < 1 + 48, grown_mib
    d.stop_ok()

    got = Counter()
    objects = 0
    for name in names:
        keys = [k for k in list_objects(tmp_path / name) if k.startswith("data/")]
        objects += len(keys)
        for key in keys:
            table = pq.read_table(tmp_path / name / key)
            customer = key.split("/")[1].removeprefix("customer=")
            assert set(table.column("customer_id").to_pylist()) == {customer}, key
            got.update(table.column("id").to_pylist())
    assert objects > 40 * len(names), f"{objects} objects: the budget finished none early"
    assert got == Counter(range(total))
    log = d.log_path.read_text()
    assert "Delivered. stream=" in log


def test_kill9_with_many_open_partitions_is_exactly_once(tmp_path, start_daemon):
    """Direct PUT into the local sink, 200 partitions open, 10 kill -9 cycles."""
    seed = int(os.environ.get("SLUICE_TEST_SEED", random.randrange(1 << 30)))
    print(f"SLUICE_TEST_SEED={seed}")
    rng = random.Random(seed)
    out, state = tmp_path / "out", tmp_path / "state"
    cfg = write_config(tmp_path / "crash.toml", stream_toml("crash", out, interval_secs=1, size_bytes=1 << 20))
    make = lambda tag, batch_ids: records(batch_ids, customers=200)  # noqa: E731
    # Past the first epoch (1 s) in most cycles, so kills land before, during and after
    # commits.
    acked, maybe = kill9_cycles(
        start_daemon, cfg, state, rng, 10, (1.0, 2.5), make_records=make,
        check=lambda acked, maybe: check_no_dup_no_foreign(data_records(out), set(acked), set(maybe)),
    )
    d = start_daemon(cfg, state_dir=state)
    final = records(range(10_000_000, 10_002_000), customers=200)
    client = firehose_client(d.endpoint)
    for i in range(0, len(final), 500):
        put_batch_ok(client, "crash", final[i : i + 500])
    acked += final
    d.stop_ok()
    got = data_records(out)
    check_no_dup_no_foreign(got, set(acked), set(maybe))
    missing = set(acked) - set(got)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records lost (seed {seed})"
    partitions = {k.split("/")[1] for k in list_objects(out) if k.startswith("data/")}
    assert len(partitions) == 200
    assert not staged_files(out)


def test_kinesis_kill9_with_200_partitions_into_s3_is_exactly_once(kinesis_moto, start_daemon, tmp_path):
    """Kinesis (moto; plain records and KPL aggregates on 2 shards) into moto's S3 with
    jq keys: 200 partitions open while the daemon is SIGKILLed 10 times. Every user record
    lands once, under its own key's partition."""
    seed = int(os.environ.get("SLUICE_TEST_SEED", random.randrange(1 << 30)))
    print(f"SLUICE_TEST_SEED={seed}")
    rng = random.Random(seed)
    kin = kinesis_client(kinesis_moto, max_attempts=1)
    s3 = s3_client(kinesis_moto)
    tag = f"{os.getpid()}-{rng.randrange(10**6)}"
    bucket, stream = f"parts-{tag}", f"parts-{tag}"
    s3.create_bucket(Bucket=bucket)
    create_stream(kin, stream, 2)
    doc = s3_native_config(
        "kparts", bucket=bucket, endpoint_url=kinesis_moto, interval_secs=1,
        prefix="k=!{partitionKeyFromQuery:k}/", error_output_prefix=ERRORS,
        dynamic_partitioning={"query": "{k: .k}"},
    )
    doc["source"] = kinesis_source(stream, kinesis_moto)
    cfg = write_config(tmp_path / "kparts.toml", doc)
    state = tmp_path / "state"
    keys = [f"pk-{i:03d}" for i in range(200)]
    p = Producer(kin, stream, "kp", pad=60)
    # Against moto a restart with 200 open partitions spends seconds in recovery (a
    # claim marker read per directory level of each upload) and an epoch of 200 objects
    # seconds more: kills count from ready, and every third run first delivers something,
    # so kills land after commits as well as before and during them.
    runs = [0]

    def settle(daemon):
        daemon.wait_ready()
        runs[0] += 1
        if runs[0] % 3 == 0:
            seen = len(list_keys(s3, bucket, "k="))
            wait_until(lambda: len(list_keys(s3, bucket, "k=")) > seen, 90, "a delivery between kills")

    with KillLoop(lambda: start_daemon(cfg, state_dir=state, log_name="kparts"),
                  random.Random(rng.random()), 0.5, 4.0, limit=10, settle=settle) as chaos:
        while chaos.running():
            p.put_plain(rng.sample(keys, 200))
            p.put_aggregates([(rng.choice(keys), rng.randint(2, 20)) for _ in range(5)])
            time.sleep(0.2)
    assert chaos.kills == 10, f"only {chaos.kills} kills"

    def delivered() -> int:
        return sum(read_s3_delivered(s3, bucket, "k=").records.values())

    # Epochs committed between kills, so kills landed after commits too.
    during = delivered()
    assert during > 0, "nothing was delivered while the daemon was being killed"
    wait_until(lambda: delivered() >= len(p.expected), 120, f"{len(p.expected)} records delivered")
    chaos.daemon.stop_ok()
    got = read_s3_delivered(s3, bucket, "k=")
    print(f"kinesis kill9: {len(p.expected)} user records ({during} delivered during the kills), "
          f"{len(got.keys)} objects, shards {dict(p.on_shard)}")
    assert_exactly_once(got.records, p.expected)
    for key in got.keys:
        part = key.split("/")[0].removeprefix("k=")
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert {json.loads(line)["k"] for line in body.splitlines()} == {part}, key
    assert len({k.split("/")[0] for k in got.keys}) == 200
    assert not list_keys(s3, bucket, "errors/"), "records went to an error output"


def test_jq_keys_from_the_firehose_shape_with_hive_paths(tmp_path, start_daemon):
    """Firehose JSON: MetadataExtraction (JQ-1.6) keys, Hive-style year=/customer= paths
    read back by DuckDB, `// "default"`, and records the query cannot read."""
    out = tmp_path / "out"
    cfg = firehose_config(
        "jq", out,
        Prefix="year=!{partitionKeyFromQuery:year}/customer=!{partitionKeyFromQuery:customer}/",
        ErrorOutputPrefix=ERRORS,
        DynamicPartitioningConfiguration={"Enabled": True, "RetryOptions": {"DurationInSeconds": 300}},
        ProcessingConfiguration={"Enabled": True, "Processors": [
            {"Type": "MetadataExtraction", "Parameters": [
                {"ParameterName": "MetadataExtractionQuery",
                 "ParameterValue": '{year: (.ts | strftime("%Y")), customer: (.customer // "unknown" | ascii_downcase)}'},
                {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"},
            ]},
            {"Type": "AppendDelimiterToRecord"},
        ]},
    )
    d = start_daemon(write_config(tmp_path / "jq.json", cfg))
    client = firehose_client(d.endpoint)
    years = {2023: 1_690_000_000, 2024: 1_710_000_000, 2025: 1_740_000_000}
    sent = [
        json.dumps({"customer": f"C{n % 7}", "ts": years[2023 + n % 3] + n, "n": n}).encode()
        for n in range(3_000)
    ] + [json.dumps({"ts": years[2024], "n": -1}).encode()]
    bad = [b"not json at all", json.dumps({"customer": "x", "n": -2}).encode()]  # no ts: strftime(null) fails
    for i in range(0, len(sent), 500):
        put_batch_ok(client, "jq", sent[i : i + 500])
    put_batch_ok(client, "jq", bad)
    d.stop_ok()

    assert data_records(out) == Counter(sent)
    rows = duckdb.sql(
        f"SELECT year, customer, count(*) FROM read_json_auto('{out}/year=*/**/*', hive_partitioning = true, "
        f"format = 'newline_delimited') GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    expected = Counter((2023 + n % 3, f"c{n % 7}") for n in range(3_000))
    expected[(2024, "unknown")] += 1
    assert {(int(y), c): n for y, c, n in rows} == dict(expected)
    failed = {base64.b64decode(doc["rawData"]): doc for doc in error_docs(out)}
    assert set(failed) == set(bad)
    assert all(doc["errorCode"] == "DynamicPartitioning.MetadataExtractionFailed" for doc in failed.values())
    assert "not JSON" in failed[b"not json at all"]["errorMessage"]


def event_time_toml(name: str, out: Path, late: str) -> str:
    return "\n".join([
        f'name = "{name}"', "[source]", 'type = "direct_put"',
        "[destination]", 'type = "local"', f"path = {json.dumps(str(out))}", "append_delimiter = true",
        'prefix = "data/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"', f'error_output_prefix = "{ERRORS}"',
        "[destination.buffering]", "interval_secs = 1",
        "[destination.dynamic_partitioning]",
        "[destination.dynamic_partitioning.event_time]",
        'field = "event.ts"', f"lateness_secs = {3 * 86400}", f'late = "{late}"',
    ]) + "\n"


def test_event_time_partitions_by_the_records_time_with_a_lateness_horizon(tmp_path, start_daemon):
    """`!{timestamp:...}` from each record's `event.ts` (epoch seconds, millis or RFC 3339)
    over two days of hours, read back with DuckDB's Hive partitioning; stragglers 10 days
    old go to the `late` error output on one stream and into the arrival hour on the
    other; records without a readable time go to processing-failed. Nothing lost."""
    import datetime as dt

    now = int(time.time())
    forms = [lambda t: t, lambda t: t * 1000, lambda t: dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()]
    on_time = [
        json.dumps({"n": n, "event": {"ts": forms[n % 3](now - (n % 48) * 3600 - 60)}}).encode()
        for n in range(2_400)
    ]
    late = [json.dumps({"n": -n, "event": {"ts": now - 10 * 86400}}).encode() for n in range(1, 21)]
    bad = [b"not json", json.dumps({"n": "x", "event": {}}).encode(), json.dumps({"event": {"ts": "soon"}}).encode()]
    outs = {late_to: tmp_path / late_to for late_to in ("error_output", "arrival")}
    cfgs = [write_config(tmp_path / f"{k}.toml", event_time_toml(f"et-{k.replace('_', '-')}", out, k)) for k, out in outs.items()]
    d = start_daemon(cfgs)
    client = firehose_client(d.endpoint)
    for name in ("et-error-output", "et-arrival"):
        for i in range(0, len(on_time), 500):
            put_batch_ok(client, name, on_time[i : i + 500])
        put_batch_ok(client, name, late + bad)
    want = ['sluice_late_records_total{stream="et-error-output",to="error_output"} 20',
            'sluice_late_records_total{stream="et-arrival",to="arrival"} 20']
    # Records are counted as the buffer routes them, after the puts were acknowledged.
    wait_until(lambda: all(w in urllib.request.urlopen(f"{d.endpoint}/metrics", timeout=10).read().decode() for w in want),
               30, f"metrics {want}")
    d.stop_ok()

    def hour_of(record: bytes) -> tuple[str, str]:
        ts = json.loads(record)["event"]["ts"]
        t = dt.datetime.fromisoformat(ts) if isinstance(ts, str) else dt.datetime.fromtimestamp(ts / 1000 if ts > 1e11 else ts, dt.timezone.utc)
        t = t.astimezone(dt.timezone.utc)
        return t.strftime("%Y-%m-%d"), t.strftime("%H")

    for late_to, out in outs.items():
        got = data_records(out)
        expected = on_time + (late if late_to == "arrival" else [])
        assert got == Counter(expected), late_to
        rows = duckdb.sql(
            f"SELECT dt::VARCHAR, hour::VARCHAR, n FROM read_json_auto('{out}/data/*/*/*', hive_partitioning = true, "
            "hive_types_autocast = false)"
        ).fetchall()
        placed = {n: (day, hour) for day, hour, n in rows}
        assert len(rows) == len(expected)
        for record in on_time:
            assert placed[json.loads(record)["n"]] == hour_of(record), record
        partitions = {p for p in placed.values()}
        assert len(partitions) >= 48, partitions
        late_docs = [
            json.loads(line) for key in list_objects(out) if key.startswith("errors/late/")
            for line in (out / key).read_bytes().splitlines()
        ]
        failed = error_docs(out)
        assert sorted(base64.b64decode(doc["rawData"]) for doc in failed) == sorted(bad)
        assert {doc["errorCode"] for doc in failed} == {"EventTime.InvalidTimestamp"}
        if late_to == "arrival":
            arrival_day = time.strftime("%Y-%m-%d", time.gmtime(now))
            assert all(placed[json.loads(r)["n"]][0] >= arrival_day for r in late)
            assert late_docs == []
        else:
            assert sorted(base64.b64decode(doc["rawData"]) for doc in late_docs) == sorted(late)
            assert {doc["errorCode"] for doc in late_docs} == {"EventTime.OutsideLatenessHorizon"}
            assert "beyond the lateness horizon of 259200 s" in late_docs[0]["errorMessage"]
