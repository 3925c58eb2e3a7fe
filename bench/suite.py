#!/usr/bin/env python3
"""Every sluice benchmark in one run, side by side on the same data and cores; results
written to docs/benchmarks/RESULTS.md with PNG charts. Start it with `bench/run` (which
builds the release binary and the benchmark's Python environment first).

    bench/run [--quick] [--records N] [--runs N] [--workdir DIR] [--no-write]

Not a test: nothing here asserts speed. Each section says how it measures:

  a. convert: `sluice convert` JSON Lines -> Parquet (snappy) and -> ORC (zlib) against
     DuckDB `COPY`, pyarrow and polars, each a child process measured alone (wait4): wall
     and CPU seconds, peak RSS, output size, ratios to DuckDB. Every output's row count is
     checked.
  b. the daemon end to end: Direct PUT -> Parquet in a local directory, producers in other
     processes (2 and 4 by default): records/s, MB/s, daemon and producers' CPU per MB, and
     data freshness (put -> the object holding the record is visible) p50/p99; every record
     is checked delivered exactly once.
  c. memory: peak RSS of `convert` and of the daemon for 1x and 10x the data in one object.
  d. the identity WASM transform's overhead and 1/100/1,000 open partitions (bench/
     transforms.py and bench/partitions.py, whose cases this runs), in the full run only.

--quick uses 30,000 records and skips the row-group sizes and (d): under two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import convert  # noqa: E402  (the generator, the schema, the per-child measurement)
from common import cpu_seconds, free_port  # noqa: E402

SLUICE = Path(os.environ.get("SLUICE_BIN", REPO / "target" / "release" / "sluice"))
OUT_DIR = REPO / "docs" / "benchmarks"
HEADERS = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Firehose_20150804.PutRecordBatch"}


def machine() -> str:
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal:")), "0")
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} CPUs ({convert.cpu_model()}), {int(mem) / 2**20:.0f} GiB, "
            f"{platform.system()} {platform.release()}; sluice {rev or 'unknown'}")


# ---------------------------------------------------------------------------------------
# a. convert
# ---------------------------------------------------------------------------------------

def convert_tools(data: Path, schema: Path, work: Path) -> dict[str, tuple[list[str], Path, str]]:
    py = sys.executable
    sql = (
        "SET threads=2; "
        f"COPY (SELECT * FROM read_json('{data}', format='newline_delimited', columns={convert.DUCK_COLUMNS})) "
        f"TO '{work / 'duckdb.parquet'}' (FORMAT parquet, COMPRESSION snappy)"
    )
    duck = f"import duckdb; duckdb.connect().execute({sql!r})"
    pa_parquet = (
        "import pyarrow.json as pj, pyarrow.parquet as pq; "
        f"pq.write_table(pj.read_json({str(data)!r}), {str(work / 'pyarrow.parquet')!r}, compression='snappy')"
    )
    pa_orc = (
        "import pyarrow.json as pj, pyarrow.orc as po; "
        f"po.write_table(pj.read_json({str(data)!r}), {str(work / 'pyarrow.orc')!r}, compression='zlib')"
    )
    polars = (
        "import polars as pl; "
        f"pl.read_ndjson({str(data)!r}).write_parquet({str(work / 'polars.parquet')!r}, compression='snappy')"
    )
    s = str(SLUICE)
    return {
        "sluice convert (Parquet)": ([s, "convert", str(data), "--schema", str(schema), "-o", str(work / "sluice.parquet")],
                                     work / "sluice.parquet", "parquet"),
        "sluice convert (ORC zlib)": ([s, "convert", str(data), "--schema", str(schema), "--format", "orc",
                                       "--compression", "zlib", "-o", str(work / "sluice.orc")], work / "sluice.orc", "orc"),
        "DuckDB COPY (2 threads)": ([py, "-c", duck], work / "duckdb.parquet", "parquet"),
        "pyarrow (Parquet)": ([py, "-c", pa_parquet], work / "pyarrow.parquet", "parquet"),
        "pyarrow (ORC zlib)": ([py, "-c", pa_orc], work / "pyarrow.orc", "orc"),
        "polars (Parquet)": ([py, "-c", polars], work / "polars.parquet", "parquet"),
    }


def rows_of(path: Path, kind: str) -> int:
    if kind == "parquet":
        import pyarrow.parquet as pq
        return pq.ParquetFile(path).metadata.num_rows
    import pyarrow.orc as po
    return po.ORCFile(path).nrows


def bench_convert(data: Path, schema: Path, work: Path, records: int, runs: int) -> list[dict]:
    tools = convert_tools(data, schema, work)
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in tools}
    for run in range(runs):
        for name, (cmd, _, _) in tools.items():  # interleaved: drift hits every tool alike
            samples[name].append(convert.measure(cmd))
            print(f"  convert run {run + 1}: {name}: wall {samples[name][-1][0]:.2f} s", file=sys.stderr)
    out = []
    for name, (_, path, kind) in tools.items():
        assert rows_of(path, kind) == records, f"{name} wrote {rows_of(path, kind)} rows, not {records}"
        s = samples[name]
        out.append({"tool": name, "wall": statistics.median(x[0] for x in s), "cpu": statistics.median(x[1] for x in s),
                    "rss": max(x[2] for x in s), "mb": path.stat().st_size / 1e6})
    duck = next(r for r in out if r["tool"].startswith("DuckDB"))
    for r in out:
        r["cpu_vs_duck"], r["wall_vs_duck"] = r["cpu"] / duck["cpu"], r["wall"] / duck["wall"]
    return out


# ---------------------------------------------------------------------------------------
# b. the daemon end to end (and c. its memory)
# ---------------------------------------------------------------------------------------

def read_lines(path: Path, n: int) -> list[bytes]:
    """The first `n` lines of `path`."""
    out = []
    with path.open("rb") as f:
        for line in f:
            if len(out) == n:
                break
            out.append(line.rstrip(b"\n"))
    return out


def put_bodies(lines: list[bytes], stream: str) -> list[bytes]:
    """PutRecordBatch bodies of 500 records, encoded once up front (bytes, so the producers
    spend their CPU sending, not on JSON, base64 or str encoding); each batch's records carry
    its number in `id` order, so freshness is measured per batch."""
    return [json.dumps({"DeliveryStreamName": stream,
                        "Records": [{"Data": base64.b64encode(r).decode()} for r in lines[i:i + 500]]}).encode()
            for i in range(0, len(lines), 500)]


# The daemon's answer to a batch with no failed record starts so. Checked as bytes rather than
# parsed: the answer carries 500 record ids, and parsing each one in Python cost the producers
# more CPU than sending the batch. Any other answer (a failure, another layout) fails the run.
ALL_PUT = b'{"Encrypted":false,"FailedPutCount":0,'


def producer(port: int, chunk: list[tuple[int, bytes]], out) -> None:
    """Puts `chunk` in order over one keep-alive connection; sends back (when each batch was
    acknowledged, its own CPU seconds) once done, so nothing crosses processes per batch."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    acked = {}
    for n, body in chunk:
        while True:
            conn.request("POST", "/", body, HEADERS)
            response = conn.getresponse()
            reply = response.read()
            if response.status == 503:  # back-pressure: retry
                time.sleep(0.05)
                continue
            assert response.status == 200 and reply.startswith(ALL_PUT), reply[:200]
            acked[n] = time.time()
            break
    out.put((acked, time.process_time()))


def daemon_config(work: Path, schema_toml: str, buffer_bytes: int, interval: int) -> Path:
    columns = schema_toml.replace("[[schema]]", "[[destination.format.schema]]")
    cfg = work / "bench.toml"
    cfg.write_text(
        'name = "bench"\n[source]\ntype = "direct_put"\nmax_wal_bytes = 4294967296\n'
        f'[destination]\ntype = "local"\npath = {json.dumps(str(work / "out"))}\n'
        'error_output_prefix = "errors/!{firehose:error-output-type}/"\n'
        f"[destination.buffering]\nsize_bytes = {buffer_bytes}\ninterval_secs = {interval}\n"
        '[destination.format]\ntype = "parquet"\n' + columns
    )
    return cfg


def start_daemon(cfg: Path, work: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = open(work / "sluice.log", "wb")
    proc = subprocess.Popen([str(SLUICE), "run", "--config", str(cfg), "--listen", f"127.0.0.1:{port}",
                             "--state-dir", str(work / "state")], stdout=log, stderr=log,
                            env={**os.environ, "SLUICE_LOG": "warn"})
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            assert proc.poll() is None and time.time() < deadline, "the daemon did not start"
            time.sleep(0.05)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_producers(port: int, bodies: list[bytes], producers: int) -> tuple[list, mp.Queue]:
    """`producers` processes putting `bodies` between them; `join_producers` collects what
    they report."""
    numbered = list(enumerate(bodies))
    out = mp.Queue()
    workers = [mp.Process(target=producer, args=(port, numbered[i::producers], out)) for i in range(producers)]
    for w in workers:
        w.start()
    return workers, out


def join_producers(started: tuple[list, mp.Queue]) -> tuple[dict[int, float], float]:
    """Waits for the producers: when each batch was acknowledged, and their CPU seconds."""
    workers, out = started
    acked: dict[int, float] = {}
    cpu = 0.0
    for _ in workers:  # read before joining: a child with queued data does not exit
        times, seconds = out.get(timeout=900)
        acked.update(times)
        cpu += seconds
    for w in workers:
        w.join()
        assert w.exitcode == 0, "a producer failed"
    return acked, cpu


def bench_memory(lines: list[bytes], schema_toml: str, producers: int, buffer_bytes: int) -> dict:
    """Peak RSS of a daemon whose buffer holds up to `buffer_bytes` (interval 900 s):
    read once every record is acknowledged; SIGTERM then drains the rest."""
    import pyarrow.parquet as pq

    work = Path(tempfile.mkdtemp(prefix="sluice-bench-mem-"))
    proc, port = start_daemon(daemon_config(work, schema_toml, buffer_bytes, 900), work)
    try:
        join_producers(start_producers(port, put_bodies(lines, "bench"), producers))
        held = peak_rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    objects = list((work / "out").rglob("*.parquet"))
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in objects)
    shutil.rmtree(work)
    assert rows == len(lines), f"{rows} records delivered, {len(lines)} put"
    return {"rss": held, "objects": len(objects)}


def bench_daemon(lines: list[bytes], schema_toml: str, producers: int, buffer_bytes: int, interval: int) -> dict:
    """Puts every line, watches the output directory for new Parquet objects and notes when
    each batch's records became visible."""
    import pyarrow.parquet as pq

    work = Path(tempfile.mkdtemp(prefix="sluice-bench-e2e-"))
    proc, port = start_daemon(daemon_config(work, schema_toml, buffer_bytes, interval), work)
    bodies = put_bodies(lines, "bench")
    try:
        cpu0, t0 = cpu_seconds(proc.pid), time.time()
        started = start_producers(port, bodies, producers)
        seen: set[Path] = set()
        visible: dict[int, float] = {}  # batch -> when its last record was visible
        copies = bytearray(len(lines))  # how often each record (its id) was delivered
        rows = 0
        while rows < len(lines):
            assert time.time() - t0 < 900, f"{rows} of {len(lines)} records visible after 900 s"
            for path in (work / "out").rglob("*.parquet"):
                if path in seen or any(p.startswith(".") for p in path.relative_to(work / "out").parts):
                    continue
                now = time.time()
                seen.add(path)
                ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
                rows += len(ids)
                for i in ids:
                    copies[i] += 1
                    visible[i // 500] = max(visible.get(i // 500, 0.0), now)
            time.sleep(0.01)
        elapsed, cpu = time.time() - t0, cpu_seconds(proc.pid) - cpu0
        sent, producer_cpu = join_producers(started)
        rss = peak_rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    shutil.rmtree(work)
    # Every record exactly once: as many rows as records, and each id seen once.
    assert rows == len(lines) and copies.count(1) == len(lines), \
        f"{rows} rows delivered for {len(lines)} records; {len(lines) - copies.count(1)} ids not seen exactly once"
    fresh = sorted(visible[n] - sent[n] for n in visible)
    mb = sum(len(x) for x in lines) / 1e6
    acked = max(sent.values()) - t0  # the last acknowledgement, from the first put
    return {"records": len(lines), "producers": producers, "records_per_s": len(lines) / elapsed,
            "acked_per_s": len(lines) / acked, "mb_per_s": mb / elapsed, "cpu_per_mb": cpu / mb,
            "producer_cpu_per_mb": producer_cpu / mb,
            "fresh_p50": fresh[len(fresh) // 2], "fresh_p99": fresh[int(len(fresh) * 0.99)],
            "rss": rss, "objects": len(seen), "buffer_mib": buffer_bytes / 2**20}


def bench_kinesis(lines: list[bytes], schema_toml: str, shards: int = 2) -> dict:
    """Kinesis (moto) -> Parquet in S3 (moto): the records are put first (PutRecords of 500,
    the producer's CPU measured apart), then the daemon starts at TRIM_HORIZON and the clock
    runs until every row is in a visible object; the daemon's and moto's CPU over that window
    are reported apart (moto serves GetRecords in Python and costs far more than sluice)."""
    import io

    import boto3
    import pyarrow.parquet as pq
    from botocore.config import Config

    sys.path.insert(0, str(REPO / "tests"))
    from kinesis_support import start_patched_moto

    work = Path(tempfile.mkdtemp(prefix="sluice-bench-kinesis-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true", "SLUICE_LOG": "warn"})
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    moto = proc = None
    try:
        moto, url = start_patched_moto(work / "moto.log")
        cfg = Config(retries={"total_max_attempts": 3}, read_timeout=300)
        kinesis = boto3.client("kinesis", endpoint_url=url, region_name="us-east-1", config=cfg)
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", config=cfg)
        s3.create_bucket(Bucket="bench")
        kinesis.create_stream(StreamName="bench", ShardCount=shards)
        cpu0, t0 = time.process_time(), time.time()
        for i in range(0, len(lines), 500):
            entries = [{"Data": r, "PartitionKey": f"k{(i + j) % 101}"} for j, r in enumerate(lines[i:i + 500])]
            while entries:
                resp = kinesis.put_records(StreamName="bench", Records=entries)
                entries = [e for e, r in zip(entries, resp["Records"]) if r.get("ErrorCode")]
        put_wall, put_cpu = time.time() - t0, time.process_time() - cpu0
        columns = schema_toml.replace("[[schema]]", "[[destination.format.schema]]")
        (work / "bench.toml").write_text(
            'name = "bench"\n[source]\ntype = "kinesis"\nstream_name = "bench"\n'
            f'endpoint_url = "{url}"\nstart_position = "trim_horizon"\npoll_interval_ms = 200\n'
            f'[destination]\ntype = "s3"\nbucket = "bench"\nendpoint_url = "{url}"\n'
            'error_output_prefix = "errors/!{firehose:error-output-type}/"\n'
            "[destination.buffering]\nsize_bytes = 67108864\ninterval_secs = 5\n"
            '[destination.format]\ntype = "parquet"\n' + columns
        )
        log = open(work / "sluice.log", "wb")
        moto_cpu0, t0 = cpu_seconds(moto.pid), time.time()
        proc = subprocess.Popen([str(SLUICE), "run", "--config", str(work / "bench.toml"), "--listen",
                                 f"127.0.0.1:{free_port()}", "--state-dir", str(work / "state")],
                                stdout=log, stderr=log, env=os.environ.copy())
        seen: dict[str, int] = {}
        while sum(seen.values()) < len(lines):
            assert proc.poll() is None, f"the daemon exited; see {work / 'sluice.log'}"
            assert time.time() - t0 < 1800, f"{sum(seen.values())} of {len(lines)} rows after 1800 s"
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench"):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key not in seen and key.endswith(".parquet") and "/.sluice/" not in f"/{key}":
                        body = s3.get_object(Bucket="bench", Key=key)["Body"].read()
                        seen[key] = pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
            time.sleep(0.5)
        wall, cpu, moto_cpu = time.time() - t0, cpu_seconds(proc.pid), cpu_seconds(moto.pid) - moto_cpu0
        rss = peak_rss_mib(proc.pid)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=30)
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(work, ignore_errors=True)
    assert sum(seen.values()) == len(lines), f"{sum(seen.values())} rows delivered, {len(lines)} put"
    mb = sum(map(len, lines)) / 1e6
    return {"records": len(lines), "shards": shards, "wall": wall, "records_per_s": len(lines) / wall,
            "cpu_per_mb": cpu / mb, "moto_cpu": moto_cpu, "sluice_cpu": cpu, "put_wall": put_wall, "put_cpu": put_cpu,
            "objects": len(seen), "rss": rss}


def measure_alone(cmd: list[str]) -> tuple[float, float, float]:
    """convert.measure run from a fresh, small process. A child this process starts borrows
    its pages until it execs, and by now this process holds the records it put: the child's
    peak RSS would count them."""
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); import convert; "
              "print(json.dumps(convert.measure(json.loads(sys.argv[2]))))")
    out = subprocess.run([sys.executable, "-c", script, str(REPO / "bench"), json.dumps(cmd)],
                         capture_output=True, text=True, check=True)
    return tuple(json.loads(out.stdout))


def bench_block_sizes(big: Path, schema: Path, work: Path, sizes_mib=(256, 64, 16)) -> list[dict]:
    """`sluice convert` of the 10x input at several Parquet row-group sizes: peak RSS, output
    size, and DuckDB reading the file back (a full scan: sum of a column, count, median of 3)."""
    out = []
    for mib in sizes_mib:
        path = work / f"block-{mib}.parquet"
        wall, cpu, rss = measure_alone([str(SLUICE), "convert", str(big), "--schema", str(schema),
                                        "--block-size-bytes", str(mib << 20), "-o", str(path)])
        scan = f"import duckdb; duckdb.connect().execute(\"SELECT count(*), sum(score), max(msg) FROM '{path}'\").fetchall()"
        reads = [measure_alone([sys.executable, "-c", scan])[0] for _ in range(3)]
        import pyarrow.parquet as pq
        out.append({"block_mib": mib, "convert_wall": wall, "convert_cpu": cpu, "rss": rss, "mb": path.stat().st_size / 1e6,
                    "row_groups": pq.ParquetFile(path).metadata.num_row_groups, "read_wall": statistics.median(reads)})
    return out


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------

def charts(conv: list[dict], memory: list[dict]) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    names = [r["tool"] for r in conv]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "cpu", "CPU seconds (user+sys)"), (axes[1], "wall", "wall seconds")):
        bars = ax.barh(names, [r[key] for r in conv], color=["#1f77b4" if n.startswith("sluice") else "#999999" for n in names])
        ax.bar_label(bars, fmt="%.2f")
        ax.set_xlabel(label)
        ax.invert_yaxis()
    axes[1].set_yticklabels([])
    fig.suptitle("JSON Lines -> columnar, same file and cores (lower is better)")
    fig.tight_layout()
    fig.savefig(OUT_DIR / "convert.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for what in sorted({m["what"] for m in memory}):
        pts = [m for m in memory if m["what"] == what]
        ax.plot([p["input_mb"] for p in pts], [p["rss"] for p in pts], marker="o", label=what)
    ax.set_xlabel("input MB")
    ax.set_ylabel("peak RSS MiB")
    ax.set_xscale("log")
    ax.legend()
    ax.set_title("Peak memory against input size")
    fig.tight_layout()
    fig.savefig(OUT_DIR / "memory.png", dpi=110)
    plt.close(fig)
    return ["convert.png", "memory.png"]


def report(args, meta: dict, conv: list[dict], e2e: list[dict], kin: dict | None, memory: list[dict], blocks: list[dict],
           extra: list[dict]) -> str:
    lines = [
        "# sluice benchmarks",
        "",
        f"Generated by `bench/run{' --quick' if args.quick else ''}` (not a test; nothing asserts speed) on "
        f"{meta['date']}: {meta['machine']}. One invocation, the same data and cores for every tool; the machine "
        "may run other work, so expect ±15% noise between runs.",
        "",
        f"Data: {meta['records']:,} deterministic clickstream records (seed {args.seed}), {meta['mb']:.0f} MB of JSON "
        f"Lines, {meta['mb'] * 1e6 / meta['records']:.0f} bytes a record: a bigint id, an ISO 8601 timestamp, a user struct "
        "with a nested address struct, an array of strings, a map, a decimal, a double, a boolean and a text field.",
        "",
        "## a. JSON Lines -> Parquet / ORC",
        "",
        f"Each tool is its own child process measured alone with `wait4`; medians of {args.runs} interleaved runs, "
        "peak RSS the largest seen; every output's row count checked. sluice: JSON parsing and Parquet or ORC encoding on two threads, explicit schema, `convert`'s "
        "defaults (snappy, dictionary, 64 MiB row groups) or ORC with zlib. DuckDB: `read_json` with the "
        "same explicit columns, `COPY ... (FORMAT parquet, COMPRESSION snappy)`, 2 threads. pyarrow: `read_json` "
        "(inferred schema, whole file in memory) + `write_table`. polars: `read_ndjson` + `write_parquet`.",
        "",
        "| tool | wall s | CPU s | peak RSS MiB | output MB | CPU vs DuckDB | wall vs DuckDB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in conv:
        lines.append(f"| {r['tool']} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['rss']:.0f} | {r['mb']:.1f} | "
                     f"{r['cpu_vs_duck']:.2f}x | {r['wall_vs_duck']:.2f}x |")
    lines += ["", "![convert](convert.png)", "",
              "## b. The daemon end to end: Direct PUT -> Parquet",
              "",
              f"{args.producers} and {2 * args.producers} producer processes on the same machine put PutRecordBatch "
              "bodies (500 records each, encoded before the clock starts) to a release daemon writing Parquet into a "
              f"local directory ({e2e[0]['buffer_mib']:.0f} MiB / 1 s buffers); each producer sends its next batch "
              "once the last is acknowledged, so more producers fill each group commit (fsync) fuller. The producers' "
              "CPU (sending and checking each answer) is reported apart. Delivered records/s: the clock runs from the first put to "
              "the moment the last record's object is visible, so it includes the final partial object's wait of up "
              f"to one buffer interval (1 s of the {e2e[0]['records'] / e2e[0]['records_per_s']:.1f} s run with "
              f"{e2e[0]['producers']} producers); acknowledged "
              "records/s: from the first put to the last acknowledgement. Freshness is, per batch, from its "
              "acknowledgement to the moment the object holding its last record appeared (polled every 10 ms). "
              "Every record is checked delivered exactly once (its `id` read back from the objects).",
              "",
              "| records | producers | delivered records/s | acknowledged records/s | MB/s | daemon CPU s per MB | producers' CPU s per MB | freshness p50 s | p99 s | objects | peak RSS MiB |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in e2e:
        lines.append(f"| {r['records']:,} | {r['producers']} | {r['records_per_s']:,.0f} | {r['acked_per_s']:,.0f} | "
                     f"{r['mb_per_s']:.1f} | {r['cpu_per_mb']:.3f} | {r['producer_cpu_per_mb']:.3f} | "
                     f"{r['fresh_p50']:.2f} | {r['fresh_p99']:.2f} | {r['objects']} | {r['rss']:.0f} |")
    lines.append("")
    if not kin:
        lines += ["Kinesis (moto) -> Parquet in S3 (moto) runs in the full run only.", ""]
    else:
        lines += [f"Kinesis (moto, {kin['shards']} shards) -> Parquet in S3 (moto): {kin['records']:,} records put first "
                  f"(PutRecords of 500: {kin['put_wall']:.0f} s, the producer's CPU {kin['put_cpu']:.1f} s), then the daemon "
                  "starts at TRIM_HORIZON; the clock runs until every row is in a visible object (64 MiB / 5 s buffers). "
                  "moto serves GetRecords and S3 in Python on the same 2 cores, so the wall time is moto's; the daemon's own "
                  "CPU is the figure to compare.",
                  "",
                  "| records | wall s | records/s | daemon CPU s | daemon CPU s per MB | moto CPU s | objects | peak RSS MiB |",
                  "|---|---|---|---|---|---|---|---|",
                  f"| {kin['records']:,} | {kin['wall']:.1f} | {kin['records_per_s']:,.0f} | {kin['sluice_cpu']:.2f} | "
                  f"{kin['cpu_per_mb']:.3f} | {kin['moto_cpu']:.1f} | {kin['objects']} | {kin['rss']:.0f} |",
                  ""]
    lines += [
              "## c. Memory against input size",
              "",
              "Peak RSS of `sluice convert` (one file in, one file out: one object of any size) and of the daemon "
              "with the largest buffer Firehose allows (128 MiB, interval 900 s, so objects close by size; RSS "
              "read once every record is acknowledged, then SIGTERM drains the rest), at 1x and 10x the data.",
              "",
              "| what | input MB | objects | peak RSS MiB |",
              "|---|---|---|---|"]
    for m in memory:
        lines.append(f"| {m['what']} | {m['input_mb']:.0f} | {m.get('objects', 1)} | {m['rss']:.0f} |")
    lines += ["", "![memory](memory.png)", ""]
    if blocks:
        lines += [f"What `convert`'s row-group size (`--block-size-bytes`) costs on the 10x input "
                  f"({memory[1]['input_mb']:.0f} MB): peak RSS, output size, and DuckDB scanning the file "
                  "(`SELECT count(*), sum(score), max(msg)`, a fresh process each, median of 3). `convert` writes "
                  "64 MiB row groups by default since this was measured; the daemon keeps Firehose's "
                  "BlockSizeBytes default, 256 MiB.",
                  "",
                  "| row group | convert wall s | CPU s | peak RSS MiB | output MB | row groups | DuckDB scan s |",
                  "|---|---|---|---|---|---|---|"]
        for b in blocks:
            lines.append(f"| {b['block_mib']} MiB | {b['convert_wall']:.2f} | {b['convert_cpu']:.2f} | {b['rss']:.0f} | "
                         f"{b['mb']:.1f} | {b['row_groups']} | {b['read_wall']:.3f} |")
        lines.append("")
    if extra:
        lines += ["## d. WASM transform overhead and open partitions", "",
                  "From `bench/transforms.py` and `bench/partitions.py` (their docs say how), run here on their "
                  "default 200-byte records, raw output; the transform cases are medians of 3 interleaved runs:", "",
                  "| case | records | records/s | daemon CPU s per 100k records | vs baseline |", "|---|---|---|---|---|"]
        for group in ("transforms", "partitions"):
            rows = [r for r in extra if r["group"] == group]
            if rows:
                base = rows[0]["cpu_per_100k"]
                for r in rows:
                    lines.append(f"| {group}: {r['case']} | {r['records']:,} | {r['records_per_s']:,.0f} | "
                                 f"{r['cpu_per_100k']:.3f} | {r['cpu_per_100k'] / base:.2f}x |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="30,000 records, one convert run, no row-group sizes, no section d")
    ap.add_argument("--records", type=int, default=None, help="default 500,000 (quick: 30,000)")
    ap.add_argument("--runs", type=int, default=None, help="convert runs per tool (default 3; quick: 1)")
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-write", action="store_true", help="print only; do not write docs/benchmarks/")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the generated data here and reuse it (default: a temp dir)")
    args = ap.parse_args()
    args.records = args.records or (30_000 if args.quick else 500_000)
    args.runs = args.runs or (1 if args.quick else 3)
    if not SLUICE.is_file():
        raise SystemExit(f"{SLUICE} not found: run bench/run (it builds the release binary)")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"records-{args.records}-{args.seed}.jsonl"
    big = work / f"records-{10 * args.records}-{args.seed}.jsonl"
    for path, n in ((data, args.records), (big, 10 * args.records)):
        if not path.exists():  # a kept --workdir reuses them: the generator is deterministic
            print(f"generating {n:,} records ...", file=sys.stderr)
            convert.generate(path, n, args.seed)
    schema = work / "schema.toml"
    schema.write_text(convert.SCHEMA_TOML)
    meta = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(),
            "records": args.records, "mb": data.stat().st_size / 1e6}

    print("a. convert", file=sys.stderr)
    conv = bench_convert(data, schema, work, args.records, args.runs)

    print("b. the daemon end to end", file=sys.stderr)
    lines = data.read_bytes().splitlines()
    # Four times the data (the 10x file starts with the same records): at 500,000 records the puts
    # took ~1.7 s and the whole run ~2.7 s, the last object's wait of one buffer interval a third of it.
    e2e_lines = lines if args.quick else read_lines(big, 4 * args.records)
    # With `--producers` and twice as many: each producer waits for its batch's group commit
    # before sending the next, so how many put at once decides how full each fsync is.
    e2e = [bench_daemon(e2e_lines, convert.SCHEMA_TOML, p, 8 << 20, 1) for p in (args.producers, 2 * args.producers)]
    del e2e_lines

    kin = None
    if not args.quick:
        print("b. Kinesis (moto) -> Parquet in S3 (moto)", file=sys.stderr)
        kin = bench_kinesis(lines[:50_000], convert.SCHEMA_TOML)  # moto takes ~1 ms a record to put
    del lines

    print("c. memory", file=sys.stderr)
    memory = []
    for label, path in (("1x", data), ("10x", big)):
        _, _, rss = measure_alone([str(SLUICE), "convert", str(path), "--schema", str(schema), "-o", str(work / f"m-{label}.parquet")])
        memory.append({"what": "sluice convert", "input_mb": path.stat().st_size / 1e6, "rss": rss})
    for label, path in (("1x", data), ("10x", big)):
        records = path.read_bytes().splitlines()
        size = sum(map(len, records))
        # The largest buffer there is (128 MiB), so the 1x input is about one object and the
        # 10x input many: what the daemon holds is bounded by the buffer, not the input.
        one = bench_memory(records, convert.SCHEMA_TOML, args.producers, 128 << 20)
        memory.append({"what": "daemon, 128 MiB buffer", "input_mb": size / 1e6, "rss": one["rss"],
                       "objects": one["objects"]})

    blocks = [] if args.quick else bench_block_sizes(big, schema, work)

    extra: list[dict] = []
    if not args.quick:
        print("d. transforms and partitions", file=sys.stderr)
        import partitions
        import transforms

        ns = argparse.Namespace(binary=str(SLUICE), record_bytes=200, producers=args.producers)
        components = REPO / "transforms" / "target" / "components"
        if (components / "identity.wasm").exists():
            # 1,000,000 records, 3 interleaved runs, medians: the difference is a few
            # hundredths of a CPU-second per 100k records, smaller than one run's noise.
            cases = (("none", None), ("identity (Rust)", "identity.wasm"))
            runs = [[transforms.run_case(ns, name, module, None, 1_000_000) for name, module in cases]
                    for _ in range(3)]
            for i in range(len(cases)):
                extra.append({"group": "transforms", **transforms.median_of([run[i] for run in runs])})
        for name, p in (("1 partition", 1), ("100 partitions", 100), ("1,000 partitions", 1000)):
            r = partitions.run_case(ns, name, p, 200_000)
            extra.append({"group": "partitions", **r})

    # The outputs go; generated data stays only in a --workdir.
    for f in work.iterdir():
        if f.suffix in (".parquet", ".orc", ".jsonl") and (args.workdir is None or f.suffix != ".jsonl"):
            f.unlink()
    if args.workdir is None:
        shutil.rmtree(work)
    text = report(args, meta, conv, e2e, kin, memory, blocks, extra)
    print(text)
    if not args.no_write:
        charts(conv, memory)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "RESULTS.md").write_text(text + "\n")
        print(f"wrote {OUT_DIR / 'RESULTS.md'} and its charts", file=sys.stderr)


if __name__ == "__main__":
    main()
