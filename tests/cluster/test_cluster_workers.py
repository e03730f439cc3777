"""Remote workers across a cluster (issue 23): two `serve` nodes on one PostgreSQL, an
`arcp-grpc worker` connected to node B only, jobs submitted through node A.

The node holding the worker's stream owns the job: B claims the job A handed it, runs
it (the relay, the lease, its events and its end are B's), and A's clients follow it as
any job of another node. B paused past `cluster.node_timeout_sec` has its job ended
once, by the survivor, retryable; B running again records nothing more.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from arcp import ClientInfo, WebSocketTransport
from arcp._client.client import ARCPClient

from arcp_grpc.client import Client, Event
from arcp_grpc.v1 import job_service_pb2, job_service_pb2_grpc, jobs_pb2
from tests.arcp_grpc.worker.conftest import WORKER_TOKEN, WorkerProcess, start_worker
from tests.cluster.conftest import TIMEOUT
from tests.cluster.nodes import Cluster, running_cluster, write_cluster_config
from tests.conftest import bearer

SAFETY = 30.0  # seconds; a bound on every wait, never what a test checks
_EXIT_FENCED = 75
_WORKERS = f"""
[auth.workers]
"{WORKER_TOKEN}" = "pool-b"
[workers]
wait_sec = 5
"""


@pytest.fixture
def cluster(tmp_path: Path, store_url: str) -> Iterator[Cluster]:
    config = write_cluster_config(tmp_path, store_url, node_timeout_sec=TIMEOUT, extra=_WORKERS)
    with running_cluster(tmp_path, config) as nodes:
        yield nodes


@pytest.fixture
def worker_on_b(cluster: Cluster) -> Iterator[WorkerProcess]:
    worker = start_worker(cluster.b.info["grpc"])
    try:
        yield worker
    finally:
        worker.stop()


async def _query(url: str, statement: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()


async def _workers_seen_by(node: str) -> list[jobs_pb2.WorkerInfo]:
    """ListWorkers on `node`, once it lists a worker (B publishes at once; A reads the
    store at its next heartbeat)."""
    async with grpc.aio.insecure_channel(node) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        while True:
            reply = await stub.ListWorkers(job_service_pb2.ListWorkersRequest(), metadata=bearer())
            if reply.workers:
                return list(reply.workers)
            await asyncio.sleep(0.1)


async def _rest(events: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in events]


async def _owner_label(url: str, job_id: str) -> str:
    rows = await _query(
        url,
        "SELECT n.label FROM jobs j JOIN nodes n ON n.node_id = j.owner_node WHERE j.job_id = $1",
        job_id,
    )
    return str(rows[0]["label"])


async def test_a_worker_on_node_b_runs_a_job_submitted_through_node_a(
    cluster: Cluster, worker_on_b: WorkerProcess, store_url: str
) -> None:
    seen = await asyncio.wait_for(_workers_seen_by(cluster.a.info["grpc"]), SAFETY)
    hosted = ["remote-echo", "remote-idle", "remote-spender", "remote-stream", "remote-tools"]
    assert [(w.name, [a.name for a in w.agents]) for w in seen] == [("pool-b", hosted)]
    nodes = await _query(store_url, "SELECT node_id FROM nodes WHERE label = 'node-b'")
    assert seen[0].node_id == nodes[0]["node_id"]  # the node holding the worker's stream

    arcp = ARCPClient(client=ClientInfo(name="cluster-worker", version="1"), token="tok-alice")
    await arcp.connect(await WebSocketTransport.connect(cluster.a.info["gateway"]))
    try:
        handle = await arcp.submit(agent="remote-echo", input={"via": "node-a"})
        result = await asyncio.wait_for(handle.done, SAFETY)
        events = [event async for event in handle.events()]
    finally:
        await arcp.close()
    assert result.final_status == "success"
    assert result.result == {"echo": {"via": "node-a"}, "trace": 32}
    assert [e["kind"] for e in events] == ["log", "progress"]
    assert await _owner_label(store_url, handle.job_id) == "node-b"  # B ran and recorded it


async def test_node_b_paused_past_the_timeout_has_its_job_ended_once_by_the_survivor(
    cluster: Cluster, worker_on_b: WorkerProcess, store_url: str
) -> None:
    b = cluster.b.process
    assert b is not None
    await asyncio.wait_for(_workers_seen_by(cluster.a.info["grpc"]), SAFETY)
    async with await Client.connect(cluster.a.info["grpc"], token="tok-alice") as client:
        job = await client.submit("remote-idle")
        watch = client.watch(job.job_id)
        events = aiter(watch)
        first = await asyncio.wait_for(anext(events), SAFETY)  # B runs it: its status
        assert first.kind == "status"
        os.kill(b.pid, signal.SIGSTOP)
        try:  # A takes B's job over and ends it
            rest = await asyncio.wait_for(_rest(events), TIMEOUT + SAFETY)
        finally:
            os.kill(b.pid, signal.SIGCONT)
        assert rest == []
        outcome = watch.outcome
        assert outcome is not None
        assert outcome.status == "error"
        assert outcome.error is not None
        assert (outcome.error.code, outcome.error.retryable) == ("INTERNAL_ERROR", True)
        assert b.wait(timeout=SAFETY) == _EXIT_FENCED  # B, running again, found itself dead
        again = await client.get(job.job_id)
    assert again.outcome is not None
    assert again.outcome.proto == outcome.proto  # ended once: B recorded nothing over it
    assert await _owner_label(store_url, job.job_id) == "node-a"
    stored = await _query(store_url, "SELECT seq FROM events WHERE job_id = $1", job.job_id)
    assert [r["seq"] for r in stored] == [first.seq]
