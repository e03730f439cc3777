"""Input rules shared by both edges: the gateway's codec and the core apply the same ones.

The gateway checks the JSON it decodes; the core checks the messages it is
handed, because a direct gRPC client or a split gateway of another version
never passes through this gateway. One table of caps, one trace-id rule, one
walk of free-form values, so the two edges cannot drift apart. Every refusal is
:class:`~arcp_grpc.errors.InvalidRequest` whose ``details["field"]`` names the
field; the message never echoes the oversized or hostile value itself.

Why caps at all: the spec sets none, and whatever the core accepts it keeps
(in the job's summary, its `JobAccepted`, every frame's envelope, the caches,
the log). A 1 MB ``trace_id`` repeated on every frame of a job is a memory and
disk amplifier; a newline in one is a forged log line (§11, §14).

Pure: protobuf messages and strings in, an exception or nothing out; no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final, TypeVar

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.message import DecodeError, Message

from arcp_grpc.base.agentref import MAX_AGENT_REF_LENGTH
from arcp_grpc.base.json_values import MAX_VALUE_DEPTH
from arcp_grpc.errors import InvalidRequest
from arcp_grpc.v1 import job_service_pb2, jobs_pb2, session_pb2, session_service_pb2

__all__ = [
    "MAX_CURSOR_CHARS",
    "MAX_IDEMPOTENCY_KEY_CHARS",
    "MAX_ID_CHARS",
    "MAX_LEASE_CHARS",
    "MAX_LIST_ITEMS",
    "MAX_NAME_CHARS",
    "MAX_REASON_CHARS",
    "MAX_TOKEN_CHARS",
    "check_connect_request",
    "check_id",
    "check_job_request",
    "check_list_filter",
    "check_submit",
    "check_text",
    "check_timestamp",
    "check_trace_id",
    "check_value",
    "request_parser",
]

MAX_ID_CHARS: Final = 128
"""Job, session, envelope and request ids: ours are ``prefix_`` + a 26-character ULID."""
MAX_IDEMPOTENCY_KEY_CHARS: Final = 256
"""§7.2 idempotency keys: a client's own text, so room for a UUID and a namespace."""
MAX_REASON_CHARS: Final = 1024
"""Free-text reasons of cancel, bye and close (§6.7, §7.4)."""
MAX_CURSOR_CHARS: Final = 512
"""Listing cursors and page tokens (§6.6); the ones this runtime issues are far shorter."""
MAX_TOKEN_CHARS: Final = 4096
"""Bearer and resume tokens (§6.1, §6.3): room for a signed JWT."""
MAX_NAME_CHARS: Final = 256
"""Short names: client name and version, auth scheme, feature and encoding names,
ping nonces, a listing's agent filter (as long as an agent reference, §7.5)."""
MAX_LEASE_CHARS: Final = 64 * 1024
"""All namespaces and patterns of a lease request together (§9.2). Each pattern has its
own grammar and cap (`_lease`); this bounds the whole, which every frame describing
the job (acceptance, summary, subscription) repeats."""
MAX_LIST_ITEMS: Final = 64
"""Entries in a hello's ``features`` or ``encodings`` list (§6.2)."""

# W3C Trace Context trace-id (§11): 32 lowercase hex digits, not all zero.
_TRACE_ID_RE: Final = re.compile("[0-9a-f]{32}")
_ZERO_TRACE_ID: Final = "0" * 32
# Identifiers are visible ASCII: no space, no control character, nothing a log
# line or a terminal would interpret.
_ID_RE: Final = re.compile("[!-~]*")
# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS: Final = -62_135_596_800
_MAX_SECONDS: Final = 253_402_300_799
_MAX_NANOS: Final = 999_999_999


def _bad(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{field}: {message}", details={"field": field})


def check_text(value: str, field: str, max_chars: int) -> None:
    """A string field of at most ``max_chars`` characters."""
    if len(value) > max_chars:
        raise _bad(field, f"is longer than {max_chars} characters ({len(value)})")


def check_id(value: str, field: str) -> None:
    """An identifier: at most :data:`MAX_ID_CHARS` visible ASCII characters ('' = absent)."""
    check_text(value, field, MAX_ID_CHARS)
    if _ID_RE.fullmatch(value) is None:
        raise _bad(field, "must be visible ASCII characters only")


def check_trace_id(value: str, field: str = "trace_id") -> None:
    """A W3C trace-id (§11): 32 lowercase hex digits, not all zero; '' means absent."""
    if value and (_TRACE_ID_RE.fullmatch(value) is None or value == _ZERO_TRACE_ID):
        raise _bad(field, "must be 32 lowercase hex digits, not all zero (W3C, §11)")


def check_timestamp(value: timestamp_pb2.Timestamp, field: str) -> None:
    """A timestamp within years 0001 to 9999 (what every language's Timestamp can hold)."""
    if not _MIN_SECONDS <= value.seconds <= _MAX_SECONDS or not 0 <= value.nanos <= _MAX_NANOS:
        raise _bad(field, "is not a valid timestamp (years 0001 to 9999)")


def check_value(value: struct_pb2.Value, field: str) -> None:
    """A free-form JSON value as the gateway would have accepted it: nested at most
    :data:`~arcp_grpc.base.json_values.MAX_VALUE_DEPTH` levels, numbers finite (JSON has no
    NaN or Infinity). Walked without recursion, so no input can exhaust the stack;
    each node carries only a link to its parent, and the path is spelled out for
    the error alone, so a sound value costs no string work."""
    pending: list[tuple[struct_pb2.Value, int, _Trail]] = [(value, 0, None)]
    while pending:
        item, depth, trail = pending.pop()
        kind = item.WhichOneof("kind")
        if kind == "number_value":
            if not math.isfinite(item.number_value):
                raise _bad(_path(field, trail), "NaN and Infinity are not JSON numbers")
        elif kind == "struct_value" or kind == "list_value":
            if depth >= MAX_VALUE_DEPTH:
                where = _path(field, trail)
                raise _bad(where, f"value nested deeper than {MAX_VALUE_DEPTH} levels")
            if kind == "struct_value":
                fields = item.struct_value.fields
                pending.extend((fields[key], depth + 1, (trail, key)) for key in fields)
            else:
                values = item.list_value.values
                pending.extend((child, depth + 1, (trail, i)) for i, child in enumerate(values))


_Trail = tuple[Any, str | int] | None
"""(parent's trail, key or index): the way down to a node of a value."""


def _path(root: str, trail: _Trail) -> str:
    segments: list[str] = []
    while trail is not None:
        trail, step = trail
        segments.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return root + "".join(reversed(segments))


def check_submit(submit: jobs_pb2.JobSubmit, path: str = "") -> None:
    """A job submission's identifiers, texts and input (§7.1, §7.2, §11). The agent's
    grammar, the lease and its expiry are checked where they are parsed (`_agentref`,
    `_lease`, the runtime)."""
    _check_submit_texts(submit, path)
    if submit.HasField("input"):
        check_value(submit.input, _join(path, "input"))


def _check_submit_texts(submit: jobs_pb2.JobSubmit, path: str) -> None:
    check_text(submit.agent, _join(path, "agent"), MAX_AGENT_REF_LENGTH)
    check_text(submit.idempotency_key, _join(path, "idempotency_key"), MAX_IDEMPOTENCY_KEY_CHARS)
    check_trace_id(submit.trace_id, _join(path, "trace_id"))
    capabilities = submit.lease_request.capabilities
    size = sum(len(ns) + sum(map(len, capabilities[ns].patterns)) for ns in capabilities)
    if size > MAX_LEASE_CHARS:
        raise _bad(_join(path, "lease_request"), f"is longer than {MAX_LEASE_CHARS} characters")


def check_list_filter(where: jobs_pb2.ListJobsFilter, path: str) -> None:
    """A listing filter (§6.6): its agent and its ``created_after``."""
    check_text(where.agent, _join(path, "agent"), MAX_NAME_CHARS)
    if where.HasField("created_after"):
        check_timestamp(where.created_after, _join(path, "created_after"))


def check_job_request(request: object) -> None:
    """The identifiers and texts of a JobService request. A SubmitJob's `JobSubmit` is
    the runtime's to check (`check_submit`), on that path as on every other."""
    if isinstance(request, job_service_pb2.GetJobRequest | job_service_pb2.WatchJobRequest):
        check_id(request.job_id, "job_id")
    elif isinstance(request, job_service_pb2.ListJobsRequest):
        check_list_filter(request.filter, "filter")
        check_text(request.page_token, "page_token", MAX_CURSOR_CHARS)
    elif isinstance(request, job_service_pb2.CancelJobRequest):
        check_id(request.cancel.job_id, "cancel.job_id")
        check_text(request.cancel.reason, "cancel.reason", MAX_REASON_CHARS)


def check_connect_request(request: session_service_pb2.ConnectRequest, payload: str) -> None:
    """Every identifier and string of one client frame's body.

    A submit's ``input`` is walked once per edge, not here: the gateway's codec
    applies the same rules while building it from JSON, and the runtime runs
    :func:`check_submit` on every submission, whichever service it came through.

    Not the envelope ``id``: each edge checks it first with its own grammar
    (:func:`check_id` in the core, the ULID grammar in the gateway), because an
    error reply echoes it as ``request_id``.

    ``payload`` names the frame's body in field paths: ``""`` for the core, which
    names it by the oneof member (``cancel.reason``), ``"payload"`` for the gateway
    (``payload.reason``), so each edge names the field as its client wrote it.
    """
    kind = request.WhichOneof("frame")
    if kind is None:
        return
    body = payload or kind
    if kind == "hello":
        _check_hello(request.hello, body)
    elif kind == "resume":
        _check_resume(request.resume, body)
    elif kind == "ping":
        check_text(request.ping.nonce, _join(body, "nonce"), MAX_NAME_CHARS)
    elif kind == "pong":
        check_text(request.pong.ping_nonce, _join(body, "ping_nonce"), MAX_NAME_CHARS)
    elif kind == "list_jobs":
        listing = request.list_jobs
        check_list_filter(listing.filter, _join(body, "filter"))
        check_text(listing.cursor, _join(body, "cursor"), MAX_CURSOR_CHARS)
    elif kind == "bye":
        check_text(request.bye.reason, _join(body, "reason"), MAX_REASON_CHARS)
    elif kind == "close":
        check_text(request.close.reason, _join(body, "reason"), MAX_REASON_CHARS)
    elif kind == "submit":
        _check_submit_texts(request.submit, body)
    elif kind == "cancel":
        check_id(request.cancel.job_id, _join(body, "job_id"))
        check_text(request.cancel.reason, _join(body, "reason"), MAX_REASON_CHARS)
    elif kind == "subscribe":
        check_id(request.subscribe.job_id, _join(body, "job_id"))
    elif kind == "unsubscribe":
        check_id(request.unsubscribe.job_id, _join(body, "job_id"))


def _check_hello(hello: session_pb2.SessionHello, path: str) -> None:
    check_text(hello.client.name, _join(path, "client.name"), MAX_NAME_CHARS)
    check_text(hello.client.version, _join(path, "client.version"), MAX_NAME_CHARS)
    _check_auth(hello.auth, _join(path, "auth"))
    for name in ("encodings", "features"):
        items = getattr(hello.capabilities, name)
        where = _join(path, f"capabilities.{name}")
        if len(items) > MAX_LIST_ITEMS:
            raise _bad(where, f"has more than {MAX_LIST_ITEMS} entries")
        for index, item in enumerate(items):
            check_text(item, f"{where}[{index}]", MAX_NAME_CHARS)
    if hello.HasField("resume"):
        _check_resume(hello.resume, _join(path, "resume"))


def _check_resume(resume: session_pb2.SessionResume, path: str) -> None:
    check_id(resume.session_id, _join(path, "session_id"))
    check_text(resume.resume_token, _join(path, "resume_token"), MAX_TOKEN_CHARS)
    _check_auth(resume.auth, _join(path, "auth"))


def _check_auth(auth: session_pb2.Auth, path: str) -> None:
    check_text(auth.scheme, _join(path, "scheme"), MAX_NAME_CHARS)
    check_text(auth.token, _join(path, "token"), MAX_TOKEN_CHARS)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


M = TypeVar("M", bound=Message)


def request_parser(message: type[M]) -> Callable[[bytes], M | InvalidRequest]:
    """A gRPC request deserializer that never raises.

    grpc calls the deserializer before the servicer, and a deserializer that raises
    ends the call with ``UNKNOWN`` and no ErrorInfo. Bytes that are not a ``message``
    (garbage, or nesting past protobuf's recursion limit) come back as the
    InvalidRequest the servicer raises at its edge, so the client gets
    ``INVALID_ARGUMENT`` with reason ``INVALID_REQUEST`` like any other bad input.
    """
    name = message.DESCRIPTOR.full_name

    def parse(data: bytes) -> M | InvalidRequest:
        try:
            return message.FromString(data)
        except (DecodeError, RecursionError, ValueError):
            return InvalidRequest(
                f"the request is not a valid {name} (or nests too deeply)",
                details={"field": "$"},
            )

    return parse
