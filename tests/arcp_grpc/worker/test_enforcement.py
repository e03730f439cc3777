"""The core, not the worker, decides a remote job's authority (issue 23; §9.3, §9.5, §9.6).

A hand-driven worker (`raw.RawWorker`) asks what a hostile or broken worker would; the
Python worker runs ordinary agents. Over real sockets against a `serve` child.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from arcp_grpc.client import Client
from arcp_grpc.errors import Unauthenticated
from arcp_grpc.v1 import errors_pb2
from arcp_grpc.v1 import worker_service_pb2 as pb
from tests.arcp_grpc.worker.conftest import WORKER_TOKEN, WorkerProcess
from tests.arcp_grpc.worker.raw import RawWorker
from tests.serve_process import ServeProcess, run_cli

SAFETY = 30.0


def _code(detail: errors_pb2.ErrorDetail) -> str:
    return errors_pb2.ErrorCode.Name(detail.code).removeprefix("ERROR_CODE_")


async def test_core_refuses_a_step_outside_the_lease(served: ServeProcess, client: Client) -> None:
    raw = RawWorker(served.info["grpc"], WORKER_TOKEN)
    try:
        welcome = await raw.register("raw-lease")
        assert welcome.worker == "worker-a"
        job = await client.submit("raw-lease", {"x": 1}, lease={"tool.call": ["lookup"]})
        assigned = (await raw.recv("assignment")).assignment
        assert assigned.job_id == job.job_id
        assert list(assigned.lease.capabilities["tool.call"].patterns) == ["lookup"]
        assert len(assigned.trace_id) == 32
        refused = await raw.ask(job.job_id, "tool.call", "forbidden")
        assert _code(refused.error) == "PERMISSION_DENIED"
        allowed = await raw.ask(job.job_id, "tool.call", "lookup")
        assert allowed.resource == "lookup"
        # A job it was not assigned is no job of the worker's.
        other = await raw.ask("job_not_mine", "tool.call", "lookup")
        assert other.WhichOneof("answer") == "error"
        outcome = pb.WorkerOutcome(job_id=job.job_id)
        outcome.result.string_value = "done"
        raw.send(pb.WorkRequest(outcome=outcome))
        watched = client.watch(job.job_id)
        _ = [event async for event in watched]
        assert watched.outcome is not None
        assert watched.outcome.result == "done"
    finally:
        await raw.close()


async def test_core_ends_an_expired_job_whose_worker_never_answers(
    served: ServeProcess, client: Client
) -> None:
    raw = RawWorker(served.info["grpc"], WORKER_TOKEN)
    try:
        await raw.register("raw-silent")
        expires = datetime.now(UTC) + timedelta(seconds=1)
        outcome = await client.run("raw-silent", None, lease_expires_at=expires)
        assert outcome.error is not None
        assert outcome.error.code == "LEASE_EXPIRED"
        assert (await raw.recv("assignment")).assignment.job_id == outcome.job_id
        stop = (await raw.recv("stop")).stop
        assert stop.job_id == outcome.job_id
        assert _code(stop.reason) == "LEASE_EXPIRED"
    finally:
        await raw.close()


async def test_cost_past_the_budget_ends_the_job(
    client: Client, workers: Callable[..., WorkerProcess]
) -> None:
    workers()
    run = client.run("remote-spender", {"cost": 0.3}, lease={"cost.budget": ["USD:1.00"]})
    remaining = [
        e.proto.metric.value
        async for e in run
        if e.kind == "metric" and e.proto.metric.name == "cost.budget.remaining"
    ]
    assert run.outcome is not None
    assert run.outcome.error is not None
    assert run.outcome.error.code == "BUDGET_EXHAUSTED"
    assert remaining == pytest.approx([0.7, 0.4, 0.1, -0.2])


async def test_a_killed_worker_ends_its_job_and_another_takes_the_next(
    client: Client, workers: Callable[..., WorkerProcess]
) -> None:
    first = workers()
    run = client.run("remote-idle")
    async for event in run:
        if event.kind == "status":  # the agent is running on the worker
            first.process.send_signal(signal.SIGKILL)
    outcome = run.outcome
    assert outcome is not None
    assert outcome.error is not None
    assert outcome.error.code == "INTERNAL_ERROR"
    assert outcome.error.retryable is True
    workers()
    again = await client.run("remote-echo", "next")
    assert again.result == {"echo": "next", "trace": 32}


async def test_replay_of_a_keyed_remote_job_is_byte_identical(
    client: Client, workers: Callable[..., WorkerProcess]
) -> None:
    workers()
    first = await client.submit("remote-echo", {"k": 1}, idempotency_key="remote-replay")
    watched = client.watch(first.job_id)
    _ = [event async for event in watched]
    again = await client.submit("remote-echo", {"k": 1}, idempotency_key="remote-replay")
    assert again.replay is True
    assert again.accepted_bytes == first.accepted_bytes


async def test_no_worker_for_the_agent_fails_after_the_wait(
    served: ServeProcess, client: Client
) -> None:
    raw = RawWorker(served.info["grpc"], WORKER_TOKEN)
    await raw.register("raw-gone")
    await raw.close()
    outcome = await client.run("raw-gone")  # known, but no worker: workers.wait_sec = 2
    assert outcome.error is not None
    assert outcome.error.code == "AGENT_NOT_AVAILABLE"


async def test_a_worker_token_is_no_client_token(served: ServeProcess) -> None:
    async with await Client.connect(served.info["grpc"], token=WORKER_TOKEN) as worker_as_client:
        with pytest.raises(Unauthenticated):
            await worker_as_client.submit("echo", 1)
        with pytest.raises(Unauthenticated):
            _ = [job async for job in worker_as_client.list()]
        with pytest.raises(Unauthenticated):
            await worker_as_client.get("job_any")
        with pytest.raises(Unauthenticated):
            await worker_as_client.cancel("job_any")


async def test_a_client_token_cannot_register_as_a_worker(served: ServeProcess) -> None:
    raw = RawWorker(served.info["grpc"], served.token)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await raw.register("raw-intruder")
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await raw.close()
    done = await asyncio.to_thread(
        run_cli,
        "worker",
        "--core",
        served.info["grpc"],
        "--token",
        served.token,
        "--agents",
        "tests.arcp_grpc.worker.agents:registry",
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "refused the worker token" in done.stderr
