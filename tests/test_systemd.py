"""The systemd unit as shipped: `systemd-analyze security --offline=yes` scores its
sandbox (issue goal: exposure <= 1.5, while wasmtime's JIT keeps working: no
MemoryDenyWriteExecute) and `systemd-analyze verify` finds nothing to complain about."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "sluice.service"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def test_unit_exposure_is_at_most_1_5():
    res = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
                         capture_output=True, text=True, timeout=60)
    out = res.stdout + res.stderr
    m = re.search(r"Overall exposure level for sluice\.service: (\d+\.\d+)", out)
    assert m, out
    print(f"exposure {m.group(1)}")
    assert float(m.group(1)) <= 1.5, out
    # The JIT needs writable+executable memory; the unit must not forbid it.
    settings = [line.strip() for line in UNIT.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in settings if line.startswith("MemoryDenyWriteExecute=")], settings


def test_unit_verifies_clean(tmp_path, sluice_bin):
    # verify checks that ExecStart's binary exists: point it at the one under test.
    unit = tmp_path / "sluice.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/sluice", str(sluice_bin)))
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not res.stderr.strip() and not res.stdout.strip(), res
