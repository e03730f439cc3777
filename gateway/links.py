"""How the gateway reaches the core's `SessionService.Connect`: over gRPC, or in process.

A split deployment (`serve gateway --core HOST:PORT`) talks gRPC; in front of a
cluster (`--core HOST:PORT,HOST:PORT`) a `FailoverLink` spreads new sessions
over the cores and leaves out one whose stream just failed. The embedded
default runs core and gateway in one process; there the same frames go
straight to the same servicer, skipping HTTP/2 framing, a second
serialisation pass and the gRPC threads on every frame. Either way the bridge
sees the same thing: a stream of `ConnectResponse` messages it can cancel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from arcp_grpc.service.transport_policy import CLIENT_ADDRESS_HEADER, CLIENT_TLS_HEADER, Hop
from arcp_grpc.v1 import session_service_pb2_grpc
from arcp_grpc.v1.session_service_pb2 import ConnectRequest, ConnectResponse

__all__ = [
    "CoreLink",
    "CoreStream",
    "FailoverLink",
    "GrpcLink",
    "LocalConnect",
    "LocalCore",
    "LocalLink",
    "LocalSessions",
    "StreamEnded",
]


class CoreStream(Protocol):
    """One session with the core: iterating yields the core's frames, `write` hands it
    the client's next frame, `cancel` ends it (the core detaches)."""

    def __aiter__(self) -> AsyncIterator[ConnectResponse]: ...

    async def write(self, request: ConnectRequest) -> None:
        """Returns once the core has taken the frame, so a client that sends faster
        than the core handles is held back at its socket rather than queued here.
        Raises `StreamEnded` once the stream is over."""
        ...

    def cancel(self) -> bool: ...


log = logging.getLogger("gateway.links")


class StreamEnded(Exception):
    """The core's side of the stream is over; it takes no more frames."""


class CoreLink(Protocol):
    """Opens Connect streams and reports the core's health."""

    def connect(self, client: Hop | None = None) -> CoreStream:
        """A new stream; `client` describes the hop to the gateway's client, so the core
        can withhold credentials from a plaintext one (§14)."""
        ...

    async def health(self) -> str:
        """The core's serving status name (`SERVING`, ...), `UNREACHABLE` if unknown."""
        ...

    async def close(self) -> None: ...


class LocalCore(Protocol):
    """What the in-process link needs of a core running in this process
    (`arcp_grpc.server.RunningCore`)."""

    @property
    def session_service(self) -> LocalSessions: ...

    def serving_status(self) -> str:
        """`SERVING`, or `NOT_SERVING` once it stops or its store has failed."""
        ...


class LocalSessions(Protocol):
    """What the in-process link needs of the core's SessionService servicer."""

    def open_stream(self, client: Hop | None = None) -> LocalConnect:
        """A Connect stream whose frames this process hands over itself."""
        ...


class LocalConnect(Protocol):
    """The core's side of one in-process Connect stream
    (`arcp_grpc.service.connection.ConnectStream`)."""

    async def receive(self, request: ConnectRequest) -> bool:
        """Handle one frame; False once the stream is ending."""
        ...

    def frames(self) -> AsyncIterator[bytes]: ...

    def end(self) -> None:
        """End the stream: the session detaches, `frames` ends after what is queued."""
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

    def connect(self, client: Hop | None = None) -> CoreStream:
        metadata = None
        if client is not None:
            metadata = (
                (CLIENT_TLS_HEADER, "true" if client.tls else "false"),
                (CLIENT_ADDRESS_HEADER, client.host),
            )
        return _GrpcStream(self._sessions.Connect(metadata=metadata))

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


class FailoverLink:
    """Several cores of one cluster (they share the store, so any can serve any session
    or job). New streams go round-robin over the cores not known to be failing; a core
    whose stream failed (unreachable, stopped) is left out for `retry_after_sec`, then
    tried again. A client whose core dies sees its socket close and resumes: its next
    socket reaches a live core."""

    def __init__(self, links: Mapping[str, CoreLink], *, retry_after_sec: float = 5.0) -> None:
        if not links:
            raise ValueError("a failover link needs at least one core")
        self._names = list(links)
        self._links = list(links.values())
        self._retry_after = retry_after_sec
        self._failed_at = [0.0] * len(links)
        self._next = 0

    def connect(self, client: Hop | None = None) -> CoreStream:
        index = self._pick()
        return _ReportingStream(self._links[index].connect(client), lambda: self._failed(index))

    def _pick(self) -> int:
        now = time.monotonic()
        count = len(self._links)
        for step in range(count):
            index = (self._next + step) % count
            if now - self._failed_at[index] >= self._retry_after:
                self._next = index + 1
                return index
        # Every core failed lately: try the one that failed longest ago.
        return min(range(count), key=self._failed_at.__getitem__)

    def _failed(self, index: int) -> None:
        if time.monotonic() - self._failed_at[index] >= self._retry_after:
            log.warning(
                "core %d of %d failed; new sessions go to the others", index + 1, len(self._links)
            )
        self._failed_at[index] = time.monotonic()

    async def health(self) -> str:
        """`SERVING` when any core is; else the first core's status."""
        statuses = [await link.health() for link in self._links]
        return "SERVING" if "SERVING" in statuses else statuses[0]

    async def close(self) -> None:
        for link in self._links:
            await link.close()


class _ReportingStream:
    """A stream that tells its link when the core failed it (not when it was cancelled)."""

    def __init__(self, stream: CoreStream, on_failure: Callable[[], None]) -> None:
        self._stream = stream
        self._on_failure = on_failure

    def __aiter__(self) -> AsyncIterator[ConnectResponse]:
        return self._read()

    async def _read(self) -> AsyncIterator[ConnectResponse]:
        try:
            async for response in self._stream:
                yield response
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self._on_failure()
            raise

    async def write(self, request: ConnectRequest) -> None:
        await self._stream.write(request)

    def cancel(self) -> bool:
        return self._stream.cancel()


class LocalLink:
    """Connect to the servicer of a core in this process (the embedded default)."""

    def __init__(self, core: LocalCore) -> None:
        self._core = core

    def connect(self, client: Hop | None = None) -> CoreStream:
        return _LocalStream(self._core.session_service.open_stream(client))

    async def health(self) -> str:
        return self._core.serving_status()

    async def close(self) -> None:
        return None


class _GrpcStream:
    """A Connect call written frame by frame (gRPC's own flow control holds `write`).

    The core may end the stream (a refused handshake, heartbeat loss) while a client
    frame is on its way. grpc.aio then fails that write with `INTERNAL` and gives the
    whole call that status in place of the core's `OK`; the reader must not take it
    for a failing core, which never ends a Connect stream with `INTERNAL` (its errors
    travel in-band as frames)."""

    def __init__(self, call: grpc.aio.StreamStreamCall[ConnectRequest, ConnectResponse]) -> None:
        self._call = call
        self._write_raced_end = False

    def __aiter__(self) -> AsyncIterator[ConnectResponse]:
        return self._read()

    async def _read(self) -> AsyncIterator[ConnectResponse]:
        try:
            async for response in self._call:
                yield response
        except grpc.aio.AioRpcError as exc:
            if not (self._write_raced_end and exc.code() == grpc.StatusCode.INTERNAL):
                raise

    async def write(self, request: ConnectRequest) -> None:
        try:
            await self._call.write(request)
        except asyncio.InvalidStateError as exc:
            raise StreamEnded from exc
        except grpc.aio.AioRpcError as exc:
            self._write_raced_end = exc.code() == grpc.StatusCode.INTERNAL
            raise StreamEnded from exc

    def cancel(self) -> bool:
        return self._call.cancel()


class _LocalStream:
    """The servicer's stream in this process: frames in by direct call, frames out
    parsed as a gRPC client would parse them."""

    def __init__(self, stream: LocalConnect) -> None:
        self._stream = stream
        self._over = False

    def __aiter__(self) -> AsyncIterator[ConnectResponse]:
        return self._read()

    async def _read(self) -> AsyncIterator[ConnectResponse]:
        try:
            async for frame in self._stream.frames():
                yield ConnectResponse.FromString(frame)
        finally:
            self._over = True

    async def write(self, request: ConnectRequest) -> None:
        if not await self._stream.receive(request):
            raise StreamEnded

    def cancel(self) -> bool:
        """Like cancelling a gRPC call: the core detaches and the stream ends where its
        reader waits, whichever task reads it. The stream's owner ends it; no task is
        cancelled on its behalf."""
        if self._over:
            return False
        self._over = True
        self._stream.end()
        return True
