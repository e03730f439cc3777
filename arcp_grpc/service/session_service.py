"""`arcp.v1.SessionService.Connect`: ARCP sessions over one gRPC stream each.

The gateway opens one Connect stream per WebSocket and translates frames one
to one; everything stateful happens in the core (§6, §7). The servicer is an
adapter (STYLE.md): it makes one `ConnectStream` per stream
(`arcp_grpc.service.connection`), which holds that stream's state and handles
its frames, and feeds it the frames of the call. What every stream shares is
built once here: the session lifecycle (`arcp_grpc.service.lifecycle`) and the
job frames (`arcp_grpc.service.session_jobs`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from arcp_grpc.auth import Authenticator
from arcp_grpc.base.validate import request_parser
from arcp_grpc.errors import InvalidRequest, NodeUnavailable
from arcp_grpc.grpc_status import to_status
from arcp_grpc.runtime import CREDENTIALS_FEATURE, JobRuntime
from arcp_grpc.service.connection import ConnectStream
from arcp_grpc.service.journal import SessionJournal
from arcp_grpc.service.lifecycle import SessionLifecycle
from arcp_grpc.service.registry import SessionRegistry
from arcp_grpc.service.session_jobs import SessionJobs
from arcp_grpc.service.transport_policy import Hop, call_hops, credentials_allowed
from arcp_grpc.v1 import session_pb2
from arcp_grpc.v1 import session_service_pb2 as pb

__all__ = [
    "SERVICE_NAME",
    "SUPPORTED_FEATURES",
    "SessionServiceServicer",
    "session_handler",
]

SERVICE_NAME = "arcp.v1.SessionService"
SUPPORTED_FEATURES = (
    "heartbeat",
    "ack",
    "list_jobs",
    "subscribe",
    "lease_expires_at",
    "cost.budget",
    "model.use",
    "progress",
    "result_chunk",
    "agent_versions",
)

log = logging.getLogger("arcp_grpc.sessions")

Ctx = grpc.aio.ServicerContext[Any, Any]


class SessionServiceServicer:
    """Serves `Connect`: one `ConnectStream` per stream handles every client frame type
    of ARCP (§6, §7)."""

    def __init__(
        self,
        runtime: JobRuntime,
        auth: Authenticator,
        sessions: SessionRegistry,
        runtime_info: session_pb2.PeerInfo,
        journal: SessionJournal | None = None,
        *,
        plaintext_credentials: bool = False,
    ) -> None:
        self.plaintext_credentials = plaintext_credentials  # auth.plaintext_credentials
        features = list(SUPPORTED_FEATURES)
        if runtime.provisioner is not None:
            features.append(CREDENTIALS_FEATURE)  # §14: only with a revoking provisioner
        self._lifecycle = SessionLifecycle(
            sessions, journal, runtime, auth, offered=features, info=runtime_info
        )
        self._jobs = SessionJobs(runtime, sessions, journal)
        self._lease = runtime.lease

    async def Connect(
        self, requests: AsyncIterator[pb.ConnectRequest | InvalidRequest], context: Ctx
    ) -> AsyncIterator[bytes]:
        stream = self._stream(call_hops(context))
        reader = asyncio.create_task(_read(requests, stream))
        try:
            async for frame in stream.frames():
                yield frame
        except NodeUnavailable as fenced:  # UNAVAILABLE: the client goes elsewhere
            await context.abort_with_status(to_status(fenced))
        finally:
            reader.cancel()

    def open_stream(self, client: Hop | None = None) -> ConnectStream:
        """A Connect stream for a caller in this process that hands frames over itself
        (`gateway.links.LocalLink`, which describes its client's hop); gRPC's `Connect`
        is the same stream fed by the call."""
        return self._stream([client] if client is not None else [])

    def _stream(self, hops: Sequence[Hop]) -> ConnectStream:
        credentials_ok = credentials_allowed(hops, plaintext_ok=self.plaintext_credentials)
        return ConnectStream(
            self._lifecycle, self._jobs, credentials_ok=credentials_ok, lease=self._lease
        )


async def _read(
    requests: AsyncIterator[pb.ConnectRequest | InvalidRequest], stream: ConnectStream
) -> None:
    try:
        async for request in requests:
            if not await stream.receive(request):
                return
    except (asyncio.CancelledError, grpc.aio.AioRpcError):
        raise
    except Exception:
        log.debug("client stream ended abnormally", exc_info=True)
    stream.close_input()


def session_handler(servicer: SessionServiceServicer) -> grpc.GenericRpcHandler:
    """The handler of `arcp.v1.SessionService` (frames out are pre-serialised)."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Connect": grpc.stream_stream_rpc_method_handler(
            servicer.Connect,
            request_deserializer=request_parser(pb.ConnectRequest),
            response_serializer=lambda frame: frame,
        )
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
