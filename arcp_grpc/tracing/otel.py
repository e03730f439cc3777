"""Traces on: spans from the OpenTelemetry SDK, exported over OTLP.

Imported only by `arcp_grpc.tracing.configure`, when the environment names an
endpoint. The SDK reads its own `OTEL_*` variables (endpoint, headers, TLS,
timeout, compression, sampler, resource, batch settings); we choose only the
exporter from the OTLP protocol and give the service a name when none is set.
The provider is made the global one, so an agent that uses the OpenTelemetry
API inside a job adds its spans under the job's run span.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from arcp_grpc.errors import ARCPError
from arcp_grpc.tracing.spans import Span, TracingConfigError, Value
from arcp_grpc.tracing.traceparent import format_traceparent, parse_traceparent

__all__ = ["DEFAULT_SERVICE_NAME", "OtelTracing"]

DEFAULT_SERVICE_NAME = "arcp-grpc"
_TRACE_ID_HEX = 32
# The trace the next root span must belong to (an ARCP trace_id without a parent span).
_ROOT_TRACE: ContextVar[int] = ContextVar("arcp_root_trace", default=0)


class _TraceIds(RandomIdGenerator):
    """Random ids, except a root span's trace id when the caller names the trace: a job
    submitted with an ARCP `trace_id` gets spans in that very trace (§11), and a root
    span there rather than a child of an invented parent."""

    def generate_trace_id(self) -> int:
        return _ROOT_TRACE.get() or super().generate_trace_id()


class _Span:
    """An SDK span behind our `Span` protocol."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._token: object = None

    def set(self, key: str, value: Value) -> None:
        self._span.set_attribute(key, value)

    def fail(self, description: str) -> None:
        self._span.set_status(Status(StatusCode.ERROR, description))

    def traceparent(self) -> str:
        context = self._span.get_span_context()
        return format_traceparent(
            f"{context.trace_id:032x}",
            f"{context.span_id:016x}",
            sampled=context.trace_flags.sampled,
        )

    def recording(self) -> bool:
        return self._span.is_recording()

    def end(self) -> None:
        self._span.end()

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]
        if exc is not None:
            self.fail(_describe(exc))
        self._span.end()


class OtelTracing:
    """The process's tracer provider, its OTLP exporter and batch processor."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("arcp_grpc")

    @classmethod
    def from_environment(cls) -> OtelTracing:
        provider = TracerProvider(resource=_resource(), id_generator=_TraceIds())
        provider.add_span_processor(BatchSpanProcessor(_exporter()))
        trace.set_tracer_provider(provider)
        return cls(provider)

    def span(self, name: str, *, trace_id: str = "", traceparent: str = "") -> Span:
        remote = parse_traceparent(traceparent) if traceparent else None
        if remote is not None and (not trace_id or remote.trace_id == trace_id):
            parent = SpanContext(
                int(remote.trace_id, 16),
                int(remote.span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED if remote.sampled else 0),
            )
            context = trace.set_span_in_context(NonRecordingSpan(parent))
            return _Span(self._tracer.start_span(name, context=context))
        root = _trace_int(trace_id)
        if not root:
            return _Span(self._tracer.start_span(name))  # the current span's child
        token = _ROOT_TRACE.set(root)
        try:
            return _Span(self._tracer.start_span(name, context=otel_context.Context()))
        finally:
            _ROOT_TRACE.reset(token)

    def shutdown(self) -> None:
        self._provider.shutdown()


def _trace_int(trace_id: str) -> int:
    """A W3C trace id as the SDK holds it; 0 for none (or one the runtime will refuse)."""
    if len(trace_id) != _TRACE_ID_HEX:
        return 0
    try:
        return int(trace_id, 16)
    except ValueError:
        return 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ARCPError):
        return f"{exc.code}: {exc.message}"
    return type(exc).__name__


def _resource() -> Resource:
    """`OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` as the SDK reads them; the
    service is `arcp-grpc` when they name none."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def _exporter() -> SpanExporter:
    """The OTLP exporter for `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` (or
    `OTEL_EXPORTER_OTLP_PROTOCOL`): `grpc`, the default, or `http/protobuf`."""
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )

        return HttpSpanExporter()
    raise TracingConfigError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: the supported protocols are"
        " 'grpc' and 'http/protobuf'"
    )
