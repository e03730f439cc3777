"""The sessions this node holds (§6), by id and by principal, and their expiry (§6.3).

A session detached longer than the resume window is let go of by the sweeper;
another node taking it over (a cluster's resume) or a clean close with nothing
in flight lets go of it at once. Each goes through `SessionRegistry._release`
and `Session.release`. The per-principal index serves the quotas (§14).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial

from arcp_grpc.auth import Principal
from arcp_grpc.base.ids import new_id
from arcp_grpc.errors import ResumeWindowExpired
from arcp_grpc.runtime import Supervisor, authorize_resume
from arcp_grpc.service.outbox import UnsentLedger
from arcp_grpc.service.sessions import FrameJournal, Session, SessionLimits

__all__ = ["SessionRegistry"]


class SessionRegistry:
    """Sessions by id; expires those detached longer than the resume window."""

    def __init__(self, limits: SessionLimits, unsent: UnsentLedger | None = None) -> None:
        self.limits = limits
        self.journal: FrameJournal | None = None  # set in a cluster (`SessionJournal`)
        # What every transport's outbox holds together (`[limits] max_unsent_bytes`).
        self.unsent = unsent or UnsentLedger(sys.maxsize)
        self._sessions: dict[str, Session] = {}
        self._by_principal: dict[str, set[Session]] = {}  # for the quotas (§14)
        self._loops = Supervisor()  # the expiry sweeper

    def __len__(self) -> int:
        return len(self._sessions)

    def attached_count(self) -> int:
        return sum(1 for s in list(self._sessions.values()) if s.outbound is not None)

    def unsent_bytes(self) -> int:
        """Frames queued for attached clients and not yet taken by their transports,
        with those a cluster's store is still recording before they go out."""
        sessions = list(self._sessions.values())
        queued = sum(s.outbound.unsent_bytes for s in sessions if s.outbound is not None)
        return queued + sum(s.recording_bytes for s in sessions)

    def create(self, principal: Principal, features: frozenset[str]) -> Session:
        session = Session(new_id("sess"), principal, features, self.limits, journal=self.journal)
        self._hold(session)
        return session

    def count(self, principal: str) -> int:
        """How many sessions of `principal` this node holds."""
        return len(self._by_principal.get(principal, ()))

    def held_bytes(self, principal: str) -> int:
        """The bytes this node holds for `principal`'s sessions (`Session.held_bytes`)."""
        return sum(s.held_bytes() for s in self._by_principal.get(principal, ()))

    def held_bytes_total(self) -> int:
        return sum(s.held_bytes() for s in self._sessions.values())

    def _hold(self, session: Session) -> None:
        self._sessions[session.session_id] = session
        self._by_principal.setdefault(session.principal.name, set()).add(session)

    def _release(self, session: Session) -> None:
        """The one way a held session goes: unindexed, then let go of (`Session.release`)."""
        del self._sessions[session.session_id]
        held = self._by_principal.get(session.principal.name)
        if held is not None:
            held.discard(session)
            if not held:
                del self._by_principal[session.principal.name]
        session.release()

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def adopt(self, session: Session) -> None:
        """Hold a session rebuilt from the store (a cluster's resume)."""
        self._hold(session)

    def drop(self, session_id: str) -> Session | None:
        """Let go of a session another node now holds (or this node rebuilds): its
        followers stop and its transport, if any, ends. Returns what was held."""
        session = self._sessions.get(session_id)
        if session is not None:
            self._release(session)
        return session

    def resume(self, principal: Principal, session_id: str, token: str) -> Session:
        """The session to resume, if `principal` owns it and `token` is its current
        token. A failed attempt changes nothing, so it cannot lock the owner out."""
        session = self._sessions.get(session_id)
        if session is None:
            raise ResumeWindowExpired(
                f"session {session_id!r} is unknown or its resume window has passed",
                details={"session_id": session_id},
            )
        authorize_resume(principal.name, session.principal.name)
        session.tokens.check(session_id, token)
        return session

    def discard(self, session: Session) -> None:
        """Forget a session at once (a clean close with nothing left to resume)."""
        if self._sessions.get(session.session_id) is session:
            self._release(session)

    def owner(self, session_id: str) -> Principal:
        """The principal of a live session (a bare `session.resume` names no principal)."""
        session = self._sessions.get(session_id)
        if session is None:
            raise ResumeWindowExpired(
                f"session {session_id!r} is unknown or its resume window has passed",
                details={"session_id": session_id},
            )
        return session.principal

    def start(self, on_expire: Callable[[Session], None]) -> None:
        interval = max(0.2, min(5.0, self.limits.resume_window_sec / 10))
        self._loops.every("arcp-session-sweeper", interval, partial(self._sweep, on_expire))

    async def stop(self) -> None:
        """Stop the expiry sweeper (waiting for it, so a stopped core leaves no task) and
        release every session."""
        await self._loops.stop()
        for session in self._sessions.values():
            session.release()

    async def _sweep(self, on_expire: Callable[[Session], None]) -> bool:
        """Let go of the sessions detached longer than the resume window (§6.3)."""
        now = time.monotonic()
        for session in list(self._sessions.values()):
            gone = session.detached_at
            if gone is not None and now - gone > self.limits.resume_window_sec:
                self._release(session)
                on_expire(session)
        return True
