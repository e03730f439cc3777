"""A real OTLP/gRPC trace receiver for the tests: `TraceService/Export` from the
`opentelemetry-proto` service definition, on 127.0.0.1, keeping every span it is sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

__all__ = ["OtlpReceiver", "ReceivedSpan"]


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, ids in the W3C hex form; `service` is its resource's service.name."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, object]
    error: str  # the status message of a failed span, '' otherwise
    service: str


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, spans: list[ReceivedSpan], arrived: asyncio.Event) -> None:
        self._spans = spans
        self._arrived = arrived

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value for a in resource_spans.resource.attributes}
            service = resource["service.name"].string_value if "service.name" in resource else ""
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self._spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={
                                a.key: getattr(a.value, a.value.WhichOneof("value") or "")
                                for a in span.attributes
                            },
                            error=(
                                span.status.message
                                if span.status.code == span.status.STATUS_CODE_ERROR
                                else ""
                            ),
                            service=service,
                        )
                    )
        self._arrived.set()
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """Started with `start`, stopped with `stop`; `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT
    takes."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._arrived = asyncio.Event()
        self._server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(self.spans, self._arrived), self._server
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(None)

    async def wait_for(
        self, enough: Callable[[list[ReceivedSpan]], bool], within: float
    ) -> list[ReceivedSpan]:
        """The spans received once `enough` holds of them (a safety-net bound, not a check)."""

        async def run() -> None:
            while not enough(self.spans):
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(run(), within)
        return list(self.spans)
