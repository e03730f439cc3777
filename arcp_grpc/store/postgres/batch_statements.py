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
LANGUAGE plpgsql AS $fn$
DECLARE
    held TEXT[];
    payload TEXT;
BEGIN
    -- Events, only while their job is this node's and running (FOR SHARE: a takeover
    -- in flight waits for this insert, or this insert sees its result).
    IF cardinality(ev_job) > 0 THEN
        RETURN QUERY
        WITH v AS (SELECT * FROM unnest(ev_job, ev_seq, ev_blob, ev_sealed)
                   AS v(job_id, seq, blob, sealed)),
        present AS (SELECT v.job_id, v.seq FROM v JOIN events e
                    ON e.job_id = v.job_id AND e.seq = v.seq AND e.blob = v.blob WHERE again),
        ins AS (INSERT INTO events (job_id, seq, blob, sealed)
                SELECT v.job_id, v.seq, v.blob, v.sealed FROM v
                WHERE EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = v.job_id
                              AND j.owner_node = node AND j.completed_at IS NULL FOR SHARE)
                ON CONFLICT DO NOTHING RETURNING events.job_id, events.seq)
        SELECT 'e', ins.job_id, ins.seq FROM ins
        UNION ALL SELECT 'e', present.job_id, present.seq FROM present;
    END IF;
    -- Ends: only the owner finishes a job; this very end recorded already counts.
    IF cardinality(fin_job) > 0 THEN
        RETURN QUERY
        WITH v AS (SELECT * FROM unnest(fin_job, fin_status, fin_outcome, fin_summary,
                   fin_at, fin_last) AS v(job_id, status, outcome, summary, at, last)),
        ended AS (UPDATE jobs j SET status = v.status, outcome = v.outcome,
                  summary = v.summary, completed_at = v.at, last_seq = v.last FROM v
                  WHERE j.job_id = v.job_id AND j.owner_node = node
                  AND j.completed_at IS NULL RETURNING j.job_id)
        SELECT 'f', ended.job_id, 0 FROM ended
        UNION ALL SELECT 'f', j.job_id, 0 FROM jobs j JOIN v ON j.job_id = v.job_id
        WHERE j.owner_node = node AND j.completed_at IS NOT NULL AND j.outcome = v.outcome;
    END IF;
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
        RETURN QUERY
        WITH v AS (SELECT * FROM unnest(fr_session, fr_seq, fr_job, fr_job_seq, fr_terminal,
                   fr_frame) AS v(session_id, seq, job_id, job_seq, terminal, frame)
                   WHERE v.session_id = ANY(held)),
        present AS (SELECT v.session_id, v.seq, v.job_id FROM v JOIN session_frames f
                    ON f.session_id = v.session_id AND f.seq = v.seq AND f.frame = v.frame
                    WHERE again),
        ins AS (INSERT INTO session_frames (session_id, seq, job_id, job_seq, frame)
                SELECT v.session_id, v.seq, v.job_id, v.job_seq, v.frame FROM v
                WHERE v.job_id = ''
                OR (v.terminal AND EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = v.job_id
                    AND j.completed_at IS NOT NULL))
                OR (NOT v.terminal AND (v.job_seq = 0 OR EXISTS (SELECT 1 FROM events e
                    WHERE e.job_id = v.job_id AND e.seq = v.job_seq)))
                ON CONFLICT DO NOTHING
                RETURNING session_frames.session_id, session_frames.seq, session_frames.job_id),
        kept AS (SELECT * FROM ins UNION ALL SELECT * FROM present),
        stamped AS (UPDATE sessions s SET last_seq = GREATEST(s.last_seq, m.last)
                    FROM (SELECT kept.session_id, max(kept.seq) AS last FROM kept
                          GROUP BY kept.session_id) m WHERE s.session_id = m.session_id),
        -- A recorded terminal frame ends its session's follow of the job.
        finished AS (UPDATE session_jobs sj SET done = TRUE FROM kept JOIN v
                     ON v.session_id = kept.session_id AND v.seq = kept.seq
                     WHERE v.terminal AND sj.session_id = kept.session_id
                     AND sj.job_id = kept.job_id)
        SELECT 'k', kept.session_id, kept.seq FROM kept;
    END IF;
    FOREACH payload IN ARRAY payloads LOOP
        PERFORM pg_notify('@CHANNEL@', payload);
    END LOOP;
    -- The transaction's id when the caller runs one (NULL if nothing was written).
    RETURN QUERY SELECT 'x', txid_current_if_assigned()::TEXT, 0;
END
$fn$;
""".replace("@CHANNEL@", EVENTS_CHANNEL)

_CALL = (
    "SELECT kind, key, seq FROM arcp_write_batch_v1($1, $2, $3, $4, $5, $6, $7, $8, $9,"
    " $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
)
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
    rows = await conn.fetch(
        _CALL,
        node_id,
        again,
        [e.job_id for e in events],
        [e.seq for e in events],
        [e.blob for e in events],
        [e.sealed for e in events],
        [f.job_id for f in finishes],
        [f.status for f in finishes],
        [f.outcome for f in finishes],
        [f.summary for f in finishes],
        [f.completed_at for f in finishes],
        [f.last_seq for f in finishes],
        [f.session_id for f in follows],
        [f.job_id for f in follows],
        [f.submitted for f in follows],
        [f.after for f in follows],
        [f.session_id for f in frames],
        [f.seq for f in frames],
        [f.job_id for f in frames],
        [f.job_seq for f in frames],
        [f.terminal for f in frames],
        [f.frame for f in frames],
        _payloads(touched),
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
