"""The shapes of tracing that call sites see, and the span that does nothing.

Kept apart from `arcp_grpc.tracing` so that the SDK-backed implementation
(`arcp_grpc.tracing.otel`) and the switch that imports it share them without a cycle.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

__all__ = ["NO_SPAN", "Span", "SpanFactory", "Tracing", "TracingConfigError", "Value"]

#: Attribute values OpenTelemetry accepts (and our spans use).
Value = str | bool | int | float


class Span(Protocol):
    """One span. As a context manager it is the current span of its block and ends on
    leaving it (failed, when an exception leaves it); held instead, `end` ends it."""

    def set(self, key: str, value: Value) -> None:
        """An attribute (`arcp.job_id`, `arcp.agent`, …)."""

    def fail(self, description: str) -> None:
        """Mark the span failed: an ARCP error code and message, never a stack trace."""

    def traceparent(self) -> str:
        """This span as a W3C `traceparent`, for the next hop ('' when off)."""

    def recording(self) -> bool:
        """False when traces are off (or the span is not sampled): attributes that take
        work to compute are skipped."""

    def end(self) -> None: ...

    def __enter__(self) -> Span: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class SpanFactory(Protocol):
    def __call__(self, name: str, *, trace_id: str = "", traceparent: str = "") -> Span:
        """A started span, the child of `traceparent` if given (and in `trace_id`, when
        both are), else a root of `trace_id` if given, else the current span's child."""


class Tracing(Protocol):
    """Traces switched on: what the process holds to flush them when it stops."""

    def shutdown(self) -> None:
        """Export what is buffered and stop (bounded by `OTEL_BSP_EXPORT_TIMEOUT`)."""


class TracingConfigError(ValueError):
    """An `OTEL_*` setting we cannot honour; `serve` reports it as a configuration error."""


class _NoSpan:
    """The span when traces are off: every method does nothing."""

    __slots__ = ()

    def set(self, key: str, value: Value) -> None:
        pass

    def fail(self, description: str) -> None:
        pass

    def traceparent(self) -> str:
        return ""

    def recording(self) -> bool:
        return False

    def end(self) -> None:
        pass

    def __enter__(self) -> Span:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


NO_SPAN = _NoSpan()
