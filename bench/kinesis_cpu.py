#!/usr/bin/env python3
"""CPU cost of sluice's Kinesis source (not a test; CI does not run it).

Puts N MB of 1 KiB user records into a 2-shard stream on moto (with the resharding fixes of
tests/kinesis_support.py; no resharding happens here), half of them as plain Kinesis
records and half inside KPL aggregates (aws-kinesis-agg), then starts the *release* build
of sluice (`target/release/sluice`, built with `cargo build --release` if missing) with
`start_position = "trim_horizon"` into a local directory, and measures sluice's CPU time
(user + sys from /proc/PID/stat) from its start until every user record is delivered.
Reports CPU-seconds per MB of GetRecords payload (the Kinesis record bytes read, aggregates
counted as their wire size), with moto's own CPU over the same window for context, and
appends a section to bench/RESULTS.md.

    .venv/bin/python bench/kinesis_cpu.py [--mb 200] [--record-bytes 1024] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from kinesis_support import start_patched_moto  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
MB = 1_000_000
MIB = 1024 * 1024


def cpu_seconds(pid: int) -> float:
    """user + sys CPU seconds of a live process (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_release_binary() -> Path:
    binary = REPO / "target" / "release" / "sluice"
    if not binary.is_file():
        print("building target/release/sluice (cargo build --release; takes minutes)", flush=True)
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=REPO, check=True, timeout=3600)
    return binary


def user_record(i: int, size: int) -> bytes:
    head = f'{{"id":{i},"pad":"'.encode()
    return head + b"x" * (size - len(head) - 2) + b'"}'


def produce(client, stream: str, total_bytes: int, size: int, agg_users: int) -> tuple[int, int, int]:
    """Puts records until `total_bytes` of user data; alternates a PutRecords of 500 plain
    records with one of aggregates holding as many user records. Returns
    (user records, kinesis records, payload bytes as stored in Kinesis)."""
    from aws_kinesis_agg.aggregator import RecordAggregator

    users = kinesis_records = payload = 0
    batch_no = 0
    t0 = time.monotonic()
    while users * size < total_bytes:
        entries = []
        if batch_no % 2 == 0:
            for _ in range(500):
                data = user_record(users, size)
                entries.append({"Data": data, "PartitionKey": f"p{users % 97}"})
                users += 1
        else:
            for _ in range(500 // agg_users):
                agg = RecordAggregator()
                key = f"a{users % 89}"
                for _ in range(agg_users):
                    assert agg.add_user_record(key, user_record(users, size)) is None
                    users += 1
                pk, _ehk, data = agg.clear_and_get().get_contents()
                entries.append({"Data": data, "PartitionKey": pk})
        batch_no += 1
        for attempt in range(20):
            resp = client.put_records(StreamName=stream, Records=entries)
            if not resp.get("FailedPutCount"):
                break
            entries = [e for e, r in zip(entries, resp["Records"]) if r.get("ErrorCode")]
            time.sleep(0.5)
        else:
            raise SystemExit("PutRecords kept failing")
        kinesis_records += len(entries)
        payload += sum(len(e["Data"]) for e in entries)
        if batch_no % 40 == 0:
            print(f"  put {users * size / MB:.0f} MB ({time.monotonic() - t0:.0f} s)", flush=True)
    return users, kinesis_records, payload


class LineCounter:
    """Counts delivered lines; objects appear complete (atomic rename), so each is read once."""

    def __init__(self, root: Path):
        self.root = root
        self.seen: dict[str, int] = {}

    def count(self) -> int:
        for dirpath, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for f in files:
                if f.startswith("."):
                    continue
                p = os.path.join(dirpath, f)
                if p not in self.seen:
                    with open(p, "rb") as fh:
                        self.seen[p] = fh.read().count(b"\n")
        return sum(self.seen.values())

    def verify_unique(self) -> int:
        hashes = set()
        n = 0
        for p in self.seen:
            with open(p, "rb") as fh:
                for line in fh.read().split(b"\n")[:-1]:
                    hashes.add(hash(line))
                    n += 1
        assert len(hashes) == n, f"{n - len(hashes)} duplicate records delivered"
        return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=200.0, help="MB (10^6 bytes) of user records to put")
    ap.add_argument("--record-bytes", type=int, default=1024)
    ap.add_argument("--agg-users", type=int, default=25, help="user records per KPL aggregate")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--no-write", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--binary", type=Path, default=None, help="sluice binary (default: target/release/sluice, built if missing)")
    args = ap.parse_args()

    binary = args.binary or ensure_release_binary()
    work = Path(tempfile.mkdtemp(prefix="sluice-kinesis-bench-"))
    moto = sluice = None
    try:
        for k in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
            del os.environ[k]
        os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                           "AWS_EC2_METADATA_DISABLED": "true"})
        moto, url = start_patched_moto(work / "moto.log")
        client = boto3.client("kinesis", endpoint_url=url, region_name="us-east-1",
                              config=Config(retries={"total_max_attempts": 1}, read_timeout=300))
        stream = "bench"
        client.create_stream(StreamName=stream, ShardCount=args.shards)
        print(f"putting {args.mb:.0f} MB of {args.record_bytes} B records into moto ({args.shards} shards)", flush=True)
        t0 = time.monotonic()
        users, krecs, payload = produce(client, stream, int(args.mb * MB), args.record_bytes, args.agg_users)
        put_secs = time.monotonic() - t0
        print(f"put {users} user records in {krecs} Kinesis records, payload {payload / MB:.1f} MB, {put_secs:.0f} s", flush=True)

        out = work / "out"
        cfg = work / "bench.toml"
        cfg.write_text(
            f'''name = "bench"
[source]
type = "kinesis"
stream_name = "{stream}"
endpoint_url = "{url}"
start_position = "trim_horizon"
poll_interval_ms = 200
max_records_per_call = 1000
[destination]
type = "local"
path = "{out}"
append_delimiter = true
[destination.buffering]
size_bytes = {64 * MIB}
interval_secs = 5
'''
        )
        log = open(work / "sluice.log", "wb")
        moto_cpu0 = cpu_seconds(moto.pid)
        t_start = time.monotonic()
        sluice = subprocess.Popen(
            [str(binary), "run", "--config", str(cfg), "--listen", f"127.0.0.1:{free_port()}", "--state-dir", str(work / "state")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
        counter = LineCounter(out)
        cpu = 0.0
        while True:
            if sluice.poll() is not None:
                raise SystemExit(f"sluice exited with {sluice.returncode}; log in {work / 'sluice.log'}")
            if counter.count() >= users:
                cpu = cpu_seconds(sluice.pid)
                break
            if time.monotonic() - t_start > args.timeout:
                raise SystemExit(f"only {counter.count()} of {users} records delivered in {args.timeout} s")
            time.sleep(0.5)
        wall = time.monotonic() - t_start
        moto_cpu = cpu_seconds(moto.pid) - moto_cpu0
        peak_rss = rss_mib(sluice.pid)
        os.kill(sluice.pid, signal.SIGTERM)
        rc = sluice.wait(timeout=60)
        delivered = counter.verify_unique()
        assert delivered == users, f"delivered {delivered} records, put {users}"

        per_mb = cpu / (payload / MB)
        result = {
            "payload_mb": round(payload / MB, 1),
            "user_records": users,
            "kinesis_records": krecs,
            "wall_s": round(wall, 1),
            "sluice_cpu_s": round(cpu, 2),
            "cpu_s_per_mb": round(per_mb, 4),
            "mb_per_cpu_s": round((payload / MB) / cpu, 1) if cpu else None,
            "moto_cpu_s": round(moto_cpu, 1),
            "sluice_peak_rss_mib": round(peak_rss, 0),
            "exit_code": rc,
        }
        print(json.dumps(result, indent=2))
        if not args.no_write:
            write_results(args, result)
    finally:
        if sluice is not None and sluice.poll() is None:
            os.kill(sluice.pid, signal.SIGKILL)
            sluice.wait(timeout=10)
        if moto is not None and moto.poll() is None:
            moto.terminate()
            try:
                moto.wait(timeout=10)
            except subprocess.TimeoutExpired:
                moto.kill()
        shutil.rmtree(work, ignore_errors=True)


def write_results(args, r: dict) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"""
## Kinesis source

`bench/kinesis_cpu.py --mb {args.mb:g} --record-bytes {args.record_bytes} --agg-users {args.agg_users}` — {when},
commit {commit}{' (with uncommitted changes)' if dirty else ''}, {platform.machine()}, {os.cpu_count()} cores, release build.
moto (patched, 2-shard stream, trim_horizon) holds {r['user_records']:,} user records of {args.record_bytes} B: half as plain
Kinesis records, half in KPL aggregates of {args.agg_users}; {r['kinesis_records']:,} Kinesis records, {r['payload_mb']} MB of
GetRecords payload. sluice (`max_records_per_call = 1000`, 64 MiB / 5 s buffers, local uncompressed output) from process
start until every record was delivered:

| payload MB | wall s | sluice CPU s (user+sys) | **CPU s per MB** | MB per CPU s | sluice peak RSS MiB | moto CPU s (same window) |
|---|---|---|---|---|---|---|
| {r['payload_mb']} | {r['wall_s']} | {r['sluice_cpu_s']} | **{r['cpu_s_per_mb']}** | {r['mb_per_cpu_s']} | {r['sluice_peak_rss_mib']:.0f} | {r['moto_cpu_s']} |

moto's CPU (JSON + base64 encoding of every GetRecords answer, in Python) bounds the wall time; the
machine is shared, so wall time is indicative only, CPU seconds are the figure to compare.
"""
    path = REPO / "bench" / "RESULTS.md"
    with open(path, "a") as f:
        f.write(text)
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
