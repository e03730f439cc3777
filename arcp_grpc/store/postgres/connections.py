"""What every part of the PostgreSQL store works through: this node's identity, the
writer's connection (group commit, `arcp_grpc.store.postgres.writer`), a small pool
for reads beside it, and the connection that `LISTEN`s for other nodes.

`PostgresStore` is one object made of one class per concern (jobs and events in
`store`, the credential ledger in `credentials`, the session journal in `sessions`,
cluster membership in `membership`, remote workers across nodes in `handoffs`), each
a subclass of `PostgresConnections`: the runtime and the session journal hold the store
as one `ClusterStore`, and a part
reached through it pays no forwarding call (`append_session_frame` runs per frame).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from arcp_grpc.store.postgres.changes import JobFollowers
from arcp_grpc.store.postgres.writer import PostgresWriter

__all__ = ["PostgresConnections"]


class PostgresConnections:
    """The connections and the node's identity; the store's parts add the statements."""

    def __init__(self, dsn: str, *, node_id: str, label: str = "", batch_limit: int = 2048) -> None:
        self._dsn = dsn
        self.node_id = node_id
        self._label = label or node_id
        self._batch_limit = batch_limit
        self._writer: PostgresWriter | None = None
        self._write_conn: asyncpg.Connection | None = None
        self._listen_conn: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._followers = JobFollowers()
        self._on_cancel: Callable[[str, str], None] = lambda _job_id, _reason: None
        self._on_session_lost: Callable[[str], None] = lambda _session_id: None
        self._on_handoff: Callable[[str], None] = lambda _job_id: None

    def _writes(self) -> PostgresWriter:
        assert self._writer is not None, "store is not open"
        return self._writer

    def _reads(self) -> asyncpg.Pool:
        assert self._pool is not None, "store is not open"
        return self._pool

    async def _close_connections(self) -> None:
        for conn in (self._write_conn, self._listen_conn):
            if conn is not None and not conn.is_closed():
                await conn.close()
        if self._pool is not None:
            await self._pool.close()

    def _execute(self, sql: str, *args: Any) -> Awaitable[None]:
        """One statement as a request of its own to the writer (group commit). Returns the
        writer's awaitable, so the caller awaits once, as with `_writes().write`."""

        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(sql, *args)

        return self._writes().write(op)
