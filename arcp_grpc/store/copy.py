"""`arcp-grpc store copy`: move an embedded SQLite store into a PostgreSQL one.

What a node's history is made of goes across as stored, byte for byte: jobs
(summaries, sealed acceptances, outcomes), their event logs, the idempotency
claims still inside their window (so a keyed resubmit after the move replays the
original `job.accepted`, §7.2), the credential ledger (unrevoked credentials stay
to be revoked) and the sealing-key check. Sealed rows are not reopened: the
cluster must use the same key file as the SQLite node did.

Sessions are not copied: on SQLite they live in memory and end with the process.
The copy refuses a source with jobs still running (stop the node gracefully
first: its running jobs end) and a destination that already holds jobs, so it
can neither lose nor merge state silently. Rows go in with COPY, a page at a
time, one transaction in all: an interrupted copy leaves the destination empty.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from arcp_grpc.store.postgres.driver_errors import DRIVER_ERRORS
from arcp_grpc.store.postgres.schema import prepare as prepare_postgres
from arcp_grpc.store.rows import JOB_COLUMNS
from arcp_grpc.store.sqlite.schema import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION

__all__ = ["Copied", "CopyError", "copy_sqlite_to_postgres"]

_PAGE = 5000  # rows per COPY round
_CREDENTIAL_COLUMNS = [
    "credential_id",
    "version",
    "job_id",
    "provisioner",
    "sealed_value",
    "retired",
    "minted_at",
    "revoked_at",
]


class CopyError(Exception):
    """The copy cannot be made safely; nothing was written."""


@dataclass(frozen=True, slots=True)
class Copied:
    """How many rows of each kind went across."""

    jobs: int
    events: int
    claims: int
    credentials: int


#: Called with (what, rows so far, rows in all) as pages go across.
Progress = Callable[[str, int, int], None]


def open_source(sqlite_file: Path) -> sqlite3.Connection:
    """The SQLite store, read-only, checked to be a stopped node's: same schema version,
    no job left unfinished."""
    if not sqlite_file.is_file():
        raise CopyError(f"{sqlite_file} is not a SQLite store file")
    source = sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True)
    try:
        _check_source(source)
    except BaseException:
        source.close()
        raise
    return source


async def copy_sqlite_to_postgres(
    source: sqlite3.Connection, postgres_dsn: str, *, progress: Progress, now: float
) -> Copied:
    """Copy the `open_source` store into the (empty) store at `postgres_dsn`."""
    try:
        target = await asyncpg.connect(postgres_dsn)
    except DRIVER_ERRORS as exc:
        raise CopyError(f"cannot use the PostgreSQL store: {exc}") from None
    try:
        await prepare_postgres(target)
        async with target.transaction():
            if await target.fetchval("SELECT EXISTS (SELECT 1 FROM jobs)"):
                raise CopyError("the PostgreSQL store already holds jobs: copy into an empty one")
            return await _copy(source, target, progress, now)
    finally:
        await target.close()


def _check_source(source: sqlite3.Connection) -> None:
    try:
        version = source.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise CopyError(f"not an arcp-grpc SQLite store: {exc}") from None
    if version is None or version[0] != SQLITE_SCHEMA_VERSION:
        raise CopyError(
            f"the SQLite store has schema version {version and version[0]}; this runtime"
            f" copies version {SQLITE_SCHEMA_VERSION} (start it once with this runtime first)"
        )
    running = source.execute("SELECT COUNT(*) FROM jobs WHERE completed_at IS NULL").fetchone()[0]
    if running:
        raise CopyError(
            f"{running} jobs are not finished in the SQLite store: stop its node gracefully"
            " (SIGTERM) so they end, then copy"
        )


async def _copy(
    source: sqlite3.Connection, target: asyncpg.Connection, progress: Progress, now: float
) -> Copied:
    key_check = source.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()
    if key_check is not None:
        await target.execute(
            "INSERT INTO arcp_meta (key, value) VALUES ('key_check', $1)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            key_check[0],
        )
    jobs = await _table(
        source,
        target,
        progress,
        table="jobs",
        what="jobs",
        select=f"SELECT {JOB_COLUMNS} FROM jobs",
        columns=[*_columns(JOB_COLUMNS), "owner_node"],
        row=lambda r: (*r, "sqlite-copy"),  # finished jobs: no node runs them
    )
    events = await _table(
        source,
        target,
        progress,
        table="events",
        what="events",
        select="SELECT job_id, seq, blob, sealed FROM events",
        columns=["job_id", "seq", "blob", "sealed"],
        row=lambda r: (r[0], r[1], r[2], bool(r[3])),
    )
    claims = await _table(
        source,
        target,
        progress,
        table="idempotency",
        what="idempotency claims",
        select=(
            "SELECT principal, key, fingerprint, job_id, expires_at FROM idempotency"
            f" WHERE expires_at > {float(now)!r}"
        ),
        columns=["principal", "key", "fingerprint", "job_id", "expires_at"],
        row=tuple,
    )
    credentials = await _table(
        source,
        target,
        progress,
        table="credentials",
        what="credentials",
        select=f"SELECT {', '.join(_CREDENTIAL_COLUMNS)} FROM credentials",
        columns=_CREDENTIAL_COLUMNS,
        row=lambda r: (*r[:5], bool(r[5]), *r[6:]),  # SQLite keeps `retired` as 0 or 1
    )
    return Copied(jobs, events, claims, credentials)


async def _table(
    source: sqlite3.Connection,
    target: asyncpg.Connection,
    progress: Progress,
    *,
    table: str,
    what: str,
    select: str,
    columns: Sequence[str],
    row: Callable[[Any], tuple[Any, ...]],
) -> int:
    total = source.execute(f"SELECT COUNT(*) FROM ({select})").fetchone()[0]
    done = 0
    progress(what, done, total)
    for page in _pages(source, select):
        await target.copy_records_to_table(
            table, records=[row(r) for r in page], columns=list(columns)
        )
        done += len(page)
        progress(what, done, total)
    return done


def _pages(source: sqlite3.Connection, select: str) -> Iterator[list[Any]]:
    cursor = source.execute(select)
    while page := cursor.fetchmany(_PAGE):
        yield page


def _columns(listing: str) -> list[str]:
    return [name.strip() for name in listing.split(",")]
