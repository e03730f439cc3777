"""The surface every load generator implements, so scenarios are written once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["ECHO_INPUT", "Conn", "Driver", "JobApiConn", "ProtocolViolation", "SpreadDriver"]

#: The input every ``echo`` job carries: small, like a typical control-plane submit.
ECHO_INPUT: dict[str, Any] = {"text": "hello from arcp bench", "n": 1}


class ProtocolViolation(RuntimeError):
    """The server answered with something a correct ARCP peer would not send."""


class Conn(Protocol):
    """One open session (or channel, for JobService) on which jobs run one at a time."""

    async def run_echo(self) -> tuple[float, float]:
        """Submit ``echo``; return seconds to acceptance and to the result."""
        ...

    async def submit_keyed(self, key: str, *, wait_result: bool) -> float:
        """Submit ``echo`` with an idempotency key; return seconds to acceptance (§7.2)."""
        ...

    async def run_chatty(self, events: int) -> tuple[float, int]:
        """Run ``chatty``; return seconds submit→result and the log events received (§8.2)."""
        ...

    async def run_report(self, size: int) -> tuple[float, int]:
        """Run ``report``; return seconds submit→result and result bytes received (§8.4)."""
        ...

    async def close(self) -> None:
        """End the session and release the connection."""
        ...


class Driver(Protocol):
    """Opens sessions against one server with one kind of client."""

    async def connect(self) -> Conn:
        """Open a session; the time this takes is the handshake latency."""
        ...


class SpreadDriver:
    """Sessions round-robin over several servers (the nodes of a cluster), so a
    concurrent scenario loads every node alike."""

    def __init__(self, drivers: Sequence[Driver]) -> None:
        self._drivers = list(drivers)
        self._next = 0

    async def connect(self) -> Conn:
        driver = self._drivers[self._next % len(self._drivers)]
        self._next += 1
        return await driver.connect()


@runtime_checkable
class JobApiConn(Protocol):
    """A JobService channel, which also has the calls no ARCP session has (issue 14)."""

    async def run_job_echo(self) -> tuple[float, float]:
        """``RunJob`` an ``echo``: seconds to the first message (the acceptance) and to the
        outcome, in one call."""
        ...

    async def submit_stream(self, count: int) -> float:
        """``SubmitJobs`` ``count`` echo jobs on one stream; seconds until every one is
        answered (each answer checked to be an acceptance)."""
        ...

    async def wait_idle(self) -> None:
        """Return once the caller has no pending or running job (``ListJobs``); the
        scenario's timeout bounds the wait."""
        ...

    async def close(self) -> None:
        """Release the channel."""
        ...
