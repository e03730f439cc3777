"""The job runtime: the one object the services hold, a facade over its parts.

Transport-free: the gRPC JobService and the ARCP SessionService are adapters
over this class. Each concern lives in a module of its own, built here once
and handed its collaborators at construction:

- `admission`: submits, and exact idempotent replay (§7.2, the invariant);
- `factory`: making and recording a job, delegation (§9.4, §10), and what a
  running job calls back (`job.JobServices`);
- `executor`: running the agent and recording the job's one end;
- `table`: the running and recently finished jobs held in memory;
- `queries`: get, list, watch, cancel (§6.6, §7.4) and the follow loop's reads;
- `job_credentials`: rotation, replayed rotations, revocation sweeps (§9.8.2);
- `housekeeping`: start, stop, recovery, purges, cluster membership.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.auth import Principal
from arcp_grpc.credentials import CredentialProvisioner
from arcp_grpc.runtime.admission import Admission, Submission
from arcp_grpc.runtime.cluster import ClusterLimits
from arcp_grpc.runtime.credential_ledger import CredentialLedger
from arcp_grpc.runtime.disclosure import Disclosure
from arcp_grpc.runtime.events import JobEvents
from arcp_grpc.runtime.executor import Executor
from arcp_grpc.runtime.factory import JobFactory
from arcp_grpc.runtime.feed import FeedBatch, JobFeed
from arcp_grpc.runtime.housekeeping import Housekeeping
from arcp_grpc.runtime.job_credentials import JobCredentials
from arcp_grpc.runtime.limits import RuntimeLimits
from arcp_grpc.runtime.node_lease import NodeLease, lease_seconds
from arcp_grpc.runtime.nodes import list_nodes
from arcp_grpc.runtime.observe import RuntimeObserver
from arcp_grpc.runtime.parts import RuntimeParts
from arcp_grpc.runtime.queries import JobQueries
from arcp_grpc.runtime.quotas import Quotas
from arcp_grpc.runtime.table import JobTable
from arcp_grpc.runtime.worker_peers import WorkerPeers
from arcp_grpc.runtime.workers import WorkerDirectory, WorkerLimits
from arcp_grpc.store import ClusterStore, EventRow, JobChanges, JobQuery, Store
from arcp_grpc.store.secretbox import SecretBox
from arcp_grpc.v1 import job_service_pb2, jobs_pb2

__all__ = ["JobRuntime"]


class JobRuntime:
    """Runs jobs for principals; owns the store, the agents and the credentials."""

    def __init__(
        self,
        store: Store,
        registry: AgentRegistry,
        box: SecretBox,
        *,
        provisioner: CredentialProvisioner | None = None,
        limits: RuntimeLimits | None = None,
        cluster_limits: ClusterLimits | None = None,
        quotas: Quotas | None = None,
        on_fenced: Callable[[], None] | None = None,
        observer: RuntimeObserver | None = None,
        worker_limits: WorkerLimits | None = None,
    ) -> None:
        limits = limits or RuntimeLimits()
        self.quotas = quotas or Quotas()
        self.provisioner = provisioner
        # Set when other nodes share the store: jobs may run, and be cancelled, elsewhere.
        self.cluster: ClusterStore | None = store.cluster
        # Metrics hooks (arcp_grpc.process.metrics); the default measures nothing.
        self.observer = observer or RuntimeObserver()
        cluster_limits = cluster_limits or ClusterLimits()
        self._label = cluster_limits.node_name  # the server sets its HOST:PID default
        # May this node emit now? Renewed by heartbeats; a single node's never lapses.
        self.lease = (
            NodeLease(lease_seconds(cluster_limits.node_timeout_sec, cluster_limits.heartbeat_sec))
            if self.cluster is not None
            else NodeLease()
        )
        table = JobTable(limits.recent_jobs)
        # Remote workers (issue 23): the WorkerService registers them here.
        self.workers = WorkerDirectory(
            table,
            worker_limits or WorkerLimits(),
            self.cluster.node_id if self.cluster is not None else "",
        )
        parts = RuntimeParts(
            store=store,
            box=box,
            registry=registry,
            limits=limits,
            table=table,
            ledger=(
                CredentialLedger(
                    provisioner,
                    store,
                    box,
                    revoke_attempts=limits.revoke_attempts,
                    observer=self.observer,
                )
                if provisioner is not None
                else None
            ),
            cluster=self.cluster,
            observer=self.observer,
            workers=self.workers,
        )
        self._table = parts.table
        events = JobEvents(parts)
        executor = Executor(parts)
        self._credentials = JobCredentials(parts, events)
        factory = JobFactory(parts, events=events, executor=executor, rotation=self._credentials)
        self._admission = Admission(parts, quotas=self.quotas, factory=factory, executor=executor)
        self._queries = JobQueries(parts, events)
        self._housekeeping = Housekeeping(
            parts,
            cluster_limits,
            events=events,
            admission=self._admission,
            executor=executor,
            credentials=self._credentials,
            lease=self.lease,
            # Called when the cluster declared this node dead (the server stops serving).
            on_fenced=on_fenced or (lambda: None),
            worker_peers=(
                WorkerPeers(parts, self.cluster, factory, executor)
                if self.cluster is not None
                else None
            ),
        )

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Recover from a previous process, then serve (§9.8.2 revocation retries)."""
        await self._housekeeping.start()

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, give running jobs `grace` seconds, then end the rest."""
        await self._housekeeping.stop(grace)

    async def purge_finished(self, finished_before: float) -> int:
        """Delete jobs that ended before `finished_before`; returns how many (issue 15)."""
        return await self._housekeeping.purge_finished(finished_before)

    # -- submission ------------------------------------------------------------

    async def submit(
        self, principal: Principal, submit: jobs_pb2.JobSubmit, traceparent: str = ""
    ) -> Submission:
        """Accept a job, or replay the original acceptance for an identical resubmit (§7.2);
        `traceparent` is the caller's span, when it traces (§11)."""
        return await self._admission.submit(principal, submit, traceparent)

    # -- control and observation -----------------------------------------------

    async def cancel(self, principal: Principal, job_id: str, reason: str) -> None:
        """Cancel a job of `principal` (§7.4, `access.authorize_cancel`)."""
        await self._queries.cancel(principal, job_id, reason)

    async def get(
        self, shown: Disclosure, job_id: str
    ) -> tuple[jobs_pb2.JobSummary, jobs_pb2.JobOutcome | None]:
        """A job the caller may see (§6.6), as it may see it (§7.6, §14)."""
        return await self._queries.get(shown, job_id)

    async def list_jobs(
        self, shown: Disclosure, query: JobQuery
    ) -> tuple[list[jobs_pb2.JobSummary], str]:
        """The caller's own jobs, newest first (§6.6), as it may see them (§14)."""
        return await self._queries.list_jobs(shown, query)

    def watch(self, principal: Principal, job_id: str, after_seq: int) -> AsyncIterator[FeedBatch]:
        """Events after `after_seq`, then the outcome (WatchJob, subscriptions)."""
        return self._queries.watch(principal, job_id, after_seq)

    async def owner(self, job_id: str) -> str | None:
        """The principal that submitted `job_id`, or None if there is no such job."""
        return await self._queries.owner(job_id)

    async def trace_id(self, job_id: str) -> str:
        """A job's trace id (§11), from memory when the job is there."""
        return await self._queries.trace_id(job_id)

    def live_feed(self, job_id: str) -> tuple[JobFeed, str] | None:
        """The feed of a running job that has committed no event yet (else `watch`)."""
        return self._queries.live_feed(job_id)

    async def committed_seq(self, job_id: str) -> int:
        """The highest `job_seq` a follower can see now."""
        return await self._queries.committed_seq(job_id)

    def agents(self) -> list[jobs_pb2.AgentInfo]:
        return self._queries.agents()

    async def nodes(self) -> list[job_service_pb2.NodeInfo]:
        """The cluster's nodes, or this node alone (`runtime.nodes`)."""
        return await list_nodes(self.cluster, self._label, self._table.running_total)

    def workers_connected(self) -> list[jobs_pb2.WorkerInfo]:
        """The remote workers of every live node: this one's now, the others' as they
        last published (ListWorkers, issue 23)."""
        return [*self.workers.listing(), *self.workers.peers]

    async def rotations(self, job_id: str, upto: int) -> list[tuple[int, bytes]]:
        """The `credential_rotated` events a replayed acceptance is followed by (§9.8.2)."""
        return await self._credentials.rotations(job_id, upto)

    # -- EventHistory (for `follow`) ---------------------------------------------

    async def read(self, job_id: str, after_seq: int, limit: int) -> list[EventRow]:
        return await self._queries.read(job_id, after_seq, limit)

    async def outcome(self, job_id: str) -> bytes | None:
        return await self._queries.outcome(job_id)

    def feed(self, job_id: str) -> JobFeed | None:
        return self._queries.feed(job_id)

    def changes(self, job_id: str) -> JobChanges | None:
        return self._queries.changes(job_id)

    def plain(self, row: EventRow) -> bytes:
        return self._queries.plain(row)
