"""Wake-ups for followers of jobs that may run on another node (DESIGN.md, scale-out).

Each writer batch ends with one `NOTIFY arcp_events` naming the jobs it touched
(`arcp_grpc.store.postgres.writer`); the store's listening connection hands the
payload to `JobFollowers.notified`, which wakes every follower of those jobs. A
follower registers before it reads, so a commit between its read and its next
`wait` is not missed; a lost notification costs at most the poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from arcp_grpc.store.protocol import JobChanges

__all__ = ["JobFollowers"]


class JobFollowers:
    """The followers of each job on this node, woken by other nodes' commits."""

    __slots__ = ("_by_job",)

    def __init__(self) -> None:
        self._by_job: dict[str, set[_JobChanges]] = {}

    def changes(self, job_id: str) -> JobChanges:
        """Wake-ups for one follower of `job_id`: registered now, so a commit between
        now and its next `wait` is not missed."""
        return _JobChanges(self._by_job, job_id)

    def notified(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        """An `arcp_events` notification: the comma-separated jobs a commit touched."""
        for job_id in str(payload).split(","):
            for follower in self._by_job.get(job_id, ()):
                follower.notify()

    def wake_all(self) -> None:
        """The store closed: no notification will come, so every follower wakes now."""
        for followers in list(self._by_job.values()):
            for follower in list(followers):
                follower.notify()


class _JobChanges:
    """One follower's wake-ups for one job: set by notifications, cleared by `wait`."""

    __slots__ = ("_event", "_followers", "_job_id")

    def __init__(self, followers: dict[str, set[_JobChanges]], job_id: str) -> None:
        self._event = asyncio.Event()
        self._followers = followers
        self._job_id = job_id
        followers.setdefault(job_id, set()).add(self)

    def notify(self) -> None:
        self._event.set()

    async def wait(self, poll_sec: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), poll_sec)
        self._event.clear()

    def close(self) -> None:
        followers = self._followers.get(self._job_id)
        if followers is not None:
            followers.discard(self)
            if not followers:
                del self._followers[self._job_id]
