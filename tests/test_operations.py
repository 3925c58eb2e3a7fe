"""Operating sluice: systemd's notify protocol and watchdog, health and readiness,
and a stream whose bucket is missing failing alone, visibly, then healing.

systemd is not PID 1 here, so its side of `Type=notify` is played by a Unix datagram
socket in the test (`NOTIFY_SOCKET`), which is all sd_notify(3) talks to; the watchdog
interval is given as systemd gives it (`WATCHDOG_USEC`). A wedged pipeline is the
`wedge_buffer=SECS` failpoint: the buffer's worker blocks for SECS seconds once.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

from conftest import (
    assert_exactly_once,
    firehose_client,
    native_config,
    put_batch_ok,
    read_delivered,
    wait_until,
    write_config,
)
from s3_support import moto_server, reset_moto, s3_client, s3_native_config  # noqa: F401
from test_transforms import data_records


class NotifySocket:
    """systemd's end of $NOTIFY_SOCKET: every datagram, with its arrival time."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def times(self, line: str) -> list[float]:
        return [t for t, m in list(self.messages) if m == line]

    def lines(self, start: str) -> list[str]:
        return [m for _, m in list(self.messages) if m.startswith(start)]

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_notify_ready_watchdog_follows_the_pipeline_and_stopping(tmp_path, start_daemon, monkeypatch):
    """READY=1 once the stream has recovered (and /readyz says ready), with a STATUS line;
    WATCHDOG=1 every third of the interval while the pipeline ticks, none while its
    buffer is wedged (and /healthz is unchanged: it allows more), pings again after;
    STOPPING=1 on SIGTERM; every record delivered."""
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
        monkeypatch.setenv("WATCHDOG_USEC", "3000000")  # 3 s: pings every 1 s, silence allowed 1.5 s
        monkeypatch.setenv("SLUICE_FAILPOINTS", "wedge_buffer=5")
        out = tmp_path / "out"
        cfg = write_config(tmp_path / "n.toml", native_config("n", out, interval_secs=1))
        d = start_daemon(cfg)
        wait_until(lambda: notify.times("READY=1"), 20, "READY=1")
        assert get(f"{d.endpoint}/readyz") == (200, {"ready": True, "streams": [{"stream": "n", "state": "active", "origin": "config-file"}]})
        assert any("1 of 1 streams active" in s for s in notify.lines("STATUS=")), notify.messages
        wait_until(lambda: len(notify.times("WATCHDOG=1")) >= 3, 10, "three watchdog pings")

        # The first batch wedges the buffer for 5 s: pings stop, then resume.
        client = firehose_client(d.endpoint)
        sent = [json.dumps({"n": i}).encode() for i in range(100)]
        put_batch_ok(client, "n", sent)
        wedged_at = time.monotonic()
        wait_until(lambda: "failpoint wedge_buffer hit" in d.log_path.read_text(), 10, "the wedge")
        wait_until(lambda: [t for t in notify.times("WATCHDOG=1") if t > wedged_at + 5.5], 15, "pings after the wedge")
        pings = notify.times("WATCHDOG=1")
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        before = [b - a for a, b in zip(pings, pings[1:]) if b < wedged_at]
        assert max(before) < 1.6, f"pings while healthy came {before} s apart"
        assert max(gaps) > 3.0, f"pings did not stop while the pipeline was wedged: gaps {gaps}"
        log = d.log_path.read_text()
        assert "has not made progress; no watchdog ping until it does" in log
        assert "watchdog pings resume" in log
        assert get(f"{d.endpoint}/healthz")[0] == 200

        d.stop_ok()
        assert notify.times("STOPPING=1"), notify.messages
        assert notify.times("READY=1")[0] < notify.times("STOPPING=1")[0]
        assert data_records(out) == {r: 1 for r in sent}
    finally:
        notify.close()


def test_a_missing_bucket_fails_one_stream_visibly_then_heals(tmp_path, start_daemon, moto_server, monkeypatch):
    """One stream delivers to a bucket that does not exist, the other to a local
    directory. The process starts (READY), the local stream delivers, /readyz and
    DescribeDeliveryStream name the failing stream and why; puts to it are still
    acknowledged (its log holds them). Once the bucket exists it heals at the next
    operator retry and delivers everything exactly once."""
    reset_moto(moto_server)
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
        bucket = f"late-bucket-{int(time.time() * 1000) % 10**9}"
        s3cfg = write_config(tmp_path / "s3.toml", s3_native_config("remote", bucket=bucket, endpoint_url=moto_server))
        localcfg = write_config(tmp_path / "local.toml", native_config("local", tmp_path / "out"))
        d = start_daemon([s3cfg, localcfg], extra_args=["--operator-retry-secs", "2"])
        client = firehose_client(d.endpoint)

        wait_until(lambda: notify.times("READY=1"), 30, "READY=1 with one stream failing")
        code, ready = get(f"{d.endpoint}/readyz")
        assert code == 503, ready
        streams = {s["stream"]: s for s in ready["streams"]}
        assert streams["local"]["state"] == "active"
        assert streams["remote"]["state"] == "failing", streams
        assert "NoSuchBucket" in streams["remote"]["reason"] and streams["remote"]["fault"] == "config", streams
        # READY's status line: sent once no stream was starting, the remote one failing.
        assert any("1 of 2 streams active, 1 failing (remote: S3" in s for s in notify.lines("STATUS=")), notify.messages
        desc = client.describe_delivery_stream(DeliveryStreamName="remote")["DeliveryStreamDescription"]
        assert desc["DeliveryStreamStatus"] == "ACTIVE"
        assert "NoSuchBucket" in desc["FailureDescription"]["Details"], desc.get("FailureDescription")
        assert "FailureDescription" not in client.describe_delivery_stream(DeliveryStreamName="local")["DeliveryStreamDescription"]
        assert get(f"{d.endpoint}/healthz")[0] == 200, "a failing stream that retries is alive"

        remote = [json.dumps({"remote": i}).encode() for i in range(300)]
        local = [json.dumps({"local": i}).encode() for i in range(300)]
        put_batch_ok(client, "remote", remote)
        put_batch_ok(client, "local", local)
        wait_until(lambda: sum(read_delivered(tmp_path / "out").records.values()) >= 300, 30, "the local stream delivering")

        s3 = s3_client(moto_server)
        s3.create_bucket(Bucket=bucket)
        wait_until(lambda: get(f"{d.endpoint}/readyz")[0] == 200, 30, "the stream healing")

        def remote_records():
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []) if not o["Key"].startswith(".sluice")]
            return [line for k in keys for line in s3.get_object(Bucket=bucket, Key=k)["Body"].read().splitlines()]

        wait_until(lambda: len(remote_records()) >= 300, 30, "the healed stream delivering")
        d.stop_ok()
        from collections import Counter

        assert_exactly_once(Counter(remote_records()), remote)
        assert_exactly_once(read_delivered(tmp_path / "out").records, local)
        log = d.log_path.read_text()
        assert "Stream recovered." in log
    finally:
        notify.close()


class Putter(threading.Thread):
    """Puts batches to every stream of `targets` in turn until stopped. acked: records
    that got a RecordId (exactly once, per stream); refused: records of a request
    answered ServiceUnavailableException (a stream draining for a reload) or
    ResourceNotFoundException (a removed stream, which is then dropped from targets)."""

    def __init__(self, endpoint: str, targets: list[str]):
        super().__init__(daemon=True)
        self.endpoint, self.targets = endpoint, targets
        self.stop = threading.Event()
        self.acked: dict[str, list[bytes]] = {}
        self.refused: dict[str, list[bytes]] = {}
        self.codes: dict[str, int] = {}
        self.unexpected: list[BaseException] = []

    def run(self):
        import botocore.exceptions

        client = firehose_client(self.endpoint)
        n = 0
        try:
            while not self.stop.is_set():
                for name in list(self.targets):
                    batch = [json.dumps({"s": name, "n": n + i}).encode() for i in range(50)]
                    n += 50
                    try:
                        resp = client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in batch])
                    except botocore.exceptions.ClientError as e:
                        code = e.response["Error"]["Code"]
                        self.codes[code] = self.codes.get(code, 0) + 1
                        self.refused.setdefault(name, []).extend(batch)
                        if code == "ResourceNotFoundException":
                            self.targets.remove(name)
                        elif code != "ServiceUnavailableException":
                            raise
                        continue
                    for rec, r in zip(batch, resp["RequestResponses"]):
                        (self.acked if r.get("RecordId") else self.refused).setdefault(name, []).append(rec)
                time.sleep(0.02)
        except BaseException as e:  # noqa: BLE001 - surfaced by the test
            self.unexpected.append(e)


def test_reload_under_load_changes_adds_and_removes_streams_exactly_once(tmp_path, start_daemon):
    """SIGHUP with records flowing: a changed stream drains and restarts on its new
    prefix while the other keeps running untouched; an invalid config is refused and
    the old one keeps running; a stream whose file appears starts, one whose file goes
    drains and is removed. Every acknowledged record is delivered exactly once."""
    import signal
    from collections import Counter

    cfgs = tmp_path / "streams"
    cfgs.mkdir()
    outs = {name: tmp_path / f"out-{name}" for name in "abc"}

    def write(name: str, prefix: str, **extra):
        doc = native_config(name, outs[name], prefix=prefix, error_output_prefix="errors/!{firehose:error-output-type}/")
        doc["destination"].update(extra)
        write_config(cfgs / f"{name}.toml", doc)

    write("a", "v1/")
    write("b", "v1/")
    d = start_daemon(cfgs)
    putter = Putter(d.endpoint, ["a", "b"])
    putter.start()

    def reloads(what: str) -> int:
        return d.log_path.read_text().count(what)

    def hup_and_wait(what: str, count: int):
        d.send_signal(signal.SIGHUP)
        wait_until(lambda: reloads(what) >= count, 60, f"{what!r} x{count}")
        time.sleep(1.5)

    try:
        time.sleep(1.5)
        write("b", "v2/")
        hup_and_wait("Reloaded.", 1)
        log = d.log_path.read_text()
        assert 'restarted ["b"]' in log and 'unchanged ["a"]' in log, log[-2000:]

        (cfgs / "b.toml").write_text((cfgs / "b.toml").read_text() + "\nbogus_option = 1\n")
        hup_and_wait("Reload refused", 1)
        assert "bogus_option" in d.log_path.read_text().split("Reload refused")[-1][:2000]
        write("b", "v2/")  # back to what runs: the next reload leaves it alone

        write("c", "v1/")
        (cfgs / "a.toml").unlink()
        hup_and_wait("Reloaded.", 2)
        log = d.log_path.read_text()
        assert 'unchanged ["b"], restarted [], added ["c"], removed ["a"]' in log, log[-2000:]
        # Only now: a put to `c` before the reload added it is refused, and the putter
        # drops a stream that answers ResourceNotFoundException.
        putter.targets.append("c")
        wait_until(lambda: putter.acked.get("c"), 30, "records acknowledged by the added stream")
        time.sleep(1)
    finally:
        putter.stop.set()
        putter.join(30)
    assert not putter.unexpected, putter.unexpected
    d.stop_ok()

    for name in "abc":
        got = read_delivered(outs[name], json_lines=True).records
        assert_exactly_once(got, putter.acked[name])
        assert not set(putter.refused.get(name, [])) & set(got), f"{name}: refused records were delivered"
    b_keys = read_delivered(outs["b"]).keys
    assert any(k.startswith("v1/") for k in b_keys) and any(k.startswith("v2/") for k in b_keys), b_keys
    assert putter.codes.get("ResourceNotFoundException", 0) >= 1, putter.codes
    log = d.log_path.read_text()
    # `a` ran untouched until it was removed: drained once, never restarted.
    assert log.count("stream=a") and "Reload: the configuration changed; draining the stream, then starting it again. stream=a" not in log
    print(f"reload: acked {[len(v) for v in putter.acked.values()]}, refused codes {putter.codes}")


def test_a_poison_record_goes_to_processing_failed_and_the_stream_goes_on(tmp_path, start_daemon, monkeypatch):
    """Two records trigger a bug (failpoints: a panic while processing one, while
    encoding the other). The processing one is isolated within its batch at once; the
    encoding one crashes the pipeline, which restarts from its checkpoint, a bounded
    number of times (3), then sends it to processing-failed. Every other record is
    delivered exactly once and the daemon stops cleanly."""
    from test_transforms import error_docs

    monkeypatch.setenv("SLUICE_FAILPOINTS", "process,encode")
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "p.toml", native_config(
        "p", out, interval_secs=1, prefix="data/", error_output_prefix="errors/!{firehose:error-output-type}/"))
    d = start_daemon(cfg)
    client = firehose_client(d.endpoint)
    good = [json.dumps({"n": i}).encode() for i in range(600)]
    poison = [b'{"x": "SLUICE-POISON-process"}', b'{"x": "SLUICE-POISON-encode"}']
    put_batch_ok(client, "p", good[:200] + poison[:1] + good[200:400] + poison[1:])
    put_batch_ok(client, "p", good[400:])
    wait_until(lambda: len(error_docs(out)) >= 2, 60, "both poison records in processing-failed")
    more = [json.dumps({"after": i}).encode() for i in range(100)]
    put_batch_ok(client, "p", more)
    wait_until(lambda: sum(data_records(out).values()) >= 700, 30, "records after the poison")
    d.stop_ok()

    assert_exactly_once(data_records(out), good + more)
    docs = {base64_decode(doc["rawData"]): doc for doc in error_docs(out)}
    assert sorted(docs) == sorted(poison), docs
    assert {doc["errorCode"] for doc in docs.values()} == {"Sluice.RecordCrashedPipeline"}
    assert "processing this record panicked" in docs[poison[0]]["errorMessage"]
    assert "encoding this record panicked 3 times" in docs[poison[1]]["errorMessage"]
    log = d.log_path.read_text()
    assert log.count("Pipeline failed; restarting from the last checkpoint.") == 3, "restarts were not bounded"


def base64_decode(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def test_json_logs_are_one_object_per_line_naming_the_stream_and_key(start_daemon, tmp_path, monkeypatch):
    """`--log-format json`: every line of stderr is a JSON object with a timestamp, a level
    and a message; a delivery's line names its stream and counts, an object's its key, and an
    error deep in a stage (a record that crashes processing) names its stream too."""
    monkeypatch.setenv("SLUICE_FAILPOINTS", "process")
    monkeypatch.setenv("SLUICE_LOG", "info,sluice::delivery=debug")  # a line per object too
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "j.toml", native_config("jlog", out, interval_secs=1))
    d = start_daemon(cfg, extra_args=["--log-format", "json"])
    put_batch_ok(d.client(), "jlog", [b"one", b"two", b"SLUICE-POISON-process"])
    wait_until(lambda: "Delivered an object." in d.log_path.read_text(), 20, "a delivery line")
    d.stop_ok()
    lines = [l for l in d.log_path.read_text().splitlines() if l and not l.startswith("=====")]
    events = [json.loads(l) for l in lines]  # every line parses
    assert all({"timestamp", "level", "message"} <= e.keys() for e in events), events[:3]
    (delivered,) = [e for e in events if e["message"] == "Delivered an object."
                    and not e["key"].startswith("processing-failed/")]
    assert delivered["stream"] == "jlog" and delivered["records"] == 2 and delivered["level"] == "DEBUG", delivered
    assert (out / delivered["key"]).read_bytes() == b"one\ntwo\n"
    (epoch,) = [e for e in events if e["message"] == "Delivered."]
    assert epoch["stream"] == "jlog" and epoch["objects"] == 2 and epoch["records"] == 3, epoch
    assert any(e["message"] == "Drained." and e["stream"] == "jlog" for e in events), events
    crash = [e for e in events if e["message"].startswith("A record crashes processing")]
    assert crash and crash[0]["level"] == "ERROR" and crash[0]["span"] == {"name": "stream", "stream": "jlog"}, crash
