"""The PostgreSQL store across lost connections (issue 20: a database restart costs
nothing but latency), through a real TCP proxy (`tests.pg_proxy`) in front of the
real server that cuts the store off at chosen moments.

- A batch whose COMMIT reached the server but whose answer was lost is applied
  once: its events published once, its requests answered with what they returned
  (a keyed job creation is not refused by its own claim on a second try).
- A batch cut before its COMMIT is applied once, on the new connection.
- A batch of data alone (events, a job's end: one call of the batch function, its own
  transaction, so no transaction id to look up) whose answer was lost after it
  committed is applied again harmlessly: what it wrote counts as written, nothing is
  stored twice, its events are published once and the end is still this node's.
- While the store is cut off: `reachable()` is False, the outage listener hears
  it, reads raise the retryable `StoreUnreachable`, writes wait in memory; all are
  committed once the store is back, and reads work again.
- A lost notification connection listens again and wakes every follower.
- A node judges no peer's heartbeat until its own connection has been back for
  the node timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from arcp_grpc.base.ids import new_id
from arcp_grpc.store import CredentialEntry, EventRow, IdempotencyClaim, JobRow, StoreFailed
from arcp_grpc.store.postgres.reconnect import application_name
from arcp_grpc.store.postgres.store import PostgresStore
from tests.conftest import postgres_schema
from tests.pg_proxy import PgProxy, proxied

_WITHIN = 15.0  # s: a safety net for every wait, never what a test checks
_JUDGE = 1.5  # s: the node timeout of the takeover test


@pytest.fixture
async def store_url(postgres_server: str) -> AsyncIterator[str]:
    async with postgres_schema(postgres_server) as url:
        yield url


@pytest.fixture
async def proxy(store_url: str) -> AsyncIterator[tuple[PgProxy, str]]:
    async with proxied(store_url) as made:
        yield made


@pytest.fixture
def cut(proxy: tuple[PgProxy, str]) -> PgProxy:
    return proxy[0]


@pytest.fixture
async def store(proxy: tuple[PgProxy, str]) -> AsyncIterator[PostgresStore]:
    """A node whose every connection goes through the proxy."""
    opened = PostgresStore(proxy[1], node_id=new_id("node"), label="test")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


class Published:
    """What the store's commit listener handed on, in order, and what its outage
    listener heard."""

    def __init__(self, store: PostgresStore) -> None:
        self.events: list[tuple[str, int]] = []
        self.outages: list[bool] = []
        store.set_commit_listener(self._committed)
        store.set_outage_listener(self.outages.append)

    def _committed(self, events: Sequence[EventRow]) -> None:
        self.events.extend((e.job_id, e.seq) for e in events)


def _job(job_id: str) -> JobRow:
    return JobRow(job_id, "alice", "echo@1.0.0", 1, time.time(), "1" * 32, "", b"s", b"a")


async def _count(url: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def test_a_batch_whose_commit_answer_was_lost_is_applied_and_published_once(
    store: PostgresStore, cut: PgProxy, store_url: str
) -> None:
    published = Published(store)
    await store.create_job(_job("job_a"), None, [], time.time())
    cut.cut_after(b"COMMIT")  # the next batch commits; its answer is lost
    for seq in (1, 2, 3):
        store.append_event(EventRow("job_a", seq, f"event {seq}".encode()))
    async with asyncio.timeout(_WITHIN):
        await store.flush()
    assert cut.cuts == 1
    assert published.events == [("job_a", 1), ("job_a", 2), ("job_a", 3)]  # once each
    assert await _count(store_url, "SELECT count(*) FROM events WHERE job_id = 'job_a'") == 3
    assert published.outages == [True, False]
    assert store.reachable()


@pytest.mark.parametrize(
    ("credentials", "marker"),
    [
        # A plain job is data: one batch-function call, its own transaction, applied again.
        ([], b"K-1"),
        # With credentials it is a request in a transaction: its COMMIT is looked up.
        ([CredentialEntry("cred-1", "job_keyed", "dev", b"sealed")], b"COMMIT"),
    ],
    ids=["data", "request"],
)
async def test_a_keyed_creation_whose_commit_answer_was_lost_is_not_refused_by_its_own_claim(
    store: PostgresStore,
    cut: PgProxy,
    store_url: str,
    credentials: list[CredentialEntry],
    marker: bytes,
) -> None:
    """§7.2 across a lost answer: running the creation again as if new would meet its own
    claim and answer a conflict; the writer asks the database (a transaction), or the
    batch function finds the job it made (data alone)."""
    claim = IdempotencyClaim("alice", "K-1", b"fp", time.time() + 60)
    cut.cut_after(marker)
    async with asyncio.timeout(_WITHIN):
        await store.create_job(_job("job_keyed"), claim, credentials, time.time())
    assert cut.cuts == 1
    assert await store.find_claim("alice", "K-1", time.time()) == ("job_keyed", b"fp")
    assert await _count(store_url, "SELECT count(*) FROM jobs") == 1


async def test_a_batch_cut_before_its_commit_is_applied_once_on_a_new_connection(
    store: PostgresStore, cut: PgProxy, store_url: str
) -> None:
    published = Published(store)
    # The writer's first batch prepares its last statement (the batch function, whose
    # answer carries the transaction id) before COMMIT: cut there.
    cut.cut_after(b"arcp_write_batch_v1")
    async with asyncio.timeout(_WITHIN):
        await store.create_job(_job("job_b"), None, [], time.time())
    for seq in (1, 2):
        store.append_event(EventRow("job_b", seq, b"x"))
    async with asyncio.timeout(_WITHIN):
        await store.flush()
    assert cut.cuts == 1
    assert published.events == [("job_b", 1), ("job_b", 2)]
    assert await _count(store_url, "SELECT count(*) FROM jobs") == 1
    assert await _count(store_url, "SELECT count(*) FROM events WHERE job_id = 'job_b'") == 2


async def test_a_data_batch_whose_answer_was_lost_is_published_once_and_stored_once(
    store: PostgresStore, cut: PgProxy, store_url: str
) -> None:
    published = Published(store)
    await store.create_job(_job("job_d"), None, [], time.time())
    await store.flush()
    cut.cut_after(b"lost answer 1")  # the batch's bound values: it runs, its answer is lost
    for seq in (1, 2):
        store.append_event(EventRow("job_d", seq, f"lost answer {seq}".encode()))
    for _ in range(int(_WITHIN / 0.05)):  # published once the retry commits
        if len(published.events) >= 2:
            break
        await asyncio.sleep(0.05)
    assert cut.cuts == 1
    assert published.events == [("job_d", 1), ("job_d", 2)]
    assert await _count(store_url, "SELECT count(*) FROM events WHERE job_id = 'job_d'") == 2
    assert published.outages == [True, False]


async def test_an_end_whose_answer_was_lost_is_still_this_nodes(
    store: PostgresStore, cut: PgProxy, store_url: str
) -> None:
    await store.create_job(_job("job_e"), None, [], time.time())
    await store.flush()
    cut.cut_after(b"the lost end")
    async with asyncio.timeout(_WITHIN):
        held = await store.finish_job(
            "job_e",
            status=2,
            outcome=b"the lost end",
            summary=b"s",
            completed_at=time.time(),
            last_seq=0,
        )
    assert cut.cuts == 1
    assert held  # applied again: the end recorded is this one, not a survivor's
    assert (
        await _count(
            store_url,
            "SELECT count(*) FROM jobs WHERE job_id = 'job_e' AND outcome = 'the lost end'",
        )
        == 1
    )


async def test_while_cut_off_reads_are_refused_retryably_and_writes_wait(
    store: PostgresStore, cut: PgProxy, store_url: str
) -> None:
    published = Published(store)
    await store.create_job(_job("job_c"), None, [], time.time())
    cut.down()
    store.append_event(EventRow("job_c", 1, b"during the outage"))
    flushed = asyncio.ensure_future(store.flush())
    async with asyncio.timeout(_WITHIN):
        while store.reachable():  # noqa: ASYNC110 - the writer notices on its next batch
            await asyncio.sleep(0.02)
    assert published.outages == [True]
    with pytest.raises(StoreFailed) as refused:  # the edge's StoreUnreachable, retryable
        await store.get_job("job_c")
    assert refused.value.transient
    await asyncio.sleep(0.5)
    assert not flushed.done()  # the write waits in memory: never lost, never failed
    assert store.write_backlog()[1] == len(b"during the outage")
    cut.up()
    async with asyncio.timeout(_WITHIN):
        await flushed
    assert published.outages == [True, False]
    assert published.events == [("job_c", 1)]
    row = await store.get_job("job_c")  # reads work again
    assert row is not None


async def test_every_connection_names_its_node(store: PostgresStore, store_url: str) -> None:
    """Operators (and tests) find a node's backends by `application_name`."""
    assert await store.get_job("job_none") is None  # the pool makes a connection when used
    named = await _count(
        store_url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        application_name(store.node_id),
    )
    assert named >= 3  # the writer's, the listener's, the pool's


async def test_a_lost_notification_connection_listens_again_and_wakes_followers(
    store: PostgresStore, store_url: str
) -> None:
    other = PostgresStore(store_url, node_id=new_id("node"), label="other")
    await other.open()
    try:
        await other.create_job(_job("job_d"), None, [], time.time())
        admin = await asyncpg.connect(store_url)
        try:
            # End this node's listening backend (the one waiting in LISTEN's idle state).
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1 AND query LIKE 'LISTEN%'",
                application_name(store.node_id),
            )
        finally:
            await admin.close()
        changes = store.changes("job_d")
        try:
            started = time.monotonic()
            await changes.wait(_WITHIN)  # woken once by the reconnect, not by the poll
            assert time.monotonic() - started < _WITHIN / 2
            other.append_event(EventRow("job_d", 1, b"after"))
            await other.flush()
            started = time.monotonic()
            await changes.wait(_WITHIN)  # a notification, on the new connection
            assert time.monotonic() - started < _WITHIN / 2
        finally:
            changes.close()
    finally:
        await other.close()


async def test_a_node_judges_no_peer_until_its_connection_has_been_back_for_the_timeout(
    store: PostgresStore, cut: PgProxy, store_url: str
) -> None:
    """Issue 20: nobody is declared dead for an outage the judge itself saw; once its
    connection has been back for the timeout, a silent peer is taken over as before."""
    silent = PostgresStore(store_url, node_id=new_id("node"), label="silent")
    await silent.open()
    try:
        await silent.create_job(_job("job_silent"), None, [], time.time())
        await _count(
            store_url,
            "WITH aged AS (UPDATE nodes SET heartbeat_at = now() - interval '60 s'"
            " WHERE node_id = $1 RETURNING 1) SELECT count(*) FROM aged",
            silent.node_id,
        )
        await asyncio.sleep(_JUDGE)  # the judge's connection and the server are old enough
        cut.down()
        heartbeat = asyncio.ensure_future(store.heartbeat())  # meets the outage
        await asyncio.sleep(0.3)
        cut.up()
        async with asyncio.timeout(_WITHIN):
            assert await heartbeat
        assert await store.take_over(timeout_sec=_JUDGE) == []  # just back: no judging
        await asyncio.sleep(_JUDGE)
        taken = await store.take_over(timeout_sec=_JUDGE)
        assert [[r.job_id for r in rows] for _, rows in taken] == [["job_silent"]]
    finally:
        await silent.close()
