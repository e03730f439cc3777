"""The PostgreSQL store's writes: one connection, one writer task, group commit.

Every write of a node goes through one task that drains its queue into one
batch: while a commit is in flight the next batch gathers, so a busy node pays
one round trip and one commit for many events and jobs, and an idle one commits
each write at once. Order is call order, so a job's terminal write follows its
last event (the `Store` contract).

Most writes are data (a job's creation, its events and end, a session's frames
and follows): the batch function writes a batch's data in one call
(`batch_function`, issue 21), so a batch of data alone is one round trip and its
own transaction. A batch with requests (writes with more to do than the function
knows: a session's claim, a job with credentials or a handoff) is one explicit
transaction: the data queued before each request is written first, and a last
call writes the rest with the frames.
Each batch sends one `NOTIFY arcp_events` naming the jobs it touched.
PostgreSQL delivers it only if the transaction commits, after it commits, so
a follower on another node that wakes on it always finds the rows; one that
misses it finds them on its next poll (a lost notification costs latency,
never an event).

Session frames (a session's sequenced frames, recorded before they are sent)
are recorded only for sessions this node still holds while this node is alive,
and only for what the store holds of a job: a node that lost a session, or was
declared dead, records nothing more, and what is not recorded is never sent.
Events are written only for the jobs this node still runs, and only the written
ones are published, so no follower sees an event the store does not hold.

A request that fails on its own (bad data for a column, a refusal such as an
idempotency conflict or a cap reached) is rolled back to its savepoint (alone
in its batch: with its transaction) and raised to its caller: a value the server
refused as `StoreRejected`, its driver text only in the log (`driver_errors`).

A request that takes a per-principal slot (a job, a session: DESIGN.md
"Quotas") names the principal in `lock`. The batch first takes every such
principal's advisory lock, in key order, before any other statement: the
count in the request's statement then sees every other node's committed
slots, and a node that takes the same principal's slot waits for this commit.
Taken first and in order, these locks cannot close a deadlock cycle; they
cost one statement per batch that takes a slot, not one per request.

A lost connection (the database restarted, the node's backends terminated, the
network cut) is not a failure (issue 20): the writer reconnects with bounded
backoff (`reconnect`) while the batch and everything queued behind it wait in
memory (bounded by the runtime's back-pressure: emitters wait beyond
`runtime.max_pending_event_bytes`), and the outage listener turns the node
NOT_SERVING meanwhile. Nothing is applied twice. A transaction reads its id
before COMMIT (in the batch function's answer), and after a reconnect
`txid_status` says whether the lost COMMIT took effect; if it did, the batch's
results stand (its events are published once, its requests answered with what
they returned); if not, the whole batch runs again, as if for the first time.
A batch of data alone has no id to look up: it runs again once its old backend
has ended, and the batch function counts what that attempt stored as written
(`again`), so the retry answers what the lost attempt did. Anything else (a
statement the server refuses for no fault of the request) fails the store for
good, as a full disk fails the SQLite one: every request then gets `StoreFailed`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from arcp_grpc.store.errors import StoreFailed
from arcp_grpc.store.postgres.batch_statements import (
    Applied,
    Create,
    Finish,
    Follow,
    apply,
    frames_outcome,
    lock_slots,
)
from arcp_grpc.store.postgres.driver_errors import request_error
from arcp_grpc.store.postgres.reconnect import is_connection_loss, reconnected
from arcp_grpc.store.protocol import EventRow, SessionFrame

__all__ = ["PostgresWriter"]

log = logging.getLogger("arcp_grpc.postgres_store")

T = TypeVar("T")
Op = Callable[[asyncpg.Connection], Awaitable[Any]]
FrameListener = Callable[[Sequence[SessionFrame], frozenset[str]], None]

_STOP_WAIT_SEC = 5.0  # after the runtime's own wait (10 s), for an unreachable store
_END_BACKEND_TRIES = 100  # of _SETTLE_SEC each: a backend ends within ms of its signal
_SETTLE_SEC = 0.1  # after ending a stale backend, before asking its transaction's fate again


@dataclass(slots=True)
class _Request:
    fn: Op
    future: asyncio.Future[Any]
    touches: str  # a job whose followers elsewhere should look again, or ""
    lock: str  # a principal whose slots the request counts and takes, or ""


@dataclass(slots=True)
class _Data:
    """A job's creation or end, or a session's follow: written by the batch function; the
    future settles with whether an end is this node's (None for the others), or with
    why a job was not created."""

    item: Create | Finish | Follow
    future: asyncio.Future[Any]


_Item = EventRow | SessionFrame | _Request | _Data


class _Refused(Exception):
    """A lone request's own refusal, raised through its transaction so that nothing
    it wrote before refusing is committed."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


class PostgresWriter:
    """Every write of one node, in order, committed before its caller resumes."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        node_id: str,
        *,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        batch_limit: int = 2048,
    ) -> None:
        self._conn = conn
        self._connect = connect
        self._node_id = node_id
        self._batch_limit = batch_limit
        self._queue: list[_Item] = []
        self._wake = asyncio.Event()
        self._pending = 0
        self._pending_event_bytes = 0
        self._listener: Callable[[Sequence[EventRow]], None] = lambda _events: None
        self._frame_listener: FrameListener = lambda _frames, _lost: None
        self._on_failure: Callable[[], None] = lambda: None
        self._on_outage: Callable[[bool], None] = lambda _lost: None
        self._failure: BaseException | None = None
        self._reachable = True
        self._up_since = self._lost_at = time.monotonic()
        self._inflight: list[_Item] = []
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

    def append_data(self, item: Create | Finish | Follow) -> asyncio.Future[Any]:
        """Queue a job's creation or end, or a session's follow, now, in call order; the
        future settles once committed: for an end, whether the store holds this node's;
        for a creation, None or the refusal (`IdempotencyConflict`, `OverCap`,
        `NodeNotAlive`)."""
        self._check_healthy()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending += 1
        self._queue.append(_Data(item, future))
        self._wake.set()
        return future

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (at once if the store failed)."""
        if self._failure is not None:
            return
        try:
            await self.write(_nothing)
        except StoreFailed:
            return

    async def stop(self) -> None:
        """Commit what is queued, then end the task. A store that stays unreachable
        for `_STOP_WAIT_SEC` loses what was queued (said in the log): the process is
        stopping and cannot keep it anywhere."""
        try:
            await asyncio.wait_for(self.flush(), _STOP_WAIT_SEC)
        except TimeoutError:
            self._abandon()
            return
        self._stopping = True
        self._wake.set()
        await self._task

    # -- state -----------------------------------------------------------

    def set_outage_listener(self, listener: Callable[[bool], None]) -> None:
        self._on_outage = listener

    def reachable(self) -> bool:
        return self._reachable

    @property
    def connection(self) -> asyncpg.Connection:
        """The connection in use now (a new one after each reconnect)."""
        return self._conn

    def up_for(self) -> float:
        """Seconds since this node's connection to the store was last (re)made; 0 while
        the store is unreachable."""
        return time.monotonic() - self._up_since if self._reachable else 0.0

    def _check_healthy(self) -> None:
        if self._failure is not None:
            raise StoreFailed("the store failed and accepts no more writes") from None

    # -- the task --------------------------------------------------------

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
            self._inflight = batch
            await self._commit(batch)
            self._inflight = []

    async def _commit(self, batch: list[_Item]) -> None:
        """Commit `batch` once, whatever happens to the connection meanwhile: a batch
        whose connection was lost is committed again on a new one, unless the
        database says its transaction did commit (its answer was what got lost)."""
        attempt = _Attempt()
        while True:
            try:
                await self._apply(batch, attempt)
                break
            except Exception as exc:
                if is_connection_loss(exc) and self._failure is None:
                    try:
                        if await self._committed_after_reconnect(attempt, exc):
                            break
                    except Exception as fatal:  # not a lost connection: the store failed
                        exc = fatal
                    else:
                        attempt = _Attempt(again=True)
                        continue
                self._refused(batch, attempt, exc)
                break
        self._pending -= len(batch)
        self._pending_event_bytes -= sum(
            len(i.blob) if isinstance(i, EventRow) else len(i.frame)
            for i in batch
            if isinstance(i, EventRow | SessionFrame)
        )
        if attempt.events:
            self._listener(attempt.events)
        if any(isinstance(i, SessionFrame) for i in batch):
            self._frame_listener(attempt.recorded, attempt.lost)
        for future, value, error in attempt.settled:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    async def _apply(self, batch: list[_Item], attempt: _Attempt) -> None:
        """A batch of data alone is one call of the batch function, its own transaction;
        one with requests is one transaction, the data between them written by a call
        each and the rest (with the frames and the notification) by a last call, which
        also reads the transaction id, so that a lost COMMIT can be looked up."""
        conn = self._conn
        frames = [item for item in batch if isinstance(item, SessionFrame)]
        touched: dict[str, None] = {}
        segment: list[EventRow | _Data] = []
        if not any(isinstance(item, _Request) for item in batch):
            segment = [i for i in batch if isinstance(i, EventRow | _Data)]
            _touch(segment, touched)
            await self._write_data(conn, segment, frames, attempt, list(touched))
            return
        alone = len(batch) == 1
        async with conn.transaction():
            await lock_slots(conn, _slots(batch))
            for item in batch:
                if isinstance(item, SessionFrame):
                    continue  # recorded at the end of the batch, after its requests
                if not isinstance(item, _Request):
                    segment.append(item)
                    continue
                if segment:  # in call order: what came before the request is written first
                    await self._write_data(conn, segment, [], attempt, ())
                    _touch(segment, touched)
                    segment = []
                attempt.settled.append(await _run_request(conn, item, savepoint=not alone))
                if item.touches:
                    touched[item.touches] = None
            _touch(segment, touched)
            await self._write_data(conn, segment, frames, attempt, list(touched))

    async def _write_data(
        self,
        conn: asyncpg.Connection,
        segment: list[EventRow | _Data],
        frames: list[SessionFrame],
        attempt: _Attempt,
        touched: Sequence[str],
    ) -> None:
        """One call of the batch function; what it wrote goes into `attempt`."""
        events = [i for i in segment if isinstance(i, EventRow)]
        data = [i for i in segment if isinstance(i, _Data)]
        applied: Applied = await apply(
            conn,
            self._node_id,
            creates=[i.item for i in data if isinstance(i.item, Create)],
            events=events,
            finishes=[i.item for i in data if isinstance(i.item, Finish)],
            follows=[i.item for i in data if isinstance(i.item, Follow)],
            frames=frames,
            touched=touched,
            again=attempt.again,
        )
        attempt.events += [e for e in events if (e.job_id, e.seq) in applied.events]
        for i in data:
            if isinstance(i.item, Create):
                attempt.settled.append((i.future, None, applied.created[i.item.job.job_id]))
            else:
                held = i.item.job_id in applied.finished if isinstance(i.item, Finish) else None
                attempt.settled.append((i.future, held, None))
        if frames:
            attempt.recorded, attempt.lost = frames_outcome(frames, applied)
        attempt.xid = applied.xid if conn.is_in_transaction() else None

    def _refused(self, batch: list[_Item], attempt: _Attempt, exc: Exception) -> None:
        """The batch did not commit and will not: a lone request's own error goes to its
        caller; anything else fails the store."""
        alone = len(batch) == 1
        own = _own_error(exc) if alone and attempt.settled == [] else None
        if own is not None and isinstance(batch[0], _Request):
            attempt.settled = [(batch[0].future, None, own)]  # rolled back: nothing else in it
        else:
            failure = self._fail(exc)
            attempt.settled = [
                (i.future, None, failure) for i in batch if isinstance(i, _Request | _Data)
            ]
        attempt.events, attempt.recorded, attempt.lost = [], [], frozenset()

    # -- a lost connection ---------------------------------------------------

    async def _committed_after_reconnect(self, attempt: _Attempt, exc: Exception) -> bool:
        """Connect again (the store is unreachable meanwhile), then whether the lost
        attempt committed: PostgreSQL keeps each recent transaction's fate
        (`txid_status`), so a batch is never applied twice and never lost."""
        if self._reachable:
            self._reachable = False
            self._lost_at = time.monotonic()
            log.warning("lost the connection to the store (%s); reconnecting", exc)
            self._on_outage(True)
        old_pid = self._conn.get_server_pid()
        while True:
            await self._reconnect()
            try:
                if attempt.xid is None:
                    # COMMIT was never sent, nothing was written, or the batch was data
                    # alone: applied again (`again`), once its old backend (if it is
                    # still applying it) has ended, so the retry sees what that wrote.
                    await self._end_backend(old_pid)
                    return False
                status = await self._conn.fetchval("SELECT txid_status($1)", attempt.xid)
                if status != "in progress":
                    return bool(status == "committed")
                # Its old backend has not noticed the lost connection (a partition):
                # ending it settles the transaction either way.
                await self._conn.execute("SELECT pg_terminate_backend($1)", old_pid)
                await asyncio.sleep(_SETTLE_SEC)
            except asyncpg.InvalidParameterValueError:
                # "in the future": a server that never saw it (a failover to a replica
                # the commit had not reached), so it did not commit there.
                return False
            except Exception as again:
                if not is_connection_loss(again):
                    raise

    async def _end_backend(self, pid: int) -> None:
        """End this node's old backend `pid` if it is still running a statement."""
        for _ in range(_END_BACKEND_TRIES):
            ended = await self._conn.fetchval(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1"
                " AND pid <> pg_backend_pid() AND state <> 'idle'"
                " AND application_name = current_setting('application_name')",
                pid,
            )
            if not ended:
                return
            await asyncio.sleep(_SETTLE_SEC)
        raise StoreFailed(f"the store's backend {pid} would not end")

    async def _reconnect(self) -> None:
        """A new connection, retried with bounded jittered backoff (`reconnect`)."""
        self._conn.terminate()
        self._conn = await reconnected(self._connect)
        if not self._reachable:
            self._reachable = True
            self._up_since = time.monotonic()
            log.warning("reconnected to the store after %.1f s", self._up_since - self._lost_at)
            self._on_outage(False)

    def _abandon(self) -> None:
        """Stop without the store: what is queued (and the batch in flight) is lost."""
        lost = self._inflight + self._queue
        log.error(
            "the store stayed unreachable for %g s while stopping: %d queued writes are lost",
            _STOP_WAIT_SEC,
            len(lost),
        )
        self._task.cancel()
        error = StoreFailed("the node stopped before the store came back", transient=True)
        for item in lost:
            if isinstance(item, _Request | _Data) and not item.future.done():
                item.future.set_exception(error)
        self._queue, self._inflight = [], []

    def _fail(self, exc: BaseException) -> StoreFailed:
        if self._failure is None:
            log.error("store commit failed; the store stops accepting writes", exc_info=exc)
            self._failure = exc
            asyncio.get_running_loop().call_soon(self._on_failure)
        return StoreFailed("the store could not commit")


@dataclass(slots=True)
class _Attempt:
    """What one attempt at a batch did: read back if its COMMIT's answer was lost."""

    events: list[EventRow] = field(default_factory=list)
    recorded: list[SessionFrame] = field(default_factory=list)
    lost: frozenset[str] = frozenset()
    settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = field(
        default_factory=list
    )
    xid: int | None = None
    again: bool = False  # a retry after a reconnect: the batch function may repeat one


def _slots(batch: list[_Item]) -> set[str]:
    """The principals whose slot locks the batch takes first: those its requests name,
    and those of its capped creations."""
    slots = {i.lock for i in batch if isinstance(i, _Request) and i.lock}
    for i in batch:
        if isinstance(i, _Data) and isinstance(i.item, Create) and i.item.running_cap is not None:
            slots.add(i.item.job.principal)
    return slots


def _touch(segment: list[EventRow | _Data], touched: dict[str, None]) -> None:
    """Add the jobs `segment` writes (events, ends) to `touched`, in call order."""
    for item in segment:
        if isinstance(item, EventRow):
            touched[item.job_id] = None
        elif isinstance(item.item, Finish):
            touched[item.item.job_id] = None


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
            if is_connection_loss(exc):
                raise
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
        if is_connection_loss(exc):
            raise
        return request.future, None, exc
    return request.future, value, None


def _own_error(exc: BaseException) -> Exception | None:
    """The caller's error when a lone request failed on its own, else None."""
    if isinstance(exc, _Refused):
        return exc.error
    return request_error(exc)


async def _nothing(_conn: asyncpg.Connection) -> None:
    return None
