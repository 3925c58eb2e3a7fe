"""Every compression format, read back by an independent decoder (gzip, zipfile, cramjam
snappy framed / raw + a Python Hadoop block parser, cramjam zstd)."""

from __future__ import annotations

import random

import pytest

from conftest import (
    COMPRESSIONS,
    DEFAULT_EXT,
    assert_exactly_once,
    firehose_config,
    json_records,
    native_config,
    put_batch_ok,
    read_delivered,
    write_config,
)

FIREHOSE_FORMATS = {
    "UNCOMPRESSED": "uncompressed",
    "GZIP": "gzip",
    "ZIP": "zip",
    "Snappy": "snappy",
    "HADOOP_SNAPPY": "hadoop_snappy",
}


def mixed_records(tag: str, n: int) -> list[bytes]:
    """JSON records, part compressible padding, part random text (so blocks/frames vary)."""
    rng = random.Random(n)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 "
    recs = json_records(tag, range(n), pad=200)
    return [r[:-1] + b',"r":"' + "".join(rng.choices(alphabet, k=rng.randrange(0, 400))).encode() + b'"}' for r in recs]


def send_all(client, stream: str, recs: list[bytes]) -> None:
    for i in range(0, len(recs), 500):
        put_batch_ok(client, stream, recs[i : i + 500])


def check_raw_is_encoded(out, keys, compression) -> None:
    if compression == "uncompressed":
        return
    for key in keys:
        raw = (out / key).read_bytes()
        assert not raw.startswith(b'{"t"'), f"{key} looks uncompressed"
        if compression == "hadoop_snappy":
            block = int.from_bytes(raw[:4], "big")
            assert 0 < block <= 1 << 20, f"{key}: implausible Hadoop block length {block}"


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_native_compression(tmp_path, start_daemon, compression):
    out = tmp_path / "out"
    cfg = write_config(
        tmp_path / "c.toml", native_config("comp", out, compression=compression, size_bytes=1048576, interval_secs=1)
    )
    d = start_daemon(cfg)
    recs = mixed_records(compression, 6000)  # ~3 MB: several objects, each > 64 KiB
    send_all(d.client(), "comp", recs)
    d.stop_ok()
    got = read_delivered(out, stream="comp", compression=compression)
    assert got.keys
    for key in got.keys:
        ext = DEFAULT_EXT[compression]
        if ext:
            assert key.endswith(ext), key
        else:
            assert "." not in key.rsplit("/", 1)[-1], f"uncompressed object with an extension: {key}"
    check_raw_is_encoded(out, got.keys, compression)
    assert_exactly_once(got.records, recs)
    assert len(got.keys) >= 2, f"expected several objects for ~3 MB at 1 MiB buffers: {got.keys}"


@pytest.mark.parametrize("fh_format", list(FIREHOSE_FORMATS))
def test_firehose_shape_compression(tmp_path, start_daemon, fh_format):
    compression = FIREHOSE_FORMATS[fh_format]
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "fh.json", firehose_config("fh", out, compression=fh_format))
    d = start_daemon(cfg)
    recs = mixed_records(fh_format, 1500)
    send_all(d.client(), "fh", recs)
    desc = d.client().describe_delivery_stream(DeliveryStreamName="fh")["DeliveryStreamDescription"]
    assert desc["DeliveryStreamName"] == "fh" and desc["DeliveryStreamType"] == "DirectPut"
    d.stop_ok()
    got = read_delivered(out, stream="fh", compression=compression)
    assert got.keys
    check_raw_is_encoded(out, got.keys, compression)
    assert_exactly_once(got.records, recs)


def test_custom_file_extension_native(tmp_path, start_daemon):
    out = tmp_path / "out"
    cfg = write_config(
        tmp_path / "c.toml", native_config("ext", out, compression="zstd", file_extension=".json.zst")
    )
    d = start_daemon(cfg)
    recs = mixed_records("ext", 500)
    send_all(d.client(), "ext", recs)
    d.stop_ok()
    got = read_delivered(out, stream="ext", compression="zstd", ext=".json.zst")
    assert_exactly_once(got.records, recs)


def test_firehose_shape_prefix_and_extension(tmp_path, start_daemon):
    out = tmp_path / "out"
    doc = firehose_config(
        "fhx",
        out,
        compression="GZIP",
        Prefix="fh/!{timestamp:yyyy}/",
        ErrorOutputPrefix="fh-errors/!{firehose:error-output-type}/",
        FileExtension=".jsonl.gz",
    )
    cfg = write_config(tmp_path / "fhx.json", doc)
    d = start_daemon(cfg)
    recs = mixed_records("fhx", 700)
    send_all(d.client(), "fhx", recs)
    d.stop_ok()
    got = read_delivered(out, stream="fhx", compression="gzip", ext=".jsonl.gz", prefix_re=r"fh/\d{4}/")
    assert_exactly_once(got.records, recs)


def test_firehose_shape_without_delimiter_processor(tmp_path, start_daemon):
    """Without AppendDelimiterToRecord, records are concatenated as they are (Firehose's
    default); records that carry their own newline come back line by line."""
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "nd.json", firehose_config("nd", out, append_delimiter=False))
    d = start_daemon(cfg)
    recs = json_records("nd", range(400))
    send_all(d.client(), "nd", [r + b"\n" for r in recs])
    d.stop_ok()
    got = read_delivered(out, stream="nd", compression="uncompressed")
    assert_exactly_once(got.records, recs)
