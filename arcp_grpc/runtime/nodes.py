"""The runtime's nodes as `JobService.ListNodes` reports them (the console's Nodes page).

A cluster's nodes are the store's `nodes` table, each with its running jobs counted
there (DESIGN.md, scale-out); a node alone is its own only node, its running jobs
counted in its job table. Counts only: which principal's jobs run where is not shown.
"""

from __future__ import annotations

from arcp_grpc.store import ClusterStore, NodeRow
from arcp_grpc.v1 import job_service_pb2

__all__ = ["list_nodes"]

_STATES = {
    "alive": job_service_pb2.NODE_STATE_ALIVE,
    "left": job_service_pb2.NODE_STATE_LEFT,
    "dead": job_service_pb2.NODE_STATE_DEAD,
}


async def list_nodes(
    cluster: ClusterStore | None, label: str, running_here: int
) -> list[job_service_pb2.NodeInfo]:
    """Every node, oldest first; `label` and `running_here` describe this node when it
    shares its store with none."""
    if cluster is None:
        alone = NodeRow(label, label, "alive", 0.0, running_here)
        return [_info(alone, answering=True)]
    return [_info(row, answering=row.node_id == cluster.node_id) for row in await cluster.nodes()]


def _info(row: NodeRow, *, answering: bool) -> job_service_pb2.NodeInfo:
    info = job_service_pb2.NodeInfo(
        node_id=row.node_id,
        label=row.label,
        state=_STATES.get(row.state, job_service_pb2.NODE_STATE_UNSPECIFIED),
        running_jobs=row.running_jobs,
        answering=answering,
    )
    info.since_heartbeat.FromMilliseconds(round(row.silent_sec * 1000))
    return info
