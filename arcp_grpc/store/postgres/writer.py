"""The PostgreSQL store's writes: one connection, one writer task, group commit.

Every write of a node goes through one task that drains its queue into a
single transaction per batch: while a commit is in flight the next batch
gathers, so a busy node pays one round trip and one commit for many events
and jobs, and an idle one commits each request at once. Order is call order,
so a job's terminal write follows its last event (the `Store` contract).

Each batch ends with one `NOTIFY arcp_events` naming the jobs it touched.
PostgreSQL delivers it only if the transaction commits, after it commits, so
a follower on another node that wakes on it always finds the rows; one that
misses it finds them on its next poll (a lost notification costs latency,
never an event).

Session frames (a session's sequenced frames, recorded before they are sent)
ride in the same batches. They are recorded only for sessions this node still
holds while this node is alive, and only for what the store holds of a job
(`_record_frames`): a node that lost a session, or was declared dead, records
nothing more, and what is not recorded is never sent. Events are written only
for the jobs this node still runs, and only the written ones are published
(`_insert_events`), so no follower sees an event the store does not hold.

A request that fails on its own (bad data for a column, a refusal such as an
idempotency conflict or a cap reached) is rolled back to its savepoint (alone
in its batch: with its transaction) and raised to its caller; anything else
(the connection lost, the server gone) fails the store, as a full disk fails
the SQLite one.

A request that takes a per-principal slot (a job, a session: DESIGN.md
"Quotas") names the principal in `lock`. The batch first takes every such
principal's advisory lock, in key order, before any other statement: the
count in the request's statement then sees every other node's committed
slots, and a node that takes the same principal's slot waits for this commit.
Taken first and in order, these locks cannot close a deadlock cycle; they
cost one statement per batch that takes a slot, not one per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from arcp_grpc.errors import InternalError, InvalidRequest
from arcp_grpc.store.protocol import EventRow, SessionFrame

__all__ = ["EVENTS_CHANNEL", "PostgresWriter", "request_error"]

log = logging.getLogger("arcp_grpc.postgres_store")

T = TypeVar("T")
Op = Callable[[asyncpg.Connection], Awaitable[Any]]
FrameListener = Callable[[Sequence[SessionFrame], frozenset[str]], None]

EVENTS_CHANNEL = "arcp_events"
_SLOT_LOCKS = 0x41524351  # the advisory-lock class of the per-principal slot locks
_NOTIFY_BYTES = 7000  # PostgreSQL caps a payload below 8000 bytes


@dataclass(slots=True)
class _Request:
    fn: Op
    future: asyncio.Future[Any]
    touches: str  # a job whose followers elsewhere should look again, or ""
    lock: str  # a principal whose slots the request counts and takes, or ""


class _Refused(Exception):
    """A lone request's own refusal, raised through its transaction so that nothing
    it wrote before refusing is committed."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def request_error(exc: BaseException) -> Exception | None:
    """The caller's error for a failure caused by the request's own data (a NUL in a
    text field, a value out of range), or None when the store itself failed."""
    if isinstance(exc, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError):
        return InvalidRequest(f"the store refused a value: {exc}")
    return None


class PostgresWriter:
    """Every write of one node, in order, committed before its caller resumes."""

    def __init__(self, conn: asyncpg.Connection, node_id: str, *, batch_limit: int = 2048) -> None:
        self._conn = conn
        self._node_id = node_id
        self._batch_limit = batch_limit
        self._queue: list[EventRow | SessionFrame | _Request] = []
        self._wake = asyncio.Event()
        self._pending = 0
        self._pending_event_bytes = 0
        self._listener: Callable[[Sequence[EventRow]], None] = lambda _events: None
        self._frame_listener: FrameListener = lambda _frames, _lost: None
        self._on_failure: Callable[[], None] = lambda: None
        self._failure: BaseException | None = None
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="arcp-postgres-writer")

    def set_commit_listener(self, listener: Callable[[Sequence[EventRow]], None]) -> None:
        self._listener = listener

    def set_failure_listener(self, listener: Callable[[], None]) -> None:
        self._on_failure = listener

    def set_frame_listener(self, listener: FrameListener) -> None:
        self._frame_listener = listener

    def backlog(self) -> tuple[int, int]:
        return self._pending, self._pending_event_bytes

    def append_event(self, event: EventRow) -> None:
        self._check_healthy()
        self._pending += 1
        self._pending_event_bytes += len(event.blob)
        self._queue.append(event)
        self._wake.set()

    def append_frame(self, frame: SessionFrame) -> None:
        self._check_healthy()
        self._pending += 1
        self._pending_event_bytes += len(frame.frame)
        self._queue.append(frame)
        self._wake.set()

    async def write(self, fn: Op, *, touches: str = "", lock: str = "") -> Any:
        """Commit `fn`'s statements (with everything queued before) before returning;
        `lock`: the principal whose slot-taking requests `fn` serialises with."""
        return await self.submit(fn, touches=touches, lock=lock)

    def submit(self, fn: Op, *, touches: str = "", lock: str = "") -> asyncio.Future[Any]:
        """Queue `fn` now, in call order with everything else; the future settles once
        it is committed (for callers that must not yield before it is queued)."""
        self._check_healthy()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending += 1
        self._queue.append(_Request(fn, future, touches, lock))
        self._wake.set()
        return future

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (at once if the store failed)."""
        if self._failure is not None:
            return
        try:
            await self.write(_nothing)
        except InternalError:
            return

    async def stop(self) -> None:
        await self.flush()
        self._stopping = True
        self._wake.set()
        await self._task

    def _check_healthy(self) -> None:
        if self._failure is not None:
            raise InternalError("the store failed and accepts no more writes") from None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                if self._stopping:
                    return
                continue
            batch = self._queue[: self._batch_limit]
            del self._queue[: self._batch_limit]
            if self._queue:
                self._wake.set()
            await self._commit(batch)

    async def _commit(self, batch: list[EventRow | SessionFrame | _Request]) -> None:
        events: list[EventRow] = []
        stored: list[EventRow] = []  # the events the store took (`_insert_events`)
        frames = [item for item in batch if isinstance(item, SessionFrame)]
        recorded: list[SessionFrame] = []
        lost: frozenset[str] = frozenset()
        written = 0
        settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        touched: dict[str, None] = {}
        alone = len(batch) == 1
        conn = self._conn
        try:
            async with conn.transaction():
                await _lock_slots(conn, batch)
                for item in batch:
                    if isinstance(item, SessionFrame):
                        continue  # recorded at the end of the batch, after its requests
                    if isinstance(item, EventRow):
                        events.append(item)
                        touched[item.job_id] = None
                        continue
                    stored += await _insert_events(conn, events[written:], self._node_id)
                    written = len(events)  # in call order
                    settled.append(await _run_request(conn, item, savepoint=not alone))
                    if item.touches:
                        touched[item.touches] = None
                stored += await _insert_events(conn, events[written:], self._node_id)
                if frames:
                    recorded, lost = await _record_frames(conn, frames, self._node_id)
                await _notify(conn, touched)
        except Exception as exc:
            own = _own_error(exc) if alone and settled == [] else None
            if own is not None and isinstance(batch[0], _Request):
                settled = [(batch[0].future, None, own)]  # rolled back: nothing else in it
                stored = []
            else:
                failure = self._fail(exc)
                settled = [(i.future, None, failure) for i in batch if isinstance(i, _Request)]
                stored = []
                recorded, lost = [], frozenset()
        self._pending -= len(batch)
        self._pending_event_bytes -= sum(
            len(i.blob) if isinstance(i, EventRow) else len(i.frame)
            for i in batch
            if not isinstance(i, _Request)
        )
        if stored:  # only what the store holds reaches a follower
            self._listener(stored)
        if frames:
            self._frame_listener(recorded, lost)
        for future, value, error in settled:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    def _fail(self, exc: BaseException) -> InternalError:
        if self._failure is None:
            log.error("store commit failed; the store stops accepting writes", exc_info=exc)
            self._failure = exc
            asyncio.get_running_loop().call_soon(self._on_failure)
        return InternalError("the store could not commit")


async def _run_request(
    conn: asyncpg.Connection, request: _Request, *, savepoint: bool
) -> tuple[asyncio.Future[Any], Any, BaseException | None]:
    """Run one request; with neighbours in the batch, inside its own savepoint so that
    its failure does not undo theirs."""
    if not savepoint:
        try:
            return request.future, await request.fn(conn), None
        except asyncpg.PostgresError:
            raise  # the transaction is aborted: `_commit` decides whose failure it is
        except Exception as exc:  # the request's own refusal: roll back what it wrote
            raise _Refused(exc) from exc
    try:
        async with conn.transaction():
            value = await request.fn(conn)
    except asyncpg.PostgresError as exc:
        own = request_error(exc)
        if own is None:
            raise
        return request.future, None, own
    except Exception as exc:
        return request.future, None, exc
    return request.future, value, None


def _own_error(exc: BaseException) -> Exception | None:
    """The caller's error when a lone request failed on its own, else None."""
    if isinstance(exc, _Refused):
        return exc.error
    return request_error(exc)


async def _lock_slots(conn: asyncpg.Connection, batch: Sequence[object]) -> None:
    """Take the slot locks of the principals the batch's requests name, in key order
    (a hash collision merely shares a lock); held until the batch commits."""
    principals = {i.lock for i in batch if isinstance(i, _Request) and i.lock}
    if principals:
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, k) FROM (SELECT DISTINCT hashtext(p) AS k"
            " FROM unnest($2::text[]) AS p) AS keys ORDER BY k",
            _SLOT_LOCKS,
            list(principals),
        )


async def _insert_events(
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


async def _record_frames(
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
    held = [
        record["session_id"]
        for record in await conn.fetch(
            "SELECT session_id FROM sessions WHERE session_id = ANY($1::text[])"
            " AND node_id = $2 AND EXISTS (SELECT 1 FROM nodes WHERE node_id = $2"
            " AND state = 'alive' FOR SHARE) FOR UPDATE",
            sessions,
            node_id,
        )
    ]
    candidates = [f for f in frames if f.session_id in set(held)]
    if not candidates:
        return [], frozenset(sessions)
    rows = await conn.fetch(
        "WITH v AS (SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::int[],"
        " $5::bool[], $6::bytea[]) AS v(session_id, seq, job_id, job_seq, terminal, frame)),"
        " kept AS (INSERT INTO session_frames (session_id, seq, job_id, job_seq, frame)"
        " SELECT v.session_id, v.seq, v.job_id, v.job_seq, v.frame FROM v WHERE v.job_id = ''"
        " OR (v.terminal AND EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = v.job_id"
        " AND j.completed_at IS NOT NULL))"
        " OR (NOT v.terminal AND (v.job_seq = 0 OR EXISTS (SELECT 1 FROM events e"
        " WHERE e.job_id = v.job_id AND e.seq = v.job_seq)))"
        " RETURNING session_id, seq, job_id),"
        " stamped AS (UPDATE sessions s SET last_seq = m.last FROM (SELECT session_id,"
        " max(seq) AS last FROM kept GROUP BY session_id) m WHERE s.session_id = m.session_id)"
        " SELECT session_id, seq FROM kept",
        [f.session_id for f in candidates],
        [f.seq for f in candidates],
        [f.job_id for f in candidates],
        [f.job_seq for f in candidates],
        [f.terminal for f in candidates],
        [f.frame for f in candidates],
    )
    kept = {(r["session_id"], r["seq"]) for r in rows}
    recorded = [f for f in candidates if (f.session_id, f.seq) in kept]
    refused = {f.session_id for f in candidates if (f.session_id, f.seq) not in kept}
    ended = [(f.session_id, f.job_id) for f in recorded if f.terminal]
    if ended:
        await conn.executemany(
            "UPDATE session_jobs SET done = TRUE WHERE session_id = $1 AND job_id = $2",
            ended,
        )
    lost = frozenset(sessions) - set(held) | refused
    return [f for f in recorded if f.session_id not in refused], lost


async def _notify(conn: asyncpg.Connection, touched: dict[str, None]) -> None:
    """One notification per batch (more only past the payload cap), sent at commit."""
    payload: list[str] = []
    size = 0
    for job_id in touched:
        if size + len(job_id) + 1 > _NOTIFY_BYTES and payload:
            await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, ",".join(payload))
            payload, size = [], 0
        payload.append(job_id)
        size += len(job_id) + 1
    if payload:
        await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, ",".join(payload))


async def _nothing(_conn: asyncpg.Connection) -> None:
    return None
