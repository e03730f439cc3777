"""How the gateway reaches the core's `SessionService.Connect`: over gRPC, or in process.

A split deployment (`serve gateway --core HOST:PORT`) talks gRPC. The embedded
default runs core and gateway in one process; there the same frames go
straight to the same servicer, skipping HTTP/2 framing, a second
serialisation pass and the gRPC threads on every frame. Either way the bridge
sees the same thing: a stream of `ConnectResponse` messages it can cancel.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from arcp_grpc.v1 import session_service_pb2_grpc
from arcp_grpc.v1.session_service_pb2 import ConnectRequest, ConnectResponse

__all__ = ["CoreLink", "CoreStream", "GrpcLink", "LocalLink", "LocalSessions"]


class CoreStream(Protocol):
    """One session's frames from the core; `cancel` ends it (the core detaches)."""

    def __aiter__(self) -> AsyncIterator[ConnectResponse]: ...

    def cancel(self) -> bool: ...


class CoreLink(Protocol):
    """Opens Connect streams and reports the core's health."""

    def connect(self, requests: AsyncIterator[ConnectRequest]) -> CoreStream: ...

    async def health(self) -> str:
        """The core's serving status name (`SERVING`, ...), `UNREACHABLE` if unknown."""
        ...

    async def close(self) -> None: ...


class LocalSessions(Protocol):
    """What the in-process link needs of the core's SessionService servicer."""

    def Connect(
        self, requests: AsyncIterator[ConnectRequest], context: Any
    ) -> AsyncIterator[bytes]:
        """The servicer's stream; it does not use `context`, so None is passed."""
        ...


class GrpcLink:
    """Connect over a gRPC channel to a core in another process."""

    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None = None) -> None:
        self._channel = (
            grpc.aio.secure_channel(address, credentials)
            if credentials
            else grpc.aio.insecure_channel(address)
        )
        self._sessions = session_service_pb2_grpc.SessionServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def connect(self, requests: AsyncIterator[ConnectRequest]) -> CoreStream:
        call: CoreStream = self._sessions.Connect(requests)
        return call

    async def health(self) -> str:
        try:
            reply = await asyncio.wait_for(
                self._health.Check(health_pb2.HealthCheckRequest(service="arcp.v1.SessionService")),
                timeout=2.0,
            )
        except (grpc.aio.AioRpcError, TimeoutError):
            return "UNREACHABLE"
        status: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return status

    async def close(self) -> None:
        await self._channel.close()


class LocalLink:
    """Connect to the servicer of a core in this process (the embedded default)."""

    def __init__(self, sessions: LocalSessions) -> None:
        self._sessions = sessions

    def connect(self, requests: AsyncIterator[ConnectRequest]) -> CoreStream:
        return _LocalStream(self._sessions.Connect(requests, None))

    async def health(self) -> str:
        return "SERVING"

    async def close(self) -> None:
        return None


class _LocalStream:
    """The servicer's frames, parsed as a gRPC client would parse them."""

    def __init__(self, frames: AsyncIterator[bytes]) -> None:
        self._frames = frames
        self._reader: asyncio.Task[object] | None = None

    def __aiter__(self) -> AsyncIterator[ConnectResponse]:
        return self._read()

    async def _read(self) -> AsyncIterator[ConnectResponse]:
        self._reader = asyncio.current_task()
        async for frame in self._frames:
            yield ConnectResponse.FromString(frame)

    def cancel(self) -> bool:
        """Like cancelling a gRPC call: the servicer's stream ends where it waits."""
        if self._reader is None or self._reader.done():
            return False
        return self._reader.cancel()
