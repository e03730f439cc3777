"""Server processes: spawn a launcher in its own process group, wait until ready, kill it.

Every process started here is registered until it is reaped, and ``kill_all`` (called from
``finally`` and ``atexit`` in ``bench.__main__``) ends whatever is left, so neither an error
nor an interrupted run leaves a server behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ServerProcess", "cpu_seconds", "kill_all", "rss_mib", "running_server"]

_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB, from ``/proc/<pid>/status`` ``VmRSS``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the server ``pid`` has used, its child processes included:
    ``/proc/<pid>/stat`` fields 14–17 (utime, stime, and those of reaped children) of ``pid``
    and of every live descendant, so a server that forks workers is charged for them too."""
    total = 0
    for member in _process_tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except FileNotFoundError:  # a child that exited between listing and reading
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += sum(int(f) for f in fields[11:15])
    return total / _CLOCK_TICKS


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (``/proc/<pid>/task/*/children``), bounded."""
    tree, index = [pid], 0
    while index < len(tree) and len(tree) < 256:
        for children in Path(f"/proc/{tree[index]}/task").glob("*/children"):
            try:
                tree.extend(int(child) for child in children.read_text().split())
            except FileNotFoundError:
                continue
        index += 1
    return tree


@dataclass(frozen=True)
class ServerProcess:
    """A running launcher and what it published in its ready file."""

    name: str
    pid: int
    info: dict[str, Any]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not gone within 5 s."""
    try:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
    finally:
        _LIVE.pop(proc.pid, None)


def kill_all() -> None:
    """Stop every server this process started and has not reaped yet."""
    for proc in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            _stop(proc)


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session (its own process group) with output to the log."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so killpg reaches its children
        )
    _LIVE[proc.pid] = proc
    return proc


@contextlib.asynccontextmanager
async def running_server(
    name: str,
    module: str,
    workdir: Path,
    *,
    lifetime_s: float,
    extra_args: tuple[str, ...] = (),
    ready_timeout_s: float = 30.0,
) -> AsyncIterator[ServerProcess]:
    """Run ``python -m module`` until the block exits; yield once its ready file appears."""
    port_file = workdir / f"{name}.ready.json"
    log_path = workdir / f"{name}.log"
    port_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", module, "--port-file", str(port_file)]
    proc = _spawn([*command, "--max-seconds", str(lifetime_s), *extra_args], log_path)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not port_file.exists():
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode} before ready: {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready within {ready_timeout_s:.0f} s")
            await asyncio.sleep(0.05)
        info = json.loads(port_file.read_text())
        yield ServerProcess(name=name, pid=proc.pid, info=info)
    finally:
        _stop(proc)
