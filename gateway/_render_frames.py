"""Server frames -> ARCP JSON text, per wire profile and dialect (§5, §6, §7).

The gateway's hot path: every frame the core sends a client goes through
:func:`encode_server_frame`. Rendering is deterministic: fixed key order,
compact separators, sorted keys inside maps and free-form objects. One
renderer per ``ConnectResponse`` frame, picked from a table; a job event's body
(§8.2) is rendered by :mod:`gateway._render_events`, a job's lease, budget and
credentials (§9) by :mod:`gateway._authority`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, Final

from arcp_grpc.base.json_values import value_to_py
from arcp_grpc.base.validate import MAX_ID_CHARS
from arcp_grpc.v1 import errors_pb2, jobs_pb2, session_pb2, session_service_pb2
from gateway._authority import render_authority
from gateway._fields import JOB_STATUS_NAMES, render_agent, render_error
from gateway._render_events import EVENT_RENDERERS
from gateway._types import CloseForm, Dialect
from gateway._values import dump, format_timestamp

__all__ = ["encode_server_frame"]

ConnectResponse = session_service_pb2.ConnectResponse

SDK: Final = session_pb2.WIRE_PROFILE_SDK_COMPAT

_CANCELLED: Final = jobs_pb2.JOB_STATUS_CANCELLED
_TIMED_OUT: Final = jobs_pb2.JOB_STATUS_TIMED_OUT
_SUCCESS: Final = jobs_pb2.JOB_STATUS_SUCCESS
_ERROR: Final = jobs_pb2.JOB_STATUS_ERROR
# §7.3/§7.4: the error code of a job that ends cancelled or timed out.
_TERMINAL_CODES: Final = {
    _CANCELLED: errors_pb2.ERROR_CODE_CANCELLED,
    _TIMED_OUT: errors_pb2.ERROR_CODE_TIMEOUT,
}


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
    out["capabilities"] = {
        "encodings": list(msg.capabilities.encodings),
        "features": list(msg.capabilities.features),
        "agents": [render_agent(agent) for agent in msg.capabilities.agents],
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
    render_authority(
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
    render_authority(
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
    render_authority(
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
    name, body = EVENT_RENDERERS[kind](msg)
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
