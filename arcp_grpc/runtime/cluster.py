"""A node's part in a cluster: heartbeat, takeover of dead nodes, cancel requests.

Every `heartbeat_sec` the node records itself alive, declares dead any node
silent for `node_timeout_sec` (taking its running jobs, which the runtime
then ends with a retryable INTERNAL_ERROR: nothing is re-run behind a
client's back, agents spend money), and picks up cancel requests whose
notification it may have missed. The database clock decides silence, so
the nodes' clocks need not agree.

A node that finds itself declared dead (it was paused, or cut off from the
database, longer than the timeout) must not run its jobs on: their end was
already recorded by a survivor. It stops them, fences its lease (every send of
its transports gives up, `arcp_grpc.runtime.node_lease`) and reports itself
failed. Each successful heartbeat renews that lease from the moment it started.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from arcp_grpc.runtime.node_lease import NodeLease
from arcp_grpc.store import ClusterStore, JobRow

__all__ = ["ClusterLimits", "ClusterMember"]

log = logging.getLogger("arcp_grpc.cluster")


@dataclass(frozen=True, slots=True)
class ClusterLimits:
    """Cluster knobs; each is a documented configuration setting (`[cluster]`)."""

    node_timeout_sec: float = 15.0  # silent this long: declared dead, its jobs ended
    heartbeat_sec: float = 3.0  # how often a node beats, takes over and polls cancels
    node_name: str = ""  # a label in logs and `nodes` (default: host:pid)


@dataclass(frozen=True, slots=True)
class ClusterMember:
    """One node's membership round (`beat`, run every `heartbeat_sec` by the runtime's
    supervisor); the runtime supplies what to do."""

    store: ClusterStore
    limits: ClusterLimits
    end_orphans: Callable[[str, Sequence[JobRow]], Awaitable[None]]
    cancel_local: Callable[[str, str], None]
    fenced: Callable[[], None]
    lease: NodeLease

    async def beat(self) -> bool:
        """One round: heartbeat, take over dead nodes, pick up cancel requests. False
        once this node was declared dead (it is fenced; there is nothing more to do).
        A failure propagates to the supervisor, which logs it and retries."""
        if not await self.renew():
            return False
        for node, rows in await self.store.take_over(self.limits.node_timeout_sec):
            log.warning(
                "node %s stopped heartbeating; its running jobs are now ended (%d)", node, len(rows)
            )
            await self.end_orphans(node, rows)
        for job_id, reason in await self.store.cancel_requests():
            self.cancel_local(job_id, reason)
        return True

    async def renew(self) -> bool:
        """Heartbeat: renew the lease from this moment, or fence this node (False) once
        the cluster declared it dead."""
        started = time.monotonic()  # before the write: the lease ends before peers judge
        if await self.store.heartbeat():
            self.lease.renew(started)
            return True
        log.critical(
            "this node (%s) was declared dead by the cluster: it was silent for"
            " more than %g s; its jobs were ended elsewhere. Restart it to rejoin.",
            self.store.node_id,
            self.limits.node_timeout_sec,
        )
        self.lease.fence()
        self.fenced()
        return False
