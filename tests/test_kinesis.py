"""Kinesis Data Streams as the source, end to end.

Emulators: moto with AWS-like resharding (kinesis_support.MOTO_PATCH explains why moto is
patched), kinesis-local (npm; null iterator + ChildShards at a closed shard's end, like
AWS), and tests/kinesis_fault_proxy.py in front of moto for throttling / expired iterators.

Producers write KPL aggregates with aws-kinesis-agg (an independent implementation of the
format) and plain records; every user record is a unique one-line JSON document
{"k": partition key, "n": its index among that key's records, "id": ...}. Output is read
with conftest's independent readers; each test asserts every user record is delivered
exactly once. Counts are printed (run with -s to see them).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import (
    KillLoop,
    assert_exactly_once,
    firehose_config,
    list_objects,
    read_delivered,
    write_config,
)
from kinesis_support import (  # noqa: F401 - fixtures are used by name
    Producer,
    commit_order,
    count_local_lines,
    create_stream,
    kinesis_client,
    kinesis_fault_proxy,
    kinesis_local,
    kinesis_local_config,
    kinesis_moto,
    kinesis_source,
    merge_adjacent,
    open_shards,
    read_checkpoint_shards,
    assert_per_key_order,
    split_in_half,
    stream_arn,
)
from s3_support import read_s3_delivered, s3_client, s3_native_config, wait_for_log, wait_until

MIB = 1024 * 1024
KPL_MAGIC = b"\xf3\x89\x9a\xc2"
DEBUG_LOG = "info,sluice=debug"  # the `Delivered.` lines give the commit order of objects
GRACE_SECS = 2.0  # after the last expected record shows up, wait this long for duplicates


def seeded(name: str) -> random.Random:
    seed = int(os.environ.get("SLUICE_TEST_SEED", random.randrange(1 << 30)))
    print(f"{name}: SLUICE_TEST_SEED={seed}")
    return random.Random(seed)


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


def wait_count(count_fn, n: int, timeout: float, what: str) -> None:
    got = [0]

    def done() -> bool:
        got[0] = count_fn()
        return got[0] >= n

    assert wait_until(done, timeout, 0.5), f"{what}: {got[0]} of {n} records delivered within {timeout}s"
    time.sleep(GRACE_SECS)


def put_round(p: Producer, rng: random.Random, keys: list[str], *, plain: int, aggs: int, agg_max: int = 40) -> None:
    """One PutRecords of `plain` plain records (random keys) and one of `aggs` aggregates."""
    if plain:
        p.put_plain([rng.choice(keys) for _ in range(plain)])
    if aggs:
        p.put_aggregates([(rng.choice(keys), rng.randint(2, agg_max)) for _ in range(aggs)])


# ----------------------------------------------------------------------------------------
# 1. Resharding on moto: split + merge while putting; exactly once; per-key order
# ----------------------------------------------------------------------------------------


def reshard_while_putting(kin, stream: str, p: Producer, rng: random.Random, progress) -> dict:
    """2 shards -> split the lower one -> merge its upper child with the other original
    shard, putting plain records and aggregates before, between and after. `progress()`
    returns how many records are delivered so far: each phase waits until the daemon has
    delivered something, so resharding happens while it is reading. Returns shard roles."""
    keys = [f"pk-{i:02d}" for i in range(16)]
    for _ in range(6):
        put_round(p, rng, keys, plain=40, aggs=3)
        time.sleep(0.35)
    assert wait_until(lambda: progress() > 0, 30, 0.3), "nothing delivered before the split"
    low, high = open_shards(kin, stream)
    children = split_in_half(kin, stream, low)
    for _ in range(6):
        put_round(p, rng, keys, plain=40, aggs=3)
        time.sleep(0.35)
    shards = {s["ShardId"]: s for s in open_shards(kin, stream)}
    upper_child = max(children, key=lambda c: int(shards[c]["HashKeyRange"]["StartingHashKey"]))
    merged = merge_adjacent(kin, stream, shards[upper_child], shards[high["ShardId"]])
    for _ in range(6):
        put_round(p, rng, keys, plain=40, aggs=3)
        time.sleep(0.35)
    roles = {"split_parent": low["ShardId"], "children": children, "merge_parents": [upper_child, high["ShardId"]], "merged": merged}
    # The scenario must have exercised every lineage step (else the test proves nothing).
    for sid in [low["ShardId"], *children, high["ShardId"], merged]:
        assert p.on_shard[sid] > 0, f"no user record landed on {sid}: {dict(p.on_shard)} roles={roles}"
    return roles


def check_lineage_committed(state_dir: Path, roles: dict) -> None:
    cp = read_checkpoint_shards(state_dir)
    for sid in [roles["split_parent"], *roles["merge_parents"]]:
        assert cp.get(sid) == "ended", f"closed shard {sid} not committed as ended: {cp}"
    for sid in [*roles["children"], roles["merged"]]:
        if sid in roles["merge_parents"]:
            continue
        assert sid in cp and cp[sid] != "ended", f"open shard {sid} has no position: {cp}"


def test_reshard_split_merge_exactly_once_in_key_order_local(kinesis_moto, start_daemon, tmp_path, monkeypatch):
    rng = seeded("reshard-local")
    kin = kinesis_client(kinesis_moto, max_attempts=1)
    stream = unique("orders")
    create_stream(kin, stream, 2)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "ks.toml", kinesis_local_config("ks", stream, kinesis_moto, out, interval_secs=1))
    monkeypatch.setenv("SLUICE_LOG", DEBUG_LOG)
    d = start_daemon(cfg)
    p = Producer(kin, stream, "r", pad=120)
    roles = reshard_while_putting(kin, stream, p, rng, lambda: count_local_lines(out))
    wait_count(lambda: count_local_lines(out), len(p.expected), 60, "reshard")
    d.stop_ok()
    got = read_delivered(out, stream="ks")
    print(f"reshard-local: {len(p.expected)} user records ({p.plain} plain, {p.aggregates} aggregates), "
          f"{len(got.keys)} objects, per shard {dict(p.on_shard)}")
    assert_exactly_once(got.records, p.expected)

    # Per-key order. Objects are ordered by the epoch that delivered them (the daemon's
    # `Delivered. epoch=N keys=[...]` lines; epochs commit one after another); inside an
    # object, lines are in the order the buffer received them. Every record of a key goes
    # to the shard its key hashes to at put time (aggregates hold one key each), so a key's
    # records move parent -> child only at a reshard. If a child were read before its
    # parent's end was committed, or a shard's records were reordered, some key's `n`
    # would go down along this order.
    order = commit_order(d.log_path)
    assert sorted(order) == sorted(got.keys), f"log lists {len(order)} objects, {len(got.keys)} visible"
    checked = assert_per_key_order(got.per_key, order, lambda k: k)
    assert checked == len(p.expected)
    check_lineage_committed(d.state_dir, roles)


def test_reshard_split_merge_exactly_once_to_s3(kinesis_moto, start_daemon, tmp_path, monkeypatch):
    rng = seeded("reshard-s3")
    kin = kinesis_client(kinesis_moto, max_attempts=1)
    s3 = s3_client(kinesis_moto)
    bucket = unique("ks-bucket").lower()
    s3.create_bucket(Bucket=bucket)
    stream = unique("orders")
    create_stream(kin, stream, 2)
    doc = s3_native_config("ks3", bucket=bucket, endpoint_url=kinesis_moto, interval_secs=1)
    doc["source"] = kinesis_source(stream, kinesis_moto, use_arn=True)
    cfg = write_config(tmp_path / "ks3.toml", doc)
    monkeypatch.setenv("SLUICE_LOG", DEBUG_LOG)
    d = start_daemon(cfg)

    def delivered_count() -> int:
        return sum(read_s3_delivered(s3, bucket).records.values())

    p = Producer(kin, stream, "s", pad=120)
    roles = reshard_while_putting(kin, stream, p, rng, delivered_count)
    wait_count(delivered_count, len(p.expected), 60, "reshard-s3")
    d.stop_ok()
    got = read_s3_delivered(s3, bucket, stream="ks3")
    print(f"reshard-s3: {len(p.expected)} user records, {len(got.keys)} objects, per shard {dict(p.on_shard)}")
    assert_exactly_once(got.records, p.expected)
    order = commit_order(d.log_path)
    assert sorted(order) == sorted(got.keys), f"log lists {order[:3]}..., bucket has {got.keys[:3]}..."
    assert assert_per_key_order(got.per_key, order, lambda k: k) == len(p.expected)
    check_lineage_committed(d.state_dir, roles)


def test_reshard_with_kill9_restarts_exactly_once(kinesis_moto, start_daemon, tmp_path):
    """The resharding scenario while the daemon is SIGKILLed and restarted every 1-2.5 s:
    parents' SHARD_END and children's positions must survive crashes (no record lost,
    none twice)."""
    rng = seeded("reshard-kill9")
    kin = kinesis_client(kinesis_moto, max_attempts=1)
    stream = unique("orders")
    create_stream(kin, stream, 2)
    out, state = tmp_path / "out", tmp_path / "state"
    cfg = write_config(tmp_path / "kk.toml", kinesis_local_config("kk", stream, kinesis_moto, out, interval_secs=1))
    p = Producer(kin, stream, "kk", pad=120)
    with KillLoop(lambda: start_daemon(cfg, state_dir=state, log_name="kill9"),
                  random.Random(rng.random()), 1.0, 2.5) as chaos:
        roles = reshard_while_putting(kin, stream, p, rng, lambda: count_local_lines(out))
        time.sleep(2.0)
    wait_count(lambda: count_local_lines(out), len(p.expected), 60, "reshard with kill -9")
    chaos.daemon.stop_ok()
    got = read_delivered(out, stream="kk")
    print(f"reshard-kill9: {len(p.expected)} user records, {chaos.kills} kills, {len(got.keys)} objects, per shard {dict(p.on_shard)}")
    assert chaos.kills >= 3, f"only {chaos.kills} kills"
    assert_exactly_once(got.records, p.expected)
    check_lineage_committed(state, roles)


# ----------------------------------------------------------------------------------------
# 2. Crashes (failpoints and SIGKILL) while consuming big aggregates: exact resume
# ----------------------------------------------------------------------------------------


def test_restart_resumes_exactly_mid_aggregate(kinesis_moto, start_daemon, tmp_path, monkeypatch):
    rng = seeded("crash")
    kin = kinesis_client(kinesis_moto, max_attempts=1)
    stream = unique("crash")
    create_stream(kin, stream, 2)
    p = Producer(kin, stream, "c")
    per_agg = 200
    keys = [f"ck-{i}" for i in range(8)]
    for _ in range(20):  # 40 aggregates x 200 user records of 0.9-1.5 KiB: ~10 MiB
        p.put_aggregates([(rng.choice(keys), per_agg), (rng.choice(keys), per_agg)], pad=rng.randint(850, 1450))
    out = tmp_path / "out"
    state = tmp_path / "state"
    # 1 MiB buffers of ~1 KiB records close every ~800 records: mostly inside an aggregate.
    cfg = write_config(tmp_path / "kc.toml", kinesis_local_config("kc", stream, kinesis_moto, out, size_bytes=MIB, interval_secs=2))

    schedule = ["after_commit", "kill9", "after_stage", "after_commit", "after_complete", "kill9", "after_commit", "kill9"]
    crashes, mid_aggregate, seen_positions = Counter(), 0, []
    for i in range(40):  # bounded: each run delivers at most one epoch before it crashes
        if count_local_lines(out) >= len(p.expected):
            break
        how = schedule[i % len(schedule)]
        if how == "kill9":
            monkeypatch.delenv("SLUICE_FAILPOINTS", raising=False)
            d = start_daemon(cfg, state_dir=state, log_name="crash")
            # Short: a kill9 run must not consume the whole stream.
            time.sleep(rng.uniform(0.05, 0.5))
            d.kill9()
        else:
            monkeypatch.setenv("SLUICE_FAILPOINTS", how)
            d = start_daemon(cfg, state_dir=state, log_name="crash")
            # Recovery at start may complete the last objects: then nothing is left to
            # deliver and the failpoint is never reached.
            wait_until(lambda: not d.running() or count_local_lines(out) >= len(p.expected), 40, 0.2)
            if d.running():
                assert count_local_lines(out) >= len(p.expected), f"run {i}: failpoint {how} not reached within 40s"
                d.stop_ok()
                break
            assert d.proc.returncode != 0, f"run {i}: sluice exited 0 without hitting failpoint {how}"
        crashes[how] += 1
        for sid, pos in read_checkpoint_shards(state).items():
            if isinstance(pos, dict):
                sub = pos["at"]["sub_sequence"]
                seen_positions.append((sid, pos["at"]["sequence"], sub))
        mid_aggregate = sum(1 for _, _, sub in set(seen_positions) if sub < per_agg - 1)
    monkeypatch.delenv("SLUICE_FAILPOINTS", raising=False)
    d = start_daemon(cfg, state_dir=state, log_name="crash")
    wait_count(lambda: count_local_lines(out), len(p.expected), 90, "crash final run")
    d.stop_ok()
    got = read_delivered(out, stream="kc")
    print(f"crash: {len(p.expected)} user records in {p.aggregates} aggregates, crashes {dict(crashes)}, "
          f"{len(set(seen_positions))} distinct committed positions, {mid_aggregate} inside an aggregate, {len(got.keys)} objects")
    assert_exactly_once(got.records, p.expected)
    # How many runs happen depends on speed (each run may deliver several epochs before
    # it crashes); four crashes of at least two kinds still exercise recovery.
    assert sum(crashes.values()) >= 4 and len(crashes) >= 2, f"too few crashes to mean anything: {dict(crashes)}"
    assert mid_aggregate >= 1, f"no crash left a checkpoint inside an aggregate: {sorted(set(seen_positions))}"


# ----------------------------------------------------------------------------------------
# 3. Throttling, expired iterators, failures (fault proxy in front of moto)
# ----------------------------------------------------------------------------------------


def test_throttling_and_expired_iterators_exactly_once(kinesis_moto, kinesis_fault_proxy, start_daemon, tmp_path):
    rng = seeded("faults")
    kin = kinesis_client(kinesis_moto, max_attempts=1)
    stream = unique("faults")
    create_stream(kin, stream, 2)
    proxy = kinesis_fault_proxy(kinesis_moto, rate=0.35, kinds="throttle,expired,internal", iterator_rate=0.3,
                                seed=rng.randrange(1 << 30), max_consecutive=2)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "kf.toml", kinesis_local_config("kf", stream, proxy.url, out, interval_secs=1))
    d = start_daemon(cfg)
    p = Producer(kin, stream, "f", pad=150)
    keys = [f"fk-{i}" for i in range(10)]
    for _ in range(24):
        put_round(p, rng, keys, plain=30, aggs=2, agg_max=60)
        time.sleep(0.3)
    wait_count(lambda: count_local_lines(out), len(p.expected), 90, "faults")
    stats = proxy.stats()
    d.stop_ok()
    got = read_delivered(out, stream="kf")
    print(f"faults: {len(p.expected)} user records, proxy {stats}")
    assert_exactly_once(got.records, p.expected)
    for kind in ("ProvisionedThroughputExceededException", "ExpiredIteratorException", "InternalFailure", "LimitExceededException"):
        assert stats["faults"].get(kind, 0) >= 1, f"{kind} was never injected: {stats}"
    assert stats["upstream_errors"] == 0, stats


# ----------------------------------------------------------------------------------------
# 4. kinesis-local: a split read through null iterator + ChildShards, like AWS
# ----------------------------------------------------------------------------------------


def test_kinesis_local_split_children_read(kinesis_local, start_daemon, tmp_path, monkeypatch):
    rng = seeded("kinesis-local")
    kin = kinesis_client(kinesis_local, max_attempts=1)
    stream = unique("kl")
    create_stream(kin, stream, 2)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "kl.toml", kinesis_local_config("kl", stream, kinesis_local, out, interval_secs=1))
    monkeypatch.setenv("SLUICE_LOG", DEBUG_LOG)
    d = start_daemon(cfg)
    p = Producer(kin, stream, "l", pad=80)
    keys = [f"lk-{i:02d}" for i in range(24)]
    for _ in range(4):
        put_round(p, rng, keys, plain=100, aggs=2, agg_max=20)
    low, _high = open_shards(kin, stream)
    before_split = len(p.expected)
    children = split_in_half(kin, stream, low)
    for _ in range(5):
        put_round(p, rng, keys, plain=100, aggs=2, agg_max=20)
    after_split = p.expected[before_split:]
    for c in children:
        assert p.on_shard[c] > 0, f"kinesis-local routed nothing to child {c}: {dict(p.on_shard)}"
    wait_count(lambda: count_local_lines(out), len(p.expected), 90, "kinesis-local")
    d.stop_ok()
    got = read_delivered(out, stream="kl")
    print(f"kinesis-local: {len(p.expected)} user records ({len(after_split)} after the split), per shard {dict(p.on_shard)}")
    assert_exactly_once(got.records, p.expected)
    if p.retries == 0:  # a retried put may legitimately land after later records of its key
        assert assert_per_key_order(got.per_key, commit_order(d.log_path), lambda k: k) == len(p.expected)
    cp = read_checkpoint_shards(d.state_dir)
    assert cp.get(low["ShardId"]) == "ended", f"split parent not committed as ended: {cp}"
    for c in children:
        assert isinstance(cp.get(c), dict), f"child {c} has no committed position: {cp}"


# ----------------------------------------------------------------------------------------
# 5. Firehose-shape config: KinesisStreamAsSource
# ----------------------------------------------------------------------------------------


def test_firehose_shape_kinesis_source(kinesis_moto, start_daemon, tmp_path, monkeypatch):
    kin = kinesis_client(kinesis_moto, max_attempts=1)
    stream = unique("fh")
    create_stream(kin, stream, 2)
    early = Producer(kin, stream, "early")
    early.put_plain([f"k{i}" for i in range(20)])
    time.sleep(1.2)  # Firehose starts at the stream's creation: records put before are not read
    out = tmp_path / "out"
    doc = firehose_config("fhk", out, interval_secs=1)
    doc["DeliveryStreamType"] = "KinesisStreamAsSource"
    doc["KinesisStreamSourceConfiguration"] = {"KinesisStreamARN": stream_arn(stream), "RoleARN": "arn:aws:iam::123456789012:role/x"}
    cfg = write_config(tmp_path / "fhk.json", doc)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", kinesis_moto)
    state = tmp_path / "state"
    d = start_daemon(cfg, state_dir=state)
    assert wait_for_log(d.log_path, "Starting shard reader", timeout=30), "no shard reader started"
    time.sleep(0.5)
    p = Producer(kin, stream, "late")
    for i in range(4):
        p.put_plain([f"k{j}" for j in range(50)])
    # Direct PUT into a Kinesis-sourced delivery stream is refused.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        d.client().put_record(DeliveryStreamName="fhk", Record={"Data": b'{"direct":1}\n'})
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException", e.value.response
    wait_count(lambda: count_local_lines(out), len(p.expected), 30, "firehose-shape")
    d.stop_ok()
    got = read_delivered(out, stream="fhk")
    assert_exactly_once(got.records, p.expected)
    # Restart: the start instant is kept, committed records are not read again.
    d = start_daemon(cfg, state_dir=state, log_name="sluice2")
    for i in range(2):
        p.put_plain([f"k{j}" for j in range(25)])
    wait_count(lambda: count_local_lines(out), len(p.expected), 30, "firehose-shape after restart")
    d.stop_ok()
    got = read_delivered(out, stream="fhk")
    print(f"firehose-shape: {len(p.expected)} delivered, {len(early.expected)} early records skipped, {len(got.keys)} objects")
    assert_exactly_once(got.records, p.expected)


# ----------------------------------------------------------------------------------------
# 6. Records that look like aggregates but are not: delivered unchanged, once
# ----------------------------------------------------------------------------------------


def pb_varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def pb_bytes(field: int, data: bytes) -> bytes:
    return pb_varint(field << 3 | 2) + pb_varint(len(data)) + data


def pb_uint(field: int, v: int) -> bytes:
    return pb_varint(field << 3) + pb_varint(v)


def md5(b: bytes) -> bytes:
    import hashlib

    return hashlib.md5(b).digest()


def test_broken_aggregates_delivered_unchanged(kinesis_moto, start_daemon, tmp_path, monkeypatch):
    rng = seeded("broken")
    kin = kinesis_client(kinesis_moto, max_attempts=1)
    stream = unique("bad")
    create_stream(kin, stream, 1)

    def rand(n: int) -> bytes:
        return bytes(rng.randrange(256) for _ in range(n))

    def with_md5(body: bytes) -> bytes:
        return KPL_MAGIC + body + md5(body)

    good_body = pb_bytes(1, b"pk") + pb_bytes(3, pb_uint(1, 0) + pb_bytes(3, b'{"inner":1}'))
    broken = {
        "bad md5": KPL_MAGIC + good_body + bytes(16),
        "random body, random digest": KPL_MAGIC + rand(60),
        "protobuf truncated (md5 ok)": with_md5(good_body[:-3]),
        "varint overflow (md5 ok)": with_md5(b"\x1a" + b"\xff" * 11 + rand(2)),
        "key index out of range (md5 ok)": with_md5(pb_bytes(1, b"pk") + pb_bytes(3, pb_uint(1, 7) + pb_bytes(3, b"d"))),
        "required data missing (md5 ok)": with_md5(pb_bytes(1, b"pk") + pb_bytes(3, pb_uint(1, 0))),
        "magic + 16 bytes": KPL_MAGIC + rand(16),
        "magic only": KPL_MAGIC,
    }
    plain = {
        "3 magic bytes": KPL_MAGIC[:3] + b"xyz",
        "json": b'{"plain":true}',
        "binary": b"\x00\x01" + rand(40),
    }
    p = Producer(kin, stream, "b")
    for name, data in {**broken, **plain}.items():
        p.put_raw(data, "pk", [data])
    # A valid aggregate among them is still split.
    agg = p.make_aggregate("pk", 3)
    p.put_raw(agg, "pk", [])  # its user records were booked by make_aggregate
    # Binary records (a key table's protobuf tag is 0x0a, a newline) are checked without
    # delimiters: one shard, so the objects concatenated in commit order must equal the
    # records concatenated in put order, byte for byte.
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "kb.toml", kinesis_local_config("kb", stream, kinesis_moto, out, interval_secs=1, append_delimiter=False))
    monkeypatch.setenv("SLUICE_LOG", DEBUG_LOG)
    d = start_daemon(cfg)
    want = b"".join(p.expected)

    def delivered_bytes() -> int:
        return sum((out / k).stat().st_size for k in list_objects(out))

    wait_count(delivered_bytes, len(want), 30, "broken aggregates (bytes)")
    d.stop_ok()
    order = commit_order(d.log_path)
    assert sorted(order) == list_objects(out), (order, list_objects(out))
    got = b"".join((out / k).read_bytes() for k in order)
    warnings = Path(d.log_path).read_text(errors="replace").count("starts with the KPL magic but is not a valid aggregate")
    print(f"broken: {len(broken)} broken, {len(plain)} plain, 1 aggregate; {len(order)} objects; {warnings} warnings")
    if got != want:
        for name, data in {**broken, **plain}.items():
            print(f"  {name}: {got.count(data)} occurrence(s) of {data[:24].hex()}...")
    assert got == want, f"delivered {len(got)} bytes, expected {len(want)}: not the records unchanged, once, in order"
    assert warnings >= len(broken), f"{warnings} warnings for {len(broken)} broken aggregates"
