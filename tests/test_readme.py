"""README.md's runnable examples, run as written: a newcomer's first hour must work.

A fenced block is runnable when the line above it is a marker comment:

    <!-- doctest: GROUP write FILE -->   the block's text is written to FILE
    <!-- doctest: GROUP daemon -->       started in the background (a `sluice run`)
    <!-- doctest: GROUP run -->          run with bash; must exit 0

Each group runs in a fresh directory, in README order; `cargo run --release --` becomes
the binary under test and the documented port 4195 a free one. After the last block every
daemon gets SIGTERM and must exit 0, then the group's check below reads what was
delivered with an independent reader. A marker naming a group without a check fails, so
a new example cannot go untested.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import REPO, SLUICE_BIN, free_port, port_open

MARKER = re.compile(r"^<!-- doctest: (?P<group>[\w-]+) (?P<kind>write|daemon|run)(?: (?P<file>\S+))? -->$")


def blocks() -> dict[str, list[tuple[str, str | None, str]]]:
    """GROUP -> [(kind, file, text)] in README order."""
    lines = (REPO / "README.md").read_text().splitlines()
    groups: dict[str, list] = {}
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i].strip())
        if m:
            assert lines[i + 1].startswith("```"), f"README line {i + 2}: a doctest marker must sit right above a fenced block"
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            groups.setdefault(m["group"], []).append((m["kind"], m["file"], "\n".join(lines[i + 2:end]) + "\n"))
            i = end
        i += 1
    return groups


def _objects(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def check_quickstart(cwd: Path) -> None:
    objects = _objects(cwd / "data")
    lines = [line for p in objects for line in p.read_bytes().splitlines()]
    assert sorted(lines, key=int) == [str(i).encode() for i in range(1, 1001)], f"{len(lines)} records in {objects}"
    assert all(re.search(r"data/\d{4}/\d{2}/\d{2}/\d{2}/local-1-", p.as_posix()) for p in objects), objects


def check_parquet(cwd: Path) -> None:
    objects = [p for p in _objects(cwd / "parquet") if p.suffix == ".parquet"]
    assert objects, f"no Parquet object under parquet/: {_objects(cwd / 'parquet')}"
    rows = [r for p in objects for r in pq.read_table(p).to_pylist()]
    assert sorted((r["user"], r["n"]) for r in rows) == [("ann", 1), ("bob", 2)], rows
    assert str(rows[0]["at"]).startswith("2026-12-01 10:00:0"), rows


CHECKS = {"quickstart": check_quickstart, "parquet": check_parquet}


def test_every_doctest_group_has_a_check():
    found = blocks()
    assert found, "README has no doctest markers"
    assert set(found) == set(CHECKS), f"groups {sorted(found)} vs checks {sorted(CHECKS)}"


@pytest.mark.parametrize("group", sorted(CHECKS))
def test_readme_example_runs_as_written(group, tmp_path):
    port = free_port()

    def adapt(text: str) -> str:
        return text.replace("cargo run --release --", str(SLUICE_BIN)).replace("127.0.0.1:4195", f"127.0.0.1:{port}")

    daemons: list[subprocess.Popen] = []
    log = open(tmp_path / "daemon.log", "ab")
    try:
        for kind, file, text in blocks()[group]:
            if kind == "write":
                (tmp_path / file).write_text(text)
            elif kind == "daemon":
                cmd = adapt(text).strip()
                if "--listen" not in cmd:
                    cmd += f" --listen 127.0.0.1:{port}"
                daemons.append(subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=tmp_path, stdout=log, stderr=log,
                                                stdin=subprocess.DEVNULL, start_new_session=True))
                deadline = time.monotonic() + 20
                while not port_open(port):
                    assert daemons[-1].poll() is None, f"{cmd!r} exited: {(tmp_path / 'daemon.log').read_text()[-2000:]}"
                    assert time.monotonic() < deadline, f"{cmd!r} did not listen on {port}"
                    time.sleep(0.05)
            else:
                p = subprocess.run(["bash", "-euo", "pipefail", "-c", adapt(text)], cwd=tmp_path, capture_output=True,
                                   timeout=60, stdin=subprocess.DEVNULL)
                assert p.returncode == 0, f"README block failed ({p.returncode}):\n{text}\n{p.stderr.decode()[-2000:]}"
        for d in daemons:
            os.kill(d.pid, signal.SIGTERM)
            rc = d.wait(timeout=60)
            assert rc == 0, f"sluice exited {rc} after SIGTERM: {(tmp_path / 'daemon.log').read_text()[-2000:]}"
    finally:
        for d in daemons:
            if d.poll() is None:
                os.kill(d.pid, signal.SIGKILL)
                d.wait(timeout=10)
        log.close()
    CHECKS[group](tmp_path)
