"""W3C Trace Context's `traceparent` header, read and written without OpenTelemetry.

§11: ARCP propagates W3C Trace Context. A backend calling the core over gRPC
sends it as `traceparent` metadata, and the gateway as `ConnectRequest.traceparent`
(a stream's metadata is fixed when it opens; a frame's trace context is not). The
runtime reads the trace id out of it even when traces are not exported, so a job
submitted inside a backend's trace carries that trace's id (in its `trace_id`,
its logs and its children's) whether or not spans go anywhere.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["Remote", "format_traceparent", "parse_traceparent", "trace_id_of"]

# version-trace_id-parent_id-flags; a version above 00 may add fields (W3C §3.2.4).
_TRACEPARENT_RE = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class Remote(NamedTuple):
    """A caller's span, as a `traceparent` names it."""

    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits
    sampled: bool


def parse_traceparent(value: str) -> Remote | None:
    """The span `value` names, or None for anything W3C says to ignore (an empty or
    malformed header, version ff, an all-zero id, extra fields on version 00)."""
    match = _TRACEPARENT_RE.fullmatch(value) if value else None
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE:
        return None
    if span_id == _ZERO_SPAN:
        return None
    return Remote(trace_id, span_id, bool(int(flags, 16) & 1))


def trace_id_of(traceparent: str) -> str:
    """The trace id of a sound `traceparent`, else '' (the common case costs one test)."""
    if not traceparent:
        return ""
    remote = parse_traceparent(traceparent)
    return remote.trace_id if remote is not None else ""


def format_traceparent(trace_id: str, span_id: str, *, sampled: bool) -> str:
    """A version-00 `traceparent` for a span of ours."""
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
