"""The SQLite store's writes: one writer thread with group commit, and the
event loop's shortcuts around it.

Writes go through one writer thread that drains its queue into a single
transaction per batch (each request in its own savepoint, so one failure
does not undo its neighbours), then reports committed events back to the
event loop. Events are therefore durable before anyone sees them (§8.3
resume relies on it) without paying one commit per event. When nothing is
queued or in flight, a request commits on the event loop directly instead
(no thread hand-offs); order is kept either way. A request that may wait
for the end of the loop's turn (`write_soon`: a job's creation, a job's
terminal write) is held until then and shares a transaction with the others
held then, or with the next request that commits inline; its caller resumes
only once that transaction committed (a job's `job.accepted` waits for it).

WAL checkpoints never run inside a commit: SQLite's automatic one would, now
and then, copy the log back and fsync inside a commit on the event loop,
stalling every session for milliseconds (about 10 µs per job on average).
Every `CHECKPOINT_EVERY` commits one is queued to the writer thread instead,
between its transactions; requests arriving meanwhile queue behind it while
the loop runs on.

The log's size is bounded too (issue 15: 24 results of 60 MB once left a
1.46 GB log beside a 4 KB database). Counting commits does not bound it: a
large streamed result is a few fat group commits. So after each of its
transactions the writer thread looks at the log file, and once it reaches
`wal_limit` bytes it checkpoints in TRUNCATE mode, which waits (up to the
busy timeout) for readers still on an older snapshot, copies everything back
and cuts the file to zero. Events always travel through the writer thread,
so the bytes that make a log large are always followed by this look; the
look is one `stat` on the writer thread, never on the loop. A clean stop
truncates the log the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from arcp_grpc.store.errors import StoreFailed
from arcp_grpc.store.protocol import EventRow

__all__ = ["CHECKPOINT_EVERY", "EVENTS_PER_INSERT", "SQLiteWriter"]

log = logging.getLogger("arcp_grpc.sqlite_store")

T = TypeVar("T")

CHECKPOINT_EVERY = 256  # commits; SQLite's own default is every 1000 log pages (~250 jobs)


@dataclass(slots=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


#: A request's future with its value or its error, once its transaction ended.
_Settled = tuple[asyncio.Future[Any], Any, BaseException | None]

_STOP = object()
_CHECKPOINT = object()  # queued to the writer: checkpoint the log between transactions


class SQLiteWriter:
    """Every write to one SQLite connection, in order, durable before it returns.

    `before_checkpoint` runs on the writer thread ahead of each checkpoint and at
    the stop, with the connection and no transaction open (the store saves its
    recovery mark there). `wal` is the log file, truncated once it reaches
    `wal_limit` bytes.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        before_checkpoint: Callable[[sqlite3.Connection], None],
        wal: Path,
        wal_limit: int,
        batch_limit: int = 2048,
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._before_checkpoint = before_checkpoint
        self._wal = wal
        self._wal_limit = wal_limit
        self._batch_limit = batch_limit
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._listener: Callable[[Sequence[EventRow]], None] = lambda _events: None
        self._on_failure: Callable[[], None] = lambda: None
        self._pending = 0  # requests queued to, or in flight on, the writer thread
        self._pending_event_bytes = 0  # of the events among them
        self._loop = asyncio.get_running_loop()
        self._failure: BaseException | None = None
        self._commits = 0  # since the last checkpoint was queued
        # Requests that may wait for the end of the loop's turn. They share a
        # transaction with each other or with the next request that commits inline.
        self._deferred: list[_Op] = []
        self._thread = threading.Thread(
            target=self._write_loop, args=(conn,), name="arcp-store-writer", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Commit what is queued, then close the connection on the writer thread."""
        await self.flush()
        self._pending += 1  # the connection is the writer thread's until it closes it
        self._queue.put(_STOP)
        await self._loop.run_in_executor(None, self._thread.join)
        self._conn = None

    def idle_connection(self) -> sqlite3.Connection | None:
        """The connection, while no request is queued or in flight on the writer
        thread: then no transaction is open on it and the loop may read with it."""
        return self._conn if self._pending == 0 else None

    def set_commit_listener(self, listener: Callable[[Sequence[EventRow]], None]) -> None:
        self._listener = listener

    def set_failure_listener(self, listener: Callable[[], None]) -> None:
        self._on_failure = listener

    async def flush(self) -> None:
        """Wait until everything requested so far is committed, or never can be: once
        the store has failed (logged, and recovered at the next start) there is nothing
        to wait for."""
        if self._failure is not None:
            return
        deferred = [op.future for op in self._deferred]  # may yet move to the thread
        try:
            await self.write(lambda conn: None)
        except StoreFailed:
            return  # it failed meanwhile
        if deferred:
            await asyncio.wait(deferred)

    def backlog(self) -> tuple[int, int]:
        """Requests and events queued or in flight, and the bytes of those events."""
        return self._pending, self._pending_event_bytes

    def append_event(self, event: EventRow) -> None:
        self._check_healthy()
        self._pending += 1
        self._pending_event_bytes += len(event.blob)
        self._queue.put(event)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Commit `fn`'s statements before returning."""
        self._check_healthy()
        if self._pending == 0:
            # Nothing queued or in flight: the writer thread is idle and cannot touch
            # the connection, so commit here and skip two thread hand-offs. Under load
            # requests queue up and share group commits instead.
            return self._commit_inline(fn)
        return await self._to_writer(fn)

    async def write_soon(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """As `write`, but the commit may wait for the end of this turn of the loop and
        share a transaction with others (see `_deferred`)."""
        self._check_healthy()
        if self._pending:
            return await self._to_writer(fn)
        future: asyncio.Future[T] = self._loop.create_future()
        self._deferred.append(_Op(fn, future))
        if len(self._deferred) == 1:
            self._loop.call_soon(self._commit_deferred)
        return await future

    async def write_in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """As `write`, but always on the writer thread: for work that may take long
        (a purge, a vacuum step), which must not hold the event loop."""
        self._check_healthy()
        return await self._to_writer(fn)

    async def _to_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Queue behind the writer thread's work, keeping order."""
        future: asyncio.Future[T] = self._loop.create_future()
        self._pending += 1
        self._queue.put(_Op(fn, future))
        return await future

    def _commit_inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        assert conn is not None, "the writer is stopped"
        if self._deferred:
            # Deferred requests ride along in this transaction, each in a savepoint.
            own: asyncio.Future[T] = self._loop.create_future()
            ops, self._deferred = [*self._deferred, _Op(fn, own)], []
            self._commit_on_loop(conn, ops)
            return own.result()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        try:
            value = fn(conn)
        except sqlite3.Error as exc:
            # The store failed, not the request. SQLite may have rolled back already
            # (a full disk does), so only an open transaction is rolled back.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._fail(exc) from None
        except BaseException:
            conn.execute("ROLLBACK")  # the request failed; the store did not
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._fail(exc) from None
        self._count_commit()
        return value

    def _commit_deferred(self) -> None:
        ops, self._deferred = self._deferred, []
        if not ops:
            return  # an inline commit took them along
        if self._pending:
            # The writer thread may be using the connection: queue behind it instead.
            self._pending += len(ops)
            for op in ops:
                self._queue.put(op)
            return
        conn = self._conn
        assert conn is not None, "the writer is stopped"
        self._commit_on_loop(conn, ops)

    def _commit_on_loop(self, conn: sqlite3.Connection, ops: Sequence[_Op]) -> None:
        """Requests in one transaction, each in a savepoint, settled before returning."""
        _, results = self._commit_batch(conn, ops)
        self._count_commit()
        _settle(results)

    def _fail(self, exc: sqlite3.Error) -> StoreFailed:
        """From the loop or the writer thread: the first failure is told on the loop."""
        log.error("store commit failed; the store stops accepting writes", exc_info=exc)
        if self._failure is None:
            self._failure = exc
            self._loop.call_soon_threadsafe(self._on_failure)
        return StoreFailed("the store could not commit")

    def _check_healthy(self) -> None:
        if self._failure is not None:
            raise StoreFailed("the store failed and accepts no more writes") from None

    def _count_commit(self) -> None:
        """On the loop, after each transaction: every `CHECKPOINT_EVERY`, queue a checkpoint."""
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            self._pending += 1
            self._queue.put(_CHECKPOINT)

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._before_checkpoint(conn)  # a clean stop leaves nothing to scan
                _checkpoint(conn, "TRUNCATE")  # and no log behind
                conn.close()
                return
            batch = [first]
            event_bytes = len(first.blob) if type(first) is EventRow else 0
            while len(batch) < self._batch_limit:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(item)
                if type(item) is EventRow:
                    event_bytes += len(item.blob)
            work = [item for item in batch if item is not _CHECKPOINT]
            events, results = self._commit_batch(conn, work) if work else ([], [])
            if len(work) < len(batch):
                self._before_checkpoint(conn)
                _checkpoint(conn, "PASSIVE")
            if self._wal_bytes() >= self._wal_limit:
                self._before_checkpoint(conn)
                _checkpoint(conn, "TRUNCATE")
            self._loop.call_soon_threadsafe(self._deliver, len(batch), event_bytes, events, results)

    def _wal_bytes(self) -> int:
        try:
            return os.stat(self._wal).st_size
        except FileNotFoundError:
            return 0

    def _commit_batch(
        self, conn: sqlite3.Connection, batch: Sequence[object]
    ) -> tuple[list[EventRow], list[_Settled]]:
        events: list[EventRow] = []
        written = 0  # events[:written] are inserted already
        results: list[_Settled] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            alone = len(batch) == 1  # then the transaction is the request's own
            for item in batch:
                if isinstance(item, EventRow):
                    events.append(item)
                    continue
                assert isinstance(item, _Op)
                _insert_events(conn, events[written:])  # keep call order around the op
                written = len(events)
                results.append(_run_op(conn, item, savepoint=not alone))
            _insert_events(conn, events[written:])
            refused = alone and bool(results) and results[0][2] is not None
            conn.execute("ROLLBACK" if refused else "COMMIT")  # a refusal writes nothing
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = self._fail(exc)
            results = [(item.future, None, failure) for item in batch if isinstance(item, _Op)]
            events = []
        return events, results

    def _deliver(
        self,
        count: int,
        event_bytes: int,
        events: list[EventRow],
        results: list[_Settled],
    ) -> None:
        self._pending -= count
        self._pending_event_bytes -= event_bytes
        self._count_commit()
        if events:
            self._listener(events)
        _settle(results)


def _run_op(conn: sqlite3.Connection, op: _Op, *, savepoint: bool) -> _Settled:
    """Run one request; with neighbours in the transaction, inside its own savepoint so
    that its failure does not undo theirs (alone, the caller rolls the whole back)."""
    if savepoint:
        conn.execute("SAVEPOINT op")
    try:
        value = op.fn(conn)
    except sqlite3.Error:
        raise  # the store failed, not the request: the whole transaction fails
    except Exception as exc:
        if savepoint:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
        return op.future, None, exc
    if savepoint:
        conn.execute("RELEASE op")
    return op.future, value, None


def _settle(results: list[_Settled]) -> None:
    for future, value, error in results:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


def _checkpoint(conn: sqlite3.Connection, mode: str) -> None:
    """Copy the log back into the database; with no transaction open on this (the only
    writing) connection it completes, so the next commit starts the log afresh.
    PASSIVE never waits for readers; TRUNCATE waits for them (busy timeout), then
    cuts the file to zero bytes."""
    try:
        busy, _, _ = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    except sqlite3.Error:
        log.warning("WAL checkpoint failed; the next one retries", exc_info=True)
        return
    if busy and mode == "TRUNCATE":
        log.warning("a reader held the WAL past the busy timeout; the next commit retries")


EVENTS_PER_INSERT = 128
_INSERT_EVENTS = "INSERT INTO events (job_id, seq, blob, sealed) VALUES " + ", ".join(
    ["(?, ?, ?, ?)"] * EVENTS_PER_INSERT
)


def _insert_events(conn: sqlite3.Connection, events: Sequence[EventRow]) -> None:
    """Whole groups in one multi-row statement (one step, so the writer thread takes
    the GIL back once per group rather than once per row), the rest row by row."""
    whole = len(events) - len(events) % EVENTS_PER_INSERT
    for start in range(0, whole, EVENTS_PER_INSERT):
        group = events[start : start + EVENTS_PER_INSERT]
        conn.execute(
            _INSERT_EVENTS,
            [value for e in group for value in (e.job_id, e.seq, e.blob, int(e.sealed))],
        )
    if whole < len(events):
        conn.executemany(
            "INSERT INTO events (job_id, seq, blob, sealed) VALUES (?, ?, ?, ?)",
            [(e.job_id, e.seq, e.blob, int(e.sealed)) for e in events[whole:]],
        )
