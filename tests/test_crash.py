"""Crash safety: kill -9 at random moments, restart on the same state dir; every
acknowledged record is delivered exactly once, and no reader ever sees a partial object."""

from __future__ import annotations

import itertools
import os
import random
import signal
import threading
import time
from collections import Counter

import botocore.exceptions
import pytest

from conftest import (
    assert_exactly_once,
    firehose_client,
    json_records,
    list_objects,
    native_config,
    put_batch_ok,
    read_delivered,
    staged_files,
    write_config,
)

CYCLES = 6  # kinds: kill during sending, right after sending, during SIGTERM flush


class Sender(threading.Thread):
    """Sends PutRecordBatch requests in a loop until stopped or the daemon goes away.

    acked:    records that got a RecordId -> must be delivered exactly once
    rejected: records answered with an error (HTTP error or per-record ErrorCode) -> must
              never be delivered (a client would resend them)
    maybe:    records of a request whose answer never came (connection died) -> at most once
    """

    def __init__(self, endpoint: str, tag: str, ids, batch: int = 100, pad: int = 400, make_records=None):
        super().__init__(daemon=True)
        self.endpoint, self.tag, self.ids, self.batch, self.pad = endpoint, tag, ids, batch, pad
        # make_records(tag, ids) -> list[bytes]; default: conftest.json_records
        self.make_records = make_records or (lambda tag, ids: json_records(tag, ids, pad=self.pad))
        self.stop = threading.Event()
        self.acked: list[bytes] = []
        self.rejected: list[bytes] = []
        self.maybe: list[bytes] = []
        self.errors: Counter = Counter()
        self.unexpected: list[BaseException] = []

    def run(self):
        try:
            client = firehose_client(self.endpoint)
            while not self.stop.is_set():
                batch = self.make_records(self.tag, [next(self.ids) for _ in range(self.batch)])
                try:
                    resp = client.put_record_batch(DeliveryStreamName="crash", Records=[{"Data": r} for r in batch])
                except botocore.exceptions.ClientError as e:
                    code = e.response["Error"]["Code"]
                    self.errors[code] += 1
                    if code != "ServiceUnavailableException":
                        self.unexpected.append(e)
                    self.rejected += batch
                    break
                except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as e:
                    self.errors[type(e).__name__] += 1
                    self.maybe += batch
                    break
                rr = resp["RequestResponses"]
                if len(rr) != len(batch):
                    self.unexpected.append(AssertionError(f"{len(rr)} responses for {len(batch)} records"))
                    self.maybe += batch
                    break
                for rec, r in zip(batch, rr):
                    (self.acked if r.get("RecordId") else self.rejected).append(rec)
                if resp["FailedPutCount"]:
                    self.errors["FailedPutCount"] += 1
        except BaseException as e:  # noqa: BLE001 - surfaced by the test
            self.unexpected.append(e)


def kill9_cycles(start_daemon, cfg, state, rng, cycles: int, wait: tuple[float, float], check=None, **sender_kw):
    """Start the daemon on `state`, send with a Sender for a random time within `wait`,
    kill -9, repeat `cycles` times; after each cycle `check(acked, maybe)` looks at what
    is visible. Returns every acknowledged and every maybe-delivered record."""
    ids = itertools.count()
    acked: list[bytes] = []
    maybe: list[bytes] = []
    for cycle in range(cycles):
        d = start_daemon(cfg, state_dir=state)
        sender = Sender(d.endpoint, f"k{cycle}", ids, **sender_kw)
        sender.start()
        time.sleep(rng.uniform(*wait))
        d.kill9()
        sender.join(30)
        assert not sender.is_alive() and not sender.unexpected, sender.unexpected[:3]
        assert sender.acked, f"cycle {cycle}: nothing acknowledged ({sender.errors})"
        acked += sender.acked
        maybe += sender.maybe
        if check is not None:
            check(acked, maybe)
    return acked, maybe


def check_no_dup_no_foreign(delivered: Counter, acked: set, maybe: set) -> None:
    dups = {r: c for r, c in delivered.items() if c > 1}
    assert not dups, f"{len(dups)} records delivered more than once, e.g. {list(dups.items())[:2]}"
    foreign = [r for r in delivered if r not in acked and r not in maybe]
    assert not foreign, f"{len(foreign)} delivered records were never acknowledged (rejected or unknown), e.g. {foreign[:2]}"


@pytest.mark.parametrize("compression", ["uncompressed", "zstd"])
def test_kill9_loop_exactly_once(tmp_path, start_daemon, compression):
    seed = int(os.environ.get("SLUICE_TEST_SEED", random.randrange(1 << 30)))
    print(f"SLUICE_TEST_SEED={seed}")
    rng = random.Random(seed)
    out, state = tmp_path / "out", tmp_path / "state"
    cfg = write_config(
        tmp_path / "crash.toml",
        native_config("crash", out, size_bytes=1048576, interval_secs=1, compression=compression),
    )
    ids = itertools.count()
    acked: list[bytes] = []
    maybe: list[bytes] = []
    rejected: list[bytes] = []
    t_begin = time.monotonic()

    for cycle in range(CYCLES):
        d = start_daemon(cfg, state_dir=state)
        sender = Sender(d.endpoint, f"c{cycle}", ids)
        sender.start()
        time.sleep(rng.uniform(0.3, 2.0))
        kind = cycle % 3
        if kind == 0:
            # During sending: requests are in flight when the process dies.
            d.kill9()
            sender.join(30)
        elif kind == 2:
            # During a graceful shutdown: SIGTERM, then kill -9 while it flushes.
            sender.stop.set()
            sender.join(30)
            d.send_signal(signal.SIGTERM)
            time.sleep(rng.uniform(0.0, 0.05))
            d.kill9()
        else:
            # Right after sending: everything acknowledged, some of it buffered, some of it
            # mid-delivery.
            sender.stop.set()
            sender.join(30)
            time.sleep(rng.uniform(0.0, 1.5))
            d.kill9()
        assert not sender.is_alive(), "sender thread hung"
        assert not sender.unexpected, f"cycle {cycle}: {sender.unexpected[:3]}"
        assert sender.acked, f"cycle {cycle}: nothing acknowledged ({sender.errors})"
        acked += sender.acked
        maybe += sender.maybe
        rejected += sender.rejected
        # What a reader sees right after a crash: only complete objects, no duplicates.
        got = read_delivered(out, stream="crash", compression=compression)
        check_no_dup_no_foreign(got.records, set(acked), set(maybe))
        print(
            f"cycle {cycle}: acked {len(sender.acked)}, in flight {len(sender.maybe)}, rejected "
            f"{len(sender.rejected)}, {dict(sender.errors)}; visible {sum(got.records.values())} in {len(got.keys)} objects"
        )

    # Recover, put a little more, shut down cleanly.
    d = start_daemon(cfg, state_dir=state)
    final = json_records("final", range(1000))
    client = firehose_client(d.endpoint)
    for i in range(0, len(final), 500):
        put_batch_ok(client, "crash", final[i : i + 500])
    acked += final
    d.stop_ok()

    got = read_delivered(out, stream="crash", compression=compression)
    acked_set, maybe_set = set(acked), set(maybe)
    assert len(acked_set) == len(acked)
    check_no_dup_no_foreign(got.records, acked_set, maybe_set)
    missing = acked_set - set(got.records)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records lost (seed {seed}), e.g. {list(missing)[:2]}"
    assert not (set(rejected) & set(got.records)), "a rejected record was delivered"
    assert not staged_files(out), f"staging not empty after clean shutdown: {staged_files(out)[:5]}"
    assert time.monotonic() - t_begin < 120


def test_restart_does_not_redeliver(tmp_path, start_daemon):
    """Clean stop, kill -9 after delivery, restart: delivered records are never replayed."""
    out, state = tmp_path / "out", tmp_path / "state"
    cfg = write_config(tmp_path / "crash.toml", native_config("crash", out, interval_secs=1))
    a, b, c = json_records("a", range(700)), json_records("b", range(700)), json_records("c", range(700))

    d = start_daemon(cfg, state_dir=state)
    put_batch_ok(d.client(), "crash", a[:500])
    put_batch_ok(d.client(), "crash", a[500:])
    d.stop_ok()
    assert_exactly_once(read_delivered(out, stream="crash").records, a)

    d = start_daemon(cfg, state_dir=state)
    put_batch_ok(d.client(), "crash", b[:500])
    put_batch_ok(d.client(), "crash", b[500:])
    # Wait until the interval trigger has delivered b, then kill -9.
    deadline = time.time() + 15
    while time.time() < deadline and sum(read_delivered(out, stream="crash").records.values()) < 1400:
        time.sleep(0.2)
    time.sleep(0.5)
    d.kill9()
    assert_exactly_once(read_delivered(out, stream="crash").records, a + b)

    d = start_daemon(cfg, state_dir=state)
    put_batch_ok(d.client(), "crash", c[:500])
    put_batch_ok(d.client(), "crash", c[500:])
    d.stop_ok()
    assert_exactly_once(read_delivered(out, stream="crash").records, a + b + c)
    assert not staged_files(out)


def test_kill9_before_any_delivery_then_recover(tmp_path, start_daemon):
    """Acknowledged but not yet delivered (long interval): kill -9, restart, SIGTERM:
    everything from the WAL is delivered once."""
    out, state = tmp_path / "out", tmp_path / "state"
    cfg = write_config(tmp_path / "crash.toml", native_config("crash", out, size_bytes=128 << 20, interval_secs=900))
    recs = json_records("w", range(2000))
    d = start_daemon(cfg, state_dir=state)
    for i in range(0, 2000, 500):
        put_batch_ok(d.client(), "crash", recs[i : i + 500])
    assert list_objects(out) == [], "delivered before any trigger fired"
    d.kill9()
    assert list_objects(out) == []
    d = start_daemon(cfg, state_dir=state)
    d.stop_ok()
    assert_exactly_once(read_delivered(out, stream="crash").records, recs)
    assert not staged_files(out)


def test_sigterm_under_load(tmp_path, start_daemon):
    """SIGTERM while two clients are sending: every answer is an acknowledgement or a 503
    ServiceUnavailableException (or a refused connection once the listener is closed); the
    daemon exits 0 and delivers each acknowledged record once, no rejected one."""
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "crash.toml", native_config("crash", out, interval_secs=1))
    d = start_daemon(cfg)
    ids = itertools.count()
    senders = [Sender(d.endpoint, f"s{i}", ids, batch=50) for i in range(2)]
    for s in senders:
        s.start()
    time.sleep(1.0)
    d.send_signal(signal.SIGTERM)
    rc = d.wait()
    for s in senders:
        s.stop.set()
        s.join(30)
        assert not s.is_alive()
        assert not s.unexpected, s.unexpected[:3]
    assert rc == 0, f"exit code {rc} after SIGTERM"
    acked = [r for s in senders for r in s.acked]
    maybe = [r for s in senders for r in s.maybe]
    rejected = [r for s in senders for r in s.rejected]
    assert acked
    print(f"acked {len(acked)}, in flight {len(maybe)}, rejected {len(rejected)}, {[dict(s.errors) for s in senders]}")
    got = read_delivered(out, stream="crash")
    check_no_dup_no_foreign(got.records, set(acked), set(maybe))
    missing = set(acked) - set(got.records)
    assert not missing, f"{len(missing)} acknowledged records lost by a SIGTERM shutdown"
    assert not (set(rejected) & set(got.records))
    assert not staged_files(out)


def test_sigint_flushes_and_exits_0(tmp_path, start_daemon):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "s.toml", native_config("s", out, size_bytes=128 << 20, interval_secs=900))
    d = start_daemon(cfg)
    recs = json_records("int", range(300))
    put_batch_ok(d.client(), "s", recs)
    d.stop_ok(sig=signal.SIGINT)
    assert_exactly_once(read_delivered(out, stream="s").records, recs)
