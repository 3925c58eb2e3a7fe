"""`sluice convert` (JSON Lines -> Parquet) and `sluice schema discover`, checked with
independent readers: pyarrow and DuckDB. Fixtures are in tests/fixtures/convert/.
ORC output of `sluice convert` is checked in test_orc.py."""

from __future__ import annotations

import base64
import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from conftest import run_sluice

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "convert"
SCHEMA = FIXTURES / "schema.toml"


def convert(tmp_path: Path, *inputs: Path, extra: list[str] | None = None, rc: int = 0, schema: Path = SCHEMA) -> tuple[Path, list[dict], str]:
    out = tmp_path / "out.parquet"
    proc = run_sluice(["convert", *map(str, inputs), "--schema", str(schema), "-o", str(out), *(extra or [])])
    assert proc.returncode == rc, proc.stderr.decode()
    errors_file = Path(str(out) + ".errors.jsonl")
    errors = [json.loads(line) for line in errors_file.read_text().splitlines()] if errors_file.exists() else []
    return out, errors, proc.stderr.decode()


def duck_rows(path: Path, columns: str = "*") -> list[tuple]:
    con = duckdb.connect()
    try:
        return con.execute(f"SELECT {columns} FROM read_parquet('{path}') ORDER BY id").fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("compression", ["snappy", "gzip", "zstd", "uncompressed"])
def test_good_records_read_back_with_pyarrow_and_duckdb(tmp_path, sluice_bin, compression):
    out, errors, stderr = convert(tmp_path, FIXTURES / "good.jsonl", extra=["--compression", compression])
    assert errors == [], stderr
    assert "converted 7 of 7 records" in stderr
    meta = pq.ParquetFile(out).metadata
    codec = meta.row_group(0).column(0).compression
    assert codec == {"snappy": "SNAPPY", "gzip": "GZIP", "zstd": "ZSTD", "uncompressed": "UNCOMPRESSED"}[compression]

    rows = {r["id"]: r for r in pq.read_table(out).to_pylist()}
    assert sorted(rows) == [-(2**63), 1, 2, 5, 6, 7, 8, 2**63 - 1]
    r1 = rows[1]
    assert r1["name"] == "plain" and r1["small"] == -128 and r1["ratio"] == 0.5
    assert r1["price"] == Decimal("12.34") and r1["ok"] is True
    assert r1["day"] == date(2024, 2, 29)
    assert r1["ts"] == datetime(2017, 2, 7, 15, 13, 1, 392000)
    assert r1["tags"] == ["a", "b"]
    assert dict(r1["attrs"]) == {"x": 1, "y": -2}
    assert r1["user"] == {"first": "Ann", "age": 31, "addr": {"city": "Oslo", "zip": "0150"}}
    r2 = rows[2]  # keys matched case-insensitively; unicode; extremes; empties
    assert r2["name"] == "日本語 – ünïcødé 😀"
    assert r2["small"] == 127 and r2["ratio"] == 1e308
    assert r2["price"] == Decimal("99999999.99")
    assert r2["day"] == date(1969, 12, 31)
    assert r2["ts"] == datetime(2017, 2, 7, 15, 13, 1, 500000)
    assert r2["tags"] == [] and list(r2["attrs"]) == []
    assert r2["user"] == {"first": None, "age": None, "addr": None}
    r3 = rows[2**63 - 1]
    assert r3["name"] == 'esc "q" \\ \n tab\t'
    assert r3["ratio"] == 0.0 and str(r3["ratio"]) == "-0.0"
    assert r3["price"] == Decimal("-0.01")  # half-up, away from zero
    assert r3["ts"] == datetime(2017, 2, 7, 15, 13, 1)  # epoch seconds
    assert r3["tags"] == [None, "z"] and r3["user"] is None and r3["ok"] is None
    r4 = rows[-(2**63)]
    assert r4["name"] is None and r4["price"] == Decimal("0.00")
    assert r4["ts"] == datetime(2017, 2, 7, 15, 13, 1, 123000)  # epoch millis
    assert rows[5] == {**{k: None for k in r1}, "id": 5}
    r6 = rows[6]  # OpenX coerces numeric strings; varchar(5) truncates
    assert r6["ts"] == datetime(2017, 2, 7, 15, 13, 1, 250000)
    assert (r6["price"], r6["small"], r6["ratio"]) == (Decimal("7.00"), 12, 2.5)
    assert r6["user"]["addr"] == {"city": None, "zip": "12345"}

    # DuckDB agrees.
    duck = duck_rows(out, "id, name, price, ts, tags, attrs, user.addr.city, day")
    assert duck[0][0] == -(2**63)
    by_id = {r[0]: r for r in duck}
    assert by_id[1] == (1, "plain", Decimal("12.34"), datetime(2017, 2, 7, 15, 13, 1, 392000), ["a", "b"], {"x": 1, "y": -2}, "Oslo", date(2024, 2, 29))
    assert by_id[2][1] == "日本語 – ünïcødé 😀" and by_id[2][4] == [] and by_id[2][5] == {}
    assert by_id[2**63 - 1][2] == Decimal("-0.01")
    assert by_id[8][1:] == (None,) * 7


def test_bad_records_land_in_the_errors_file(tmp_path, sluice_bin):
    out, errors, stderr = convert(tmp_path, FIXTURES / "bad.jsonl", extra=["--max-errors", "14"])
    lines = (FIXTURES / "bad.jsonl").read_bytes().splitlines()
    expected = {
        2: "InvalidValue",
        3: "TypeMismatch",
        4: "ValueOutOfRange",
        5: "ValueOutOfRange",
        6: "InvalidTimestamp",
        7: "InvalidTimestamp",
        8: "TypeMismatch",
        9: "ValueOutOfRange",
        10: "InvalidValue",
        11: "InvalidValue",
        12: "MalformedData",
        13: "MalformedData",
        14: "MalformedData",
        15: "InvalidValue",
    }
    assert len(errors) == len(expected)
    for doc, (line_no, code) in zip(errors, sorted(expected.items())):
        assert set(doc) == {"attemptsMade", "arrivalTimestamp", "lastErrorCode", "lastErrorMessage", "attemptEndingTimestamp", "rawData"}
        assert doc["attemptsMade"] == 1
        assert doc["lastErrorCode"] == f"DataFormatConversion.{code}", (line_no, doc)
        assert base64.b64decode(doc["rawData"]) == lines[line_no - 1]
        assert doc["attemptEndingTimestamp"] >= doc["arrivalTimestamp"] > 1_600_000_000_000
        assert f"bad.jsonl:{line_no}: DataFormatConversion.{code}" in stderr
    assert "column `user.age`" in errors[7]["lastErrorMessage"]
    # None lost: good + bad = records; only whole records are kept.
    ids = [r["id"] for r in pq.read_table(out).to_pylist()]
    assert ids == [100, 111]
    assert f"converted 2 of {len(lines)} records" in stderr and f"{len(expected)} failed" in stderr
    assert [r[0] for r in duck_rows(out, "id")] == [100, 111]


def test_several_inputs_and_many_row_groups(tmp_path, sluice_bin):
    big = tmp_path / "big.jsonl"
    with big.open("w") as f:
        for i in range(30_000):
            f.write(json.dumps({"id": i, "name": f"n{i:06d}" * 5, "tags": [str(i)], "price": f"{i}.5"}) + "\n")
    out, errors, _ = convert(tmp_path, FIXTURES / "good.jsonl", big, extra=["--block-size-bytes", str(256 * 1024)])
    assert errors == []
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == 30_008 and meta.num_row_groups > 2
    con = duckdb.connect()
    (n, total, price) = con.execute(f"SELECT count(*), sum(id), max(price) FROM read_parquet('{out}') WHERE id BETWEEN 0 AND 29999").fetchone()
    con.close()
    # good.jsonl's ids 1, 2, 5, 6, 7, 8 are in range too.
    assert (n, total) == (30_006, sum(range(30_000)) + 1 + 2 + 5 + 6 + 7 + 8)
    assert price == Decimal("99999999.99")


def test_hive_deserializer_is_strict(tmp_path, sluice_bin):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id":1,"ts":"2017-02-07 15:13:01"}\n{"id":"2"}\n{"id":3,"ts":"07/02/2017 15:13"}\n{"id":4,"ts":1486480381123}\n')
    out, errors, _ = convert(tmp_path, src, rc=1, extra=["--deserializer", "hive", "--timestamp-format", "dd/MM/yyyy HH:mm", "--timestamp-format", "millis"])
    assert [e["lastErrorCode"] for e in errors] == ["DataFormatConversion.TypeMismatch"]
    rows = {r["id"]: r["ts"] for r in pq.read_table(out).to_pylist()}
    assert rows == {1: datetime(2017, 2, 7, 15, 13, 1), 3: datetime(2017, 2, 7, 15, 13), 4: datetime(2017, 2, 7, 15, 13, 1, 123000)}


def test_invalid_schema_and_missing_input_exit_codes(tmp_path, sluice_bin):
    bad_schema = tmp_path / "s.toml"
    bad_schema.write_text('[[schema]]\nname = "when"\ntype = "timestmp"\n')
    proc = run_sluice(["convert", str(FIXTURES / "good.jsonl"), "--schema", str(bad_schema), "-o", str(tmp_path / "o.parquet")])
    assert proc.returncode == 2 and b"column `when`" in proc.stderr
    proc = run_sluice(["convert", str(tmp_path / "missing.jsonl"), "--schema", str(SCHEMA), "-o", str(tmp_path / "o.parquet")])
    assert proc.returncode == 1 and b"missing.jsonl" in proc.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_schema_discover_round_trips_through_convert(tmp_path, sluice_bin):
    proc = run_sluice(["schema", "discover", str(FIXTURES / "good.jsonl")])
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    schema = tmp_path / "discovered.toml"
    schema.write_text(text)
    types = dict(zip(
        [l.split(" = ")[1].strip('"') for l in text.splitlines() if l.startswith("name")],
        [l.split(" = ")[1].strip('"') for l in text.splitlines() if l.startswith("type")],
    ))
    assert types["id"] == "bigint" and types["ts"] == "string" and types["tags"] == "array<string>"
    assert types["price"] == types["ratio"] == "string"  # numbers and strings conflict
    assert types["day"] == "string" and types["ok"] == "boolean"
    assert types["user"].startswith("struct<") and types["extra"] == "struct<ignored:array<bigint>>"
    out = tmp_path / "o.parquet"
    proc = run_sluice(["convert", str(FIXTURES / "good.jsonl"), "--schema", str(schema), "-o", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert pq.ParquetFile(out).metadata.num_rows == 8
    proc = run_sluice(["schema", "discover", "--max-records", "1", str(FIXTURES / "good.jsonl")])
    assert b"inferred from 1 records" in proc.stderr


def test_failed_records_exit_1_unless_max_errors_allows_them(tmp_path, sluice_bin):
    bad = FIXTURES / "bad.jsonl"  # 2 good records, 14 bad ones
    for extra, rc in [([], 1), (["--max-errors", "13"], 1), (["--max-errors", "14"], 0), (["--max-errors", "100"], 0)]:
        out, errors, stderr = convert(tmp_path, bad, extra=extra, rc=rc)
        assert len(errors) == 14
        errors_file = f"{out}.errors.jsonl"
        assert f"converted 2 of 16 records to {out}; 14 failed (error documents in {errors_file})" in stderr
        # Too many failures is an error, but the good records are kept.
        assert ("more than --max-errors" in stderr) == (rc == 1), stderr
        assert pq.read_table(out).column("id").to_pylist() == [100, 111]
    _, errors, stderr = convert(tmp_path, FIXTURES / "good.jsonl")
    assert errors == [] and "; 0 failed" in stderr


def timestamp_schema(tmp_path: Path) -> Path:
    schema = tmp_path / "ts.toml"
    schema.write_text('[[schema]]\nname = "id"\ntype = "bigint"\n[[schema]]\nname = "ts"\ntype = "timestamp"\n')
    return schema


def test_offset_timestamps_are_stored_as_utc(tmp_path, sluice_bin):
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"id":1,"ts":"2026-01-02T03:04:05+02:00"}\n'
        '{"id":2,"ts":"2026-01-01T23:34:05.250-05:30"}\n'
        '{"id":3,"ts":"2026-01-02T01:04:05Z"}\n'
        '{"id":4,"ts":"2026-01-02T03:04:05+0200"}\n'
    )
    out, errors, _ = convert(tmp_path, src, schema=timestamp_schema(tmp_path), rc=1)
    assert [e["lastErrorCode"] for e in errors] == ["DataFormatConversion.InvalidTimestamp"]  # OpenX wants ±HH:MM
    utc = datetime(2026, 1, 2, 1, 4, 5)
    rows = {r["id"]: r["ts"] for r in pq.read_table(out).to_pylist()}
    assert rows == {1: utc, 2: datetime(2026, 1, 2, 5, 4, 5, 250000), 3: utc}
    con = duckdb.connect()
    try:
        epochs = con.execute(f"SELECT id, epoch_ms(ts) FROM read_parquet('{out}') ORDER BY id").fetchall()
    finally:
        con.close()
    instant = int(datetime(2026, 1, 2, 1, 4, 5, tzinfo=timezone.utc).timestamp() * 1000)
    assert epochs == [(1, instant), (2, instant + 4 * 3600_000 + 250), (3, instant)]


def test_discover_keeps_first_seen_order_and_infers_maps(tmp_path, sluice_bin):
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"zeta":1,"Counts":{"a":1},"user":{"name":"x","age":3},"seen":"2026-01-02T03:04:05+02:00"}\n'
        '{"alpha":true,"counts":{"zz":2,"q":5},"user":{"name":"y","city":"Oslo"},"zeta":2}\n'
    )
    proc = run_sluice(["schema", "discover", str(src)])
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    names = [l.split(" = ")[1].strip('"') for l in text.splitlines() if l.startswith("name")]
    types = [l.split(" = ")[1].strip('"') for l in text.splitlines() if l.startswith("type")]
    assert list(zip(names, types)) == [
        ("zeta", "bigint"),
        ("counts", "map<string,bigint>"),
        ("user", "struct<name:string,age:bigint,city:string>"),
        ("seen", "timestamp"),
        ("alpha", "boolean"),
    ]
    schema = tmp_path / "discovered.toml"
    schema.write_text(text)
    out, errors, _ = convert(tmp_path, src, schema=schema)
    assert errors == []
    table = pq.read_table(out)
    assert table.column_names == names
    rows = table.to_pylist()
    assert [dict(r["counts"]) for r in rows] == [{"a": 1}, {"zz": 2, "q": 5}]
    assert rows[0]["seen"] == datetime(2026, 1, 2, 1, 4, 5)
    con = duckdb.connect()
    try:
        got = con.execute(f"SELECT zeta, counts['q'], user.city FROM read_parquet('{out}') ORDER BY zeta").fetchall()
    finally:
        con.close()
    assert got == [(1, None, None), (2, 5, "Oslo")]


DAEMON_CONFIG = """
name = "clicks"
[source]
type = "direct_put"
[destination]
type = "local"
path = "data"
[destination.format]
type = "parquet"
column_to_json_key_mappings = { ts = "event.time", user_id = "uid" }
[[destination.format.schema]]
name = "ts"
type = "timestamp"
[[destination.format.schema]]
name = "user_id"
type = "bigint"
"""


def test_schema_from_a_daemon_config_uses_its_key_mappings(tmp_path, sluice_bin):
    config = tmp_path / "clicks.toml"
    config.write_text(DAEMON_CONFIG)
    src = tmp_path / "in.jsonl"
    src.write_text('{"event.time":"2026-01-02T03:04:05+02:00","uid":7,"user_id":99}\n')
    out, errors, _ = convert(tmp_path, src, schema=config, extra=["--compression", "zlib"])
    assert errors == []
    assert pq.read_table(out).to_pylist() == [{"ts": datetime(2026, 1, 2, 1, 4, 5), "user_id": 7}]
    assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == "GZIP"
    # --map-key overrides one mapping; the other stays.
    out, errors, _ = convert(tmp_path, src, schema=config, extra=["--map-key", "user_id=user_id"])
    assert pq.read_table(out).to_pylist() == [{"ts": datetime(2026, 1, 2, 1, 4, 5), "user_id": 99}]
    # Contradicting or inapplicable flags are refused, not ignored.
    for extra in (["--deserializer", "hive"], ["--timestamp-format", "millis"]):
        proc = run_sluice(["convert", str(src), "--schema", str(config), "-o", str(tmp_path / "x.parquet"), *extra])
        assert proc.returncode == 2, proc.stderr
    # A config that does not validate names its option.
    config.write_text(DAEMON_CONFIG.replace('type = "parquet"', 'type = "parquet"\ncompression = "lz4"'))
    proc = run_sluice(["convert", str(src), "--schema", str(config), "-o", str(tmp_path / "x.parquet")])
    assert proc.returncode == 2 and b"destination.format.compression" in proc.stderr, proc.stderr


def test_help_tells_the_truth(sluice_bin):
    text = run_sluice(["convert", "--help"]).stdout.decode()
    assert "Parquet or ORC" in text and "daemon stream config" in text and "--max-errors" in text
    assert "gzip (= zlib)" in text
