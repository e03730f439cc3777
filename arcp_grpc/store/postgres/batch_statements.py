"""What a group commit sends (`writer`): a batch's data as one call of the batch
function (`batch_function`: jobs created, events, ends, follows, frames and the
notification, with what each wrote read back), and the per-principal slot locks taken
ahead of a transaction's requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import asyncpg

from arcp_grpc.store.postgres.batch_function import EVENTS_CHANNEL, SLOT_LOCKS
from arcp_grpc.store.protocol import (
    EventRow,
    IdempotencyClaim,
    IdempotencyConflict,
    JobRow,
    NodeNotAlive,
    OverCap,
    SessionFrame,
)
from arcp_grpc.store.rows import job_values

__all__ = [
    "EVENTS_CHANNEL",
    "Applied",
    "Create",
    "Finish",
    "Follow",
    "apply",
    "frames_outcome",
    "lock_slots",
]

# node and again; then a column per field: jobs, events, ends, follows, frames; payloads
_ARGUMENTS = 2 + 19 + 4 + 6 + 4 + 6 + 1
_CALL = (
    "SELECT kind, key, seq, other, blob FROM arcp_write_batch_v1("
    + ", ".join(f"${n}" for n in range(1, _ARGUMENTS + 1))
    + ")"
)
_EVENT = attrgetter("job_id", "seq", "blob", "sealed")
_FINISH = attrgetter("job_id", "status", "outcome", "summary", "completed_at", "last_seq")
_FOLLOW = attrgetter("session_id", "job_id", "submitted", "after")
_FRAME = attrgetter("session_id", "seq", "job_id", "job_seq", "terminal", "frame")
_NONE = (None,) * 19
_NOTIFY_BYTES = 7000  # PostgreSQL caps a payload below 8000 bytes


@dataclass(frozen=True, slots=True)
class Create:
    """A job's creation (`PostgresStore.create_job`): owned by `owner`, with its claim,
    under `running_cap` running jobs of its principal on every node."""

    job: JobRow
    owner: str
    claim: IdempotencyClaim | None
    now: float
    running_cap: int | None

    def columns(self) -> tuple[Any, ...]:
        """Its values in the batch function's `cr_` order (the job's in `JOB_COLUMNS`')."""
        claim = self.claim
        return (
            *job_values(self.job),
            self.owner,
            self.running_cap,
            *(
                (claim.principal, claim.key, claim.fingerprint, claim.expires_at)
                if claim
                else _NONE[:4]
            ),
            self.now,
        )


@dataclass(frozen=True, slots=True)
class Follow:
    """A session follows a job (`session_jobs`), queued ahead of its first frame."""

    session_id: str
    job_id: str
    submitted: bool
    after: int


@dataclass(frozen=True, slots=True)
class Finish:
    """A job's end, recorded only by its owner (`PostgresStore.finish_job`)."""

    job_id: str
    status: int
    outcome: bytes
    summary: bytes
    completed_at: float
    last_seq: int


@dataclass(slots=True)
class Applied:
    """What one call wrote: each job created (None) or why not, the events stored, the
    ends this node holds, the sessions it holds and the frames kept, and the transaction
    id (None outside one)."""

    created: dict[str, Exception | None] = field(default_factory=dict)
    events: set[tuple[str, int]] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)
    held: set[str] = field(default_factory=set)
    kept: set[tuple[str, int]] = field(default_factory=set)
    xid: int | None = None


async def lock_slots(conn: asyncpg.Connection, principals: Set[str]) -> None:
    """Take the slot locks of `principals` (those the batch's requests name), in key order
    (a hash collision merely shares a lock); held until the batch commits."""
    if principals:
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, k) FROM (SELECT DISTINCT hashtext(p) AS k"
            " FROM unnest($2::text[]) AS p) AS keys ORDER BY k",
            SLOT_LOCKS,
            list(principals),
        )


async def apply(
    conn: asyncpg.Connection,
    node_id: str,
    *,
    creates: Sequence[Create] = (),
    events: Sequence[EventRow] = (),
    finishes: Sequence[Finish] = (),
    follows: Sequence[Follow] = (),
    frames: Sequence[SessionFrame] = (),
    touched: Sequence[str] = (),
    again: bool = False,
) -> Applied:
    """One call of the function: `touched` jobs are named in the notification sent at
    commit; `again` when the call may repeat one whose answer was lost."""
    follows = _merged(follows)
    # An empty group goes as NULL (the function skips it): cheaper to send than arrays.
    rows = await conn.fetch(
        _CALL,
        node_id,
        again,
        *(_columns(creates, Create.columns) if creates else _NONE[:19]),
        *(_columns(events, _EVENT) if events else _NONE[:4]),
        *(_columns(finishes, _FINISH) if finishes else _NONE[:6]),
        *(_columns(follows, _FOLLOW) if follows else _NONE[:4]),
        *(_columns(frames, _FRAME) if frames else _NONE[:6]),
        _payloads(touched) or None,
    )
    applied = Applied()
    for kind, key, seq, other, blob in rows:
        if kind in _JOB_KINDS:
            applied.created[key] = _refusal(kind, node_id, seq, other, blob)
        elif kind == "e":
            applied.events.add((key, seq))
        elif kind == "f":
            applied.finished.add(key)
        elif kind == "h":
            applied.held.add(key)
        elif kind == "k":
            applied.kept.add((key, seq))
        elif key is not None:
            applied.xid = int(key)
    return applied


_JOB_KINDS = frozenset("cCon")  # created; refused: a claim's conflict, over the cap, not alive


def _refusal(
    kind: str, node_id: str, count: int, holder: str, fingerprint: bytes
) -> Exception | None:
    """Why the function did not create a job (None: it did)."""
    if kind == "C":
        return IdempotencyConflict(holder, fingerprint)
    if kind == "o":
        return OverCap(count)
    if kind == "n":
        return NodeNotAlive(node_id)
    return None


def _columns(rows: Sequence[Any], fields: Callable[[Any], tuple[Any, ...]]) -> list[list[Any]]:
    """The function's arrays for one group: a column per field, in `fields`' order."""
    return [list(column) for column in zip(*map(fields, rows), strict=True)]


def frames_outcome(
    frames: Sequence[SessionFrame], applied: Applied
) -> tuple[list[SessionFrame], frozenset[str]]:
    """The frames recorded, in call order, and the sessions this node must let go of:
    those it no longer holds, and any with a frame its fence refused (the session's
    sequence would have a hole, so it is resumed from the store instead)."""
    candidates = [f for f in frames if f.session_id in applied.held]
    refused = {f.session_id for f in candidates if (f.session_id, f.seq) not in applied.kept}
    lost = frozenset(f.session_id for f in frames) - applied.held | refused
    return [f for f in candidates if f.session_id not in refused], lost


def _merged(follows: Sequence[Follow]) -> list[Follow]:
    """One row per (session, job): an upsert may not touch a row twice in a statement;
    the last follow's start stands, and a submitter stays one."""
    merged: dict[tuple[str, str], Follow] = {}
    for follow in follows:
        key = (follow.session_id, follow.job_id)
        earlier = merged.get(key)
        if earlier is not None and earlier.submitted and not follow.submitted:
            follow = Follow(follow.session_id, follow.job_id, True, follow.after)
        merged[key] = follow
    return list(merged.values())


def _payloads(touched: Sequence[str]) -> list[str]:
    """The notification's payloads: one per batch, more only past the payload cap."""
    payloads: list[str] = []
    current: list[str] = []
    size = 0
    for job_id in touched:
        if size + len(job_id) + 1 > _NOTIFY_BYTES and current:
            payloads.append(",".join(current))
            current, size = [], 0
        current.append(job_id)
        size += len(job_id) + 1
    if current:
        payloads.append(",".join(current))
    return payloads
