"""Where a job's events go and how they come back: sealed if secret, queued for the
store's group commit, handed to the job's feed once committed (§8.3: events are
durable before delivery), and opened again for followers reading history.

Emitters slow down here too: while the store's write queue is long or heavy,
`backpressure` makes them wait for a flush (`RuntimeLimits`).
"""

from __future__ import annotations

from collections.abc import Sequence

from arcp_grpc.errors import InternalError
from arcp_grpc.runtime.parts import RuntimeParts
from arcp_grpc.store import EventRow, StoreFailed

__all__ = ["JobEvents"]


class JobEvents:
    """The event path between the jobs, the store and the jobs' feeds."""

    def __init__(self, parts: RuntimeParts) -> None:
        self._parts = parts

    def append(self, job_id: str, seq: int, blob: bytes, *, secret: bool) -> None:
        """Queue one serialised event; a secret one is sealed to its job (§9.8.2). An
        agent emits through here: a failed store reaches it as the ARCP error its API
        raises (INTERNAL_ERROR, §12), which ends the job if the agent lets it through."""
        if secret:
            blob = self._parts.box.seal(blob, job_id.encode())
        try:
            self._parts.store.append_event(EventRow(job_id, seq, blob, secret))
        except StoreFailed as failed:
            raise InternalError(failed.message) from None

    def plain(self, row: EventRow) -> bytes:
        """A stored event's serialised `JobEvent`, opened if it was sealed."""
        return self._parts.box.open(row.blob, row.job_id.encode()) if row.sealed else row.blob

    async def backpressure(self) -> None:
        """Make emitters wait while the store's write queue is long or heavy."""
        writes, event_bytes = self._parts.store.write_backlog()
        limits = self._parts.limits
        if writes > limits.max_pending_writes or event_bytes > limits.max_pending_event_bytes:
            await self._parts.store.flush()

    def on_commit(self, events: Sequence[EventRow]) -> None:
        """The store committed `events`: the running jobs' followers may see them now."""
        self._parts.observer.events_committed(len(events))
        active = self._parts.table.active
        committed: dict[str, list[tuple[int, bytes]]] = {}
        for row in events:
            if row.job_id in active:
                committed.setdefault(row.job_id, []).append((row.seq, self.plain(row)))
        for job_id, rows in committed.items():
            active[job_id].feed.on_commit(rows)
