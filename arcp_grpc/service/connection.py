"""One Connect stream: its outbound queue, its session, and the dispatch of its frames.

A `ConnectStream` is made per stream (per WebSocket, through the gateway) and
holds everything that belongs to it; the servicer only makes them. Client
frames are handled in order, one `receive` each: the first must open a session
(§6.1: `session.hello`, or a resume, §6.3), every later one goes through the
dispatch table, frame kind to bound method. Per-message errors are answered
with `session.error` carrying the request's id and the stream stays open; only
connection-level faults (no hello first, bad credentials, a refused resume,
heartbeat loss, a client that does not read) end it. Jobs never end because a
stream did: the session outlives its transport (§6.3).

In a cluster nothing goes out while this node's lease has lapsed (a pause, a slow
database: `NodeLease`): the stream waits for the next heartbeat, and once the node is
declared dead it ends with `NodeUnavailable` (gRPC UNAVAILABLE; the gateway closes
the WebSocket 1011), so the client resumes on another node and hears from the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

from arcp_grpc import tracing
from arcp_grpc.base.ids import new_trace_id, new_ulid
from arcp_grpc.base.stamps import stamp
from arcp_grpc.base.validate import check_connect_request, check_id
from arcp_grpc.errors import (
    ARCPError,
    HeartbeatLost,
    InternalError,
    InvalidRequest,
    NodeUnavailable,
    Unauthenticated,
)
from arcp_grpc.runtime import NodeLease
from arcp_grpc.service.lifecycle import SessionLifecycle
from arcp_grpc.service.outbox import Outbox
from arcp_grpc.service.session_frames import drain, with_id
from arcp_grpc.service.session_jobs import SessionJobs, require
from arcp_grpc.service.sessions import Session
from arcp_grpc.v1 import session_service_pb2 as pb

__all__ = ["ConnectStream"]

log = logging.getLogger("arcp_grpc.sessions")

#: Handles one kind of client frame on an open session.
_Handler = Callable[[pb.ConnectRequest, Session], Awaitable[None]]


class _EndStream(Exception):
    """Raised by a handler to end the stream after its reply was queued."""


class ConnectStream:
    """One Connect stream, whoever carries it. gRPC's `Connect` feeds it the frames
    of the call; the embedded gateway awaits `receive` itself, so a client sending
    faster than the core handles waits in its own socket buffers, not in a queue."""

    def __init__(
        self,
        lifecycle: SessionLifecycle,
        jobs: SessionJobs,
        *,
        credentials_ok: bool,
        lease: NodeLease,
    ) -> None:
        self._lifecycle = lifecycle
        self._lease = lease
        limits = lifecycle.limits
        self._limits = limits
        self.outbound = Outbox(limits.max_unsent_bytes, self._overflowed, lifecycle.unsent)
        self.session: Session | None = None  # after the handshake
        self._span: tracing.Span | None = None  # the session's, on this stream (§11)
        # Resumed here, and no frame since: the client may not have the new token yet.
        self._awaiting_proof = False
        # §14: the transport to the client may carry credential values (`transport_policy`).
        self._credentials_ok = credentials_ok
        self._jobs = jobs
        self._handlers: dict[str, _Handler] = {
            "ping": self._ping,
            "pong": self._pong,
            "ack": self._ack,
            "list_jobs": jobs.list_jobs,
            "submit": jobs.submit,
            "cancel": jobs.cancel,
            "subscribe": jobs.subscribe,
            "unsubscribe": jobs.unsubscribe,
            "bye": self._bye,
            "close": self._close,
            "hello": self._again,
            "resume": self._again,
        }

    # -- in --------------------------------------------------------------------

    async def receive(self, request: pb.ConnectRequest | InvalidRequest) -> bool:
        """Handle one client frame, in order; False once the stream is ending (its
        outbound queue is closed), after which further frames are ignored."""
        if self.outbound.closed:
            return False
        session = self.session
        if session is not None:
            session.last_inbound = time.monotonic()
            if self._awaiting_proof:
                self._awaiting_proof = False
                await self._lifecycle.token_proven(session)
        request_id = ""  # echoed in an error only once it is known to be a sound id
        try:
            if isinstance(request, InvalidRequest):  # bytes `request_parser` could not decode
                raise request
            check_id(request.id, "id")
            request_id = request.id
            check_connect_request(request, "")  # a direct gRPC client skips the gateway's checks
            kind = request.WhichOneof("frame")
            if session is None:
                await self._open(request, kind)
                return True
            handler = self._handlers.get(kind) if kind is not None else None
            if handler is None:
                raise InvalidRequest("the frame has no recognised type")
            await handler(request, session)
        except _EndStream:
            self.end()
            return False
        except ARCPError as error:
            self._error(error, request_id)
            if self.session is None:  # a failed handshake ends the connection
                self.end()
                return False
        except Exception:
            log.exception("unexpected failure handling a frame")
            self._error(InternalError("internal error"), request_id)
        return True

    def close_input(self) -> None:
        """The client sent its last frame: the stream ends once the replies are out."""
        self.end()

    async def _open(self, request: pb.ConnectRequest, kind: str | None) -> None:
        """The first frame: a session opens (§6.1) or resumes (§6.3) here, or nothing does."""
        lifecycle = self._lifecycle
        if kind == "hello":
            opened = await lifecycle.hello(request, credentials_ok=self._credentials_ok)
        elif kind == "resume":
            opened = await lifecycle.resume(
                request.id, request.resume, None, credentials_ok=self._credentials_ok
            )
        else:
            raise InvalidRequest(
                f"the first frame must be session.hello, not {kind or 'empty'} (§6.2)"
            )
        # No await from here on: replayed frames precede every live one.
        session = opened.session
        self._trace(request, session.session_id, resumed=opened.resumed)
        session.attach(self.outbound)
        self.session = session
        self._awaiting_proof = opened.resumed
        self.send(opened.welcome)
        if opened.resumed:
            self.outbound.put_replay(opened.replay)
        for follow in opened.follows:
            self._jobs.follow(session, follow.job_id, follow.after_seq)

    def _trace(self, request: pb.ConnectRequest, session_id: str, *, resumed: bool) -> None:
        """The session's span on this stream, from its welcome to the stream's end: a trace
        of its own (a session carries many jobs, each in its trace), or the child of the
        span the opening frame names."""
        trace_id = tracing.trace_id_of(request.traceparent) or new_trace_id()
        span = tracing.span("arcp.session", trace_id=trace_id, traceparent=request.traceparent)
        span.set("arcp.session_id", session_id)
        span.set("arcp.resumed", resumed)
        self._span = span

    # -- the frames of an open session -------------------------------------------------

    async def _ping(self, request: pb.ConnectRequest, session: Session) -> None:
        reply = pb.ConnectResponse(session_id=session.session_id, request_id=request.id)
        reply.pong.ping_nonce = request.ping.nonce
        stamp(reply.pong.received_at)
        session.send(with_id(reply))

    async def _pong(self, request: pb.ConnectRequest, session: Session) -> None:
        """Liveness only; `last_inbound` was updated on receipt."""

    async def _ack(self, request: pb.ConnectRequest, session: Session) -> None:
        require(session, "ack")
        session.ack(request.ack.last_processed_seq)

    async def _bye(self, request: pb.ConnectRequest, session: Session) -> None:
        self._closed(request.id, session, request.bye.reason)

    async def _close(self, request: pb.ConnectRequest, session: Session) -> None:
        self._closed(request.id, session, request.close.reason)

    def _closed(self, request_id: str, session: Session, reason: str) -> None:
        reply = pb.ConnectResponse(session_id=session.session_id, request_id=request_id)
        reply.closed.reason = reason
        self.send(reply)
        self._lifecycle.close(session)
        raise _EndStream  # §6.7: in-flight jobs continue and stay resumable

    async def _again(self, request: pb.ConnectRequest, session: Session) -> None:
        raise InvalidRequest("this connection already has a session; hello was sent twice")

    # -- out -------------------------------------------------------------------

    def send(self, frame: pb.ConnectResponse) -> None:
        self.outbound.put_nowait(with_id(frame))

    def end(self, last: bytes | None = None) -> None:
        """End the stream after what is queued (and `last`)."""
        if self.session is not None:
            self.session.detach(self.outbound)  # from now on its frames only buffer
        if self._span is not None:
            self._span.end()
            self._span = None
        self.outbound.close(last)

    async def frames(self) -> AsyncGenerator[bytes, None]:
        """Serialized `ConnectResponse` messages until the stream ends; iterate once.
        Raises `NodeUnavailable` when the cluster declared this node dead: what is
        queued is not sent (it may be what the store no longer holds)."""
        outbound = self.outbound
        lease = self._lease
        heart = asyncio.create_task(self._heartbeat())
        # A fence ends even an idle stream at once: its queue closes, the gate below raises.
        fence = asyncio.ensure_future(lease.until_fenced()) if lease.bounded else None
        if fence is not None:
            fence.add_done_callback(lambda _: outbound.close())
        deadline = asyncio.get_running_loop().call_later(
            self._limits.hello_timeout_sec, self._hello_overdue
        )
        try:
            while True:
                frame = await outbound.get()
                if not lease.ready() and not await lease.wait():
                    raise NodeUnavailable(
                        "this node was declared dead by the cluster; resume the session"
                        " on another node (§6.3)"
                    )
                if frame is None:
                    return
                if outbound.empty():
                    yield frame
                    continue
                batch, ended = drain(outbound, frame)
                yield batch
                if ended:
                    return
        finally:
            heart.cancel()
            deadline.cancel()
            if fence is not None:
                fence.cancel()
            self.end()  # also when cancelled: detached, and later frames are not queued
            outbound.discard()  # what was left unsent no longer counts (`UnsentLedger`)

    def _error(self, error: ARCPError, request_id: str = "") -> None:
        frame = pb.ConnectResponse(request_id=request_id)
        if self.session is not None:
            frame.session_id = self.session.session_id
        frame.error.error.CopyFrom(error.to_proto())
        self.send(frame)

    def _hello_overdue(self) -> None:
        """A connection that never authenticates must not hold a socket for ever; the
        heartbeat (§6.4) only starts with a session."""
        if self.session is None and not self.outbound.closed:
            timeout = self._limits.hello_timeout_sec
            self._error(Unauthenticated(f"no session.hello within {timeout:g} s (§6.1)"))
            self.end()

    async def _heartbeat(self) -> None:
        """§6.4: two silent intervals end the transport (not the jobs).

        A ping goes out when nothing was sent for an interval, and also when
        nothing was heard for one: a client that only listens (the published
        SDKs send nothing unprompted) must be asked for a pong before its
        silence counts as loss, however busy the stream towards it is.
        """
        interval = self._limits.heartbeat_interval_sec
        last_ping = 0.0
        while True:
            await asyncio.sleep(max(0.05, interval / 4))
            session = self.session
            if session is None or "heartbeat" not in session.features:
                continue
            now = time.monotonic()
            if now - session.last_inbound >= 2 * interval:
                self._error(HeartbeatLost("no message from the client for two intervals"))
                self.end()
                return
            idle_out = now - session.last_outbound >= interval
            unheard = now - session.last_inbound >= interval and now - last_ping >= interval
            if idle_out or unheard:
                ping = pb.ConnectResponse(session_id=session.session_id)
                ping.ping.nonce = "p_" + new_ulid()
                stamp(ping.ping.sent_at)
                self.send(ping)
                session.last_outbound = last_ping = now

    def _overflowed(self, outbound: Outbox) -> None:
        """More than the limit waits for a client that is not reading (job output holds
        at half, so this is replies to requests it keeps sending): drop the transport,
        keep the session. Heartbeat loss is the nearest §12 code and carries the same
        remedy, a resume (§6.3, §13.1)."""
        unsent = outbound.unsent_bytes
        error = HeartbeatLost(
            f"the client is not reading: {unsent} bytes are waiting to be sent (or the"
            " clients of this node together hold more than its limit); the transport"
            " is closed and the session kept, resume to continue (§6.3)"
        )
        frame = pb.ConnectResponse()
        session = self.session
        if session is not None:
            frame.session_id = session.session_id
        frame.error.error.CopyFrom(error.to_proto())
        self.end(with_id(frame))
        log.warning(
            "dropped the transport of %s: %d bytes unsent, client not reading",
            session.session_id if session is not None else "a session being opened",
            unsent,
        )
