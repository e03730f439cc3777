"""Remote workers across a cluster (issue 23, docs/workers.md): which workers each node
holds, and jobs one node hands to another.

A worker connects to one node; a job for its agent may be submitted through any. Each
node publishes the workers it holds (`node_workers`, a listing the runtime encodes) at
every heartbeat and whenever one comes or goes; the others read those of live nodes.
A node that accepts a job for an agent only another node's workers host creates the
job owned by that node from the start, with a `job_handoffs` row holding its input, in
the creating transaction (`PostgresStore.create_job`), and notifies it on
`arcp_handoff`. The owner claims the row once, while it is alive and still owns the
job unfinished, and runs the job like its own: the node holding the worker's stream
owns the job for fencing. A handed job its owner never claims (it died first) is
taken over by a survivor like any job of a dead node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from arcp_grpc.store.postgres.connections import PostgresConnections
from arcp_grpc.store.protocol import HandedOff, JobRow
from arcp_grpc.store.rows import JOB_COLUMNS

__all__ = ["HANDOFF_CHANNEL", "PostgresHandoffs"]

HANDOFF_CHANNEL = "arcp_handoff"
_JOB_COLUMNS_OF_JOBS = ", ".join(f"j.{c.strip()}" for c in JOB_COLUMNS.split(","))


class PostgresHandoffs(PostgresConnections):
    """The workers of every node, and the handoff of jobs between nodes."""

    def set_handoff_listener(self, listener: Callable[[str], None]) -> None:
        self._on_handoff = listener

    def _on_handoff_notified(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        node, _, job_id = str(payload).partition(" ")
        if node == self.node_id:
            self._on_handoff(job_id)

    async def publish_workers(self, listing: bytes) -> None:
        await self._execute(
            "INSERT INTO node_workers (node_id, listing) VALUES ($1, $2) ON CONFLICT (node_id)"
            " DO UPDATE SET listing = excluded.listing, updated_at = now()",
            self.node_id,
            listing,
        )

    async def peer_workers(self) -> list[tuple[str, bytes, float]]:
        rows = await self._reads().fetch(
            "SELECT w.node_id, w.listing, extract(epoch FROM w.updated_at) AS updated"
            " FROM node_workers w JOIN nodes n ON n.node_id = w.node_id"
            " WHERE n.state = 'alive' AND w.node_id <> $1 ORDER BY n.started_at",
            self.node_id,
        )
        return [(r["node_id"], bytes(r["listing"]), float(r["updated"])) for r in rows]

    async def handoffs(self) -> list[str]:
        rows = await self._reads().fetch(
            "SELECT h.job_id FROM job_handoffs h JOIN jobs j ON j.job_id = h.job_id"
            " WHERE h.node_id = $1 AND j.owner_node = $1 AND j.completed_at IS NULL",
            self.node_id,
        )
        return [r["job_id"] for r in rows]

    async def claim_handoff(self, job_id: str) -> HandedOff | None:
        node = self.node_id

        async def op(conn: asyncpg.Connection) -> HandedOff | None:
            # Fenced like every write of a job (issue 20): this node alive, share-locked
            # until the commit, and still the owner (a survivor's takeover moves it).
            row = await conn.fetchrow(
                "DELETE FROM job_handoffs h USING jobs j WHERE h.job_id = $1 AND h.node_id = $2"
                " AND j.job_id = h.job_id AND j.owner_node = $2 AND j.completed_at IS NULL"
                " AND EXISTS (SELECT 1 FROM nodes WHERE node_id = $2 AND state = 'alive'"
                " FOR SHARE) RETURNING h.input, h.max_runtime_sec, j.cancel_reason,"
                f" {_JOB_COLUMNS_OF_JOBS}",
                job_id,
                node,
            )
            if row is None:
                return None
            values = list(row.values())
            return HandedOff(JobRow(*values[3:]), bytes(values[0]), values[1], values[2])

        claimed: HandedOff | None = await self._writes().write(op)
        return claimed
