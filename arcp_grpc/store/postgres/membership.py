"""Cluster membership in the shared store (DESIGN.md, scale-out): who is alive, who
runs which job, and who asks whom to cancel.

- a job row names the node that runs it (`owner_node`); a node finishes only the
  jobs it owns (`PostgresStore.finish_job`), so once a survivor has taken a dead
  node's jobs the dead node (if it was only slow) cannot overwrite their end;
- a cancel for a job running elsewhere is a durable request on the job row plus a
  notification to its owner, which also polls for requests;
- each node heartbeats in `nodes`; a survivor declares a node dead with one
  conditional update and takes its running jobs in the same transaction, so
  exactly one survivor ends each.

Nobody is declared dead for an outage of the database itself (issue 20): a node
judges another's heartbeat only once both have had `node_timeout_sec` to beat
since the store came back. Two rules, both needed:
- the judge's own connection to the store must have been up for the timeout
  (`PostgresWriter.up_for`): after any outage it saw (a restart, a failover, a
  network cut between it and the database), it waits a full timeout before it
  judges, while the others reconnect (within the writer's backoff bound, 2 s)
  and beat again;
- on the database's clock, the server must have started more than the timeout
  ago (`pg_postmaster_start_time()`): a node that reconnected quickly cannot
  judge a peer whose heartbeat the restart interrupted.
A network partition between ONE node and the database is, for the others, a
death: the cut-off node stops emitting once its lease lapses, and is declared
dead after the timeout like a crashed one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from arcp_grpc.store.postgres.connections import PostgresConnections
from arcp_grpc.store.protocol import JobChanges, JobRow, NodeRow
from arcp_grpc.store.rows import JOB_COLUMNS

__all__ = ["CANCEL_CHANNEL", "PostgresMembership"]

CANCEL_CHANNEL = "arcp_cancel"
_JOB_COLUMNS_OF_JOBS = ", ".join(f"jobs.{c.strip()}" for c in JOB_COLUMNS.split(","))
_REASON_IN_NOTICE = 2000  # characters; the row holds the whole reason for the poll


class PostgresMembership(PostgresConnections):
    """`Membership` on the shared database: heartbeats, takeover and cancel requests."""

    def changes(self, job_id: str) -> JobChanges:
        """Wake-ups for a follower of `job_id`, which may run on another node."""
        return self._followers.changes(job_id)

    def set_cancel_listener(self, listener: Callable[[str, str], None]) -> None:
        """Call `listener(job_id, reason)` when another node asks this one to cancel."""
        self._on_cancel = listener

    def _on_cancel_notified(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        node, _, rest = str(payload).partition(" ")
        job_id, _, reason = rest.partition(" ")
        if node == self.node_id:
            self._on_cancel(job_id, reason)

    async def request_cancel(self, job_id: str, reason: str) -> bool:
        """Ask the node running `job_id` to cancel it; False if the job is not running."""

        async def op(conn: asyncpg.Connection) -> str | None:
            owner: str | None = await conn.fetchval(
                "UPDATE jobs SET cancel_reason = $2 WHERE job_id = $1 AND completed_at IS NULL"
                " RETURNING owner_node",
                job_id,
                reason,
            )
            if owner is not None:
                notice = f"{owner} {job_id} {reason[:_REASON_IN_NOTICE]}"
                await conn.execute("SELECT pg_notify($1, $2)", CANCEL_CHANNEL, notice)
            return owner

        owner = await self._writes().write(op)
        return owner is not None

    async def cancel_requests(self) -> list[tuple[str, str]]:
        """(job_id, reason) of this node's running jobs that someone asked to cancel."""
        rows = await self._reads().fetch(
            "SELECT job_id, cancel_reason FROM jobs WHERE owner_node = $1"
            " AND completed_at IS NULL AND cancel_reason IS NOT NULL",
            self.node_id,
        )
        return [(r["job_id"], r["cancel_reason"]) for r in rows]

    async def heartbeat(self) -> bool:
        """Record that this node is alive; False once a survivor declared it dead (then
        it must stop running jobs: they were ended and may not be finished twice)."""

        async def op(conn: asyncpg.Connection) -> bool:
            alive = await conn.fetchval(
                "UPDATE nodes SET heartbeat_at = now() WHERE node_id = $1 AND state = 'alive'"
                " RETURNING true",
                self.node_id,
            )
            return bool(alive)

        beating: bool = await self._writes().write(op)
        return beating

    async def take_over(self, timeout_sec: float) -> list[tuple[str, list[JobRow]]]:
        """Declare dead every node silent for `timeout_sec`, then take every running job
        whose owner is not alive: the nodes just declared dead, and any whose owner was
        already dead, left, or is unknown (a job a dead node created in a race, a node
        that left with a job whose end it could not record). One conditional update per
        statement decides which survivor does it. Each owner is named `label/node_id`
        (its host:pid unless `cluster.node_name` says otherwise). Nobody is judged until
        the store has been back for the timeout (module docstring); the jobs of owners
        already not alive are swept whatever this node's own connection's age."""
        judge = self._writes().up_for() >= timeout_sec

        async def op(conn: asyncpg.Connection) -> list[tuple[str, list[JobRow]]]:
            dead = (
                []
                if not judge
                else await conn.fetch(
                    "UPDATE nodes SET state = 'dead' WHERE state = 'alive' AND node_id <> $1"
                    " AND heartbeat_at < now() - make_interval(secs => $2)"
                    " AND pg_postmaster_start_time() < now() - make_interval(secs => $2)"
                    " RETURNING node_id",
                    self.node_id,
                    timeout_sec,
                )
            )
            if dead:
                # Their sessions' resume windows start now: any node may resume them.
                await conn.execute(
                    "UPDATE sessions SET detached_at = extract(epoch FROM now())"
                    " WHERE node_id = ANY($1::text[]) AND detached_at IS NULL",
                    [record["node_id"] for record in dead],
                )
            # Every running job without a live owner, in one statement; the owner's
            # label is read after (a node never deleted, or '?').
            rows = await conn.fetch(
                "WITH taken AS (SELECT job_id, owner_node FROM jobs j WHERE completed_at IS NULL"
                " AND owner_node <> $1 AND NOT EXISTS (SELECT 1 FROM nodes n"
                " WHERE n.node_id = j.owner_node AND n.state = 'alive') FOR UPDATE)"
                f" UPDATE jobs SET owner_node = $1 FROM taken WHERE jobs.job_id = taken.job_id"
                f" RETURNING taken.owner_node AS previous, {_JOB_COLUMNS_OF_JOBS}",
                self.node_id,
            )
            if not rows:
                return []
            labels: dict[str, str] = {
                r["node_id"]: r["label"]
                for r in await conn.fetch(
                    "SELECT node_id, label FROM nodes WHERE node_id = ANY($1::text[])",
                    list({r["previous"] for r in rows}),
                )
            }
            taken: dict[str, list[JobRow]] = {}
            for r in rows:
                name = f"{labels.get(r['previous'], '?')}/{r['previous']}"  # for operators
                taken.setdefault(name, []).append(JobRow(*list(r.values())[1:]))
            return list(taken.items())

        taken: list[tuple[str, list[JobRow]]] = await self._writes().write(op)
        return taken

    async def leave(self) -> None:
        """A clean stop: this node's jobs are finished; it is no longer a member."""

        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE nodes SET state = 'left' WHERE node_id = $1 AND state = 'alive'",
                self.node_id,
            )
            await conn.execute(
                "UPDATE sessions SET detached_at = extract(epoch FROM now())"
                " WHERE node_id = $1 AND detached_at IS NULL",
                self.node_id,
            )

        await self._writes().write(op)

    async def nodes(self) -> list[NodeRow]:
        """Every known node, oldest first, with the jobs running on it (`jobs_running`
        indexes exactly those)."""
        rows = await self._reads().fetch(
            "SELECT n.node_id, n.label, n.state,"
            " extract(epoch FROM now() - n.heartbeat_at) AS silent,"
            " (SELECT count(*) FROM jobs j WHERE j.owner_node = n.node_id"
            " AND j.completed_at IS NULL) AS running"
            " FROM nodes n ORDER BY n.started_at"
        )
        return [
            NodeRow(r["node_id"], r["label"], r["state"], float(r["silent"]), int(r["running"]))
            for r in rows
        ]
