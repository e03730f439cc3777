"""Remote workers across a cluster (issue 23, docs/workers.md): a worker connected to
node B runs jobs submitted through node A.

Every node publishes the workers it holds in the shared store at each heartbeat and
whenever one comes or goes, and reads the other live nodes' (`round`): their agents
join this node's inventory, and admission hands a job for an agent only another node's
workers host to that node (`WorkerDirectory.peer_for`): the job is created owned by it,
with its input, in one transaction (`arcp_grpc.store.Handoff`).

The node holding the worker's stream owns the job for fencing: told on `arcp_handoff`
(or finding it at its next round when the notification was lost), it claims the job
once, conditionally on being alive and still its owner (issue 20), makes the job again
from its recorded acceptance and runs it like its own: the relay, the lease, budget
and expiry checks, its events and its one end are this node's. The submitting node's
session and watchers follow it as any job of another node (the store's changes), a
cancel reaches it as a durable request, and if the owner dies a survivor ends it
once, retryable, as every job of a dead node.
"""

from __future__ import annotations

import logging

from google.protobuf import struct_pb2

from arcp_grpc.base.json_values import value_to_py
from arcp_grpc.errors import Cancelled
from arcp_grpc.runtime.executor import Executor
from arcp_grpc.runtime.factory import JobFactory
from arcp_grpc.runtime.parts import RuntimeParts
from arcp_grpc.store import ClusterStore
from arcp_grpc.v1 import job_service_pb2, jobs_pb2

__all__ = ["WorkerPeers"]

log = logging.getLogger("arcp_grpc.workers")


class WorkerPeers:
    """This node's side of the workers of a cluster: publish, learn, adopt handed jobs."""

    def __init__(
        self, parts: RuntimeParts, cluster: ClusterStore, factory: JobFactory, executor: Executor
    ) -> None:
        self._parts = parts
        self._cluster = cluster
        self._factory = factory
        self._executor = executor

    def start(self) -> None:
        """Listen for handed jobs and publish the workers as they come and go."""
        self._cluster.set_handoff_listener(self._handed)
        self._parts.workers.on_change = lambda: self._executor.spawn(self._publish())

    async def round(self) -> bool:
        """Every heartbeat: publish this node's workers (their running jobs change),
        learn the other nodes', and claim handed jobs whose notification was lost."""
        await self._publish()
        peers: list[jobs_pb2.WorkerInfo] = []
        for _node, listing, _updated in await self._cluster.peer_workers():
            peers.extend(job_service_pb2.ListWorkersResponse.FromString(listing).workers)
        self._parts.workers.peers = peers
        for job_id in await self._cluster.handoffs():
            await self._adopt(job_id)
        return True

    async def _publish(self) -> None:
        listing = job_service_pb2.ListWorkersResponse(workers=self._parts.workers.listing())
        await self._cluster.publish_workers(listing.SerializeToString(deterministic=True))

    def _handed(self, job_id: str) -> None:
        self._executor.spawn(self._adopt(job_id))

    async def _adopt(self, job_id: str) -> None:
        """Claim a job handed to this node and run it, once."""
        if job_id in self._parts.table.active:
            return
        handed = await self._cluster.claim_handoff(job_id)
        if handed is None:  # claimed already, or taken over: not this node's any more
            return
        job = self._factory.adopt(handed.job, handed.max_runtime_sec)
        value = struct_pb2.Value.FromString(self._parts.box.open(handed.input, job_id.encode()))
        self._parts.table.active[job_id] = job
        self._parts.table.count(job, 1)
        self._executor.launch(job, value_to_py(value) if value.WhichOneof("kind") else None)
        if handed.cancel_reason is not None:  # asked before this node claimed it (§7.4)
            job.stop(Cancelled(handed.cancel_reason or "cancelled by the submitter"))
        log.info("job %s was handed to this node, whose worker hosts %s", job_id, job.agent.ref)
