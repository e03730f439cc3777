"""Server frames: ``ConnectResponse`` -> ARCP JSON per wire profile, and back.

Rendering is deterministic: fixed key order, compact separators, sorted keys
inside maps and free-form objects. Decoding (for tests and tools) reads
either profile back without being told which one produced the text.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from arcp_grpc.base.json_values import json_number, number, struct_to_py, value_to_py
from arcp_grpc.base.validate import MAX_ID_CHARS
from arcp_grpc.v1 import (
    errors_pb2,
    events_pb2,
    jobs_pb2,
    lease_pb2,
    session_pb2,
    session_service_pb2,
)
from gateway._fields import (
    JOB_STATUS_NAMES,
    JOB_STATUS_VALUES,
    LOG_LEVEL_NAMES,
    LOG_LEVEL_VALUES,
    UINT32_MAX,
    UINT64_MAX,
    bad,
    get_bool,
    get_list,
    get_object,
    get_str,
    get_str_list,
    get_struct,
    get_timestamp,
    get_uint,
    get_value,
    read_credential,
    read_error,
    read_lease,
    read_lease_constraints,
    render_credential,
    render_error,
    render_lease,
    render_lease_constraints,
    type_name,
)
from gateway._types import CloseForm, Dialect
from gateway._values import Raw, dump, format_timestamp, loads_exact

__all__ = ["decode_server_frame", "encode_server_frame"]

ConnectResponse = session_service_pb2.ConnectResponse
WireProfile = session_pb2.WireProfile

SDK: Final = session_pb2.WIRE_PROFILE_SDK_COMPAT
P: Final = "payload"

_CANCELLED: Final = jobs_pb2.JOB_STATUS_CANCELLED
_TIMED_OUT: Final = jobs_pb2.JOB_STATUS_TIMED_OUT
_SUCCESS: Final = jobs_pb2.JOB_STATUS_SUCCESS
_ERROR: Final = jobs_pb2.JOB_STATUS_ERROR
# §7.3/§7.4: the error code of a job that ends cancelled or timed out.
_TERMINAL_CODES: Final = {
    _CANCELLED: errors_pb2.ERROR_CODE_CANCELLED,
    _TIMED_OUT: errors_pb2.ERROR_CODE_TIMEOUT,
}
_DECIMAL_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")


# ---- rendering ------------------------------------------------------------


class _Ctx:
    """What a payload renderer needs besides its message."""

    __slots__ = ("dialect", "frame", "sdk")

    def __init__(self, frame: ConnectResponse, sdk: bool, dialect: Dialect) -> None:
        self.frame = frame
        self.sdk = sdk
        self.dialect = dialect


def encode_server_frame(
    frame: ConnectResponse,
    *,
    profile: session_pb2.WireProfile.ValueType,
    dialect: Dialect,
) -> str:
    """Render one server frame as ARCP JSON text in ``profile`` for ``dialect``.

    Raises ValueError only for a frame that breaks the contract: no oneof
    member, an unspecified status, a non-finite number, a budget amount that
    is not a decimal, or a JobResult/JobError whose final_status contradicts it.
    """
    kind = frame.WhichOneof("frame")
    if kind is None:
        raise ValueError("ConnectResponse carries no frame")
    ctx = _Ctx(frame, profile == SDK, dialect)
    frame_type, payload, job_id = _RENDERERS[kind](ctx)
    # The envelope is written around the payload's JSON rather than dumped as one
    # dict: its session/job/trace part is the same for every frame of a job and is
    # rendered once (`_envelope_ids`). Keys keep the order of the dict this replaces.
    # The published client drops job frames without an envelope job_id, so fall
    # back to the inner message's when the core left the outer one empty.
    ids = _envelope_ids(frame.session_id, frame.job_id or job_id, frame.trace_id)
    seq = f',"event_seq":{frame.event_seq}' if frame.event_seq else ""
    return (
        f'{{"arcp":"1.1","id":{_json_str(frame.id)},"type":"{frame_type}"'
        f'{ids}{seq},"payload":{dump(payload)}}}'
    )


_json_str: Final[Callable[[str], str]] = json.encoder.encode_basestring


def _envelope_ids(session_id: str, job_id: str, trace_id: str) -> str:
    """`,"session_id":…,"job_id":…,"trace_id":…` with the empty ones left out.

    Cached only for ids of the sizes the core issues and accepts, so the cache is
    bounded in bytes (4096 entries of at most a few KiB), not only in entries: a
    core that sent megabyte ids would otherwise pin gigabytes here."""
    if len(session_id) + len(job_id) + len(trace_id) > _CACHED_IDS_CHARS:
        return _render_ids(session_id, job_id, trace_id)
    return _cached_ids(session_id, job_id, trace_id)


_CACHED_IDS_CHARS: Final = 2 * MAX_ID_CHARS + 32  # a session id, a job id, a W3C trace id


def _render_ids(session_id: str, job_id: str, trace_id: str) -> str:
    return "".join(
        f',"{name}":{_json_str(value)}'
        for name, value in (("session_id", session_id), ("job_id", job_id), ("trace_id", trace_id))
        if value
    )


_cached_ids: Final = functools.lru_cache(maxsize=4096)(_render_ids)


def _request_id(ctx: _Ctx, *, always: bool = False) -> dict[str, Any]:
    request_id = ctx.frame.request_id
    return {"request_id": request_id} if request_id or always else {}


def _budget(budget: Any, sdk: bool) -> dict[str, Any]:
    # §9.6 counters are exact decimal strings in the proto. The spec renders
    # them as JSON numbers, written here as the exact token (`5.00`); the
    # published client wants `"USD:5.00"` strings.
    out: dict[str, Any] = {}
    for currency in sorted(budget):
        amount: str = budget[currency]
        if _DECIMAL_RE.fullmatch(amount) is None:
            try:
                parsed = Decimal(amount)
            except InvalidOperation:
                raise ValueError(f"budget[{currency!r}] = {amount!r} is not a decimal") from None
            if not parsed.is_finite():
                raise ValueError(f"budget[{currency!r}] = {amount!r} is not a decimal")
            amount = format(parsed, "f")
        out[currency] = f"{currency}:{amount}" if sdk else Raw(amount)
    return out


def _credentials(creds: Any, sdk: bool) -> list[dict[str, Any]]:
    # §9.8.1: clients ignore schemes they do not know; the published client
    # instead fails the whole frame on anything but "bearer", so the
    # compatibility profile leaves other schemes out.
    return [render_credential(c) for c in creds if not sdk or c.scheme == "bearer"]


def _authority(
    out: dict[str, Any],
    sdk: bool,
    *,
    lease: lease_pb2.Lease,
    constraints: lease_pb2.LeaseConstraints,
    has_constraints: bool,
    budget: Any,
    credentials: Any,
) -> None:
    out["lease"] = render_lease(lease)
    if has_constraints:
        out["lease_constraints"] = render_lease_constraints(constraints)
    if budget:
        out["budget"] = _budget(budget, sdk)
    if credentials:
        rendered = _credentials(credentials, sdk)
        if rendered:
            out["credentials"] = rendered


def _status(value: int, where: str) -> str:
    name = JOB_STATUS_NAMES.get(value)
    if name is None:
        raise ValueError(f"{where} is JOB_STATUS_UNSPECIFIED")
    return name


_Rendered = tuple[str, dict[str, Any], str]


def _r_welcome(ctx: _Ctx) -> _Rendered:
    msg = ctx.frame.welcome
    # The published client reads session_id and accepted_at from the payload.
    out = _request_id(ctx)
    out["session_id"] = msg.session_id or ctx.frame.session_id
    out["runtime"] = {"name": msg.runtime.name, "version": msg.runtime.version}
    out["resume_token"] = msg.resume_token
    out["resume_window_sec"] = msg.resume_window_sec
    if msg.heartbeat_interval_sec:
        out["heartbeat_interval_sec"] = msg.heartbeat_interval_sec
    agents = []
    for agent in msg.capabilities.agents:
        entry: dict[str, Any] = {"name": agent.name, "versions": list(agent.versions)}
        if agent.default_version:
            entry["default"] = agent.default_version
        agents.append(entry)
    out["capabilities"] = {
        "encodings": list(msg.capabilities.encodings),
        "features": list(msg.capabilities.features),
        "agents": agents,
    }
    out["accepted_at"] = format_timestamp(msg.accepted_at)
    if msg.resumed:
        out["resumed"] = True
    return "session.welcome", out, ""


def _r_ping(ctx: _Ctx) -> _Rendered:
    msg = ctx.frame.ping
    out = _request_id(ctx)
    out["nonce"] = msg.nonce
    out["sent_at"] = format_timestamp(msg.sent_at)
    return "session.ping", out, ""


def _r_pong(ctx: _Ctx) -> _Rendered:
    msg = ctx.frame.pong
    out = _request_id(ctx)
    out["ping_nonce"] = msg.ping_nonce
    out["received_at"] = format_timestamp(msg.received_at)
    return "session.pong", out, ""


def _job_entry(job: jobs_pb2.JobSummary, sdk: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "job_id": job.job_id,
        "agent": job.agent,
        "status": _status(job.status, "JobSummary.status"),
    }
    _authority(
        out,
        sdk,
        lease=job.lease,
        constraints=job.lease_constraints,
        has_constraints=job.HasField("lease_constraints"),
        budget=job.budget,
        credentials=job.credentials,
    )
    if job.parent_job_id:
        out["parent_job_id"] = job.parent_job_id
    created_at = format_timestamp(job.created_at)
    # §6.6 says created_at, the published client requires submitted_at: both.
    out["created_at"] = created_at
    out["submitted_at"] = created_at
    if job.HasField("completed_at"):
        out["completed_at"] = format_timestamp(job.completed_at)
    if job.trace_id:
        out["trace_id"] = job.trace_id
    out["last_event_seq"] = job.last_event_seq
    return out


def _r_jobs(ctx: _Ctx) -> _Rendered:
    msg = ctx.frame.jobs
    out = _request_id(ctx, always=True)
    out["jobs"] = [_job_entry(job, ctx.sdk) for job in msg.jobs]
    if msg.next_cursor:
        out["next_cursor"] = msg.next_cursor
    return "session.jobs", out, ""


def _r_closed(ctx: _Ctx) -> _Rendered:
    # A bye-dialect client knows no session.closed; it closes on session.bye
    # (whose payload needs `reason`).
    frame_type = "session.bye" if ctx.dialect.close is CloseForm.BYE else "session.closed"
    return frame_type, {**_request_id(ctx), "reason": ctx.frame.closed.reason}, ""


def _r_error(ctx: _Ctx) -> _Rendered:
    out = _request_id(ctx)
    out.update(render_error(ctx.frame.error.error))
    return "session.error", out, ""


def _r_accepted(ctx: _Ctx) -> _Rendered:
    msg = ctx.frame.accepted
    out = _request_id(ctx)
    out["job_id"] = msg.job_id
    out["agent"] = msg.agent
    _authority(
        out,
        ctx.sdk,
        lease=msg.lease,
        constraints=msg.lease_constraints,
        has_constraints=msg.HasField("lease_constraints"),
        budget=msg.budget,
        credentials=msg.credentials,
    )
    out["accepted_at"] = format_timestamp(msg.accepted_at)
    if msg.trace_id:
        out["trace_id"] = msg.trace_id
    if msg.parent_job_id:
        out["parent_job_id"] = msg.parent_job_id
    return "job.accepted", out, msg.job_id


def _r_cancelled(ctx: _Ctx) -> _Rendered:
    job_id = ctx.frame.cancelled.job_id
    return "job.cancelled", {**_request_id(ctx), "job_id": job_id}, job_id


def _r_subscribed(ctx: _Ctx) -> _Rendered:
    msg = ctx.frame.subscribed
    out = _request_id(ctx, always=True)
    out["job_id"] = msg.job_id
    out["current_status"] = _status(msg.current_status, "JobSubscribed.current_status")
    out["agent"] = msg.agent
    _authority(
        out,
        ctx.sdk,
        lease=msg.lease,
        constraints=msg.lease_constraints,
        has_constraints=msg.HasField("lease_constraints"),
        budget=msg.budget,
        credentials=msg.credentials,
    )
    if msg.parent_job_id:
        out["parent_job_id"] = msg.parent_job_id
    if msg.trace_id:
        out["trace_id"] = msg.trace_id
    out["subscribed_from"] = msg.subscribed_from
    if ctx.sdk:
        out["replayed"] = msg.replayed  # the published client: an event count
    else:
        out["replayed"] = msg.replayed > 0  # §7.6: a boolean; the count rides beside it
        out["replayed_events"] = msg.replayed
    return "job.subscribed", out, msg.job_id


def _r_event(ctx: _Ctx) -> _Rendered:
    msg = ctx.frame.event
    kind = msg.WhichOneof("body")
    if kind is None:
        raise ValueError("JobEvent carries no body")
    name, body = _EVENT_RENDERERS[kind](msg)
    out = _request_id(ctx)
    out["kind"] = name
    out["ts"] = format_timestamp(msg.ts)
    out["body"] = body
    if msg.job_seq:
        out["job_seq"] = msg.job_seq
    return "job.event", out, msg.job_id


def _error_payload(
    ctx: _Ctx, status: int, detail: errors_pb2.ErrorDetail, completed_at: str
) -> dict[str, Any]:
    out = _request_id(ctx)
    out["final_status"] = JOB_STATUS_NAMES[status]
    out.update(render_error(detail))
    out["completed_at"] = completed_at
    return out


def _r_result(ctx: _Ctx) -> _Rendered:
    msg = ctx.frame.result
    status = msg.final_status or _SUCCESS
    if status not in (_SUCCESS, _CANCELLED, _TIMED_OUT):
        raise ValueError(f"JobResult.final_status {JOB_STATUS_NAMES.get(status)} is not terminal")
    completed_at = format_timestamp(msg.completed_at)
    if status != _SUCCESS and not ctx.sdk:
        # §7.3/§7.4: cancelled and timed-out jobs end with job.error.
        detail = errors_pb2.ErrorDetail(code=_TERMINAL_CODES[status], message=msg.summary)
        return "job.error", _error_payload(ctx, status, detail, completed_at), msg.job_id
    out = _request_id(ctx)
    out["final_status"] = JOB_STATUS_NAMES[status]
    which = msg.WhichOneof("result")
    if which == "value":
        out["result"] = value_to_py(msg.value)
    elif which == "streamed":
        out["result_id"] = msg.streamed.result_id
        out["result_size"] = msg.streamed.result_size
    if msg.summary:
        out["summary"] = msg.summary
    out["completed_at"] = completed_at
    return "job.result", out, msg.job_id


def _r_job_error(ctx: _Ctx) -> _Rendered:
    msg = ctx.frame.job_error
    status = msg.final_status or _ERROR
    if status not in (_ERROR, _CANCELLED, _TIMED_OUT):
        raise ValueError(f"JobError.final_status {JOB_STATUS_NAMES.get(status)} is not an error")
    payload = _error_payload(ctx, status, msg.error, format_timestamp(msg.completed_at))
    if status != _ERROR and ctx.sdk:
        # The published client accepts job.error only with final_status
        # "error" and expects cancelled/timed_out as job.result; the error
        # fields ride along (it ignores them) so nothing is lost.
        return "job.result", payload, msg.job_id
    return "job.error", payload, msg.job_id


_RENDERERS: Final[dict[str, Callable[[_Ctx], _Rendered]]] = {
    "welcome": _r_welcome,
    "ping": _r_ping,
    "pong": _r_pong,
    "jobs": _r_jobs,
    "closed": _r_closed,
    "error": _r_error,
    "accepted": _r_accepted,
    "cancelled": _r_cancelled,
    "subscribed": _r_subscribed,
    "event": _r_event,
    "result": _r_result,
    "job_error": _r_job_error,
}


# Event bodies (§8.2). Where the spec and the published client's TypedDicts
# name a field differently, both names are sent with the same value.


def _e_log(msg: events_pb2.JobEvent) -> tuple[str, Any]:
    body = msg.log
    return "log", {"level": LOG_LEVEL_NAMES.get(body.level, "info"), "message": body.message}


def _e_thought(msg: events_pb2.JobEvent) -> tuple[str, Any]:
    return "thought", {"text": msg.thought.text}


def _e_tool_call(msg: events_pb2.JobEvent) -> tuple[str, Any]:
    body = msg.tool_call
    out: dict[str, Any] = {"tool": body.tool}
    args = value_to_py(body.args) if body.HasField("args") else None
    if args is not None:
        out["args"] = args
    out["call_id"] = body.call_id
    out["name"] = body.tool
    if args is not None:
        out["arguments"] = args
    out["tool_call_id"] = body.call_id
    return "tool_call", out


def _e_tool_result(msg: events_pb2.JobEvent) -> tuple[str, Any]:
    body = msg.tool_result
    out: dict[str, Any] = {"call_id": body.call_id, "tool_call_id": body.call_id}
    which = body.WhichOneof("outcome")
    if which == "result":
        result = value_to_py(body.result)
        out["result"] = result
        out["output"] = result
    elif which == "error":
        out["error"] = render_error(body.error)
    return "tool_result", out


def _e_status(msg: events_pb2.JobEvent) -> tuple[str, Any]:
    body = msg.status
    out: dict[str, Any] = {"phase": body.phase}
    if body.message:
        out["message"] = body.message
    if body.HasField("credential"):
        # §9.8.2 (and the published runtime) put the rotated id/value in the body.
        out["id"] = body.credential.id
        out["value"] = body.credential.value
        out["credential"] = render_credential(body.credential)
    return "status", out


def _e_metric(msg: events_pb2.JobEvent) -> tuple[str, Any]:
    body = msg.metric
    out: dict[str, Any] = {"name": body.name, "value": json_number(body.value)}
    if body.unit:
        out["unit"] = body.unit
    if body.HasField("dimensions"):
        dimensions = struct_to_py(body.dimensions)
        out["dimensions"] = dimensions
        out["attributes"] = dimensions
    return "metric", out


def _e_artifact_ref(msg: events_pb2.JobEvent) -> tuple[str, Any]:
    body = msg.artifact_ref
    out: dict[str, Any] = {
        "uri": body.uri,
        "content_type": body.content_type,
        "media_type": body.content_type,
    }
    if body.HasField("byte_size"):
        out["byte_size"] = body.byte_size
        out["size_bytes"] = body.byte_size
    if body.sha256:
        out["sha256"] = body.sha256
    return "artifact_ref", out


def _e_delegate(msg: events_pb2.JobEvent) -> tuple[str, Any]:
    body = msg.delegate
    out: dict[str, Any] = {
        "child_job_id": body.child_job_id,
        "agent": body.agent,
        "lease": render_lease(body.lease),
    }
    if body.HasField("lease_constraints"):
        out["lease_constraints"] = render_lease_constraints(body.lease_constraints)
    return "delegate", out


def _e_progress(msg: events_pb2.JobEvent) -> tuple[str, Any]:
    body = msg.progress
    out: dict[str, Any] = {"current": json_number(body.current)}
    if body.HasField("total"):
        out["total"] = json_number(body.total)
    if body.units:
        out["units"] = body.units
    if body.message:
        out["message"] = body.message
    return "progress", out


def _e_result_chunk(msg: events_pb2.JobEvent) -> tuple[str, Any]:
    body = msg.result_chunk
    data = body.data
    text: str | None = None
    if body.encoding != events_pb2.CHUNK_ENCODING_BASE64:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None  # not text after all: base64 keeps the bytes intact (§8.4)
    encoding = "utf8" if text is not None else "base64"
    return "result_chunk", {
        "result_id": body.result_id,
        "chunk_seq": body.chunk_seq,
        "data": text if text is not None else base64.b64encode(data).decode("ascii"),
        "encoding": encoding,
        "more": body.more,
    }


def _e_vendor(msg: events_pb2.JobEvent) -> tuple[str, Any]:
    body = msg.vendor
    if not body.kind.startswith("x-vendor."):
        raise ValueError(f"vendor event kind {body.kind!r} does not start with 'x-vendor.'")
    return body.kind, struct_to_py(body.body)


_EVENT_RENDERERS: Final[dict[str, Callable[[events_pb2.JobEvent], tuple[str, Any]]]] = {
    "log": _e_log,
    "thought": _e_thought,
    "tool_call": _e_tool_call,
    "tool_result": _e_tool_result,
    "status": _e_status,
    "metric": _e_metric,
    "artifact_ref": _e_artifact_ref,
    "delegate": _e_delegate,
    "progress": _e_progress,
    "result_chunk": _e_result_chunk,
    "vendor": _e_vendor,
}


# ---- reading back (tests, tools) -----------------------------------------


def decode_server_frame(text: str | bytes) -> ConnectResponse:
    """Parse server-frame JSON in either profile back into a ConnectResponse.

    The inverse of :func:`encode_server_frame` for frames the core builds
    canonically (envelope ``job_id`` equal to the inner one). Not a hot path:
    it exists for tests and tools. Malformed text raises InvalidRequest.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise bad("$", f"frame is not valid UTF-8: {exc.reason}") from None
    try:
        env = loads_exact(text)
    except (ValueError, RecursionError) as exc:
        raise bad("$", f"invalid JSON: {exc}") from None
    if type(env) is not dict:
        raise bad("$", f"frame must be a JSON object, got {type_name(env)}")
    if env.get("arcp") != "1.1":
        raise bad("arcp", 'must be "1.1"')
    frame = ConnectResponse(
        id=get_str(env, "id", "", required=True) or "",
        session_id=get_str(env, "session_id", "") or "",
        job_id=get_str(env, "job_id", "") or "",
        trace_id=get_str(env, "trace_id", "") or "",
        event_seq=get_uint(env, "event_seq", "", maximum=UINT64_MAX) or 0,
    )
    frame_type = get_str(env, "type", "", required=True) or ""
    reader = _READERS.get(frame_type)
    if reader is None:
        raise bad("type", f"unknown server frame type {frame_type!r}")
    payload = get_object(env, "payload", "") or {}
    frame.request_id = get_str(payload, "request_id", P) or ""
    reader(frame, payload)
    return frame


def _read_budget(payload: dict[str, Any], path: str, into: Any) -> None:
    budget = get_object(payload, "budget", path)
    for currency, amount in (budget or {}).items():
        where = f"{path}.budget.{currency}"
        if type(amount) is str:
            prefix = f"{currency}:"
            if not amount.startswith(prefix):
                raise bad(where, f"must look like {prefix}<decimal>")
            into[currency] = amount[len(prefix) :]
        elif type(amount) is int:
            into[currency] = str(amount)
        elif type(amount) is Decimal and amount.is_finite():
            into[currency] = format(amount, "f")  # plain notation, never 1E-7
        else:
            raise bad(where, f"must be a number or a string, got {type_name(amount)}")


def _read_credentials(payload: dict[str, Any], path: str, into: Any) -> None:
    for index, item in enumerate(get_list(payload, "credentials", path) or ()):
        read_credential(item, f"{path}.credentials[{index}]", into.add())


def _read_lease(obj: dict[str, Any], path: str, parent: Any) -> None:
    # The renderer always sends `lease` (the published client defaults it to
    # {}), so an empty one reads back as the unset field it came from.
    if read_lease(obj, "lease", path, parent.lease) and not parent.lease.capabilities:
        parent.ClearField("lease")


def _read_status(obj: dict[str, Any], key: str, path: str) -> int:
    name = get_str(obj, key, path, required=True) or ""
    value = JOB_STATUS_VALUES.get(name)
    if value is None:
        raise bad(f"{path}.{key}", f"unknown job status {name!r}")
    return value


def _double(obj: dict[str, Any], key: str, path: str) -> float | None:
    raw = obj.get(key)
    if raw is None:
        return None
    value = number(raw)
    if value is None:
        raise bad(f"{path}.{key}", f"must be a number, got {type_name(raw)}")
    return value


def _x_welcome(frame: ConnectResponse, p: dict[str, Any]) -> None:
    msg = frame.welcome
    msg.session_id = get_str(p, "session_id", P) or ""
    runtime = get_object(p, "runtime", P) or {}
    msg.runtime.name = get_str(runtime, "name", f"{P}.runtime") or ""
    msg.runtime.version = get_str(runtime, "version", f"{P}.runtime") or ""
    msg.resume_token = get_str(p, "resume_token", P) or ""
    msg.resume_window_sec = get_uint(p, "resume_window_sec", P, maximum=UINT32_MAX) or 0
    msg.heartbeat_interval_sec = get_uint(p, "heartbeat_interval_sec", P, maximum=UINT32_MAX) or 0
    caps = get_object(p, "capabilities", P) or {}
    where = f"{P}.capabilities"
    msg.capabilities.SetInParent()
    msg.capabilities.encodings.extend(get_str_list(caps, "encodings", where) or ())
    msg.capabilities.features.extend(get_str_list(caps, "features", where) or ())
    for index, agent in enumerate(get_list(caps, "agents", where) or ()):
        at = f"{where}.agents[{index}]"
        if type(agent) is not dict:
            raise bad(at, f"must be an object, got {type_name(agent)}")
        entry = msg.capabilities.agents.add()
        entry.name = get_str(agent, "name", at) or ""
        entry.versions.extend(get_str_list(agent, "versions", at) or ())
        entry.default_version = get_str(agent, "default", at) or ""
    get_timestamp(p, "accepted_at", P, msg.accepted_at)
    msg.resumed = bool(get_bool(p, "resumed", P))


def _x_ping(frame: ConnectResponse, p: dict[str, Any]) -> None:
    frame.ping.nonce = get_str(p, "nonce", P) or ""
    get_timestamp(p, "sent_at", P, frame.ping.sent_at)


def _x_pong(frame: ConnectResponse, p: dict[str, Any]) -> None:
    frame.pong.ping_nonce = get_str(p, "ping_nonce", P) or ""
    get_timestamp(p, "received_at", P, frame.pong.received_at)


def _x_jobs(frame: ConnectResponse, p: dict[str, Any]) -> None:
    msg = frame.jobs
    msg.SetInParent()
    for index, item in enumerate(get_list(p, "jobs", P) or ()):
        at = f"{P}.jobs[{index}]"
        if type(item) is not dict:
            raise bad(at, f"must be an object, got {type_name(item)}")
        job = msg.jobs.add()
        job.job_id = get_str(item, "job_id", at) or ""
        job.agent = get_str(item, "agent", at) or ""
        job.status = _read_status(item, "status", at)  # type: ignore[assignment]
        _read_lease(item, at, job)
        read_lease_constraints(item, "lease_constraints", at, job.lease_constraints)
        _read_budget(item, at, job.budget)
        _read_credentials(item, at, job.credentials)
        job.parent_job_id = get_str(item, "parent_job_id", at) or ""
        if not get_timestamp(item, "created_at", at, job.created_at):
            get_timestamp(item, "submitted_at", at, job.created_at)
        get_timestamp(item, "completed_at", at, job.completed_at)
        job.trace_id = get_str(item, "trace_id", at) or ""
        job.last_event_seq = get_uint(item, "last_event_seq", at, maximum=UINT64_MAX) or 0
    msg.next_cursor = get_str(p, "next_cursor", P) or ""


def _x_closed(frame: ConnectResponse, p: dict[str, Any]) -> None:
    frame.closed.reason = get_str(p, "reason", P) or ""


def _x_error(frame: ConnectResponse, p: dict[str, Any]) -> None:
    read_error(p, P, frame.error.error)


def _x_accepted(frame: ConnectResponse, p: dict[str, Any]) -> None:
    msg = frame.accepted
    msg.job_id = get_str(p, "job_id", P) or ""
    msg.agent = get_str(p, "agent", P) or ""
    _read_lease(p, P, msg)
    read_lease_constraints(p, "lease_constraints", P, msg.lease_constraints)
    _read_budget(p, P, msg.budget)
    _read_credentials(p, P, msg.credentials)
    get_timestamp(p, "accepted_at", P, msg.accepted_at)
    msg.trace_id = get_str(p, "trace_id", P) or ""
    msg.parent_job_id = get_str(p, "parent_job_id", P) or ""


def _x_cancelled(frame: ConnectResponse, p: dict[str, Any]) -> None:
    frame.cancelled.job_id = get_str(p, "job_id", P) or ""


def _x_subscribed(frame: ConnectResponse, p: dict[str, Any]) -> None:
    msg = frame.subscribed
    msg.job_id = get_str(p, "job_id", P) or ""
    msg.current_status = _read_status(p, "current_status", P)  # type: ignore[assignment]
    msg.agent = get_str(p, "agent", P) or ""
    _read_lease(p, P, msg)
    read_lease_constraints(p, "lease_constraints", P, msg.lease_constraints)
    _read_budget(p, P, msg.budget)
    _read_credentials(p, P, msg.credentials)
    msg.parent_job_id = get_str(p, "parent_job_id", P) or ""
    msg.trace_id = get_str(p, "trace_id", P) or ""
    msg.subscribed_from = get_uint(p, "subscribed_from", P, maximum=UINT64_MAX) or 0
    replayed = p.get("replayed")
    if type(replayed) is bool:
        msg.replayed = get_uint(p, "replayed_events", P, maximum=UINT64_MAX) or int(replayed)
    else:
        msg.replayed = get_uint(p, "replayed", P, maximum=UINT64_MAX) or 0


def _terminal_error(frame: ConnectResponse, p: dict[str, Any], status: int) -> None:
    msg = frame.job_error
    msg.job_id = frame.job_id
    msg.final_status = status  # type: ignore[assignment]
    read_error(p, P, msg.error)
    get_timestamp(p, "completed_at", P, msg.completed_at)


def _x_result(frame: ConnectResponse, p: dict[str, Any]) -> None:
    status = _read_status(p, "final_status", P)
    if "code" in p:  # a cancelled/timed-out JobError in the compatibility profile
        _terminal_error(frame, p, status)
        return
    msg = frame.result
    msg.job_id = frame.job_id
    msg.final_status = status  # type: ignore[assignment]
    if not get_value(p, "result", P, msg.value):
        result_id = get_str(p, "result_id", P)
        if result_id is not None:
            msg.streamed.result_id = result_id
            msg.streamed.result_size = get_uint(p, "result_size", P, maximum=UINT64_MAX) or 0
    msg.summary = get_str(p, "summary", P) or ""
    get_timestamp(p, "completed_at", P, msg.completed_at)


def _x_job_error(frame: ConnectResponse, p: dict[str, Any]) -> None:
    _terminal_error(frame, p, _read_status(p, "final_status", P))


def _x_event(frame: ConnectResponse, p: dict[str, Any]) -> None:
    msg = frame.event
    msg.job_id = frame.job_id
    msg.job_seq = get_uint(p, "job_seq", P, maximum=UINT64_MAX) or 0
    get_timestamp(p, "ts", P, msg.ts)
    kind = get_str(p, "kind", P, required=True) or ""
    where = f"{P}.body"
    if kind.startswith("x-vendor."):
        msg.vendor.kind = kind
        get_struct(p, "body", P, msg.vendor.body)
        msg.vendor.body.SetInParent()
        return
    body = get_object(p, "body", P) or {}
    reader = _EVENT_READERS.get(kind)
    if reader is None:
        raise bad(f"{P}.kind", f"unknown event kind {kind!r}")
    reader(msg, body, where)


def _first_str(body: dict[str, Any], where: str, *keys: str) -> str:
    for key in keys:
        value = get_str(body, key, where)
        if value is not None:
            return value
    return ""


def _b_log(msg: events_pb2.JobEvent, b: dict[str, Any], where: str) -> None:
    level = get_str(b, "level", where) or "info"
    if level not in LOG_LEVEL_VALUES:
        raise bad(f"{where}.level", f"unknown log level {level!r}")
    msg.log.level = LOG_LEVEL_VALUES[level]  # type: ignore[assignment]
    msg.log.message = get_str(b, "message", where) or ""


def _b_thought(msg: events_pb2.JobEvent, b: dict[str, Any], where: str) -> None:
    msg.thought.text = get_str(b, "text", where) or ""


def _b_tool_call(msg: events_pb2.JobEvent, b: dict[str, Any], where: str) -> None:
    body = msg.tool_call
    body.SetInParent()
    body.tool = _first_str(b, where, "tool", "name")
    body.call_id = _first_str(b, where, "call_id", "tool_call_id")
    if not get_value(b, "args", where, body.args):
        get_value(b, "arguments", where, body.args)


def _b_tool_result(msg: events_pb2.JobEvent, b: dict[str, Any], where: str) -> None:
    body = msg.tool_result
    body.SetInParent()
    body.call_id = _first_str(b, where, "call_id", "tool_call_id")
    error = get_object(b, "error", where)
    if error is not None:
        read_error(error, f"{where}.error", body.error)
    elif not get_value(b, "result", where, body.result):
        get_value(b, "output", where, body.result)


def _b_status(msg: events_pb2.JobEvent, b: dict[str, Any], where: str) -> None:
    body = msg.status
    body.SetInParent()
    body.phase = get_str(b, "phase", where) or ""
    body.message = get_str(b, "message", where) or ""
    credential = b.get("credential")
    if credential is not None:
        read_credential(credential, f"{where}.credential", body.credential)


def _b_metric(msg: events_pb2.JobEvent, b: dict[str, Any], where: str) -> None:
    body = msg.metric
    body.SetInParent()
    body.name = get_str(b, "name", where) or ""
    body.value = _double(b, "value", where) or 0.0
    body.unit = get_str(b, "unit", where) or ""
    if not get_struct(b, "dimensions", where, body.dimensions):
        get_struct(b, "attributes", where, body.dimensions)


def _b_artifact_ref(msg: events_pb2.JobEvent, b: dict[str, Any], where: str) -> None:
    body = msg.artifact_ref
    body.SetInParent()
    body.uri = get_str(b, "uri", where) or ""
    body.content_type = _first_str(b, where, "content_type", "media_type")
    size = get_uint(b, "byte_size", where, maximum=UINT64_MAX)
    if size is None:
        size = get_uint(b, "size_bytes", where, maximum=UINT64_MAX)
    if size is not None:
        body.byte_size = size
    body.sha256 = get_str(b, "sha256", where) or ""


def _b_delegate(msg: events_pb2.JobEvent, b: dict[str, Any], where: str) -> None:
    body = msg.delegate
    body.SetInParent()
    body.child_job_id = get_str(b, "child_job_id", where) or ""
    body.agent = get_str(b, "agent", where) or ""
    _read_lease(b, where, body)
    read_lease_constraints(b, "lease_constraints", where, body.lease_constraints)


def _b_progress(msg: events_pb2.JobEvent, b: dict[str, Any], where: str) -> None:
    body = msg.progress
    body.SetInParent()
    body.current = _double(b, "current", where) or 0.0
    total = _double(b, "total", where)
    if total is not None:
        body.total = total
    body.units = get_str(b, "units", where) or ""
    body.message = get_str(b, "message", where) or ""


def _b_result_chunk(msg: events_pb2.JobEvent, b: dict[str, Any], where: str) -> None:
    body = msg.result_chunk
    body.result_id = get_str(b, "result_id", where) or ""
    body.chunk_seq = get_uint(b, "chunk_seq", where, maximum=UINT64_MAX) or 0
    data = get_str(b, "data", where) or ""
    encoding = get_str(b, "encoding", where) or "utf8"
    if encoding == "base64":
        try:
            body.data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise bad(f"{where}.data", "is not valid base64") from None
        body.encoding = events_pb2.CHUNK_ENCODING_BASE64
    elif encoding == "utf8":
        body.data = data.encode("utf-8")
        body.encoding = events_pb2.CHUNK_ENCODING_UTF8
    else:
        raise bad(f"{where}.encoding", f"must be utf8 or base64, got {encoding!r}")
    body.more = bool(get_bool(b, "more", where))


_EVENT_READERS: Final[dict[str, Callable[[events_pb2.JobEvent, dict[str, Any], str], None]]] = {
    "log": _b_log,
    "thought": _b_thought,
    "tool_call": _b_tool_call,
    "tool_result": _b_tool_result,
    "status": _b_status,
    "metric": _b_metric,
    "artifact_ref": _b_artifact_ref,
    "delegate": _b_delegate,
    "progress": _b_progress,
    "result_chunk": _b_result_chunk,
}

_READERS: Final[dict[str, Callable[[ConnectResponse, dict[str, Any]], None]]] = {
    "session.welcome": _x_welcome,
    "session.ping": _x_ping,
    "session.pong": _x_pong,
    "session.jobs": _x_jobs,
    "session.closed": _x_closed,
    "session.bye": _x_closed,
    "session.error": _x_error,
    "job.accepted": _x_accepted,
    "job.cancelled": _x_cancelled,
    "job.subscribed": _x_subscribed,
    "job.event": _x_event,
    "job.result": _x_result,
    "job.error": _x_job_error,
}
