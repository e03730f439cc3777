"""The console's JSON endpoints over HTTP (`gateway._console_api`): each answered by the
core's JobService with the caller's own token, refusals as ARCP codes with HTTP statuses,
values in the ARCP vocabulary, and never a credential value."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.gateway.conftest import SAFETY, RawFactory, Stack, wait_until_finished

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
