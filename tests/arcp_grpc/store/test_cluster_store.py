"""The PostgreSQL store as a cluster's shared state (DESIGN.md, scale-out): several
`PostgresStore` instances on one schema are several nodes.

What only a shared store must guarantee: the database's unique key decides an
idempotency race between nodes (§7.2); exactly one survivor takes a dead node's
jobs and the dead node can no longer finish them; a cancel reaches the owner;
a follower on one node wakes when another commits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from arcp_grpc.base.ids import new_id
from arcp_grpc.store import (
    CredentialEntry,
    EventRow,
    IdempotencyClaim,
    IdempotencyConflict,
    JobRow,
    StoreUnavailable,
    StoreWaitExpired,
)
from arcp_grpc.store.postgres.schema import SCHEMA_VERSION
from arcp_grpc.store.postgres.store import PostgresStore
from tests.conftest import SAFETY, StoreFactory, postgres_schema

Nodes = Callable[[], Awaitable[PostgresStore]]


@pytest.fixture
async def store_url(postgres_server: str) -> AsyncIterator[str]:
    """Only PostgreSQL: these are a shared store's guarantees."""
    async with postgres_schema(postgres_server) as url:
        yield url


@pytest.fixture
def node(make_store: StoreFactory) -> Nodes:
    """Open another node on the test's schema (closed at teardown by `make_store`)."""

    async def factory() -> PostgresStore:
        store = await make_store()
        assert isinstance(store, PostgresStore)
        return store

    return factory


def _job(job_id: str) -> JobRow:
    return JobRow(job_id, "alice", "echo@1.0.0", 1, time.time(), "1" * 32, "", b"s", b"a")


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
            await store.create_job(_job(job_id), claim_for, [], time.time())
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
    await dead.create_job(_job("job_orphan"), None, [], time.time())
    await dead.create_job(_job("job_done"), None, [], time.time())
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
    states = {node_id: state for node_id, _, state, _ in await other.nodes()}
    assert states[dead.node_id] == "dead"
    assert states[survivor.node_id] == "alive"


async def test_a_cancel_reaches_the_owner_by_notification_and_by_poll(node: Nodes) -> None:
    owner, asker = await node(), await node()
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    owner.set_cancel_listener(lambda job_id, reason: heard.put_nowait((job_id, reason)))
    await owner.create_job(_job("job_far"), None, [], time.time())

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
    await runner.create_job(_job("job_live"), None, [], time.time())
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


async def test_nul_in_a_text_field_is_the_requests_error_not_the_stores(node: Nodes) -> None:
    """PostgreSQL text cannot hold NUL (SQLite can): refused as INVALID_REQUEST, and the
    store carries on."""
    store = await node()
    claim = IdempotencyClaim("alice", "bad\x00key", b"fp", time.time() + 60)
    with pytest.raises(Exception, match="refused a value") as refused:
        await store.create_job(_job("job_nul"), claim, [], time.time())
    assert type(refused.value).__name__ == "InvalidRequest"
    await store.create_job(_job("job_fine"), None, [], time.time())
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
