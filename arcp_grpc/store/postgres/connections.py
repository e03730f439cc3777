"""What every part of the PostgreSQL store works through: this node's identity, the
writer's connection (group commit, `arcp_grpc.store.postgres.writer`), a small pool
for reads beside it, and the connection that `LISTEN`s for other nodes.

`PostgresStore` is one object made of one class per concern (jobs and events in
`store`, the credential ledger in `credentials`, the session journal in `sessions`,
cluster membership in `membership`, remote workers across nodes in `handoffs`), each
a subclass of `PostgresConnections`: the runtime and the session journal hold the store
as one `ClusterStore`, and a part
reached through it pays no forwarding call (`append_session_frame` runs per frame).

Every connection names the node (`reconnect.application_name`) and is made again
when lost: the writer's by the writer, the listener's by `Listener`, the pool's
by the pool on its next use. Reads go through `Reads`, which raises the store's own
errors instead of the driver's (`driver_errors`): a lost connection is a transient
`StoreFailed` (a retryable refusal for the client, issue 20), a value the server
refuses a `StoreRejected`, any other driver error a `StoreFailed`, its text logged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from arcp_grpc.store.postgres.changes import JobFollowers
from arcp_grpc.store.postgres.driver_errors import read_error
from arcp_grpc.store.postgres.listener import Listener
from arcp_grpc.store.postgres.reconnect import CONNECT_ATTEMPT_SEC, server_settings
from arcp_grpc.store.postgres.writer import PostgresWriter

__all__ = ["PostgresConnections", "Reads"]

_CONNECT_TIMEOUT_SEC = 30.0  # `store.connect_timeout_sec`'s default


class Reads:
    """The read pool, its failures reported as the store's errors (`driver_errors`)."""

    __slots__ = ("_pool",)

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(sql, *args)
            return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(sql, *args)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[PoolConnectionProxy[Any]]:
        """A pooled connection; losing it (or failing to make it) is a transient
        `StoreFailed`, and a driver error of what it ran is the store's error."""
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except Exception as exc:
            error = read_error(exc)
            if error is None:
                raise
            raise error from None


class PostgresConnections:
    """The connections and the node's identity; the store's parts add the statements."""

    def __init__(
        self,
        dsn: str,
        *,
        node_id: str,
        label: str = "",
        batch_limit: int = 2048,
        connect_timeout_sec: float = _CONNECT_TIMEOUT_SEC,
    ) -> None:
        self._dsn = dsn
        self.node_id = node_id
        self._label = label or node_id
        self._batch_limit = batch_limit
        self._connect_timeout_sec = connect_timeout_sec
        self._writer: PostgresWriter | None = None
        self._write_conn: asyncpg.Connection | None = None
        self._listener: Listener | None = None
        self._pool: asyncpg.Pool | None = None
        self._reads_: Reads | None = None
        self._followers = JobFollowers()
        self._on_cancel: Callable[[str, str], None] = lambda _job_id, _reason: None
        self._on_session_lost: Callable[[str], None] = lambda _session_id: None
        self._on_handoff: Callable[[str], None] = lambda _job_id: None

    def _writes(self) -> PostgresWriter:
        assert self._writer is not None, "store is not open"
        return self._writer

    def _reads(self) -> Reads:
        assert self._reads_ is not None, "store is not open"
        return self._reads_

    def _connect(self) -> Awaitable[asyncpg.Connection]:
        """One connection of this node (the writer's, the listener's)."""
        return asyncpg.connect(
            self._dsn,
            timeout=CONNECT_ATTEMPT_SEC,
            server_settings=server_settings(self.node_id),
        )

    async def _open_pool(self) -> None:
        # No floor (min_size 0): asyncpg would keep restoring it during an outage, with
        # a traceback in the log per attempt; a read makes the connection it needs.
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=4,
            timeout=CONNECT_ATTEMPT_SEC,
            server_settings=server_settings(self.node_id),
        )
        self._reads_ = Reads(self._pool)

    async def _close_connections(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._write_conn is not None and not self._write_conn.is_closed():
            await self._write_conn.close()
        if self._pool is not None:
            await self._pool.close()

    def _execute(self, sql: str, *args: Any) -> Awaitable[None]:
        """One statement as a request of its own to the writer (group commit). Returns the
        writer's awaitable, so the caller awaits once, as with `_writes().write`."""

        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(sql, *args)

        return self._writes().write(op)
