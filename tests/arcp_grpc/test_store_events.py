"""Events are stored in order and intact however a commit groups them (§8.3):
whole groups of rows go in one multi-row statement, the rest one by one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from arcp_grpc.sqlite_store import _EVENTS_PER_INSERT, SQLiteStore
from arcp_grpc.store import EventRow, JobRow


@pytest.mark.parametrize("count", [1, _EVENTS_PER_INSERT, 2 * _EVENTS_PER_INSERT + 45])
async def test_events_read_back_in_order_and_intact(tmp_path: Path, count: int) -> None:
    store = SQLiteStore(tmp_path / "arcp.sqlite3")
    await store.open()
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
