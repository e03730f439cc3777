"""Launch the raw WebSocket ceiling: a ``websockets`` server with no protocol on top.

Text frames are echoed back unchanged, except ``push:<count>:<size>``, which makes the server
push ``count`` frames of ``size`` characters and then the frame ``end``. The echo gives the
round-trip and pipelined-message ceilings, the push gives the server-to-client ceilings for
events (small frames) and chunked results (64 KiB frames).
"""

from __future__ import annotations

import base64
import os
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from arcp_grpc.process import event_loop
from bench.servers._common import launcher_args, wait_for_stop, write_ready

__all__ = ["main", "push_frames"]

_DISTINCT_FRAMES = 4


def push_frames(size: int) -> list[str]:
    """A few distinct frames of ``size`` characters of base64 text (random, as real chunks)."""
    raw = os.urandom(size)
    return [
        base64.b64encode(raw[i:] + raw[:i]).decode("ascii")[:size] for i in range(_DISTINCT_FRAMES)
    ]


async def _handler(conn: ServerConnection) -> None:
    frames_by_size: dict[int, list[str]] = {}
    async for message in conn:
        if isinstance(message, str) and message.startswith("push:"):
            _, count_text, size_text = message.split(":")
            size = int(size_text)
            frames = frames_by_size.get(size)
            if frames is None:
                frames = frames_by_size[size] = push_frames(size)
            for i in range(int(count_text)):
                await conn.send(frames[i % _DISTINCT_FRAMES])
            await conn.send("end")
        else:
            await conn.send(message)


async def _serve(args: Any) -> None:
    async with serve(_handler, "127.0.0.1", 0, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        write_ready(args.port_file, {"url": f"ws://127.0.0.1:{port}/raw"})
        await wait_for_stop(args.max_seconds)


def main() -> None:
    """Entry point of ``python -m bench.servers.ws_raw``."""
    # On the loop our server runs on, so the distance to the ceiling is not the loop's.
    args = launcher_args("raw websockets echo/push server", event_loop_choice=True).parse_args()
    event_loop.run(_serve(args), args.event_loop)


if __name__ == "__main__":
    main()
