"""A TCP proxy in front of a real PostgreSQL, to cut the database off at chosen moments.

Over real sockets, between the store and the server: `down` closes every
connection and refuses new ones (a database restart or a network cut, as the
store sees it) until `up`; `cut_after(marker)` forwards the next client message
holding `marker` (e.g. ``b"COMMIT"``) to the server, then closes that connection
before the server's answer comes back, so the client cannot know whether the
statement took effect (the "lost COMMIT" of issue 20).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

__all__ = ["PgProxy", "proxied"]

_CHUNK = 65536
_SETTLE_SEC = 0.3  # after forwarding the marked message: the server acts on it meanwhile


class PgProxy:
    """Forwards 127.0.0.1:`port` to the server at `target_host:target_port`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._marker: bytes | None = None
        self._is_up = True
        self.port = 0
        self.cuts = 0  # connections cut by `cut_after`

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, user: str, database: str, query: str = "") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}{query}"

    def cut_after(self, marker: bytes) -> None:
        """Cut the connection whose next client message holds `marker`, once."""
        self._marker = marker

    def down(self) -> None:
        """Every connection closed; new ones are refused until `up`."""
        self._is_up = False
        for link in list(self._links):
            link.close()

    def up(self) -> None:
        self._is_up = True

    async def close(self) -> None:
        self.down()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._is_up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._client_to_server(link, reader, up_writer),
                _pump(link, up_reader, writer),
            )
        finally:
            self._links.discard(link)
            link.close()

    async def _client_to_server(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while not link.closed:
            data = await _read(reader)
            if not data:
                return
            marker = self._marker
            if marker is not None and marker in data:
                self._marker = None
                self.cuts += 1
                link.muted = True  # the server's answer never reaches the client
                writer.write(data)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                await asyncio.sleep(_SETTLE_SEC)
                link.close()
                return
            writer.write(data)
            with contextlib.suppress(ConnectionError):
                await writer.drain()


@contextlib.asynccontextmanager
async def proxied(store_url: str) -> AsyncIterator[tuple[PgProxy, str]]:
    """A proxy in front of `store_url`'s server, and the same store's URL through it."""
    parts = urlsplit(store_url)
    assert parts.hostname is not None
    assert parts.port is not None
    proxy = PgProxy(parts.hostname, parts.port)
    await proxy.start()
    try:
        query = f"?{parts.query}" if parts.query else ""
        yield proxy, proxy.url(parts.username or "", parts.path.lstrip("/"), query)
    finally:
        await proxy.close()


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server
        self.muted = False
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.client.transport.abort()
            self.server.transport.abort()


async def _read(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(_CHUNK)
    except ConnectionError:
        return b""


async def _pump(link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while not link.closed:
        data = await _read(reader)
        if not data:
            link.close()
            return
        if link.muted:
            continue
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
