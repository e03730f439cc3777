"""ARCP JSON job event bodies (§8.2) -> ``JobEvent``: the inverse of :mod:`gateway._render_events`.

Not a hot path (tests and tools). Where the spec and the published client name
a field differently, either name is read; a result chunk may be ``utf8`` or
``base64`` (§8.4). Vendor kinds (``x-vendor.*``) carry a free-form body and are
read by :mod:`gateway._read_frames` itself.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, Final

from arcp_grpc.base.json_values import number
from arcp_grpc.v1 import events_pb2
from gateway._authority import read_rendered_lease
from gateway._fields import (
    LOG_LEVEL_VALUES,
    UINT64_MAX,
    bad,
    get_bool,
    get_object,
    get_str,
    get_struct,
    get_uint,
    get_value,
    read_credential,
    read_error,
    read_lease_constraints,
    type_name,
)

__all__ = ["EVENT_READERS"]


def _double(obj: dict[str, Any], key: str, path: str) -> float | None:
    raw = obj.get(key)
    if raw is None:
        return None
    value = number(raw)
    if value is None:
        raise bad(f"{path}.{key}", f"must be a number, got {type_name(raw)}")
    return value


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
    read_rendered_lease(b, where, body)
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


EVENT_READERS: Final[dict[str, Callable[[events_pb2.JobEvent, dict[str, Any], str], None]]] = {
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
