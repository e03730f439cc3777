"""The published ARCP Python client (``arcp.ARCPClient`` over ``WebSocketTransport``).

This is how a real ARCP user talks to a runtime, so it is the primary load generator
wherever the wire is ARCP JSON (issue 7); ``bench.loadgen.lean`` runs next to it.
"""

from __future__ import annotations

import time
from typing import Any

from arcp import ClientInfo, WebSocketTransport
from arcp.client import ARCPClient

from bench.loadgen.base import ECHO_INPUT, ProtocolViolation

__all__ = ["ClientConn", "ClientDriver"]


class ClientConn:
    """One session of the published client; jobs run one at a time."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def run_echo(self) -> tuple[float, float]:
        start = time.perf_counter()
        handle = await self._client.submit(agent="echo", input=ECHO_INPUT)
        accepted = time.perf_counter()
        await handle.done
        return accepted - start, time.perf_counter() - start

    async def submit_keyed(self, key: str, *, wait_result: bool) -> float:
        start = time.perf_counter()
        handle = await self._client.submit(agent="echo", input=ECHO_INPUT, idempotency_key=key)
        elapsed = time.perf_counter() - start
        if wait_result:
            await handle.done
        return elapsed

    async def run_chatty(self, events: int) -> tuple[float, int]:
        start = time.perf_counter()
        handle = await self._client.submit(agent="chatty", input={"events": events})
        received = 0
        async for event in handle.events():  # ends at the terminal envelope
            # Only the agent's own log events count; a runtime may add status events.
            received += event.get("kind") == "log"
        await handle.done
        return time.perf_counter() - start, received

    async def run_report(self, size: int) -> tuple[float, int]:
        start = time.perf_counter()
        handle = await self._client.submit(agent="report", input={"bytes": size})
        data = await handle.collect_chunks()  # ends at the terminal envelope
        result = await handle.done
        if result.final_status != "success":
            raise ProtocolViolation(f"report ended {result.final_status}")
        return time.perf_counter() - start, len(data)

    async def close(self) -> None:
        await self._client.close()


class ClientDriver:
    """Opens sessions with ``ARCPClient.connect`` (hello → welcome, §6.1–§6.2)."""

    def __init__(self, url: str, token: str) -> None:
        self._url = url
        self._token = token

    async def connect(self) -> ClientConn:
        transport = await WebSocketTransport.connect(self._url)
        client = ARCPClient(
            client=ClientInfo(name="arcp-bench-client", version="0.1.0"), token=self._token
        )
        try:
            await client.connect(transport)
        except BaseException:
            await transport.close()
            raise
        return ClientConn(client)
