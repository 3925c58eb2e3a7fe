"""Shared fixtures and helpers for sluice's end-to-end tests.

The tests drive the real binary (``SLUICE_BIN``, default ``<repo>/target/debug/sluice``)
with a real AWS SDK client (boto3) and check its output with independent readers
(Python's gzip/zipfile, cramjam for snappy/zstd), never with sluice's own code.

Every wait is bounded; every daemon a test starts is SIGKILLed (by its PID) in teardown
if it is still running; a failing test's report carries the tail of each daemon's log.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import time
import zipfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

import boto3
import cramjam
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
SLUICE_BIN = Path(os.environ.get("SLUICE_BIN", REPO / "target" / "debug" / "sluice"))

READY_TIMEOUT = 20.0  # seconds for `sluice run` to accept TCP connections
EXIT_TIMEOUT = 60.0  # seconds for a SIGTERMed daemon to flush, deliver and exit
HTTP_TIMEOUT = 30.0  # seconds for one HTTP request

STAGING_DIR = ".sluice-staging"
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
DEFAULT_PREFIX_RE = r"(?P<Y>\d{4})/(?P<M>\d{2})/(?P<D>\d{2})/(?P<H>\d{2})/"
DEFAULT_EXT = {
    "uncompressed": "",
    "gzip": ".gz",
    "zip": ".zip",
    "snappy": ".snappy",
    "hadoop_snappy": ".hsnappy",
    "zstd": ".zst",
}
COMPRESSIONS = list(DEFAULT_EXT)

# ----------------------------------------------------------------------------------------
# Environment: dummy AWS credentials, no profile/IMDS/proxy surprises
# ----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="session")
def _aws_env(tmp_path_factory):
    saved = dict(os.environ)
    for k in list(os.environ):
        if k.startswith("AWS_ENDPOINT_URL") or k in (
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
        ):
            del os.environ[k]
    empty = tmp_path_factory.mktemp("aws") / "none"
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def sluice_bin() -> Path:
    if not SLUICE_BIN.is_file() or not os.access(SLUICE_BIN, os.X_OK):
        pytest.fail(f"sluice binary not found at {SLUICE_BIN}: run `cargo build` or set SLUICE_BIN")
    return SLUICE_BIN


# ----------------------------------------------------------------------------------------
# Daemon logs in failure reports
# ----------------------------------------------------------------------------------------


def _tail(path: Path, max_bytes: int = 16000) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    if len(data) > max_bytes:
        data = b"...[cut]...\n" + data[-max_bytes:]
    return data.decode("utf-8", "replace")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for label, path in getattr(item, "_sluice_logs", []):
            rep.sections.append((f"sluice log: {label} ({path})", _tail(Path(path))))


# ----------------------------------------------------------------------------------------
# Config files
# ----------------------------------------------------------------------------------------


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    raise TypeError(f"unsupported TOML value {v!r}")


def to_toml(doc: dict) -> str:
    """Serialize nested dicts of str/int/bool as TOML (tables after scalars)."""
    out: list[str] = []

    def emit(table: dict, path: list[str]):
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in table.items() if isinstance(v, dict)}
        if path:
            out.append(f"[{'.'.join(path)}]")
        for k, v in scalars.items():
            out.append(f"{k} = {_toml_value(v)}")
        out.append("")
        for k, v in tables.items():
            emit(v, path + [k])

    emit(doc, [])
    return "\n".join(out)


def native_config(
    name: str,
    out_dir: Path,
    *,
    compression: str = "uncompressed",
    size_bytes: int = 1048576,
    interval_secs: int = 1,
    append_delimiter: bool = True,
    prefix: str | None = None,
    error_output_prefix: str | None = None,
    file_extension: str | None = None,
    time_zone: str | None = None,
    max_wal_bytes: int | None = None,
) -> dict:
    """A native TOML config (as a dict) for one Direct PUT stream into a local directory."""
    source: dict = {"type": "direct_put"}
    if max_wal_bytes is not None:
        source["max_wal_bytes"] = max_wal_bytes
    dest: dict = {"type": "local", "path": str(out_dir), "compression": compression, "append_delimiter": append_delimiter}
    if prefix is not None:
        dest["prefix"] = prefix
    if error_output_prefix is not None:
        dest["error_output_prefix"] = error_output_prefix
    if file_extension is not None:
        dest["file_extension"] = file_extension
    if time_zone is not None:
        dest["time_zone"] = time_zone
    dest["buffering"] = {"size_bytes": size_bytes, "interval_secs": interval_secs}
    return {"name": name, "source": source, "destination": dest}


def firehose_config(
    name: str,
    out_dir: Path,
    *,
    compression: str = "UNCOMPRESSED",
    size_mib: int = 1,
    interval_secs: int = 1,
    append_delimiter: bool = True,
    **extra_dest,
) -> dict:
    """A Firehose CreateDeliveryStream document (DirectPut into file:// 'bucket')."""
    dest = {
        "RoleARN": "arn:aws:iam::123456789012:role/x",
        "BucketARN": Path(out_dir).as_uri(),
        "BufferingHints": {"SizeInMBs": size_mib, "IntervalInSeconds": interval_secs},
        "CompressionFormat": compression,
    }
    if append_delimiter:
        dest["ProcessingConfiguration"] = {"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]}
    dest.update(extra_dest)
    return {"DeliveryStreamName": name, "DeliveryStreamType": "DirectPut", "ExtendedS3DestinationConfiguration": dest}


def write_config(path: Path, doc: dict | str) -> Path:
    """Write a config: a dict becomes TOML for a .toml path, JSON for a .json path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(doc, str):
        text = doc
    elif path.suffix == ".json":
        text = json.dumps(doc, indent=2)
    else:
        text = to_toml(doc)
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------------
# The daemon
# ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class Daemon:
    """One `sluice run` process. Start with `start()`; stop with `terminate()` or `kill9()`."""

    def __init__(self, bin_path: Path, configs: list[Path], state_dir: Path, log_path: Path, port: int | None = None,
                 extra_args: list[str] | None = None):
        self.extra_args = list(extra_args or [])
        self.bin = bin_path
        self.configs = [Path(c) for c in configs]
        self.state_dir = Path(state_dir)
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        argv = [str(self.bin), "run"]
        for c in self.configs:
            argv += ["--config", str(c)]
        argv += ["--listen", f"127.0.0.1:{self.port}", "--state-dir", str(self.state_dir)]
        return argv + self.extra_args

    def start(self, ready_timeout: float = READY_TIMEOUT) -> "Daemon":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv())}\n".encode())
            log.flush()
            env = dict(os.environ)
            env.setdefault("RUST_BACKTRACE", "1")
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True
            )
        deadline = time.monotonic() + ready_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"sluice run exited with {rc} before listening on {self.port}:\n{_tail(self.log_path)}")
            if port_open(self.port):
                return self
            if time.monotonic() > deadline:
                self.kill9()
                raise AssertionError(f"sluice run did not listen on 127.0.0.1:{self.port} within {ready_timeout}s")
            time.sleep(0.05)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"sluice (pid {self.proc.pid}) did not exit within {timeout}s; SIGKILLed it")

    def terminate(self, timeout: float = EXIT_TIMEOUT, sig: int = signal.SIGTERM) -> int:
        """Send SIGTERM (or `sig`) and wait for the exit; returns the exit code."""
        self.send_signal(sig)
        return self.wait(timeout)

    def stop_ok(self, timeout: float = EXIT_TIMEOUT, sig: int = signal.SIGTERM) -> None:
        rc = self.terminate(timeout, sig)
        assert rc == 0, f"sluice exited with {rc} after {signal.Signals(sig).name}, expected 0"

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def client(self, **kw):
        return firehose_client(self.endpoint, **kw)

    def wait_ready(self, timeout: float = 60.0) -> "Daemon":
        """Until `/readyz` answers 200: every stream recovered and active."""
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/readyz", timeout=5) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            assert self.running(), f"sluice exited:\n{_tail(self.log_path)}"
            assert time.monotonic() < deadline, f"not ready within {timeout}s:\n{_tail(self.log_path)}"
            time.sleep(0.1)


class KillLoop:
    """Chaos for crash tests: on a thread, SIGKILL the daemon and start it again every
    `lo`-`hi` seconds (drawn from `rng`), at most `limit` times. With `settle(daemon)`,
    each interval counts from when it returns (say, once the daemon is ready or has
    delivered something), so slow recoveries still see their pipeline run before the next
    kill. Use as a context manager
    around the load; `daemon` is the one running now, `kills` how many were killed. A start
    that fails on the thread is raised when the block ends."""

    def __init__(self, start, rng, lo: float, hi: float, limit: int | None = None, settle=None):
        import threading

        self._start, self._rng, self._lo, self._hi, self._limit = start, rng, lo, hi, limit
        self._settle = settle
        self.daemon: Daemon = start()
        self.kills = 0
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while self._limit is None or self.kills < self._limit:
                if self._settle is not None:
                    self._settle(self.daemon)
                if self._stop.wait(self._rng.uniform(self._lo, self._hi)):
                    break
                self.daemon.kill9()
                self.kills += 1
                self.daemon = self._start()
        except BaseException as e:  # noqa: BLE001 - raised in __exit__
            self._errors.append(e)

    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "KillLoop":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the kill loop did not stop"
        if self._errors:
            raise AssertionError(f"restarting the daemon failed: {self._errors[0]!r}") from self._errors[0]


@pytest.fixture
def start_daemon(request, tmp_path, sluice_bin):
    """Factory: start_daemon(configs, state_dir=None, log_name=None, port=None, extra_args=None,
    ready_timeout=READY_TIMEOUT) -> ready Daemon.

    Every daemon started through it is SIGKILLed in teardown if it is still running.
    """
    daemons: list[Daemon] = []
    logs = request.node.__dict__.setdefault("_sluice_logs", [])

    def start(configs, state_dir=None, log_name="sluice", port=None, extra_args=None,
              ready_timeout=READY_TIMEOUT) -> Daemon:
        if isinstance(configs, (str, Path)):
            configs = [configs]
        log_path = tmp_path / f"{log_name}.log"
        d = Daemon(sluice_bin, configs, state_dir or tmp_path / "state", log_path, port, extra_args)
        daemons.append(d)
        if (log_name, str(log_path)) not in logs:
            logs.append((log_name, str(log_path)))
        return d.start(ready_timeout)

    yield start
    for d in daemons:
        d.kill9()


def run_sluice(args: list[str], *, input: bytes | None = None, timeout: float = 60.0, cwd=None) -> subprocess.CompletedProcess:
    """Run a short-lived sluice command (validate, put); bounded by `timeout`."""
    return subprocess.run(
        [str(SLUICE_BIN), *args],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        cwd=cwd,
    )


# ----------------------------------------------------------------------------------------
# Clients
# ----------------------------------------------------------------------------------------


def firehose_client(endpoint: str, max_attempts: int = 1):
    """boto3 Firehose client. No retries by default: a retried batch would be a client-made
    duplicate, and error tests must see the first answer."""
    return boto3.client(
        "firehose",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=5,
            read_timeout=HTTP_TIMEOUT,
            tcp_keepalive=True,
        ),
    )


def put_batch_ok(client, stream: str, records: list[bytes]) -> list[str]:
    """PutRecordBatch that must fully succeed; returns the RecordIds."""
    resp = client.put_record_batch(DeliveryStreamName=stream, Records=[{"Data": r} for r in records])
    rr = resp["RequestResponses"]
    assert resp["FailedPutCount"] == 0, f"FailedPutCount={resp['FailedPutCount']}: {[r for r in rr if 'ErrorCode' in r][:3]}"
    assert len(rr) == len(records)
    ids = [r.get("RecordId") for r in rr]
    assert all(isinstance(i, str) and i for i in ids), rr[:3]
    return ids


def put_record_ok(client, stream: str, record: bytes) -> str:
    resp = client.put_record(DeliveryStreamName=stream, Record={"Data": record})
    rid = resp.get("RecordId")
    assert isinstance(rid, str) and rid, resp
    return rid


def raw_call(port: int, target: str | None, body: bytes | str, content_type: str = "application/x-amz-json-1.1"):
    """POST / with a raw body. Returns (status, headers dict (lower-case), parsed JSON or raw bytes)."""
    if isinstance(body, str):
        body = body.encode()
    headers = {"Content-Type": content_type}
    if target is not None:
        headers["X-Amz-Target"] = target
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return resp.status, hdrs, parsed


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def json_records(tag: str, ids: Iterable[int], pad: int = 60) -> list[bytes]:
    """Unique one-line JSON records: {"t": tag, "id": n, "pad": "xxx..."}."""
    p = "x" * pad
    return [json.dumps({"t": tag, "id": n, "pad": p}, separators=(",", ":")).encode() for n in ids]


# ----------------------------------------------------------------------------------------
# Reading delivered output (independent decoders)
# ----------------------------------------------------------------------------------------


def list_objects(out_dir: Path) -> list[str]:
    """Visible delivered objects, as '/'-separated keys relative to out_dir. Any path
    component starting with '.' (staging, temp files) is not visible."""
    out_dir = Path(out_dir)
    keys = []
    if not out_dir.exists():
        return keys
    for root, dirs, files in os.walk(out_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if f.startswith("."):
                continue
            keys.append((Path(root) / f).relative_to(out_dir).as_posix())
    return sorted(keys)


def staged_files(out_dir: Path) -> list[str]:
    """Staged temp files, `<stream>/<file>` below the staging dir (the `<stream>@claim`
    claim files beside the per-stream directories are not staged objects)."""
    staging = Path(out_dir) / STAGING_DIR
    if not staging.exists():
        return []
    return sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file() and p.parent != staging)


def decode_hadoop_snappy(data: bytes) -> bytes:
    """Hadoop BlockCompressorStream + SnappyCodec: repeated blocks of
    [u32 BE uncompressed length] then chunks [u32 BE compressed length][raw snappy]
    until the block's uncompressed length is reached."""
    out = bytearray()
    pos = 0
    n = len(data)
    while pos < n:
        assert pos + 4 <= n, f"truncated hadoop-snappy block header at {pos}"
        block_len = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        got = 0
        while got < block_len:
            assert pos + 4 <= n, f"truncated hadoop-snappy chunk header at {pos}"
            clen = int.from_bytes(data[pos : pos + 4], "big")
            pos += 4
            assert clen > 0 and pos + clen <= n, f"hadoop-snappy chunk of {clen} bytes overruns the object at {pos}"
            chunk = bytes(cramjam.snappy.decompress_raw(data[pos : pos + clen]))
            pos += clen
            got += len(chunk)
            out += chunk
        assert got == block_len, f"hadoop-snappy block declared {block_len} bytes, chunks gave {got}"
    return bytes(out)


def decode_object(data: bytes, compression: str) -> bytes:
    """Decompress one whole object with an independent decoder; raises if incomplete."""
    if compression == "uncompressed":
        return data
    if compression == "gzip":
        assert data[:2] == b"\x1f\x8b", "not a gzip stream"
        return gzip.decompress(data)  # raises EOFError on a truncated stream
    if compression == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
            assert len(names) == 1, f"zip object must hold exactly one entry, has {names}"
            assert z.testzip() is None
            return z.read(names[0])
    if compression == "snappy":
        assert data[:10] == b"\xff\x06\x00\x00sNaPpY", "not a snappy framing-format stream"
        return bytes(cramjam.snappy.decompress(data))
    if compression == "hadoop_snappy":
        return decode_hadoop_snappy(data)
    if compression == "zstd":
        assert data[:4] == b"\x28\xb5\x2f\xfd", "not a zstd frame"
        return bytes(cramjam.zstd.decompress(data))
    raise ValueError(compression)


def compression_of(key: str) -> str:
    for comp, ext in DEFAULT_EXT.items():
        if ext and key.endswith(ext):
            return comp
    return "uncompressed"


def key_regex(stream: str, ext: str = "", prefix_re: str = DEFAULT_PREFIX_RE) -> re.Pattern:
    """`<prefix><stream>-1-yyyy-MM-dd-HH-mm-ss-<uuid><ext>` (Firehose object naming)."""
    return re.compile(
        "^"
        + prefix_re
        + re.escape(stream)
        + r"-1-(?P<ts>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})-"
        + UUID_RE
        + re.escape(ext)
        + "$"
    )


class Delivered:
    """Everything visible under an output dir, decoded and checked for completeness."""

    def __init__(self, keys: list[str], records: Counter, per_key: dict[str, list[bytes]]):
        self.keys = keys
        self.records = records
        self.per_key = per_key


def read_delivered(
    out_dir: Path,
    *,
    stream: str | None = None,
    compression: str | None = None,
    ext: str | None = None,
    prefix_re: str = DEFAULT_PREFIX_RE,
    json_lines: bool = True,
) -> Delivered:
    """Read every visible object; assert each is complete: it decodes fully, is non-empty,
    ends with the newline delimiter, and (json_lines) every line is one whole JSON record.
    With `stream`, every key must match the Firehose naming layout."""
    keys = list_objects(out_dir)
    rx = None
    if stream is not None:
        rx = key_regex(stream, ext if ext is not None else DEFAULT_EXT[compression or "uncompressed"], prefix_re)
    records: Counter = Counter()
    per_key: dict[str, list[bytes]] = {}
    for key in keys:
        if rx is not None:
            assert rx.match(key), f"object key {key!r} does not match {rx.pattern!r}"
        comp = compression or compression_of(key)
        raw = (Path(out_dir) / key).read_bytes()
        try:
            data = decode_object(raw, comp)
        except Exception as e:  # noqa: BLE001 - report which object is broken
            raise AssertionError(f"visible object {key} ({len(raw)} bytes) does not decode as {comp}: {e!r}") from e
        lines = split_records(key, data, json_lines)
        per_key[key] = lines
        records.update(lines)
    return Delivered(keys, records, per_key)


def split_records(key: str, data: bytes, json_lines: bool) -> list[bytes]:
    """The newline-delimited records of one visible object, asserting the object is whole:
    not empty, ending with a delimiter, and (for JSON records) every line a JSON document."""
    assert data, f"visible object {key} is empty"
    assert data.endswith(b"\n"), f"visible object {key} does not end with a record delimiter: ...{data[-80:]!r}"
    lines = data[:-1].split(b"\n")
    if json_lines:
        for i, line in enumerate(lines):
            try:
                json.loads(line)
            except ValueError as e:
                raise AssertionError(f"object {key} line {i} is not a whole JSON record: {line[:200]!r}") from e
    return lines


def assert_exactly_once(delivered: Counter, expected: Iterable[bytes]) -> None:
    """Every expected record delivered exactly once, and nothing else."""
    exp = Counter(expected)
    if delivered == exp:
        return
    missing = exp - delivered
    extra = delivered - exp
    dups = Counter({r: c - 1 for r, c in delivered.items() if c > 1})
    raise AssertionError(
        f"delivered {sum(delivered.values())} records, expected {sum(exp.values())}: "
        f"{sum(missing.values())} missing (e.g. {list(missing)[:3]}), "
        f"{sum(extra.values())} unexpected/duplicate (e.g. {list(extra)[:3]}), "
        f"{sum(dups.values())} duplicates"
    )


def check_key_times(keys: list[str], stream: str, t_start: float, t_end: float, tz=timezone.utc, ext: str = "") -> None:
    """The default prefix (hour of the oldest record) and the name's timestamp lie within
    the time the test was sending/running, in time zone `tz`."""
    rx = key_regex(stream, ext)
    lo = datetime.fromtimestamp(t_start, tz).replace(microsecond=0) - timedelta(seconds=2)
    hi = datetime.fromtimestamp(t_end, tz) + timedelta(seconds=2)
    for key in keys:
        m = rx.match(key)
        assert m, key
        hour = datetime(int(m["Y"]), int(m["M"]), int(m["D"]), int(m["H"]), tzinfo=tz)
        assert lo.replace(minute=0, second=0) <= hour <= hi, f"{key}: prefix hour {hour} outside [{lo}, {hi}]"
        ts = datetime.strptime(m["ts"], "%Y-%m-%d-%H-%M-%S").replace(tzinfo=tz)
        assert lo <= ts <= hi, f"{key}: name timestamp {ts} outside [{lo}, {hi}]"


# ----------------------------------------------------------------------------------------
# WASM components and waiting
# ----------------------------------------------------------------------------------------

COMPONENTS = REPO / "transforms" / "target" / "components"


def wasm_component(name: str) -> Path:
    """An example component, built by transforms/build.sh (scripts/test.sh runs it first)."""
    path = COMPONENTS / f"{name}.wasm"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run transforms/build.sh (scripts/test.sh does)")
    return path


def wasm_fixture() -> Path:
    """The hostile test guest (tests/wasm-fixtures): SLUICE_WASM_FIXTURE, or built now
    (a no-op when up to date). Skips only where wasm32-wasip2 cannot be installed."""
    env = os.environ.get("SLUICE_WASM_FIXTURE")
    if env:
        return Path(env)
    out = subprocess.run(["bash", str(REPO / "tests/wasm-fixtures/build.sh")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    if not out.stdout.strip():
        if os.environ.get("CI"):
            pytest.fail(f"wasm32-wasip2 cannot be installed (CI=true): {out.stderr}")
        pytest.skip(f"wasm32-wasip2 cannot be installed: {out.stderr}")
    return Path(out.stdout.strip())


def wait_until(predicate, timeout: float = 60.0, what: str = "condition"):
    """Polls `predicate` until it returns something true (which is returned); fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return value

