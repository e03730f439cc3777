"""WAL checkpoints run beside the store, never inside a commit on the event loop.

Without them the write-ahead log only grows (the write connection turns
SQLite's automatic checkpoint off); with them it is copied back into the
database every few hundred commits, so its file stays small and the database
file itself holds the jobs.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from arcp_grpc.sqlite_store import SQLiteStore
from arcp_grpc.store import JobRow

_JOBS = 1500


def _row(index: int) -> JobRow:
    return JobRow(
        job_id=f"job_{index:026d}",
        principal="alice",
        agent="echo@1.0.0",
        status=1,
        created_at=time.time(),
        trace_id="0" * 31 + "1",
        parent_job_id="",
        summary=os.urandom(300),
        accepted=os.urandom(350),
    )


async def test_the_log_is_checkpointed_and_stays_small(tmp_path: Path) -> None:
    path = tmp_path / "arcp.sqlite3"
    store = SQLiteStore(path)
    await store.open()
    try:
        for index in range(_JOBS):
            await store.create_job(_row(index), None, [], time.time())
            await store.finish_job(f"job_{index:026d}", 3, b"outcome", b"summary", time.time(), 1)
        await store.flush()
        wal = path.with_name(path.name + "-wal")
        # 3,000 commits of 2-4 pages each would leave a log of ~35 MiB unchecked.
        assert wal.stat().st_size < 8 * 1024 * 1024
        # Rows reach the database file itself only through a checkpoint.
        assert path.stat().st_size > _JOBS * 600
        # Another process reads the jobs while the store is open (WAL readers).
        with sqlite3.connect(path) as reader:
            assert reader.execute("SELECT count(*) FROM jobs").fetchone() == (_JOBS,)
    finally:
        await store.close()
    with sqlite3.connect(path) as reopened:
        assert reopened.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert reopened.execute(
            "SELECT count(*) FROM jobs WHERE completed_at IS NOT NULL"
        ).fetchone() == (_JOBS,)
