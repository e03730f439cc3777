"""ARCP sessions in the core (§6): sequencing, buffering, resume, subscriptions.

A session outlives its transport. While a client is connected, frames go to
its outbound queue; while it is away (within the resume window) its job
pumps keep assigning `event_seq` and buffering, so a resume replays exactly
what was missed, terminal frames included (§6.3, §8.3). `event_seq` is
assigned in one place (`Session.deliver`), on the event loop, so it is
strictly increasing and gap-free across all of a session's jobs.

In a cluster a session also lives in the store (`arcp_grpc.service.journal`):
each sequenced frame is recorded there before it is sent (`FrameJournal`),
so any node can take the session over and replay what the client missed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from arcp_grpc.auth import Principal
from arcp_grpc.base.ids import new_id, new_ulid
from arcp_grpc.base.wire import length_delimited, varint
from arcp_grpc.errors import ResumeWindowExpired, Unauthenticated

__all__ = [
    "RETIRED",
    "FrameHeader",
    "FrameJournal",
    "Outbox",
    "Session",
    "SessionLimits",
    "SessionRegistry",
    "UnsentLedger",
    "check_resume_token",
    "digest",
    "frame_bytes",
]

log = logging.getLogger("arcp_grpc.sessions")

# ConnectResponse field numbers (proto/arcp/v1/session_service.proto).
_ID, _SESSION_ID, _REQUEST_ID, _EVENT_SEQ, _JOB_ID, _TRACE_ID = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Session knobs; each is a documented configuration setting."""

    resume_window_sec: int = 600  # §6.3
    heartbeat_interval_sec: int = 30  # §6.4
    hello_timeout_sec: float = 10.0  # a connection without a session after this is closed
    max_buffered_frames: int = 100_000  # beyond this the oldest frames are evicted (§6.5)
    max_buffered_bytes: int = 64 * 1024 * 1024  # and beyond this many bytes of them
    back_pressure_lag: int = 1_000  # unacked frames before a back_pressure status (§6.5)
    max_inline_result_bytes: int = 4 * 1024 * 1024  # results inlined for clients without
    # result_chunk (§6.2); larger ones fail clearly
    max_unsent_bytes: int = 64 * 1024 * 1024  # queued for one client: job output waits past
    # half of it; past all of it (replies nobody reads) the transport is dropped, the session kept


class FrameHeader:
    """Envelope fields of a server frame built around pre-serialised bytes. The
    constant fields are encoded once, when the header is made (one per job pump).
    A plain class: two are made per job, and a frozen dataclass's `__init__` cost
    more than the encoding. Treat it as immutable."""

    __slots__ = ("encoded", "job_id", "request_id", "session_id", "trace_id")

    def __init__(
        self, session_id: str, *, request_id: str = "", job_id: str = "", trace_id: str = ""
    ) -> None:
        self.session_id = session_id
        self.request_id = request_id
        self.job_id = job_id
        self.trace_id = trace_id
        encoded = length_delimited(_SESSION_ID, session_id.encode())
        if request_id:
            encoded += length_delimited(_REQUEST_ID, request_id.encode())
        if job_id:
            encoded += length_delimited(_JOB_ID, job_id.encode())
        if trace_id:
            encoded += length_delimited(_TRACE_ID, trace_id.encode())
        self.encoded = encoded


_SEQ_TAG = varint(_EVENT_SEQ << 3)
_ID_HEAD = varint(_ID << 3 | 2) + varint(26)  # the envelope id: always a 26-character ULID


def frame_bytes(header: FrameHeader, field_number: int, body: bytes, event_seq: int = 0) -> bytes:
    """A `ConnectResponse` whose oneof member `field_number` holds `body` verbatim.
    (Field order on the wire is free in protobuf; the constant ones come pre-encoded.)"""
    member = length_delimited(field_number, body)
    if event_seq:
        return b"".join(
            (_ID_HEAD, new_ulid().encode(), header.encoded, _SEQ_TAG, varint(event_seq), member)
        )
    return b"".join((_ID_HEAD, new_ulid().encode(), header.encoded, member))


class FrameJournal(Protocol):
    """Where a cluster records a session's frames before they go out (the journal sends
    each once it is recorded)."""

    def record(
        self, session: Session, seq: int, job_id: str, job_seq: int, terminal: bool, frame: bytes
    ) -> None: ...

    def trimmed(self, session: Session, upto: int) -> None:
        """Frames up to `upto` left the session's buffer: the store need not keep them."""

    def detached(self, session: Session) -> None:
        """The session's transport left: its resume window starts, on every node."""


class Follower(Protocol):
    """What follows one job for a session: a pump task, or a delivery fed by the job."""

    def cancel(self) -> bool: ...


class UnsentLedger:
    """The bytes waiting in every transport's `Outbox` of the process, against one cap
    (`[limits] max_unsent_bytes`): each transport's own limit bounds one client that
    does not read; this bounds all of them together (§14). Once over, a box holding
    more than its fair share (the cap over the open boxes) loses its transport at its
    next frame, so the total stays below about twice the cap whatever the clients do,
    and clients that keep up (holding next to nothing) are never the ones cut."""

    __slots__ = ("boxes", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.boxes = 0

    def over_share(self, held: int) -> bool:
        """Whether a box holding `held` bytes must go: the total is over the cap and
        `held` is more than a fair share of it."""
        return self.total > self.limit and held > self.limit // max(1, self.boxes)


class Outbox:
    """One transport's outbound frames, `None` ending it; one consumer.

    The operations of `asyncio.Queue` that a stream needs, without its task
    accounting and getter bookkeeping: every frame of every session goes
    through here, and a chatty job sends tens of thousands a second.

    A client that reads slowly must not hold the process's memory hostage.
    Producers that can wait (a job's events) check `room_bytes` or await
    `wait_for_room`, which hold them at half of `limit_bytes`; if more than the
    whole limit piles up anyway (replies to requests nobody reads), `on_overflow`
    is told, once, and is expected to `close` the box; later puts are dropped. With a
    `ledger` shared by every box, a box over half its limit is also told when all boxes
    together are over the ledger's: many clients that do not read cannot add up.
    """

    __slots__ = (
        "_bytes",
        "_closed",
        "_frames",
        "_ledger",
        "_limit",
        "_on_overflow",
        "_room",
        "_waiter",
    )

    def __init__(
        self,
        limit_bytes: int = 0,
        on_overflow: Callable[[Outbox], None] | None = None,
        ledger: UnsentLedger | None = None,
    ) -> None:
        self._ledger = ledger
        if ledger is not None:
            ledger.boxes += 1
        self._frames: deque[bytes | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._bytes = 0
        self._limit = limit_bytes  # 0: unbounded
        self._on_overflow = on_overflow
        self._closed = False
        self._room: list[asyncio.Future[None]] = []  # producers waiting in `wait_for_room`

    def put_nowait(self, frame: bytes | None) -> None:
        if self._closed:
            return
        self._append(frame)
        if frame is None or not self._limit:
            return
        # One frame always fits, however large: the limit bounds a backlog, not a frame.
        backlog = self._bytes > len(frame)
        over = self._bytes > self._limit > len(frame)
        ledger = self._ledger
        if over or (backlog and ledger is not None and ledger.over_share(self._bytes)):
            on_overflow, self._on_overflow = self._on_overflow, None
            if on_overflow is not None:
                on_overflow(self)

    def put_replay(self, frames: Sequence[bytes]) -> None:
        """Queue frames a session buffer holds anyway (a resume's replay), raising
        this transport's limit by their size: they cost no memory of their own here."""
        if self._limit:
            self._limit += sum(len(frame) for frame in frames)
        for frame in frames:
            self.put_nowait(frame)

    def close(self, last: bytes | None = None) -> None:
        """End the stream after what is queued (and `last`, if given), whatever the
        limit; later puts are dropped."""
        if self._closed:
            return
        if last is not None:
            self._append(last)
        self._append(None)
        self._closed = True
        self._on_overflow = None  # it usually refers back to the owner of this box
        self._wake_producers()

    def _append(self, frame: bytes | None) -> None:
        self._frames.append(frame)
        if frame is not None:
            self._bytes += len(frame)
            if self._ledger is not None:
                self._ledger.total += len(frame)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> bytes | None:
        while not self._frames:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        return self.get_nowait()

    def get_nowait(self) -> bytes | None:
        """The next frame; raises `asyncio.QueueEmpty` when there is none."""
        if not self._frames:
            raise asyncio.QueueEmpty
        frame = self._frames.popleft()
        if frame is not None:
            self._bytes -= len(frame)
            if self._ledger is not None:
                self._ledger.total -= len(frame)
            if self._room and self.room_bytes() >= 0:
                self._wake_producers()
        return frame

    def discard(self) -> None:
        """The stream is over: frames nobody will take no longer count (the box is
        closed, so nothing more is queued)."""
        self.close()
        ledger, self._ledger = self._ledger, None
        if ledger is not None:
            ledger.total -= self._bytes
            ledger.boxes -= 1
        self._bytes = 0
        self._frames.clear()

    def room_bytes(self) -> int:
        """How much more may be queued before it is over half the limit (negative when
        it is already; `sys.maxsize` when unbounded)."""
        return self._limit // 2 - self._bytes if self._limit else sys.maxsize

    async def wait_for_room(self) -> None:
        """Return once at most half the limit is unsent (at once when unbounded), or
        the box is closed: for producers that can wait, such as a job's history."""
        while not self._closed and self.room_bytes() < 0:
            waiter = asyncio.get_running_loop().create_future()
            self._room.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._room:
                    self._room.remove(waiter)

    def _wake_producers(self) -> None:
        waiters, self._room = self._room, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def empty(self) -> bool:
        return not self._frames

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def unsent_bytes(self) -> int:
        return self._bytes


@dataclass(eq=False)
class Session:
    """One ARCP session of one principal."""

    session_id: str
    principal: Principal
    features: frozenset[str]
    limits: SessionLimits
    token_digest: bytes = b""
    # The token the last resume was made with: still valid (a lost welcome must not lock
    # the client out) until `previous_until` (monotonic), or until the client uses the
    # session it resumed (`token_proven`), which sets `previous_until` to RETIRED.
    previous_digest: bytes = b""
    previous_until: float = 0.0
    next_seq: int = 1
    buffer: deque[tuple[int, bytes]] = field(default_factory=deque)
    buffered_bytes: int = 0
    acked: int = 0
    outbound: Outbox | None = None
    detached_at: float | None = None
    submitted: set[str] = field(default_factory=set)  # its jobs still running
    pumps: dict[str, Follower] = field(default_factory=dict)  # by job id
    back_pressure_signalled: bool = False
    attached: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    last_inbound: float = field(default_factory=time.monotonic)
    last_outbound: float = field(default_factory=time.monotonic)
    journal: FrameJournal | None = None  # set in a cluster: frames are recorded, then sent
    evicted: int = 0  # frames evicted since the journal was last told
    recording_bytes: int = 0  # of frames handed to the journal and not yet recorded
    _recording: asyncio.Future[None] | None = field(default=None, repr=False)

    # -- delivery ------------------------------------------------------------

    def deliver(
        self,
        header: FrameHeader,
        field_number: int,
        body: bytes,
        job_seq: int = 0,
        terminal: bool = False,
    ) -> int:
        """Assign the next `event_seq`, buffer the frame, send it if attached (in a
        cluster, once the store has recorded it). `job_seq`: the job's event this frame
        carries or follows; `terminal`: the job's last frame."""
        seq = self.next_seq
        self.next_seq = seq + 1
        frame = frame_bytes(header, field_number, body, seq)
        self.buffer.append((seq, frame))
        self.buffered_bytes += len(frame)
        self._evict()
        if self.journal is None:
            self.send(frame)
        else:
            self.recording_bytes += len(frame)
            self.journal.record(self, seq, header.job_id, job_seq, terminal, frame)
        return seq

    def _evict(self) -> None:
        """§6.5: eviction forced by the buffer limits (the newest frame always stays).
        A client that never acks (the published SDK's default) keeps its buffer full:
        then one frame goes out for each that comes in."""
        buffer, limits = self.buffer, self.limits
        while len(buffer) > 1 and (
            len(buffer) > limits.max_buffered_frames
            or self.buffered_bytes > limits.max_buffered_bytes
        ):
            self.buffered_bytes -= len(buffer.popleft()[1])
            self.evicted += 1
        if self.evicted >= _TRIM_EVERY and self.journal is not None:
            self.evicted = 0
            self.journal.trimmed(self, buffer[0][0] - 1)

    def send(self, frame: bytes) -> None:
        """Send an unsequenced frame (replies, pings) if a transport is attached."""
        if self.outbound is not None:
            self.outbound.put_nowait(frame)
            self.last_outbound = time.monotonic()

    def lag(self) -> int:
        return self.next_seq - 1 - self.acked

    def ack(self, last_processed_seq: int) -> None:
        """§6.5: free buffered frames the client has processed."""
        if last_processed_seq > self.acked:
            self.acked = min(last_processed_seq, self.next_seq - 1)
        while self.buffer and self.buffer[0][0] <= self.acked:
            self.buffered_bytes -= len(self.buffer.popleft()[1])
        if self.lag() < self.limits.back_pressure_lag // 2:
            self.back_pressure_signalled = False
        if self.journal is not None:
            self.journal.trimmed(self, self.acked)

    # -- transport -------------------------------------------------------------

    def attach(self, outbound: Outbox) -> None:
        if self.outbound is not None:
            self.outbound.close()  # a newer transport takes over
        self.outbound = outbound
        self.detached_at = None
        self.last_inbound = time.monotonic()
        self.attached.set()

    def detach(self, outbound: Outbox) -> None:
        if self.outbound is outbound:
            self.outbound = None
            self.detached_at = time.monotonic()
            self.attached.clear()
            if self.journal is not None:
                self.journal.detached(self)

    def room_bytes(self) -> int:
        """What may still be queued to the attached transport before it is half full;
        negative when there is none, or it is over. Frames the store is still recording
        (a cluster's) count as queued: they go out as soon as they are recorded."""
        outbound = self.outbound
        if outbound is None or outbound.closed:
            return -1
        return outbound.room_bytes() - self.recording_bytes

    def recorded(self, size: int) -> None:
        """The journal recorded (or dropped) `size` bytes of this session's frames."""
        self.recording_bytes -= size
        waiter, self._recording = self._recording, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def room(self) -> None:
        """Wait until a transport is attached and at most half full: what follows a
        job's stored history goes at the client's pace, not the store's (§6.5)."""
        while True:
            outbound = self.outbound
            if outbound is None:
                await self.attached.wait()
                continue
            await outbound.wait_for_room()
            if outbound.closed:
                # Whoever closes a session's transport detaches it first (or attaches another).
                assert self.outbound is not outbound, "a closed transport is still attached"
                continue
            if self.room_bytes() >= 0 or not self.recording_bytes:
                return
            self._recording = self._recording or asyncio.get_running_loop().create_future()
            await self._recording

    def replay_after(self, last_event_seq: int) -> list[bytes]:
        """Frames with `event_seq > last_event_seq`, or RESUME_WINDOW_EXPIRED (§6.3)."""
        if last_event_seq >= self.next_seq - 1:
            return []
        first = self.buffer[0][0] if self.buffer else self.next_seq
        if last_event_seq + 1 < first:
            raise ResumeWindowExpired(
                f"events after {last_event_seq} are no longer buffered (oldest is {first})",
                details={"session_id": self.session_id},
            )
        return [frame for seq, frame in self.buffer if seq > last_event_seq]

    def rotate_token(self) -> str:
        """A fresh resume token (≥128 bits); only its digest is kept (§6.3)."""
        token = "rt_" + secrets.token_urlsafe(32)
        self.token_digest = digest(token)
        return token

    def check_token(self, token: str) -> None:
        """Raise `Unauthenticated` unless `token` may resume this session now."""
        check_resume_token(
            self.session_id,
            digest(token),
            self.token_digest,
            self.previous_digest,
            self.previous_until,
            time.monotonic(),
        )

    def rotate_after_resume(self, presented: str) -> str:
        """The token for a resume made with `presented`, which stays valid until the
        client proves it has the new one, or the resume window ends (DESIGN.md)."""
        self.previous_digest = digest(presented)
        self.previous_until = time.monotonic() + self.limits.resume_window_sec
        return self.rotate_token()

    def token_proven(self) -> bool:
        """The client used the session it resumed, so it has the new token: the one it
        resumed with is dead from now on. True if that changed anything."""
        if not self.previous_digest or self.previous_until == RETIRED:
            return False
        self.previous_until = RETIRED
        return True

    def held_bytes(self) -> int:
        """What this session makes the core hold (the quota's measure): its buffer,
        plus what waits for its transport or the store. Sequenced frames waiting to be
        sent are counted twice, so this is an upper bound."""
        outbound = self.outbound
        unsent = outbound.unsent_bytes if outbound is not None else 0
        return self.buffered_bytes + unsent + self.recording_bytes

    def close_pumps(self) -> None:
        for follower in list(self.pumps.values()):
            follower.cancel()
        self.pumps.clear()


class SessionRegistry:
    """Sessions by id; expires those detached longer than the resume window."""

    def __init__(self, limits: SessionLimits, unsent: UnsentLedger | None = None) -> None:
        self.limits = limits
        self.journal: FrameJournal | None = None  # set in a cluster (`_session_journal`)
        # What every transport's outbox holds together (`[limits] max_unsent_bytes`).
        self.unsent = unsent or UnsentLedger(sys.maxsize)
        self._sessions: dict[str, Session] = {}
        self._by_principal: dict[str, set[Session]] = {}  # for the quotas (`_quotas`)
        self._sweeper: asyncio.Task[None] | None = None

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
        del self._sessions[session.session_id]
        held = self._by_principal.get(session.principal.name)
        if held is not None:
            held.discard(session)
            if not held:
                del self._by_principal[session.principal.name]

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
            session.close_pumps()
            outbound = session.outbound
            if outbound is not None:
                session.detach(outbound)
                outbound.close()
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
        if session.principal.name != principal.name:
            raise Unauthenticated("the resume token or principal does not match the session")
        session.check_token(token)
        return session

    def discard(self, session: Session) -> None:
        """Forget a session at once (a clean close with nothing left to resume)."""
        if self._sessions.get(session.session_id) is session:
            self._release(session)
            session.close_pumps()

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
        self._sweeper = asyncio.create_task(self._sweep(on_expire), name="arcp-session-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for session in self._sessions.values():
            session.close_pumps()
            outbound = session.outbound
            if outbound is not None:
                session.detach(outbound)
                outbound.close()

    async def _sweep(self, on_expire: Callable[[Session], None]) -> None:
        interval = max(0.2, min(5.0, self.limits.resume_window_sec / 10))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                gone = session.detached_at
                if gone is not None and now - gone > self.limits.resume_window_sec:
                    self._release(session)
                    session.close_pumps()
                    on_expire(session)


_TRIM_EVERY = 1024  # evictions between trims of a session's recorded frames


RETIRED = 0.0  # `previous_until` once the successor token was used


def check_resume_token(
    session_id: str,
    presented: bytes,
    current: bytes,
    previous: bytes,
    previous_until: float,
    now: float,
) -> None:
    """Whether a token (its digest, `presented`) may resume a session (§6.3, DESIGN.md
    "Resume tokens"): the current token, or the one the last resume was made with while
    it is valid (until `previous_until`, on the clock `now` is read from). A previous
    token presented after its successor was used may have been stolen: refused, and
    logged at WARNING for the operator. Raises `Unauthenticated`."""
    if current and hmac.compare_digest(presented, current):
        return
    if previous and hmac.compare_digest(presented, previous):
        if previous_until == RETIRED:
            log.warning(
                "session %s: a resume token was presented after its successor was used;"
                " refused (possible theft of the token, §14)",
                session_id,
            )
        elif now < previous_until:
            return
    raise Unauthenticated("the resume token or principal does not match the session")


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
