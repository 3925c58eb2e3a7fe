"""sluice's ORC writer (src/convert/orc) checked with independent readers.

The files are written by the Rust helper test
``convert::orc::tests::write_sample_files_for_python`` (``cargo test ... --ignored``,
output directory in ``SLUICE_ORC_OUT``), which also writes the same rows as Arrow IPC
files: what the readers must return. Readers: pyarrow.orc (Apache ORC C++ inside
Arrow) and pyorc (Apache ORC C++ bindings, skipped when not installed). pyorc's
``seek`` uses the row index, so it checks the index positions too.

Files (each for compression none/zlib/snappy/zstd):
- ``all_<c>.orc`` / ``all_<c>.arrow``: every Hive type, struct/list/map nested three
  deep, nulls at every level, 9,000 rows, 200 KiB stripes, row index stride 1,000.
- ``all_idx_<c>.orc``: the same rows in one stripe, row index stride 1,000.
- ``all_default_<c>.orc``: the same rows with default options (64 MiB stripes).
- ``events_default_<c>.orc``: 102,400 log-like rows (timestamp, low-cardinality strings,
  int, double), default options.
- ``ids_<c>.orc``: ``id bigint`` 0..19,999 and ``name string`` (null when id % 7 == 0),
  16 KiB stripes; ``ids_default_<c>.orc`` with default options.

The ``sluice convert --format orc`` tests at the end run the binary instead (codec names,
offset timestamps) and need no helper files.
"""

from __future__ import annotations

import math
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.orc as po
import pytest

from conftest import run_sluice

REPO = Path(__file__).resolve().parent.parent
CODECS = ["none", "zlib", "snappy", "zstd"]
PYARROW_CODEC = {"none": "UNCOMPRESSED", "zlib": "ZLIB", "snappy": "SNAPPY", "zstd": "ZSTD"}
HELPER = "convert::orc::tests::write_sample_files_for_python"


@pytest.fixture(scope="session")
def orc_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("orc")
    env = dict(os.environ, SLUICE_ORC_OUT=str(out), CARGO_TERM_COLOR="never")
    proc = subprocess.run(
        ["cargo", "test", "--lib", HELPER, "--", "--ignored", "--exact"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        pytest.fail(f"ORC sample helper failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    files = sorted(p.name for p in out.iterdir())
    assert f"all_zstd.orc" in files and "ids_none.orc" in files, files
    return out


def plain_type(t: pa.DataType) -> pa.DataType:
    """Timestamps -> int64 ns and dates -> int32 days (Python's datetime cannot hold
    every value), recursively; other types unchanged."""
    if pa.types.is_timestamp(t):
        return pa.int64()
    if pa.types.is_date32(t):
        return pa.int32()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, plain_type(f.type), f.nullable) for f in t])
    if pa.types.is_map(t):
        return pa.map_(plain_type(t.key_type), plain_type(t.item_type))
    if pa.types.is_list(t):
        return pa.list_(plain_type(t.value_type))
    return t


def ns_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(t):
        return pa.timestamp("ns")
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, ns_type(f.type), f.nullable) for f in t])
    if pa.types.is_map(t):
        return pa.map_(ns_type(t.key_type), ns_type(t.item_type))
    if pa.types.is_list(t):
        return pa.list_(ns_type(t.value_type))
    return t


def comparable(v):
    """NaN equal to NaN; otherwise the value as is."""
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, list):
        return [comparable(x) for x in v]
    if isinstance(v, tuple):
        return tuple(comparable(x) for x in v)
    if isinstance(v, dict):
        return {k: comparable(x) for k, x in v.items()}
    return v


def column_values(col: pa.ChunkedArray) -> list:
    return comparable(col.cast(ns_type(col.type)).cast(plain_type(col.type)).to_pylist())


def first_difference(a: list, b: list):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i, x, y
    return None if len(a) == len(b) else ("length", len(a), len(b))


@pytest.mark.parametrize("codec", CODECS)
def test_pyarrow_reads_every_type(orc_dir: Path, codec: str):
    expected = ipc.open_file(orc_dir / f"all_{codec}.arrow").read_all()
    f = po.ORCFile(orc_dir / f"all_{codec}.orc")
    assert f.nrows == expected.num_rows == 9000
    assert f.nstripes > 1
    assert f.compression == PYARROW_CODEC[codec]
    assert f.file_version == "0.12"
    got = f.read()
    assert got.column_names == expected.column_names
    for name in expected.column_names:
        want, have = column_values(expected.column(name)), column_values(got.column(name))
        assert want == have, (name, first_difference(want, have))


def test_pyarrow_sees_hive_types(orc_dir: Path):
    schema = po.ORCFile(orc_dir / "all_snappy.orc").schema
    t = {f.name: f.type for f in schema}
    assert t["i8"] == pa.int8() and t["i16"] == pa.int16() and t["i32"] == pa.int32()
    assert t["f32"] == pa.float32() and t["b"] == pa.bool_() and t["d"] == pa.date32()
    assert t["bin"] == pa.binary() and t["s"] == pa.string()
    assert t["dec38"] == pa.decimal128(38, 6) and t["dec"] == pa.decimal128(10, 2)
    assert pa.types.is_timestamp(t["ts_ms"]) and t["ts_ms"].tz is None
    assert pa.types.is_map(t["mp"]) and pa.types.is_list(t["lst"]) and pa.types.is_struct(t["st"])


@pytest.mark.parametrize("codec", CODECS)
def test_pyarrow_reads_ids_and_default_files(orc_dir: Path, codec: str):
    for name in (f"ids_{codec}.orc", f"ids_default_{codec}.orc"):
        t = po.read_table(orc_dir / name)
        assert t.column("id").to_pylist() == list(range(20000))
        assert t.column("name").to_pylist() == [None if i % 7 == 0 else f"name-{i:08d}" for i in range(20000)]
    expected = ipc.open_file(orc_dir / f"all_{codec}.arrow").read_all()
    got = po.read_table(orc_dir / f"all_default_{codec}.orc")
    for name in expected.column_names:
        assert column_values(expected.column(name)) == column_values(got.column(name)), name


def test_size_against_pyarrow_writer(orc_dir: Path, tmp_path: Path):
    """Reported, and bounded loosely: sluice writes no dictionary encoding, so string
    columns with few distinct values (``events``) are larger than pyarrow's."""
    lines = []
    for base in ("ids_default", "all_default", "events_default"):
        for codec in CODECS:
            ours = orc_dir / f"{base}_{codec}.orc"
            theirs = tmp_path / f"pa_{base}_{codec}.orc"
            po.write_table(po.read_table(ours), theirs, compression=PYARROW_CODEC[codec])
            a, b = ours.stat().st_size, theirs.stat().st_size
            lines.append(f"{base:12} {codec:7} sluice {a:>10} pyarrow {b:>10} ratio {a / b:.2f}")
            assert a < 2 * b, lines[-1]
    print("\n" + "\n".join(lines))


# --- pyorc ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pyorc():
    # scripts/test.sh installs pyorc: in CI a missing one is a failure, not a skip.
    if os.environ.get("CI"):
        import pyorc

        return pyorc
    return pytest.importorskip("pyorc")


def pyorc_reader(pyorc, f, **kw):
    from pyorc.converters import ORCConverter
    from pyorc.enums import StructRepr, TypeKind

    class Days(ORCConverter):
        @staticmethod
        def from_orc(days):
            return days

        @staticmethod
        def to_orc(*args):
            raise NotImplementedError

    class Nanos(ORCConverter):
        @staticmethod
        def from_orc(seconds, nanoseconds, timezone):
            return seconds * 1_000_000_000 + nanoseconds

        @staticmethod
        def to_orc(*args):
            raise NotImplementedError

    return pyorc.Reader(
        f,
        struct_repr=StructRepr.DICT,
        converters={TypeKind.DATE: Days, TypeKind.TIMESTAMP: Nanos},
        **kw,
    )


@pytest.mark.parametrize("codec", CODECS)
def test_pyorc_reads_every_type(orc_dir: Path, codec: str, pyorc):
    expected = ipc.open_file(orc_dir / f"all_{codec}.arrow").read_all()
    with open(orc_dir / f"all_{codec}.orc", "rb") as f:
        r = pyorc_reader(pyorc, f)
        assert len(r) == 9000
        assert r.format_version == (0, 12)
        rows = list(r)
    # Flat columns compare exactly (maps come back as dicts in pyorc, which merges
    # duplicate keys, so nested columns are compared through pyarrow above).
    for name in ["b", "i8", "i16", "i32", "i64", "f32", "f64", "s", "bin", "d",
                 "ts_ms", "ts_us", "ts_ns", "dec", "dec38", "dec38_0"]:
        want = column_values(expected.column(name))
        have = comparable([row[name] for row in rows])
        assert want == have, (name, first_difference(want, have))
    # Lists of structs without maps compare too.
    want = column_values(expected.column("st"))
    have = comparable([row["st"] for row in rows])
    assert [w if w is None else w["when"] for w in want] == [h if h is None else h["when"] for h in have]


@pytest.mark.parametrize("codec", CODECS)
def test_pyorc_seek_uses_the_row_index(orc_dir: Path, codec: str, pyorc):
    with open(orc_dir / f"ids_{codec}.orc", "rb") as f:
        r = pyorc.Reader(f)
        assert r.row_index_stride == 1000 and r.num_of_stripes > 1
        for target in [0, 999, 1000, 1001, 4321, 7000, 12345, 15500, 19999]:
            r.seek(target)
            assert next(r) == (target, None if target % 7 == 0 else f"name-{target:08d}"), target
    # Every type, nested, with PRESENT streams that start mid-stripe: one stripe of
    # nine row groups, so each seek starts from index positions inside the streams.
    with open(orc_dir / f"all_idx_{codec}.orc", "rb") as f:
        r = pyorc_reader(pyorc, f)
        assert r.num_of_stripes == 1 and r.row_index_stride == 1000
        rows = comparable(list(r))
        for target in list(range(0, 9000, 997)) + [1000, 1500, 5999, 6000, 8998]:
            r.seek(target)
            assert comparable(r.read(2)) == rows[target:target + 2], target


def test_pyorc_statistics(orc_dir: Path, pyorc):
    with open(orc_dir / "ids_zlib.orc", "rb") as f:
        r = pyorc.Reader(f)
        ids, names = r[1].statistics, r[2].statistics
        assert (ids["number_of_values"], ids["has_null"]) == (20000, False)
        assert (ids["minimum"], ids["maximum"], ids["sum"]) == (0, 19999, 19999 * 20000 // 2)
        nulls = sum(1 for i in range(20000) if i % 7 == 0)
        assert (names["number_of_values"], names["has_null"]) == (20000 - nulls, True)
        assert (names["minimum"], names["maximum"]) == ("name-00000001", "name-00019998")
        stripe = r.read_stripe(0)
        assert stripe[1].statistics["minimum"] == 0
        assert stripe[1].statistics["number_of_values"] == len(stripe)


# --- sluice convert --format orc ---------------------------------------------------------


def convert_orc(tmp_path: Path, lines: list[str], *extra: str) -> Path:
    schema = tmp_path / "s.toml"
    schema.write_text('[[schema]]\nname = "id"\ntype = "bigint"\n[[schema]]\nname = "ts"\ntype = "timestamp"\n')
    src = tmp_path / "in.jsonl"
    src.write_text("".join(line + "\n" for line in lines))
    out = tmp_path / "out.orc"
    proc = run_sluice(["convert", str(src), "--schema", str(schema), "--format", "orc", "-o", str(out), *extra])
    assert proc.returncode == 0, proc.stderr.decode()
    return out


@pytest.mark.parametrize("name, codec", [("gzip", "ZLIB"), ("ZLIB", "ZLIB"), ("uncompressed", "UNCOMPRESSED"), ("none", "UNCOMPRESSED"), ("zstd", "ZSTD")])
def test_convert_orc_takes_the_parquet_codec_names(tmp_path: Path, sluice_bin, name: str, codec: str):
    out = convert_orc(tmp_path, ['{"id":1}', '{"id":2}'], "--compression", name)
    f = po.ORCFile(out)
    assert f.compression == codec
    assert f.read().column("id").to_pylist() == [1, 2]


def test_daemon_config_takes_gzip_for_orc(tmp_path: Path, sluice_bin):
    config = tmp_path / "s.toml"
    config.write_text(
        'name = "s"\n[source]\ntype = "direct_put"\n[destination]\ntype = "local"\npath = "data"\n'
        '[destination.format]\ntype = "orc"\ncompression = "gzip"\n'
        '[[destination.format.schema]]\nname = "id"\ntype = "bigint"\n'
    )
    proc = run_sluice(["validate", "--config", str(config)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()


def test_convert_orc_offset_timestamps_are_utc_instants(tmp_path: Path, sluice_bin, pyorc):
    out = convert_orc(tmp_path, [
        '{"id":1,"ts":"2026-01-02T03:04:05.5+02:00"}',
        '{"id":2,"ts":"2026-01-01T19:34:05.5-05:30"}',
        '{"id":3,"ts":"2026-01-02T01:04:05.5Z"}',
    ])
    want = datetime(2026, 1, 2, 1, 4, 5, 500000)
    assert po.read_table(out).column("ts").to_pylist() == [want] * 3
    with open(out, "rb") as f:
        rows = list(pyorc_reader(pyorc, f))
    instant_ns = int(datetime(2026, 1, 2, 1, 4, 5, tzinfo=timezone.utc).timestamp()) * 10**9 + 500_000_000
    assert [r["ts"] for r in rows] == [instant_ns] * 3
