"""`arcp.v1.SessionService.Connect`: ARCP sessions over one gRPC stream each.

The gateway opens one Connect stream per WebSocket and translates frames one
to one; everything stateful happens here (§6, §7). Per-message errors are
answered with `session.error` carrying the request's id and the stream stays
open; only connection-level faults (no hello first, bad credentials, a
refused resume, heartbeat loss) end it. Jobs never end because a stream did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import grpc

from arcp_grpc.auth import Authenticator, Principal
from arcp_grpc.base.ids import new_ulid
from arcp_grpc.base.logs import bind as bind_log_context
from arcp_grpc.base.stamps import stamp
from arcp_grpc.base.validate import check_connect_request, check_id, request_parser
from arcp_grpc.base.wire import varint
from arcp_grpc.errors import (
    ARCPError,
    HeartbeatLost,
    InternalError,
    InvalidRequest,
    JobNotFound,
    PermissionDenied,
    Unauthenticated,
)
from arcp_grpc.runtime import JobRuntime, job_query
from arcp_grpc.service.delivery import CREDENTIALS_FEATURE, JobDelivery, LiveDelivery
from arcp_grpc.service.journal import SessionJournal
from arcp_grpc.service.outbox import Outbox, UnsentLedger
from arcp_grpc.service.registry import SessionRegistry
from arcp_grpc.service.sessions import FrameHeader, Session, frame_bytes
from arcp_grpc.service.transport_policy import WITHHELD, Hop, call_hops, credentials_allowed
from arcp_grpc.v1 import jobs_pb2, session_pb2
from arcp_grpc.v1 import session_service_pb2 as pb

__all__ = [
    "SERVICE_NAME",
    "SUPPORTED_FEATURES",
    "ConnectStream",
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
_ACCEPTANCE_FEATURES = frozenset({CREDENTIALS_FEATURE, "cost.budget"})  # what JobAccepted may hold

# ConnectResponse field numbers (proto/arcp/v1/session_service.proto).
_FRAMES = 7
_ACCEPTED = 20

log = logging.getLogger("arcp_grpc.sessions")

Ctx = grpc.aio.ServicerContext[Any, Any]


class _EndStream(Exception):
    """Raised by a handler to end the stream after its reply was queued."""


class _Connection:
    """One Connect stream: its outbound queue and, after the handshake, its session."""

    def __init__(
        self, max_unsent_bytes: int, ledger: UnsentLedger, *, credentials_ok: bool
    ) -> None:
        self.outbound = Outbox(max_unsent_bytes, self._overflowed, ledger)
        self.session: Session | None = None
        # Resumed here, and no frame since: the client may not have the new token yet.
        self.awaiting_proof = False
        # §14: the transport to the client may carry credential values (`_transport_policy`).
        self.credentials_ok = credentials_ok

    def send(self, frame: pb.ConnectResponse) -> None:
        self.outbound.put_nowait(_with_id(frame))

    def end(self, last: bytes | None = None) -> None:
        """End the stream after what is queued (and `last`)."""
        if self.session is not None:
            self.session.detach(self.outbound)  # from now on its frames only buffer
        self.outbound.close(last)

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
        self.end(_with_id(frame))
        log.warning(
            "dropped the transport of %s: %d bytes unsent, client not reading",
            session.session_id if session is not None else "a session being opened",
            unsent,
        )


class ConnectStream:
    """One Connect stream, whoever carries it. gRPC's `Connect` feeds it the frames
    of the call; the embedded gateway awaits `receive` itself, so a client sending
    faster than the core handles waits in its own socket buffers, not in a queue."""

    def __init__(self, servicer: SessionServiceServicer, hops: Sequence[Hop]) -> None:
        self._servicer = servicer
        self._conn = _Connection(
            servicer.max_unsent_bytes,
            servicer.unsent,
            credentials_ok=credentials_allowed(hops, plaintext_ok=servicer.plaintext_credentials),
        )

    async def receive(self, request: pb.ConnectRequest | InvalidRequest) -> bool:
        """Handle one client frame, in order; False once the stream is ending (its
        outbound queue is closed), after which further frames are ignored."""
        if self._conn.outbound.closed:
            return False
        return await self._servicer._receive(request, self._conn)

    def close_input(self) -> None:
        """The client sent its last frame: the stream ends once the replies are out."""
        self._conn.end()

    def frames(self) -> AsyncGenerator[bytes, None]:
        """Serialized `ConnectResponse` messages until the stream ends; iterate once."""
        return self._servicer._frames(self._conn)


class SessionServiceServicer:
    """Handles every client frame type of ARCP (§6, §7)."""

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
        self._runtime = runtime
        self._auth = auth
        self._sessions = sessions
        self._journal = journal  # a cluster's: sessions live in the store
        self._info = runtime_info
        features = list(SUPPORTED_FEATURES)
        if runtime.provisioner is not None:
            features.append(CREDENTIALS_FEATURE)  # §14: only with a revoking provisioner
        self._features = tuple(features)

    @property
    def max_unsent_bytes(self) -> int:
        return self._sessions.limits.max_unsent_bytes

    @property
    def unsent(self) -> UnsentLedger:
        return self._sessions.unsent

    # -- the stream ------------------------------------------------------------

    async def Connect(
        self, requests: AsyncIterator[pb.ConnectRequest | InvalidRequest], context: Ctx
    ) -> AsyncIterator[bytes]:
        stream = ConnectStream(self, call_hops(context))
        reader = asyncio.create_task(self._read(requests, stream))
        try:
            async for frame in stream.frames():
                yield frame
        finally:
            reader.cancel()

    def open_stream(self, client: Hop | None = None) -> ConnectStream:
        """A Connect stream for a caller in this process that hands frames over itself
        (`gateway.links.LocalLink`, which describes its client's hop); gRPC's `Connect`
        is the same stream fed by the call."""
        return ConnectStream(self, [client] if client is not None else [])

    @staticmethod
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

    async def _receive(
        self, request: pb.ConnectRequest | InvalidRequest, conn: _Connection
    ) -> bool:
        """Handle one client frame; False once the stream is ending."""
        if conn.session is not None:
            conn.session.last_inbound = time.monotonic()
            if conn.awaiting_proof:
                await self._token_proven(conn, conn.session)
        request_id = ""  # echoed in an error only once it is known to be a sound id
        try:
            if isinstance(request, InvalidRequest):  # bytes `request_parser` could not decode
                raise request
            check_id(request.id, "id")
            request_id = request.id
            check_connect_request(request, "")  # a direct gRPC client skips the gateway's checks
            await self._dispatch(request, conn)
        except _EndStream:
            conn.end()
            return False
        except ARCPError as error:
            self._error(conn, error, request_id)
            if conn.session is None:  # a failed handshake ends the connection
                conn.end()
                return False
        except Exception:
            log.exception("unexpected failure handling a frame")
            self._error(conn, InternalError("internal error"), request_id)
        return True

    async def _token_proven(self, conn: _Connection, session: Session) -> None:
        """A frame on the connection that carried the welcome proves the client has the
        new token: the one it resumed with dies (DESIGN.md "Resume tokens"). In a cluster
        that is recorded before the frame is handled, so no node accepts it afterwards."""
        conn.awaiting_proof = False
        if session.tokens.prove() and self._journal is not None:
            await self._journal.token_proven(session)

    async def _frames(self, conn: _Connection) -> AsyncGenerator[bytes, None]:
        heart = asyncio.create_task(self._heartbeat(conn))
        deadline = asyncio.get_running_loop().call_later(
            self._sessions.limits.hello_timeout_sec, self._hello_overdue, conn
        )
        try:
            while True:
                frame = await conn.outbound.get()
                if frame is None:
                    return
                if conn.outbound.empty():
                    yield frame
                    continue
                batch, ended = _drain(conn.outbound, frame)
                yield batch
                if ended:
                    return
        finally:
            heart.cancel()
            deadline.cancel()
            conn.end()  # also when cancelled: detached, and later frames are not queued
            conn.outbound.discard()  # what was left unsent no longer counts (`UnsentLedger`)

    def _hello_overdue(self, conn: _Connection) -> None:
        """A connection that never authenticates must not hold a socket for ever; the
        heartbeat (§6.4) only starts with a session."""
        if conn.session is None and not conn.outbound.closed:
            timeout = self._sessions.limits.hello_timeout_sec
            self._error(conn, Unauthenticated(f"no session.hello within {timeout:g} s (§6.1)"))
            conn.end()

    async def _heartbeat(self, conn: _Connection) -> None:
        """§6.4: two silent intervals end the transport (not the jobs).

        A ping goes out when nothing was sent for an interval, and also when
        nothing was heard for one: a client that only listens (the published
        SDKs send nothing unprompted) must be asked for a pong before its
        silence counts as loss, however busy the stream towards it is.
        """
        interval = self._sessions.limits.heartbeat_interval_sec
        last_ping = 0.0
        while True:
            await asyncio.sleep(max(0.05, interval / 4))
            session = conn.session
            if session is None or "heartbeat" not in session.features:
                continue
            now = time.monotonic()
            if now - session.last_inbound >= 2 * interval:
                self._error(conn, HeartbeatLost("no message from the client for two intervals"))
                conn.end()
                return
            idle_out = now - session.last_outbound >= interval
            unheard = now - session.last_inbound >= interval and now - last_ping >= interval
            if idle_out or unheard:
                ping = pb.ConnectResponse(session_id=session.session_id)
                ping.ping.nonce = "p_" + new_ulid()
                stamp(ping.ping.sent_at)
                conn.send(ping)
                session.last_outbound = last_ping = now

    def _error(self, conn: _Connection, error: ARCPError, request_id: str = "") -> None:
        frame = pb.ConnectResponse(request_id=request_id)
        if conn.session is not None:
            frame.session_id = conn.session.session_id
        frame.error.error.CopyFrom(error.to_proto())
        conn.send(frame)

    # -- dispatch ----------------------------------------------------------------

    async def _dispatch(self, request: pb.ConnectRequest, conn: _Connection) -> None:
        kind = request.WhichOneof("frame")
        session = conn.session
        if session is None:
            if kind == "hello":
                await self._hello(request, conn)
                return
            if kind == "resume":
                await self._resume(request.id, request.resume, None, conn)
                return
            raise InvalidRequest(
                f"the first frame must be session.hello, not {kind or 'empty'} (§6.2)"
            )
        if kind in ("hello", "resume"):
            raise InvalidRequest("this connection already has a session; hello was sent twice")
        if kind == "ping":
            self._pong(request, session)
        elif kind == "pong":
            pass  # liveness only; `last_inbound` was updated on receipt
        elif kind == "ack":
            self._require(session, "ack")
            session.ack(request.ack.last_processed_seq)
        elif kind == "list_jobs":
            self._require(session, "list_jobs")
            await self._list_jobs(request, session)
        elif kind == "submit":
            await self._submit(request, session)
        elif kind == "cancel":
            await self._cancel(request, session)
        elif kind == "subscribe":
            self._require(session, "subscribe")
            await self._subscribe(request, session)
        elif kind == "unsubscribe":
            self._unsubscribe(request, session)
        elif kind in ("bye", "close"):
            reason = request.bye.reason if kind == "bye" else request.close.reason
            reply = pb.ConnectResponse(session_id=session.session_id, request_id=request.id)
            reply.closed.reason = reason
            conn.send(reply)
            if not session.followers:
                # Nothing in flight: nothing to resume, so free the buffer now.
                self._sessions.discard(session)
                if self._journal is not None:
                    self._journal.closed(session)
            raise _EndStream  # §6.7: in-flight jobs continue and stay resumable
        else:
            raise InvalidRequest("the frame has no recognised type")

    @staticmethod
    def _require(session: Session, feature: str) -> None:
        if feature not in session.features:
            raise InvalidRequest(f"feature {feature!r} was not negotiated (§6.2)")

    # -- handshake ---------------------------------------------------------------

    async def _hello(self, request: pb.ConnectRequest, conn: _Connection) -> None:
        hello = request.hello
        principal = self._auth.authenticate(hello.auth.token)
        if hello.HasField("resume"):
            await self._resume(request.id, hello.resume, principal, conn)
            return
        offered = set(hello.capabilities.features)
        if CREDENTIALS_FEATURE in offered and not conn.credentials_ok:
            offered.discard(CREDENTIALS_FEATURE)  # as if the client had not asked (§14)
            log.warning(WITHHELD, principal.name)
        features = frozenset(f for f in self._features if f in offered)
        self._admit_session(principal)
        session = self._sessions.create(principal, features)
        token = session.tokens.rotate()
        if self._journal is not None:
            try:
                await self._journal.opened(session)  # resumable anywhere from its welcome on
            except BaseException:
                self._sessions.discard(session)  # never welcomed: nothing to keep
                raise
        session.attach(conn.outbound)
        conn.session = session
        conn.send(self._welcome(request.id, session, token, resumed=False))
        log.info("session %s opened for %s", session.session_id, principal.name)

    async def _resume(
        self,
        request_id: str,
        resume: session_pb2.SessionResume,
        principal: Principal | None,
        conn: _Connection,
    ) -> None:
        """§6.3: replay `seq > last_event_seq`, rotate the token, take over the session."""
        if principal is None and resume.HasField("auth"):
            principal = self._auth.authenticate(resume.auth.token)
        if self._journal is not None:
            await self._resume_stored(request_id, resume, principal, conn, self._journal)
            return
        session = self._sessions.resume(
            principal or self._session_owner(resume.session_id),
            resume.session_id,
            resume.resume_token,
        )
        if resume.last_event_seq > session.replay.last_seq:
            raise InvalidRequest(
                f"last_event_seq {resume.last_event_seq} is beyond the session's last event"
            )
        _check_transport(session, conn)
        missed = session.replay.after(resume.last_event_seq, session.session_id)
        # The token presented stays valid until the client uses the new one (DESIGN.md).
        token = session.tokens.rotate_after_resume(
            resume.resume_token, self._sessions.limits.resume_window_sec
        )
        if principal is not None:
            session.principal = principal  # the wire profile is the token's (DESIGN.md)
        # No await from here on: replayed frames precede every live one.
        session.attach(conn.outbound)
        conn.session = session
        conn.awaiting_proof = True
        conn.send(self._welcome(request_id, session, token, resumed=True))
        conn.outbound.put_replay(missed)
        log.info("session %s resumed after seq %d", session.session_id, resume.last_event_seq)

    async def _resume_stored(
        self,
        request_id: str,
        resume: session_pb2.SessionResume,
        principal: Principal | None,
        conn: _Connection,
        journal: SessionJournal,
    ) -> None:
        """A cluster's resume, on any node: the session comes from the store, its missed
        frames too, and the jobs it follows go on from where its frames left them."""
        if principal is None:
            principal = await journal.owner(resume.session_id)
        resumed, token = await journal.resume(
            principal, resume.session_id, resume.resume_token, resume.last_event_seq
        )
        session = resumed.session
        _check_transport(session, conn)  # the previous token stays valid (DESIGN.md)
        # No await from here on: replayed frames precede every live one.
        session.attach(conn.outbound)
        conn.session = session
        conn.awaiting_proof = True
        conn.send(self._welcome(request_id, session, token, resumed=True))
        conn.outbound.put_replay(resumed.replay)
        for follow in resumed.follows:
            self._start_pump(session, follow.job_id, follow.after_seq)
        log.info("session %s resumed after seq %d", session.session_id, resume.last_event_seq)

    def _admit_session(self, principal: Principal) -> None:
        """§14: a new session counts against its principal's caps and the node's; a
        resume does not (the session is already held)."""
        quotas, sessions, name = self._runtime.quotas, self._sessions, principal.name
        quotas.check_session(name, sessions.count(name), len(sessions))
        quotas.check_held_bytes(name, sessions.held_bytes(name), sessions.held_bytes_total())

    def _session_owner(self, session_id: str) -> Principal:
        """A bare `session.resume` authenticates by its resume token alone."""
        return self._sessions.owner(session_id)

    def _welcome(
        self, request_id: str, session: Session, token: str, *, resumed: bool
    ) -> pb.ConnectResponse:
        bind_log_context(session_id=session.session_id)  # this stream's later log lines
        frame = pb.ConnectResponse(session_id=session.session_id, request_id=request_id)
        welcome = frame.welcome
        welcome.session_id = session.session_id
        welcome.runtime.CopyFrom(self._info)
        welcome.resume_token = token
        welcome.resume_window_sec = self._sessions.limits.resume_window_sec
        welcome.heartbeat_interval_sec = self._sessions.limits.heartbeat_interval_sec
        welcome.capabilities.encodings.append("json")
        welcome.capabilities.features.extend(f for f in self._features if f in session.features)
        welcome.capabilities.agents.extend(self._runtime.agents())
        stamp(welcome.accepted_at)
        welcome.resumed = resumed
        welcome.wire_profile = session.principal.profile  # type: ignore[assignment]
        return frame

    def _pong(self, request: pb.ConnectRequest, session: Session) -> None:
        reply = pb.ConnectResponse(session_id=session.session_id, request_id=request.id)
        reply.pong.ping_nonce = request.ping.nonce
        stamp(reply.pong.received_at)
        session.send(_with_id(reply))

    # -- jobs ----------------------------------------------------------------------

    async def _submit(self, request: pb.ConnectRequest, session: Session) -> None:
        name = session.principal.name  # §14: a principal whose sessions hold too much waits
        self._runtime.quotas.check_held_bytes(name, self._sessions.held_bytes(name))
        submission = await self._runtime.submit(session.principal, request.submit)
        job_id = submission.job_id
        session.submitted.add(job_id)
        header = FrameHeader(session.session_id, request_id=request.id, job_id=job_id)
        if submission.replay and job_id not in session.followers:
            await self._replay(session, header, submission.accepted)
            return
        session.send(frame_bytes(header, _ACCEPTED, _accepted_for(session, submission.accepted)))
        if job_id in session.followers:
            return
        if self._journal is not None:  # queued ahead of the job's first frame
            self._journal.follow(session, job_id, submitted=True, after=0)
        live = None if submission.replay else self._runtime.live_feed(job_id)
        if live is not None:
            # The common case: a new job, followed from its first event by its feed.
            feed, trace_id = live
            LiveDelivery(
                JobDelivery(session, job_id, trace_id),
                feed,
                lambda seq, delivery: self._start_pump(session, job_id, seq, delivery),
            )
            return
        self._start_pump(session, job_id, 0)

    async def _replay(self, session: Session, header: FrameHeader, accepted: bytes) -> None:
        """§7.2: the original `job.accepted`, then the job's `credential_rotated` events
        since acceptance, so the caller converges on the live values (DESIGN.md, "Replay
        after a rotation"; a replay is the submitter's principal by construction), then
        the job from now on."""
        job_id = header.job_id
        after = await self._runtime.committed_seq(job_id)
        rotations = await self._runtime.rotations(job_id, after)
        trace_id = await self._runtime.trace_id(job_id)
        # No await from here on: the rotations follow the acceptance at once.
        session.send(frame_bytes(header, _ACCEPTED, _accepted_for(session, accepted)))
        if self._journal is not None:  # queued ahead of the rotations' frames
            self._journal.follow(session, job_id, submitted=True, after=after)
        delivery = JobDelivery(session, job_id, trace_id)
        for seq, blob in rotations:
            delivery.deliver([blob], seq)
        self._start_pump(session, job_id, after, delivery)

    async def _cancel(self, request: pb.ConnectRequest, session: Session) -> None:
        job_id = request.cancel.job_id
        if job_id not in session.submitted:  # which holds only this session's running jobs
            owner = await self._runtime.owner(job_id)
            if owner != session.principal.name:
                raise JobNotFound(f"job {job_id!r} not found", details={"job_id": job_id})
            _, outcome = await self._runtime.get(session.principal, job_id)
            if outcome is None:
                raise PermissionDenied(
                    "only the session that submitted a job may cancel it (§7.4, §7.6)",
                    details={"job_id": job_id},
                )
            # An ended job: the runtime answers as for any cancel that came too late.
        await self._runtime.cancel(session.principal, job_id, request.cancel.reason)
        reply = pb.ConnectResponse(
            session_id=session.session_id, request_id=request.id, job_id=job_id
        )
        reply.cancelled.job_id = job_id
        session.send(_with_id(reply))

    async def _subscribe(self, request: pb.ConnectRequest, session: Session) -> None:
        """§7.6: the authority descriptor first, then history, then live events."""
        sub = request.subscribe
        owner = await self._runtime.owner(sub.job_id)
        if owner is None:
            raise JobNotFound(f"job {sub.job_id!r} not found", details={"job_id": sub.job_id})
        if owner != session.principal.name:
            log.info(
                "subscribe denied: %s to job %s of %s",
                session.principal.name,
                sub.job_id,
                owner,
            )
            raise PermissionDenied(
                "subscribing to another principal's job is not permitted (§14)",
                details={"job_id": sub.job_id},
            )
        summary, _ = await self._runtime.get(session.principal, sub.job_id)
        current = summary.last_event_seq
        start = min(sub.from_event_seq, current) if sub.history else current
        reply = pb.ConnectResponse(
            session_id=session.session_id,
            request_id=request.id,
            job_id=sub.job_id,
            trace_id=summary.trace_id,
        )
        described = reply.subscribed
        described.job_id = sub.job_id
        described.current_status = summary.status
        described.agent = summary.agent
        described.lease.CopyFrom(summary.lease)
        if summary.HasField("lease_constraints"):
            described.lease_constraints.CopyFrom(summary.lease_constraints)
        _scrub(summary, session.features)
        described.budget.update(summary.budget)
        described.parent_job_id = summary.parent_job_id
        described.trace_id = summary.trace_id
        described.subscribed_from = start
        described.replayed = current - start
        described.credentials.extend(summary.credentials)  # same principal: the submitter
        session.send(_with_id(reply))
        log.info("subscribe: %s to job %s", session.principal.name, sub.job_id)
        if sub.job_id not in session.followers:
            if self._journal is not None:
                self._journal.follow(session, sub.job_id, submitted=False, after=start)
            self._start_pump(session, sub.job_id, start)

    def _unsubscribe(self, request: pb.ConnectRequest, session: Session) -> None:
        job_id = request.unsubscribe.job_id
        if job_id in session.submitted:
            raise InvalidRequest("a session cannot unsubscribe from a job it submitted")
        if not session.followers.stop(job_id):
            raise InvalidRequest(f"not subscribed to job {job_id!r}", details={"job_id": job_id})
        if self._journal is not None:
            self._journal.unfollow(session, job_id)

    async def _list_jobs(self, request: pb.ConnectRequest, session: Session) -> None:
        listing = request.list_jobs
        query = job_query(session.principal, listing.filter, listing.limit, listing.cursor)
        jobs, cursor = await self._runtime.list_jobs(session.principal, query)
        reply = pb.ConnectResponse(session_id=session.session_id, request_id=request.id)
        for job in jobs:
            _scrub(job, session.features)
        reply.jobs.jobs.extend(jobs)
        reply.jobs.next_cursor = cursor
        session.send(_with_id(reply))

    # -- event pumps -----------------------------------------------------------------

    def _start_pump(
        self,
        session: Session,
        job_id: str,
        after_seq: int,
        delivery: JobDelivery | None = None,
    ) -> None:
        task = asyncio.create_task(
            self._pump(session, job_id, after_seq, delivery),
            name=f"pump {session.session_id} {job_id}",
        )
        session.followers.add(job_id, task)
        task.add_done_callback(lambda _t: _forget(session, job_id, task))

    async def _pump(
        self, session: Session, job_id: str, after_seq: int, delivery: JobDelivery | None
    ) -> None:
        """Follow a job from the store and its feed (§7.6 subscriptions, §7.2 replays,
        and a submitter that fell behind its job), at the client's pace."""
        if delivery is None:
            delivery = JobDelivery(session, job_id, await self._runtime.trace_id(job_id))
        async for batch in self._runtime.watch(session.principal, job_id, after_seq):
            events = batch.events
            first = batch.last_seq - len(events) + 1
            while events:  # a long history goes out as fast as the client takes it
                handled = delivery.deliver(events, first)
                events, first = events[handled:], first + handled
                if events:
                    await session.room()
            if batch.outcome is not None:
                delivery.on_outcome(batch.outcome)


def _scrub(summary: jobs_pb2.JobSummary, features: frozenset[str]) -> None:
    """§6.2: no credentials or budgets to a client that did not negotiate them."""
    if CREDENTIALS_FEATURE not in features:
        del summary.credentials[:]
    if "cost.budget" not in features:
        summary.budget.clear()


def _accepted_for(session: Session, accepted: bytes) -> bytes:
    """The cached acceptance as this session may see it: the bytes themselves when it
    negotiated every feature they use (or they use none), else the same message without
    those fields (deterministic, so a replay to the same client is still identical, §7.2)."""
    if session.features >= _ACCEPTANCE_FEATURES:
        return accepted
    message = jobs_pb2.JobAccepted.FromString(accepted)
    hidden = False
    if message.credentials and CREDENTIALS_FEATURE not in session.features:
        del message.credentials[:]
        hidden = True
    if message.budget and "cost.budget" not in session.features:
        message.budget.clear()
        hidden = True
    return message.SerializeToString(deterministic=True) if hidden else accepted


_BATCH_FRAMES = 512
_FRAMES_TAG = varint(_FRAMES << 3 | 2)
_BATCH_BYTES = 1024 * 1024


def _drain(outbound: Outbox, first: bytes) -> tuple[bytes, bool]:
    """Frames already waiting, packed into one `ConnectResponse.frames` batch: a
    lagging client costs fewer, larger gRPC messages. Returns (batch, stream ended)."""
    parts = [_FRAMES_TAG, varint(len(first)), first]
    size = len(first)
    count = 1
    while count < _BATCH_FRAMES and size < _BATCH_BYTES:
        try:
            frame = outbound.get_nowait()
        except asyncio.QueueEmpty:
            break
        if frame is None:
            return b"".join(parts), True
        parts += (_FRAMES_TAG, varint(len(frame)), frame)
        size += len(frame)
        count += 1
    return b"".join(parts), False


def _forget(session: Session, job_id: str, task: asyncio.Task[None]) -> None:
    session.followers.forget(job_id, task)
    if not task.cancelled() and task.exception() is not None:
        log.error("event pump for job %s failed", job_id, exc_info=task.exception())


def _with_id(frame: pb.ConnectResponse) -> bytes:
    frame.id = new_ulid()
    return frame.SerializeToString()


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


def _check_transport(session: Session, conn: _Connection) -> None:
    """§14: a session that negotiated credentials resumes only where they may flow;
    its frames (accepted, rotations) were recorded with their values."""
    if CREDENTIALS_FEATURE in session.features and not conn.credentials_ok:
        raise PermissionDenied(
            "this session negotiated provisioned_credentials: resume it over TLS or from"
            " this host (§14), or open a new session"
        )
