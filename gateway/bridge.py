"""One WebSocket ↔ one `SessionService.Connect` stream: the gateway's I/O adapter.

The bridge owns only transport concerns: text vs binary frames, the frame
size cap, and how the socket closes. Everything else is the pure codec
(`gateway.codec`) one way and the core the other. A per-message error
(bad JSON, wrong types) is answered with `session.error` and the socket
stays open; the core ending the stream closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from dataclasses import dataclass, field

import grpc
from websockets.exceptions import ConnectionClosed

from arcp_grpc import tracing
from arcp_grpc.base.ids import new_ulid
from arcp_grpc.errors import ARCPError, InternalError, InvalidRequest
from arcp_grpc.service.transport_policy import Hop
from arcp_grpc.v1 import errors_pb2, session_pb2
from arcp_grpc.v1.session_service_pb2 import ConnectRequest, ConnectResponse
from gateway._connection import CoalescingConnection
from gateway.codec import UNANSWERED_TYPES, Dialect, decode_client_frame, encode_server_frame
from gateway.links import CoreLink, CoreStream, StreamEnded

__all__ = ["CLOSE_INTERNAL", "CLOSE_NORMAL", "CLOSE_POLICY", "Bridge"]

log = logging.getLogger("gateway.bridge")

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # authentication or handshake refused
CLOSE_INTERNAL = 1011  # the core is unreachable or failed

_NOTED = frozenset({"welcome", "error"})  # frames the bridge learns from (or may drop)

_POLICY_CODES = {
    errors_pb2.ERROR_CODE_UNAUTHENTICATED,
    errors_pb2.ERROR_CODE_INVALID_REQUEST,
    errors_pb2.ERROR_CODE_RESUME_WINDOW_EXPIRED,
}


@dataclass
class _State:
    """What the bridge learns from the frames it relays."""

    profile: session_pb2.WireProfile.ValueType = session_pb2.WIRE_PROFILE_SPEC
    dialect: Dialect = field(default_factory=Dialect)
    session_id: str = ""
    last_error: int = 0
    welcomed: bool = False
    unanswered: deque[str] = field(default_factory=lambda: deque(maxlen=256))


class Bridge:
    """Relays frames between one client socket and the core until either side ends."""

    def __init__(
        self,
        ws: CoalescingConnection,
        link: CoreLink,
        client: Hop,
        *,
        max_frame_bytes: int,
    ) -> None:
        self._ws = ws
        self._link = link
        self._client = client  # the client's hop, for the core's credential check (§14)
        self._max_frame_bytes = max_frame_bytes
        self._state = _State()

    async def run(self) -> None:
        """Relay until either side ends. Both sides have ended when this returns; a
        failure of either is logged and closes the socket with 1011. Cancelled (the
        gateway stopping), the bridge ends both sides and the cancellation goes on up."""
        call = self._link.connect(self._client)
        downstream = asyncio.create_task(self._downstream(call))
        upstream = asyncio.create_task(self._upstream(call))
        try:
            await asyncio.wait((downstream, upstream), return_when=asyncio.FIRST_COMPLETED)
        finally:
            upstream.cancel()
            if not downstream.done():
                call.cancel()  # the client left: the core detaches; jobs keep running
            # Cancelled while waiting here, gather cancels both and re-raises.
            ended = await asyncio.gather(downstream, upstream, return_exceptions=True)
            failures = [outcome for outcome in ended if isinstance(outcome, Exception)]
            for failure in failures:
                log.error("bridge failed", exc_info=failure)
        if failures:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.close(CLOSE_INTERNAL, "gateway error")

    async def _upstream(self, call: CoreStream) -> None:
        """Client → core, one frame at a time: the next is read from the socket only
        once the core has taken this one. Once the core has ended the stream, whatever
        the client still sends is read and dropped until the socket closes, so its
        closing handshake is not stuck behind unread frames."""
        ended = False
        try:
            async for message in self._ws:
                if ended:
                    continue
                if isinstance(message, bytes):
                    await self._reject(
                        InvalidRequest(
                            "binary frames are not ARCP; send JSON text", details={"field": "$"}
                        ),
                        "",
                    )
                    continue
                try:
                    frame = decode_client_frame(message, max_bytes=self._max_frame_bytes)
                except InvalidRequest as error:
                    small = len(message) <= self._max_frame_bytes
                    await self._reject(error, _request_id(message) if small else "")
                    continue
                self._state.dialect = self._state.dialect.learn(frame)
                if frame.type in UNANSWERED_TYPES:
                    self._state.unanswered.append(frame.request.id)
                try:
                    await self._relay(call, frame.request)
                except StreamEnded:
                    ended = True  # the core's last frames and the close are on their way
        except ConnectionClosed:
            return

    async def _relay(self, call: CoreStream, request: ConnectRequest) -> None:
        """Hand a frame to the core; a `job.submit` under the gateway's span, which the
        frame names to the core (`traceparent`), in the client's ARCP trace (§11)."""
        if request.WhichOneof("frame") != "submit":
            await call.write(request)
            return
        with tracing.span("arcp.gateway.submit", trace_id=request.submit.trace_id) as span:
            span.set("arcp.session_id", self._state.session_id)
            request.traceparent = span.traceparent()
            await call.write(request)

    async def _downstream(self, call: CoreStream) -> None:
        """Core → client; when the core ends the stream, close the socket."""
        state = self._state
        code, reason = CLOSE_NORMAL, "session ended"
        try:
            async for message in call:
                texts = []
                for response in message.frames or (message,):
                    if response.WhichOneof("frame") in _NOTED:
                        if not self._deliverable(response):
                            continue
                        self._learn(response)
                    texts.append(self._render(response))
                if texts:
                    await self._ws.send_texts(texts)
            if not state.welcomed and state.last_error in _POLICY_CODES:
                code, reason = CLOSE_POLICY, "session refused"
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                return
            log.warning("core stream failed: %s %s", exc.code(), exc.details())
            await self._reject(InternalError("the runtime core is unavailable"), "")
            code, reason = CLOSE_INTERNAL, "core unavailable"
        except ConnectionClosed:
            return
        with contextlib.suppress(ConnectionClosed):
            await self._ws.close(code, reason)

    def _deliverable(self, response: ConnectResponse) -> bool:
        """False for an error the SDK client would turn into the failure of every job
        it has open (see `UNANSWERED_TYPES`); those are logged instead."""
        state = self._state
        if (
            state.profile == session_pb2.WIRE_PROFILE_SDK_COMPAT
            and response.HasField("error")
            and response.request_id
            and response.request_id in state.unanswered
        ):
            log.info(
                "dropped %s for request %s (SDK profile: the client awaits no reply)",
                errors_pb2.ErrorCode.Name(response.error.error.code),
                response.request_id,
            )
            return False
        return True

    def _learn(self, response: ConnectResponse) -> None:
        state = self._state
        if response.HasField("welcome"):
            state.welcomed = True
            state.session_id = response.session_id
            state.profile = response.welcome.wire_profile or session_pb2.WIRE_PROFILE_SPEC
        if response.HasField("error"):
            state.last_error = response.error.error.code

    def _render(self, response: ConnectResponse) -> str:
        state = self._state
        try:
            return encode_server_frame(response, profile=state.profile, dialect=state.dialect)
        except ValueError:
            # The core broke the contract: the client gets a clear error, not a bad frame.
            log.exception("could not render a %s frame", response.WhichOneof("frame"))
            failure = ConnectResponse(
                id=new_ulid(), session_id=state.session_id, request_id=response.request_id
            )
            failure.error.error.CopyFrom(
                InternalError("the runtime sent an invalid frame").to_proto()
            )
            return encode_server_frame(failure, profile=state.profile, dialect=state.dialect)

    async def _reject(self, error: ARCPError, request_id: str) -> None:
        """A per-message error: the socket stays open (STYLE.md, Errors)."""
        frame = ConnectResponse(session_id=self._state.session_id, request_id=request_id)
        frame.error.error.CopyFrom(error.to_proto())
        frame.id = new_ulid()
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(self._render(frame))


def _request_id(message: str) -> str:
    """Best effort: the `id` of a frame the codec refused, to correlate the error."""
    try:
        value = json.loads(message)
    except (ValueError, RecursionError):
        return ""
    if isinstance(value, dict) and isinstance(value.get("id"), str) and len(value["id"]) <= 64:
        return str(value["id"])
    return ""
