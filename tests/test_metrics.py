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
    for family in ("sluice_incoming_records_total", "sluice_delivered_records_total", "sluice_pipeline_restarts_total"):
        assert value(text, family, stream="m") == 0, f"{family} missing at start:\n{text}"
    records = [f"record-{i}".encode() for i in range(25)]
    put_batch_ok(daemon.client(), "m", records)
    assert wait_for(lambda: value(metrics(daemon.port), "sluice_delivered_records_total", stream="m") == 25)
    text = metrics(daemon.port)
    assert value(text, "sluice_incoming_records_total", stream="m") == 25
    assert value(text, "sluice_incoming_bytes_total", stream="m") == sum(len(r) for r in records)
    assert value(text, "sluice_delivered_objects_total", stream="m") == 1
    assert "# TYPE sluice_delivered_records_total counter" in text
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
