"""The console's static files over HTTP (`gateway._console`): media types, the security
headers, 404s, and the `gateway.console` switch (docs/configuration.md)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from email.message import Message

import pytest

from arcp_grpc.process.serve import console_enabled
from tests.gateway.conftest import Stack, StackFactory


def _get(port: int, path: str) -> tuple[int, Message, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as failed:
        return failed.code, failed.headers, failed.read()


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/console", "text/html; charset=utf-8"),
        ("/console/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/arcp.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
        ("/console/settings.json", "application/json"),
    ],
)
async def test_console_files_carry_one_media_type_and_a_strict_policy(
    stack: Stack, path: str, media_type: str
) -> None:
    status, headers, body = await asyncio.to_thread(_get, stack.gateway.port, path)
    assert status == 200
    assert headers.get_all("Content-Type") == [media_type]
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy  # no inline script: markup cannot run code
    assert "frame-ancestors 'none'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert body


async def test_settings_name_the_configured_arcp_path(make_stack: StackFactory) -> None:
    stack = await make_stack(path="/ws/arcp")
    _, _, body = await asyncio.to_thread(_get, stack.gateway.port, "/console/settings.json")
    assert json.loads(body) == {"arcp_path": "/ws/arcp"}


async def test_unknown_console_files_and_traversal_are_not_found(stack: Stack) -> None:
    for path in ("/console/nope.js", "/console/../gateway/server.py", "/console/_console.py"):
        status, headers, _ = await asyncio.to_thread(_get, stack.gateway.port, path)
        assert status == 404, path
        assert headers.get_all("Content-Type") == ["text/plain; charset=utf-8"]


async def test_console_off_serves_nothing_there(make_stack: StackFactory) -> None:
    stack = await make_stack(console=False)
    status, _, body = await asyncio.to_thread(_get, stack.gateway.port, "/console")
    assert status == 404
    assert b"/arcp" in body  # the gateway's ordinary answer for paths it does not serve


@pytest.mark.parametrize(
    ("setting", "host", "served"),
    [
        ("auto", "127.0.0.1", True),
        ("auto", "::1", True),
        ("auto", "localhost", True),
        ("auto", "0.0.0.0", False),
        ("auto", "10.1.2.3", False),
        ("on", "0.0.0.0", True),
        ("off", "127.0.0.1", False),
    ],
)
def test_console_auto_is_on_for_loopback_only(setting: str, host: str, served: bool) -> None:
    assert console_enabled(setting, host) is served
