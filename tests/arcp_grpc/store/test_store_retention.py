"""Retention (issue 15): finished jobs past the window leave the store with their
events and their revoked credentials, on both stores; running jobs and jobs whose
credentials are not yet revoked stay (§14: the sweep still needs them). SQLite
gives the space back (incremental vacuum), so the file tracks the live data.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from arcp_grpc.runtime import RuntimeLimits
from arcp_grpc.server import CoreConfig, start_core
from arcp_grpc.store import CredentialEntry, EventRow, JobRow, Store
from arcp_grpc.store.sqlite.schema import SCHEMA
from arcp_grpc.store.sqlite.store import SQLiteStore
from arcp_grpc.v1 import job_service_pb2, jobs_pb2
from tests.conftest import (
    SAFETY,
    TOKENS,
    CoreFactory,
    StoreFactory,
    arcp_error,
    bearer,
    new_stub,
    submit_request,
    watch_all,
)

if TYPE_CHECKING:
    from arcp_grpc.v1.job_service_pb2_grpc import JobServiceAsyncStub as Stub

_DONE = jobs_pb2.JOB_STATUS_SUCCESS
_OLD = time.time() - 1000.0
_CUTOFF = time.time() - 500.0


def _row(job_id: str, created_at: float) -> JobRow:
    return JobRow(
        job_id=job_id,
        principal="alice",
        agent="echo@1.0.0",
        status=jobs_pb2.JOB_STATUS_RUNNING,
        created_at=created_at,
        trace_id="0" * 31 + "1",
        parent_job_id="",
        summary=b"summary",
        accepted=b"accepted",
    )


async def _job(
    store: Store,
    job_id: str,
    *,
    created_at: float,
    finished_at: float | None,
    credential: str = "",
) -> None:
    """A job with two events, finished at `finished_at` (None: still running)."""
    credentials = [CredentialEntry(credential, job_id, "dev", b"sealed")] if credential else []
    await store.create_job(_row(job_id, created_at), None, credentials, time.time())
    for seq in (1, 2):
        store.append_event(EventRow(job_id, seq, os.urandom(64)))
    if finished_at is not None:
        await store.finish_job(
            job_id,
            status=_DONE,
            outcome=b"outcome",
            summary=b"summary",
            completed_at=finished_at,
            last_seq=2,
        )
    await store.flush()


async def test_a_purge_deletes_old_finished_jobs_and_nothing_else(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    now = time.time()
    await _job(store, "job_old_revoked", created_at=_OLD, finished_at=_OLD, credential="cred_r")
    await store.mark_revoked("cred_r", 0)
    await _job(store, "job_old_live_cred", created_at=_OLD, finished_at=_OLD, credential="cred_l")
    await _job(store, "job_old_running", created_at=_OLD, finished_at=None)
    await _job(store, "job_old_ended_late", created_at=_OLD, finished_at=now)
    await _job(store, "job_recent", created_at=now, finished_at=now)

    assert await store.purge_jobs(_CUTOFF, 100) == 1

    assert await store.get_job("job_old_revoked") is None
    assert await store.read_events("job_old_revoked", 0, 10) == []
    for kept in ("job_old_live_cred", "job_old_running", "job_old_ended_late", "job_recent"):
        assert await store.get_job(kept) is not None, kept
        assert [e.seq for e in await store.read_events(kept, 0, 10)] == [1, 2], kept
    # The unrevoked credential is still there for the sweep to revoke (§14).
    assert [c.credential_id for c in await store.live_credentials()] == ["cred_l"]
    # Once revoked, its job goes at the next purge.
    await store.mark_revoked("cred_l", 0)
    assert await store.purge_jobs(_CUTOFF, 100) == 1
    assert await store.get_job("job_old_live_cred") is None


async def test_a_purge_takes_at_most_its_limit(make_store: StoreFactory) -> None:
    store = await make_store()
    for index in range(5):
        await _job(store, f"job_{index}", created_at=_OLD + index, finished_at=_OLD + index)
    await _job(store, "job_recent", created_at=time.time(), finished_at=time.time())

    assert [await store.purge_jobs(_CUTOFF, 2) for _ in range(4)] == [2, 2, 1, 0]
    assert await store.get_job("job_recent") is not None
    await store.reclaim()  # nothing to give back on PostgreSQL; a few pages on SQLite


async def test_jobs_held_by_credentials_do_not_stall_the_purge(make_store: StoreFactory) -> None:
    """Old jobs whose credentials stay unrevoked (an upstream that keeps failing) are
    passed over, not counted against the limit: the purge reaches the jobs after them."""
    store = await make_store()
    for index in range(3):
        held = f"job_held_{index}"
        await _job(store, held, created_at=_OLD, finished_at=_OLD, credential=f"cred_{index}")
    for index in range(2):
        await _job(store, f"job_free_{index}", created_at=_OLD + 1, finished_at=_OLD + 1)
    await _job(store, "job_recent", created_at=time.time(), finished_at=time.time())

    assert await store.purge_jobs(_CUTOFF, 2) == 2
    assert await store.get_job("job_free_0") is None
    assert await store.get_job("job_free_1") is None
    assert len(await store.live_credentials()) == 3


async def _found(stub: Stub, request: job_service_pb2.GetJobRequest) -> bool:
    """Whether GetJob finds the job; any error but JOB_NOT_FOUND fails the test."""
    try:
        await stub.GetJob(request, metadata=bearer())
    except grpc.aio.AioRpcError as exc:
        if arcp_error(exc).code != "JOB_NOT_FOUND":
            raise
        return False
    return True


async def test_the_runtime_purges_past_the_retention_window(make_core: CoreFactory) -> None:
    """`runtime.retention_sec`: the purge loop deletes a job once it is that old; a
    job inside the window stays."""
    core = await make_core(limits=RuntimeLimits(idempotency_ttl_sec=1.0, retention_sec=3.0))
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        old = await stub.SubmitJob(submit_request("echo", {"n": 1}), metadata=bearer())
        await watch_all(stub, old.accepted.job_id)
        request = job_service_pb2.GetJobRequest(job_id=old.accepted.job_id)
        deadline = time.monotonic() + SAFETY  # a safety net: the loop runs every second
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            # A newer job each round, so the old one is never SQLite's newest (kept).
            newer = await stub.SubmitJob(submit_request("echo", {"n": 2}), metadata=bearer())
            await watch_all(stub, newer.accepted.job_id)
            if not await _found(stub, request):
                break
        else:
            raise AssertionError("the job was never purged")
        latest = await stub.GetJob(
            job_service_pb2.GetJobRequest(job_id=newer.accepted.job_id), metadata=bearer()
        )
        assert latest.job.job_id == newer.accepted.job_id  # inside the window: kept


_MiB = 1024 * 1024


@pytest.mark.timeout(120)  # megabytes through a shared machine; no timing checked
async def test_purged_results_give_their_space_back(tmp_path: Path) -> None:
    """The acceptance probe, scaled down: after large results, a purge of half of them
    and a clean stop, the files hold at most the live data + 10 % (the size of a
    compacted copy of the same rows) and no write-ahead log."""
    config = CoreConfig(data_dir=tmp_path / "data", tokens=TOKENS, sqlite_wal_bytes=2 * _MiB)
    core = await start_core(config)
    try:
        async with grpc.aio.insecure_channel(core.grpc_address) as channel:
            stub = new_stub(channel)
            jobs: list[str] = []
            cutoff = 0.0
            for index in range(8):
                if index == 4:
                    cutoff = time.time()  # the first four ended before it
                submitted = await stub.SubmitJob(
                    submit_request("report", {"bytes": 3 * _MiB}), metadata=bearer()
                )
                jobs.append(submitted.accepted.job_id)
                watched = await watch_all(stub, submitted.accepted.job_id)
                assert watched.outcome is not None
                assert watched.outcome.HasField("result")
            assert await core.runtime.purge_finished(cutoff) == 4
            for job_id in jobs[:4]:
                assert not await _found(stub, job_service_pb2.GetJobRequest(job_id=job_id))
            kept = await watch_all(stub, jobs[-1])  # the live ones replay in full
            assert sum(len(e.result_chunk.data) for e in kept.of("result_chunk")) == 3 * _MiB
    finally:
        await core.stop(grace=0.5)
    path = config.data_dir / "arcp.sqlite3"
    assert not path.with_name("arcp.sqlite3-wal").exists()
    compact = tmp_path / "compact.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("VACUUM INTO ?", (str(compact),))
        assert conn.execute("PRAGMA freelist_count").fetchone() == (0,)
    live = compact.stat().st_size
    assert live > 4 * 3 * _MiB  # the four kept results are in it
    assert path.stat().st_size <= live * 1.10


async def test_a_version_3_store_is_migrated_to_incremental_vacuum(tmp_path: Path) -> None:
    """Version 3 (the per-value credential ledger) had neither incremental vacuum nor the
    credentials-by-job index; version 4 adds both."""
    path = tmp_path / "arcp.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)  # the tables as version 3 left them
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '3')")
        conn.execute("INSERT INTO meta (key, value) VALUES ('recovery_from', '1')")
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    store = SQLiteStore(path)
    await store.open()
    try:
        await _job(store, "job_old", created_at=_OLD, finished_at=_OLD)
        await _job(store, "job_new", created_at=time.time(), finished_at=time.time())
        assert await store.purge_jobs(_CUTOFF, 10) == 1
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "4",
        )
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "credentials_by_job" in indexes
        assert conn.execute("SELECT job_id FROM jobs").fetchall() == [("job_new",)]
