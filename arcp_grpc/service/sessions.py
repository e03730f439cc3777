"""ARCP sessions in the core (§6): one session, composed of its parts.

A session outlives its transport. While a client is connected, frames go to
its outbound queue (`arcp_grpc.service.outbox`); while it is away (within the
resume window) its followers keep delivering and its replay buffer keeps
numbering and holding frames, so a resume replays exactly what was missed,
terminal frames included (§6.3, §8.3). `event_seq` is assigned in one place
(`Session.deliver`, through `ReplayBuffer.keep`), on the event loop, so it is
strictly increasing and gap-free across all of a session's jobs.

A `Session` is its identity (id, principal, negotiated features), its
transport, and three parts: the `ReplayBuffer` (`arcp_grpc.service.replay`),
the `ResumeTokens` (`arcp_grpc.service.resume_tokens`) and the `Followers` of
its jobs. `Session.release` is the one way a node lets go of it.

In a cluster a session also lives in the store (`arcp_grpc.service.journal`):
each sequenced frame is recorded there before it is sent (`FrameJournal`),
so any node can take the session over and replay what the client missed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from arcp_grpc.auth import Principal
from arcp_grpc.base.ids import new_ulid
from arcp_grpc.base.wire import length_delimited, varint
from arcp_grpc.runtime import Disclosure
from arcp_grpc.service.outbox import Outbox
from arcp_grpc.service.replay import ReplayBuffer
from arcp_grpc.service.resume_tokens import ResumeTokens

__all__ = [
    "Follower",
    "Followers",
    "FrameHeader",
    "FrameJournal",
    "Session",
    "SessionLimits",
    "frame_bytes",
]

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


class Followers:
    """What follows each job a session follows: the jobs it submitted, those it
    subscribed to (§7.6) and those a replay goes on with (§7.2); one per job."""

    __slots__ = ("_by_job",)

    def __init__(self) -> None:
        self._by_job: dict[str, Follower] = {}

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._by_job

    def __bool__(self) -> bool:
        return bool(self._by_job)

    def add(self, job_id: str, follower: Follower) -> None:
        """`follower` follows `job_id` from now on, in place of any before it."""
        self._by_job[job_id] = follower

    def forget(self, job_id: str, follower: Follower) -> None:
        """`follower` stopped by itself (its job ended, or a pump took over)."""
        if self._by_job.get(job_id) is follower:
            del self._by_job[job_id]

    def stop(self, job_id: str) -> bool:
        """Stop following `job_id` (an unsubscribe); False if nothing followed it."""
        follower = self._by_job.pop(job_id, None)
        if follower is None:
            return False
        follower.cancel()
        return True

    def close(self) -> None:
        followers = list(self._by_job.values())
        self._by_job.clear()
        for follower in followers:
            follower.cancel()


class Session:
    """One ARCP session of one principal."""

    def __init__(
        self,
        session_id: str,
        principal: Principal,
        features: frozenset[str],
        limits: SessionLimits,
        journal: FrameJournal | None = None,
    ) -> None:
        self.session_id = session_id
        self.principal = principal
        self.features = features
        # What its client may see (§6.2, §14). The transport's verdict is in `features`:
        # `provisioned_credentials` is negotiated, and a resume accepted, only where
        # credential values may flow (`arcp_grpc.service.lifecycle`).
        self.shown = Disclosure(principal.name, features)
        self.limits = limits
        self.replay = ReplayBuffer(limits.max_buffered_frames, limits.max_buffered_bytes)
        self.tokens = ResumeTokens()
        self.followers = Followers()
        # Its jobs still running: the ones it may cancel (§7.4) and not unsubscribe from.
        self.submitted: set[str] = set()
        self.back_pressure_signalled = False  # §6.5: until the lag halves
        # The transport: at most one attached; `detached_at` (monotonic) starts the window.
        self.outbound: Outbox | None = None
        self.detached_at: float | None = None
        self.attached = asyncio.Event()
        self.last_inbound = self.last_outbound = time.monotonic()
        self.journal = journal  # set in a cluster: frames are recorded, then sent
        self.recording_bytes = 0  # of frames handed to the journal and not yet recorded
        self._recording: asyncio.Future[None] | None = None

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
        replay = self.replay
        seq = replay.next_seq
        frame = frame_bytes(header, field_number, body, seq)
        trimmed = replay.keep(seq, frame)
        journal = self.journal
        if journal is None:
            self.send(frame)
            return seq
        if trimmed:
            journal.trimmed(self, trimmed)
        self.recording_bytes += len(frame)
        journal.record(self, seq, header.job_id, job_seq, terminal, frame)
        return seq

    def send(self, frame: bytes) -> None:
        """Send an unsequenced frame (replies, pings) if a transport is attached."""
        if self.outbound is not None:
            self.outbound.put_nowait(frame)
            self.last_outbound = time.monotonic()

    def lag(self) -> int:
        """`ReplayBuffer.lag`, read inline: delivery asks once per event (§6.5)."""
        replay = self.replay
        return replay.next_seq - 1 - replay.acked

    def ack(self, last_processed_seq: int) -> None:
        """§6.5: free buffered frames the client has processed."""
        replay = self.replay
        replay.ack(last_processed_seq)
        if replay.lag() < self.limits.back_pressure_lag // 2:
            self.back_pressure_signalled = False
        if self.journal is not None:
            self.journal.trimmed(self, replay.acked)

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

    def release(self) -> None:
        """This node lets go of the session (it expired, closed, or another node holds
        it now): its followers stop and its transport, if any, ends."""
        self.followers.close()
        outbound = self.outbound
        if outbound is not None:
            self.detach(outbound)
            outbound.close()

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

    def held_bytes(self) -> int:
        """What this session makes the core hold (the quota's measure): its buffer,
        plus what waits for its transport or the store. Sequenced frames waiting to be
        sent are counted twice, so this is an upper bound."""
        outbound = self.outbound
        unsent = outbound.unsent_bytes if outbound is not None else 0
        return self.replay.bytes + unsent + self.recording_bytes
