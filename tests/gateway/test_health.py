"""The gateway's health path and its answer for other paths (both links to the core)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from tests.gateway.conftest import Stack, StackFactory


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
