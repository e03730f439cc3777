"""How the gateway reaches the core's `SessionService.Connect`: over gRPC, or in process.

A split deployment (`serve gateway --core HOST:PORT`) talks gRPC, with HTTP/2
keepalive so a core that stops answering fails its streams within a bound; in
front of a cluster (`--core HOST:PORT,HOST:PORT`) a `gateway.failover.FailoverLink`
spreads new sessions over the cores that answer. The embedded
default runs core and gateway in one process; there the same frames go
straight to the same servicer, skipping HTTP/2 framing, a second
serialisation pass and the gRPC threads on every frame. Either way the bridge
sees the same thing: a stream of `ConnectResponse` messages it can cancel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from arcp_grpc.errors import ARCPError
from arcp_grpc.grpc_status import to_status
from arcp_grpc.service.transport_policy import CLIENT_ADDRESS_HEADER, CLIENT_TLS_HEADER, Hop
from arcp_grpc.v1 import session_service_pb2_grpc
from arcp_grpc.v1.session_service_pb2 import ConnectRequest, ConnectResponse

__all__ = [
    "CoreLink",
    "CoreStream",
    "GrpcLink",
    "Health",
    "Keepalive",
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


@dataclass(frozen=True)
class Health:
    """What the gateway's health path reports of its core side."""

    core: str  # `SERVING`, `NOT_SERVING`, `UNREACHABLE`; of a cluster, its best core's
    cores: Mapping[str, str] | None = None  # a cluster's: each core's, by address


class CoreLink(Protocol):
    """Opens Connect streams and reports the core's health."""

    def connect(self, client: Hop | None = None) -> CoreStream:
        """A new stream; `client` describes the hop to the gateway's client, so the core
        can withhold credentials from a plaintext one (§14)."""
        ...

    async def health(self) -> Health:
        """The core's serving status (its name: `SERVING`, ...), `UNREACHABLE` if unknown."""
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


@dataclass(frozen=True)
class Keepalive:
    """HTTP/2 PINGs on a core channel (`gateway.core_keepalive_sec`,
    `gateway.core_keepalive_timeout_sec`): a core that stops answering (paused,
    partitioned, its host gone without a reset) fails every stream of the channel
    within `interval_sec + timeout_sec`. Without them a paused core's clients heard
    nothing until TCP gave up, minutes later. The core's server permits this rate
    (`arcp_grpc.server`: pings down to one every half second)."""

    interval_sec: float = 4.0
    timeout_sec: float = 4.0

    def channel_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.keepalive_time_ms", round(self.interval_sec * 1000)),
            ("grpc.keepalive_timeout_ms", round(self.timeout_sec * 1000)),
            # What gRPC (1.85) waits for the ack in fact: a minute unless set.
            ("grpc.http2.ping_timeout_ms", round(self.timeout_sec * 1000)),
            # Also an idle channel, so a new session does not meet a dead connection.
            ("grpc.keepalive_permit_without_calls", 1),
            # Ping for as long as a stream is silent (by default, twice only).
            ("grpc.http2.max_pings_without_data", 0),
            # A core that comes back is reconnected within seconds, not up to 2 minutes.
            ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_BACKOFF_MS),
        ]


_MAX_RECONNECT_BACKOFF_MS = 5_000


class GrpcLink:
    """Connect over a gRPC channel to a core in another process."""

    def __init__(
        self,
        address: str,
        credentials: grpc.ChannelCredentials | None = None,
        *,
        keepalive: Keepalive = Keepalive(),
    ) -> None:
        options = keepalive.channel_options()
        self._channel = (
            grpc.aio.secure_channel(address, credentials, options=options)
            if credentials
            else grpc.aio.insecure_channel(address, options=options)
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

    async def health(self) -> Health:
        try:
            reply = await asyncio.wait_for(
                self._health.Check(health_pb2.HealthCheckRequest(service="arcp.v1.SessionService")),
                timeout=2.0,
            )
        except (grpc.aio.AioRpcError, TimeoutError):
            return Health("UNREACHABLE")
        return Health(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    async def close(self) -> None:
        await self._channel.close()


class LocalLink:
    """Connect to the servicer of a core in this process (the embedded default)."""

    def __init__(self, core: LocalCore) -> None:
        self._core = core

    def connect(self, client: Hop | None = None) -> CoreStream:
        return _LocalStream(self._core.session_service.open_stream(client))

    async def health(self) -> Health:
        return Health(self._core.serving_status())

    async def close(self) -> None:
        return None


class _GrpcStream:
    """A Connect call written frame by frame (gRPC's own flow control holds `write`);
    once cancelled, its reader sees its end and a writer `StreamEnded`.

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
        except asyncio.CancelledError:
            if not self._cancelled_here():
                raise

    async def write(self, request: ConnectRequest) -> None:
        try:
            await self._call.write(request)
        except asyncio.InvalidStateError as exc:
            raise StreamEnded from exc
        except grpc.aio.AioRpcError as exc:
            self._write_raced_end = exc.code() == grpc.StatusCode.INTERNAL
            raise StreamEnded from exc
        except asyncio.CancelledError as exc:
            if not self._cancelled_here():
                raise
            raise StreamEnded from exc

    def _cancelled_here(self) -> bool:
        """grpc.aio raises `CancelledError` from the reads and writes of a call its
        owner cancelled; that ends the stream, it does not cancel the task doing them
        (whose own cancellation, if any, goes on up)."""
        task = asyncio.current_task()
        return self._call.cancelled() and task is not None and not task.cancelling()

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
        except ARCPError as error:  # the status the gRPC servicer ends the call with
            status = to_status(error)
            raise grpc.aio.AioRpcError(
                status.code, grpc.aio.Metadata(), grpc.aio.Metadata(), status.details
            ) from None
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
