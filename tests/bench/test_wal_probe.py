"""The disk probe (bench/wal_probe.py, issue 15) at a small size: it runs as users run
it, and its figures hold what the full-size run is quoted for in docs/operations.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(150)
def test_a_small_probe_keeps_the_log_bounded_and_the_files_near_live_data() -> None:
    command = [sys.executable, "-m", "bench.wal_probe", "--results", "4", "--mib", "4"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=140)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    figures = json.loads(done.stdout)
    assert figures["wal_peak_bytes"] < 64 * 1024 * 1024
    assert figures["purged_jobs"] == 2
    for phase in ("after_stop", "after_purge"):
        assert figures[phase]["wal"] == 0
        assert figures[phase]["database"] <= figures[phase]["live"] * 1.10
    assert figures["after_purge"]["live"] < figures["after_stop"]["live"]
