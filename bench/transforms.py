#!/usr/bin/env python3
"""What a WASM transform costs in the daemon (a benchmark, not a test; CI does not run it).

One run, the same records, the same machine, one daemon per case (release build, Direct
PUT into a local directory, raw output with the delimiter):

  none          no transform: the baseline
  identity      the Rust identity component (transforms/examples/identity)
  python-upper  the Python example (componentize-py): parses each JSON record, upper-cases
                a field that is absent here, so it answers each record unchanged
  js-tag        the JavaScript example (componentize-js): parses each JSON record and adds
                one field

For each case: the records are put with PutRecordBatch (500 records of --record-bytes each,
bodies encoded before the clock starts) by --producers processes, then the clock stops when
every record is visible in delivered objects. Reported: records/s over that span, the
daemon's CPU seconds per 100,000 records (from /proc, start-up and compilation excluded:
the counter is read after the daemon listens, and a warm-up batch has gone through) and
that CPU relative to the baseline. Python and JavaScript get fewer records (--slow-records)
so the run stays short; their per-record figures are comparable, their totals are not.
With --runs N the cases run N times, interleaved (none, identity, ..., none, identity, ...),
and each figure is the median of its N runs, so a burst of other work on the machine
moves one run, not the result.

    .venv/bin/python bench/transforms.py [--records 1000000] [--slow-records 20000] [--runs 3]

Needs `cargo build --release` and `transforms/build.sh` (the components).
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
COMPONENTS = REPO / "transforms" / "target" / "components"
HEADERS = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Firehose_20150804.PutRecordBatch"}


def bodies(stream, records, record_bytes, tag):
    """PutRecordBatch bodies of 500 JSON records each, `record_bytes` long with the newline."""
    out = []
    for start in range(0, records, 500):
        batch = []
        for i in range(start, min(start + 500, records)):
            head = json.dumps({"id": i, "tag": tag, "pad": ""})[:-2]
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


def run_case(args, name, module, config, records):
    work = pathlib.Path(tempfile.mkdtemp(prefix=f"sluice-bench-{name}-"))
    out = work / "out"
    lines = [
        'name = "bench"', "[source]", 'type = "direct_put"', "[destination]", 'type = "local"',
        f"path = {json.dumps(str(out))}", "append_delimiter = true",
        "[destination.buffering]", "size_bytes = 8388608", "interval_secs = 1",
    ]
    if module:
        lines += ["[[destination.transform]]", f"module = {json.dumps(str(COMPONENTS / module))}"]
        if config:
            lines.append("config = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in config.items()) + " }")
    cfg = work / "bench.toml"
    cfg.write_text("\n".join(lines) + "\n")
    port = free_port()
    log = open(work / "sluice.log", "wb")
    proc = subprocess.Popen(
        [args.binary, "run", "--config", str(cfg), "--listen", f"127.0.0.1:{port}", "--state-dir", str(work / "state")],
        stdout=log, stderr=log, env={**os.environ, "SLUICE_LOG": "warn"},
    )
    try:
        deadline = time.time() + 300
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, f"{name}: daemon did not start"
                time.sleep(0.05)
        # Warm-up: one batch through the whole pipeline (instances created, pages touched).
        producer(port, bodies("bench", 500, args.record_bytes, "warm"))
        while delivered_lines(out) < 500:
            time.sleep(0.05)
        work_bodies = bodies("bench", records, args.record_bytes, "run")
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
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return {"case": name, "records": records, "seconds": elapsed, "records_per_s": records / elapsed,
            "cpu_per_100k": cpu / records * 100_000}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--slow-records", type=int, default=20_000, help="records for the Python and JS cases")
    parser.add_argument("--record-bytes", type=int, default=200)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs per case; medians are reported")
    parser.add_argument("--binary", default=str(REPO / "target/release/sluice"))
    args = parser.parse_args()
    if not pathlib.Path(args.binary).exists():
        sys.exit(f"{args.binary} is missing: run `cargo build --release` first")
    for c in ("identity", "python-upper", "js-tag"):
        if not (COMPONENTS / f"{c}.wasm").exists():
            sys.exit(f"{COMPONENTS / c}.wasm is missing: run transforms/build.sh first")
    cases = [
        ("none", None, None, args.records),
        ("identity", "identity.wasm", None, args.records),
        ("python-upper", "python-upper.wasm", {"field": "absent"}, args.slow_records),
        ("js-tag", "js-tag.wasm", {"value": "x"}, args.slow_records),
    ]
    print(f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}; {args.record_bytes}-byte records, "
          f"{args.producers} producers on the same machine")
    runs = [[run_case(args, *case) for case in cases] for _ in range(args.runs)]
    results = [median_of([run[i] for run in runs]) for i in range(len(cases))]
    base = results[0]["cpu_per_100k"]
    print(f"{'case':<14}{'records':>9}{'records/s':>12}{'daemon CPU s/100k':>19}{'vs none':>9}"
          f"   (medians of {args.runs} runs; CPU s/100k of each run)")
    for i, r in enumerate(results):
        each = " ".join(f"{run[i]['cpu_per_100k']:.3f}" for run in runs)
        print(f"{r['case']:<14}{r['records']:>9}{r['records_per_s']:>12,.0f}{r['cpu_per_100k']:>19.3f}"
              f"{r['cpu_per_100k'] / base:>8.2f}x   {each}")


def median_of(results):
    """The case's figures, each the median over its runs."""
    out = dict(results[0])
    for key in ("seconds", "records_per_s", "cpu_per_100k"):
        values = sorted(r[key] for r in results)
        out[key] = values[len(values) // 2] if len(values) % 2 else sum(values[len(values) // 2 - 1:][:2]) / 2
    return out


if __name__ == "__main__":
    main()
