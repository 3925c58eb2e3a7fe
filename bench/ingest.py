#!/usr/bin/env python3
"""Direct PUT ingest throughput of sluice (a benchmark, not a test; CI does not run it).

Starts `sluice run` (release build) with a local-directory sink, then P producer processes
send PutRecordBatch requests (500 records of S bytes each) over keep-alive HTTP/1.1
connections. The request bodies are encoded once up front, so the producers spend their
CPU on sending, not on JSON and base64. Every response is checked (HTTP 200,
FailedPutCount 0). Reports acknowledged records/s and MB/s (record payload bytes, before
base64), the daemon's CPU seconds per MB, and checks at the end (after SIGTERM) that every
record was delivered.

    .venv/bin/python bench/ingest.py [--producers 4] [--seconds 15] [--record-bytes 200]

Producers and daemon share this machine's cores: the numbers are for the whole box.
"""

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from common import cpu_seconds, free_port  # noqa: E402


def producer(port, stream, record_bytes, deadline, worker, out):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Firehose_20150804.PutRecordBatch"}
    sent = 0
    batch = 0
    while time.time() < deadline:
        records = []
        for i in range(500):
            tag = f"{worker:02d}{batch:08d}{i:03d}".encode()
            records.append({"Data": base64.b64encode(tag + b"x" * (record_bytes - len(tag) - 1) + b"\n").decode()})
        body = json.dumps({"DeliveryStreamName": stream, "Records": records})
        conn.request("POST", "/", body, headers)
        response = conn.getresponse()
        reply = response.read()
        if response.status == 503:
            time.sleep(0.05)
            continue
        assert response.status == 200, (response.status, reply[:200])
        assert json.loads(reply)["FailedPutCount"] == 0, reply[:200]
        sent += 500
        batch += 1
    out.put(sent)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--record-bytes", type=int, default=200)
    parser.add_argument("--binary", default=str(REPO / "target/release/sluice"))
    args = parser.parse_args()
    if not pathlib.Path(args.binary).exists():
        sys.exit(f"{args.binary} is missing: run `cargo build --release` first")

    work = pathlib.Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    config = work / "bench.toml"
    config.write_text(
        f"""name = "bench"
[source]
type = "direct_put"
max_wal_bytes = {8 << 30}
[destination]
type = "local"
path = "{work / 'out'}"
[destination.buffering]
size_bytes = {64 << 20}
interval_secs = 60
"""
    )
    port = free_port()
    log = open(work / "sluice.log", "w")
    daemon = subprocess.Popen(
        [args.binary, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--state-dir", str(work / "state")],
        stderr=log,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        cpu0 = cpu_seconds(daemon.pid)
        start = time.time()
        out = mp.Queue()
        procs = [
            mp.Process(target=producer, args=(port, "bench", args.record_bytes, start + args.seconds, w, out))
            for w in range(args.producers)
        ]
        for p in procs:
            p.start()
        total = sum(out.get() for _ in procs)
        for p in procs:
            p.join()
        elapsed = time.time() - start
        cpu = cpu_seconds(daemon.pid) - cpu0
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=300)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    delivered = sum(
        f.read_bytes().count(b"\n") for f in (work / "out").rglob("*") if f.is_file() and ".sluice-staging" not in f.parts
    )
    mb = total * args.record_bytes / 1e6
    print(f"machine: {os.cpu_count()} cores; producers: {args.producers}; record: {args.record_bytes} B; batches of 500")
    print(f"acknowledged: {total} records in {elapsed:.1f} s = {total / elapsed:,.0f} records/s, {mb / elapsed:.1f} MB/s")
    print(f"daemon CPU: {cpu:.1f} s = {cpu / mb * 1000:.1f} ms per MB of records")
    print(f"delivered after SIGTERM (exit {code}): {delivered} records ({'all' if delivered == total else 'MISMATCH'})")


if __name__ == "__main__":
    main()
