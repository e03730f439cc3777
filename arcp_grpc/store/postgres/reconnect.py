"""Reaching PostgreSQL, and reaching it again after it went away (issue 20: a
database restart costs nothing but latency).

Every connection of a node names the node (`application_name` =
``arcp-grpc/NODE_ID``), so an operator can find a node's backends in
`pg_stat_activity` (and a test can terminate them). A connection that is lost is
made again after bounded, jittered, exponential delays: from `BACKOFF_MIN_SEC`,
doubling per failed attempt, at most `BACKOFF_MAX_SEC`, each scaled by a draw in
[0.5, 1] so that the nodes of a cluster, cut off together, do not all knock at
once. The bound keeps a node at most about two seconds behind a database that is
back (the "SERVING within seconds" promise). Each attempt gives up after
`CONNECT_ATTEMPT_SEC`, so a server that does not answer (a partition) costs a
bounded wait, never a hang.

At start, a node waits for an unreachable store up to `store.connect_timeout_sec`
(`connect_within`), saying so in the log, then gives up with `StoreWaitExpired`
(`serve` exits 75, EX_TEMPFAIL, and its supervisor starts it again).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from arcp_grpc.store.protocol import StoreWaitExpired

__all__ = [
    "BACKOFF_MAX_SEC",
    "BACKOFF_MIN_SEC",
    "CONNECT_ATTEMPT_SEC",
    "IDLE_IN_TRANSACTION_MS",
    "Backoff",
    "application_name",
    "connect_within",
    "is_connection_loss",
    "reconnected",
    "server_settings",
]

log = logging.getLogger("arcp_grpc.postgres_store")

T = TypeVar("T")

BACKOFF_MIN_SEC = 0.1  # the first retry after a lost connection
BACKOFF_MAX_SEC = 2.0  # the longest wait between attempts
CONNECT_ATTEMPT_SEC = 5.0  # one attempt's bound (asyncpg's own default is 60 s)
_WAIT_REPORT_SEC = 5.0  # at start, "waiting for the store" once per this


# A node paused (SIGSTOP, a VM freeze) in the middle of a transaction would hold its row
# and advisory locks for as long as its socket lives, and a survivor's takeover, which
# updates that node's row, would wait behind them forever. The server ends a session idle
# inside a transaction this long (the node reconnects and looks its batch up, `writer`).
IDLE_IN_TRANSACTION_MS = 2000


def server_settings(node_id: str) -> dict[str, str]:
    """The session settings of every connection of a node."""
    return {
        "application_name": application_name(node_id),
        "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
    }


def application_name(node_id: str) -> str:
    """What `pg_stat_activity.application_name` shows for this node's connections."""
    return f"arcp-grpc/{node_id}"


def is_connection_loss(exc: BaseException) -> bool:
    """Whether `exc` says the connection (or the server) went away, rather than that
    a statement was refused: the server shut down or restarted (class 57), the
    connection broke (class 08, a closed socket, a timeout), or was never made. An
    asyncpg protocol stuck in a state it cannot leave (`InternalClientError`, seen
    when the server ends the connection between two statements) counts too: that
    connection is unusable, and a new one is the cure."""
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | asyncpg.PostgresConnectionError
        | asyncpg.OperatorInterventionError,
    )


class Backoff:
    """The delays between attempts to reconnect (see the module docstring)."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = BACKOFF_MIN_SEC

    def delay(self) -> float:
        """The wait before the next attempt; each call doubles the next, up to the bound."""
        delay, self._next = self._next, min(BACKOFF_MAX_SEC, self._next * 2.0)
        return delay * random.uniform(0.5, 1.0)


async def reconnected(
    attempt: Callable[[], Awaitable[T]],
    on_failure: Callable[[Exception], None] = lambda _exc: None,
) -> T:
    """`attempt()` until it works, after the bounded delays between tries; an error
    other than a lost connection is raised, and so is whatever `on_failure` raises
    (it hears of each lost attempt)."""
    backoff = Backoff()
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not is_connection_loss(exc):
                raise
            on_failure(exc)
        await asyncio.sleep(backoff.delay())


async def connect_within(attempt: Callable[[], Awaitable[T]], timeout_sec: float, where: str) -> T:
    """`attempt()` until it reaches the store, for `timeout_sec` at most, logging the
    wait; an error that is not a lost connection (a wrong password, an unknown
    database) is raised at once: waiting would not mend it."""
    started = time.monotonic()
    reported = started - _WAIT_REPORT_SEC  # the first failure is said at once

    def waited(exc: Exception) -> None:
        nonlocal reported
        elapsed = time.monotonic() - started
        if elapsed >= timeout_sec:
            raise StoreWaitExpired(
                f"the store at {where} did not answer within store.connect_timeout_sec"
                f" ({timeout_sec:g} s): {exc}"
            ) from None
        if time.monotonic() - reported >= _WAIT_REPORT_SEC:
            log.warning("waiting for the store at %s (%.0f s): %s", where, elapsed, exc)
            reported = time.monotonic()

    return await reconnected(attempt, waited)
