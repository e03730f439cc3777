"""A node's lease on its own clock: may it emit anything right now (issue 20)?

A node of a cluster may send a job's frames, or any frame of a session or of a gRPC
stream, only while no survivor can have declared it dead. Survivors judge by the
database's clock: a node whose heartbeat is older than `cluster.node_timeout_sec` is
dead. So this node holds a lease that runs out before that can happen, measured on its
own monotonic clock from the *start* of its last successful heartbeat (the heartbeat's
timestamp is taken later, in the database, so the lease always ends first):

    valid until  start of last successful heartbeat + node_timeout_sec - margin
    margin       min(node_timeout_sec / 4, (node_timeout_sec - heartbeat_sec) / 2)

The margin absorbs a clock rate difference between this host and the database and
the time between a send's check and its bytes leaving; it stays below half the gap
between two heartbeats and the timeout, so a node that heartbeats on time never sees
its lease lapse (defaults: 15 s timeout, 3 s heartbeat: margin 3.75 s, lease 11.25 s).

A paused process (SIGSTOP, a VM freeze, a long GC pause) finds its lease lapsed when it
runs again: every send waits (`wait`) until the next heartbeat renews the lease, or
ends its transport when the heartbeat says the node was declared dead (`fence`). A
single node (SQLite) has no lease to lose: `ready` is one attribute test.
"""

from __future__ import annotations

import asyncio
import math
import time

__all__ = ["NodeLease", "lease_seconds"]


def lease_seconds(node_timeout_sec: float, heartbeat_sec: float) -> float:
    """How long a successful heartbeat keeps the lease, from the heartbeat's start."""
    margin = min(node_timeout_sec / 4, (node_timeout_sec - heartbeat_sec) / 2)
    return node_timeout_sec - margin


class NodeLease:
    """Whether this node may emit; renewed by its heartbeats, ended by its fencing."""

    def __init__(self, seconds: float | None = None) -> None:
        """`seconds`: how long a heartbeat keeps the lease (`lease_seconds`); None for a
        node alone on its store, whose lease never lapses."""
        self._bounded = seconds is not None
        self._seconds = seconds or 0.0
        self._until = -math.inf if self._bounded else math.inf
        self._fenced = False
        self._changed = asyncio.Event()

    @property
    def bounded(self) -> bool:
        """False for a node alone on its store: nothing to wait for, ever."""
        return self._bounded

    @property
    def fenced(self) -> bool:
        """The cluster declared this node dead: it emits nothing more, ever."""
        return self._fenced

    def ready(self) -> bool:
        """May a frame go out now? (A single node: always; no clock is read.)"""
        return not self._bounded or (not self._fenced and time.monotonic() < self._until)

    async def wait(self) -> bool:
        """Return True once the lease is valid (at once if it is), False once the node
        is fenced: then the caller ends its transport instead of sending."""
        while not self._fenced:
            if self.ready():
                return True
            await self._changed.wait()
        return False

    async def until_fenced(self) -> None:
        """Return once the node is fenced (never on a node that stays alive)."""
        while not self._fenced:
            await self._changed.wait()

    def renew(self, started: float) -> None:
        """A heartbeat that started at `started` (monotonic) found this node alive."""
        if self._fenced:
            return
        self._until = max(self._until, started + self._seconds)
        self._signal()

    def fence(self) -> None:
        """The heartbeat found this node declared dead: every waiting send gives up."""
        self._fenced = True
        self._signal()

    def _signal(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
