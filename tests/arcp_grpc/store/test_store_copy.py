"""`arcp-grpc store copy`: a stopped SQLite node's history moves into PostgreSQL byte for
byte, so a cluster started on it with the same key serves the old jobs, their events,
and exact replays of their keyed submits (§7.2); a copy that could lose or merge state
is refused and writes nothing."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from arcp_grpc.server import CoreConfig, start_core
from arcp_grpc.store import JobRow
from arcp_grpc.store.sqlite.store import SQLiteStore
from arcp_grpc.v1 import job_service_pb2 as pb
from tests.conftest import (
    SPENDING,
    TOKENS,
    bearer,
    new_stub,
    postgres_schema,
    submit_request,
    watch_all,
)
from tests.serve_process import run_cli

_SUBMIT = "/arcp.v1.JobService/SubmitJob"


@pytest.fixture
async def target(postgres_server: str) -> AsyncIterator[str]:
    async with postgres_schema(postgres_server) as url:
        yield url


async def _submit_raw(channel: grpc.aio.Channel, request: pb.SubmitJobRequest) -> bytes:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(_SUBMIT)
    reply = await call(request.SerializeToString(), metadata=bearer())
    assert isinstance(reply, bytes)
    return reply


async def test_a_copied_store_serves_old_jobs_and_replays_their_keys(
    tmp_path: Path, target: str
) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    keyed = submit_request("echo", {"moved": True}, key="K-moved", lease=SPENDING)
    old = await start_core(CoreConfig(data_dir=tmp_path / "data", tokens=TOKENS, store_key=key))
    async with grpc.aio.insecure_channel(old.grpc_address) as channel:
        first = await _submit_raw(channel, keyed)
        chatty = (
            await new_stub(channel).SubmitJob(
                submit_request("chatty", {"events": 30}), metadata=bearer()
            )
        ).accepted.job_id
        before = await watch_all(new_stub(channel), chatty)
    await old.stop(grace=1.0)

    done = await asyncio.to_thread(
        run_cli,
        "store",
        "copy",
        "--from",
        f"sqlite:///{tmp_path / 'data' / 'arcp.sqlite3'}",
        "--to",
        target,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("copied 2 jobs, ")
    assert "1 idempotency claims" in done.stdout
    assert "jobs: 2/2" in done.stderr  # progress, table by table

    new = await start_core(
        CoreConfig(data_dir=tmp_path / "node", tokens=TOKENS, store_key=key, store_url=target)
    )
    try:
        async with grpc.aio.insecure_channel(new.grpc_address) as channel:
            assert await _submit_raw(channel, keyed) == first  # the cached bytes (§7.2)
            after = await watch_all(new_stub(channel), chatty)
            listed = await new_stub(channel).ListJobs(pb.ListJobsRequest(), metadata=bearer())
    finally:
        await new.stop(grace=0.5)
    assert after.events == before.events
    assert after.outcome == before.outcome
    assert len(listed.jobs) == 2

    again = await asyncio.to_thread(
        run_cli, "store", "copy", "--data-dir", str(tmp_path / "data"), "--to", target
    )
    assert again.returncode == 1
    assert "already holds jobs" in again.stderr  # never merged into a store in use


async def test_a_store_with_unfinished_jobs_is_not_copied(tmp_path: Path, target: str) -> None:
    store = SQLiteStore(tmp_path / "arcp.sqlite3")
    await store.open()
    row = JobRow("job_running", "alice", "echo@1.0.0", 1, time.time(), "1" * 32, "", b"s", b"a")
    await store.create_job(row, None, [], time.time())
    await store.close()
    done = await asyncio.to_thread(
        run_cli, "store", "copy", "--data-dir", str(tmp_path), "--to", target
    )
    assert done.returncode == 1
    assert "1 jobs are not finished" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--to", "sqlite:///other.db"), "--to must be a PostgreSQL store"),
        (("--from", "postgresql://h/db", "--to", "postgresql://h/db"), "--from must be a sqlite"),
        (("--to", "mysql://h/db"), "--to: not a store URL"),
    ],
)
def test_store_copy_arguments_that_name_no_store_exit_2(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = run_cli("store", "copy", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
