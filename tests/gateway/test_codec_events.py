"""Event bodies, ``JobEvent`` -> JSON (``gateway/_render_events.py``; read back by
``gateway/_read_events.py``): every event kind (§8.2) with the names of both the
v1.1 text and the published client, ``credential_rotated`` (§9.8.2), and result
chunks whose bytes are not UTF-8.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.codec import WIRE_PROFILE_SPEC, Dialect, encode_server_frame
from tests.gateway.codec_samples import JOB, SERVER_FRAMES, TRACE, TS, ConnectResponse, render

EVENT_BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "event.log": ("log", {"level": "warn", "message": "m"}),
    "event.thought": ("thought", {"text": "hmm"}),
    "event.tool_call": (
        "tool_call",
        {
            "tool": "grep",
            "args": {"n": 3, "pattern": "x"},
            "call_id": "c1",
            "name": "grep",
            "arguments": {"n": 3, "pattern": "x"},
            "tool_call_id": "c1",
        },
    ),
    "event.tool_result": (
        "tool_result",
        {"call_id": "c1", "tool_call_id": "c1", "result": "ok", "output": "ok"},
    ),
    "event.tool_result_error": (
        "tool_result",
        {
            "call_id": "c2",
            "tool_call_id": "c2",
            "error": {"code": "BUDGET_EXHAUSTED", "message": "spent", "retryable": False},
        },
    ),
    "event.metric": (
        "metric",
        {
            "name": "cost.inference",
            "value": 0.0234,
            "unit": "USD",
            "dimensions": {"model": "tier-fast/a"},
            "attributes": {"model": "tier-fast/a"},
        },
    ),
    "event.artifact_ref": (
        "artifact_ref",
        {
            "uri": "s3://b/k",
            "content_type": "text/plain",
            "media_type": "text/plain",
            "byte_size": 12,
            "size_bytes": 12,
            "sha256": "ab" * 32,
        },
    ),
    "event.progress": (
        "progress",
        {"current": 47, "total": 120, "units": "files", "message": "m"},
    ),
    "event.result_chunk": (
        "result_chunk",
        {"result_id": "res_1", "chunk_seq": 0, "data": "héllo", "encoding": "utf8", "more": True},
    ),
    "event.result_chunk_binary": (
        "result_chunk",
        {"result_id": "res_1", "chunk_seq": 1, "data": "AP/+", "encoding": "base64", "more": False},
    ),
    "event.vendor": ("x-vendor.acme.trace", {"depth": 2, "span": "abc"}),
}


@pytest.mark.parametrize("name", sorted(EVENT_BODIES))
def test_event_bodies(name: str) -> None:
    kind, body = EVENT_BODIES[name]
    env = render(name)
    assert env["event_seq"] == 42
    assert env["job_id"] == JOB
    assert env["trace_id"] == TRACE
    assert env["payload"]["kind"] == kind
    assert env["payload"]["ts"] == TS
    assert env["payload"]["body"] == body


def test_status_credential_rotation_body() -> None:
    body = render("event.status")["payload"]["body"]
    assert (body["phase"], body["id"], body["value"]) == ("credential_rotated", "cred_1", "sk-virt")
    assert body["credential"]["endpoint"] == "https://gw/v1"


def test_invalid_utf8_chunk_falls_back_to_base64() -> None:
    msg = ConnectResponse()
    msg.CopyFrom(SERVER_FRAMES["event.result_chunk"])
    msg.event.result_chunk.data = b"\xff\xfe"
    body = json.loads(encode_server_frame(msg, profile=WIRE_PROFILE_SPEC, dialect=Dialect()))
    assert body["payload"]["body"]["encoding"] == "base64"
    assert body["payload"]["body"]["data"] == "//4="
