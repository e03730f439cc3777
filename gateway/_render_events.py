"""Job event bodies (§8.2) -> ARCP JSON, one renderer per ``JobEvent`` body.

Looked up by :mod:`gateway._render_frames` for every ``job.event`` frame, so
this is the hot path too. Where the spec and the published client's TypedDicts
name a field differently, both names are sent with the same value (the table
in :mod:`gateway.codec`). A result chunk that is not UTF-8 goes out as base64
(§8.4); a vendor kind must start with ``x-vendor.``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, Final

from arcp_grpc.base.json_values import json_number, struct_to_py, value_to_py
from arcp_grpc.v1 import events_pb2
from gateway._fields import (
    LOG_LEVEL_NAMES,
    render_credential,
    render_error,
    render_lease,
    render_lease_constraints,
)

__all__ = ["EVENT_RENDERERS"]


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


EVENT_RENDERERS: Final[dict[str, Callable[[events_pb2.JobEvent], tuple[str, Any]]]] = {
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
