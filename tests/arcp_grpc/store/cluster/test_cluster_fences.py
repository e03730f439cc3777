"""The PostgreSQL store's fences (issue 20, item 1): a node declared dead creates no
job, finishes none, publishes no event and records no session frame; what it would
have emitted is refused in the same statements, whatever the runtime above still does.
Several `PostgresStore` instances on one schema are several nodes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import asyncpg
import pytest

from arcp_grpc.store import (
    EventRow,
    IdempotencyClaim,
    NodeNotAlive,
    SessionFrame,
    SessionRow,
)
from arcp_grpc.store.postgres.store import PostgresStore
from tests.arcp_grpc.store.cluster.conftest import Nodes, job

Recorded = list[tuple[list[SessionFrame], frozenset[str]]]
_JUDGE = 1.0  # seconds: the takeover's timeout, and how long the survivor waits first


async def _sql(url: str, statement: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()


async def _declared_dead(url: str, dead: PostgresStore, survivor: PostgresStore) -> None:
    """`dead` went silent and `survivor` took it over (its running jobs included). The
    survivor judges only once its own connection is `_JUDGE` old (issue 20, item 2)."""
    await _sql(
        url,
        "UPDATE nodes SET heartbeat_at = now() - interval '60 seconds' WHERE node_id = $1",
        dead.node_id,
    )
    await asyncio.sleep(_JUDGE)
    await survivor.take_over(timeout_sec=_JUDGE)


async def _finish(store: PostgresStore, job_id: str, outcome: bytes) -> bool:
    return await store.finish_job(
        job_id, status=4, outcome=outcome, summary=b"s", completed_at=time.time(), last_seq=0
    )


async def test_a_dead_node_creates_no_job_with_or_without_a_key(
    node: Nodes, store_url: str
) -> None:
    dead, survivor = await node(), await node()
    await _declared_dead(store_url, dead, survivor)
    claim = IdempotencyClaim("alice", "K-dead", b"fp", time.time() + 60)
    with pytest.raises(NodeNotAlive):
        await dead.create_job(job("job_keyed"), claim, [], time.time())
    with pytest.raises(NodeNotAlive):
        await dead.create_job(job("job_plain"), None, [], time.time())
    assert await survivor.get_job("job_keyed") is None
    assert await survivor.get_job("job_plain") is None
    assert await survivor.find_claim("alice", "K-dead", time.time()) is None  # key still free
    await survivor.create_job(job("job_alive"), claim, [], time.time())  # alive: created


async def test_finish_job_says_whether_the_store_holds_this_end(
    node: Nodes, store_url: str
) -> None:
    dead, survivor = await node(), await node()
    await dead.create_job(job("job_taken"), None, [], time.time())
    await dead.create_job(job("job_mine"), None, [], time.time())
    assert await _finish(dead, "job_mine", b"done") is True
    assert await _finish(dead, "job_mine", b"done") is True  # the same end applied again
    assert await _finish(dead, "job_mine", b"other") is False  # not this end
    await _declared_dead(store_url, dead, survivor)
    assert await _finish(survivor, "job_taken", b"survivor's") is True
    assert await _finish(dead, "job_taken", b"late success") is False
    row = await survivor.get_job("job_taken")
    assert row is not None
    assert row.outcome == b"survivor's"


async def test_a_taken_over_jobs_late_events_are_neither_stored_nor_published(
    node: Nodes, store_url: str
) -> None:
    dead, survivor = await node(), await node()
    published: list[tuple[str, int]] = []

    def listener(events: Sequence[EventRow]) -> None:
        published.extend((e.job_id, e.seq) for e in events)

    dead.set_commit_listener(listener)
    await dead.create_job(job("job_orphan"), None, [], time.time())
    dead.append_event(EventRow("job_orphan", 1, b"before"))
    await dead.flush()
    await _declared_dead(store_url, dead, survivor)
    dead.append_event(EventRow("job_orphan", 2, b"late"))
    await dead.flush()
    assert published == [("job_orphan", 1)]  # the late one reached no follower
    assert [e.seq for e in await survivor.read_events("job_orphan", 0, 10)] == [1]


def _frame(
    session: str, seq: int, job_id: str, job_seq: int, terminal: bool = False
) -> SessionFrame:
    return SessionFrame(session, seq, job_id, job_seq, terminal, f"frame {seq}".encode())


def _listen(store: PostgresStore) -> Recorded:
    """What the frame listener reports after each commit with frames: (recorded, lost)."""
    recorded: Recorded = []
    store.set_frame_listener(lambda frames, lost: recorded.append((list(frames), lost)))
    return recorded


async def _session(store: PostgresStore, session_id: str) -> None:
    await store.create_session(SessionRow(session_id, "alice", 1, (), b"d", 1, ""), 100, 60.0)


async def _stored_frames(url: str, session_id: str) -> list[int]:
    rows = await _sql(
        url, "SELECT seq FROM session_frames WHERE session_id = $1 ORDER BY seq", session_id
    )
    return [r["seq"] for r in rows]


async def test_a_dead_node_records_no_session_frame(node: Nodes, store_url: str) -> None:
    dead, survivor = await node(), await node()
    recorded = _listen(dead)
    await _session(dead, "sess_dead")
    dead.append_session_frame(_frame("sess_dead", 1, "", 0))
    await dead.flush()
    await _declared_dead(store_url, dead, survivor)  # its sessions stay named after it
    dead.append_session_frame(_frame("sess_dead", 2, "", 0))
    await dead.flush()
    assert [([f.seq for f in frames], lost) for frames, lost in recorded] == [
        ([1], frozenset()),
        ([], frozenset({"sess_dead"})),  # not recorded, so never sent; the session let go
    ]
    assert await _stored_frames(store_url, "sess_dead") == [1]


async def test_a_job_frame_is_recorded_only_for_what_the_store_holds(
    node: Nodes, store_url: str
) -> None:
    """An event frame needs its event stored; a terminal frame needs the job's end."""
    store = await node()
    await store.create_job(job("job_j"), None, [], time.time())
    store.append_event(EventRow("job_j", 1, b"e1"))
    recorded = _listen(store)
    await _session(store, "sess_ok")
    store.append_session_frame(_frame("sess_ok", 1, "job_j", 1))
    await store.flush()
    assert await _stored_frames(store_url, "sess_ok") == [1]

    await _session(store, "sess_ghost")
    store.append_session_frame(_frame("sess_ghost", 1, "job_j", 7))  # no such event
    await store.flush()
    await _session(store, "sess_early")
    store.append_session_frame(_frame("sess_early", 1, "job_j", 1, terminal=True))  # running
    await store.flush()
    assert recorded[-2:] == [([], frozenset({"sess_ghost"})), ([], frozenset({"sess_early"}))]
    assert await _stored_frames(store_url, "sess_ghost") == []
    assert await _stored_frames(store_url, "sess_early") == []

    assert await _finish(store, "job_j", b"end") is True
    await _session(store, "sess_end")
    store.append_session_frame(_frame("sess_end", 1, "job_j", 1, terminal=True))
    await store.flush()
    assert [f.seq for f in recorded[-1][0]] == [1]


async def test_take_over_sweeps_the_jobs_of_an_owner_already_dead(
    node: Nodes, store_url: str
) -> None:
    """A job whose owner was declared dead before (a job it created in the race with
    its takeover, a node that left with a job unfinished) is swept on the next round."""
    gone, survivor = await node(), await node()
    await gone.create_job(job("job_stranded"), None, [], time.time())
    await _sql(store_url, "UPDATE nodes SET state = 'dead' WHERE node_id = $1", gone.node_id)
    taken = await survivor.take_over(timeout_sec=30)
    assert [(name, [r.job_id for r in rows]) for name, rows in taken] == [
        (f"test/{gone.node_id}", ["job_stranded"])
    ]
    assert await survivor.take_over(timeout_sec=30) == []
    owner = await _sql(store_url, "SELECT owner_node FROM jobs WHERE job_id = 'job_stranded'")
    assert owner[0]["owner_node"] == survivor.node_id
