"""Which asyncio event loop `arcp-grpc serve` runs on.

uvloop (libuv) moves socket readiness, transports and timers into C. The
gateway and the core spend a large share of each job in exactly that code,
so the embedded default runs on it when it is installed (it is a dependency
everywhere but Windows): about 10 % more jobs/s through the gateway and
about 10 % less latency on gRPC `SubmitJob` on our 2-core machines (A/B
runs and bench/RESULTS.md). `asyncio` is the standard library loop, for platforms
without uvloop or to rule it out when debugging.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["CHOICES", "LoopChoice", "resolve", "run"]

LoopChoice = Literal["auto", "uvloop", "asyncio"]
CHOICES: tuple[LoopChoice, ...] = ("auto", "uvloop", "asyncio")

T = TypeVar("T")


def _uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolve(choice: str) -> Literal["uvloop", "asyncio"]:
    """The loop `choice` means here: "auto" is uvloop when installed, else asyncio.
    Raises ValueError for an unknown choice or "uvloop" without uvloop."""
    if choice == "asyncio":
        return "asyncio"
    if choice == "uvloop":
        if not _uvloop_available():
            raise ValueError("uvloop is not installed (pip install uvloop, or choose asyncio)")
        return "uvloop"
    if choice == "auto":
        return "uvloop" if _uvloop_available() else "asyncio"
    raise ValueError(f"{choice!r} is not one of {', '.join(CHOICES)}")


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """`asyncio.run(main)` on the chosen loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if resolve(choice) == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
