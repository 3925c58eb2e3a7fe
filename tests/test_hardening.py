"""No acknowledged record lost, whatever happens to the state directory: damage in the
write-ahead log, a lost or restored checkpoint, a lost log, a staged object removed by
someone else, a full disk. Each case either recovers with every acknowledged record
delivered exactly once, or refuses to start with a clear message (and then recovers the
way the message says). The byte-level matrix is in src/source/direct_put/wal/tests.rs;
these drive the real binary end to end."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import (
    SLUICE_BIN,
    assert_exactly_once,
    firehose_client,
    free_port,
    json_records,
    native_config,
    put_batch_ok,
    read_delivered,
    run_sluice,
    staged_files,
    write_config,
)

STREAM = "hard"
SEGMENT_HEADER = 28
FRAME_HEADER = 8


def _config(tmp_path: Path, out: Path, **kw) -> Path:
    kw.setdefault("size_bytes", 128 << 20)
    kw.setdefault("interval_secs", 900)
    return write_config(tmp_path / "hard.toml", native_config(STREAM, out, **kw))


def _put(d, tag: str, n: int) -> list[bytes]:
    client = firehose_client(d.endpoint)
    acked: list[bytes] = []
    for start in range(0, n, 250):
        batch = json_records(tag, range(start, min(n, start + 250)))
        put_batch_ok(client, STREAM, batch)
        acked += batch
    return acked


def _refused_start(tmp_path: Path, cfg: Path, state: Path, *extra: str) -> str:
    """Runs `sluice run` expecting it to refuse to start; returns its output."""
    argv = [str(SLUICE_BIN), "run", "--config", str(cfg), "--listen", f"127.0.0.1:{free_port()}",
            "--state-dir", str(state), *extra]
    p = subprocess.run(argv, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode != 0, f"sluice started on a damaged state dir:\n{p.stderr.decode(errors='replace')[-2000:]}"
    return p.stderr.decode(errors="replace")


def _frames(segment: Path) -> list[tuple[int, int]]:
    """(offset, payload length) of every frame, read independently of sluice."""
    data = segment.read_bytes()
    at, out = SEGMENT_HEADER, []
    while at + FRAME_HEADER <= len(data):
        length = int.from_bytes(data[at:at + 4], "little")
        out.append((at, length))
        at += FRAME_HEADER + length
    return out


def _segments(state: Path) -> list[Path]:
    return sorted((state / STREAM / "wal").glob("*.wal"))


def test_damage_inside_the_log_refuses_to_start_and_repair_salvages_it(tmp_path, start_daemon):
    out, state = tmp_path / "out", tmp_path / "state"
    cfg = _config(tmp_path, out)
    d = start_daemon(cfg, state_dir=state)
    acked = _put(d, "dmg", 1000)
    d.kill9()
    segment = _segments(state)[-1]
    frames = _frames(segment)
    assert len(frames) == 1000
    victim_at, victim_len = frames[100]
    data = bytearray(segment.read_bytes())
    data[victim_at + FRAME_HEADER + 8 + 3] ^= 0x01  # one byte of the record's data
    segment.write_bytes(bytes(data))

    err = _refused_start(tmp_path, cfg, state)
    assert "corrupt at" in err and f"offset {victim_at}" in err and "sluice wal repair" in err, err[-1500:]
    check = run_sluice(["wal", "check", "--stream", STREAM, "--state-dir", str(state)])
    assert check.returncode == 1 and b"CORRUPT" in check.stdout, check.stdout
    repair = run_sluice(["wal", "repair", "--stream", STREAM, "--state-dir", str(state)])
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert b"CORRUPT" not in repair.stdout, repair.stdout

    d = start_daemon(cfg, state_dir=state, log_name="repaired")
    d.stop_ok()
    errors = [p for p in out.rglob("*") if p.is_file() and p.relative_to(out).parts[0] == "processing-failed"]
    assert len(errors) == 1, f"expected one processing-failed object, found {errors}"
    docs = [json.loads(line) for line in errors[0].read_bytes().splitlines()]
    shutil.rmtree(out / "processing-failed")
    got = read_delivered(out, stream=STREAM)
    damaged = acked[100]
    assert_exactly_once(got.records, [r for r in acked if r != damaged])
    assert [doc["errorCode"] for doc in docs] == ["WriteAheadLogDamaged"]
    raw = base64.b64decode(docs[0]["rawData"])
    # The salvaged bytes are the damaged frame, byte for byte.
    assert raw == bytes(data[victim_at:victim_at + FRAME_HEADER + victim_len])


def test_checkpoint_ahead_of_a_lost_log_refuses_and_reset_positions_delivers_new_records(tmp_path, start_daemon):
    out, state = tmp_path / "out", tmp_path / "state"
    cfg = _config(tmp_path, out)
    d = start_daemon(cfg, state_dir=state)
    acked = _put(d, "before", 500)
    d.stop_ok()
    shutil.rmtree(state / STREAM / "wal")  # the checkpoint stays, as with a partial restore

    err = _refused_start(tmp_path, cfg, state)
    assert "disagree" in err and "--reset-positions" in err, err[-1500:]
    d = start_daemon(cfg, state_dir=state, log_name="reset", extra_args=["--reset-positions"])
    acked += _put(d, "after", 500)
    d.stop_ok()
    assert "--reset-positions" in d.log_path.read_text(errors="replace")
    got = read_delivered(out, stream=STREAM)
    assert_exactly_once(got.records, acked)


def test_a_deleted_checkpoint_is_noticed_instead_of_delivering_everything_again(tmp_path, start_daemon):
    out, state = tmp_path / "out", tmp_path / "state"
    cfg = _config(tmp_path, out)
    d = start_daemon(cfg, state_dir=state)
    acked = _put(d, "once", 500)
    d.stop_ok()
    (state / STREAM / "checkpoint.json").unlink()

    err = _refused_start(tmp_path, cfg, state)
    assert "no checkpoint" in err and "--reset-positions" in err, err[-1500:]
    d = start_daemon(cfg, state_dir=state, log_name="reset", extra_args=["--reset-positions"])
    acked += _put(d, "twice", 100)
    d.stop_ok()
    got = read_delivered(out, stream=STREAM)
    assert_exactly_once(got.records, acked)


def test_a_committed_staged_object_removed_by_someone_else_is_rebuilt_from_the_log(tmp_path, start_daemon, monkeypatch):
    out, state = tmp_path / "out", tmp_path / "state"
    cfg = _config(tmp_path, out)
    monkeypatch.setenv("SLUICE_FAILPOINTS", "after_commit")
    d = start_daemon(cfg, state_dir=state)
    acked = _put(d, "gone", 1000)
    d.send_signal(15)  # the drain commits, then the failpoint aborts before completion
    assert d.wait() != 0
    monkeypatch.delenv("SLUICE_FAILPOINTS")
    staged = [name for name in staged_files(out) if name.endswith(".tmp")]
    assert staged, "the failpoint left nothing staged"
    for name in staged:
        (out / ".sluice-staging" / name).unlink()

    d = start_daemon(cfg, state_dir=state, log_name="rebuilt")
    d.stop_ok()
    assert "rebuilding them from the source" in d.log_path.read_text(errors="replace")
    got = read_delivered(out, stream=STREAM)
    assert_exactly_once(got.records, acked)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 6 MiB tmpfs (root only); skipped with the reason where it cannot be mounted."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_refuses_with_503_then_resumes_without_a_restart(tmp_path, start_daemon, small_tmpfs):
    out, state = tmp_path / "out", small_tmpfs / "state"
    cfg = _config(tmp_path, out, max_wal_bytes=64 << 20)
    d = start_daemon(cfg, state_dir=state)
    filler = small_tmpfs / "filler"
    filler.write_bytes(b"\0" * (5 << 20))  # leaves about 1 MiB for the log
    client = firehose_client(d.endpoint)
    acked: list[bytes] = []
    refused = 0
    for i in range(40):  # 40 x 250 x ~100 B = 1 MB of data: more than the space left
        batch = json_records(f"full{i}", range(250), pad=300)
        try:
            put_batch_ok(client, STREAM, batch)
            acked += batch
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "ServiceUnavailableException", e.response
            refused += 1
            break
    assert refused, "the disk never filled"
    assert acked, "nothing was acknowledged before the disk filled"
    filler.unlink()
    batch = json_records("after", range(250), pad=300)
    put_batch_ok(client, STREAM, batch)  # no restart in between
    acked += batch
    d.stop_ok()
    got = read_delivered(out, stream=STREAM)
    assert_exactly_once(got.records, acked)
