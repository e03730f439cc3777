"""The runtime's own lifecycle: start (key check, recovery, revocation sweep, cluster
membership), the background loops (purge, revocation retries, membership; each under
the supervisor, `arcp_grpc.runtime.supervisor`), and stop.

What a previous process or a dead node left running is ended, never re-run behind
a client's back (agents spend money): with a retryable INTERNAL_ERROR, its
credentials revoked after (§9.8.2, §14). A node the cluster declared dead stops
its jobs and refuses new work (`arcp_grpc.runtime.cluster`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence

from arcp_grpc.base.stamps import stamp
from arcp_grpc.errors import Cancelled, InternalError
from arcp_grpc.runtime.admission import Admission
from arcp_grpc.runtime.cluster import ClusterLimits, ClusterMember
from arcp_grpc.runtime.events import JobEvents
from arcp_grpc.runtime.executor import Executor
from arcp_grpc.runtime.job_credentials import JobCredentials
from arcp_grpc.runtime.node_lease import NodeLease
from arcp_grpc.runtime.outcome import failure
from arcp_grpc.runtime.parts import RuntimeParts
from arcp_grpc.runtime.supervisor import Supervisor
from arcp_grpc.runtime.worker_peers import WorkerPeers
from arcp_grpc.store import JobRow, StoreUnavailable
from arcp_grpc.v1 import jobs_pb2

__all__ = ["Housekeeping"]

log = logging.getLogger("arcp_grpc.runtime")

_PURGE_BATCH = 200  # jobs per purge transaction: short, so other writes interleave
_PURGE_ROUNDS = 500  # batches per round at most; the next round goes on
_KEY_CHECK = b"arcp-grpc store key check"
_STORE_STOP_SEC = 10.0  # a stopping node waits this long for its last writes


class Housekeeping:
    """Starts and stops the runtime, recovers, purges, sweeps, and keeps membership."""

    def __init__(
        self,
        parts: RuntimeParts,
        cluster_limits: ClusterLimits,
        *,
        events: JobEvents,
        admission: Admission,
        executor: Executor,
        credentials: JobCredentials,
        lease: NodeLease,
        on_fenced: Callable[[], None],
        worker_peers: WorkerPeers | None = None,
    ) -> None:
        self._parts = parts
        self._cluster_limits = cluster_limits
        self._events = events
        self._admission = admission
        self._executor = executor
        self._credentials = credentials
        self._lease = lease
        self._on_fenced = on_fenced
        self._worker_peers = worker_peers  # set in a cluster: workers on every node
        self._loops = Supervisor()

    async def start(self) -> None:
        """Recover from a previous process, then serve (§9.8.2 revocation retries)."""
        self._parts.store.set_commit_listener(self._events.on_commit)
        await self._check_key()
        await self._recover_interrupted()
        await self._credentials.sweep()
        limits = self._parts.limits
        windows = [limits.idempotency_ttl_sec, limits.retention_sec or math.inf]
        self._loops.every("arcp-store-purge", min(60.0, max(1.0, min(windows) / 4)), self._purge)
        if self._parts.ledger is not None:  # retry the provisioner's revocations
            self._loops.every("arcp-credential-sweep", limits.revoke_retry_sec, self._revoke)
        cluster = self._parts.cluster
        if cluster is not None:
            cluster.set_cancel_listener(self._cancel_here)
            member = ClusterMember(
                cluster,
                self._cluster_limits,
                end_orphans=self._end_orphans,
                cancel_local=self._cancel_here,
                fenced=self._fenced,
                lease=self._lease,
            )
            # A first heartbeat now: the lease starts from one, not from the node's
            # registration at open (which recovery and the key check came after).
            await member.renew()
            # Never waits longer than a heartbeat after a failure: a node that beats late
            # is declared dead by its peers.
            beat = self._cluster_limits.heartbeat_sec
            self._loops.every("arcp-cluster-member", beat, member.beat, backoff_limit=beat)
            if self._worker_peers is not None:
                self._worker_peers.start()
                self._loops.every(
                    "arcp-worker-peers", beat, self._worker_peers.round, backoff_limit=beat
                )

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, give running jobs `grace` seconds, then end the rest."""
        self._admission.close()
        grace = self._parts.limits.shutdown_grace_sec if grace is None else grace
        active = self._parts.table.active
        running = list(active.values())
        if running:
            waits = [asyncio.ensure_future(job.done.wait()) for job in running]
            _, pending = await asyncio.wait(waits, timeout=grace)
            for wait in pending:
                wait.cancel()
        for job in list(active.values()):
            # A resubmit with the same key would replay this very outcome (§7.2).
            job.stop(
                InternalError(
                    "the runtime shut down before the job finished; to run it again, "
                    "resubmit with a new idempotency key"
                )
            )
        ending = [asyncio.ensure_future(job.done.wait()) for job in active.values()]
        if ending:  # 5 s for them all, not each: their ends may wait for a store that is down
            _, late = await asyncio.wait(ending, timeout=5.0)
            for wait in late:
                wait.cancel()
        await self._loops.stop()  # ended, not only told to end: a stopped runtime leaves no task
        if self._executor.background:
            await asyncio.wait(self._executor.background, timeout=5.0)
        try:
            async with asyncio.timeout(_STORE_STOP_SEC):  # a store that is down (issue 20)
                await self._parts.store.flush()
                if self._parts.cluster is not None:
                    with contextlib.suppress(InternalError):
                        await self._parts.cluster.leave()
        except TimeoutError:
            log.error("the store did not answer within %g s while stopping", _STORE_STOP_SEC)

    async def _check_key(self) -> None:
        """Refuse a store whose sealed rows this node's key cannot open (a cluster's
        nodes must share one key): better no start than unreadable replays."""
        stored = await self._parts.store.key_check(self._parts.box.seal(_KEY_CHECK, _KEY_CHECK))
        try:
            self._parts.box.open(stored, _KEY_CHECK)
        except InternalError:
            raise StoreUnavailable(
                "the store's sealed rows were written with another key: give every node the"
                " same store key (store.key_file, or core.store_key)"
            ) from None

    # -- recovery ------------------------------------------------------------------

    async def _recover_interrupted(self) -> None:
        """Jobs a dead process left running end with a retryable INTERNAL_ERROR."""
        for row in await self._parts.store.interrupted_jobs():
            await self._end_interrupted(row, "the runtime stopped while the job was running")
            log.warning(
                "job %s was interrupted by a restart; it ended with INTERNAL_ERROR", row.job_id
            )

    async def _end_orphans(self, node: str, rows: Sequence[JobRow]) -> None:
        """End the running jobs of a node declared dead (now this node's to end), then
        revoke their credentials (§9.8.2, §14)."""
        for row in rows:
            await self._end_interrupted(
                row, f"the node running the job ({node}) stopped; resubmit with a new key"
            )
            log.warning("job %s of dead node %s ended with INTERNAL_ERROR", row.job_id, node)
        if rows:
            await self._credentials.sweep()

    def _cancel_here(self, job_id: str, reason: str) -> None:
        """Another node relayed a cancel for a job running here (§7.4)."""
        job = self._parts.table.active.get(job_id)
        if job is not None:
            job.stop(Cancelled(reason or "cancelled by the submitter"))

    def _fenced(self) -> None:
        """This node was declared dead: its jobs were ended elsewhere, so stop them here
        (their late end is not recorded) and refuse new work."""
        self._admission.fence()
        for job in list(self._parts.table.active.values()):
            job.stop(InternalError("this node was declared dead by the cluster"))
        self._on_fenced()

    async def _end_interrupted(self, row: JobRow, message: str) -> None:
        """Record the end of a job no process runs any more: a retryable INTERNAL_ERROR."""
        outcome = failure(row.job_id, InternalError(message))
        summary = jobs_pb2.JobSummary.FromString(row.summary)
        summary.status = jobs_pb2.JOB_STATUS_ERROR
        stamp(summary.completed_at)
        last_seq = await self._parts.store.last_seq(row.job_id)
        summary.last_event_seq = last_seq
        await self._parts.store.finish_job(
            row.job_id,
            status=jobs_pb2.JOB_STATUS_ERROR,
            outcome=outcome.SerializeToString(deterministic=True),
            summary=summary.SerializeToString(deterministic=True),
            completed_at=time.time(),
            last_seq=last_seq,
        )

    # -- background loops ----------------------------------------------------------

    async def _purge(self) -> bool:
        """Expired idempotency claims, and finished jobs past the retention window."""
        purged = await self._parts.store.purge_claims(time.time())
        if purged:
            log.info("purged %d expired idempotency keys", purged)
        if self._parts.limits.retention_sec:
            await self.purge_finished(time.time() - self._parts.limits.retention_sec)
        return True

    async def purge_finished(self, finished_before: float) -> int:
        """Delete jobs that ended before `finished_before` with their events, a batch
        per transaction, then give the space back; returns how many (issue 15)."""
        total = 0
        for _ in range(_PURGE_ROUNDS):
            purged = await self._parts.store.purge_jobs(finished_before, _PURGE_BATCH)
            total += purged
            if purged < _PURGE_BATCH:
                break
        if total:
            self._parts.table.forget_recent(finished_before)
            await self._parts.store.reclaim()
            log.info("purged %d jobs finished before the retention window", total)
        return total

    async def _revoke(self) -> bool:
        """Retry due revocations while the process runs, not only at its next start
        (§14): an upstream that was down comes back, and nobody restarts for it."""
        await self._credentials.sweep()
        return True
