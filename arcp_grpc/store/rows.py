"""What both stores write and read the same way: a job row's columns, the listing
cursor (opaque to clients, so either store can serve a page the other numbered after
a migration) and the list of unrevoked credentials."""

from __future__ import annotations

import base64
from typing import Any

from arcp_grpc.errors import InvalidRequest
from arcp_grpc.store.protocol import JobRow

__all__ = [
    "JOB_COLUMNS",
    "UNREVOKED_CREDENTIALS",
    "decode_cursor",
    "encode_cursor",
    "job_values",
]

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
    raw = f"{row.created_at!r}|{row.job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, job_id = raw.split("|", 1)
        return float(created_at), job_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(
            "cursor is not one this runtime issued", details={"field": "cursor"}
        ) from None
