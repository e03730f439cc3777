"""Shared launcher plumbing: arguments, the ready file, and a bounded lifetime."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from arcp_grpc.process import event_loop

__all__ = [
    "BENCH_PRINCIPAL",
    "BENCH_TOKEN",
    "BENCH_WORKER_TOKEN",
    "launcher_args",
    "wait_for_stop",
    "write_ready",
]

#: The bearer token every benchmark server accepts, mapped to ``BENCH_PRINCIPAL``.
BENCH_TOKEN = "bench-token"
BENCH_PRINCIPAL = "bench"
#: The worker token our core accepts (`arcp-grpc worker`, scenario k `bench.remote_worker`).
BENCH_WORKER_TOKEN = "bench-worker-token"


def launcher_args(description: str, *, event_loop_choice: bool = False) -> argparse.ArgumentParser:
    """The arguments every launcher takes; callers may add their own before parsing.
    With `event_loop_choice`, also ``--event-loop`` (default: as `arcp-grpc serve` picks)."""
    parser = argparse.ArgumentParser(description=description)
    if event_loop_choice:
        parser.add_argument(
            "--event-loop",
            choices=event_loop.CHOICES,
            default="auto",
            help="the asyncio loop (default auto: uvloop when installed, as arcp-grpc serve)",
        )
    parser.add_argument("--port-file", type=Path, required=True, help="where to write readiness")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=900.0,
        help="exit on our own after this long, even if nobody stops us",
    )
    return parser


def write_ready(path: Path, info: dict[str, Any]) -> None:
    """Publish the addresses atomically so the harness never reads a half-written file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({**info, "pid": os.getpid()}))
    os.replace(tmp, path)


async def wait_for_stop(max_seconds: float) -> None:
    """Return on SIGTERM/SIGINT or when the lifetime bound expires, whichever comes first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)
