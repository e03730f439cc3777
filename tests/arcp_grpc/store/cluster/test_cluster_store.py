"""The PostgreSQL store as a cluster's shared state (DESIGN.md, scale-out): several
`PostgresStore` instances on one schema are several nodes.

What only a shared store must guarantee: the database's unique key decides an
idempotency race between nodes (§7.2); exactly one survivor takes a dead node's
jobs and the dead node can no longer finish them; a cancel reaches the owner;
a follower on one node wakes when another commits; a principal's caps on running
jobs and sessions hold over every node, in the statement that takes the slot (§14,
DESIGN.md "Quotas"), also when nodes race for the last one.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import pytest

from arcp_grpc.base.ids import new_id
from arcp_grpc.store import (
    CredentialEntry,
    EventRow,
    IdempotencyClaim,
    IdempotencyConflict,
    OverCap,
    SessionRow,
    StoreRejected,
    StoreUnavailable,
    StoreWaitExpired,
)
from arcp_grpc.store.postgres.schema import SCHEMA_VERSION
from arcp_grpc.store.postgres.store import PostgresStore
from tests.arcp_grpc.store.cluster.conftest import Nodes, job
from tests.conftest import DRIVER_NUL, SAFETY


async def _age(url: str, store: PostgresStore, seconds: float) -> None:
    """Make `store`'s last heartbeat `seconds` old, as if the node had gone silent."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE nodes SET heartbeat_at = now() - make_interval(secs => $2) WHERE node_id = $1",
            store.node_id,
            seconds,
        )
    finally:
        await conn.close()


_JUDGE = 1.0  # s: the takeover timeout here (every node's connection is that old first)


async def test_concurrent_claims_on_two_nodes_create_one_job(node: Nodes) -> None:
    """§7.2: 50 identical keyed creations spread over two nodes: one wins, every other
    learns the winner from the unique key, never a second row."""
    a, b = await node(), await node()
    claim_for = IdempotencyClaim("alice", "K-race", b"fp", time.time() + 60)

    async def create(store: PostgresStore, i: int) -> tuple[str, bytes]:
        job_id = f"job_race_{i:02d}"
        try:
            await store.create_job(job(job_id), claim_for, [], time.time())
        except IdempotencyConflict as held:
            return held.job_id, held.fingerprint
        return job_id, b"fp"

    answers = await asyncio.gather(*(create(a if i % 2 else b, i) for i in range(50)))
    winners = [job_id for job_id, _ in answers]
    assert len(set(winners)) == 1
    assert {fingerprint for _, fingerprint in answers} == {b"fp"}
    created = [i for i in range(50) if await a.get_job(f"job_race_{i:02d}") is not None]
    assert [f"job_race_{i:02d}" for i in created] == [winners[0]]


async def test_one_survivor_takes_a_dead_nodes_jobs_and_fences_it(
    node: Nodes, store_url: str
) -> None:
    dead, survivor, other = await node(), await node(), await node()
    await dead.create_job(job("job_orphan"), None, [], time.time())
    await dead.create_job(job("job_done"), None, [], time.time())
    await dead.finish_job(
        "job_done", status=3, outcome=b"out", summary=b"s", completed_at=time.time(), last_seq=0
    )
    await _age(store_url, dead, 60)
    await asyncio.sleep(_JUDGE)  # a node judges once its connection is that old (issue 20)
    assert await survivor.heartbeat()  # the live ones beat
    assert await other.heartbeat()

    taken = await survivor.take_over(timeout_sec=_JUDGE)
    named = [(node, [r.job_id for r in rows]) for node, rows in taken]
    assert named == [(f"test/{dead.node_id}", ["job_orphan"])]  # label/node_id
    assert await other.take_over(timeout_sec=_JUDGE) == []  # exactly one survivor ends each
    assert await dead.heartbeat() is False  # fenced: it must stop, and cannot rejoin as is
    dead.append_event(EventRow("job_orphan", 1, b"late event"))
    await dead.flush()
    assert await other.read_events("job_orphan", 0, 10) == []  # its late output is dropped
    await dead.finish_job(
        "job_orphan", status=3, outcome=b"late", summary=b"s", completed_at=time.time(), last_seq=0
    )
    await survivor.finish_job(
        "job_orphan", status=4, outcome=b"ended", summary=b"s", completed_at=time.time(), last_seq=0
    )
    row = await other.get_job("job_orphan")
    assert row is not None
    assert (row.status, row.outcome) == (4, b"ended")  # the dead node's late end lost
    assert await survivor.heartbeat() is True
    states = {row.node_id: row.state for row in await other.nodes()}
    assert states[dead.node_id] == "dead"
    assert states[survivor.node_id] == "alive"


async def test_a_cancel_reaches_the_owner_by_notification_and_by_poll(node: Nodes) -> None:
    owner, asker = await node(), await node()
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    owner.set_cancel_listener(lambda job_id, reason: heard.put_nowait((job_id, reason)))
    await owner.create_job(job("job_far"), None, [], time.time())

    assert await asker.request_cancel("job_far", "stop it") is True
    assert await asyncio.wait_for(heard.get(), SAFETY) == ("job_far", "stop it")
    assert await owner.cancel_requests() == [("job_far", "stop it")]  # a missed one is polled
    assert await asker.cancel_requests() == []  # only the owner's
    await owner.finish_job(
        "job_far",
        status=5,
        outcome=b"cancelled",
        summary=b"s",
        completed_at=time.time(),
        last_seq=0,
    )
    assert await asker.request_cancel("job_far", "again") is False  # ended: nothing to stop


async def test_a_follower_wakes_on_another_nodes_commit(node: Nodes) -> None:
    """LISTEN/NOTIFY wakes a follower early; with a poll longer than the safety net, only a
    notification can end the wait in time."""
    runner, watcher = await node(), await node()
    await runner.create_job(job("job_live"), None, [], time.time())
    changes = watcher.changes("job_live")
    try:
        waiting = asyncio.ensure_future(changes.wait(poll_sec=3 * SAFETY))
        await asyncio.sleep(0)
        runner.append_event(EventRow("job_live", 1, b"e1"))
        await runner.flush()
        await asyncio.wait_for(waiting, SAFETY)
        assert [r.seq for r in await watcher.read_events("job_live", 0, 10)] == [1]
        # A commit before the next wait is not lost: the wait returns at once.
        runner.append_event(EventRow("job_live", 2, b"e2"))
        await runner.flush()
        await asyncio.wait_for(changes.wait(poll_sec=3 * SAFETY), SAFETY)
    finally:
        changes.close()


async def test_nul_in_a_text_field_is_the_requests_error_not_the_stores(
    node: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL text cannot hold NUL (SQLite can): the store's `StoreRejected` (the
    edge's INVALID_REQUEST) in its own words, the driver's text only in its log, and the
    store carries on."""
    store = await node()
    claim = IdempotencyClaim("alice", "bad\x00key", b"fp", time.time() + 60)
    with (
        caplog.at_level(logging.WARNING, logger="arcp_grpc.postgres_store"),
        pytest.raises(StoreRejected) as refused,
    ):
        await store.create_job(job("job_nul"), claim, [], time.time())
    assert refused.value.message == (
        "the store refused a value: a text holds a character it cannot keep (NUL)"
    )
    assert [r for r in caplog.records if DRIVER_NUL in r.getMessage()] != []
    await store.create_job(job("job_fine"), None, [], time.time())
    assert await store.get_job("job_fine") is not None


async def test_a_newer_schema_is_refused(node: Nodes, store_url: str) -> None:
    await node()  # creates the schema
    conn = await asyncpg.connect(store_url)
    try:
        newer = str(int(SCHEMA_VERSION) + 1)
        await conn.execute("UPDATE arcp_meta SET value = $1 WHERE key = 'schema_version'", newer)
    finally:
        await conn.close()
    with pytest.raises(StoreUnavailable, match=f"schema version {newer}"):
        await node()


async def test_a_version_1_credential_ledger_is_migrated(node: Nodes, store_url: str) -> None:
    """Version 2 keys the ledger by (credential_id, version); a version 1 row stays
    due, as version 0, and a rotation may add version 1 beside it (§9.8.2, §14)."""
    conn = await asyncpg.connect(store_url)
    try:
        await conn.execute(
            "CREATE TABLE arcp_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO arcp_meta VALUES ('schema_version', '1');"
            "CREATE TABLE credentials (credential_id TEXT PRIMARY KEY, job_id TEXT NOT NULL,"
            " provisioner TEXT NOT NULL, sealed_value BYTEA NOT NULL,"
            " revoked_at DOUBLE PRECISION);"
            "INSERT INTO credentials VALUES ('cred_1', 'job_gone', 'dev', '\\x01', NULL)"
        )
    finally:
        await conn.close()
    store = await node()
    (due,) = await store.unrevoked_credentials()
    assert (due.credential_id, due.version, due.why) == ("cred_1", 0, "not accepted")
    await store.rotate_credential(
        "cred_1", 0, CredentialEntry("cred_1", "job_gone", "dev", b"\x02", 1)
    )
    assert sorted((e.version, e.retired) for e in await store.live_credentials()) == [
        (0, True),
        (1, False),
    ]


async def test_an_unreachable_database_is_waited_for_then_a_clear_startup_error() -> None:
    """Issue 20: a database not up yet is waited for `store.connect_timeout_sec`, then
    `StoreWaitExpired` (`serve` exits 75 on it, so systemd starts it again)."""
    unreachable = PostgresStore(
        "postgresql://nobody@127.0.0.1:1/none",
        node_id=new_id("node"),
        label="test",
        connect_timeout_sec=0.5,
    )
    started = time.monotonic()
    with pytest.raises(StoreWaitExpired, match=r"did not answer within store.connect_timeout_sec"):
        await unreachable.open()
    assert 0.5 <= time.monotonic() - started < 10


async def test_a_database_that_refuses_the_node_is_not_waited_for(postgres_server: str) -> None:
    """A database that answers and refuses (no such database) is a configuration error
    at once (exit 2): waiting would not mend it."""
    wrong = postgres_server.rsplit("/", 1)[0] + "/no_such_database"
    refused = PostgresStore(wrong, node_id=new_id("node"), label="test", connect_timeout_sec=30)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot use the PostgreSQL store") as raised:
        await refused.open()
    assert not isinstance(raised.value, StoreWaitExpired)
    assert time.monotonic() - started < 10


_WINDOW = 60.0  # the resume window the session tests count within


async def _finish(store: PostgresStore, job_id: str) -> None:
    await store.finish_job(
        job_id, status=3, outcome=b"out", summary=b"s", completed_at=time.time(), last_seq=0
    )


async def test_running_jobs_are_capped_over_every_node(node: Nodes) -> None:
    """§14: alice's cap of 3 counts her running jobs on both nodes; a refused creation
    writes nothing, not even the claim taken before the insert; bob is unaffected; an
    end frees a slot; a child (no cap: its root was admitted) is never refused."""
    a, b = await node(), await node()
    for store, job_id in ((a, "job_c1"), (b, "job_c2"), (a, "job_c3")):
        await store.create_job(job(job_id), None, [], time.time(), running_cap=3)
    claim = IdempotencyClaim("alice", "K-over", b"fp", time.time() + 60)
    with pytest.raises(OverCap) as over:
        await b.create_job(job("job_c4"), claim, [], time.time(), running_cap=3)
    assert over.value.held == 3
    assert await a.get_job("job_c4") is None
    assert await a.find_claim("alice", "K-over", time.time()) is None
    await b.create_job(job("job_bob", "bob"), None, [], time.time(), running_cap=3)
    await b.create_job(job("job_child"), None, [], time.time())
    await _finish(a, "job_c1")
    await _finish(b, "job_child")
    await b.create_job(job("job_c5"), claim, [], time.time(), running_cap=3)
    assert await a.find_claim("alice", "K-over", time.time()) == ("job_c5", b"fp")


async def test_nodes_racing_for_the_last_slots_admit_exactly_the_cap(node: Nodes) -> None:
    """Twelve creations at once over two nodes, cap 5: the slot lock makes one node's
    count wait for the other's commit, so exactly five are created; the refused ones
    share batches with admitted ones and undo none of them."""
    a, b = await node(), await node()

    async def create(store: PostgresStore, i: int) -> int | None:
        """None when created, else what the refusal says the principal holds."""
        try:
            await store.create_job(job(f"job_r{i:02d}"), None, [], time.time(), running_cap=5)
        except OverCap as over:
            return over.held
        return None

    held = await asyncio.gather(*(create(a if i % 2 else b, i) for i in range(12)))
    admitted = [h is None for h in held]
    assert sum(admitted) == 5
    assert {h for h in held if h is not None} == {5}
    created = [i for i in range(12) if await a.get_job(f"job_r{i:02d}") is not None]
    assert created == [i for i, ok in enumerate(admitted) if ok]


def _session(session_id: str, principal: str = "alice") -> SessionRow:
    return SessionRow(session_id, principal, 1, (), b"token-" + session_id.encode(), 1, "")


async def test_sessions_are_capped_over_every_node(node: Nodes, store_url: str) -> None:
    """§14: attached sessions and detached ones still resumable count on every node;
    one detached longer than the resume window does not (its node forgot it too)."""
    a, b = await node(), await node()
    await a.create_session(_session("sess_1"), 2, _WINDOW)
    await b.create_session(_session("sess_2"), 2, _WINDOW)
    with pytest.raises(OverCap) as over:
        await a.create_session(_session("sess_3"), 2, _WINDOW)
    assert over.value.held == 2
    assert await b.load_session("sess_3") is None
    await a.create_session(_session("sess_bob", "bob"), 2, _WINDOW)
    await b.detach_session("sess_2")
    with pytest.raises(OverCap):
        await a.create_session(_session("sess_3"), 2, _WINDOW)  # still resumable: held
    conn = await asyncpg.connect(store_url)
    try:
        await conn.execute(
            "UPDATE sessions SET detached_at = detached_at - $1 WHERE session_id = 'sess_2'",
            2 * _WINDOW,
        )
    finally:
        await conn.close()
    await a.create_session(_session("sess_3"), 2, _WINDOW)


async def test_nodes_racing_for_the_last_session_slots_admit_exactly_the_cap(
    node: Nodes,
) -> None:
    a, b = await node(), await node()

    async def open_one(store: PostgresStore, i: int) -> bool:
        try:
            await store.create_session(_session(f"sess_r{i:02d}"), 3, _WINDOW)
        except OverCap:
            return False
        return True

    admitted = await asyncio.gather(*(open_one(a if i % 2 else b, i) for i in range(10)))
    assert sum(admitted) == 3


async def test_a_resume_counts_its_session_once_and_respects_the_cap(node: Nodes) -> None:
    """A resume moves a session between nodes: under the cap it goes through (the
    session is not counted twice); with more other sessions than the cap it is refused
    and the session stays where it was (§14: a resume counts like a hello)."""
    a, b = await node(), await node()
    for store, session_id in ((a, "sess_m1"), (b, "sess_m2")):
        await store.create_session(_session(session_id), 2, _WINDOW)
    row = await b.load_session("sess_m1")
    assert row is not None
    assert await b.claim_session(row, row.token_digest, b"next-1", _WINDOW, 2) == 2
    row = await a.load_session("sess_m2")
    assert row is not None
    with pytest.raises(OverCap) as over:  # the cap was lowered to 1 meanwhile
        await a.claim_session(row, row.token_digest, b"next-2", _WINDOW, 1)
    assert over.value.held == 1
    held = await a.load_session("sess_m2")
    assert held is not None
    assert (held.node_id, held.generation) == (b.node_id, 1)
