"""A running job's credentials after acceptance: rotation, what a replay must add to
the original acceptance, and the sweep that revokes whatever is due (§9.8.2, §14).

A rotation is an event like any other, but secret: the `credential_rotated` status
carries the new value, so it is stored sealed and shown to no one but the
submitter while the job runs (DESIGN.md, "Replay after a rotation").
"""

from __future__ import annotations

import logging

from arcp_grpc.errors import InvalidRequest
from arcp_grpc.runtime.events import JobEvents
from arcp_grpc.runtime.job import ActiveJob
from arcp_grpc.runtime.parts import RuntimeParts
from arcp_grpc.v1 import events_pb2, lease_pb2

__all__ = ["JobCredentials", "is_rotation", "may_be_rotation"]

log = logging.getLogger("arcp_grpc.runtime")

_ROTATION_MARK = b"credential_rotated"  # in the bytes of every rotation event
_ROTATION_PAGE = 1000  # events read at once when a replay looks for rotations


def may_be_rotation(blob: bytes) -> bool:
    """Whether a serialised event may be a `credential_rotated` one: a test on its bytes,
    so the callers that look at every event parse only the rare candidates."""
    return _ROTATION_MARK in blob


def is_rotation(blob: bytes) -> bool:
    """A `credential_rotated` status event (§9.8.2): it carries a credential value."""
    if _ROTATION_MARK not in blob:
        return False
    event = events_pb2.JobEvent.FromString(blob)
    return event.WhichOneof("body") == "status" and event.status.phase == "credential_rotated"


class JobCredentials:
    """Rotation, replayed rotations and revocation sweeps for this node's jobs."""

    def __init__(self, parts: RuntimeParts, events: JobEvents) -> None:
        self._parts = parts
        self._events = events

    async def rotate(self, job: ActiveJob, credential_id: str) -> lease_pb2.Credential:
        """Re-issue a credential; emits `status` `credential_rotated` (§9.8.2)."""
        ledger = self._parts.ledger
        if ledger is None:
            raise InvalidRequest("no credential provisioner is configured")
        new = await ledger.rotate(job.job_id, job.credentials, credential_id)
        job.emit(
            "status",
            events_pb2.StatusEvent(phase="credential_rotated", credential=new),
            secret=True,
        )
        return new

    async def rotations(self, job_id: str, upto: int) -> list[tuple[int, bytes]]:
        """The `credential_rotated` events of a running job up to `job_seq` `upto`: what
        a replayed `job.accepted` (the original bytes, §7.2) is followed by, so the
        caller converges on the live values (DESIGN.md, "Replay after a rotation").
        None once the job ended: its values are revoked and no surface shows them."""
        job = self._parts.table.known(job_id)
        if job is not None and job.final is not None:
            return []
        if job is None:
            row = await self._parts.store.get_job(job_id)
            if row is None or row.completed_at is not None:
                return []
        store = self._parts.store
        found: list[tuple[int, bytes]] = []
        after = 0
        while after < upto:  # a scan, on replays only, in bounded pages
            page = await store.read_events(job_id, after, min(_ROTATION_PAGE, upto - after))
            if not page:
                break
            for event in page:
                if event.sealed:  # only secret events are sealed: rotations (§9.8.2)
                    blob = self._events.plain(event)
                    if is_rotation(blob):
                        found.append((event.seq, blob))
            after = page[-1].seq
        return found

    async def sweep(self) -> None:
        """Revoke due credentials: a previous process's, retired ones, ones whose
        revocation failed (§14 revocation reliability)."""
        ledger = self._parts.ledger
        if ledger is not None:
            await ledger.sweep(self._parts.table.active)
            return
        left = await self._parts.store.live_credentials()
        if left:
            log.error(
                "%d credentials are still live and no provisioner is configured to revoke them",
                len(left),
            )
