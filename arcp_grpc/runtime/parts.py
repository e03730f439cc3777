"""What the runtime's parts share, built once by `JobRuntime` and handed to each.

Every part of the runtime (admission, the factory, the executor, the queries,
credentials, housekeeping) works on the same store, secret box, agents, limits
and in-memory job table; this names that common ground once instead of in each
constructor. What a part needs beyond it (another part) it is given by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from arcp_grpc.agents import AgentRegistry, RegisteredAgent
from arcp_grpc.base.agentref import AgentRef
from arcp_grpc.errors import AgentNotAvailable
from arcp_grpc.runtime.credential_ledger import CredentialLedger
from arcp_grpc.runtime.limits import RuntimeLimits
from arcp_grpc.runtime.observe import RuntimeObserver
from arcp_grpc.runtime.table import JobTable
from arcp_grpc.runtime.workers import WorkerDirectory
from arcp_grpc.store import ClusterStore, Store
from arcp_grpc.store.secretbox import SecretBox
from arcp_grpc.v1 import jobs_pb2

__all__ = ["RuntimeParts"]


@dataclass(frozen=True, slots=True)
class RuntimeParts:
    """The collaborators every part of the runtime works with."""

    store: Store
    box: SecretBox
    registry: AgentRegistry
    limits: RuntimeLimits
    table: JobTable
    ledger: CredentialLedger | None  # None: no credential provisioner is configured
    cluster: ClusterStore | None  # set when other nodes share the store
    observer: RuntimeObserver  # metrics hooks, given at construction
    workers: WorkerDirectory  # remote workers and the agents they host (issue 23)

    def resolve(self, ref: AgentRef) -> RegisteredAgent:
        """The agent `ref` names: in-process first, then one a remote worker hosts (§7.5)."""
        try:
            return self.registry.resolve(ref)
        except AgentNotAvailable:
            remote = self.workers.resolve(ref)
            if remote is None:
                raise
            return remote

    def inventory(self) -> list[jobs_pb2.AgentInfo]:
        """In-process and remote agents, by name; a name hosted in-process is that one."""
        agents = {info.name: info for info in self.workers.inventory()}
        agents.update((info.name, info) for info in self.registry.inventory())
        return [agents[name] for name in sorted(agents)]
