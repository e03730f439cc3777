"""The node's `LISTEN` connection, kept listening across lost connections (issue 20).

Other nodes' commits, cancel requests and session takeovers arrive as
notifications on one connection. When it is lost (the database restarted, the
node's backends were terminated), it is made again with the same bounded
backoff as the writer's (`reconnect`) and `LISTEN`s on every channel again.
Notifications sent meanwhile are gone, so `on_restored` then wakes every
follower once: each re-reads what it follows (a lost notification costs
latency, never an event; cancel requests are polled by the membership loop
anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from arcp_grpc.store.postgres.reconnect import reconnected

__all__ = ["Listener", "Notified"]

log = logging.getLogger("arcp_grpc.postgres_store")

Notified = Callable[[Any, int, str, object], None]  # asyncpg's listener signature


class Listener:
    """One connection listening on `channels`, made again whenever it is lost."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        channels: Sequence[tuple[str, Notified]],
        on_restored: Callable[[], None],
    ) -> None:
        self._connect = connect
        self._channels = tuple(channels)
        self._on_restored = on_restored
        self._conn: asyncpg.Connection | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    async def open(self) -> None:
        self._conn = await self._listening()

    async def close(self) -> None:
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    async def _listening(self) -> asyncpg.Connection:
        conn = await self._connect()
        try:
            for channel, callback in self._channels:
                await conn.add_listener(channel, callback)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._terminated)
        return conn

    def _terminated(self, conn: object) -> None:
        # Only the connection in use: a late word about an older one changes nothing.
        if conn is self._conn and not self._closed and self._reconnecting is None:
            self._reconnecting = asyncio.create_task(self._reconnect(), name="arcp-pg-listen")

    async def _reconnect(self) -> None:
        log.warning("lost the store's notification connection; reconnecting")
        try:
            self._conn = await reconnected(self._listening)
        except Exception:
            log.exception("cannot listen for notifications again; followers poll meanwhile")
            return
        finally:
            self._reconnecting = None
        log.warning("listening for notifications again")
        self._on_restored()
