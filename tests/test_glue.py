"""Record format conversion with the schema read from a Glue table (moto's Glue API).

The daemon reads the table's columns at start-up (Firehose's `SchemaConfiguration`), converts
JSON records to Parquet, and routes records that do not fit to `format-conversion-failed`.
Outputs are read back with pyarrow and DuckDB.
"""

import json
from pathlib import Path

import boto3
import duckdb
import pyarrow.parquet as pq

from conftest import firehose_config, put_batch_ok, write_config
from s3_support import moto_server, reset_moto  # noqa: F401  (fixture)

COLUMNS = [
    {"Name": "id", "Type": "bigint"},
    {"Name": "name", "Type": "string"},
    {"Name": "price", "Type": "decimal(10,2)"},
    {"Name": "tags", "Type": "array<string>"},
    {"Name": "dims", "Type": "struct<w:int,h:int>"},
]


def create_table(url: str) -> None:
    glue = boto3.client("glue", endpoint_url=url, region_name="us-east-1")
    glue.create_database(DatabaseInput={"Name": "shop"})
    glue.create_table(
        DatabaseName="shop",
        TableInput={"Name": "orders", "StorageDescriptor": {"Columns": COLUMNS}},
    )


def test_glue_schema_firehose_shape(start_daemon, tmp_path, moto_server, monkeypatch):  # noqa: F811
    reset_moto(moto_server)
    create_table(moto_server)
    # The Firehose shape has no endpoint field: the standard variable applies.
    monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", moto_server)
    out = tmp_path / "out"
    doc = firehose_config("conv", out, size_mib=64, interval_secs=60, append_delimiter=False)
    d = doc["ExtendedS3DestinationConfiguration"]
    d["ErrorOutputPrefix"] = "errors/!{firehose:error-output-type}/"
    d["Prefix"] = "data/"
    d["DataFormatConversionConfiguration"] = {
        "Enabled": True,
        "SchemaConfiguration": {"DatabaseName": "shop", "TableName": "orders", "Region": "us-east-1",
                                "RoleARN": "arn:aws:iam::123456789012:role/firehose"},
        "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
        "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": "SNAPPY"}}},
    }
    config = write_config(tmp_path / "conv.json", doc)
    daemon = start_daemon(config)
    good = [
        {"id": 1, "name": "tea", "price": "3.50", "tags": ["hot"], "dims": {"w": 1, "h": 2}},
        {"id": 2, "name": "Ünïcode ☕", "price": 12.25, "tags": [], "dims": None},
        {"ID": 3, "NAME": "case", "tags": None},
    ]
    bad = [b'{"id": "not a number"}', b"not json at all", b'{"id": 4, "price": 123456789012.5}']
    put_batch_ok(daemon.client(), "conv", [json.dumps(r).encode() for r in good] + bad)
    daemon.stop_ok()

    data = [p for p in (out / "data").rglob("*") if p.is_file()]
    assert len(data) == 1 and data[0].name.endswith(".parquet"), data
    table = pq.read_table(data[0])
    assert table.column_names == [c["Name"] for c in COLUMNS]
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[0]["name"] == "tea" and str(rows[0]["price"]) == "3.50"
    assert rows[0]["dims"] == {"w": 1, "h": 2} and rows[0]["tags"] == ["hot"]
    assert rows[1]["name"] == "Ünïcode ☕" and rows[1]["tags"] == [] and rows[1]["dims"] is None
    assert rows[2]["name"] == "case" and rows[2]["price"] is None
    # An independent reader agrees.
    got = duckdb.sql(f"SELECT id, name, CAST(price AS VARCHAR) FROM read_parquet('{data[0]}') ORDER BY id").fetchall()
    assert got == [(1, "tea", "3.50"), (2, "Ünïcode ☕", "12.25"), (3, "case", None)]

    errors = [p for p in (out / "errors").rglob("*") if p.is_file()]
    assert {p.parts[-6] for p in errors} == {"format-conversion-failed"}, errors
    docs = [json.loads(line) for p in errors for line in p.read_text().splitlines()]
    import base64

    assert sorted(base64.b64decode(d["rawData"]) for d in docs) == sorted(bad)
    assert all(d["lastErrorCode"] and d["lastErrorMessage"] for d in docs)


def test_missing_glue_table_is_a_clear_startup_error(tmp_path, moto_server, sluice_bin, monkeypatch):  # noqa: F811
    import subprocess

    reset_moto(moto_server)
    native = f"""
name = "conv"
[source]
type = "direct_put"
[destination]
type = "local"
path = "{tmp_path / 'out'}"
[destination.format]
type = "orc"
[destination.format.glue]
database = "nope"
table = "missing"
endpoint_url = "{moto_server}"
"""
    config = write_config(tmp_path / "conv.toml", native)
    proc = subprocess.run(
        [str(sluice_bin), "run", "--config", str(config), "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "st")],
        capture_output=True, timeout=60,
    )
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert "Glue table nope.missing" in err and "EntityNotFound" in err, err[-2000:]
