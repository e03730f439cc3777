"""The gateway's health path and its answer for other paths (both links to the core)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.server import GatewayConfig, start_gateway
from tests.conftest import break_store
from tests.gateway.conftest import RawFactory, Stack, StackFactory


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as failed:
        return failed.code, failed.read().decode()


async def test_health_reports_the_core_serving(stack: Stack) -> None:
    status, body = await asyncio.to_thread(_get, stack.gateway.port, "/healthz")
    assert status == 200
    assert json.loads(body) == {"gateway": "ok", "core": "SERVING"}


def _content_types(port: int, path: str) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return reply.headers.get_all("Content-Type") or []


async def test_health_sends_exactly_one_content_type(stack: Stack) -> None:
    """Was two (`text/plain` from the upgrade hook's default, then `application/json`)."""
    types = await asyncio.to_thread(_content_types, stack.gateway.port, "/healthz")
    assert types == ["application/json"]


async def test_other_paths_are_not_found_and_name_the_arcp_path(stack: Stack) -> None:
    status, body = await asyncio.to_thread(_get, stack.gateway.port, "/elsewhere")
    assert status == 404
    assert "/arcp" in body


async def test_health_is_503_when_a_remote_core_is_gone(make_stack: StackFactory) -> None:
    stack = await make_stack()
    remote = await make_stack.gateway(stack.core)  # over gRPC, whatever the stack's link
    await stack.core.stop(grace=0.1)
    status, body = await asyncio.to_thread(_get, remote.port, "/healthz")
    assert status == 503
    assert json.loads(body)["core"] in {"UNREACHABLE", "NOT_SERVING"}


async def test_a_failed_store_turns_health_not_serving(stack: Stack, raw: RawFactory) -> None:
    """A store that can no longer commit (a real SQLITE_FULL: the database may not grow;
    or PostgreSQL ending the node's connection) refuses all new work; health says so, on
    gRPC and at the gateway, so a supervisor restarts the core instead of a balancer
    feeding it."""
    client = await raw()
    await client.run("echo", {"before": "the disk filled"})
    await break_store(stack.core)
    refused = None
    for index in range(2000):  # until a commit needs a page the file may not add
        reply = await client.submit("echo", {"filler": "x" * 2000, "index": index})
        if reply["type"] == "session.error":
            refused = reply
            break
    assert refused is not None, "the store never filled up"
    assert refused["payload"]["code"] == "INTERNAL_ERROR"
    async with asyncio.timeout(10):
        while stack.core.serving_status() != "NOT_SERVING":  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    channel = grpc.aio.insecure_channel(stack.core.grpc_address)
    try:
        check = health_pb2_grpc.HealthStub(channel).Check
        for service in ("", "arcp.v1.JobService", "arcp.v1.SessionService"):
            answer = await check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await channel.close()
    status, body = await asyncio.to_thread(_get, stack.gateway.port, "/healthz")
    assert status == 503
    assert json.loads(body) == {"gateway": "ok", "core": "NOT_SERVING"}


async def test_health_in_front_of_cores_none_of_which_answers_is_503_unavailable() -> None:
    """`--core A,B` with nothing listening at either: each core named, none serving."""
    cores = "127.0.0.1:1,127.0.0.1:2"
    gateway = await start_gateway(GatewayConfig(core_address=cores, port=0))
    try:
        status, body = await asyncio.to_thread(_get, gateway.port, "/healthz")
    finally:
        await gateway.stop()
    assert status == 503
    assert json.loads(body) == {
        "gateway": "ok",
        "core": "UNREACHABLE",
        "status": "unavailable",
        "cores": {"127.0.0.1:1": "UNREACHABLE", "127.0.0.1:2": "UNREACHABLE"},
    }
