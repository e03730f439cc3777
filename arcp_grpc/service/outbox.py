"""Transport queues and the bound on what they hold (§6.5, §14).

Every server frame of every session passes through one transport's `Outbox`
on its way to the client, so the queue does no more than a stream needs. A
client that does not read must not hold the process's memory hostage: each
box has its own limit, and the `UnsentLedger` bounds all boxes of the process
together (`[limits] max_unsent_bytes`), so many such clients cannot add up.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Callable, Sequence

__all__ = ["Outbox", "UnsentLedger"]


class UnsentLedger:
    """The bytes waiting in every transport's `Outbox` of the process, against one cap
    (`[limits] max_unsent_bytes`): each transport's own limit bounds one client that
    does not read; this bounds all of them together (§14). Once over, a box holding
    more than its fair share (the cap over the open boxes) loses its transport at its
    next frame, so the total stays below about twice the cap whatever the clients do,
    and clients that keep up (holding next to nothing) are never the ones cut."""

    __slots__ = ("boxes", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.boxes = 0

    def over_share(self, held: int) -> bool:
        """Whether a box holding `held` bytes must go: the total is over the cap and
        `held` is more than a fair share of it."""
        return self.total > self.limit and held > self.limit // max(1, self.boxes)


class Outbox:
    """One transport's outbound frames, `None` ending it; one consumer.

    The operations of `asyncio.Queue` that a stream needs, without its task
    accounting and getter bookkeeping: every frame of every session goes
    through here, and a chatty job sends tens of thousands a second.

    A client that reads slowly must not hold the process's memory hostage.
    Producers that can wait (a job's events) check `room_bytes` or await
    `wait_for_room`, which hold them at half of `limit_bytes`; if more than the
    whole limit piles up anyway (replies to requests nobody reads), `on_overflow`
    is told, once, and is expected to `close` the box; later puts are dropped. With a
    `ledger` shared by every box, a box over half its limit is also told when all boxes
    together are over the ledger's: many clients that do not read cannot add up.
    """

    __slots__ = (
        "_bytes",
        "_closed",
        "_frames",
        "_ledger",
        "_limit",
        "_on_overflow",
        "_room",
        "_waiter",
    )

    def __init__(
        self,
        limit_bytes: int = 0,
        on_overflow: Callable[[Outbox], None] | None = None,
        ledger: UnsentLedger | None = None,
    ) -> None:
        self._ledger = ledger
        if ledger is not None:
            ledger.boxes += 1
        self._frames: deque[bytes | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._bytes = 0
        self._limit = limit_bytes  # 0: unbounded
        self._on_overflow = on_overflow
        self._closed = False
        self._room: list[asyncio.Future[None]] = []  # producers waiting in `wait_for_room`

    def put_nowait(self, frame: bytes | None) -> None:
        if self._closed:
            return
        self._append(frame)
        if frame is None or not self._limit:
            return
        # One frame always fits, however large: the limit bounds a backlog, not a frame.
        backlog = self._bytes > len(frame)
        over = self._bytes > self._limit > len(frame)
        ledger = self._ledger
        if over or (backlog and ledger is not None and ledger.over_share(self._bytes)):
            on_overflow, self._on_overflow = self._on_overflow, None
            if on_overflow is not None:
                on_overflow(self)

    def put_replay(self, frames: Sequence[bytes]) -> None:
        """Queue frames a session buffer holds anyway (a resume's replay), raising
        this transport's limit by their size: they cost no memory of their own here."""
        if self._limit:
            self._limit += sum(len(frame) for frame in frames)
        for frame in frames:
            self.put_nowait(frame)

    def close(self, last: bytes | None = None) -> None:
        """End the stream after what is queued (and `last`, if given), whatever the
        limit; later puts are dropped."""
        if self._closed:
            return
        if last is not None:
            self._append(last)
        self._append(None)
        self._closed = True
        self._on_overflow = None  # it usually refers back to the owner of this box
        self._wake_producers()

    def _append(self, frame: bytes | None) -> None:
        self._frames.append(frame)
        if frame is not None:
            self._bytes += len(frame)
            if self._ledger is not None:
                self._ledger.total += len(frame)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> bytes | None:
        while not self._frames:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        return self.get_nowait()

    def get_nowait(self) -> bytes | None:
        """The next frame; raises `asyncio.QueueEmpty` when there is none."""
        if not self._frames:
            raise asyncio.QueueEmpty
        frame = self._frames.popleft()
        if frame is not None:
            self._bytes -= len(frame)
            if self._ledger is not None:
                self._ledger.total -= len(frame)
            if self._room and self.room_bytes() >= 0:
                self._wake_producers()
        return frame

    def discard(self) -> None:
        """The stream is over: frames nobody will take no longer count (the box is
        closed, so nothing more is queued)."""
        self.close()
        ledger, self._ledger = self._ledger, None
        if ledger is not None:
            ledger.total -= self._bytes
            ledger.boxes -= 1
        self._bytes = 0
        self._frames.clear()

    def room_bytes(self) -> int:
        """How much more may be queued before it is over half the limit (negative when
        it is already; `sys.maxsize` when unbounded)."""
        return self._limit // 2 - self._bytes if self._limit else sys.maxsize

    async def wait_for_room(self) -> None:
        """Return once at most half the limit is unsent (at once when unbounded), or
        the box is closed: for producers that can wait, such as a job's history."""
        while not self._closed and self.room_bytes() < 0:
            waiter = asyncio.get_running_loop().create_future()
            self._room.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._room:
                    self._room.remove(waiter)

    def _wake_producers(self) -> None:
        waiters, self._room = self._room, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def empty(self) -> bool:
        return not self._frames

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def unsent_bytes(self) -> int:
        return self._bytes
