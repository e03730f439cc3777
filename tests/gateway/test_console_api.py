"""The console's JSON endpoints over HTTP (`gateway._console_api`): each answered by the
core's JobService with the caller's own token, refusals as ARCP codes with HTTP statuses,
values in the ARCP vocabulary, and never a credential value."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

import pytest

from arcp_grpc.client import Client
from tests.arcp_grpc.worker.conftest import WORKER_TOKEN
from tests.gateway.conftest import SAFETY, RawFactory, Stack, WorkerStarter, wait_until_finished
from tests.serve_process import ServeProcess

INPUT = {"steps": 1000, "interval": 0.05}


def _get(port: int, target: str, token: str | None = "tok-alice") -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{target}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=SAFETY) as reply:
            assert reply.headers["Content-Type"] == "application/json"
            assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as failed:
        return failed.code, json.loads(failed.read())


async def api(stack: Stack, target: str, token: str | None = "tok-alice") -> tuple[int, Any]:
    return await asyncio.to_thread(_get, stack.gateway.port, f"/console/api/{target}", token)


async def test_a_job_of_another_session_is_read_and_cancelled_by_its_principal(
    stack: Stack, raw: RawFactory
) -> None:
    """§7.4 lets only the submitting session cancel over ARCP; JobService lets its
    principal, so the console can cancel whatever the principal submitted elsewhere."""
    accepted = await (await raw()).submit("counter", INPUT, max_runtime_sec=60)
    job_id = accepted["payload"]["job_id"]
    status, body = await api(stack, f"job?id={job_id}")
    assert status == 200
    job = body["job"]
    assert job["job_id"] == job_id
    assert job["agent"] == "counter@1.0.0"
    assert job["input"] == INPUT
    assert job["max_runtime_sec"] == 60
    assert job["status"] in ("pending", "running")
    assert body["outcome"] is None
    status, refused = await api(stack, f"cancel?id={job_id}", "tok-bob")
    assert (status, refused["code"]) == (404, "JOB_NOT_FOUND")
    assert await api(stack, f"cancel?id={job_id}&reason=from+a+test") == (200, {"job_id": job_id})
    await wait_until_finished(stack.core, "alice", job_id)
    status, body = await api(stack, f"job?id={job_id}")
    assert body["job"]["status"] == "cancelled"
    assert body["outcome"]["type"] == "job.error"  # §7.4, the spec profile's form
    assert body["outcome"]["payload"]["code"] == "CANCELLED"
    assert "from a test" in body["outcome"]["payload"]["message"]


@pytest.mark.parametrize(
    ("target", "token", "status", "code"),
    [
        ("nodes", None, 401, "UNAUTHENTICATED"),
        ("nodes", "tok-mallory", 401, "UNAUTHENTICATED"),
        ("job", "tok-alice", 400, "INVALID_REQUEST"),
        ("job?id=job_nope", "tok-alice", 404, "JOB_NOT_FOUND"),
        ("nothing", "tok-alice", 404, "NOT_FOUND"),
    ],
)
async def test_refusals_carry_the_arcp_code(
    stack: Stack, target: str, token: str | None, status: int, code: str
) -> None:
    answered, body = await api(stack, target, token)
    assert (answered, body["code"]) == (status, code)


async def test_nodes_list_this_core(stack: Stack) -> None:
    status, body = await api(stack, "nodes")
    assert status == 200
    (node,) = body["nodes"]
    assert node["state"] == "alive"
    assert node["answering"] is True
    assert node["running_jobs"] == 0


async def test_agents_count_the_callers_last_hour(stack: Stack, raw: RawFactory) -> None:
    alice = await raw()
    for n in range(3):
        await alice.run("echo", {"n": n})
    await alice.run("counter", {"steps": -1})
    await (await raw("tok-bob")).run("echo", {})
    status, body = await api(stack, "agents")
    assert status == 200
    stats = {entry["agent"]: entry for entry in body["agents"]}
    assert stats["echo"]["jobs"] == 3  # bob's job is not alice's to count
    assert stats["counter"]["failed"] == 1
    assert stats["counter"]["failure_rate"] == 1.0
    assert stats["greeter"]["jobs"] == 0  # every agent has a row
    assert len(stats["echo"]["slices"]) == 12
    assert sum(s["jobs"] for s in stats["echo"]["slices"]) == 3


async def test_workers_list_each_connected_worker_its_agents_and_slots(
    worker_serve: ServeProcess, start_workers: WorkerStarter
) -> None:
    """ListWorkers with the caller's token (issue 23): none, then a real `arcp-grpc worker`
    with its agents, versions and slots, one slot in use while it runs a job; a worker
    token is no client token, here as on JobService."""
    port = urllib.parse.urlsplit(worker_serve.info["console"]).port
    assert port is not None
    token = worker_serve.token
    assert await asyncio.to_thread(_get, port, "/console/api/workers", token) == (
        200,
        {"workers": []},
    )
    status, refused = await asyncio.to_thread(_get, port, "/console/api/workers", WORKER_TOKEN)
    assert (status, refused["code"]) == (401, "UNAUTHENTICATED")

    await start_workers("--slots", "2")
    async with await Client.connect(worker_serve.info["grpc"], token=token) as client:
        job = await client.submit("remote-idle", {})
        async with asyncio.timeout(SAFETY):
            while True:
                _, body = await asyncio.to_thread(_get, port, "/console/api/workers", token)
                (worker,) = body["workers"]
                if worker["running"] == 1:  # the job reached the worker
                    break
                await asyncio.sleep(0.1)
        await client.cancel(job.job_id)
    assert (worker["name"], worker["slots"]) == ("worker-a", 2)
    assert worker["library"].startswith("arcp-grpc-python/")
    assert worker["node_id"] == ""  # a node alone has no cluster id (the CLI omits it too)
    agents = {agent["name"]: agent for agent in worker["agents"]}
    assert agents["remote-echo"]["versions"] == ["1.0.0"]  # as session.welcome lists it
    connected = datetime.fromisoformat(worker["connected_at"])
    assert connected <= datetime.fromisoformat(worker["updated_at"])
