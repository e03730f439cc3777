"""What both stores write and read the same way: a job row's columns, the listing
(§6.6) with its cursor (opaque to clients, so either store can serve a page the other
numbered after a migration) and the list of unrevoked credentials.

The listing is one statement builder for both: the SQL is the same on SQLite and
PostgreSQL but for how a parameter is written (`?` for sqlite3, `$n` for asyncpg),
which the caller passes as a function of the parameter's number."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from typing import Any

from arcp_grpc.store.errors import StoreRejected
from arcp_grpc.store.protocol import JobPage, JobQuery, JobRow

__all__ = [
    "JOB_COLUMNS",
    "UNREVOKED_CREDENTIALS",
    "decode_cursor",
    "encode_cursor",
    "job_page",
    "job_values",
    "list_jobs_statement",
]

_MAX_JOB_ID = 128  # as `arcp_grpc.base.validate.MAX_ID_CHARS`: ours are far shorter

JOB_COLUMNS = (
    "job_id, principal, agent, status, created_at, trace_id, parent_job_id, summary, accepted,"
    " last_seq, completed_at, outcome"
)

# Values due for revocation and still live (§14), oldest first, with why: what an operator
# lists (`UnrevokedCredential`). The same statement on both stores (no parameter).
UNREVOKED_CREDENTIALS = (
    "SELECT c.credential_id, c.version, c.job_id, c.provisioner, c.minted_at,"
    " CASE WHEN j.job_id IS NULL THEN 'not accepted' WHEN c.retired THEN 'rotated'"
    " ELSE 'job ended' END"
    " FROM credentials c LEFT JOIN jobs j ON j.job_id = c.job_id"
    " WHERE c.revoked_at IS NULL"
    " AND (c.retired OR j.job_id IS NULL OR j.completed_at IS NOT NULL)"
    " ORDER BY c.minted_at, c.credential_id, c.version"
)


def job_values(job: JobRow) -> tuple[Any, ...]:
    """A row's values in `JOB_COLUMNS` order."""
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


def encode_cursor(row: JobRow) -> str:
    return _cursor(row.created_at, row.job_id)


def _cursor(created_at: float, job_id: str) -> str:
    raw = f"{created_at!r}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The position (created_at, job_id) of a cursor `encode_cursor` wrote; any other text,
    whatever its bytes, is the request's error (`StoreRejected`, INVALID_REQUEST at the
    edge; §6.6: a cursor is opaque to the client; §12). Both stores build their listing
    here, so the check holds for both: a NUL byte passed on to PostgreSQL was a driver
    error (INTERNAL) per call. Only the exact text this runtime issues is taken (the
    position re-encodes to it): the lenient base64 decoder skips stray characters, and
    `1e1` or `1_0` would read as a time too."""
    try:
        created_at, job_id = (
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            .decode("ascii")
            .split("|", 1)
        )
        position = float(created_at), job_id
    except ValueError:  # not base64, not ASCII, no separator, not a number
        raise _not_issued() from None
    if (
        not math.isfinite(position[0])
        or len(job_id) > _MAX_JOB_ID
        or not job_id.isprintable()
        or _cursor(*position) != cursor
    ):
        raise _not_issued()
    return position


def _not_issued() -> StoreRejected:
    return StoreRejected("cursor is not one this runtime issued", details={"field": "cursor"})


def list_jobs_statement(
    query: JobQuery, placeholder: Callable[[int], str]
) -> tuple[str, list[Any]]:
    """The statement for one page of `query`, newest first, and its parameters in order;
    `placeholder(n)` writes the n-th parameter (from 1) in the driver's style. One row
    more than the page is asked for: whether it comes says whether a next page exists."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return placeholder(len(args))

    where = [f"principal = {arg(query.principal)}"]
    if query.statuses:
        where.append(f"status IN ({', '.join([arg(status) for status in query.statuses])})")
    if query.agent:
        if "@" in query.agent:  # name@version: that version
            where.append(f"agent = {arg(query.agent)}")
        else:  # a bare name: any of its versions
            prefix = query.agent + "@"
            where.append(f"substr(agent, 1, {arg(len(prefix))}) = {arg(prefix)}")
    if query.created_after is not None:
        where.append(f"created_at > {arg(query.created_after)}")
    if query.cursor:
        created_at, job_id = decode_cursor(query.cursor)
        where.append(f"(created_at, job_id) < ({arg(created_at)}, {arg(job_id)})")
    sql = (
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)}"
        f" ORDER BY created_at DESC, job_id DESC LIMIT {arg(query.limit + 1)}"
    )
    return sql, args


def job_page(rows: Sequence[JobRow], limit: int) -> JobPage:
    """A page from `list_jobs_statement`'s rows: the extra row, if any, means a next page."""
    page = tuple(rows[:limit])
    cursor = encode_cursor(page[-1]) if len(rows) > limit and page else ""
    return JobPage(page, cursor)
