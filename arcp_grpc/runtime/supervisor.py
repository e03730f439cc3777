"""One supervisor for a node's background loops: cluster heartbeat and takeover, purges,
revocation retries, session expiry (issue 20).

A loop whose task dies says nothing: nobody awaits it until the node stops. A heartbeat
loop ended by one error of the database driver leaves the node silent, declared dead by
its peers, and never fencing itself. So every loop runs here as a named periodic step:
a step that fails, with any exception, is logged with the loop's name, the next attempt
waits longer (doubling per failure in a row, up to a bound, with jitter so that nodes that
failed together do not retry together), and the loop goes on. Cancellation is never
caught; `stop` cancels every loop and waits until each has ended, so a stopped node
leaves no task behind.

A database that flaps must not flood the log: each loop reports at most one failure per
`_REPORT_EVERY` (with the number of failures since its last report, and the exception),
and says when it works again after a reported failure.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable

from arcp_grpc.errors import StoreUnreachable

__all__ = ["Step", "Supervisor", "retry_delay"]

log = logging.getLogger("arcp_grpc.runtime")

# A loop's step: one round of its work; False when the loop has nothing more to do (a node
# declared dead stops heartbeating), True to run again after the loop's interval.
Step = Callable[[], Awaitable[bool]]

_BACKOFF_CAP = 60.0  # s: the longest wait after failures, for a loop whose interval is shorter
_REPORT_EVERY = 60.0  # s: a loop that keeps failing logs once per this, with a count


def retry_delay(interval: float, failures: int, limit: float, draw: float) -> float:
    """The wait before the next step after `failures` failures in a row (at least one):
    `interval` doubled per failure after the first, at most `limit`, scaled by `draw`
    (in [0.5, 1]: the jitter)."""
    exponent = min(failures - 1, 32)  # 2**32 intervals already exceed any limit
    return min(limit, interval * 2.0**exponent) * draw


class Supervisor:
    """Runs named periodic steps as tasks; each survives its step's failures."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def every(
        self, name: str, interval: float, step: Step, *, backoff_limit: float | None = None
    ) -> None:
        """Run `step` every `interval` seconds (the first after one interval) until it
        returns False or `stop`. After failures the wait grows to `backoff_limit` at
        most (default: the larger of the interval and a minute); a loop that must not
        wait longer than its interval (the heartbeat) passes its interval."""
        limit = max(interval, _BACKOFF_CAP) if backoff_limit is None else backoff_limit
        task = asyncio.create_task(self._run(name, interval, step, limit), name=name)
        self._tasks.append(task)

    async def stop(self) -> None:
        """Cancel every loop and wait until each has ended."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _run(self, name: str, interval: float, step: Step, limit: float) -> None:
        failures = 0  # in a row
        unreported = 0  # failures since the last report
        reported_at = -math.inf
        delay = interval
        while True:
            await asyncio.sleep(delay)
            try:
                going = await step()
            except Exception as exc:  # any error: the loop must outlive it (never cancellation)
                failures += 1
                unreported += 1
                delay = retry_delay(interval, failures, limit, random.uniform(0.5, 1.0))
                now = time.monotonic()
                if now - reported_at >= _REPORT_EVERY:
                    log.error(
                        "background loop %s failed (%d failures since its last report);"
                        " retrying in %.1f s: %s",
                        name,
                        unreported,
                        delay,
                        exc,
                        # An unreachable store is a state, said in one line; anything else
                        # may be a bug: its traceback says where.
                        exc_info=None if isinstance(exc, StoreUnreachable) else exc,
                    )
                    reported_at, unreported = now, 0
                continue
            if failures and unreported < failures:  # a failure of this run was reported
                log.warning("background loop %s works again after %d failures", name, failures)
            failures, delay = 0, interval
            if not going:
                return
