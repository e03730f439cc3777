"""Live event feeds: committed events of running jobs, fanned out to followers.

Each running job has one `JobFeed` holding the tail of its committed events
(bytes as stored, serialised once) and, at the end, its outcome. Followers
(WatchJob streams, ARCP sessions) read history from the store and switch to
the tail when they catch up, so a follower that lags far behind costs the
store a read, not the job memory. A finished job's feed is dropped; its
events stay in the store only.

A job running on another node of a cluster has no feed here: its follower
reads the store by sequence and sleeps on the store's notifications between
reads (`EventHistory.changes`), polling in case one is lost.

A follower that is there from the job's first event (the session that
submitted it) can instead be a `FeedListener`: called with each commit's
events and then the outcome, on the event loop, with no task of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from arcp_grpc.errors import InternalError
from arcp_grpc.store import EventRow, JobChanges, StoreFailed

__all__ = ["EventHistory", "FeedBatch", "FeedListener", "JobFeed", "follow"]

log = logging.getLogger("arcp_grpc.runtime")

_TAIL = 4096
_TAIL_BYTES = 4 * 1024 * 1024  # a job streaming a large result keeps only its last chunks
_STORE_PAGE = 512
REMOTE_POLL_SEC = 1.0  # the longest a lost notification delays a follower of a remote job


@dataclass(frozen=True, slots=True)
class FeedBatch:
    """Consecutive events (`JobEvent` bytes, in `job_seq` order, last seq `last_seq`)
    and, on the final batch, the job's `JobOutcome` bytes."""

    events: tuple[bytes, ...]
    last_seq: int
    outcome: bytes | None = None


class FeedListener(Protocol):
    """Told of every committed event of a job, in order, then of its outcome."""

    def on_events(self, blobs: Sequence[bytes]) -> None: ...

    def on_outcome(self, outcome: bytes) -> None: ...


class JobFeed:
    """The committed tail of one running job's log: its last `_TAIL` events, at most
    `_TAIL_BYTES` of them, so a follower close behind never waits on the store and a
    large result is not held in memory twice."""

    def __init__(self, job_id: str, last_seq: int = 0) -> None:
        self.job_id = job_id
        self._tail: deque[tuple[int, bytes]] = deque()
        self._tail_bytes = 0
        self.committed_seq = last_seq
        self.outcome: bytes | None = None
        self._changed = asyncio.Event()
        self._listeners: list[FeedListener] = []

    def listen(self, listener: FeedListener) -> None:
        """Add a listener; the caller has seen every event committed so far."""
        self._listeners.append(listener)

    def unlisten(self, listener: FeedListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def on_commit(self, rows: list[tuple[int, bytes]]) -> None:
        """One commit's events of this job, in order: followers wake once for all."""
        blobs = [blob for _, blob in rows]
        tail = self._tail
        tail.extend(rows)
        self._tail_bytes += sum(map(len, blobs))
        while len(tail) > _TAIL or self._tail_bytes > _TAIL_BYTES:
            self._tail_bytes -= len(tail.popleft()[1])  # older events: from the store
        self.committed_seq = rows[-1][0]
        if self._listeners:
            for listener in list(self._listeners):
                self._tell(listener, listener.on_events, blobs)
        self._wake()

    def finish(self, outcome: bytes) -> None:
        self.outcome = outcome
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            self._tell(listener, listener.on_outcome, outcome)
        self._wake()

    def _tell(self, listener: FeedListener, call: Callable[[Any], None], arg: Any) -> None:
        """A failing listener is dropped and logged; the commit path and the others go on."""
        try:
            call(arg)
        except Exception:
            log.exception("a follower of job %s failed; it is detached", self.job_id)
            self.unlisten(listener)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    @property
    def held_bytes(self) -> int:
        """What the feed keeps in memory: its tail of events and the outcome."""
        return self._tail_bytes + len(self.outcome or b"")

    def tail_covers(self, after_seq: int) -> bool:
        """Whether every committed event after `after_seq` is still in memory."""
        if after_seq >= self.committed_seq:
            return True
        return bool(self._tail) and self._tail[0][0] <= after_seq + 1

    def after(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        if not self._tail or after_seq >= self.committed_seq:
            return []
        start = max(0, after_seq + 1 - self._tail[0][0])
        end = min(len(self._tail), start + limit)
        return [self._tail[i] for i in range(start, end)]


class EventHistory(Protocol):
    """Where `follow` finds a job's stored log, outcome and live feed."""

    async def read(self, job_id: str, after_seq: int, limit: int) -> list[EventRow]: ...

    async def outcome(self, job_id: str) -> bytes | None: ...

    def feed(self, job_id: str) -> JobFeed | None: ...

    def plain(self, row: EventRow) -> bytes:
        """The `JobEvent` bytes of a stored row (opening sealed rows)."""
        ...

    def changes(self, job_id: str) -> JobChanges | None:
        """Wake-ups for a job that may run on another node; None without a cluster."""
        ...


async def follow(
    history: EventHistory, job_id: str, after_seq: int, *, batch: int = 256
) -> AsyncIterator[FeedBatch]:
    """Every event of `job_id` with `job_seq > after_seq`, in order, exactly once,
    then the outcome. Works across the job's end and for long-finished jobs.
    The caller has checked that the job exists and is visible to it."""
    misses = 0
    changes: JobChanges | None = None
    try:
        while True:
            feed = history.feed(job_id)
            if feed is None or not feed.tail_covers(after_seq):
                try:
                    rows = await history.read(job_id, after_seq, _STORE_PAGE)
                    outcome = await history.outcome(job_id) if not rows and feed is None else None
                    if outcome is not None:
                        # The end may have been committed (on another node) between the read
                        # above and this one, with events that read missed; a job's end
                        # follows its last event, so one more read finds them all.
                        rows = await history.read(job_id, after_seq, _STORE_PAGE)
                        outcome = None if rows else outcome
                except StoreFailed as failed:
                    if not failed.transient:
                        raise
                    # Issue 20: the store is back within seconds; a follower waits for it
                    # (the job goes on), it does not end the client's stream.
                    await asyncio.sleep(REMOTE_POLL_SEC)
                    continue
                if rows:
                    after_seq = rows[-1].seq
                    yield FeedBatch(tuple(history.plain(r) for r in rows), after_seq)
                    continue
                if feed is None:
                    if outcome is not None:
                        yield FeedBatch((), after_seq, outcome)
                        return
                    if changes is not None:
                        await changes.wait(REMOTE_POLL_SEC)  # it runs on another node
                        continue
                    changes = history.changes(job_id)
                    if changes is not None:
                        continue  # subscribed: read once more, so no commit slips between
                    # A job between creation and registration: look again, briefly.
                    misses += 1
                    if misses > 500:
                        raise InternalError(f"job {job_id} has neither a live feed nor an outcome")
                    await asyncio.sleep(0.01)
                    continue
            events = feed.after(after_seq, batch)
            if events:
                after_seq = events[-1][0]
                yield FeedBatch(tuple(blob for _, blob in events), after_seq)
                continue
            if feed.outcome is not None and after_seq >= feed.committed_seq:
                yield FeedBatch((), after_seq, feed.outcome)
                return
            await feed.changed()
    finally:
        if changes is not None:
            changes.close()
