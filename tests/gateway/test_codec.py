"""The gateway codec's public entry points (``gateway/codec.py``) as a whole: its pinned
exports, every server frame type both ways in both profiles and both dialects, the
published client's view of each, junk refused by ``decode_server_frame``, and the
bound on the envelope cache.

SDK_COMPAT output is checked with the published client's (``arcp``, 1.1.3) own
payload models: a frame it cannot parse fails every open job on its connection.

The concerns behind the entry points have their own files: client frames
(``test_codec_client_frames.py``, ``test_codec_bad_input.py``), server frames
(``test_codec_server_frames.py``), event bodies (``test_codec_events.py``) and a
job's authority (``test_codec_authority.py``); the shared samples are in
``codec_samples.py``.
"""

from __future__ import annotations

import gc
import json
import re
import tracemalloc
from typing import Any

import pytest
from arcp._envelope import Envelope
from arcp._messages.execution import (
    JobAcceptedPayload,
    JobErrorPayload,
    JobEventPayload,
    JobResultPayload,
    JobSubscribedPayload,
)
from arcp._messages.session import (
    SessionByePayload,
    SessionErrorPayload,
    SessionJobsPayload,
    SessionPingPayload,
    SessionPongPayload,
    SessionWelcomePayload,
)

from arcp_grpc.errors import InvalidRequest
from arcp_grpc.v1 import events_pb2, session_pb2
from gateway.codec import (
    WIRE_PROFILE_SDK_COMPAT,
    WIRE_PROFILE_SPEC,
    Dialect,
    decode_server_frame,
    encode_server_frame,
)
from tests.gateway.codec_samples import (
    JOB,
    SERVER_CASES,
    SERVER_FRAMES,
    SESSION,
    ConnectResponse,
    render,
)

STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')


def test_public_exports_are_pinned() -> None:
    import gateway.codec

    assert set(gateway.codec.__all__) == {
        "MAX_SAFE_INTEGER",
        "MAX_VALUE_DEPTH",
        "UNANSWERED_TYPES",
        "WIRE_PROFILE_SDK_COMPAT",
        "WIRE_PROFILE_SPEC",
        "ClientFrame",
        "CloseForm",
        "Dialect",
        "ResumeForm",
        "WireProfile",
        "decode_client_frame",
        "decode_server_frame",
        "encode_client_frame",
        "encode_server_frame",
    }


# ---- server frame round trip ------------------------------------------------


def test_every_response_member_is_covered() -> None:
    members = {f.name for f in ConnectResponse.DESCRIPTOR.oneofs_by_name["frame"].fields}
    covered = {SERVER_FRAMES[name].WhichOneof("frame") for name in SERVER_FRAMES}
    assert covered == members
    kinds = {f.name for f in events_pb2.JobEvent.DESCRIPTOR.oneofs_by_name["body"].fields}
    assert {
        f.event.WhichOneof("body") for f in SERVER_FRAMES.values() if f.HasField("event")
    } == kinds


@pytest.mark.parametrize(("name", "profile", "dialect"), SERVER_CASES)
def test_server_frame_round_trip_and_determinism(
    name: str, profile: session_pb2.WireProfile.ValueType, dialect: Dialect
) -> None:
    msg = SERVER_FRAMES[name]
    text = encode_server_frame(msg, profile=profile, dialect=dialect)
    assert encode_server_frame(msg, profile=profile, dialect=dialect) == text
    assert not re.search(r"\s", STRING_LITERAL.sub('""', text))  # compact separators
    env = json.loads(text)
    assert list(env)[:3] == ["arcp", "id", "type"]
    assert list(env)[-1] == "payload"
    assert decode_server_frame(text) == msg


@pytest.mark.parametrize(("name", "profile", "dialect"), SERVER_CASES)
def test_published_client_parses_every_frame(
    name: str, profile: session_pb2.WireProfile.ValueType, dialect: Dialect
) -> None:
    """The envelope always; the payload models under SDK_COMPAT (read pump, dispatch.py)."""
    env = Envelope.from_wire(render(name, profile, dialect))
    if profile != WIRE_PROFILE_SDK_COMPAT:
        return
    payload = env.payload
    models: dict[str, Any] = {
        "session.welcome": SessionWelcomePayload,
        "session.ping": SessionPingPayload,
        "session.pong": SessionPongPayload,
        "session.jobs": SessionJobsPayload,
        "session.bye": SessionByePayload,
        "session.error": SessionErrorPayload,
        "job.accepted": JobAcceptedPayload,
        "job.subscribed": JobSubscribedPayload,
        "job.event": JobEventPayload,
        "job.result": JobResultPayload,
        "job.error": JobErrorPayload,
    }
    model = models.get(env.type)
    if model is None:  # session.closed, job.cancelled: the client ignores them
        assert env.type in {"session.closed", "job.cancelled"}
        return
    model.model_validate(payload)
    if env.type in {"job.event", "job.result", "job.error"}:
        assert env.job_id == JOB  # the client drops job frames without it


def test_decode_server_frame_rejects_junk() -> None:
    junk: list[str | bytes] = ["", "[]", '{"arcp":"1.1","id":"x","type":"job.dance"}', b"\xff"]
    for text in junk:
        with pytest.raises(InvalidRequest):
            decode_server_frame(text)


def test_the_envelope_cache_is_bounded_in_bytes() -> None:
    """Frames with huge ids (from a core that does not cap them) are rendered but not
    kept: 40 distinct 1 MiB trace ids must not stay pinned in the gateway's memory."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for index in range(40):
            msg = ConnectResponse(id=f"01J{index:023d}", session_id=SESSION, job_id=JOB)
            msg.trace_id = f"{index:02d}" + "a" * (1024 * 1024)
            msg.cancelled.job_id = JOB
            text = encode_server_frame(msg, profile=WIRE_PROFILE_SPEC, dialect=Dialect())
            assert msg.trace_id in text
            del msg, text
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held - before < 8 * 1024 * 1024  # cached, 40 of them would hold 80 MiB
