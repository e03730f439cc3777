"""Launch the reference ARCP runtime (PyPI ``agentruntimecontrolprotocol``) over WebSocket.

``python -m bench.servers.reference --port-file X`` serves ``ws://127.0.0.1:PORT/arcp`` with
the three benchmark agents the harness drives on every target:

- ``echo``: returns its input (§7.1 submit, §8.3 inline result);
- ``chatty``: input ``{"events": N}``, emits N ``log`` events then returns (§8.2);
- ``report``: input ``{"bytes": N}``, streams an N-byte result as ``result_chunk`` events (§8.4).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from arcp import RuntimeInfo, serve_websocket
from arcp.runtime import ARCPRuntime, JobContext, StaticBearerVerifier

from bench.servers._common import (
    BENCH_PRINCIPAL,
    BENCH_TOKEN,
    launcher_args,
    wait_for_stop,
    write_ready,
)

__all__ = ["CHUNK_BYTES", "build_runtime", "main"]

#: Application bytes per ``result_chunk``; base64 makes each frame 64 KiB on the wire.
CHUNK_BYTES = 48 * 1024
#: Random (hence not trivially compressible) bytes the ``report`` agent streams from.
_PAYLOAD = os.urandom(16 * 1024 * 1024 + CHUNK_BYTES)


async def _echo(agent_input: Any, ctx: JobContext) -> Any:
    return agent_input


async def _chatty(agent_input: Any, ctx: JobContext) -> Any:
    count = int(agent_input.get("events", 0)) if isinstance(agent_input, dict) else 0
    for i in range(count):
        await ctx.log("info", f"event {i}")
    return {"events": count}


async def _report(agent_input: Any, ctx: JobContext) -> None:
    total = int(agent_input.get("bytes", 0)) if isinstance(agent_input, dict) else 0
    stream = ctx.stream_result()
    sent = 0
    while sent < total:
        size = min(CHUNK_BYTES, total - sent)
        # Slice from an offset so consecutive chunks differ; the payload wraps for N > 16 MiB.
        start = sent % (len(_PAYLOAD) - CHUNK_BYTES)
        await stream.write(_PAYLOAD[start : start + size])
        sent += size
    await stream.close(summary=f"{total} bytes")


def build_runtime() -> ARCPRuntime:
    """The reference runtime with its defaults, our token, and the three benchmark agents."""
    runtime = ARCPRuntime(
        runtime=RuntimeInfo(name="arcp-reference-bench", version="1.1.3"),
        bearer=StaticBearerVerifier({BENCH_TOKEN: BENCH_PRINCIPAL}),
    )
    runtime.register_agent("echo", _echo)
    runtime.register_agent("chatty", _chatty)
    runtime.register_agent("report", _report)
    return runtime


async def _serve(args: Any) -> None:
    runtime = build_runtime()
    server = await serve_websocket(runtime.accept, host="127.0.0.1", port=0, path="/arcp")
    port = next(iter(server.sockets)).getsockname()[1]
    write_ready(args.port_file, {"url": f"ws://127.0.0.1:{port}/arcp"})
    try:
        await wait_for_stop(args.max_seconds)
    finally:
        server.close()
        await runtime.close()


def main() -> None:
    """Entry point of ``python -m bench.servers.reference``."""
    args = launcher_args("reference ARCP runtime for the benchmark").parse_args()
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
