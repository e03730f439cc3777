"""Sessions in a cluster's store, so a client resumes through any node (§6.3).

A node records each sequenced frame of a session it holds before sending it
(`record`; the store's group commit reports which were recorded, and only
those go out). A resume on any node — the same one or another — takes the
session over in the store (`claim_session`: the next attach generation, the
new token digest, and this node as holder, in one conditional update), then
replays the recorded frames after the client's `last_event_seq` and goes on
following each job the session had not seen end, from the `job_seq` its last
recorded frame carried. The node that held it is told; it lets go, and can
record nothing more for it anyway (the store checks the holder per batch).
So across nodes, as on one, every frame reaches the client once, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence

from arcp_grpc.auth import Principal
from arcp_grpc.errors import (
    ARCPError,
    InternalError,
    InvalidRequest,
    ResumeWindowExpired,
    StoreUnreachable,
    Unauthenticated,
)
from arcp_grpc.runtime import Supervisor, authorize_resume
from arcp_grpc.service.registry import SessionRegistry
from arcp_grpc.service.resume_tokens import check_resume_token, digest
from arcp_grpc.service.sessions import Session, SessionLimits
from arcp_grpc.store import ClusterStore, SessionFollow, SessionFrame, SessionRow

__all__ = ["Resumed", "SessionJournal"]

log = logging.getLogger("arcp_grpc.sessions")


class Resumed:
    """A session taken over from the store: what to replay and what to follow."""

    def __init__(self, session: Session, replay: list[bytes], follows: list[SessionFollow]) -> None:
        self.session = session
        self.replay = replay
        self.follows = follows


class SessionJournal:
    """The registry's sessions, recorded in a `ClusterStore`."""

    def __init__(self, store: ClusterStore, registry: SessionRegistry) -> None:
        self._store = store
        self._registry = registry
        self._trims: dict[str, int] = {}
        self._trimming: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._loops = Supervisor()  # the expiry of stored sessions
        registry.journal = self
        store.set_frame_listener(self._recorded)
        store.set_session_listener(self._lost)

    @property
    def limits(self) -> SessionLimits:
        return self._registry.limits

    # -- FrameJournal ------------------------------------------------------

    def record(
        self, session: Session, seq: int, job_id: str, job_seq: int, terminal: bool, frame: bytes
    ) -> None:
        try:
            self._store.append_session_frame(
                SessionFrame(session.session_id, seq, job_id, job_seq, terminal, frame)
            )
        except InternalError:
            # The store failed for good: no frame of this session can be recorded, so
            # none may be sent. Its transport ends (soon, not inside this delivery), so
            # the client learns it at once and resumes through another node (issue 20:
            # never a silent socket), where the store's record is replayed.
            log.error("the store failed: session %s is let go of", session.session_id)
            asyncio.get_running_loop().call_soon(self._registry.drop, session.session_id)

    def trimmed(self, session: Session, upto: int) -> None:
        """Coalesced: one delete per session in flight at a time, for the latest mark."""
        if upto <= 0:
            return
        self._trims[session.session_id] = max(upto, self._trims.get(session.session_id, 0))
        if self._trimming is None or self._trimming.done():
            self._trimming = asyncio.ensure_future(self._trim())

    async def _trim(self) -> None:
        while self._trims:
            session_id, upto = self._trims.popitem()
            try:
                await self._store.ack_session(session_id, upto)
            except ARCPError:
                log.warning("could not trim the frames of session %s", session_id)

    def _recorded(self, frames: Sequence[SessionFrame], lost: frozenset[str]) -> None:
        """After a commit: send what was recorded, to the session as this node holds it."""
        for frame in frames:
            session = self._registry.get(frame.session_id)
            if session is not None and session.journal is self:
                session.recorded(len(frame.frame))
                session.send(frame.frame)
        for session_id in lost:
            self._lost(session_id)

    def _lost(self, session_id: str) -> None:
        if self._registry.drop(session_id) is not None:
            log.info("session %s was resumed on another node", session_id)

    # -- lifecycle ---------------------------------------------------------

    async def opened(self, session: Session, cap: int) -> None:
        """A new session: recorded before its welcome goes out, if its principal holds
        fewer than `cap` sessions on every node (else `OverCap`, nothing recorded);
        refused (retryable) while the store does not answer, rather than held until it
        does (issue 20)."""
        self._check_reachable()
        await self._store.create_session(
            SessionRow(
                session.session_id,
                session.principal.name,
                session.principal.profile,
                tuple(sorted(session.features)),
                session.tokens.current,
                1,
                "",
            ),
            cap,
            self.limits.resume_window_sec,
        )

    def follow(self, session: Session, job_id: str, *, submitted: bool, after: int) -> None:
        """The session follows `job_id` from `after`: queued ahead of its first frame."""
        self._watch(self._store.follow_job(session.session_id, job_id, submitted, after))

    async def token_proven(self, session: Session) -> None:
        """The client used the session it resumed: every node refuses the old token.
        If the store cannot say so now, the old token lives until the window ends."""
        try:
            await self._store.retire_previous_token(session.session_id)
        except ARCPError:
            log.warning("could not retire the previous token of session %s", session.session_id)

    def unfollow(self, session: Session, job_id: str) -> None:
        self._watch(self._store.unfollow_job(session.session_id, job_id))

    def detached(self, session: Session) -> None:
        """Its transport left: the resume window runs from now, on every node."""
        self._watch(self._store.detach_session(session.session_id))

    def closed(self, session: Session) -> None:
        """Closed with nothing in flight: nothing is left to resume."""
        self._watch(self._store.delete_session(session.session_id))

    def _watch(self, pending: Awaitable[None]) -> None:
        task = asyncio.ensure_future(_logged(pending))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def owner(self, session_id: str) -> Principal:
        """The principal of a stored session (a bare `session.resume` names none)."""
        row = await self._store.load_session(session_id)
        if row is None:
            raise _unknown(session_id)
        return Principal(row.principal, row.profile)

    async def resume(
        self, principal: Principal, session_id: str, token: str, last_event_seq: int, cap: int
    ) -> tuple[Resumed, str]:
        """Take the session over for this node (§6.3); returns it with the frames to
        replay, the jobs to follow on, and the new resume token. A failed attempt
        changes nothing, so it cannot lock the owner out. `OverCap` when the principal
        holds `cap` other sessions on the cluster's nodes (a resume counts like a hello)."""
        self._check_reachable()
        row = await self._store.load_session(session_id)
        if row is None:
            raise _unknown(session_id)
        authorize_resume(principal.name, row.principal)
        presented = digest(token)
        check_resume_token(
            session_id,
            presented,
            row.token_digest,
            row.previous_token_digest,
            row.previous_token_until,
            time.time(),  # a pre-check: `claim_session` decides by the database's clock
        )
        # This node's frames of the session, if it holds it, are recorded first: what the
        # store holds is then its whole history.
        await self._store.flush()
        last = await self._store.last_session_seq(session_id)
        if last_event_seq > last:
            raise InvalidRequest(
                f"last_event_seq {last_event_seq} is beyond the session's last event"
            )
        frames = self._window(await self._store.session_frames(session_id, last_event_seq))
        first = frames[0][0] if frames else last + 1
        if first > last_event_seq + 1:
            raise ResumeWindowExpired(
                f"events after {last_event_seq} are no longer buffered (oldest is {first})",
                details={"session_id": session_id},
            )
        # From here on the resume goes through: let go of this node's copy, take it over.
        self._registry.drop(session_id)
        session = Session(
            session_id,
            Principal(row.principal, principal.profile),
            frozenset(row.features),
            self.limits,
            journal=self,
        )
        token = session.tokens.rotate_after_resume(token, self.limits.resume_window_sec)
        await self._store.flush()  # what the dropped copy delivered meanwhile
        window = self.limits.resume_window_sec
        claimed = await self._store.claim_session(
            row, presented, session.tokens.current, window, cap
        )
        if claimed is None:
            if await self._store.load_session(session_id) is None:
                raise _unknown(session_id)  # its window ended meanwhile
            raise Unauthenticated("the session was resumed elsewhere at the same time")
        frames = await self._store.session_frames(session_id, last_event_seq)
        last = max(last, frames[-1][0] if frames else 0)
        session.replay.restore(frames, last, last_event_seq)
        follows = await self._store.session_follows(session_id)
        session.submitted.update(f.job_id for f in follows if f.submitted)
        self._registry.adopt(session)
        return Resumed(session, [frame for _, frame in frames], follows), token

    def _check_reachable(self) -> None:
        if not self._store.reachable():
            raise StoreUnreachable("the store is unreachable: this node opens no session now")

    def _window(self, frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """The newest of `frames` that the session's buffer limits keep (§6.5): the same
        window a resume on the node holding the session in memory would have."""
        limits = self.limits
        kept = frames[-limits.max_buffered_frames :] if frames else []
        size = 0
        for index in range(len(kept) - 1, -1, -1):
            size += len(kept[index][1])
            if size > limits.max_buffered_bytes and index < len(kept) - 1:
                return kept[index + 1 :]
        return kept

    def start(self) -> None:
        """Delete sessions whose resume window ended, whichever node they were on, every
        tenth of the window (0.2 s to 5 s), under the supervisor."""
        interval = max(0.2, min(5.0, self.limits.resume_window_sec / 10))
        self._loops.every("arcp-session-expiry", interval, self._expire)

    async def stop(self) -> None:
        """Stop the expiry loop and wait until it has ended."""
        await self._loops.stop()

    async def _expire(self) -> bool:
        expired = await self._store.expire_sessions(self.limits.resume_window_sec)
        if expired:
            log.info("%d stored sessions expired", expired)
        return True


def _unknown(session_id: str) -> ResumeWindowExpired:
    return ResumeWindowExpired(
        f"session {session_id!r} is unknown or its resume window has passed",
        details={"session_id": session_id},
    )


async def _logged(pending: Awaitable[None]) -> None:
    try:
        await pending
    except Exception:  # the store failed or is closing: logged, the session carries on
        log.warning("a session write failed", exc_info=True)
