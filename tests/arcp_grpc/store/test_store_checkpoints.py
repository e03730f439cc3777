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

import grpc
import pytest

from arcp_grpc.runtime import RuntimeLimits
from arcp_grpc.server import CoreConfig, start_core
from arcp_grpc.store import JobRow
from arcp_grpc.store.sqlite.store import SQLiteStore
from tests.conftest import TOKENS, bearer, new_stub, submit_request, watch_all

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
            await store.finish_job(
                f"job_{index:026d}",
                status=3,
                outcome=b"outcome",
                summary=b"summary",
                completed_at=time.time(),
                last_seq=1,
            )
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


_MiB = 1024 * 1024


@pytest.mark.timeout(120)  # megabytes through a shared machine; no timing checked
async def test_large_results_keep_the_log_under_its_limit(tmp_path: Path) -> None:
    """Issue 15, defect 5, scaled down: results of a few MiB, each a few fat group
    commits (too few for the every-256-commits checkpoint), used to pile up in the log.
    The log is truncated once it reaches `sqlite_wal_bytes`, so between jobs it holds
    at most that plus one group commit (bounded by `max_pending_event_bytes`), and a
    clean stop leaves none."""
    limit, pending = 1 * _MiB, 1 * _MiB
    config = CoreConfig(
        data_dir=tmp_path / "data",
        tokens=TOKENS,
        sqlite_wal_bytes=limit,
        limits=RuntimeLimits(max_pending_event_bytes=pending),
    )
    wal = config.data_dir / "arcp.sqlite3-wal"
    core = await start_core(config)
    peaks: list[int] = []
    try:
        async with grpc.aio.insecure_channel(core.grpc_address) as channel:
            stub = new_stub(channel)
            for _ in range(6):
                submitted = await stub.SubmitJob(
                    submit_request("report", {"bytes": 3 * _MiB}), metadata=bearer()
                )
                watched = await watch_all(stub, submitted.accepted.job_id)
                assert watched.outcome is not None
                assert watched.outcome.HasField("result")
                peaks.append(wal.stat().st_size if wal.exists() else 0)
    finally:
        await core.stop(grace=0.5)
    # One group commit is at most the pending bytes plus a chunk, and page headers.
    assert max(peaks) <= limit + 2 * pending + 256 * 1024, peaks
    assert not wal.exists()  # a clean stop: checkpointed, truncated, removed
    path = config.data_dir / "arcp.sqlite3"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert path.stat().st_size > 6 * 3 * _MiB  # every result reached the database file
