"""The embedded store: one SQLite file in WAL mode with group commit.

Writes, their ordering, group commit and WAL checkpoints are
`arcp_grpc.store.sqlite.writer`'s; the schema and its migrations
`arcp_grpc.store.sqlite.schema`'s. This module holds what the store means: the
statements behind each `Store` operation, the reads, and the recovery mark.
Reads use a second connection on their own thread (WAL lets them run beside
the writer); a lookup by key runs on the loop, on the writer's connection,
while the writer thread is idle.

Disk space stays bounded (issue 15): the log is checkpointed and truncated
once it reaches `wal_limit` bytes (`SQLiteWriter`), `journal_size_limit`
caps what a reused log keeps, and a clean stop closes the reader first so the
writer's closing checkpoint leaves no log at all. Finished jobs past the
retention window are deleted (`purge_jobs`) and the pages they held are
handed back to the file system by incremental vacuum (`reclaim`), so the file
stays near the size of the live data.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from arcp_grpc.store.protocol import (
    CredentialEntry,
    EventRow,
    Handoff,
    IdempotencyClaim,
    IdempotencyConflict,
    JobPage,
    JobQuery,
    JobRow,
    UnrevokedCredential,
)
from arcp_grpc.store.rows import (
    JOB_COLUMNS,
    UNREVOKED_CREDENTIALS,
    job_page,
    job_values,
    list_jobs_statement,
)
from arcp_grpc.store.sqlite.schema import prepare as prepare_schema
from arcp_grpc.store.sqlite.schema import recovery_mark
from arcp_grpc.store.sqlite.writer import SQLiteWriter

__all__ = ["WAL_LIMIT", "SQLiteStore"]

log = logging.getLogger("arcp_grpc.sqlite_store")

T = TypeVar("T")

WAL_LIMIT = 32 * 1024 * 1024  # bytes of log that trigger a truncating checkpoint
_VACUUM_STEP = 8 * 1024 * 1024  # bytes of free pages given back per transaction


class SQLiteStore:
    """`Store` on a SQLite file. Safe to reopen: schema creation is idempotent."""

    def __init__(self, path: Path, *, batch_limit: int = 2048, wal_limit: int = WAL_LIMIT) -> None:
        self._path = path
        self._wal = path.with_name(path.name + "-wal")
        self._batch_limit = batch_limit
        self._wal_limit = wal_limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: SQLiteWriter | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        # Jobs created and not finished, by id, in rowid order: the first is where
        # recovery must start scanning (`_sqlite_schema`). Touched by whichever of
        # the loop or the writer thread holds the connection.
        self._unfinished: dict[str, int] = {}
        self._next_rowid = 1
        self._recovery_from = 1

    @property
    def cluster(self) -> None:
        """One process holds the file: never shared by a cluster."""
        return None

    # -- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        write_conn = self._connect()
        write_conn.execute("PRAGMA wal_autocheckpoint=0")  # the writer thread checkpoints
        # A log that is reused after a checkpoint is cut back to this size.
        write_conn.execute(f"PRAGMA journal_size_limit={int(self._wal_limit)}")
        try:
            prepare_schema(write_conn)
        except BaseException:
            write_conn.close()
            raise
        self._load_unfinished(write_conn)
        self._writer = SQLiteWriter(
            write_conn,
            before_checkpoint=self._save_recovery_mark,
            wal=self._wal,
            wal_limit=self._wal_limit,
            batch_limit=self._batch_limit,
        )
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arcp-store-reader")
        self._read_conn = await self._loop.run_in_executor(self._reader, self._connect)

    async def close(self) -> None:
        """The reader closes first: then the writer's connection is the last one, its
        truncating checkpoint waits for nobody, and closing it removes the log."""
        if self._writer is None:
            return
        if self._reader is not None and self._read_conn is not None:
            assert self._loop is not None
            await self._loop.run_in_executor(self._reader, self._read_conn.close)
            self._reader.shutdown(wait=True)
            self._reader = None
            self._read_conn = None
        await self._writer.stop()
        self._writer = None

    def _load_unfinished(self, conn: sqlite3.Connection) -> None:
        """Jobs a previous process left unfinished, found from the persisted mark."""
        self._recovery_from = recovery_mark(conn)
        rows = conn.execute(
            "SELECT job_id, rowid FROM jobs WHERE rowid >= ? AND completed_at IS NULL"
            " ORDER BY rowid",
            (self._recovery_from,),
        ).fetchall()
        self._unfinished = dict(rows)
        (self._next_rowid,) = conn.execute(
            "SELECT COALESCE(MAX(rowid), 0) + 1 FROM jobs"
        ).fetchone()

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
        # Taken by a new file only, and only before WAL mode writes its header; an
        # older file gets it by its migration to schema version 4 (`_sqlite_schema`).
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    # -- the writer ------------------------------------------------------

    def set_commit_listener(self, listener: Callable[[Sequence[EventRow]], None]) -> None:
        self._writes().set_commit_listener(listener)

    def set_failure_listener(self, listener: Callable[[], None]) -> None:
        self._writes().set_failure_listener(listener)

    def write_backlog(self) -> tuple[int, int]:
        return self._writes().backlog()

    def append_event(self, event: EventRow) -> None:
        self._writes().append_event(event)

    def _writes(self) -> SQLiteWriter:
        assert self._writer is not None, "store is not open"
        return self._writer

    # -- writes ----------------------------------------------------------

    async def key_check(self, sealed: bytes) -> bytes:
        def op(conn: sqlite3.Connection) -> bytes:
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('key_check', ?)", (sealed.hex(),)
            )
            stored = conn.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()
            return bytes.fromhex(stored[0])

        return await self._writes().write(op)

    async def create_job(
        self,
        job: JobRow,
        claim: IdempotencyClaim | None,
        credentials: Sequence[CredentialEntry],
        now: float,
        *,
        running_cap: int | None = None,
        handoff: Handoff | None = None,
    ) -> None:
        """`running_cap` is not read: this node is the whole store, and its own count of
        running jobs (checked before, without a round trip) is the truth. A single node
        has no peer to hand a job to (`handoff`)."""
        if handoff is not None:
            raise ValueError("a single node's store has no other node to hand a job to")

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
                f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                job_values(job),
            ).lastrowid
            if credentials:
                _insert_credentials(conn, credentials)
            assert rowid is not None
            self._unfinished[job.job_id] = rowid  # last: only once every statement held
            self._next_rowid = rowid + 1

        # Creations in one turn of the loop (a SubmitJobs stream, many sessions) share a
        # transaction; each is committed before its `job.accepted` goes out all the same.
        await self._writes().write_soon(op)

    async def finish_job(
        self,
        job_id: str,
        *,
        status: int,
        outcome: bytes,
        summary: bytes,
        completed_at: float,
        last_seq: int,
    ) -> bool:
        """While other jobs are unfinished too, the end may wait for the end of the loop's
        turn and share a transaction with theirs (`write_soon`); a lone job's end is
        written at once. The store counts its own unfinished jobs (`_unfinished`), so the
        runtime passes no hint. One process owns the file: every job is its to finish."""

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE jobs SET status = ?, outcome = ?, summary = ?, completed_at = ?,"
                " last_seq = ? WHERE job_id = ?",
                (status, outcome, summary, completed_at, last_seq, job_id),
            )
            self._unfinished.pop(job_id, None)

        if len(self._unfinished) > 1:  # this job and at least one other
            await self._writes().write_soon(op)
        else:
            await self._writes().write(op)
        return True

    async def flush(self) -> None:
        await self._writes().flush()

    async def mark_revoked(self, credential_id: str, version: int) -> None:
        await self._writes().write(
            lambda conn: conn.execute(
                "UPDATE credentials SET revoked_at = ? WHERE credential_id = ? AND version = ?",
                (time.time(), credential_id, version),
            )
        )

    async def record_credentials(self, entries: Sequence[CredentialEntry]) -> None:
        await self._writes().write(lambda conn: _insert_credentials(conn, entries))

    async def rotate_credential(self, old_id: str, old_version: int, new: CredentialEntry) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE credentials SET retired = 1 WHERE credential_id = ? AND version = ?",
                (old_id, old_version),
            )
            _insert_credentials(conn, [new])

        await self._writes().write(op)

    async def purge_claims(self, now: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM idempotency WHERE expires_at <= ?", (now,)).rowcount

        return await self._writes().write(op)

    async def purge_jobs(self, finished_before: float, limit: int) -> int:
        """Walk jobs in rowid (creation) order and stop at the first created after
        `finished_before`: old jobs sit at the front, so a purge reads what it deletes
        and little more, with no index on `completed_at` to pay for at every finish.
        The newest job is kept: rowids must only grow (the recovery mark relies on it,
        `_sqlite_schema`), and SQLite picks max(rowid) + 1 for the next one."""

        def op(conn: sqlite3.Connection) -> int:
            newest = conn.execute("SELECT MAX(rowid) FROM jobs").fetchone()[0]
            doomed: list[tuple[str]] = []
            rows = conn.execute(
                "SELECT rowid, job_id, created_at, completed_at FROM jobs ORDER BY rowid"
            )
            for rowid, job_id, created_at, completed_at in rows:
                if created_at >= finished_before or rowid == newest or len(doomed) >= limit:
                    break
                if completed_at is None or completed_at >= finished_before:
                    continue
                # Passed over, not counted, so such jobs never stall the purge behind them.
                held = conn.execute(
                    "SELECT 1 FROM credentials WHERE job_id = ? AND revoked_at IS NULL LIMIT 1",
                    (job_id,),
                ).fetchone()
                if held is None:
                    doomed.append((job_id,))
            rows.close()
            conn.executemany("DELETE FROM events WHERE job_id = ?", doomed)
            conn.executemany("DELETE FROM credentials WHERE job_id = ?", doomed)
            conn.executemany("DELETE FROM jobs WHERE job_id = ?", doomed)
            return len(doomed)

        return await self._writes().write_in_thread(op)

    async def reclaim(self) -> None:
        """Hand free pages back to the file system (`auto_vacuum=INCREMENTAL`), a step
        per transaction so the log stays under its limit and other writes interleave."""
        step = max(1, min(_VACUUM_STEP, self._wal_limit // 2))

        def op(conn: sqlite3.Connection) -> int:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA incremental_vacuum({max(1, step // page_size)})").fetchall()
            left: int = conn.execute("PRAGMA freelist_count").fetchone()[0]
            return left

        left = -1
        while left != 0:
            before, left = left, await self._writes().write_in_thread(op)
            if before != -1 and left >= before:
                return  # nothing more to give back (auto_vacuum off), or others free pages too

    async def disk_usage(self) -> dict[str, int]:
        """Bytes of the database file and of its write-ahead log (a `stat` each)."""
        return {"database": _file_bytes(self._path), "wal": _file_bytes(self._wal)}

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
        conn = self._writer.idle_connection() if self._writer is not None else None
        if conn is not None:
            return fn(conn)
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
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            return None if row is None else JobRow(*row)

        return await self._lookup(fn)

    async def list_jobs(self, query: JobQuery) -> JobPage:
        sql, args = list_jobs_statement(query, _qmark)

        def fn(conn: sqlite3.Connection) -> JobPage:
            return job_page([JobRow(*r) for r in conn.execute(sql, args).fetchall()], query.limit)

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
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE rowid >= ? AND completed_at IS NULL"
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
                "SELECT credential_id, job_id, provisioner, sealed_value, version, retired"
                " FROM credentials WHERE revoked_at IS NULL"
            ).fetchall()
            return [CredentialEntry(a, b, c, d, e, bool(f)) for a, b, c, d, e, f in rows]

        return await self._read(fn)

    async def unrevoked_credentials(self) -> list[UnrevokedCredential]:
        return await self._read(unrevoked_credentials)


def _insert_credentials(conn: sqlite3.Connection, entries: Sequence[CredentialEntry]) -> None:
    now = time.time()
    conn.executemany(
        "INSERT INTO credentials (credential_id, version, job_id, provisioner, sealed_value,"
        " retired, minted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (e.credential_id, e.version, e.job_id, e.provisioner, e.sealed_value, e.retired, now)
            for e in entries
        ],
    )


def unrevoked_credentials(conn: sqlite3.Connection) -> list[UnrevokedCredential]:
    """Values due for revocation and still live (§14), oldest first. A plain function
    of a connection, so the operator CLI can run it on a read-only one while the
    core holds the store."""
    rows = conn.execute(UNREVOKED_CREDENTIALS).fetchall()
    return [UnrevokedCredential(*r) for r in rows]


def _file_bytes(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _qmark(_n: int) -> str:
    """sqlite3's parameter style."""
    return "?"
