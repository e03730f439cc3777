"""ARCP JSON server frames -> ``ConnectResponse``: the inverse of :mod:`gateway._render_frames`.

Not a hot path: it exists for tests and tools that read what the gateway sent.
It reads either wire profile back without being told which one produced the
text: ``replayed`` as a boolean or a count (§7.6), a cancelled or timed-out
end as ``job.error`` or ``job.result`` (§7.3, §7.4), ``session.closed`` or
``session.bye`` (§6.7). Malformed text raises InvalidRequest naming the field
(§12). Event bodies are read by :mod:`gateway._read_events`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from arcp_grpc.v1 import session_service_pb2
from gateway._authority import read_budget, read_credentials, read_rendered_lease
from gateway._fields import (
    JOB_STATUS_VALUES,
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
    read_error,
    read_lease_constraints,
    type_name,
)
from gateway._read_events import EVENT_READERS
from gateway._values import loads_exact

__all__ = ["decode_server_frame"]

ConnectResponse = session_service_pb2.ConnectResponse

P: Final = "payload"


def decode_server_frame(text: str | bytes) -> ConnectResponse:
    """Parse server-frame JSON in either profile back into a ConnectResponse.

    The inverse of :func:`~gateway.codec.encode_server_frame` for frames the core builds
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


def _read_status(obj: dict[str, Any], key: str, path: str) -> int:
    name = get_str(obj, key, path, required=True) or ""
    value = JOB_STATUS_VALUES.get(name)
    if value is None:
        raise bad(f"{path}.{key}", f"unknown job status {name!r}")
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
        read_rendered_lease(item, at, job)
        read_lease_constraints(item, "lease_constraints", at, job.lease_constraints)
        read_budget(item, at, job.budget)
        read_credentials(item, at, job.credentials)
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
    read_rendered_lease(p, P, msg)
    read_lease_constraints(p, "lease_constraints", P, msg.lease_constraints)
    read_budget(p, P, msg.budget)
    read_credentials(p, P, msg.credentials)
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
    read_rendered_lease(p, P, msg)
    read_lease_constraints(p, "lease_constraints", P, msg.lease_constraints)
    read_budget(p, P, msg.budget)
    read_credentials(p, P, msg.credentials)
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
    reader = EVENT_READERS.get(kind)
    if reader is None:
        raise bad(f"{P}.kind", f"unknown event kind {kind!r}")
    reader(msg, body, where)


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
