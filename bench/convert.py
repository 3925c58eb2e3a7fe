#!/usr/bin/env python3
"""JSON Lines -> Parquet (snappy) benchmark: sluice vs DuckDB vs pyarrow, side by side.

Not a test and not run by CI. Run from the repo root after `cargo build --release`:

    .venv/bin/python bench/convert.py [--records 1000000] [--runs 3] [--seed 42]

It generates (deterministically, from the seed) a JSON Lines file of nested records
(struct, array, map, timestamp, decimal, strings), then converts it with each tool in
turn, measuring each child process alone (os.wait4): wall seconds, CPU seconds
(user+sys) and peak RSS. Medians of --runs runs are reported, with CPU ratios against
DuckDB, printed as a table and written to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SLUICE = Path(os.environ.get("SLUICE_BIN", REPO / "target" / "release" / "sluice"))

SCHEMA_TOML = """
[[schema]]
name = "id"
type = "bigint"
[[schema]]
name = "ts"
type = "timestamp"
[[schema]]
name = "user"
type = "struct<name:string,age:int,address:struct<city:string,zip:string>>"
[[schema]]
name = "tags"
type = "array<string>"
[[schema]]
name = "attrs"
type = "map<string,int>"
[[schema]]
name = "price"
type = "decimal(12,2)"
[[schema]]
name = "score"
type = "double"
[[schema]]
name = "ok"
type = "boolean"
[[schema]]
name = "msg"
type = "string"
"""

DUCK_COLUMNS = (
    "{id: 'BIGINT', ts: 'TIMESTAMP', "
    "\"user\": 'STRUCT(name VARCHAR, age INTEGER, address STRUCT(city VARCHAR, zip VARCHAR))', "
    "tags: 'VARCHAR[]', attrs: 'MAP(VARCHAR, INTEGER)', price: 'DECIMAL(12,2)', "
    "score: 'DOUBLE', ok: 'BOOLEAN', msg: 'VARCHAR'}"
)

CITIES = ["Oslo", "Lisbon", "Nairobi", "Osaka", "Lima", "Quebec", "Tromsø", "São Paulo"]
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho".split()


def generate(path: Path, records: int, seed: int) -> None:
    rng = random.Random(seed)
    base = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    with path.open("w", encoding="utf-8") as f:
        for i in range(records):
            ts = base + dt.timedelta(milliseconds=rng.randrange(0, 86_400_000 * 365))
            rec = {
                "id": i,
                "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
                "user": {
                    "name": f"user-{rng.randrange(100_000):05d}",
                    "age": rng.randrange(18, 90),
                    "address": {"city": rng.choice(CITIES), "zip": f"{rng.randrange(100000):05d}"},
                },
                "tags": rng.sample(WORDS, rng.randrange(0, 4)),
                "attrs": {f"k{j}": rng.randrange(1000) for j in range(rng.randrange(0, 3))},
                "price": round(rng.uniform(0, 99999), 2),
                "score": rng.random(),
                "ok": rng.random() < 0.5,
                "msg": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 10))),
            }
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")


def measure(cmd: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """Runs cmd alone; returns (wall s, user+sys CPU s, peak RSS MiB) of that child."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {stderr[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", type=Path, default=None, help="keep files here (default: a temp dir)")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS.md")
    args = ap.parse_args()
    if not SLUICE.is_file():
        raise SystemExit(f"{SLUICE} not found: run `cargo build --release` first")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"records-{args.records}-{args.seed}.jsonl"
    if not data.exists():
        print(f"generating {args.records} records into {data} ...", file=sys.stderr)
        generate(data, args.records, args.seed)
    size_mb = data.stat().st_size / 1e6
    schema = work / "schema.toml"
    schema.write_text(SCHEMA_TOML)

    py = sys.executable
    duck_sql = (
        "SET threads=2; "
        f"COPY (SELECT * FROM read_json('{data}', format='newline_delimited', columns={DUCK_COLUMNS})) "
        f"TO '{work / 'duckdb.parquet'}' (FORMAT parquet, COMPRESSION snappy)"
    )
    pa_script = (
        "import pyarrow.json as pj, pyarrow.parquet as pq; "
        f"t = pj.read_json({str(data)!r}); "
        f"pq.write_table(t, {str(work / 'pyarrow.parquet')!r}, compression='snappy')"
    )
    tools = {
        "sluice convert": [str(SLUICE), "convert", str(data), "--schema", str(schema), "-o", str(work / "sluice.parquet")],
        "sluice convert --no-dictionary": [
            str(SLUICE), "convert", str(data), "--schema", str(schema), "-o", str(work / "sluice-nodict.parquet"), "--no-dictionary",
        ],
        "DuckDB COPY (2 threads)": [py, "-c", f"import duckdb; duckdb.connect().execute({duck_sql!r})"],
        "pyarrow read_json + write_table": [py, "-c", pa_script],
    }
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in tools}
    for run in range(args.runs):
        for name, cmd in tools.items():  # interleaved, so drift hits every tool alike
            results[name].append(measure(cmd))
            print(f"run {run + 1}: {name}: {results[name][-1]}", file=sys.stderr)

    # Sanity: every output has every row.
    import pyarrow.parquet as pq

    for f in ["sluice.parquet", "duckdb.parquet", "pyarrow.parquet"]:
        rows = pq.ParquetFile(work / f).metadata.num_rows
        assert rows == args.records, (f, rows)

    med = {n: tuple(statistics.median(r[i] for r in rs) for i in range(2)) + (max(r[2] for r in rs),) for n, rs in results.items()}
    duck_cpu = med["DuckDB COPY (2 threads)"][1]
    duck_wall = med["DuckDB COPY (2 threads)"][0]
    header = "| tool | wall s | CPU s (user+sys) | peak RSS MiB | output MB | CPU vs DuckDB | wall vs DuckDB |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    outputs = {
        "sluice convert": "sluice.parquet",
        "sluice convert --no-dictionary": "sluice-nodict.parquet",
        "DuckDB COPY (2 threads)": "duckdb.parquet",
        "pyarrow read_json + write_table": "pyarrow.parquet",
    }
    for name, (wall, cpu, rss) in med.items():
        out_mb = (work / outputs[name]).stat().st_size / 1e6
        lines.append(f"| {name} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | {out_mb:.1f} | {cpu / duck_cpu:.2f}x | {wall / duck_wall:.2f}x |")
    table = "\n".join(lines)
    print(table)

    if not args.no_write:
        import duckdb
        import pyarrow

        text = f"""# JSON Lines -> Parquet (snappy) benchmark

Generated by `bench/convert.py` (not a test). Date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')};
machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}; shared with other work, so expect ±15% noise.

Input: {args.records:,} nested JSON records (seed {args.seed}), {size_mb:.0f} MB: bigint, timestamp
(ISO 8601 with `Z`), struct with a nested struct, array<string>, map<string,int>, decimal(12,2),
double, boolean, string. Medians of {args.runs} interleaved runs; peak RSS is the largest seen.
Each tool runs as its own child process, measured alone with `wait4` (CPU = user + sys).

- sluice: `target/release/sluice convert` (OpenX deserializer, explicit schema, one thread,
  default ParquetSerDe options: snappy, 1 MiB pages, dictionary on, 256 MiB row groups).
- DuckDB {duckdb.__version__}: `COPY (SELECT * FROM read_json(..., columns={{explicit}})) TO ... (FORMAT parquet,
  COMPRESSION snappy)` with `SET threads=2`.
- pyarrow {pyarrow.__version__}: `pyarrow.json.read_json` (inferred schema, its default thread pool) +
  `pq.write_table(compression='snappy')`; it reads the whole file into memory.

{table}
"""
        # Replace only this benchmark's section; keep the other benchmarks' sections.
        results_md = REPO / "bench" / "RESULTS.md"
        old = results_md.read_text() if results_md.exists() else ""
        rest = old.find("\n# ", 1)
        if rest != -1:
            text += old[rest:]
        results_md.write_text(text)
        print(f"wrote {REPO / 'bench' / 'RESULTS.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
