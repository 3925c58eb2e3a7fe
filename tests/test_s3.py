"""S3 destination end to end, against moto: delivery layout (prefix in a time zone,
extension, compression, encryption, multipart assembly), Firehose-shape configs with
source-record backup, a crash at every step of the exactly-once protocol, S3 faults
injected by tests/fault_proxy.py, and a kill -9 loop under load.

Every check reads the bucket straight from moto with boto3 and decodes objects with
independent decoders (conftest). Counts are printed (run with -s to see them).
"""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import botocore.exceptions
import pytest

from conftest import (
    DEFAULT_EXT,
    DEFAULT_PREFIX_RE,
    assert_exactly_once,
    firehose_config,
    free_port,
    json_records,
    put_batch_ok,
    run_sluice,
    write_config,
)
from s3_support import (  # noqa: F401 - fixtures are used by name
    BUCKET,
    Sender,
    check_no_dup_no_foreign,
    claim_key,
    fault_proxy,
    firehose_client,
    key_regex,
    merged,
    moto_server,
    s3,
    s3_native_config,
    wait_for_log,
    wait_until,
)

MIB = 1024 * 1024
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TS_PREFIX_RE = r"logs/(?P<Y>\d{4})/(?P<M>\d{2})/(?P<D>\d{2})/(?P<H>\d{2})/"


def seed_from_env() -> int:
    seed = int(os.environ.get("SLUICE_TEST_SEED", random.randrange(1 << 30)))
    print(f"SLUICE_TEST_SEED={seed}")
    return seed


def lines_of(records: list[bytes]) -> list[bytes]:
    """Records that carry their own newline (for streams without append_delimiter, whose
    source-record backup must then also be line-separated)."""
    return [r + b"\n" for r in records]


def send_all(client, stream: str, records: list[bytes], batch: int = 500) -> None:
    for i in range(0, len(records), batch):
        put_batch_ok(client, stream, records[i : i + batch])


def check_times(keys: list[str], rx: re.Pattern, tz, t_start: float, t_end: float) -> None:
    """Each key's prefix hour and object-name timestamp, read in `tz`, lie within the time
    the test ran (a prefix evaluated in another zone is hours off)."""
    lo = datetime.fromtimestamp(t_start, tz).replace(microsecond=0) - timedelta(seconds=2)
    hi = datetime.fromtimestamp(t_end, tz) + timedelta(seconds=2)
    for key in keys:
        m = rx.match(key)
        assert m, f"{key!r} does not match {rx.pattern!r}"
        hour = datetime(int(m["Y"]), int(m["M"]), int(m["D"]), int(m["H"]), tzinfo=tz)
        assert lo.replace(minute=0, second=0) <= hour <= hi, f"{key}: prefix hour {hour} outside [{lo}, {hi}] ({tz})"
        ts = datetime.strptime(m["ts"], "%Y-%m-%d-%H-%M-%S").replace(tzinfo=tz)
        assert lo <= ts <= hi, f"{key}: object-name timestamp {ts} outside [{lo}, {hi}] ({tz})"


def check_encryption(s3env, keys: list[str], encryption: str) -> None:
    for key in keys:
        h = s3env.head(key)
        sse, kms = h.get("ServerSideEncryption"), h.get("SSEKMSKeyId")
        if encryption == "sse_s3":
            assert sse == "AES256", f"{key}: ServerSideEncryption={sse!r}, expected AES256"
        elif encryption == "sse_kms":
            assert sse == "aws:kms", f"{key}: ServerSideEncryption={sse!r}, expected aws:kms"
            assert kms == KMS_KEY, f"{key}: SSEKMSKeyId={kms!r}, expected {KMS_KEY}"
        else:
            # moto applies no bucket default encryption: an object stored without an SSE
            # header reports none (real S3 would report the bucket default, AES256).
            assert sse is None, f"{key}: ServerSideEncryption={sse!r}, expected no SSE header"


def no_uploads(s3env, allowed: set | frozenset = frozenset()) -> None:
    left = [u for u in s3env.uploads() if u not in allowed]
    assert not left, f"{len(left)} multipart uploads left open, e.g. {left[:3]}"


# ----------------------------------------------------------------------------------------
# Delivery layout
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "compression,encryption,file_extension,time_zone",
    [
        pytest.param("gzip", "sse_s3", ".json.gz", "Asia/Tokyo", id="gzip-sse_s3-ext-tokyo"),
        pytest.param("zstd", "sse_kms", None, None, id="zstd-sse_kms-utc"),
        pytest.param("hadoop_snappy", "none", None, "America/New_York", id="hadoop_snappy-none-newyork"),
        pytest.param("snappy", "sse_s3", None, "Asia/Kolkata", id="snappy-sse_s3-kolkata"),
        pytest.param("zip", "sse_kms", ".zip", None, id="zip-sse_kms-utc"),
        pytest.param("uncompressed", "sse_s3", None, None, id="uncompressed-sse_s3-utc"),
    ],
)
def test_delivery_layout(tmp_path, s3, start_daemon, compression, encryption, file_extension, time_zone):
    stream = "s3stream"
    dest: dict = {
        "prefix": "logs/!{timestamp:yyyy/MM/dd/HH}/",
        "error_output_prefix": "errors/!{firehose:error-output-type}/",
        "encryption": encryption,
        "attempt_timeout_secs": 5,
    }
    if encryption == "sse_kms":
        dest["kms_key_arn"] = KMS_KEY
    if file_extension is not None:
        dest["file_extension"] = file_extension
    if time_zone is not None:
        dest["time_zone"] = time_zone
    cfg = write_config(
        tmp_path / "s3.toml", s3_native_config(stream, endpoint_url=s3.url, compression=compression, **dest)
    )
    t0 = time.time()
    d = start_daemon(cfg)
    client = firehose_client(d.endpoint)
    first, second = json_records("a", range(1500)), json_records("b", range(1500))
    send_all(client, stream, first)
    # The 1 s interval delivers the first batch while the daemon runs.
    assert wait_until(lambda: len(s3.keys("logs/")) >= 1, 30), "nothing delivered within 30 s of a 1 s interval"
    send_all(client, stream, second)
    d.stop_ok()
    t1 = time.time()

    ext = file_extension if file_extension is not None else DEFAULT_EXT[compression]
    got = s3.delivered("logs/", stream=stream, compression=compression, ext=ext, prefix_re=TS_PREFIX_RE)
    print(f"{compression}/{encryption}/{time_zone}: {sum(got.records.values())} records in {len(got.keys)} objects: {got.keys[:3]}")
    assert len(got.keys) >= 2, f"expected the two batches in at least two objects, got {got.keys}"
    assert_exactly_once(got.records, first + second)
    rx = key_regex(stream, ext, TS_PREFIX_RE)
    check_times(got.keys, rx, ZoneInfo(time_zone) if time_zone else timezone.utc, t0, t1)
    check_encryption(s3, got.keys, encryption)
    stray = [k for k in s3.keys() if k not in got.keys]
    assert not stray, f"objects outside the configured prefix: {stray[:5]}"
    no_uploads(s3)


def test_large_object_is_assembled_from_parts(tmp_path, s3, start_daemon):
    """~13 MB in one buffer, 5 MiB parts: one object of at least three parts, byte-exact."""
    stream = "big"
    cfg = write_config(
        tmp_path / "big.toml",
        s3_native_config(
            stream,
            endpoint_url=s3.url,
            size_bytes=16 * MIB,
            interval_secs=900,
            part_size_bytes=5 * MIB,
            max_concurrent_parts=4,
            attempt_timeout_secs=10,
            prefix="big/",
        ),
    )
    d = start_daemon(cfg)
    recs = json_records("big", range(13000), pad=1000)
    total = sum(len(r) + 1 for r in recs)
    t = time.monotonic()
    send_all(firehose_client(d.endpoint), stream, recs, batch=400)
    assert s3.keys() == [], "delivered before the 16 MiB / 900 s buffer filled"
    d.stop_ok(timeout=120)
    print(f"large object: {len(recs)} records, {total} bytes, sent+delivered in {time.monotonic() - t:.1f}s")

    keys = s3.keys()
    assert len(keys) == 1, f"expected one object, got {keys}"
    key = keys[0]
    assert key_regex(stream, "", re.escape("big/") + DEFAULT_PREFIX_RE).match(key), key
    head = s3.head(key)
    etag = head["ETag"].strip('"')
    m = re.search(r"-(\d+)$", etag)
    assert m, f"ETag {etag} is not a multipart ETag"
    parts = int(m[1])
    print(f"object {key}: {head['ContentLength']} bytes, {parts} parts, SSE {head.get('ServerSideEncryption')}")
    assert parts >= 3, f"{head['ContentLength']} bytes in {parts} parts with part_size_bytes=5 MiB"
    assert head["ContentLength"] == total
    data = s3.read(key, "uncompressed")
    assert data == b"".join(r + b"\n" for r in recs), "object content differs from the records in order"
    # Default encryption is SSE-S3.
    assert head.get("ServerSideEncryption") == "AES256"
    no_uploads(s3)


def test_firehose_shape_with_backup(tmp_path, s3, start_daemon, monkeypatch):
    """CreateDeliveryStream JSON: BucketARN, NoEncryption, S3BackupMode Enabled; endpoint
    from AWS_ENDPOINT_URL_S3. Data (gzip) and backup (uncompressed) both hold every
    record exactly once."""
    stream = "fhs3"
    doc = firehose_config(
        stream,
        tmp_path,
        compression="GZIP",
        append_delimiter=False,
        BucketARN=f"arn:aws:s3:::{BUCKET}",
        Prefix="fh-data/",
        ErrorOutputPrefix="fh-errors/",
        EncryptionConfiguration={"NoEncryptionConfig": "NoEncryption"},
        S3BackupMode="Enabled",
        S3BackupConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/x",
            "BucketARN": f"arn:aws:s3:::{BUCKET}",
            "Prefix": "fh-backup/",
            "CompressionFormat": "UNCOMPRESSED",
        },
    )
    cfg = write_config(tmp_path / "fh.json", doc)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.url)
    d = start_daemon(cfg)
    recs = lines_of(json_records("fh", range(3000)))
    client = firehose_client(d.endpoint)
    send_all(client, stream, recs[:1500])
    time.sleep(1.5)
    send_all(client, stream, recs[1500:])
    d.stop_ok()

    expected = [r[:-1] for r in recs]
    data = s3.delivered("fh-data/", stream=stream, compression="gzip")
    backup = s3.delivered("fh-backup/", stream=stream, compression="uncompressed")
    print(f"firehose shape: data {sum(data.records.values())} records in {len(data.keys)} objects, backup {sum(backup.records.values())} in {len(backup.keys)}")
    assert_exactly_once(data.records, expected)
    assert_exactly_once(backup.records, expected)
    check_encryption(s3, data.keys + backup.keys, "none")
    stray = [k for k in s3.keys() if k not in data.keys and k not in backup.keys]
    assert not stray, f"unexpected objects: {stray[:5]}"
    no_uploads(s3)


# ----------------------------------------------------------------------------------------
# Crash at each protocol step
# ----------------------------------------------------------------------------------------


FOREIGN_KEYS = [
    "data/2020/01/01/00/other-1-2020-01-01-00-00-00-00000000-0000-0000-0000-000000000000",
    "data/2020/01/01/00/crashs3x-1-2020-01-01-00-00-00-00000000-0000-0000-0000-000000000000",
    "data/unrelated.bin",
]


@pytest.mark.parametrize("failpoint", ["after_stage", "after_commit", "between_completions", "after_complete"])
def test_crash_at_protocol_step(tmp_path, s3, start_daemon, monkeypatch, failpoint):
    """Abort at one step of the first epoch; restart without the failpoint: every record
    once in data and backup, no stray object, this stream's abandoned uploads aborted (and
    other streams' uploads left alone)."""
    stream = "crashs3"
    state = tmp_path / "state"
    cfg = write_config(
        tmp_path / "crash.toml",
        s3_native_config(
            stream,
            endpoint_url=s3.url,
            compression="gzip",
            append_delimiter=False,
            interval_secs=1,
            prefix="data/",
            attempt_timeout_secs=5,
            backup={"prefix": "backup/", "compression": "uncompressed"},
        ),
    )
    foreign = {(k, s3.client.create_multipart_upload(Bucket=BUCKET, Key=k)["UploadId"]) for k in FOREIGN_KEYS}

    with monkeypatch.context() as m:
        m.setenv("SLUICE_FAILPOINTS", failpoint)
        d = start_daemon(cfg, state_dir=state, log_name="crash")
    first = lines_of(json_records("first", range(500)))
    put_batch_ok(firehose_client(d.endpoint), stream, first)  # one request: acknowledged before any epoch closes
    rc = d.wait(30)
    assert rc == -signal.SIGABRT, f"expected the failpoint {failpoint} to abort the daemon, exit status {rc}"

    visible = s3.keys()
    open_uploads = [u for u in s3.uploads() if u not in foreign]
    print(f"{failpoint}: after the abort {len(visible)} visible objects, {len(open_uploads)} open uploads of the stream")
    expected_visible = {"after_stage": 0, "after_commit": 0, "between_completions": 1, "after_complete": 2}[failpoint]
    assert len(visible) == expected_visible, f"after {failpoint}: visible {visible}"
    if failpoint in ("after_stage", "after_commit"):
        assert len(open_uploads) == 2, f"expected data+backup staged as open uploads, got {open_uploads}"
    if failpoint == "between_completions":
        assert len(open_uploads) == 1, open_uploads
    for key in visible:  # what is visible is whole and holds each record once
        got = s3.read(key)
        assert Counter(got[:-1].split(b"\n")) == Counter(r[:-1] for r in first), key

    d = start_daemon(cfg, state_dir=state, log_name="recover")
    second = lines_of(json_records("second", range(500)))
    put_batch_ok(firehose_client(d.endpoint), stream, second)
    d.stop_ok()

    expected = [r[:-1] for r in first + second]
    data = s3.delivered("data/", stream=stream, compression="gzip")
    backup = s3.delivered("backup/", stream=stream, compression="uncompressed")
    print(f"{failpoint}: data {sum(data.records.values())} records in {len(data.keys)} objects, backup {sum(backup.records.values())} in {len(backup.keys)}")
    assert_exactly_once(data.records, expected)
    assert_exactly_once(backup.records, expected)
    stray = [k for k in s3.keys() if k not in data.keys and k not in backup.keys]
    assert not stray, f"stray visible objects: {stray}"
    no_uploads(s3, allowed=foreign)
    still = set(s3.uploads())
    assert foreign <= still, f"uploads of other streams/keys were aborted: {foreign - still}"


# ----------------------------------------------------------------------------------------
# S3 faults
# ----------------------------------------------------------------------------------------


def test_s3_faults_exactly_once(tmp_path, s3, start_daemon, fault_proxy):
    """500s, 503 SlowDowns, connection resets and responses delayed past the attempt
    timeout, under sustained load, with source-record backup (two objects per epoch):
    every record exactly once in data and in backup, nothing left open."""
    seed = seed_from_env()
    proxy = fault_proxy(s3.url, rate=float(os.environ.get("SLUICE_FAULT_RATE", "0.15")), seed=seed, delay_secs=4)
    stream = "faulty"
    state = tmp_path / "state"
    cfg = write_config(
        tmp_path / "faulty.toml",
        s3_native_config(
            stream,
            endpoint_url=proxy.url,
            compression="gzip",
            append_delimiter=False,
            size_bytes=MIB,
            interval_secs=1,
            attempt_timeout_secs=2,
            prefix="f/",
            backup={"prefix": "fb/", "compression": "uncompressed"},
        ),
    )
    d = start_daemon(cfg, state_dir=state, log_name="faulty")
    t0 = time.monotonic()
    n_threads, per_thread, batch = 4, 5000, 50
    senders = [
        Sender(
            d.endpoint,
            stream,
            f"t{i}",
            iter(range(per_thread)),
            batch=batch,
            pad=200,
            interval=20.0 / (per_thread / batch),
            retry_unavailable=True,
            deadline=t0 + 150,
            suffix=b"\n",
        )
        for i in range(n_threads)
    ]
    for s in senders:
        s.start()
    for s in senders:
        s.join(180)
        assert not s.is_alive(), "sender thread hung"
    t_load = time.monotonic() - t0
    acked, maybe, rejected, errors = merged(senders)
    for s in senders:
        assert not s.unexpected, s.unexpected[:3]
    print(f"load: {len(acked)} acked, {len(maybe)} in doubt, {len(rejected)} rejected in {t_load:.1f}s; client errors {dict(errors)}")

    t1 = time.monotonic()
    rc = d.terminate(timeout=120)
    t_drain = time.monotonic() - t1
    stats = proxy.stats()
    print(f"drain after SIGTERM: {t_drain:.1f}s, exit {rc}")
    print(
        f"proxy: {stats['requests']} S3 requests, faults {stats['faults']} "
        f"(delayed responses whose client had gone: {stats['delayed_responses_client_gone']}), by op {stats['faults_by_op']}"
    )
    assert rc == 0, f"exit status {rc} after SIGTERM"

    leftover = s3.uploads()
    print(f"open uploads right after the clean shutdown: {len(leftover)} {leftover[:3]}")
    data = s3.delivered("f/", stream=stream, compression="gzip")
    backup = s3.delivered("fb/", stream=stream, compression="uncompressed")
    print(f"delivered {sum(data.records.values())} records in {len(data.keys)} objects, backup {sum(backup.records.values())} in {len(backup.keys)}")
    assert len(acked) == n_threads * per_thread, f"only {len(acked)} of {n_threads * per_thread} records acknowledged ({dict(errors)})"
    acked_lines, maybe_lines = {r[:-1] for r in acked}, {r[:-1] for r in maybe}
    for label, got in (("data", data), ("backup", backup)):
        check_no_dup_no_foreign(got.records, acked_lines, maybe_lines)
        missing = acked_lines - set(got.records)
        assert not missing, f"{label}: {len(missing)} acknowledged records lost, e.g. {list(missing)[:2]}"
    for kind in ("internal_error", "slow_down", "reset", "delay"):
        assert stats["faults"][kind] >= 1, f"the proxy never injected {kind}: {stats}"
    stray = [k for k in s3.keys() if k not in data.keys and k not in backup.keys]
    assert not stray, f"stray visible objects: {stray[:5]}"

    # Uploads orphaned by a lost CreateMultipartUpload response (the "delay" fault) cannot
    # be known to the daemon until it lists them at its next start: restart once, then
    # nothing of the stream may stay open, and nothing may change in what is visible.
    proxy.set_rate(0)
    d = start_daemon(cfg, state_dir=state, log_name="faulty-restart")
    assert wait_for_log(d.log_path, "Recovered.", timeout=60), "the restarted daemon did not log Recovered."
    d.stop_ok()
    no_uploads(s3)
    assert s3.keys() == sorted(data.keys + backup.keys), "a restart changed the visible objects"


def test_s3_outage_backpressure_then_recovery(tmp_path, s3, start_daemon, fault_proxy):
    """Every S3 request fails (500 InternalError / 503 SlowDown) for a while: nothing becomes
    visible, the daemon keeps running and logs the S3 error codes, the write-ahead log fills
    and puts are refused with ServiceUnavailableException; once S3 answers again everything
    acknowledged is delivered exactly once and nothing refused is."""
    proxy = fault_proxy(s3.url, rate=0.0, seed=seed_from_env(), delay_secs=4)
    stream = "outage"
    state = tmp_path / "state"
    cap = 5 * MIB
    cfg = write_config(
        tmp_path / "outage.toml",
        s3_native_config(
            stream,
            endpoint_url=proxy.url,
            size_bytes=MIB,
            interval_secs=1,
            attempt_timeout_secs=2,
            prefix="o/",
            max_wal_bytes=cap,
        ),
    )
    d = start_daemon(cfg, state_dir=state, log_name="outage")
    # Two kinds, alternating: whatever the SDK's own retry count, the attempts sluice sees
    # end in both codes.
    proxy.set_rate(1.0, kinds=["internal_error", "slow_down"])
    client = firehose_client(d.endpoint)
    acked: list[bytes] = []
    refused: list[bytes] = []
    t0 = time.monotonic()
    saw_503 = False
    for n in range(200):  # 200 x 500 x ~300 B = 30 MB, far beyond the 5 MiB cap
        if time.monotonic() - t0 > 60:
            break
        batch = json_records(f"o{n}", range(500), pad=240)
        try:
            put_batch_ok(client, stream, batch)
            acked += batch
        except botocore.exceptions.ClientError as e:
            code = e.response["Error"]["Code"]
            assert code == "ServiceUnavailableException", f"unexpected error {code}: {e}"
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            refused += batch
            saw_503 = True
            break
        time.sleep(0.05)
    print(f"outage: {len(acked)} records acknowledged, first 503 after {time.monotonic() - t0:.1f}s")
    assert saw_503, f"no ServiceUnavailableException after {len(acked)} records with max_wal_bytes={cap} and S3 down"
    assert acked, "nothing was acknowledged before the write-ahead log filled"
    time.sleep(3)
    assert d.running(), "the daemon died while S3 was failing"
    assert s3.keys() == [], f"objects became visible while every S3 request failed: {s3.keys()[:3]}"
    # Retries back off, so on a loaded machine the second code can come seconds later.
    deadline = time.monotonic() + 30
    while True:
        log = d.log_path.read_text(errors="replace")
        missing = [code for code in ("InternalError", "SlowDown") if code not in log]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not missing, f"the daemon's log never names the S3 error code(s) {missing}"
    stats = proxy.set_rate(0.0)
    print(f"proxy during the outage: {stats['requests']} requests, faults {stats['faults']}")

    # S3 is back: the backlog drains (retriable errors back off at most ~20 s) and puts are
    # accepted again.
    assert wait_until(lambda: sum(s3.delivered("o/").records.values()) >= len(acked), 90, 1.0), (
        f"backlog not delivered within 90 s of S3 recovering: {sum(s3.delivered('o/').records.values())} of {len(acked)}"
    )
    after = json_records("after", range(500))
    ok = wait_until(lambda: _try_put(client, stream, after), 30, 0.5)
    assert ok, "puts still refused 30 s after the backlog was delivered"
    acked += after
    d.stop_ok()
    got = s3.delivered("o/", stream=stream)
    print(f"outage: delivered {sum(got.records.values())} records in {len(got.keys)} objects")
    assert_exactly_once(got.records, acked)
    assert not (set(refused) & set(got.records)), "a record refused with 503 was delivered"
    no_uploads(s3)


def _try_put(client, stream: str, records: list[bytes]) -> bool:
    try:
        put_batch_ok(client, stream, records)
        return True
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] != "ServiceUnavailableException":
            raise
        return False


# ----------------------------------------------------------------------------------------
# kill -9 loop
# ----------------------------------------------------------------------------------------


def test_s3_kill9_loop(tmp_path, s3, start_daemon):
    seed = seed_from_env()
    rng = random.Random(seed)
    cycles = int(os.environ.get("SLUICE_KILL_CYCLES", "20"))
    stream = "k9"
    state = tmp_path / "state"
    cfg = write_config(
        tmp_path / "k9.toml",
        s3_native_config(
            stream, endpoint_url=s3.url, compression="zstd", size_bytes=MIB, interval_secs=1, attempt_timeout_secs=5
        ),
    )
    ids = itertools.count()
    acked: list[bytes] = []
    maybe: list[bytes] = []
    rejected: list[bytes] = []
    t_begin = time.monotonic()
    mid_send = 0

    for cycle in range(cycles):
        assert time.monotonic() - t_begin < 200, f"kill loop too slow: {cycle} cycles in 200 s"
        d = start_daemon(cfg, state_dir=state, log_name="k9")
        senders = [Sender(d.endpoint, stream, f"c{cycle}s{i}", ids, batch=100, pad=300, interval=0.01) for i in range(2)]
        for s in senders:
            s.start()
        time.sleep(rng.uniform(0.5, 3.0))
        if rng.random() < 0.6:
            mid_send += 1
            d.kill9()  # requests in flight
            for s in senders:
                s.join(30)
        else:
            for s in senders:
                s.stop.set()
                s.join(30)
            time.sleep(rng.uniform(0.0, 1.5))  # some buffered, some mid-delivery
            d.kill9()
        for s in senders:
            assert not s.is_alive(), "sender thread hung"
            assert not s.unexpected, f"cycle {cycle}: {s.unexpected[:3]}"
        a, m, r, errors = merged(senders)
        assert a, f"cycle {cycle}: nothing acknowledged ({dict(errors)})"
        acked += a
        maybe += m
        rejected += r
        got = s3.delivered(stream=stream, compression="zstd")
        check_no_dup_no_foreign(got.records, set(acked), set(maybe))
        print(
            f"cycle {cycle}: acked {len(a)}, in doubt {len(m)}, rejected {len(r)}, {dict(errors)}; "
            f"visible {sum(got.records.values())} records in {len(got.keys)} objects, {len(s3.uploads())} open uploads"
        )

    d = start_daemon(cfg, state_dir=state, log_name="k9")
    final = json_records("final", range(1000))
    send_all(firehose_client(d.endpoint), stream, final)
    acked += final
    d.stop_ok(timeout=90)

    got = s3.delivered(stream=stream, compression="zstd")
    acked_set, maybe_set = set(acked), set(maybe)
    assert len(acked_set) == len(acked)
    check_no_dup_no_foreign(got.records, acked_set, maybe_set)
    missing = acked_set - set(got.records)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records lost (seed {seed}), e.g. {list(missing)[:2]}"
    assert not (set(rejected) & set(got.records)), "a rejected record was delivered"
    no_uploads(s3)
    in_doubt_delivered = len(maybe_set & set(got.records))
    print(
        f"kill -9 loop: {cycles} cycles ({mid_send} mid-send), {len(acked)} acked, {len(maybe)} in doubt "
        f"({in_doubt_delivered} of them delivered), {sum(got.records.values())} records in {len(got.keys)} objects, "
        f"{time.monotonic() - t_begin:.0f}s"
    )


def test_sigterm_right_after_start_exits_cleanly(tmp_path, s3, start_daemon):
    """SIGTERM as soon as the API port accepts connections (systemd may stop a unit at any
    moment): the daemon must still shut down cleanly with exit status 0, every time."""
    cfg = write_config(tmp_path / "early.toml", s3_native_config("early", endpoint_url=s3.url))
    n = int(os.environ.get("SLUICE_EARLY_STOPS", "5"))
    statuses = []
    for i in range(n):
        d = start_daemon(cfg, state_dir=tmp_path / "state", log_name="early")
        statuses.append(d.terminate())
    print(f"exit statuses of {n} SIGTERMs right after start: {statuses}")
    assert statuses == [0] * n, f"exit statuses {statuses}: a negative status is death by the signal, no drain"


def test_sigterm_with_s3_down_exits_within_the_drain_deadline_then_delivers(tmp_path, s3, start_daemon, fault_proxy):
    """S3 fails every request: SIGTERM stops within --drain-timeout-secs, exit code 1, nothing
    visible; a second signal during a longer drain exits at once; the next start with S3 back
    delivers every acknowledged record exactly once."""
    proxy = fault_proxy(s3.url, rate=1.0, seed=seed_from_env())
    stream = "deadline"
    state = tmp_path / "state"
    cfg = write_config(
        tmp_path / "deadline.toml",
        s3_native_config(stream, endpoint_url=proxy.url, size_bytes=MIB, interval_secs=900, attempt_timeout_secs=2, prefix="d/"),
    )
    acked: list[bytes] = []
    d = start_daemon(cfg, state_dir=state, log_name="deadline", extra_args=["--drain-timeout-secs", "3"])
    client = firehose_client(d.endpoint)
    batch = json_records("first", range(300))
    put_batch_ok(client, stream, batch)
    acked += batch
    t0 = time.monotonic()
    rc = d.terminate(timeout=30)
    took = time.monotonic() - t0
    assert rc == 1, f"exit code {rc} after a drain that could not finish, expected 1"
    assert took < 10, f"SIGTERM with S3 down took {took:.1f}s with a 3 s drain deadline"
    assert "did not finish delivering within 3 s" in d.log_path.read_text(errors="replace")

    # A second signal ends a long drain at once.
    d = start_daemon(cfg, state_dir=state, log_name="second-signal", extra_args=["--drain-timeout-secs", "120"])
    client = firehose_client(d.endpoint)
    batch = json_records("second", range(300))
    put_batch_ok(client, stream, batch)
    acked += batch
    d.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert d.running(), "the daemon exited before the second signal although S3 is down"
    t0 = time.monotonic()
    rc = d.terminate(timeout=30)
    assert time.monotonic() - t0 < 5, "the second SIGTERM did not exit at once"
    assert rc == 1, f"exit code {rc} after a second signal, expected 1"
    assert s3.keys() == [], f"objects became visible while S3 failed: {s3.keys()[:3]}"

    proxy.set_rate(0.0)
    d = start_daemon(cfg, state_dir=state, log_name="deadline-after")
    d.stop_ok()
    got = s3.delivered("d/", stream=stream)
    assert_exactly_once(got.records, acked)


# ----------------------------------------------------------------------------------------
# One instance per stream and bucket prefix
# ----------------------------------------------------------------------------------------


def run_refused(cfg, state_dir) -> str:
    """`sluice run` that must fail to start; returns its stderr."""
    p = run_sluice(["run", "--config", str(cfg), "--listen", f"127.0.0.1:{free_port()}", "--state-dir", str(state_dir)], timeout=30)
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode != 0, f"a second instance started on a claimed prefix:\n{err[-3000:]}"
    return err


def test_second_instance_on_one_prefix_is_refused(tmp_path, s3, start_daemon):
    """Two instances (own state dirs, own ports) delivering one stream name below one bucket
    prefix would abort each other's staged uploads: the second is refused, naming the marker,
    its holder and how to release it, while the first keeps delivering. The marker outlives a
    clean shutdown; deleting it (the documented release) lets another instance take over."""
    stream = "shared"
    cfg = write_config(tmp_path / "shared.toml", s3_native_config(stream, endpoint_url=s3.url, prefix="logs/"))
    marker = claim_key("logs/", stream)
    first = start_daemon(cfg, state_dir=tmp_path / "state1", log_name="first")
    first_id = (tmp_path / "state1" / "instance-id").read_text().strip()
    holder = s3.claim(marker)
    assert (holder["instance_id"], holder["pid"]) == (first_id, first.pid), holder
    client = firehose_client(first.endpoint)
    before = json_records("before", range(1000))
    send_all(client, stream, before)

    t0 = time.monotonic()
    err = run_refused(cfg, tmp_path / "state2")
    refused_in = time.monotonic() - t0
    for needle in (f"s3://{BUCKET}/{marker}", f"is claimed for stream `{stream}`", f"instance {first_id}", f"aws s3 rm s3://{BUCKET}/{marker}"):
        assert needle in err, f"refusal does not say {needle!r}:\n{err[-3000:]}"
    # An instance whose prefix lies below the claimed one would have its uploads aborted by
    # the first's recovery: refused too, naming the same marker.
    nested = write_config(tmp_path / "nested.toml", s3_native_config(stream, endpoint_url=s3.url, prefix="logs/x/"))
    assert f"s3://{BUCKET}/{marker}" in run_refused(nested, tmp_path / "state3")

    after = json_records("after", range(1000))
    send_all(client, stream, after)
    first.stop_ok()
    got = s3.delivered("logs/", stream=stream)
    assert_exactly_once(got.records, before + after)
    no_uploads(s3)

    # A clean shutdown keeps the claim: a replacement with a new state dir is still refused.
    assert s3.claim(marker)["instance_id"] == first_id
    assert f"instance {first_id}" in run_refused(cfg, tmp_path / "state2")
    # The operator releases it (the first instance is gone for good): the next one claims it.
    s3.client.delete_object(Bucket=BUCKET, Key=marker)
    second = start_daemon(cfg, state_dir=tmp_path / "state2", log_name="second")
    assert s3.claim(marker)["instance_id"] == (tmp_path / "state2" / "instance-id").read_text().strip()
    second.stop_ok()
    assert s3.keys(claims=True) == sorted(got.keys + [marker])
    print(f"second instance refused in {refused_in:.2f}s; {len(got.keys)} objects, {len(before + after)} records once each")


def test_restart_after_kill9_reclaims_its_own_prefix(tmp_path, s3, start_daemon):
    """The same instance (same state dir) restarting after kill -9 finds its own instance id
    in the marker, claims it again and delivers every acknowledged record exactly once."""
    stream = "again"
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "again.toml", s3_native_config(stream, endpoint_url=s3.url, prefix="r/"))
    marker = claim_key("r/", stream)
    d = start_daemon(cfg, state_dir=state, log_name="k9")
    first = json_records("first", range(2000))
    send_all(firehose_client(d.endpoint), stream, first)
    d.kill9()
    d = start_daemon(cfg, state_dir=state, log_name="k9")
    holder = s3.claim(marker)
    assert holder["instance_id"] == (state / "instance-id").read_text().strip()
    assert holder["pid"] == d.pid, "the re-claim did not record the new process"
    second = json_records("second", range(2000))
    send_all(firehose_client(d.endpoint), stream, second)
    d.stop_ok()
    got = s3.delivered("r/", stream=stream)
    assert_exactly_once(got.records, first + second)
    no_uploads(s3)


def test_instance_above_a_nested_one_leaves_its_uploads_alone(tmp_path, s3, start_daemon):
    """B delivers the stream below `logs/x/` and has an upload open; A, same stream name below
    `logs/` (whose listing covers `logs/x/`), starts after it. A's claim cannot see B's (it
    is below, not above), but A's recovery must leave B's upload alone: both deliver
    everything exactly once."""
    stream = "nest"
    inner_cfg = write_config(
        tmp_path / "inner.toml",
        s3_native_config(stream, endpoint_url=s3.url, prefix="logs/x/", size_bytes=16 * MIB, interval_secs=900),
    )
    outer_cfg = write_config(tmp_path / "outer.toml", s3_native_config(stream, endpoint_url=s3.url, prefix="logs/"))
    inner = start_daemon(inner_cfg, state_dir=tmp_path / "inner", log_name="inner")
    inner_records = json_records("inner", range(500))
    send_all(firehose_client(inner.endpoint), stream, inner_records)
    assert wait_until(lambda: len(s3.uploads("logs/x/")) == 1, 10), s3.uploads()
    open_upload = s3.uploads("logs/x/")

    outer = start_daemon(outer_cfg, state_dir=tmp_path / "outer", log_name="outer")
    outer_records = json_records("outer", range(500))
    send_all(firehose_client(outer.endpoint), stream, outer_records)
    # Recovery runs before the first delivery: once A delivered, it has listed the uploads.
    assert wait_until(lambda: any(not k.startswith("logs/x/") for k in s3.keys("logs/")), 15)
    assert s3.uploads("logs/x/") == open_upload, "A's recovery aborted B's staged upload"
    assert wait_for_log(outer.log_path, "below another instance's claim", timeout=5)

    outer.stop_ok()
    inner.stop_ok()
    assert_exactly_once(s3.delivered("logs/x/").records, inner_records)
    assert_exactly_once(s3.delivered("logs/").records, inner_records + outer_records)
    no_uploads(s3)
