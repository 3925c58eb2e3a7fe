"""`GET /metrics`: Prometheus counters for ingest, delivery and S3 failures."""

import re
import time
import urllib.request

from conftest import native_config, put_batch_ok, write_config
from s3_support import moto_server, reset_moto, s3_native_config  # noqa: F401  (fixture)


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        return r.read().decode()


def value(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_for(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def test_ingest_and_delivery_are_counted(start_daemon, tmp_path):
    config = write_config(tmp_path / "m.toml", native_config("m", tmp_path / "out", interval_secs=1))
    daemon = start_daemon(config)
    # Every per-stream family is there at zero before the first record.
    text = metrics(daemon.port)
    for family in ("sluice_incoming_records_total", "sluice_delivery_to_s3_records_total", "sluice_pipeline_restarts_total"):
        assert value(text, family, stream="m") == 0, f"{family} missing at start:\n{text}"
    records = [f"record-{i}".encode() for i in range(25)]
    put_batch_ok(daemon.client(), "m", records)
    assert wait_for(lambda: value(metrics(daemon.port), "sluice_delivery_to_s3_records_total", stream="m") == 25)
    text = metrics(daemon.port)
    assert value(text, "sluice_incoming_records_total", stream="m") == 25
    assert value(text, "sluice_incoming_bytes_total", stream="m") == sum(len(r) for r in records)
    assert value(text, "sluice_delivery_to_s3_objects_total", stream="m") == 1
    assert "# TYPE sluice_delivery_to_s3_records_total counter" in text
    daemon.stop_ok()


def test_s3_errors_are_counted_by_code(start_daemon, tmp_path, moto_server):  # noqa: F811
    reset_moto(moto_server)  # and no bucket: every S3 call fails with NoSuchBucket
    doc = s3_native_config("nb", bucket="missing-bucket", endpoint_url=moto_server)
    daemon = start_daemon(write_config(tmp_path / "nb.toml", doc))
    # Recovery claims the stream's prefix first (PutObject of its marker); NoSuchBucket
    # needs an operator: logged with its code, counted, retried every 60 s, nothing dropped.
    assert wait_for(lambda: (value(metrics(daemon.port), "sluice_s3_errors_total", code="NoSuchBucket") or 0) >= 1)
    text = metrics(daemon.port)
    assert value(text, "sluice_s3_errors_total", code="NoSuchBucket", fault="config", operation="PutObject") >= 1
    assert wait_for(lambda: "needs an operator" in daemon.log_path.read_text()), "no operator-needed error in the log"
    assert "NoSuchBucket" in daemon.log_path.read_text()
    daemon.kill9()


def test_metrics_after_a_known_workload(start_daemon, tmp_path):
    """A transform (filter) and Parquet conversion on a known mix of records: every
    Firehose-named family has the value the workload implies, what is held shows while
    the epoch is open (freshness ageing), and drops to zero once delivered."""
    import json

    from conftest import wasm_component
    from test_transforms import toml_stream

    out = tmp_path / "out"
    text = toml_stream("known", out, [{"module": str(wasm_component("filter")),
                                      "config": {"drop_if_field": "level", "equals": "debug"}}],
                       interval_secs=6)
    text = text.replace('append_delimiter = true', 'append_delimiter = true\ncompression = "uncompressed"')
    text += ('[destination.format]\ntype = "parquet"\n'
             '[[destination.format.schema]]\nname = "level"\ntype = "string"\n'
             '[[destination.format.schema]]\nname = "n"\ntype = "int"\n')
    daemon = start_daemon(write_config(tmp_path / "known.toml", text))
    good = [json.dumps({"level": "info", "n": i}).encode() for i in range(30)]
    debug = [json.dumps({"level": "debug", "n": i}).encode() for i in range(10)]
    unfit = [json.dumps({"level": "info", "n": f"not a number {i}"}).encode() for i in range(5)]
    not_json = [f"plain text {i}".encode() for i in range(3)]
    first, second = good[:20] + debug + not_json, good[20:] + unfit
    t_put = time.time()
    put_batch_ok(daemon.client(), "known", first)
    put_batch_ok(daemon.client(), "known", second)
    everything = first + second

    def m(name, **labels):
        return value(metrics(daemon.port), name, stream="known", **labels)

    # Read and held, not delivered: the epoch closes 6 s after its first record.
    assert wait_for(lambda: m("sluice_buffered_records") == len(everything), timeout=4), metrics(daemon.port)
    page = metrics(daemon.port)
    assert value(page, "sluice_buffered_bytes", stream="known") == sum(len(r) + 1 for r in everything)  # delimiters
    assert value(page, "sluice_delivery_to_s3_records_total", stream="known") == 0
    fresh = value(page, "sluice_delivery_to_s3_data_freshness_seconds", stream="known")
    assert 0 < fresh <= time.time() - t_put + 1, fresh
    assert value(page, "sluice_wal_bytes", stream="known") > sum(map(len, everything))

    assert wait_for(lambda: m("sluice_delivery_to_s3_records_total") == len(everything), timeout=30)
    page = metrics(daemon.port)
    expect = {
        "sluice_incoming_records_total": len(everything),
        "sluice_incoming_bytes_total": sum(map(len, everything)),
        "sluice_incoming_put_requests_total": 2,
        "sluice_delivery_to_s3_bytes_total": sum(len(r) + 1 for r in everything),  # with the delimiter
        # One Parquet object, one processing-failed and one format-conversion-failed.
        "sluice_delivery_to_s3_objects_total": 3,
        # Kept and dropped records succeed; records that are not JSON fail in the filter.
        "sluice_succeed_processing_records_total": len(good) + len(debug) + len(unfit),
        "sluice_succeed_processing_bytes_total": sum(map(len, good + unfit)),
        "sluice_succeed_conversion_records_total": len(good),
        "sluice_succeed_conversion_bytes_total": sum(map(len, good)),
        "sluice_failed_conversion_records_total": len(unfit),
        "sluice_failed_conversion_bytes_total": sum(map(len, unfit)),
        "sluice_buffered_records": 0,
        "sluice_buffered_bytes": 0,
        "sluice_delivery_to_s3_data_freshness_seconds": 0,
        "sluice_stream_up": 1,
    }
    got = {name: value(page, name, stream="known") for name in expect}
    assert got == expect, page
    assert value(page, "sluice_error_records_total", stream="known", type="processing-failed") == len(not_json)
    assert value(page, "sluice_error_records_total", stream="known", type="format-conversion-failed") == len(unfit)
    # Released once delivered (the log keeps at most its open segment's header).
    assert wait_for(lambda: m("sluice_wal_bytes") < sum(map(len, everything)), timeout=10), metrics(daemon.port)
    daemon.stop_ok()
