"""Client frames: ARCP JSON -> ``ConnectRequest`` (validated) and back."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from arcp_grpc.base.json_values import value_to_py
from arcp_grpc.base.validate import check_connect_request, check_id, check_trace_id
from arcp_grpc.v1 import session_pb2, session_service_pb2
from gateway._fields import (
    AGENT_REF_RE,
    JOB_STATUS_NAMES,
    JOB_STATUS_VALUES,
    UINT32_MAX,
    UINT64_MAX,
    bad,
    get_bool,
    get_object,
    get_str,
    get_str_list,
    get_timestamp,
    get_uint,
    get_value,
    read_lease,
    read_lease_constraints,
    render_lease,
    render_lease_constraints,
    type_name,
)
from gateway._types import ClientFrame, CloseForm, ResumeForm
from gateway._values import dump, format_timestamp, loads

__all__ = ["decode_client_frame", "encode_client_frame"]

ConnectRequest = session_service_pb2.ConnectRequest

PROTOCOL_VERSION: Final = "1.1"
ROOT: Final = "$"
"""The ``details["field"]`` of errors about the frame as a whole."""

# The published client's id grammar (arcp/_envelope.py): a ULID, a UUIDv7, or
# a lowercase prefix, "_" and a ULID. fullmatch, so no trailing newline slips by.
_ULID: Final = "[0-9A-HJKMNP-TV-Z]{26}"
_ID_RE: Final = re.compile(
    rf"{_ULID}|[0-9a-f]{{8}}-[0-9a-f]{{4}}-7[0-9a-f]{{3}}-[89ab][0-9a-f]{{3}}-[0-9a-f]{{12}}"
    rf"|[a-z]+_{_ULID}"
)
P: Final = "payload"


def decode_client_frame(text: str | bytes, *, max_bytes: int) -> ClientFrame:
    """Parse and validate one client frame; every failure is InvalidRequest (§5, §12)."""
    if isinstance(text, bytes):
        if len(text) > max_bytes:
            raise bad(ROOT, f"frame of {len(text)} bytes exceeds the {max_bytes}-byte limit")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise bad(ROOT, f"frame is not valid UTF-8: {exc.reason}") from None
    else:
        _check_size(text, max_bytes)
    try:
        env = loads(text)
    except ValueError as exc:
        raise bad(ROOT, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise bad(ROOT, "invalid JSON: nested too deeply") from None
    if type(env) is not dict:
        raise bad(ROOT, f"frame must be a JSON object, got {type_name(env)}")
    frame_type = _read_envelope(env)
    decode = _DECODERS.get(frame_type)
    if decode is None:
        raise bad("type", f"unknown client frame type {frame_type!r}")
    payload = get_object(env, "payload", "")
    request = ConnectRequest(id=env["id"])
    decode(request, payload if payload is not None else {}, env)
    check_connect_request(request, P)
    return ClientFrame(
        request=request,
        type=frame_type,
        resume_form=_RESUME_FORMS.get(frame_type) if _resumes(request) else None,
        close_form=_CLOSE_FORMS.get(frame_type),
    )


def _check_size(text: str, max_bytes: int) -> None:
    # len(str) <= UTF-8 length <= 4 * len(str): encode only when it decides.
    length = len(text)
    if length * 4 > max_bytes:
        length = len(text.encode("utf-8", "surrogatepass")) if length <= max_bytes else length
        if length > max_bytes:
            raise bad(ROOT, f"frame of {length} bytes exceeds the {max_bytes}-byte limit")


def _read_envelope(env: dict[str, Any]) -> str:
    """Check the §5 envelope and return its type. Unknown top-level fields are ignored."""
    if env.get("arcp") != PROTOCOL_VERSION or type(env.get("arcp")) is not str:
        raise bad("arcp", f'must be "{PROTOCOL_VERSION}", got {env.get("arcp")!r}')
    envelope_id = get_str(env, "id", "", required=True)
    if envelope_id is None or _ID_RE.fullmatch(envelope_id) is None:
        raise bad("id", f"must be a ULID, a UUIDv7 or prefix_ULID, got {envelope_id!r}")
    # The core's rules (arcp_grpc.base.validate), so both edges refuse the same input.
    check_trace_id(get_str(env, "trace_id", "") or "")
    check_id(get_str(env, "session_id", "") or "", "session_id")
    check_id(get_str(env, "job_id", "") or "", "job_id")
    get_uint(env, "event_seq", "", maximum=UINT64_MAX)
    frame_type = get_str(env, "type", "", required=True)
    assert frame_type is not None  # required=True
    return frame_type


def _resumes(request: ConnectRequest) -> bool:
    kind = request.WhichOneof("frame")
    return kind == "resume" or (kind == "hello" and request.hello.HasField("resume"))


def _read_resume(obj: dict[str, Any], path: str, msg: session_pb2.SessionResume) -> None:
    msg.SetInParent()
    msg.session_id = get_str(obj, "session_id", path, required=True) or ""
    msg.resume_token = get_str(obj, "resume_token", path, required=True) or ""
    msg.last_event_seq = (
        get_uint(obj, "last_event_seq", path, maximum=UINT64_MAX, required=True) or 0
    )
    _read_auth(obj, path, msg.auth)


def _read_auth(obj: dict[str, Any], path: str, msg: session_pb2.Auth) -> None:
    auth = get_object(obj, "auth", path)
    if auth is None:
        return
    msg.SetInParent()
    where = f"{path}.auth"
    msg.scheme = get_str(auth, "scheme", where) or ""
    msg.token = get_str(auth, "token", where) or ""


def _hello(request: ConnectRequest, payload: dict[str, Any], env: dict[str, Any]) -> None:
    msg = request.hello
    msg.SetInParent()
    client = get_object(payload, "client", P)
    if client is not None:
        msg.client.SetInParent()
        msg.client.name = get_str(client, "name", f"{P}.client") or ""
        msg.client.version = get_str(client, "version", f"{P}.client") or ""
    _read_auth(payload, P, msg.auth)
    capabilities = get_object(payload, "capabilities", P)
    if capabilities is not None:
        where = f"{P}.capabilities"
        msg.capabilities.SetInParent()
        msg.capabilities.encodings.extend(get_str_list(capabilities, "encodings", where) or ())
        msg.capabilities.features.extend(get_str_list(capabilities, "features", where) or ())
        # `agents` is the runtime's inventory; the SDKs send an empty one. Ignored.
    resume = get_object(payload, "resume", P)
    if resume is not None:
        _read_resume(resume, f"{P}.resume", msg.resume)


def _resume(request: ConnectRequest, payload: dict[str, Any], env: dict[str, Any]) -> None:
    _read_resume(payload, P, request.resume)


def _ping(request: ConnectRequest, payload: dict[str, Any], env: dict[str, Any]) -> None:
    msg = request.ping
    msg.SetInParent()
    msg.nonce = get_str(payload, "nonce", P, required=True) or ""
    get_timestamp(payload, "sent_at", P, msg.sent_at)


def _pong(request: ConnectRequest, payload: dict[str, Any], env: dict[str, Any]) -> None:
    msg = request.pong
    msg.SetInParent()
    msg.ping_nonce = get_str(payload, "ping_nonce", P, required=True) or ""
    get_timestamp(payload, "received_at", P, msg.received_at)


def _ack(request: ConnectRequest, payload: dict[str, Any], env: dict[str, Any]) -> None:
    request.ack.last_processed_seq = (
        get_uint(payload, "last_processed_seq", P, maximum=UINT64_MAX, required=True) or 0
    )


def _list_jobs(request: ConnectRequest, payload: dict[str, Any], env: dict[str, Any]) -> None:
    msg = request.list_jobs
    msg.SetInParent()
    flt = get_object(payload, "filter", P)
    if flt is not None:
        where = f"{P}.filter"
        msg.filter.SetInParent()
        for index, name in enumerate(get_str_list(flt, "status", where) or ()):
            status = JOB_STATUS_VALUES.get(name)
            if status is None:
                raise bad(f"{where}.status[{index}]", f"unknown job status {name!r}")
            msg.filter.status.append(status)  # type: ignore[arg-type]
        msg.filter.agent = get_str(flt, "agent", where) or ""
        get_timestamp(flt, "created_after", where, msg.filter.created_after)
    # 0 would mean "runtime default" in the proto; the wire's default is to omit it.
    msg.limit = get_uint(payload, "limit", P, minimum=1, maximum=UINT32_MAX) or 0
    msg.cursor = get_str(payload, "cursor", P) or ""


def _bye(request: ConnectRequest, payload: dict[str, Any], env: dict[str, Any]) -> None:
    request.bye.reason = get_str(payload, "reason", P) or ""


def _close(request: ConnectRequest, payload: dict[str, Any], env: dict[str, Any]) -> None:
    request.close.reason = get_str(payload, "reason", P) or ""


def _submit(request: ConnectRequest, payload: dict[str, Any], env: dict[str, Any]) -> None:
    msg = request.submit
    agent = get_str(payload, "agent", P, required=True) or ""
    if AGENT_REF_RE.fullmatch(agent) is None:
        raise bad(
            f"{P}.agent",
            f"{agent!r} is not `name` or `name@version` "
            "(name [a-z0-9][a-z0-9._-]*, version [a-zA-Z0-9.+_-]+, §7.5)",
        )
    msg.agent = agent
    get_value(payload, "input", P, msg.input)
    read_lease(payload, "lease_request", P, msg.lease_request)
    read_lease_constraints(payload, "lease_constraints", P, msg.lease_constraints)
    key = get_str(payload, "idempotency_key", P)
    if key is not None:
        if not key:
            raise bad(f"{P}.idempotency_key", "must not be empty (omit it instead)")
        msg.idempotency_key = key
    max_runtime = get_uint(payload, "max_runtime_sec", P, minimum=1, maximum=UINT32_MAX)
    if max_runtime is not None:
        msg.max_runtime_sec = max_runtime
    trace_id = env.get("trace_id")
    if trace_id is not None:
        msg.trace_id = trace_id


def _job_id(payload: dict[str, Any], env: dict[str, Any]) -> str:
    # The spec puts job_id in the payload (§7.6); the published client sends
    # job.cancel with job_id only on the envelope. Either, or both if equal.
    in_payload = get_str(payload, "job_id", P)
    on_envelope: str | None = env.get("job_id")
    if in_payload is None:
        if on_envelope is None:
            raise bad(f"{P}.job_id", "is required (in the payload or on the envelope)")
        return on_envelope
    if on_envelope is not None and on_envelope != in_payload:
        raise bad(f"{P}.job_id", "differs from the envelope job_id")
    return in_payload


def _cancel(request: ConnectRequest, payload: dict[str, Any], env: dict[str, Any]) -> None:
    msg = request.cancel
    msg.job_id = _job_id(payload, env)
    msg.reason = get_str(payload, "reason", P) or ""


def _subscribe(request: ConnectRequest, payload: dict[str, Any], env: dict[str, Any]) -> None:
    msg = request.subscribe
    msg.job_id = _job_id(payload, env)
    from_seq = get_uint(payload, "from_event_seq", P, maximum=UINT64_MAX)
    if from_seq is not None:
        msg.from_event_seq = from_seq
    msg.history = bool(get_bool(payload, "history", P))


def _unsubscribe(request: ConnectRequest, payload: dict[str, Any], env: dict[str, Any]) -> None:
    request.unsubscribe.job_id = _job_id(payload, env)


_Decoder = Callable[[ConnectRequest, dict[str, Any], dict[str, Any]], None]

_DECODERS: Final[dict[str, _Decoder]] = {
    "session.hello": _hello,
    "session.resume": _resume,
    "session.ping": _ping,
    "session.pong": _pong,
    "session.ack": _ack,
    "session.list_jobs": _list_jobs,
    "session.bye": _bye,
    "session.close": _close,
    "job.submit": _submit,
    "job.cancel": _cancel,
    "job.subscribe": _subscribe,
    "job.unsubscribe": _unsubscribe,
}
_RESUME_FORMS: Final = {
    "session.hello": ResumeForm.IN_HELLO,
    "session.resume": ResumeForm.SESSION_RESUME,
}
_CLOSE_FORMS: Final = {"session.bye": CloseForm.BYE, "session.close": CloseForm.CLOSE}


# ---- rendering (ConnectRequest -> JSON), the canonical form of each frame ----


def encode_client_frame(request: ConnectRequest) -> str:
    """Render a client frame as the JSON a careful client would send.

    ``job_id`` of cancel/subscribe/unsubscribe goes both in the payload (the
    spec) and on the envelope (the published client); resume is rendered in
    the form its oneof member names (``hello.resume`` or ``resume``).
    """
    kind = request.WhichOneof("frame")
    if kind is None:
        raise ValueError("ConnectRequest carries no frame")
    frame_type, render = _RENDERERS[kind]
    env: dict[str, Any] = {"arcp": PROTOCOL_VERSION, "id": request.id, "type": frame_type}
    payload = render(request, env)
    env["payload"] = payload
    return dump(env)


def _render_resume(msg: session_pb2.SessionResume) -> dict[str, Any]:
    out: dict[str, Any] = {
        "session_id": msg.session_id,
        "resume_token": msg.resume_token,
        "last_event_seq": msg.last_event_seq,
    }
    if msg.HasField("auth"):
        out["auth"] = {"scheme": msg.auth.scheme, "token": msg.auth.token}
    return out


def _r_hello(request: ConnectRequest, env: dict[str, Any]) -> dict[str, Any]:
    msg = request.hello
    out: dict[str, Any] = {}
    if msg.HasField("client"):
        out["client"] = {"name": msg.client.name, "version": msg.client.version}
    if msg.HasField("auth"):
        out["auth"] = {"scheme": msg.auth.scheme, "token": msg.auth.token}
    if msg.HasField("capabilities"):
        out["capabilities"] = {
            "encodings": list(msg.capabilities.encodings),
            "features": list(msg.capabilities.features),
        }
    if msg.HasField("resume"):
        out["resume"] = _render_resume(msg.resume)
    return out


def _r_resume(request: ConnectRequest, env: dict[str, Any]) -> dict[str, Any]:
    return _render_resume(request.resume)


def _r_ping(request: ConnectRequest, env: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"nonce": request.ping.nonce}
    if request.ping.HasField("sent_at"):
        out["sent_at"] = format_timestamp(request.ping.sent_at)
    return out


def _r_pong(request: ConnectRequest, env: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ping_nonce": request.pong.ping_nonce}
    if request.pong.HasField("received_at"):
        out["received_at"] = format_timestamp(request.pong.received_at)
    return out


def _r_ack(request: ConnectRequest, env: dict[str, Any]) -> dict[str, Any]:
    return {"last_processed_seq": request.ack.last_processed_seq}


def _r_list_jobs(request: ConnectRequest, env: dict[str, Any]) -> dict[str, Any]:
    msg = request.list_jobs
    out: dict[str, Any] = {}
    if msg.HasField("filter"):
        flt: dict[str, Any] = {}
        if msg.filter.status:
            flt["status"] = [JOB_STATUS_NAMES.get(s, "pending") for s in msg.filter.status]
        if msg.filter.agent:
            flt["agent"] = msg.filter.agent
        if msg.filter.HasField("created_after"):
            flt["created_after"] = format_timestamp(msg.filter.created_after)
        out["filter"] = flt
    if msg.limit:
        out["limit"] = msg.limit
    if msg.cursor:
        out["cursor"] = msg.cursor
    return out


def _r_bye(request: ConnectRequest, env: dict[str, Any]) -> dict[str, Any]:
    return {"reason": request.bye.reason}


def _r_close(request: ConnectRequest, env: dict[str, Any]) -> dict[str, Any]:
    return {"reason": request.close.reason}


def _r_submit(request: ConnectRequest, env: dict[str, Any]) -> dict[str, Any]:
    msg = request.submit
    if msg.trace_id:
        env["trace_id"] = msg.trace_id
    out: dict[str, Any] = {"agent": msg.agent}
    if msg.HasField("input"):
        out["input"] = value_to_py(msg.input)
    if msg.HasField("lease_request"):
        out["lease_request"] = render_lease(msg.lease_request)
    if msg.HasField("lease_constraints"):
        out["lease_constraints"] = render_lease_constraints(msg.lease_constraints)
    if msg.idempotency_key:
        out["idempotency_key"] = msg.idempotency_key
    if msg.HasField("max_runtime_sec"):
        out["max_runtime_sec"] = msg.max_runtime_sec
    return out


def _r_cancel(request: ConnectRequest, env: dict[str, Any]) -> dict[str, Any]:
    env["job_id"] = request.cancel.job_id
    return {"job_id": request.cancel.job_id, "reason": request.cancel.reason}


def _r_subscribe(request: ConnectRequest, env: dict[str, Any]) -> dict[str, Any]:
    msg = request.subscribe
    env["job_id"] = msg.job_id
    out: dict[str, Any] = {"job_id": msg.job_id}
    if msg.HasField("from_event_seq"):
        out["from_event_seq"] = msg.from_event_seq
    out["history"] = msg.history
    return out


def _r_unsubscribe(request: ConnectRequest, env: dict[str, Any]) -> dict[str, Any]:
    env["job_id"] = request.unsubscribe.job_id
    return {"job_id": request.unsubscribe.job_id}


_Renderer = Callable[[ConnectRequest, dict[str, Any]], dict[str, Any]]

_RENDERERS: Final[dict[str, tuple[str, _Renderer]]] = {
    "hello": ("session.hello", _r_hello),
    "resume": ("session.resume", _r_resume),
    "ping": ("session.ping", _r_ping),
    "pong": ("session.pong", _r_pong),
    "ack": ("session.ack", _r_ack),
    "list_jobs": ("session.list_jobs", _r_list_jobs),
    "bye": ("session.bye", _r_bye),
    "close": ("session.close", _r_close),
    "submit": ("job.submit", _r_submit),
    "cancel": ("job.cancel", _r_cancel),
    "subscribe": ("job.subscribe", _r_subscribe),
    "unsubscribe": ("job.unsubscribe", _r_unsubscribe),
}
