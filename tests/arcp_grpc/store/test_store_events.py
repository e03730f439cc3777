"""Events are stored in order and intact however a commit groups them (§8.3), on
both stores: on SQLite whole groups of rows go in one multi-row statement, the rest
one by one; on PostgreSQL a batch is one pipelined insert."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from arcp_grpc.store import EventRow, JobRow
from arcp_grpc.store.sqlite.writer import EVENTS_PER_INSERT
from tests.conftest import StoreFactory


@pytest.mark.parametrize("count", [1, EVENTS_PER_INSERT, 2 * EVENTS_PER_INSERT + 45])
async def test_events_read_back_in_order_and_intact(make_store: StoreFactory, count: int) -> None:
    store = await make_store()
    committed: list[EventRow] = []
    store.set_commit_listener(committed.extend)
    try:
        job = JobRow("job_x", "alice", "echo@1.0.0", 1, time.time(), "1" * 32, "", b"s", b"a")
        await store.create_job(job, None, [], time.time())
        rows = [EventRow("job_x", seq, os.urandom(40), seq % 7 == 0) for seq in range(1, count + 1)]
        for row in rows:
            store.append_event(row)
        await store.flush()
        assert committed == rows  # the listener hears each event once, in order
        assert await store.read_events("job_x", 0, count + 10) == rows
        assert await store.last_seq("job_x") == count
    finally:
        await store.close()


async def test_shared_terminal_writes_all_land(make_store: StoreFactory) -> None:
    """Terminal writes of concurrent jobs (the store sees others unfinished) share
    transactions (with each other, or with the next job's creation); each lands once, and
    `flush` waits for the ones still pending."""
    store = await make_store()
    try:
        ids = [f"job_{i:03d}" for i in range(40)]
        for job_id in ids:
            await store.create_job(
                JobRow(job_id, "alice", "echo@1.0.0", 1, time.time(), "1" * 32, "", b"s", b"a"),
                None,
                [],
                time.time(),
            )

        async def finish(job_id: str) -> None:
            await store.finish_job(
                job_id,
                status=3,
                outcome=job_id.encode(),
                summary=b"s",
                completed_at=time.time(),
                last_seq=0,
            )

        # Half finish concurrently; a creation in the same turn takes pending ones along.
        pending = [asyncio.ensure_future(finish(job_id)) for job_id in ids[:20]]
        late = JobRow("job_late", "alice", "echo@1.0.0", 1, time.time(), "1" * 32, "", b"s", b"a")
        await store.create_job(late, None, [], time.time())
        await asyncio.gather(*pending)
        # The other half: not awaited one by one; flush must cover them.
        rest = [asyncio.ensure_future(finish(job_id)) for job_id in ids[20:]]
        await asyncio.sleep(0)
        await store.flush()
        assert all(task.done() for task in rest)
        for job_id in ids:
            row = await store.get_job(job_id)
            assert row is not None
            assert row.outcome == job_id.encode()
            assert row.completed_at is not None
        assert await store.interrupted_jobs() == [await store.get_job("job_late")]
    finally:
        await store.close()
