"""The embedded store: one SQLite file in WAL mode with group commit.

Writes go through one writer thread that drains its queue into a single
transaction per batch (each request in its own savepoint, so one failure
does not undo its neighbours), then reports committed events back to the
event loop. Events are therefore durable before anyone sees them (§8.3
resume relies on it) without paying one commit per event. When nothing is
queued or in flight, a request commits on the event loop directly instead
(no thread hand-offs); order is kept either way. A job's terminal write, when
other jobs are running too, waits for the end of the loop's turn and shares
a transaction with the others finishing then, or with the next request that
commits inline (a job's creation, which cannot wait: `job.accepted` does).
Reads use a second connection on their own thread; WAL lets them run beside
the writer.

WAL checkpoints never run inside a commit: SQLite's automatic one would, now
and then, copy the log back and fsync inside a commit on the event loop,
stalling every session for milliseconds (about 10 µs per job on average).
Every `_CHECKPOINT_EVERY` commits one is queued to the writer thread instead,
between its transactions; requests arriving meanwhile queue behind it while
the loop runs on.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from arcp_grpc._sqlite_schema import prepare as prepare_schema
from arcp_grpc._sqlite_schema import recovery_mark
from arcp_grpc.errors import InternalError, InvalidRequest
from arcp_grpc.store import (
    CredentialEntry,
    EventRow,
    IdempotencyClaim,
    IdempotencyConflict,
    JobPage,
    JobQuery,
    JobRow,
)

__all__ = ["SQLiteStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")


_JOB_COLUMNS = (
    "job_id, principal, agent, status, created_at, trace_id, parent_job_id, summary, accepted,"
    " last_seq, completed_at, outcome"
)


@dataclass(slots=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


#: A request's future with its value or its error, once its transaction ended.
_Settled = tuple[asyncio.Future[Any], Any, BaseException | None]

_STOP = object()
_CHECKPOINT = object()  # queued to the writer: checkpoint the log between transactions
_CHECKPOINT_EVERY = 256  # commits; SQLite's own default is every 1000 log pages (~250 jobs)


class SQLiteStore:
    """`Store` on a SQLite file. Safe to reopen: schema creation is idempotent."""

    def __init__(self, path: Path, *, batch_limit: int = 2048) -> None:
        self._path = path
        self._batch_limit = batch_limit
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._listener: Callable[[Sequence[EventRow]], None] = lambda _events: None
        self._pending = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: threading.Thread | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._failure: BaseException | None = None
        self._commits = 0  # since the last checkpoint was queued
        # Requests that may wait for the end of the loop's turn (a job's terminal write:
        # it gates only the terminal frame). They share a transaction with each other or
        # with the next request that commits inline, whichever comes first.
        self._deferred: list[_Op] = []
        # Jobs created and not finished, by id, in rowid order: the first is where
        # recovery must start scanning (`_sqlite_schema`). Touched by whichever of
        # the loop or the writer thread holds the connection.
        self._unfinished: dict[str, int] = {}
        self._next_rowid = 1
        self._recovery_from = 1

    # -- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        write_conn = self._connect()
        write_conn.execute("PRAGMA wal_autocheckpoint=0")  # the writer thread checkpoints
        try:
            prepare_schema(write_conn)
        except BaseException:
            write_conn.close()
            raise
        self._load_unfinished(write_conn)
        self._write_conn = write_conn
        self._writer = threading.Thread(
            target=self._write_loop, args=(write_conn,), name="arcp-store-writer", daemon=True
        )
        self._writer.start()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arcp-store-reader")
        self._read_conn = await self._loop.run_in_executor(self._reader, self._connect)

    async def close(self) -> None:
        if self._writer is None:
            return
        await self.flush()
        self._pending += 1  # the connection is the writer thread's until it closes it
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._writer = None
        self._write_conn = None  # closed by the writer thread
        if self._reader is not None and self._read_conn is not None:
            self._reader.submit(self._read_conn.close).result()
            self._reader.shutdown(wait=True)
            self._reader = None

    def _load_unfinished(self, conn: sqlite3.Connection) -> None:
        """Jobs a previous process left unfinished, found from the persisted mark."""
        self._recovery_from = recovery_mark(conn)
        rows = conn.execute(
            "SELECT job_id, rowid FROM jobs WHERE rowid >= ? AND completed_at IS NULL"
            " ORDER BY rowid",
            (self._recovery_from,),
        ).fetchall()
        self._unfinished = dict(rows)
        self._next_rowid = conn.execute("SELECT COALESCE(MAX(rowid), 0) + 1 FROM jobs").fetchone()[
            0
        ]

    def _save_recovery_mark(self, conn: sqlite3.Connection) -> None:
        """Advance `recovery_from` to the first job not known to have finished (writer only)."""
        first = next(iter(self._unfinished.values()), self._next_rowid)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'recovery_from'", (str(first),))
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.warning(
                "could not save the recovery mark; the next checkpoint retries", exc_info=True
            )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    # -- the writer ------------------------------------------------------

    def set_commit_listener(self, listener: Callable[[Sequence[EventRow]], None]) -> None:
        self._listener = listener

    def pending_writes(self) -> int:
        return self._pending

    def append_event(self, event: EventRow) -> None:
        self._check_healthy()
        self._pending += 1
        self._queue.put(event)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Commit `fn`'s statements before returning."""
        self._check_healthy()
        if self._pending == 0:
            # Nothing queued or in flight: the writer thread is idle and cannot touch
            # the connection, so commit here and skip two thread hand-offs. Under load
            # requests queue up and share group commits instead.
            return self._commit_inline(fn)
        return await self._to_writer(fn)

    async def _write_soon(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """As `_write`, but the commit may wait for the end of this turn of the loop and
        share a transaction with others (see `_deferred`)."""
        self._check_healthy()
        if self._pending:
            return await self._to_writer(fn)
        assert self._loop is not None, "store is not open"
        future: asyncio.Future[T] = self._loop.create_future()
        self._deferred.append(_Op(fn, future))
        if len(self._deferred) == 1:
            self._loop.call_soon(self._commit_deferred)
        return await future

    async def _to_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Queue behind the writer thread's work, keeping order."""
        assert self._loop is not None, "store is not open"
        future: asyncio.Future[T] = self._loop.create_future()
        self._pending += 1
        self._queue.put(_Op(fn, future))
        return await future

    def _commit_inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._write_conn
        assert conn is not None, "store is not open"
        if self._deferred:
            # Deferred requests ride along in this transaction, each in a savepoint.
            assert self._loop is not None
            own: asyncio.Future[T] = self._loop.create_future()
            ops, self._deferred = [*self._deferred, _Op(fn, own)], []
            _, results = self._commit_batch(conn, list(ops))
            self._count_commit()
            _settle(results)
            return own.result()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        try:
            value = fn(conn)
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
        conn = self._write_conn
        assert conn is not None, "store is not open"
        _, results = self._commit_batch(conn, list(ops))
        self._count_commit()
        _settle(results)

    def _fail(self, exc: sqlite3.Error) -> InternalError:
        log.error("store commit failed; the store stops accepting writes", exc_info=exc)
        self._failure = exc
        return InternalError("the store could not commit")

    def _check_healthy(self) -> None:
        if self._failure is not None:
            raise InternalError("the store failed and accepts no more writes") from None

    def _count_commit(self) -> None:
        """On the loop, after each transaction: every `_CHECKPOINT_EVERY`, queue a checkpoint."""
        self._commits += 1
        if self._commits >= _CHECKPOINT_EVERY:
            self._commits = 0
            self._pending += 1
            self._queue.put(_CHECKPOINT)

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._save_recovery_mark(conn)  # a clean stop leaves nothing to scan
                conn.close()
                return
            batch = [first]
            while len(batch) < self._batch_limit:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(item)
            work = [item for item in batch if item is not _CHECKPOINT]
            events, results = self._commit_batch(conn, work) if work else ([], [])
            if len(work) < len(batch):
                self._save_recovery_mark(conn)
                _checkpoint(conn)
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._deliver, len(batch), events, results)

    def _commit_batch(
        self, conn: sqlite3.Connection, batch: list[object]
    ) -> tuple[list[EventRow], list[_Settled]]:
        events: list[EventRow] = []
        written = 0  # events[:written] are inserted already
        results: list[_Settled] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                if isinstance(item, EventRow):
                    events.append(item)
                    continue
                assert isinstance(item, _Op)
                _insert_events(conn, events[written:])  # keep call order around the op
                written = len(events)
                results.append(self._run_op(conn, item))
            _insert_events(conn, events[written:])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = self._fail(exc)
            results = [(item.future, None, failure) for item in batch if isinstance(item, _Op)]
            events = []
        return events, results

    @staticmethod
    def _run_op(conn: sqlite3.Connection, op: _Op) -> _Settled:
        conn.execute("SAVEPOINT op")
        try:
            value = op.fn(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            return op.future, None, exc
        conn.execute("RELEASE op")
        return op.future, value, None

    def _deliver(
        self,
        count: int,
        events: list[EventRow],
        results: list[_Settled],
    ) -> None:
        self._pending -= count
        self._count_commit()
        if events:
            self._listener(events)
        _settle(results)

    # -- writes ----------------------------------------------------------

    async def create_job(
        self,
        job: JobRow,
        claim: IdempotencyClaim | None,
        credentials: Sequence[CredentialEntry],
        now: float,
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            if claim is not None:
                conn.execute(
                    "DELETE FROM idempotency WHERE principal = ? AND key = ? AND expires_at <= ?",
                    (claim.principal, claim.key, now),
                )
                try:
                    conn.execute(
                        "INSERT INTO idempotency (principal, key, fingerprint, job_id, expires_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (
                            claim.principal,
                            claim.key,
                            claim.fingerprint,
                            job.job_id,
                            claim.expires_at,
                        ),
                    )
                except sqlite3.IntegrityError:
                    holder = conn.execute(
                        "SELECT job_id, fingerprint FROM idempotency"
                        " WHERE principal = ? AND key = ?",
                        (claim.principal, claim.key),
                    ).fetchone()
                    raise IdempotencyConflict(holder[0], holder[1]) from None
            rowid = conn.execute(
                f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _job_values(job),
            ).lastrowid
            if credentials:
                conn.executemany(
                    "INSERT INTO credentials (credential_id, job_id, provisioner, sealed_value)"
                    " VALUES (?, ?, ?, ?)",
                    [
                        (c.credential_id, c.job_id, c.provisioner, c.sealed_value)
                        for c in credentials
                    ],
                )
            assert rowid is not None
            self._unfinished[job.job_id] = rowid  # last: only once every statement held
            self._next_rowid = rowid + 1

        await self._write(op)

    async def finish_job(
        self,
        job_id: str,
        status: int,
        outcome: bytes,
        summary: bytes,
        completed_at: float,
        last_seq: int,
        *,
        shared: bool = False,
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE jobs SET status = ?, outcome = ?, summary = ?, completed_at = ?,"
                " last_seq = ? WHERE job_id = ?",
                (status, outcome, summary, completed_at, last_seq, job_id),
            )
            self._unfinished.pop(job_id, None)

        if shared:
            await self._write_soon(op)
        else:
            await self._write(op)

    async def flush(self) -> None:
        deferred = [op.future for op in self._deferred]  # may yet move to the thread
        await self._write(lambda conn: None)
        if deferred:
            await asyncio.wait(deferred)

    async def mark_revoked(self, credential_id: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "UPDATE credentials SET revoked_at = julianday('now') WHERE credential_id = ?",
                (credential_id,),
            )
        )

    async def replace_credential(self, entry: CredentialEntry) -> None:
        await self._write(
            lambda conn: conn.execute(
                "UPDATE credentials SET sealed_value = ? WHERE credential_id = ?",
                (entry.sealed_value, entry.credential_id),
            )
        )

    async def purge_claims(self, now: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM idempotency WHERE expires_at <= ?", (now,)).rowcount

        return await self._write(op)

    # -- reads -----------------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._loop is not None
        assert self._reader is not None
        assert self._read_conn is not None
        conn = self._read_conn
        return await self._loop.run_in_executor(self._reader, fn, conn)

    async def _lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read of a few rows by key. While the writer thread is idle it runs here, on
        the writer's connection (no transaction is open on it between requests): a few
        microseconds, where `_read`'s two thread hand-offs cost tens. Else as `_read`."""
        if self._pending == 0 and self._write_conn is not None:
            return fn(self._write_conn)
        return await self._read(fn)

    async def find_claim(self, principal: str, key: str, now: float) -> tuple[str, bytes] | None:
        def fn(conn: sqlite3.Connection) -> tuple[str, bytes] | None:
            row = conn.execute(
                "SELECT job_id, fingerprint FROM idempotency"
                " WHERE principal = ? AND key = ? AND expires_at > ?",
                (principal, key, now),
            ).fetchone()
            return None if row is None else (row[0], row[1])

        return await self._lookup(fn)

    async def get_job(self, job_id: str) -> JobRow | None:
        def fn(conn: sqlite3.Connection) -> JobRow | None:
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            return None if row is None else JobRow(*row)

        return await self._lookup(fn)

    async def list_jobs(self, query: JobQuery) -> JobPage:
        where = ["principal = ?"]
        args: list[Any] = [query.principal]
        if query.statuses:
            where.append(f"status IN ({', '.join('?' * len(query.statuses))})")
            args.extend(query.statuses)
        if query.agent:
            if "@" in query.agent:
                where.append("agent = ?")
                args.append(query.agent)
            else:
                where.append("substr(agent, 1, ?) = ?")
                args.extend([len(query.agent) + 1, query.agent + "@"])
        if query.created_after is not None:
            where.append("created_at > ?")
            args.append(query.created_after)
        if query.cursor:
            created_at, job_id = _decode_cursor(query.cursor)
            where.append("(created_at, job_id) < (?, ?)")
            args.extend([created_at, job_id])
        sql = (
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)}"
            " ORDER BY created_at DESC, job_id DESC LIMIT ?"
        )
        args.append(query.limit + 1)

        def fn(conn: sqlite3.Connection) -> JobPage:
            rows = [JobRow(*r) for r in conn.execute(sql, args).fetchall()]
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            cursor = _encode_cursor(rows[-1]) if more and rows else ""
            return JobPage(tuple(rows), cursor)

        return await self._read(fn)

    async def read_events(self, job_id: str, after_seq: int, limit: int) -> list[EventRow]:
        def fn(conn: sqlite3.Connection) -> list[EventRow]:
            rows = conn.execute(
                "SELECT seq, blob, sealed FROM events WHERE job_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (job_id, after_seq, limit),
            ).fetchall()
            return [EventRow(job_id, seq, blob, bool(sealed)) for seq, blob, sealed in rows]

        return await self._read(fn)

    async def interrupted_jobs(self) -> list[JobRow]:
        start = self._recovery_from

        def fn(conn: sqlite3.Connection) -> list[JobRow]:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE rowid >= ? AND completed_at IS NULL"
                " ORDER BY created_at",
                (start,),
            ).fetchall()
            return [JobRow(*r) for r in rows]

        return await self._read(fn)

    async def last_seq(self, job_id: str) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id = ?", (job_id,)
            ).fetchone()
            return int(row[0])

        return await self._lookup(fn)

    async def live_credentials(self) -> list[CredentialEntry]:
        def fn(conn: sqlite3.Connection) -> list[CredentialEntry]:
            rows = conn.execute(
                "SELECT credential_id, job_id, provisioner, sealed_value FROM credentials"
                " WHERE revoked_at IS NULL"
            ).fetchall()
            return [CredentialEntry(*r) for r in rows]

        return await self._read(fn)


def _settle(results: list[_Settled]) -> None:
    for future, value, error in results:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


def _checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the log back into the database; with no transaction open on this (the only
    writing) connection it completes, so the next commit starts the log afresh."""
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error:
        log.warning("WAL checkpoint failed; the next one retries", exc_info=True)


_EVENTS_PER_INSERT = 128
_INSERT_EVENTS = "INSERT INTO events (job_id, seq, blob, sealed) VALUES " + ", ".join(
    ["(?, ?, ?, ?)"] * _EVENTS_PER_INSERT
)


def _insert_events(conn: sqlite3.Connection, events: Sequence[EventRow]) -> None:
    """Whole groups in one multi-row statement (one step, so the writer thread takes
    the GIL back once per group rather than once per row), the rest row by row."""
    whole = len(events) - len(events) % _EVENTS_PER_INSERT
    for start in range(0, whole, _EVENTS_PER_INSERT):
        group = events[start : start + _EVENTS_PER_INSERT]
        conn.execute(
            _INSERT_EVENTS,
            [value for e in group for value in (e.job_id, e.seq, e.blob, int(e.sealed))],
        )
    if whole < len(events):
        conn.executemany(
            "INSERT INTO events (job_id, seq, blob, sealed) VALUES (?, ?, ?, ?)",
            [(e.job_id, e.seq, e.blob, int(e.sealed)) for e in events[whole:]],
        )


def _job_values(job: JobRow) -> tuple[Any, ...]:
    return (
        job.job_id,
        job.principal,
        job.agent,
        job.status,
        job.created_at,
        job.trace_id,
        job.parent_job_id,
        job.summary,
        job.accepted,
        job.last_seq,
        job.completed_at,
        job.outcome,
    )


def _encode_cursor(row: JobRow) -> str:
    raw = f"{row.created_at!r}|{row.job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, job_id = raw.split("|", 1)
        return float(created_at), job_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(
            "cursor is not one this runtime issued", details={"field": "cursor"}
        ) from None
