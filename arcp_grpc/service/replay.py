"""A session's replay buffer: the sequenced frames a resume may still need (§6.3, §6.5).

Frames are kept in `event_seq` order until the client acks them (§6.5) or the
buffer limits evict the oldest; a resume replays exactly what follows the
client's `last_event_seq`, terminal frames included (§8.3), or fails with
RESUME_WINDOW_EXPIRED when some of that is gone. Numbering happens here too
(`next_seq`), so `event_seq` is strictly increasing and gap-free across all of
a session's jobs.
"""

from __future__ import annotations

from collections import deque

from arcp_grpc.errors import ResumeWindowExpired

__all__ = ["TRIM_EVERY", "ReplayBuffer"]

TRIM_EVERY = 1024  # evictions between trims of a session's recorded frames (a cluster's)


class ReplayBuffer:
    """Sequenced frames from the oldest unacked one; `next_seq` numbers the next."""

    __slots__ = ("acked", "bytes", "evicted", "frames", "max_bytes", "max_frames", "next_seq")

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.max_frames = max_frames  # `SessionLimits.max_buffered_frames`
        self.max_bytes = max_bytes  # `SessionLimits.max_buffered_bytes`
        self.next_seq = 1
        self.frames: deque[tuple[int, bytes]] = deque()
        self.bytes = 0
        self.acked = 0
        self.evicted = 0  # frames evicted since the last trim mark

    @property
    def last_seq(self) -> int:
        """The `event_seq` of the newest frame (0 before the first)."""
        return self.next_seq - 1

    def lag(self) -> int:
        """Frames numbered and not yet acked (§6.5)."""
        return self.next_seq - 1 - self.acked

    def keep(self, seq: int, frame: bytes) -> int:
        """Keep `frame`, numbered `seq` (which was `next_seq`), evicting as the limits
        force (§6.5; the newest frame always stays). A client that never acks (the
        published SDK's default) keeps the buffer full: then one frame goes out for each
        that comes in. Returns, every `TRIM_EVERY` evictions, the `event_seq` up to which
        frames are gone (for a cluster's store), else 0."""
        self.next_seq = seq + 1
        frames = self.frames
        frames.append((seq, frame))
        self.bytes += len(frame)
        while len(frames) > 1 and (len(frames) > self.max_frames or self.bytes > self.max_bytes):
            self.bytes -= len(frames.popleft()[1])
            self.evicted += 1
        if self.evicted < TRIM_EVERY:
            return 0
        self.evicted = 0
        return frames[0][0] - 1

    def ack(self, last_processed_seq: int) -> None:
        """§6.5: free the frames the client has processed."""
        if last_processed_seq > self.acked:
            self.acked = min(last_processed_seq, self.next_seq - 1)
        frames = self.frames
        while frames and frames[0][0] <= self.acked:
            self.bytes -= len(frames.popleft()[1])

    def after(self, last_event_seq: int, session_id: str) -> list[bytes]:
        """Frames with `event_seq > last_event_seq`, or RESUME_WINDOW_EXPIRED (§6.3)."""
        if last_event_seq >= self.next_seq - 1:
            return []
        first = self.frames[0][0] if self.frames else self.next_seq
        if last_event_seq + 1 < first:
            raise ResumeWindowExpired(
                f"events after {last_event_seq} are no longer buffered (oldest is {first})",
                details={"session_id": session_id},
            )
        return [frame for seq, frame in self.frames if seq > last_event_seq]

    def restore(self, frames: list[tuple[int, bytes]], last_seq: int, acked: int) -> None:
        """Refill an empty buffer from a cluster's store: `frames` the recorded ones the
        client has not acked (`acked`), `last_seq` the session's newest."""
        self.next_seq = last_seq + 1
        self.acked = acked
        for seq, frame in frames:
            self.frames.append((seq, frame))
            self.bytes += len(frame)
