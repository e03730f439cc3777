"""The statements of one group commit (`writer`): the per-principal slot locks, the
fenced inserts of events and session frames, and the batch's wake-up notification with
its transaction id.

Each is one round trip for the whole batch (arrays through `unnest`), and each
carries its own fence in the statement, so a node the cluster declared dead, or
that lost a session or a job, writes nothing of it (issue 20): what is not
written is never published nor sent.
"""

from __future__ import annotations

from collections.abc import Sequence, Set

import asyncpg

from arcp_grpc.store.protocol import EventRow, SessionFrame

__all__ = ["EVENTS_CHANNEL", "insert_events", "lock_slots", "notify_and_xid", "record_frames"]

EVENTS_CHANNEL = "arcp_events"
_SLOT_LOCKS = 0x41524351  # the advisory-lock class of the per-principal slot locks
_NOTIFY_BYTES = 7000  # PostgreSQL caps a payload below 8000 bytes


async def lock_slots(conn: asyncpg.Connection, principals: Set[str]) -> None:
    """Take the slot locks of `principals` (those the batch's requests name), in key order
    (a hash collision merely shares a lock); held until the batch commits."""
    if principals:
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, k) FROM (SELECT DISTINCT hashtext(p) AS k"
            " FROM unnest($2::text[]) AS p) AS keys ORDER BY k",
            _SLOT_LOCKS,
            list(principals),
        )


async def insert_events(
    conn: asyncpg.Connection, events: Sequence[EventRow], node_id: str
) -> list[EventRow]:
    """Each event only while its job is this node's and running; returns the events
    written, the only ones the commit listener publishes. Once a survivor has taken a job
    over (this node was declared dead), a late event of it is dropped and never reaches a
    follower, so the job's record is never written by two nodes and no client sees an
    event the store does not hold. `FOR SHARE` on the job row makes a takeover in flight
    (which updates that row) wait for this insert, or this insert see its result."""
    if not events:
        return []
    rows = await conn.fetch(
        "INSERT INTO events (job_id, seq, blob, sealed)"
        " SELECT v.job_id, v.seq, v.blob, v.sealed"
        " FROM unnest($1::text[], $2::int[], $3::bytea[], $4::bool[])"
        " AS v(job_id, seq, blob, sealed)"
        " WHERE EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = v.job_id AND j.owner_node = $5"
        " AND j.completed_at IS NULL FOR SHARE) RETURNING job_id, seq",
        [e.job_id for e in events],
        [e.seq for e in events],
        [e.blob for e in events],
        [e.sealed for e in events],
        node_id,
    )
    if len(rows) == len(events):
        return list(events)
    written = {(r["job_id"], r["seq"]) for r in rows}
    return [e for e in events if (e.job_id, e.seq) in written]


async def record_frames(
    conn: asyncpg.Connection, frames: Sequence[SessionFrame], node_id: str
) -> tuple[list[SessionFrame], frozenset[str]]:
    """Record the frames the fence lets through; returns them, and the sessions this node
    must let go of (their clients resume elsewhere and get what the store holds).

    A frame is recorded only for a session this node still holds, while this node is
    alive (`FOR SHARE` on its row: a takeover in flight waits, or goes first and the
    frame is refused), and, for a job's frame, only if the store holds what it carries:
    an event frame's event (or a status frame of no event, `job_seq` 0), a terminal
    frame only once the job's end is recorded (the runtime publishes only the recorded
    end, `Executor`). A session with a refused frame is lost: its sequence would have a
    hole, so it is dropped here and resumed from the store. Locking the sessions rows
    (`FOR UPDATE`) orders this against a concurrent resume on another node."""
    sessions = list(dict.fromkeys(f.session_id for f in frames))
    # One statement (issue 21): the held sessions, the frames kept, the sessions' last
    # sequence and the follows a terminal frame ends; rows tagged 'held' or 'kept'.
    rows = await conn.fetch(
        "WITH held AS (SELECT session_id FROM sessions WHERE session_id = ANY($1::text[])"
        " AND node_id = $7 AND EXISTS (SELECT 1 FROM nodes WHERE node_id = $7"
        " AND state = 'alive' FOR SHARE) FOR UPDATE),"
        " v AS (SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::int[],"
        " $5::bool[], $6::bytea[]) AS v(session_id, seq, job_id, job_seq, terminal, frame)"
        " WHERE v.session_id IN (SELECT session_id FROM held)),"
        " kept AS (INSERT INTO session_frames (session_id, seq, job_id, job_seq, frame)"
        " SELECT v.session_id, v.seq, v.job_id, v.job_seq, v.frame FROM v WHERE v.job_id = ''"
        " OR (v.terminal AND EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = v.job_id"
        " AND j.completed_at IS NOT NULL))"
        " OR (NOT v.terminal AND (v.job_seq = 0 OR EXISTS (SELECT 1 FROM events e"
        " WHERE e.job_id = v.job_id AND e.seq = v.job_seq)))"
        " RETURNING session_id, seq, job_id),"
        " stamped AS (UPDATE sessions s SET last_seq = m.last FROM (SELECT session_id,"
        " max(seq) AS last FROM kept GROUP BY session_id) m WHERE s.session_id = m.session_id),"
        # A recorded terminal frame ends its session's follow of the job, in this statement.
        " ended AS (UPDATE session_jobs sj SET done = TRUE FROM kept JOIN v"
        " ON v.session_id = kept.session_id AND v.seq = kept.seq WHERE v.terminal"
        " AND sj.session_id = kept.session_id AND sj.job_id = kept.job_id)"
        " SELECT 'held' AS what, session_id, 0 AS seq FROM held"
        " UNION ALL SELECT 'kept', session_id, seq FROM kept",
        [f.session_id for f in frames],
        [f.seq for f in frames],
        [f.job_id for f in frames],
        [f.job_seq for f in frames],
        [f.terminal for f in frames],
        [f.frame for f in frames],
        node_id,
    )
    held = {r["session_id"] for r in rows if r["what"] == "held"}
    candidates = [f for f in frames if f.session_id in held]
    kept = {(r["session_id"], r["seq"]) for r in rows if r["what"] == "kept"}
    recorded = [f for f in candidates if (f.session_id, f.seq) in kept]
    refused = {f.session_id for f in candidates if (f.session_id, f.seq) not in kept}
    lost = frozenset(sessions) - held | refused
    return [f for f in recorded if f.session_id not in refused], lost


async def notify_and_xid(conn: asyncpg.Connection, touched: dict[str, None]) -> int | None:
    """The batch's last statement: one notification (more only past the payload cap),
    sent at commit, and the transaction's id (None when the batch wrote nothing), which
    the writer looks up after a lost COMMIT; one round trip for both (issue 21)."""
    payload: list[str] = []
    size = 0
    for job_id in touched:
        if size + len(job_id) + 1 > _NOTIFY_BYTES and payload:
            await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, ",".join(payload))
            payload, size = [], 0
        payload.append(job_id)
        size += len(job_id) + 1
    if not payload:
        xid: int | None = await conn.fetchval("SELECT txid_current_if_assigned()")
        return xid
    # pg_notify assigns no transaction id, so reading it beside the notification is the
    # same as reading it after.
    row = await conn.fetchrow(
        "SELECT txid_current_if_assigned() AS xid, pg_notify($1, $2)",
        EVENTS_CHANNEL,
        ",".join(payload),
    )
    assert row is not None
    return row["xid"]  # type: ignore[no-any-return]
