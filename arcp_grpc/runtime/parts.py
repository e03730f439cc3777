"""What the runtime's parts share, built once by `JobRuntime` and handed to each.

Every part of the runtime (admission, the factory, the executor, the queries,
credentials, housekeeping) works on the same store, secret box, agents, limits
and in-memory job table; this names that common ground once instead of in each
constructor. What a part needs beyond it (another part) it is given by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.runtime.credential_ledger import CredentialLedger
from arcp_grpc.runtime.limits import RuntimeLimits
from arcp_grpc.runtime.observe import RuntimeObserver
from arcp_grpc.runtime.table import JobTable
from arcp_grpc.store import ClusterStore, Store
from arcp_grpc.store.secretbox import SecretBox

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
