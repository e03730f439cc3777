"""The soak scenario (bench/soak.py, issue 15): its flatness rule, and a 2-minute run.

The run is marked `slow` and left out of the default test command (pyproject's
``addopts``); run it with ``./scripts/test -m slow`` or
``.venv/bin/python -m pytest -m slow tests/bench/test_soak.py``. It checks what the
30-minute soak checks, over a shorter window, against a real server process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import Sample, judge

REPO = Path(__file__).resolve().parents[2]
_MiB = 1024 * 1024


def _samples(rss: list[float], files: int = 20, wal: int = _MiB) -> list[Sample]:
    return [Sample(float(t), r, files, wal, 10 * _MiB, t) for t, r in enumerate(rss)]


def test_a_steady_server_is_flat_and_a_leak_is_not() -> None:
    steady = {line.name: line.flat for line in judge(_samples([50, 80, 81, 80, 82, 81]), 64 * _MiB)}
    assert steady == {
        "rss_mib": True,
        "open_files": True,
        "wal_bytes": True,
        "database_bytes": True,
    }
    leaking = {line.name: line for line in judge(_samples([50, 80, 90, 100, 110, 120]), 64 * _MiB)}
    assert not leaking["rss_mib"].flat
    assert leaking["rss_mib"].settled == 95  # the middle third's median: warm-up left out


def test_the_log_is_judged_against_its_bound_at_every_sample() -> None:
    lines = {line.name: line for line in judge(_samples([50] * 6, wal=65 * _MiB), 64 * _MiB)}
    assert not lines["wal_bytes"].flat
    assert lines["wal_bytes"].limit == 64 * _MiB


def test_too_few_samples_are_not_judged() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        judge(_samples([50, 60]), 64 * _MiB)


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_a_two_minute_soak_is_flat(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench.soak", "--minutes", "2", "--interval", "4"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=330
    )
    report = json.loads((tmp_path / "soak.json").read_text())
    assert done.returncode == 0, (tmp_path / "SOAK.md").read_text()
    assert report["flat"] is True
    assert report["wal_after_stop"] == 0  # a clean stop leaves no log
    assert report["errors"] == 0
    assert report["samples"][-1]["jobs"] > 100
