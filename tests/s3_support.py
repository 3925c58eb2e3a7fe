"""S3 (moto) fixtures and helpers for sluice's S3 destination tests.

- ``moto_server`` (session): a ``moto.server`` subprocess on 127.0.0.1, its URL;
- ``s3`` (function): moto reset, bucket ``test-bucket`` created; an :class:`S3Env`;
- ``fault_proxy`` (function): factory starting ``tests/fault_proxy.py`` subprocesses;
- readers of what a bucket shows: visible keys, decoded records, open multipart uploads;
- :class:`Sender`: a Direct PUT producer thread that books which records were acknowledged.

Outputs are read straight from moto with boto3 (path-style), never through sluice or the
fault proxy, and decoded with the independent decoders of conftest.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import (
    key_regex,
    split_records,
    DEFAULT_EXT,
    DEFAULT_PREFIX_RE,
    Delivered,
    compression_of,
    HTTP_TIMEOUT,
    decode_object,
    free_port,
    json_records,
)

TESTS_DIR = Path(__file__).resolve().parent
BUCKET = "test-bucket"
MOTO_READY_TIMEOUT = 30.0

# Environment the daemon needs to talk to moto (conftest's session fixture sets these too;
# listed here for tests that build an env by hand).
DAEMON_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll `pred` until it is true or `timeout` seconds pass; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _http(method: str, url: str, timeout: float = 5.0, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM one process we started (by its PID), then SIGKILL it if it lingers."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# ----------------------------------------------------------------------------------------
# moto
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory, _aws_env):
    """A moto server for the whole session; yields its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + MOTO_READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                status, _ = _http("GET", f"{url}/moto-api/data.json", timeout=1.0)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not answer within {MOTO_READY_TIMEOUT}s")
            time.sleep(0.1)
        yield url
    finally:
        stop_process(proc)


def firehose_client(endpoint: str):
    """boto3 Firehose client that makes exactly one attempt per call. (botocore reads
    `retries={"max_attempts": 1}` as one *retry*, i.e. two attempts: a request whose
    connection died would be resent, so a record could be sent twice by the client and a
    connection error would not tell whether anything reached the server.)"""
    return boto3.client(
        "firehose",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=HTTP_TIMEOUT,
            tcp_keepalive=True,
        ),
    )


def s3_client(url: str, *, max_attempts: int = 3):
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


@dataclass
class S3Env:
    url: str
    bucket: str
    client: object

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def keys(self, prefix: str = "", *, claims: bool = False) -> list[str]:
        return list_keys(self.client, self.bucket, prefix, claims=claims)

    def claim(self, key: str) -> dict:
        """A claim marker's JSON body."""
        return json.loads(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def uploads(self, prefix: str = "") -> list[tuple[str, str]]:
        return list_uploads(self.client, self.bucket, prefix)

    def read(self, key: str, compression: str | None = None) -> bytes:
        return read_object(self.client, self.bucket, key, compression)

    def head(self, key: str) -> dict:
        return self.client.head_object(Bucket=self.bucket, Key=key)

    def delivered(self, prefix: str = "", **kw) -> Delivered:
        return read_s3_delivered(self.client, self.bucket, prefix, **kw)


def reset_moto(url: str) -> None:
    status, body = _http("POST", f"{url}/moto-api/reset", data=b"")
    assert status == 200, f"moto reset answered {status}: {body[:200]!r}"


@pytest.fixture
def s3(moto_server) -> S3Env:
    """Fresh moto state with an empty bucket `test-bucket`."""
    reset_moto(moto_server)
    client = s3_client(moto_server)
    client.create_bucket(Bucket=BUCKET)
    return S3Env(moto_server, BUCKET, client)


# ----------------------------------------------------------------------------------------
# Reading a bucket
# ----------------------------------------------------------------------------------------


CLAIM_DIR = ".sluice"  # sluice's claim markers: <prefix head>.sluice/<stream>.claim


def claim_key(head: str, stream: str) -> str:
    """The claim marker of `stream` for prefixes whose literal head is `head`."""
    return f"{head[: head.rfind('/') + 1]}{CLAIM_DIR}/{stream}.claim"


def list_keys(client, bucket: str, prefix: str = "", *, claims: bool = False) -> list[str]:
    """Visible (completed) object keys under `prefix`, sorted. sluice's claim markers are
    not delivered objects: left out unless `claims`."""
    keys: list[str] = []
    token = None
    for _ in range(10_000):
        kw = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
        if token:
            kw["ContinuationToken"] = token
        resp = client.list_objects_v2(**kw)
        keys += [o["Key"] for o in resp.get("Contents", [])]
        if not resp.get("IsTruncated"):
            break
        token = resp["NextContinuationToken"]
    if not claims:
        keys = [k for k in keys if CLAIM_DIR not in k.split("/")]
    return sorted(keys)


def list_uploads(client, bucket: str, prefix: str = "") -> list[tuple[str, str]]:
    """Open (neither completed nor aborted) multipart uploads: (key, upload id)."""
    out: list[tuple[str, str]] = []
    key_marker = upload_marker = None
    for _ in range(10_000):
        kw = {"Bucket": bucket, "Prefix": prefix, "MaxUploads": 1000}
        if key_marker:
            kw["KeyMarker"] = key_marker
        if upload_marker:
            kw["UploadIdMarker"] = upload_marker
        resp = client.list_multipart_uploads(**kw)
        out += [(u["Key"], u["UploadId"]) for u in resp.get("Uploads", [])]
        if not resp.get("IsTruncated"):
            break
        key_marker, upload_marker = resp.get("NextKeyMarker"), resp.get("NextUploadIdMarker")
    return sorted(out)


def read_object(client, bucket: str, key: str, compression: str | None = None) -> bytes:
    """Whole object, decompressed by `compression` (default: guessed from the extension)."""
    raw = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    comp = compression or compression_of(key)
    try:
        return decode_object(raw, comp)
    except Exception as e:  # noqa: BLE001 - say which object is broken
        raise AssertionError(f"object {key} ({len(raw)} bytes) does not decode as {comp}: {e!r}") from e


def read_s3_delivered(
    client,
    bucket: str,
    prefix: str = "",
    *,
    stream: str | None = None,
    compression: str | None = None,
    ext: str | None = None,
    prefix_re: str | None = None,
    json_lines: bool = True,
) -> Delivered:
    """Read every visible object under `prefix` and check each is complete: decodes fully,
    is non-empty, ends with a newline, and (json_lines) each line is one JSON document.
    With `stream`, every key must match `re.escape(prefix)`-or-`prefix_re` + Firehose naming."""
    keys = list_keys(client, bucket, prefix)
    rx = None
    if stream is not None:
        pre = prefix_re if prefix_re is not None else re.escape(prefix) + DEFAULT_PREFIX_RE
        rx = key_regex(stream, ext if ext is not None else DEFAULT_EXT[compression or "uncompressed"], pre)
    records: Counter = Counter()
    per_key: dict[str, list[bytes]] = {}
    for key in keys:
        if rx is not None:
            assert rx.match(key), f"object key {key!r} does not match {rx.pattern!r}"
        data = read_object(client, bucket, key, compression)
        lines = split_records(key, data, json_lines)
        per_key[key] = lines
        records.update(lines)
    return Delivered(keys, records, per_key)


def check_no_dup_no_foreign(delivered: Counter, acked: set, maybe: set) -> None:
    """No record twice; nothing that was neither acknowledged nor possibly accepted."""
    dups = {r: c for r, c in delivered.items() if c > 1}
    assert not dups, f"{len(dups)} records delivered more than once, e.g. {list(dups.items())[:2]}"
    foreign = [r for r in delivered if r not in acked and r not in maybe]
    assert not foreign, f"{len(foreign)} delivered records were never acknowledged, e.g. {foreign[:2]}"


# ----------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------


def s3_native_config(
    name: str,
    *,
    bucket: str = BUCKET,
    endpoint_url: str | None = None,
    compression: str = "uncompressed",
    size_bytes: int = 1048576,
    interval_secs: int = 1,
    append_delimiter: bool = True,
    max_wal_bytes: int | None = None,
    **dest_extra,
) -> dict:
    """A native TOML config (dict) for one Direct PUT stream into an S3 bucket. Extra
    destination keys (prefix, encryption, part_size_bytes, backup={...}, ...) pass through."""
    dest: dict = {"type": "s3", "bucket": bucket}
    if endpoint_url is not None:
        dest["endpoint_url"] = endpoint_url
    dest["compression"] = compression
    dest["append_delimiter"] = append_delimiter
    tables = {k: v for k, v in dest_extra.items() if isinstance(v, dict)}
    dest.update({k: v for k, v in dest_extra.items() if not isinstance(v, dict)})
    dest["buffering"] = {"size_bytes": size_bytes, "interval_secs": interval_secs}
    dest.update(tables)
    source: dict = {"type": "direct_put"}
    if max_wal_bytes is not None:
        source["max_wal_bytes"] = max_wal_bytes
    return {"name": name, "source": source, "destination": dest}


# ----------------------------------------------------------------------------------------
# Fault proxy
# ----------------------------------------------------------------------------------------


class ProxyProcess:
    """A fault-injecting proxy script run as a subprocess; it answers `GET /__faults` with
    its counters. Shared by the S3 and Kinesis proxies."""

    name = "proxy"

    def __init__(self, script: str, upstream_url: str, log_dir: Path, args: list[str]):
        self.port = free_port()
        self.upstream = upstream_url.split("://", 1)[1]
        self.out_path = Path(log_dir) / f"{self.name}_{self.port}.out"
        self.err_path = Path(log_dir) / f"{self.name}_{self.port}.err"
        self.argv = [sys.executable, str(TESTS_DIR / script), "--listen-port", str(self.port),
                     "--upstream", self.upstream, *args]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
            )
        ok = wait_until(lambda: self.proc.poll() is not None or self._answers(), 15, 0.05)
        if not ok or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {self.err_path.read_text()[-2000:]}")
        return self

    def _answers(self) -> bool:
        try:
            return _http("GET", f"{self.url}/__faults", timeout=1.0)[0] == 200
        except OSError:
            return False

    def stats(self) -> dict:
        status, body = _http("GET", f"{self.url}/__faults", timeout=10.0)
        assert status == 200, status
        return json.loads(body)

    def configure(self, query: str) -> dict:
        status, body = _http("POST", f"{self.url}/__faults?{query}", timeout=10.0, data=b"")
        assert status == 200, status
        return json.loads(body)

    def stop(self) -> str:
        """Stop it (SIGTERM by PID); returns its stdout (the final counters)."""
        if self.proc is not None:
            stop_process(self.proc)
        try:
            return self.out_path.read_text()
        except OSError:
            return ""


class FaultProxy(ProxyProcess):
    """`tests/fault_proxy.py` in front of an S3 endpoint."""

    name = "fault_proxy"

    def __init__(self, upstream_url: str, log_dir: Path, *, rate: float, seed: int, delay_secs: float):
        args = ["--fault-rate", str(rate), "--seed", str(seed), "--delay-secs", str(delay_secs),
                "--max-lifetime-secs", "1800"]
        super().__init__("fault_proxy.py", upstream_url, log_dir, args)

    def set_rate(self, rate: float, kinds: Iterable[str] | None = None) -> dict:
        return self.configure(f"rate={rate}" + (f"&kinds={','.join(kinds)}" if kinds is not None else ""))


@pytest.fixture
def fault_proxy(request, tmp_path):
    """Factory: fault_proxy(upstream_url, rate=0.15, seed=0, delay_secs=8) -> started FaultProxy.
    Stopped in teardown; its fault log goes into a failing test's report."""
    proxies: list[FaultProxy] = []
    logs = request.node.__dict__.setdefault("_sluice_logs", [])

    def start(upstream_url: str, rate: float = 0.15, seed: int = 0, delay_secs: float = 8.0) -> FaultProxy:
        p = FaultProxy(upstream_url, tmp_path, rate=rate, seed=seed, delay_secs=delay_secs)
        proxies.append(p)
        logs.append(("fault proxy", str(p.err_path)))
        return p.start()

    yield start
    for p in proxies:
        p.stop()


# ----------------------------------------------------------------------------------------
# Producers
# ----------------------------------------------------------------------------------------


class Sender(threading.Thread):
    """Sends PutRecordBatch requests until stopped, out of ids, or the daemon goes away.

    acked:    records that got a RecordId -> must be delivered exactly once
    rejected: records answered with an error, or never sent because the connection was
              refused (EndpointConnectionError) -> must never be delivered
    maybe:    records of a request whose answer never came (connection died) -> at most once

    With `retry_unavailable`, a batch answered ServiceUnavailableException (the daemon's
    back-pressure; nothing of it was accepted) is sent again after a pause, up to
    `max_unavailable_retries` times; `interval` paces batches.
    """

    def __init__(
        self,
        endpoint: str,
        stream: str,
        tag: str,
        ids,
        *,
        batch: int = 100,
        pad: int = 200,
        interval: float = 0.0,
        retry_unavailable: bool = False,
        max_unavailable_retries: int = 600,
        stop_on_connection_error: bool = True,
        deadline: float | None = None,
        suffix: bytes = b"",
    ):
        super().__init__(daemon=True)
        self.endpoint, self.stream, self.tag, self.ids = endpoint, stream, tag, ids
        self.batch, self.pad, self.interval = batch, pad, interval
        self.retry_unavailable, self.max_retries = retry_unavailable, max_unavailable_retries
        self.stop_on_connection_error = stop_on_connection_error
        self.suffix = suffix
        self.deadline = deadline if deadline is not None else time.monotonic() + 600
        self.stop = threading.Event()
        self.acked: list[bytes] = []
        self.rejected: list[bytes] = []
        self.maybe: list[bytes] = []
        self.errors: Counter = Counter()
        self.unexpected: list[BaseException] = []
        self.requests = 0

    def _next_batch(self) -> list[bytes]:
        out = []
        for _ in range(self.batch):
            try:
                out.append(next(self.ids))
            except StopIteration:
                break
        return [r + self.suffix for r in json_records(self.tag, out, pad=self.pad)]

    def run(self):
        try:
            client = firehose_client(self.endpoint)
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                batch = self._next_batch()
                if not batch:
                    return
                if not self._send(client, batch):
                    return
                if self.interval:
                    self.stop.wait(self.interval)
        except BaseException as e:  # noqa: BLE001 - surfaced by the test
            self.unexpected.append(e)

    def _send(self, client, batch: list[bytes]) -> bool:
        """Returns False when the thread should end."""
        for attempt in range(self.max_retries + 1):
            self.requests += 1
            try:
                resp = client.put_record_batch(DeliveryStreamName=self.stream, Records=[{"Data": r} for r in batch])
            except botocore.exceptions.ClientError as e:
                code = e.response["Error"]["Code"]
                self.errors[code] += 1
                if code == "ServiceUnavailableException":
                    if self.retry_unavailable and attempt < self.max_retries and not self.stop.is_set() and time.monotonic() < self.deadline:
                        time.sleep(0.5)
                        continue
                else:
                    self.unexpected.append(e)
                self.rejected += batch
                return False
            except botocore.exceptions.EndpointConnectionError as e:
                # One attempt only (see firehose_client): raised when the TCP connection
                # could not be made, so nothing was sent.
                self.errors[type(e).__name__] += 1
                self.rejected += batch
                return not self.stop_on_connection_error
            except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as e:
                self.errors[type(e).__name__] += 1
                self.maybe += batch
                return not self.stop_on_connection_error
            rr = resp["RequestResponses"]
            if len(rr) != len(batch):
                self.unexpected.append(AssertionError(f"{len(rr)} responses for {len(batch)} records"))
                self.maybe += batch
                return False
            for rec, r in zip(batch, rr):
                (self.acked if r.get("RecordId") else self.rejected).append(rec)
            if resp["FailedPutCount"]:
                self.errors["FailedPutCount"] += 1
            return True
        return False


def merged(senders: Iterable[Sender]) -> tuple[list[bytes], list[bytes], list[bytes], Counter]:
    acked, maybe, rejected, errors = [], [], [], Counter()
    for s in senders:
        acked += s.acked
        maybe += s.maybe
        rejected += s.rejected
        errors.update(s.errors)
    return acked, maybe, rejected, errors


def wait_for_log(log_path: Path, text: str, *, after: int = 0, timeout: float = 30.0) -> bool:
    """Wait until `text` appears in the daemon log at or after byte offset `after`."""
    def found() -> bool:
        try:
            with open(log_path, "rb") as f:
                f.seek(after)
                return text.encode() in f.read()
        except OSError:
            return False

    return wait_until(found, timeout, 0.1)


def log_size(log_path: Path) -> int:
    try:
        return Path(log_path).stat().st_size
    except OSError:
        return 0
