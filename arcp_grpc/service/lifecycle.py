"""How an ARCP session begins, resumes and ends over a Connect stream (§6.1-§6.3, §6.7).

`session.hello` authenticates, negotiates features (§6.2) and opens a session;
a resume (inside the hello, or a bare `session.resume`) takes an existing one
over, in memory or, in a cluster, from the store, with the frames the client
missed. Either way the caller gets an `Opened` and attaches it to its transport
without awaiting anything more, so replayed frames precede every live one.
A resume rotates the token; the one presented dies once the client uses the
session (DESIGN.md "Resume tokens").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from arcp_grpc.auth import Authenticator, Principal
from arcp_grpc.base.logs import bind as bind_log_context
from arcp_grpc.base.stamps import stamp
from arcp_grpc.errors import InvalidRequest, PermissionDenied
from arcp_grpc.runtime import CREDENTIALS_FEATURE, JobRuntime
from arcp_grpc.service.journal import SessionJournal
from arcp_grpc.service.outbox import UnsentLedger
from arcp_grpc.service.registry import SessionRegistry
from arcp_grpc.service.sessions import Session, SessionLimits
from arcp_grpc.service.transport_policy import WITHHELD
from arcp_grpc.store import OverCap, SessionFollow
from arcp_grpc.v1 import session_pb2
from arcp_grpc.v1 import session_service_pb2 as pb

__all__ = ["Opened", "SessionLifecycle"]

log = logging.getLogger("arcp_grpc.sessions")

_SESSIONS_CAP = "max_sessions_per_principal"


class Opened:
    """A session opened or resumed for a connection: its welcome, then the frames to
    replay and the jobs to go on following (a cluster's resume)."""

    __slots__ = ("follows", "replay", "resumed", "session", "welcome")

    def __init__(
        self,
        session: Session,
        welcome: pb.ConnectResponse,
        *,
        resumed: bool,
        replay: Sequence[bytes] = (),
        follows: Sequence[SessionFollow] = (),
    ) -> None:
        self.session = session
        self.welcome = welcome
        self.resumed = resumed
        self.replay = replay
        self.follows = follows


class SessionLifecycle:
    """Opens, resumes and closes the sessions of this node."""

    def __init__(
        self,
        sessions: SessionRegistry,
        journal: SessionJournal | None,
        runtime: JobRuntime,
        auth: Authenticator,
        *,
        offered: Sequence[str],
        info: session_pb2.PeerInfo,
    ) -> None:
        self._sessions = sessions
        self._journal = journal  # a cluster's: sessions live in the store
        self._runtime = runtime
        self._auth = auth
        self._features = tuple(offered)  # what this node offers (§6.2)
        self._info = info  # the welcome's `runtime`

    @property
    def limits(self) -> SessionLimits:
        return self._sessions.limits

    @property
    def unsent(self) -> UnsentLedger:
        return self._sessions.unsent

    async def hello(self, request: pb.ConnectRequest, *, credentials_ok: bool) -> Opened:
        """§6.1, §6.2: `credentials_ok`, whether the transport may carry credential
        values (§14, `arcp_grpc.service.transport_policy`)."""
        hello = request.hello
        principal = self._auth.authenticate(hello.auth.token)
        if hello.HasField("resume"):
            return await self.resume(
                request.id, hello.resume, principal, credentials_ok=credentials_ok
            )
        offered = set(hello.capabilities.features)
        if CREDENTIALS_FEATURE in offered and not credentials_ok:
            offered.discard(CREDENTIALS_FEATURE)  # as if the client had not asked (§14)
            log.warning(WITHHELD, principal.name)
        features = frozenset(f for f in self._features if f in offered)
        self._admit_session(principal)
        session = self._sessions.create(principal, features)
        token = session.tokens.rotate()
        if self._journal is not None:
            quotas = self._runtime.quotas
            try:  # resumable anywhere from its welcome on, if the cluster's cap allows
                await self._journal.opened(session, quotas.cap(principal.name, _SESSIONS_CAP))
            except BaseException as exc:
                self._sessions.discard(session)  # never welcomed: nothing to keep
                if isinstance(exc, OverCap):
                    raise quotas.refusal(principal.name, _SESSIONS_CAP, exc.held) from None
                raise
        log.info("session %s opened for %s", session.session_id, principal.name)
        return Opened(
            session, self._welcome(request.id, session, token, resumed=False), resumed=False
        )

    async def resume(
        self,
        request_id: str,
        resume: session_pb2.SessionResume,
        principal: Principal | None,
        *,
        credentials_ok: bool,
    ) -> Opened:
        """§6.3: replay `seq > last_event_seq`, rotate the token, take over the session."""
        if principal is None and resume.HasField("auth"):
            principal = self._auth.authenticate(resume.auth.token)
        if self._journal is not None:
            return await self._resume_stored(
                request_id, resume, principal, credentials_ok, self._journal
            )
        session = self._sessions.resume(
            principal or self._sessions.owner(resume.session_id),  # a bare resume: by token
            resume.session_id,
            resume.resume_token,
        )
        if resume.last_event_seq > session.replay.last_seq:
            raise InvalidRequest(
                f"last_event_seq {resume.last_event_seq} is beyond the session's last event"
            )
        _check_transport(session, credentials_ok)
        missed = session.replay.after(resume.last_event_seq, session.session_id)
        # The token presented stays valid until the client uses the new one (DESIGN.md).
        token = session.tokens.rotate_after_resume(
            resume.resume_token, self.limits.resume_window_sec
        )
        if principal is not None:
            session.principal = principal  # the wire profile is the token's (DESIGN.md)
        log.info("session %s resumed after seq %d", session.session_id, resume.last_event_seq)
        welcome = self._welcome(request_id, session, token, resumed=True)
        return Opened(session, welcome, resumed=True, replay=missed)

    async def _resume_stored(
        self,
        request_id: str,
        resume: session_pb2.SessionResume,
        principal: Principal | None,
        credentials_ok: bool,
        journal: SessionJournal,
    ) -> Opened:
        """A cluster's resume, on any node: the session comes from the store, its missed
        frames too, and the jobs it follows go on from where its frames left them."""
        if principal is None:
            principal = await journal.owner(resume.session_id)
        self._admit_session(principal, resumed=resume.session_id)
        quotas = self._runtime.quotas
        cap = quotas.cap(principal.name, _SESSIONS_CAP)
        try:
            resumed, token = await journal.resume(
                principal, resume.session_id, resume.resume_token, resume.last_event_seq, cap
            )
        except OverCap as over:
            raise quotas.refusal(principal.name, _SESSIONS_CAP, over.held) from None
        session = resumed.session
        _check_transport(session, credentials_ok)  # the previous token stays valid (DESIGN.md)
        log.info("session %s resumed after seq %d", session.session_id, resume.last_event_seq)
        welcome = self._welcome(request_id, session, token, resumed=True)
        return Opened(
            session, welcome, resumed=True, replay=resumed.replay, follows=resumed.follows
        )

    async def token_proven(self, session: Session) -> None:
        """A frame on the connection that carried the welcome proves the client has the
        new token: the one it resumed with dies (DESIGN.md "Resume tokens"). In a cluster
        that is recorded before the frame is handled, so no node accepts it afterwards."""
        if session.tokens.prove() and self._journal is not None:
            await self._journal.token_proven(session)

    def close(self, session: Session) -> None:
        """§6.7: the client closed the session. With nothing in flight there is nothing
        to resume, so the buffer is freed now; in-flight jobs continue and stay resumable."""
        if session.followers:
            return
        self._sessions.discard(session)
        if self._journal is not None:
            self._journal.closed(session)

    def _admit_session(self, principal: Principal, *, resumed: str = "") -> None:
        """§14: a new session counts against its principal's caps and the node's; so does
        one `resumed` from the cluster's store, which this node may not hold yet (the
        node's caps bound what it holds, whichever node a session began on). If this
        node holds it already, it is not counted twice; nor are the bytes it holds, so
        that a client over its bytes can still resume and drain them."""
        quotas, sessions, name = self._runtime.quotas, self._sessions, principal.name
        own = sessions.get(resumed) if resumed else None
        if own is None or own.principal.name != name:
            mine, own_bytes = 0, 0
        else:
            mine, own_bytes = 1, own.held_bytes()
        quotas.check_session(name, sessions.count(name) - mine, len(sessions) - mine)
        quotas.check_held_bytes(
            name,
            sessions.held_bytes(name) - own_bytes,
            sessions.held_bytes_total() - own_bytes,
        )

    def _welcome(
        self, request_id: str, session: Session, token: str, *, resumed: bool
    ) -> pb.ConnectResponse:
        bind_log_context(session_id=session.session_id)  # this stream's later log lines
        frame = pb.ConnectResponse(session_id=session.session_id, request_id=request_id)
        welcome = frame.welcome
        welcome.session_id = session.session_id
        welcome.runtime.CopyFrom(self._info)
        welcome.resume_token = token
        welcome.resume_window_sec = self.limits.resume_window_sec
        welcome.heartbeat_interval_sec = self.limits.heartbeat_interval_sec
        welcome.capabilities.encodings.append("json")
        welcome.capabilities.features.extend(f for f in self._features if f in session.features)
        welcome.capabilities.agents.extend(self._runtime.agents())
        stamp(welcome.accepted_at)
        welcome.resumed = resumed
        welcome.wire_profile = session.principal.profile  # type: ignore[assignment]
        return frame


def _check_transport(session: Session, credentials_ok: bool) -> None:
    """§14: a session that negotiated credentials resumes only where they may flow;
    its frames (accepted, rotations) were recorded with their values."""
    if CREDENTIALS_FEATURE in session.features and not credentials_ok:
        raise PermissionDenied(
            "this session negotiated provisioned_credentials: resume it over TLS or from"
            " this host (§14), or open a new session"
        )
