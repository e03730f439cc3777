"""Properties of the codec (hypothesis).

* JSON -> ConnectRequest -> JSON is the identity on every accepted client
  frame shape (compared as parsed JSON, modulo ignored unknown fields).
* ConnectResponse -> JSON -> ConnectResponse is the identity on canonical
  server frames, in both wire profiles and both dialects.
* Junk (random bytes, random JSON, valid frames with one field replaced by a
  random value) is accepted or refused with InvalidRequest, nothing else.
"""

from __future__ import annotations

import json
import string
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arcp_grpc.base.json_values import MAX_SAFE_INTEGER, fill_value
from arcp_grpc.errors import InvalidRequest
from arcp_grpc.v1 import errors_pb2, events_pb2, jobs_pb2, session_service_pb2
from gateway._values import format_timestamp
from gateway.codec import (
    WIRE_PROFILE_SDK_COMPAT,
    WIRE_PROFILE_SPEC,
    CloseForm,
    Dialect,
    decode_client_frame,
    decode_server_frame,
    encode_client_frame,
    encode_server_frame,
)

ConnectResponse = session_service_pb2.ConnectResponse
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX = 1 << 22
ULID_CHARS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# ---- building blocks ----------------------------------------------------------

texts = st.text(max_size=12)
nonempty = st.text(min_size=1, max_size=12)
# Identifiers are visible ASCII (arcp_grpc.base.validate.check_id): both edges refuse the rest.
identifiers = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12)
ulids = st.text(alphabet=ULID_CHARS, min_size=26, max_size=26)
ids = st.one_of(ulids, st.builds(lambda p, u: f"{p}_{u}", st.sampled_from(["job", "sess"]), ulids))
trace_ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32).filter(
    lambda t: t != "0" * 32
)
uint32 = st.integers(0, 2**32 - 1)
uint64 = st.integers(0, 2**64 - 1)
timestamps = st.builds(
    timestamp_pb2.Timestamp,
    seconds=st.integers(-62_135_596_800, 253_402_300_799),
    nanos=st.sampled_from([0, 5_000_000, 123_000, 7]) | st.integers(0, 999_999_999),
)
ts_texts = timestamps.map(format_timestamp)
statuses = st.sampled_from(["pending", "running", "success", "error", "cancelled", "timed_out"])
agents = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,8}(@[a-zA-Z0-9.+_-]{1,6})?", fullmatch=True)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)
leases = st.dictionaries(st.text(max_size=8), st.lists(texts, max_size=3), max_size=3)


@st.composite
def payload_of(draw: st.DrawFn, required: dict[str, Any], optional_: dict[str, Any]) -> Any:
    out = {key: draw(strategy) for key, strategy in required.items()}
    for key, strategy in optional_.items():
        if draw(st.booleans()):
            out[key] = draw(strategy)
    return out


resume_payloads = payload_of(
    {"session_id": identifiers, "resume_token": texts, "last_event_seq": uint64},
    {"auth": st.fixed_dictionaries({"scheme": texts, "token": texts})},
)

CLIENT_PAYLOADS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "session.hello": payload_of(
        {},
        {
            "client": st.fixed_dictionaries({"name": texts, "version": texts}),
            "auth": st.fixed_dictionaries({"scheme": texts, "token": texts}),
            "capabilities": st.fixed_dictionaries(
                {"encodings": st.lists(texts, max_size=2), "features": st.lists(texts, max_size=4)}
            ),
            "resume": resume_payloads,
        },
    ),
    "session.resume": resume_payloads,
    "session.ping": payload_of({"nonce": texts}, {"sent_at": ts_texts}),
    "session.pong": payload_of({"ping_nonce": texts}, {"received_at": ts_texts}),
    "session.ack": payload_of({"last_processed_seq": uint64}, {}),
    "session.list_jobs": payload_of(
        {},
        {
            "filter": payload_of(
                {},
                {
                    "status": st.lists(statuses, min_size=1, max_size=3),
                    "agent": nonempty,
                    "created_after": ts_texts,
                },
            ),
            "limit": st.integers(1, 2**32 - 1),
            "cursor": nonempty,
        },
    ),
    "session.bye": payload_of({"reason": texts}, {}),
    "session.close": payload_of({"reason": texts}, {}),
    "job.submit": payload_of(
        {"agent": agents},
        {
            "input": json_values.filter(lambda v: v is not None),
            "lease_request": leases,
            "lease_constraints": payload_of(
                {}, {"expires_at": timestamps.map(lambda t: format_timestamp(t))}
            ),
            "idempotency_key": nonempty,
            "max_runtime_sec": st.integers(1, 2**32 - 1),
        },
    ),
    "job.cancel": payload_of({"job_id": identifiers, "reason": texts}, {}),
    "job.subscribe": payload_of(
        {"job_id": identifiers, "history": st.booleans()}, {"from_event_seq": uint64}
    ),
    "job.unsubscribe": payload_of({"job_id": identifiers}, {}),
}
KNOWN_ENVELOPE = {"arcp", "id", "type", "session_id", "job_id", "trace_id", "event_seq", "payload"}


@st.composite
def client_frames(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(frame as sent with unknown fields, the canonical frame the codec must give back)."""
    frame_type = draw(st.sampled_from(sorted(CLIENT_PAYLOADS)))
    payload = draw(CLIENT_PAYLOADS[frame_type])
    canonical: dict[str, Any] = {"arcp": "1.1", "id": draw(ids), "type": frame_type}
    if frame_type in {"job.cancel", "job.subscribe", "job.unsubscribe"}:
        canonical["job_id"] = payload["job_id"]
    if frame_type == "job.submit" and draw(st.booleans()):
        canonical["trace_id"] = draw(trace_ids)
    canonical["payload"] = payload
    sent = dict(canonical)
    for key, value in draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)).items():
        if key not in KNOWN_ENVELOPE:
            sent[key] = value
    if draw(st.booleans()):
        sent["session_id"] = draw(identifiers)
    return sent, canonical


@SETTINGS
@given(client_frames())
def test_client_json_round_trip(frames: tuple[dict[str, Any], dict[str, Any]]) -> None:
    sent, canonical = frames
    decoded = decode_client_frame(json.dumps(sent), max_bytes=MAX)
    assert decoded.type == sent["type"]
    assert json.loads(encode_client_frame(decoded.request)) == canonical


# ---- server frames --------------------------------------------------------------

LOG_LEVELS = [v for v in events_pb2.LogLevel.values() if v]
JOB_STATUSES = [v for v in jobs_pb2.JobStatus.values() if v]
SUCCESS, ERROR = jobs_pb2.JOB_STATUS_SUCCESS, jobs_pb2.JOB_STATUS_ERROR
CANCELLED, TIMED_OUT = jobs_pb2.JOB_STATUS_CANCELLED, jobs_pb2.JOB_STATUS_TIMED_OUT
error_codes = st.sampled_from([v for v in errors_pb2.ErrorCode.values() if v != 0])
decimals = st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,12})?", fullmatch=True)
namespaces = st.text(max_size=8).filter(lambda n: n != "expires_at")
non_null_values = json_values.filter(lambda v: v is not None)


def value_of(obj: Any) -> struct_pb2.Value:
    msg = struct_pb2.Value()
    fill_value(msg, obj)
    return msg


def struct_of(obj: dict[str, Any]) -> struct_pb2.Struct:
    msg = struct_pb2.Struct()
    msg.update(obj)
    return msg


@st.composite
def leases_pb(draw: st.DrawFn, target: Any) -> None:
    for name, patterns in draw(
        st.dictionaries(namespaces, st.lists(texts, max_size=3), max_size=3)
    ).items():
        target.capabilities[name].patterns.extend(patterns)


@st.composite
def errors(draw: st.DrawFn) -> errors_pb2.ErrorDetail:
    msg = errors_pb2.ErrorDetail(
        code=draw(error_codes), message=draw(texts), retryable=draw(st.booleans())
    )
    if draw(st.booleans()):
        msg.details.CopyFrom(struct_of(draw(json_objects)))
    return msg


@st.composite
def credentials(draw: st.DrawFn, target: Any, sdk: bool) -> None:
    for _ in range(draw(st.integers(0, 2))):
        scheme = "bearer" if sdk else draw(st.sampled_from(["bearer", "signed_url"]))
        cred = target.add(id=draw(texts), scheme=scheme, value=draw(texts), endpoint=draw(texts))
        cred.profile = draw(texts)
        if draw(st.booleans()):
            cred.constraints.SetInParent()
            draw(leases_pb(cred.constraints))
            if draw(st.booleans()):
                cred.constraints.expires_at.CopyFrom(draw(timestamps))


@st.composite
def authority(draw: st.DrawFn, msg: Any, sdk: bool, with_credentials: bool = True) -> None:
    draw(leases_pb(msg.lease))
    if draw(st.booleans()):
        msg.lease_constraints.SetInParent()
        if draw(st.booleans()):
            msg.lease_constraints.expires_at.CopyFrom(draw(timestamps))
    for currency, amount in draw(st.dictionaries(texts, decimals, max_size=2)).items():
        msg.budget[currency] = amount
    if with_credentials:
        draw(credentials(msg.credentials, sdk))


@st.composite
def event_bodies(draw: st.DrawFn, event: events_pb2.JobEvent) -> None:
    kind = draw(
        st.sampled_from(
            [
                "log",
                "thought",
                "tool_call",
                "tool_result",
                "status",
                "metric",
                "artifact_ref",
                "delegate",
                "progress",
                "result_chunk",
                "vendor",
            ]
        )
    )
    finite = st.floats(allow_nan=False, allow_infinity=False)
    if kind == "log":
        event.log.level = draw(st.sampled_from(LOG_LEVELS))
        event.log.message = draw(texts)
    elif kind == "thought":
        event.thought.text = draw(texts)
    elif kind == "tool_call":
        event.tool_call.tool = draw(texts)
        event.tool_call.call_id = draw(texts)
        if draw(st.booleans()):
            event.tool_call.args.CopyFrom(value_of(draw(non_null_values)))
    elif kind == "tool_result":
        event.tool_result.call_id = draw(texts)
        outcome = draw(st.sampled_from(["result", "error", None]))
        if outcome == "result":
            event.tool_result.result.CopyFrom(value_of(draw(non_null_values)))
        elif outcome == "error":
            event.tool_result.error.CopyFrom(draw(errors()))
    elif kind == "status":
        event.status.phase = draw(texts)
        event.status.message = draw(texts)
        if draw(st.booleans()):
            cred = event.status.credential
            cred.id, cred.scheme, cred.value, cred.endpoint = draw(texts), "bearer", draw(texts), ""
    elif kind == "metric":
        event.metric.name = draw(texts)
        event.metric.value = draw(finite)
        event.metric.unit = draw(texts)
        if draw(st.booleans()):
            event.metric.dimensions.CopyFrom(struct_of(draw(json_objects)))
    elif kind == "artifact_ref":
        event.artifact_ref.uri = draw(texts)
        event.artifact_ref.content_type = draw(texts)
        if draw(st.booleans()):
            event.artifact_ref.byte_size = draw(uint64)
        event.artifact_ref.sha256 = draw(texts)
    elif kind == "delegate":
        event.delegate.child_job_id = draw(texts)
        event.delegate.agent = draw(texts)
        draw(leases_pb(event.delegate.lease))
        if draw(st.booleans()):
            event.delegate.lease_constraints.expires_at.CopyFrom(draw(timestamps))
    elif kind == "progress":
        event.progress.current = draw(finite)
        if draw(st.booleans()):
            event.progress.total = draw(finite)
        event.progress.units = draw(texts)
        event.progress.message = draw(texts)
    elif kind == "result_chunk":
        chunk = event.result_chunk
        chunk.result_id = draw(texts)
        chunk.chunk_seq = draw(uint64)
        chunk.more = draw(st.booleans())
        if draw(st.booleans()):
            chunk.data = draw(st.text(max_size=20)).encode()
            chunk.encoding = events_pb2.CHUNK_ENCODING_UTF8
        else:
            chunk.data = draw(st.binary(max_size=20))
            chunk.encoding = events_pb2.CHUNK_ENCODING_BASE64
    else:
        event.vendor.kind = "x-vendor." + draw(texts)
        event.vendor.body.CopyFrom(struct_of(draw(json_objects)))


@st.composite
def server_frames(draw: st.DrawFn, sdk: bool) -> ConnectResponse:
    """A canonical ConnectResponse: the envelope job_id equals the inner one."""
    session_id = draw(texts)
    msg = ConnectResponse(
        id=draw(ids),
        session_id=session_id,
        request_id=draw(texts),
        trace_id=draw(trace_ids | st.just("")),
    )
    member = draw(
        st.sampled_from(
            [
                "welcome",
                "ping",
                "pong",
                "jobs",
                "closed",
                "error",
                "accepted",
                "cancelled",
                "subscribed",
                "event",
                "result",
                "job_error",
            ]
        )
    )
    job_id = draw(texts)
    if member == "welcome":
        w = msg.welcome
        w.session_id = session_id
        w.runtime.name, w.runtime.version = draw(texts), draw(texts)
        w.resume_token = draw(texts)
        w.resume_window_sec = draw(uint32)
        w.heartbeat_interval_sec = draw(uint32)
        w.capabilities.encodings.extend(draw(st.lists(texts, max_size=2)))
        w.capabilities.features.extend(draw(st.lists(texts, max_size=3)))
        for _ in range(draw(st.integers(0, 2))):
            w.capabilities.agents.add(
                name=draw(texts),
                versions=draw(st.lists(texts, max_size=2)),
                default_version=draw(texts),
            )
        w.accepted_at.CopyFrom(draw(timestamps))
        w.resumed = draw(st.booleans())
    elif member == "ping":
        msg.ping.nonce = draw(texts)
        msg.ping.sent_at.CopyFrom(draw(timestamps))
    elif member == "pong":
        msg.pong.ping_nonce = draw(texts)
        msg.pong.received_at.CopyFrom(draw(timestamps))
    elif member == "jobs":
        msg.jobs.SetInParent()
        for _ in range(draw(st.integers(0, 2))):
            job = msg.jobs.jobs.add(job_id=draw(texts), agent=draw(texts))
            job.status = draw(st.sampled_from(JOB_STATUSES))
            draw(authority(job, sdk))
            job.parent_job_id = draw(texts)
            job.created_at.CopyFrom(draw(timestamps))
            if draw(st.booleans()):
                job.completed_at.CopyFrom(draw(timestamps))
            job.trace_id = draw(texts)
            job.last_event_seq = draw(uint64)
        msg.jobs.next_cursor = draw(texts)
    elif member == "closed":
        msg.closed.reason = draw(texts)
    elif member == "error":
        msg.error.error.CopyFrom(draw(errors()))
    elif member == "accepted":
        msg.job_id = msg.accepted.job_id = job_id
        msg.accepted.agent = draw(texts)
        draw(authority(msg.accepted, sdk))
        msg.accepted.accepted_at.CopyFrom(draw(timestamps))
        msg.accepted.trace_id = draw(texts)
        msg.accepted.parent_job_id = draw(texts)
    elif member == "cancelled":
        msg.job_id = msg.cancelled.job_id = job_id
    elif member == "subscribed":
        s = msg.subscribed
        msg.job_id = s.job_id = job_id
        s.current_status = draw(st.sampled_from(JOB_STATUSES))
        s.agent = draw(texts)
        draw(authority(s, sdk))
        s.parent_job_id, s.trace_id = draw(texts), draw(texts)
        s.subscribed_from, s.replayed = draw(uint64), draw(uint64)
    elif member == "event":
        msg.job_id = msg.event.job_id = job_id
        msg.event_seq = draw(uint64)
        msg.event.job_seq = draw(uint64)
        msg.event.ts.CopyFrom(draw(timestamps))
        draw(event_bodies(msg.event))
    elif member == "result":
        r = msg.result
        msg.job_id = r.job_id = job_id
        msg.event_seq = draw(uint64)
        allowed = [SUCCESS, CANCELLED, TIMED_OUT] if sdk else [SUCCESS]
        r.final_status = draw(st.sampled_from(allowed))
        which = draw(st.sampled_from(["value", "streamed", None]))
        if which == "value":
            r.value.CopyFrom(value_of(draw(non_null_values)))
        elif which == "streamed":
            r.streamed.result_id, r.streamed.result_size = draw(texts), draw(uint64)
        r.summary = draw(texts)
        r.completed_at.CopyFrom(draw(timestamps))
    else:
        e = msg.job_error
        msg.job_id = e.job_id = job_id
        msg.event_seq = draw(uint64)
        e.final_status = draw(st.sampled_from([ERROR, CANCELLED, TIMED_OUT]))
        e.error.CopyFrom(draw(errors()))
        e.completed_at.CopyFrom(draw(timestamps))
    return msg


@SETTINGS
@given(
    st.sampled_from([WIRE_PROFILE_SPEC, WIRE_PROFILE_SDK_COMPAT]).flatmap(
        lambda p: st.tuples(st.just(p), server_frames(p == WIRE_PROFILE_SDK_COMPAT))
    ),
    st.sampled_from([CloseForm.BYE, CloseForm.CLOSE]),
)
def test_server_proto_round_trip(case: tuple[Any, ConnectResponse], close: CloseForm) -> None:
    profile, msg = case
    text = encode_server_frame(msg, profile=profile, dialect=Dialect(close=close))
    assert decode_server_frame(text) == msg
    assert encode_server_frame(msg, profile=profile, dialect=Dialect(close=close)) == text


# ---- junk ---------------------------------------------------------------------


def decodes_or_refuses(text: str | bytes) -> None:
    """Decoding either succeeds or raises InvalidRequest naming a field."""
    refused: InvalidRequest | None = None
    try:
        decode_client_frame(text, max_bytes=MAX)
    except InvalidRequest as exc:
        refused = exc
    if refused is not None:
        assert isinstance(refused.details.get("field"), str)


any_json = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(alphabet=st.characters())
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=25,
)


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(data: bytes) -> None:
    decodes_or_refuses(data)


@SETTINGS
@given(any_json)
def test_random_json_never_crashes(value: Any) -> None:
    decodes_or_refuses(json.dumps(value))


@SETTINGS
@given(st.text(alphabet=string.printable + "\ud800é", max_size=80))
def test_random_text_never_crashes(text: str) -> None:
    decodes_or_refuses(text)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.extend(_paths(item, (*prefix, index)))
    return out


@SETTINGS
@given(client_frames(), st.data())
def test_frames_with_a_wrong_field_never_crash(
    frames: tuple[dict[str, Any], dict[str, Any]], data: st.DataObject
) -> None:
    """Replace one field anywhere in a valid frame with any JSON value."""
    frame = frames[1]
    path = data.draw(st.sampled_from(_paths(frame)[1:]))
    replacement = data.draw(any_json | st.sampled_from([-1, 2**64, 1.5, "", "\ud800", [], {}]))
    target: Any = frame
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    decodes_or_refuses(json.dumps(frame))
