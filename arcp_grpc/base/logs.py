"""Structured process logs: every record carries job_id, session_id and trace_id.

The ids come from a context variable that the runtime binds when a job's
task starts and the session service binds once a session is welcomed;
asyncio copies the context into tasks created afterwards, so every log line
written on behalf of a job or session names it without threading ids
through call signatures. Explicit ``extra={"job_id": ...}`` wins over the
context. Two formats: ``text`` (a readable line ending in key=value pairs)
and ``json`` (one object per line, for log shippers).

One record is one line, whatever it quotes: control characters and the
Unicode line separators in a message or an id are written as ``\\uXXXX``
escapes, so no input (a trace id, a reason, an agent name in a message) can
end the line and forge another record (§14 audit logs). In ``text`` a
traceback follows on lines indented by two spaces: a record starts only at a
line that does not begin with a space.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from typing import TextIO

__all__ = [
    "CONTEXT_FIELDS",
    "ContextFilter",
    "JsonFormatter",
    "KeyValueFormatter",
    "bind",
    "escape",
    "setup",
]

CONTEXT_FIELDS = ("job_id", "session_id", "trace_id")

# C0 controls, DEL, C1 controls and U+2028/U+2029 (which str.splitlines and some
# log viewers treat as line breaks), as JSON-compatible \uXXXX escapes.
_ESCAPES: dict[int, str] = {
    code: f"\\u{code:04x}" for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}

_context: ContextVar[dict[str, str] | None] = ContextVar("arcp_log_context", default=None)


def bind(**fields: str) -> None:
    """Add ids to the current context (and the tasks it creates later)."""
    merged = dict(_context.get() or {})
    merged.update({k: v for k, v in fields.items() if v})
    _context.set(merged)


class ContextFilter(logging.Filter):
    """Sets `job_id`, `session_id` and `trace_id` on every record ('' when unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _context.get() or {}
        for name in CONTEXT_FIELDS:
            if not getattr(record, name, ""):
                setattr(record, name, bound.get(name, ""))
        return True


class KeyValueFormatter(logging.Formatter):
    """``2026-01-01T00:00:00 INFO logger message job_id=... trace_id=...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        head, newline, rest = super().format(record).partition("\n")
        pairs = " ".join(
            f"{name}={escape(value)}"
            for name in CONTEXT_FIELDS
            if (value := getattr(record, name, ""))
        )
        if pairs:
            head = f"{head} {pairs}"
        if not newline:
            return head
        # The traceback (or stack): every line indented, each escaped on its own.
        return head + "".join(f"\n  {escape(line)}" for line in rest.split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, "")
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return escape(json.dumps(entry, ensure_ascii=False))


def escape(text: str) -> str:
    """``text`` with every character that could break a log line as an escape."""
    return text if text.isprintable() else text.translate(_ESCAPES)


def setup(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Route the root logger to `stream` (stderr) at `level` in `fmt` (text or json)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
