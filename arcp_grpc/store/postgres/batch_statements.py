"""A group commit's data in one statement: the server-side function `arcp_write_batch_v1`,
and the per-principal slot locks taken ahead of a batch's requests.

Most of what a node writes is data, not logic: a job's events, its end, a session's
frames and the jobs it follows. Sent as statements, each was a round trip of its own
(and an explicit transaction around them two more, and the transaction id a third);
each round trip costs the node and the server more CPU than the statement itself
(issue 21: ~60 µs each side, against 10–40 µs of execution). This function takes a
batch's data as arrays and applies it in order (events, ends, follows, frames, the
wake-up notification), each with the fence it had as a statement (issue 20), and
answers what it wrote. A batch made only of data is then one round trip and one
commit, with no explicit transaction (`writer`).

Such a batch has no transaction id to look up if its answer is lost, so the function
is safe to apply again instead: with `again` (the writer's retry after a reconnect), a
row already stored with the same bytes counts as written by this call, so the retry
answers what the lost attempt did, and nothing is written twice (the unique keys). An
end recorded with the same outcome already counts as this end (`finish_job`). A frame
or event refused by its fence is never counted, so what is not stored is never sent.

The name carries a version: a node of a later release that needs another shape
creates `…_v2` beside it, and nodes of both releases run side by side.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import asyncpg

from arcp_grpc.store.protocol import EventRow, SessionFrame

__all__ = [
    "BATCH_FUNCTION",
    "EVENTS_CHANNEL",
    "Applied",
    "Finish",
    "Follow",
    "apply",
    "frames_outcome",
    "lock_slots",
]

EVENTS_CHANNEL = "arcp_events"
_SLOT_LOCKS = 0x41524351  # the advisory-lock class of the per-principal slot locks

BATCH_FUNCTION = """
CREATE OR REPLACE FUNCTION arcp_write_batch_v1(
    node TEXT, again BOOLEAN,
    ev_job TEXT[], ev_seq INTEGER[], ev_blob BYTEA[], ev_sealed BOOLEAN[],
    fin_job TEXT[], fin_status INTEGER[], fin_outcome BYTEA[], fin_summary BYTEA[],
    fin_at DOUBLE PRECISION[], fin_last INTEGER[],
    fol_session TEXT[], fol_job TEXT[], fol_submitted BOOLEAN[], fol_after INTEGER[],
    fr_session TEXT[], fr_seq INTEGER[], fr_job TEXT[], fr_job_seq INTEGER[],
    fr_terminal BOOLEAN[], fr_frame BYTEA[],
    payloads TEXT[]
) RETURNS TABLE (kind TEXT, key TEXT, seq INTEGER)
LANGUAGE plpgsql
-- Every statement below reaches rows by their primary key alone (a test of a partial
-- index's column, such as owner_node or completed_at, is made on the row found, never
-- in the lookup): a generic plan then cannot wander into an index of every running or
-- finished job. Sequential scans are priced out as a second guard.
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
DECLARE
    held TEXT[];
    k_session TEXT[];
    k_seq INTEGER[];
    t_session TEXT[];
    t_job TEXT[];
    owner TEXT;
    ended DOUBLE PRECISION;
    recorded BYTEA;
    i INTEGER;
    payload TEXT;
BEGIN
    -- Events, only while their job is this node's and running (FOR SHARE: a takeover
    -- in flight waits for this insert, or this insert sees its result).
    IF cardinality(ev_job) > 0 THEN
        RETURN QUERY
        WITH v AS (SELECT * FROM unnest(ev_job, ev_seq, ev_blob, ev_sealed)
                   AS v(job_id, seq, blob, sealed)),
        ins AS (INSERT INTO events (job_id, seq, blob, sealed)
                SELECT v.job_id, v.seq, v.blob, v.sealed FROM v
                WHERE (SELECT j.owner_node = node AND j.completed_at IS NULL FROM jobs j
                       WHERE j.job_id = v.job_id FOR SHARE)
                ON CONFLICT DO NOTHING RETURNING events.job_id, events.seq)
        SELECT 'e', ins.job_id, ins.seq FROM ins
        UNION ALL SELECT 'e', v.job_id, v.seq FROM v WHERE again
        AND (SELECT e.blob FROM events e WHERE e.job_id = v.job_id AND e.seq = v.seq) = v.blob;
    END IF;
    -- Ends: only the owner finishes a job; this very end recorded already counts.
    FOR i IN 1 .. coalesce(cardinality(fin_job), 0) LOOP
        SELECT j.owner_node, j.completed_at, j.outcome INTO owner, ended, recorded
        FROM jobs j WHERE j.job_id = fin_job[i] FOR UPDATE;
        IF owner = node AND ended IS NULL THEN
            UPDATE jobs SET status = fin_status[i], outcome = fin_outcome[i],
                summary = fin_summary[i], completed_at = fin_at[i], last_seq = fin_last[i]
            WHERE job_id = fin_job[i];
            RETURN QUERY SELECT 'f', fin_job[i], 0;
        ELSIF owner = node AND recorded = fin_outcome[i] THEN
            RETURN QUERY SELECT 'f', fin_job[i], 0;
        END IF;
    END LOOP;
    -- Follows, of sessions that still exist (KEY SHARE: a delete in flight goes first).
    IF cardinality(fol_session) > 0 THEN
        INSERT INTO session_jobs (session_id, job_id, submitted, after_seq)
        SELECT v.session_id, v.job_id, v.submitted, v.after_seq
        FROM unnest(fol_session, fol_job, fol_submitted, fol_after)
             AS v(session_id, job_id, submitted, after_seq)
        WHERE EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = v.session_id
                      FOR KEY SHARE)
        ON CONFLICT (session_id, job_id) DO UPDATE
        SET submitted = session_jobs.submitted OR EXCLUDED.submitted, done = FALSE;
    END IF;
    -- Frames, of sessions this node holds while alive, carrying what the store holds.
    IF cardinality(fr_session) > 0 THEN
        held := ARRAY(SELECT s.session_id FROM sessions s WHERE s.session_id = ANY(fr_session)
                      AND s.node_id = node AND EXISTS (SELECT 1 FROM nodes n
                      WHERE n.node_id = node AND n.state = 'alive' FOR SHARE) FOR UPDATE);
        RETURN QUERY SELECT 'h', h, 0 FROM unnest(held) AS h;
        WITH v AS (SELECT * FROM unnest(fr_session, fr_seq, fr_job, fr_job_seq, fr_terminal,
                   fr_frame) AS v(session_id, seq, job_id, job_seq, terminal, frame)
                   WHERE v.session_id = ANY(held)),
        ins AS (INSERT INTO session_frames (session_id, seq, job_id, job_seq, frame)
                SELECT v.session_id, v.seq, v.job_id, v.job_seq, v.frame FROM v
                WHERE v.job_id = ''
                OR (v.terminal AND (SELECT j.completed_at FROM jobs j
                    WHERE j.job_id = v.job_id) IS NOT NULL)
                OR (NOT v.terminal AND (v.job_seq = 0 OR EXISTS (SELECT 1 FROM events e
                    WHERE e.job_id = v.job_id AND e.seq = v.job_seq)))
                ON CONFLICT DO NOTHING
                RETURNING session_frames.session_id, session_frames.seq),
        kept AS (SELECT ins.session_id, ins.seq FROM ins
                 UNION ALL SELECT v.session_id, v.seq FROM v WHERE again
                 AND (SELECT f.frame FROM session_frames f WHERE f.session_id = v.session_id
                      AND f.seq = v.seq) = v.frame)
        SELECT array_agg(kept.session_id), array_agg(kept.seq) INTO k_session, k_seq FROM kept;
        IF k_session IS NOT NULL THEN
            RETURN QUERY SELECT 'k', k.s, k.q FROM unnest(k_session, k_seq) AS k(s, q);
            UPDATE sessions s SET last_seq = GREATEST(s.last_seq, (SELECT max(k.q)
                FROM unnest(k_session, k_seq) AS k(s, q) WHERE k.s = s.session_id))
            WHERE s.session_id = ANY(k_session);
            -- A recorded terminal frame ends its session's follow of the job.
            SELECT array_agg(v.session_id), array_agg(v.job_id) INTO t_session, t_job
            FROM unnest(fr_session, fr_seq, fr_job, fr_terminal)
                 AS v(session_id, seq, job_id, terminal)
            WHERE v.terminal AND (v.session_id, v.seq) IN
                  (SELECT * FROM unnest(k_session, k_seq));
            FOR i IN 1 .. coalesce(cardinality(t_session), 0) LOOP
                UPDATE session_jobs SET done = TRUE
                WHERE session_id = t_session[i] AND job_id = t_job[i];
            END LOOP;
        END IF;
    END IF;
    IF payloads IS NOT NULL THEN
        FOREACH payload IN ARRAY payloads LOOP
            PERFORM pg_notify('@CHANNEL@', payload);
        END LOOP;
    END IF;
    -- The transaction's id when the caller runs one (NULL if nothing was written).
    RETURN QUERY SELECT 'x', txid_current_if_assigned()::TEXT, 0;
END
$fn$;
""".replace("@CHANNEL@", EVENTS_CHANNEL)

_CALL = (
    "SELECT kind, key, seq FROM arcp_write_batch_v1($1, $2, $3, $4, $5, $6, $7, $8, $9,"
    " $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
)
_EVENT = attrgetter("job_id", "seq", "blob", "sealed")
_FINISH = attrgetter("job_id", "status", "outcome", "summary", "completed_at", "last_seq")
_FOLLOW = attrgetter("session_id", "job_id", "submitted", "after")
_FRAME = attrgetter("session_id", "seq", "job_id", "job_seq", "terminal", "frame")
_NONE = (None,) * 6
_NOTIFY_BYTES = 7000  # PostgreSQL caps a payload below 8000 bytes


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
    """What one call wrote: the events stored, the ends this node holds, the sessions
    it holds and the frames kept, and the transaction id (None outside one)."""

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
            _SLOT_LOCKS,
            list(principals),
        )


async def apply(
    conn: asyncpg.Connection,
    node_id: str,
    *,
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
        *(_columns(events, _EVENT) if events else _NONE[:4]),
        *(_columns(finishes, _FINISH) if finishes else _NONE[:6]),
        *(_columns(follows, _FOLLOW) if follows else _NONE[:4]),
        *(_columns(frames, _FRAME) if frames else _NONE[:6]),
        _payloads(touched) or None,
    )
    applied = Applied()
    for kind, key, seq in rows:
        if kind == "e":
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


def _columns(rows: Sequence[Any], fields: attrgetter[Any]) -> list[list[Any]]:
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
