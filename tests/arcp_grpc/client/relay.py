"""A TCP relay on 127.0.0.1 between a client and a core, to lose a reply on purpose.

``hold_replies`` swallows what the core sends from then on (the request still reaches
it); ``cut()`` closes every relayed connection, as a dropped network would. Nothing is
parsed: the bytes are gRPC's, passed through or dropped whole.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Relay"]


class Relay:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.hold_replies = False
        self.address = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            self._pipe(reader, upstream_writer, replies=False),
            self._pipe(upstream_reader, writer, replies=True),
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if replies and self.hold_replies:
                    continue
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
