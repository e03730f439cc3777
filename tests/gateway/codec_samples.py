"""Shared samples for the codec tests (``test_codec*.py``): ids, builders, canonical frames.

Client frames are built the way the published client (``arcp``, 1.1.3) builds
them (:func:`wire`, :func:`sdk_hello`) or by hand (:func:`frame`); server
frames are one canonical ``ConnectResponse`` per member and per event kind
(:data:`SERVER_FRAMES`), rendered by :func:`render` in each wire profile and
dialect (:data:`SERVER_CASES`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from arcp._envelope import Envelope
from arcp._messages.session import (
    AuthBearer,
    Capabilities,
    ClientInfo,
    SessionHelloPayload,
    SessionResume,
)
from google.protobuf import struct_pb2

from arcp_grpc.v1 import errors_pb2, events_pb2, jobs_pb2, session_pb2, session_service_pb2
from gateway.codec import (
    WIRE_PROFILE_SDK_COMPAT,
    WIRE_PROFILE_SPEC,
    ClientFrame,
    CloseForm,
    Dialect,
    ResumeForm,
    decode_client_frame,
    encode_server_frame,
)

ConnectRequest = session_service_pb2.ConnectRequest
ConnectResponse = session_service_pb2.ConnectResponse

ULID = "01JABCDEFGHJKMNPQRSTVWXYZ0"
REQ = "01JREQ0000000000000000000A"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
JOB = "job_01JABCDEFGHJKMNPQRSTVWXYZ"
SESSION = "sess_01JABCDEFGHJKMNPQRSTVWXYZ"
TS = "2026-05-13T19:42:13Z"
TS_SECONDS = 1778701333
MAX = 1 << 20
PROFILES = [WIRE_PROFILE_SPEC, WIRE_PROFILE_SDK_COMPAT]
DIALECTS = [Dialect(), Dialect(resume=ResumeForm.SESSION_RESUME, close=CloseForm.CLOSE)]


def wire(env: Envelope) -> str:
    """A frame exactly as the published client puts it on the socket."""
    return json.dumps(env.to_wire())


def frame(type_: str, payload: Any, **envelope: Any) -> str:
    return json.dumps({"arcp": "1.1", "id": ULID, "type": type_, "payload": payload, **envelope})


def decode(text: str | bytes) -> ClientFrame:
    return decode_client_frame(text, max_bytes=MAX)


# ---- client frames built by the published client -----------------------------


def sdk_hello(resume: SessionResume | None = None) -> str:
    payload = SessionHelloPayload(
        client=ClientInfo(name="examplectl", version="0.4.1"),
        auth=AuthBearer(token="tok"),
        capabilities=Capabilities(encodings=("json",), features=("heartbeat", "ack")),
        resume=resume,
    )
    return wire(
        Envelope(
            id=ULID,
            type="session.hello",
            payload=payload.model_dump(mode="json", exclude_none=True),
        )
    )


# ---- server frames ------------------------------------------------------------


def _ts(msg: Any, seconds: int = TS_SECONDS, nanos: int = 0) -> None:
    msg.seconds = seconds
    msg.nanos = nanos


def _lease(msg: Any) -> None:
    msg.capabilities["fs.read"].patterns.extend(["/ws/**"])
    msg.capabilities["cost.budget"].patterns.extend(["USD:5.00"])


def server_frames() -> dict[str, ConnectResponse]:
    """One canonical frame per ConnectResponse member (and per event kind)."""
    out: dict[str, ConnectResponse] = {}

    r = ConnectResponse(id=ULID, session_id=SESSION)
    w = r.welcome
    w.session_id = SESSION
    w.runtime.name, w.runtime.version = "arcp-grpc", "0.1.0"
    w.resume_token, w.resume_window_sec, w.heartbeat_interval_sec = "rtk_1", 600, 30
    w.capabilities.encodings.append("json")
    w.capabilities.features.extend(["heartbeat", "agent_versions"])
    w.capabilities.agents.add(name="echo", versions=["1.0.0", "2.0.0"], default_version="2.0.0")
    w.capabilities.agents.add(name="bare", versions=["0.1"])
    _ts(w.accepted_at, nanos=123_000_000)
    w.resumed = True
    out["welcome"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION)
    r.ping.nonce = "p_1"
    _ts(r.ping.sent_at)
    out["ping"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, request_id=REQ)
    r.pong.ping_nonce = "p_1"
    _ts(r.pong.received_at, nanos=20_000_000)
    out["pong"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, request_id=REQ)
    job = r.jobs.jobs.add(job_id=JOB, agent="echo@2.0.0", status=jobs_pb2.JOB_STATUS_RUNNING)
    _lease(job.lease)
    _ts(job.lease_constraints.expires_at, seconds=TS_SECONDS + 3600)
    job.budget["USD"] = "3.58"
    job.parent_job_id = "job_parent"
    _ts(job.created_at)
    job.trace_id = TRACE
    job.last_event_seq = 1822
    done = r.jobs.jobs.add(job_id="job_2", agent="echo@1.0.0", status=jobs_pb2.JOB_STATUS_SUCCESS)
    _ts(done.created_at)
    _ts(done.completed_at, seconds=TS_SECONDS + 5)
    r.jobs.next_cursor = "100"
    out["jobs"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION)
    r.closed.reason = "client.close"
    out["closed"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, request_id=REQ)
    r.error.error.code = errors_pb2.ERROR_CODE_INVALID_REQUEST
    r.error.error.message = "payload.agent: bad"
    r.error.error.details.update({"field": "payload.agent"})
    out["error"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, request_id=REQ, job_id=JOB, trace_id=TRACE)
    a = r.accepted
    a.job_id, a.agent, a.trace_id = JOB, "echo@2.0.0", TRACE
    _lease(a.lease)
    _ts(a.lease_constraints.expires_at, seconds=TS_SECONDS + 3600)
    a.budget["USD"] = "5.00"
    a.budget["credits"] = "1000"
    cred = a.credentials.add(
        id="cred_1", scheme="bearer", value="sk-virt", endpoint="https://gw/v1"
    )
    cred.profile = "openai"
    cred.constraints.capabilities["model.use"].patterns.append("tier-fast/*")
    _ts(cred.constraints.expires_at, seconds=TS_SECONDS + 3600)
    _ts(a.accepted_at)
    out["accepted"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, request_id=REQ, job_id=JOB)
    r.cancelled.job_id = JOB
    out["cancelled"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, request_id=REQ, job_id=JOB, trace_id=TRACE)
    s = r.subscribed
    s.job_id, s.agent, s.trace_id = JOB, "echo@2.0.0", TRACE
    s.current_status = jobs_pb2.JOB_STATUS_RUNNING
    _lease(s.lease)
    s.budget["USD"] = "3.58"
    s.subscribed_from, s.replayed = 1830, 3
    out["subscribed"] = r

    def event(name: str) -> ConnectResponse:
        r = ConnectResponse(id=ULID, session_id=SESSION, job_id=JOB, trace_id=TRACE, event_seq=42)
        r.event.job_id = JOB
        r.event.job_seq = 7
        _ts(r.event.ts)
        out[f"event.{name}"] = r
        return r

    event("log").event.log.CopyFrom(
        events_pb2.LogEvent(level=events_pb2.LOG_LEVEL_WARN, message="m")
    )
    event("thought").event.thought.text = "hmm"
    tool_call = event("tool_call").event.tool_call
    tool_call.tool, tool_call.call_id = "grep", "c1"
    tool_call.args.struct_value.update({"pattern": "x", "n": 3})
    event("tool_result").event.tool_result.CopyFrom(
        events_pb2.ToolResultEvent(call_id="c1", result=struct_pb2.Value(string_value="ok"))
    )
    failed = event("tool_result_error").event.tool_result
    failed.call_id = "c2"
    failed.error.code = errors_pb2.ERROR_CODE_BUDGET_EXHAUSTED
    failed.error.message = "spent"
    status = event("status").event.status
    status.phase, status.message = "credential_rotated", "rotated"
    status.credential.CopyFrom(cred)
    metric = event("metric").event.metric
    metric.name, metric.value, metric.unit = "cost.inference", 0.0234, "USD"
    metric.dimensions.update({"model": "tier-fast/a"})
    artifact = event("artifact_ref").event.artifact_ref
    artifact.uri, artifact.content_type, artifact.byte_size = "s3://b/k", "text/plain", 12
    artifact.sha256 = "ab" * 32
    delegate = event("delegate").event.delegate
    delegate.child_job_id, delegate.agent = "job_child", "helper@1.0.0"
    _lease(delegate.lease)
    progress = event("progress").event.progress
    progress.current, progress.total, progress.units, progress.message = 47, 120, "files", "m"
    event("result_chunk").event.result_chunk.CopyFrom(
        events_pb2.ResultChunkEvent(
            result_id="res_1",
            chunk_seq=0,
            data="héllo".encode(),
            encoding=events_pb2.CHUNK_ENCODING_UTF8,
            more=True,
        )
    )
    event("result_chunk_binary").event.result_chunk.CopyFrom(
        events_pb2.ResultChunkEvent(
            result_id="res_1",
            chunk_seq=1,
            data=b"\x00\xff\xfe",
            encoding=events_pb2.CHUNK_ENCODING_BASE64,
            more=False,
        )
    )
    vendor = event("vendor").event.vendor
    vendor.kind = "x-vendor.acme.trace"
    vendor.body.update({"span": "abc", "depth": 2})

    r = ConnectResponse(id=ULID, session_id=SESSION, job_id=JOB, trace_id=TRACE, event_seq=43)
    r.result.job_id = JOB
    r.result.final_status = jobs_pb2.JOB_STATUS_SUCCESS
    r.result.value.struct_value.update({"answer": 42, "items": [1.5, "x"]})
    r.result.summary = "done"
    _ts(r.result.completed_at)
    out["result"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, job_id=JOB, event_seq=44)
    r.result.job_id = JOB
    r.result.final_status = jobs_pb2.JOB_STATUS_SUCCESS
    r.result.streamed.result_id, r.result.streamed.result_size = "res_1", 31_457_280
    _ts(r.result.completed_at)
    out["result_streamed"] = r

    for name, status_value, code in [
        ("job_error", jobs_pb2.JOB_STATUS_ERROR, errors_pb2.ERROR_CODE_LEASE_EXPIRED),
        ("job_error_cancelled", jobs_pb2.JOB_STATUS_CANCELLED, errors_pb2.ERROR_CODE_CANCELLED),
        ("job_error_timed_out", jobs_pb2.JOB_STATUS_TIMED_OUT, errors_pb2.ERROR_CODE_TIMEOUT),
    ]:
        r = ConnectResponse(id=ULID, session_id=SESSION, job_id=JOB, event_seq=45)
        r.job_error.job_id = JOB
        r.job_error.final_status = status_value
        r.job_error.error.code = code
        r.job_error.error.message = "ended"
        r.job_error.error.details.update({"why": "test"})
        _ts(r.job_error.completed_at)
        out[name] = r
    return out


SERVER_FRAMES = server_frames()
SERVER_CASES = [
    pytest.param(name, profile, dialect, id=f"{name}-{profile}-{dialect.close.name}")
    for name in SERVER_FRAMES
    for profile in PROFILES
    for dialect in DIALECTS
]


def render(
    name: str,
    profile: session_pb2.WireProfile.ValueType = WIRE_PROFILE_SPEC,
    dialect: Dialect | None = None,
) -> Any:
    text = encode_server_frame(SERVER_FRAMES[name], profile=profile, dialect=dialect or Dialect())
    return json.loads(text)
