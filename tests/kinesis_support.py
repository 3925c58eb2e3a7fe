"""Kinesis fixtures and helpers for sluice's Kinesis-source tests (tests/test_kinesis.py).

- ``kinesis_moto`` (session): a moto server (Kinesis + S3) with moto's resharding bugs
  fixed (see MOTO_PATCH), its URL;
- ``kinesis_local`` (session): kinesis-local (npm, etspaceman/kinesis-mock) bound to
  127.0.0.1, its URL; skipped only when npm is absent;
- ``kinesis_fault_proxy`` (function): factory starting tests/kinesis_fault_proxy.py;
- :class:`Producer`: puts plain records and KPL aggregates (aws-kinesis-agg) and books
  every user record, per partition key in put order, and the shard each landed on;
- readers: the daemon's commit order (its ``Delivered.`` debug lines), checkpoints.

Records are one-line JSON documents ``{"k": key, "n": n-th record of that key, "id": ...}``
so delivered output can be checked line by line with conftest's independent readers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from conftest import REPO, free_port, list_objects
from s3_support import ProxyProcess, _http, stop_process, wait_until

TESTS_DIR = Path(__file__).resolve().parent
ACCOUNT = "123456789012"
REGION = "us-east-1"
KINESIS_LOCAL_VERSION = "0.6.2"
KINESIS_LOCAL_PREFIX = REPO / ".cache" / "kinesis-local"
KINESIS_LOCAL_DIR = KINESIS_LOCAL_PREFIX / "node_modules" / "kinesis-local"
HOST_ANY = 'Host$().em("0.0.0.0")'
HOST_LOOPBACK = 'Host$().em("127.0.0.1")'


def stream_arn(name: str) -> str:
    return f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"


# ----------------------------------------------------------------------------------------
# moto with AWS-like resharding
# ----------------------------------------------------------------------------------------

# moto 5.x resharding differs from AWS in ways no consumer can cope with:
#  - put_record routes to the *first* shard whose range holds the hash key, closed or not,
#    so records keep going to a split/merged parent, whose EndingSequenceNumber (computed
#    as its current max) then keeps growing after the consumer has finished the shard;
#  - split_shard re-puts the parent's records (back into the parent, renumbered from 1);
#  - merge_shards *copies* both parents' records into the child (every record twice);
#  - a hash key equal to a shard's EndingHashKey matches no shard (`<` instead of `<=`);
#  - GetRecords iterates the shard's dict while PutRecords may insert into it.
# The patch below makes those operations behave like AWS (route to open shards only, leave
# records where they are, inclusive ranges, contiguous reads); everything else is moto's.
MOTO_PATCH = r'''
import sys
from collections import OrderedDict
from operator import attrgetter
from moto.kinesis import models as m
from moto.kinesis.exceptions import InvalidArgumentError

def get_shard_for_key(self, partition_key, explicit_hash_key):
    if not isinstance(partition_key, str) or len(partition_key) > 256:
        raise InvalidArgumentError("partition_key")
    if explicit_hash_key:
        key = int(explicit_hash_key)
        if key >= 2**128:
            raise InvalidArgumentError("explicit_hash_key")
    else:
        key = int(m.md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    for shard in self.shards.values():
        if shard.is_open and shard.starting_hash <= key <= shard.ending_hash:
            return shard
    return None

def _next_id(self):
    return sorted(self.shards.values(), key=attrgetter("_shard_id"))[-1]._shard_id + 1

def split_shard(self, shard_to_split, new_starting_hash_key):
    new_start = int(new_starting_hash_key)
    shard = self.shards[shard_to_split]
    if not shard.is_open:
        raise InvalidArgumentError(f"Shard {shard.shard_id} has already been merged or split")
    if not (shard.starting_hash < new_start <= shard.ending_hash):
        raise InvalidArgumentError(f"NewStartingHashKey {new_start} outside shard {shard.shard_id}")
    first = _next_id(self)
    a = m.Shard(first, shard.starting_hash, new_start - 1, parent=shard.shard_id)
    b = m.Shard(first + 1, new_start, shard.ending_hash, parent=shard.shard_id)
    shard.is_open = False
    self.shards[a.shard_id] = a
    self.shards[b.shard_id] = b

def merge_shards(self, shard_to_merge, adjacent_shard_to_merge):
    s1 = self.shards[shard_to_merge]
    s2 = self.shards[adjacent_shard_to_merge]
    if not (s1.is_open and s2.is_open):
        raise InvalidArgumentError("shards to merge must be open")
    if s1.ending_hash + 1 == s2.starting_hash:
        lo, hi = s1.starting_hash, s2.ending_hash
    elif s2.ending_hash + 1 == s1.starting_hash:
        lo, hi = s2.starting_hash, s1.ending_hash
    else:
        raise InvalidArgumentError(adjacent_shard_to_merge)
    child = m.Shard(_next_id(self), lo, hi, parent=s1.shard_id, adjacent_parent=s2.shard_id)
    s1.is_open = False
    s2.is_open = False
    self.shards[child.shard_id] = child

def get_records(self, last_sequence_id, limit):
    # Sequence numbers of a moto shard are 1, 2, 3, ... without gaps.
    last = int(last_sequence_id)
    recs = self.records
    if not recs:
        return [], last, 0
    top = next(reversed(recs))
    results = []
    n = limit or 10000
    seq = max(last + 1, next(iter(recs)))
    while seq <= top and len(results) < n:
        r = recs.get(seq)
        if r is not None:
            results.append(r)
            last = seq
        seq += 1
    behind = 0
    if results:
        # created_at: epoch seconds in the moto releases this was written for, a datetime
        # (utcnow) in moto 5.2.6; both are read.
        gap = recs[top].created_at - results[-1].created_at
        behind = int(getattr(gap, "total_seconds", lambda: gap)() * 1000)
    return results, last, behind

m.Stream.get_shard_for_key = get_shard_for_key
m.Stream.split_shard = split_shard
m.Stream.merge_shards = merge_shards
m.Shard.get_records = get_records

from moto.server import main
main(sys.argv[1:])
'''


def start_patched_moto(log_path: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    with open(log_path, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-c", MOTO_PATCH, "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return _http("GET", f"{url}/moto-api/data.json", timeout=1.0)[0] == 200
        except OSError:
            return False

    if not wait_until(ready, 30, 0.1) or proc.poll() is not None:
        stop_process(proc)
        raise RuntimeError(f"patched moto did not start: {Path(log_path).read_text()[-2000:]}")
    return proc, url


@pytest.fixture(scope="session")
def kinesis_moto(tmp_path_factory, _aws_env):
    """A patched moto server (Kinesis with AWS-like resharding, and S3) for the session."""
    log = tmp_path_factory.mktemp("kinesis_moto") / "moto.log"
    proc, url = start_patched_moto(log)
    try:
        yield url
    finally:
        stop_process(proc)


# ----------------------------------------------------------------------------------------
# kinesis-local (npm)
# ----------------------------------------------------------------------------------------


def ensure_kinesis_local() -> Path:
    """The loopback-patched kinesis-local main.js; installs it with npm if missing.
    Skips the test only when npm itself is absent."""
    main_js = KINESIS_LOCAL_DIR / "main.js"
    if not main_js.is_file():
        npm = shutil.which("npm")
        if npm is None:
            assert not os.environ.get("CI"), "npm is missing on CI: kinesis-local cannot be installed"
            pytest.skip("npm is not installed: cannot install kinesis-local (npm install kinesis-local)")
        res = subprocess.run(
            [npm, "install", "--prefix", str(KINESIS_LOCAL_PREFIX), "--no-audit", "--no-fund", f"kinesis-local@{KINESIS_LOCAL_VERSION}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=300,
        )
        assert res.returncode == 0 and main_js.is_file(), f"npm install kinesis-local failed: {res.stderr.decode()[-2000:]}"
    if shutil.which("node") is None:
        assert not os.environ.get("CI"), "node is missing on CI: kinesis-local cannot run"
        pytest.skip("node is not installed: cannot run kinesis-local")
    text = main_js.read_text()
    if HOST_ANY in text:
        main_js.write_text(text.replace(HOST_ANY, HOST_LOOPBACK))
    elif HOST_LOOPBACK not in text:
        pytest.fail(f"{main_js}: cannot find the bind address to patch to 127.0.0.1")
    return main_js


@pytest.fixture(scope="session")
def kinesis_local(tmp_path_factory, _aws_env):
    """kinesis-local on 127.0.0.1 (plain HTTP); yields its URL."""
    main_js = ensure_kinesis_local()
    port, tls_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("kinesis_local") / "kinesis-local.log"
    env = dict(os.environ)
    env.update(
        {
            "KINESIS_MOCK_PLAIN_PORT": str(port),
            "KINESIS_MOCK_TLS_PORT": str(tls_port),
            "CREATE_STREAM_DURATION": "100ms",
            "DELETE_STREAM_DURATION": "100ms",
            "SPLIT_SHARD_DURATION": "100ms",
            "MERGE_SHARDS_DURATION": "100ms",
            "UPDATE_SHARD_COUNT_DURATION": "100ms",
            "LOG_LEVEL": "WARN",
            "AWS_ACCOUNT_ID": ACCOUNT,
            "AWS_REGION": REGION,
        }
    )
    with open(log, "wb") as f:
        # cwd: it reads server.json (the TLS certificate) from the working directory.
        proc = subprocess.Popen(
            ["node", str(main_js)],
            cwd=str(main_js.parent),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            return True
        try:
            kinesis_client(url, max_attempts=1).list_streams(Limit=1)
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    try:
        if not wait_until(ready, 30, 0.2) or proc.poll() is not None:
            raise RuntimeError(f"kinesis-local did not start: {log.read_text()[-2000:]}")
        yield url
    finally:
        stop_process(proc)


# ----------------------------------------------------------------------------------------
# Kinesis fault proxy
# ----------------------------------------------------------------------------------------


class KinesisFaultProxy(ProxyProcess):
    """`tests/kinesis_fault_proxy.py` in front of a Kinesis endpoint."""

    name = "kinesis_fault_proxy"

    def __init__(self, upstream_url: str, log_dir: Path, **opts):
        args = ["--max-lifetime-secs", "900"]
        for k, v in opts.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        super().__init__("kinesis_fault_proxy.py", upstream_url, log_dir, args)

    def set_rates(self, rate: float, iterator_rate: float = 0.0) -> dict:
        return self.configure(f"rate={rate}&iterator_rate={iterator_rate}")


@pytest.fixture
def kinesis_fault_proxy(request, tmp_path):
    """Factory: kinesis_fault_proxy(upstream_url, rate=.., kinds=.., iterator_rate=.., seed=..)."""
    proxies: list[KinesisFaultProxy] = []
    logs = request.node.__dict__.setdefault("_sluice_logs", [])

    def start(upstream_url: str, **opts) -> KinesisFaultProxy:
        p = KinesisFaultProxy(upstream_url, tmp_path, **opts)
        proxies.append(p)
        logs.append(("kinesis fault proxy", str(p.err_path)))
        return p.start()

    yield start
    for p in proxies:
        p.stop()


# ----------------------------------------------------------------------------------------
# Kinesis clients and streams
# ----------------------------------------------------------------------------------------


def kinesis_client(url: str, max_attempts: int = 3):
    return boto3.client(
        "kinesis",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": max_attempts, "mode": "standard"}, connect_timeout=5, read_timeout=60),
    )


def wait_stream_active(client, name: str, timeout: float = 30.0) -> None:
    def active() -> bool:
        s = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        return s == "ACTIVE"

    assert wait_until(active, timeout, 0.1), f"stream {name} not ACTIVE within {timeout}s"


def create_stream(client, name: str, shards: int = 2) -> None:
    client.create_stream(StreamName=name, ShardCount=shards)
    wait_stream_active(client, name)


def list_shards(client, name: str) -> list[dict]:
    shards, token = [], None
    for _ in range(1000):
        resp = client.list_shards(NextToken=token) if token else client.list_shards(StreamName=name)
        shards += resp["Shards"]
        token = resp.get("NextToken")
        if not token:
            break
    return shards


def open_shards(client, name: str) -> list[dict]:
    shards = [s for s in list_shards(client, name) if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
    return sorted(shards, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))


def split_in_half(client, name: str, shard: dict) -> list[str]:
    """Splits `shard` at the middle of its hash range; returns the children's ids."""
    lo, hi = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
    before = {s["ShardId"] for s in list_shards(client, name)}
    client.split_shard(StreamName=name, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((lo + hi + 1) // 2))
    wait_stream_active(client, name)
    children = [s["ShardId"] for s in list_shards(client, name) if s["ShardId"] not in before]
    assert len(children) == 2, children
    return children


def merge_adjacent(client, name: str, a: dict, b: dict) -> str:
    before = {s["ShardId"] for s in list_shards(client, name)}
    client.merge_shards(StreamName=name, ShardToMerge=a["ShardId"], AdjacentShardToMerge=b["ShardId"])
    wait_stream_active(client, name)
    new = [s["ShardId"] for s in list_shards(client, name) if s["ShardId"] not in before]
    assert len(new) == 1, new
    return new[0]


def hash_key(partition_key: str) -> int:
    return int(hashlib.md5(partition_key.encode()).hexdigest(), 16)


# ----------------------------------------------------------------------------------------
# Producer
# ----------------------------------------------------------------------------------------


class Producer:
    """Puts user records, plain or KPL-aggregated, and books them.

    expected:  every user record put (bytes), each exactly once;
    per_key:   key -> user records of that key in put order (n = 0, 1, 2, ...);
    on_shard:  shard id -> user records that landed on it (from the put answers);
    aggregates / plain: how many Kinesis records of each kind were put.
    Each aggregate holds records of one partition key only, so every user record of a key
    lives on the shard its key hashes to (and per-key order is the put order).
    """

    def __init__(self, client, stream: str, tag: str, *, pad: int = 100, max_attempts: int = 20):
        self.client, self.stream, self.tag, self.pad = client, stream, tag, pad
        self.max_attempts = max_attempts
        self.expected: list[bytes] = []
        self.per_key: dict[str, list[bytes]] = defaultdict(list)
        self.on_shard: Counter = Counter()
        self.aggregates = 0
        self.plain = 0
        self.retries = 0

    def record(self, key: str, pad: int | None = None) -> bytes:
        n = len(self.per_key[key])
        p = "x" * (self.pad if pad is None else pad)
        rec = json.dumps({"k": key, "n": n, "id": f"{self.tag}-{key}-{n}", "pad": p}, separators=(",", ":")).encode()
        self.per_key[key].append(rec)
        self.expected.append(rec)
        return rec

    def put_plain(self, keys: list[str], pad: int | None = None) -> None:
        """One PutRecords call with one new record per entry of `keys` (in that order).
        Records that fail are retried alone, in order (moto never fails them)."""
        entries = [{"Data": self.record(k, pad), "PartitionKey": k} for k in keys]
        self._put_records(entries, [1] * len(entries))
        self.plain += len(entries)

    def make_aggregate(self, key: str, count: int, pad: int | None = None) -> bytes:
        from aws_kinesis_agg.aggregator import RecordAggregator

        agg = RecordAggregator()
        for _ in range(count):
            full = agg.add_user_record(key, self.record(key, pad))
            assert full is None, "aggregate grew past the KPL size limit; put fewer/smaller records"
        pk, ehk, data = agg.clear_and_get().get_contents()
        assert pk == key and ehk is None
        return data

    def put_aggregates(self, keys_counts: list[tuple[str, int]], pad: int | None = None) -> None:
        """One PutRecords call with one aggregate per (key, user record count)."""
        entries = [{"Data": self.make_aggregate(k, c, pad), "PartitionKey": k} for k, c in keys_counts]
        self._put_records(entries, [c for _, c in keys_counts])
        self.aggregates += len(entries)

    def put_raw(self, data: bytes, key: str, expected: list[bytes]) -> str:
        """PutRecord with raw bytes, booking `expected` as its user records; returns the shard."""
        resp = self.client.put_record(StreamName=self.stream, Data=data, PartitionKey=key)
        self.expected += expected
        self.on_shard[resp["ShardId"]] += len(expected)
        return resp["ShardId"]

    def _put_records(self, entries: list[dict], users: list[int]) -> None:
        pending = list(zip(entries, users))
        for attempt in range(self.max_attempts):
            resp = self.client.put_records(StreamName=self.stream, Records=[e for e, _ in pending])
            failed = []
            for (entry, n), r in zip(pending, resp["Records"]):
                if r.get("ErrorCode"):
                    failed.append((entry, n))
                else:
                    self.on_shard[r["ShardId"]] += n
            if not failed:
                return
            self.retries += len(failed)
            pending = failed
            time.sleep(0.2 * (attempt + 1))
        raise AssertionError(f"{len(pending)} records still failing after {self.max_attempts} PutRecords attempts")


# ----------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------


def kinesis_source(
    stream: str,
    endpoint_url: str | None,
    *,
    start_position: str = "trim_horizon",
    poll_interval_ms: int = 200,
    shard_sync_interval_secs: int = 1,
    use_arn: bool = False,
    **extra,
) -> dict:
    src: dict = {"type": "kinesis"}
    if use_arn:
        src["stream_arn"] = stream_arn(stream)
    else:
        src["stream_name"] = stream
    if endpoint_url is not None:
        src["endpoint_url"] = endpoint_url
    src["start_position"] = start_position
    src["poll_interval_ms"] = poll_interval_ms
    src["shard_sync_interval_secs"] = shard_sync_interval_secs
    src.update(extra)
    return src


def kinesis_local_config(name: str, stream: str, endpoint_url: str | None, out_dir: Path, *, size_bytes: int = 1048576,
                         interval_secs: int = 1, append_delimiter: bool = True, **source_opts) -> dict:
    """Native config: Kinesis source -> local directory, newline-delimited records."""
    return {
        "name": name,
        "source": kinesis_source(stream, endpoint_url, **source_opts),
        "destination": {
            "type": "local",
            "path": str(out_dir),
            "append_delimiter": append_delimiter,
            "buffering": {"size_bytes": size_bytes, "interval_secs": interval_secs},
        },
    }


# ----------------------------------------------------------------------------------------
# Reading what the daemon did
# ----------------------------------------------------------------------------------------


def count_local_lines(out_dir: Path) -> int:
    """Records (newline-terminated lines) in visible objects under out_dir (uncompressed)."""
    n = 0
    for key in list_objects(out_dir):
        try:
            n += (Path(out_dir) / key).read_bytes().count(b"\n")
        except OSError:
            pass
    return n


DELIVERED_RE = re.compile(r"Delivered\. .*?epoch=(\d+)")
OBJECT_RE = re.compile(r"Delivered an object\. .*?key=(\S+)")


def commit_order(log_path: Path) -> list[str]:
    """Object keys in the order their epochs were delivered, from the daemon's log
    (SLUICE_LOG=sluice=debug): each epoch's `Delivered an object.` debug lines (one per
    key), then its `Delivered.` line. Epoch numbers must increase."""
    keys: list[str] = []
    pending: list[str] = []
    last_epoch = 0
    text = Path(log_path).read_text(errors="replace")
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    for line in text.splitlines():
        if (o := OBJECT_RE.search(line)) is not None:
            pending.append(o.group(1))
            continue
        if "Delivered." not in line:
            continue
        m = DELIVERED_RE.search(line)
        assert m, f"cannot parse delivery log line: {line!r}"
        epoch = int(m.group(1))
        assert epoch > last_epoch, f"epochs out of order in the log: {epoch} after {last_epoch}"
        last_epoch = epoch
        keys += pending
        pending = []
    return keys


def assert_per_key_order(per_key_lines: dict[str, list[bytes]], key_order: list[str], suffix_of) -> int:
    """For each partition key, the `n` of its records must increase along the delivered
    stream (objects in commit order, lines in object order). `suffix_of` maps an object
    key from the log to a key of `per_key_lines`. Returns the number of records checked."""
    last: dict[str, int] = {}
    checked = 0
    for key in key_order:
        for line in per_key_lines[suffix_of(key)]:
            doc = json.loads(line)
            k, n = doc["k"], doc["n"]
            assert n > last.get(k, -1), (
                f"partition key {k}: record n={n} delivered after n={last[k]} (object {key}); "
                "per-key order (parents before children) is broken"
            )
            last[k] = n
            checked += 1
    return checked


def read_checkpoint_shards(state_dir: Path) -> dict:
    """The committed Kinesis shard positions: {shard: {"at": {...}} | "ended"}, merged over
    every checkpoint file found in the state dir (there is one per stream)."""
    out: dict = {}
    for p in Path(state_dir).rglob("*.json"):
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("positions"), dict):
            out.update(doc["positions"].get("shards", {}))
    return out
