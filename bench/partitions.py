#!/usr/bin/env python3
"""Dynamic partitioning cost in the daemon (a benchmark, not a test; CI does not run it).

One run, the same machine, one daemon per case (release build, Direct PUT into a local
directory, raw output with the delimiter, 2 s epochs):

  static        no dynamic partitioning: one object at a time (the baseline)
  P partitions  `[destination.dynamic_partitioning] query = '{p: .p}'`, prefix
                `p=!{partitionKeyFromQuery:p}/`, records spread evenly over P values

For each case the same number of 200-byte JSON records is put with PutRecordBatch by
--producers processes (bodies encoded before the clock starts); the clock stops when
every record is visible. Reported: records/s, the daemon's CPU seconds per 100,000
records (after a warm-up batch) and its peak RSS (VmHWM).

    .venv/bin/python bench/partitions.py [--records 200000] [--partitions 1,100,1000]
"""

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import pathlib
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from common import cpu_seconds, free_port  # noqa: E402
HEADERS = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Firehose_20150804.PutRecordBatch"}


def bodies(stream, records, record_bytes, tag, partitions=1):
    """PutRecordBatch bodies of 500 JSON records each, `record_bytes` long, spread over
    `partitions` values of field `p`."""
    out = []
    for start in range(0, records, 500):
        batch = []
        for i in range(start, min(start + 500, records)):
            head = json.dumps({"id": i, "p": f"p{i % max(partitions, 1):04d}", "tag": tag, "pad": ""})[:-2]
            pad = "x" * max(0, record_bytes - len(head) - 3)
            batch.append({"Data": base64.b64encode(f'{head}"{pad}"}}'.encode()).decode()})
        out.append(json.dumps({"DeliveryStreamName": stream, "Records": batch}))
    return out


def producer(port, chunk):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for body in chunk:
        while True:
            conn.request("POST", "/", body, HEADERS)
            response = conn.getresponse()
            reply = response.read()
            if response.status == 503:  # back-pressure: the log is full; retry
                time.sleep(0.05)
                continue
            assert response.status == 200, (response.status, reply[:200])
            assert json.loads(reply)["FailedPutCount"] == 0, reply[:200]
            break


def delivered_lines(out_dir):
    n = 0
    for root, dirs, files in os.walk(out_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if not f.startswith("."):
                with open(os.path.join(root, f), "rb") as fh:
                    n += fh.read().count(b"\n")
    return n


def peak_rss_mib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_case(args, name, partitions, records):
    work = pathlib.Path(tempfile.mkdtemp(prefix=f"sluice-bench-{name}-"))
    out = work / "out"
    lines = [
        'name = "bench"', "[source]", 'type = "direct_put"', "[destination]", 'type = "local"',
        f"path = {json.dumps(str(out))}", "append_delimiter = true",
    ]
    if partitions:
        lines += ['prefix = "p=!{partitionKeyFromQuery:p}/"', 'error_output_prefix = "errors/!{firehose:error-output-type}/"']
    lines += ["[destination.buffering]", "size_bytes = 8388608", "interval_secs = 2"]
    if partitions:
        lines += ["[destination.dynamic_partitioning]", "query = '{p: .p}'",
                  f"max_active_partitions = {max(partitions, 1)}"]
    cfg = work / "bench.toml"
    cfg.write_text("\n".join(lines) + "\n")
    port = free_port()
    log = open(work / "sluice.log", "wb")
    proc = subprocess.Popen(
        [args.binary, "run", "--config", str(cfg), "--listen", f"127.0.0.1:{port}", "--state-dir", str(work / "state")],
        stdout=log, stderr=log, env={**os.environ, "SLUICE_LOG": "warn"},
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, f"{name}: daemon did not start"
                time.sleep(0.05)
        producer(port, bodies("bench", 500, args.record_bytes, "warm", partitions))
        while delivered_lines(out) < 500:
            time.sleep(0.05)
        work_bodies = bodies("bench", records, args.record_bytes, "run", partitions)
        chunks = [work_bodies[i :: args.producers] for i in range(args.producers)]
        cpu0, t0 = cpu_seconds(proc.pid), time.time()
        workers = [mp.Process(target=producer, args=(port, c)) for c in chunks]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
            assert w.exitcode == 0, f"{name}: a producer failed"
        want = 500 + records
        while (got := delivered_lines(out)) < want:
            assert time.time() - t0 < 600, f"{name}: {got} of {want} delivered after 600 s"
            time.sleep(0.02)
        elapsed, cpu = time.time() - t0, cpu_seconds(proc.pid) - cpu0
        assert got == want, f"{name}: {got} records delivered, {want} sent"
        rss = peak_rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return {"case": name, "records": records, "records_per_s": records / elapsed,
            "cpu_per_100k": cpu / records * 100_000, "rss": rss}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--partitions", default="1,100,1000")
    parser.add_argument("--record-bytes", type=int, default=200)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--binary", default=str(REPO / "target/release/sluice"))
    args = parser.parse_args()
    if not pathlib.Path(args.binary).exists():
        sys.exit(f"{args.binary} is missing: run `cargo build --release` first")
    cases = [("static", 0, args.records)] + [
        (f"{p} partitions", p, args.records) for p in map(int, args.partitions.split(","))
    ]
    print(f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}; {args.record_bytes}-byte records, "
          f"{args.producers} producers on the same machine")
    results = [run_case(args, *case) for case in cases]
    print(f"{'case':<16}{'records':>9}{'records/s':>12}{'daemon CPU s/100k':>19}{'peak RSS MiB':>14}")
    for r in results:
        print(f"{r['case']:<16}{r['records']:>9}{r['records_per_s']:>12,.0f}{r['cpu_per_100k']:>19.3f}{r['rss']:>14.1f}")


if __name__ == "__main__":
    main()
