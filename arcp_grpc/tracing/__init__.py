"""Traces: OpenTelemetry spans for sessions, submits, acceptances, runs, delegations and
deliveries, in the trace ARCP names (§11).

Off unless the environment names an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `configure`, called once by `serve`). Off, `span`
returns one shared object whose methods do nothing, and nothing of OpenTelemetry is
imported: a span costs its call site one function call and an empty `with`. On,
`span` is rebound to the SDK's (`arcp_grpc.tracing.otel`), so call sites look it up
at call time: `tracing.span(...)`, never `from arcp_grpc.tracing import span`.

Parentage follows the work, not the code: a span is a child of the span current
where it starts (a job's run is current in its task, so a delegation made by its
agent, and the child job started by it, are its descendants), unless the caller
names the trace it belongs to: a `traceparent` (the gRPC caller's, the gateway's)
makes it that span's child, an ARCP `trace_id` alone makes it a root of that trace.
"""

from __future__ import annotations

import os

from arcp_grpc.tracing.spans import NO_SPAN, Span, SpanFactory, Tracing, TracingConfigError
from arcp_grpc.tracing.traceparent import trace_id_of

__all__ = [
    "Span",
    "SpanFactory",
    "Tracing",
    "TracingConfigError",
    "configure",
    "span",
    "trace_id_of",
]


def _no_span(name: str, *, trace_id: str = "", traceparent: str = "") -> Span:
    return NO_SPAN


#: Starts a span (see `SpanFactory`); rebound by `configure` when traces are on.
span: SpanFactory = _no_span


def configure() -> Tracing | None:
    """Switch traces on if the environment asks for them (the standard `OTEL_*` variables,
    read by the OpenTelemetry SDK itself: endpoint, protocol, headers, service name and
    resource, sampler, batch settings); None when it does not. Raises
    `TracingConfigError` for a setting that cannot be honoured."""
    global span
    environ = os.environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter == "none":
        return None
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint:
        return None
    if exporter != "otlp":
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={exporter!r}: only 'otlp' (or 'none') is supported"
        )
    from arcp_grpc.tracing.otel import OtelTracing  # the one import of OpenTelemetry

    tracing = OtelTracing.from_environment()
    span = tracing.span
    return tracing
