"""How a bridge and a core stream end (issue 20, item 5): a failure is logged and closes
the socket with 1011, cancellation is never swallowed, and a stream is ended by its
owner, not by cancelling whichever task happened to read it first.

The first test runs a real in-process core. The other two need a core that breaks in
a way a real one cannot be made to on demand (a stream that raises, or that does not
let go when cancelled); `CoreLink` is the seam the bridge is built on, so they give it
a small core of their own and run the real gateway, bridge and WebSocket around it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect

from arcp_grpc.base.ids import new_ulid
from arcp_grpc.server import RunningCore
from arcp_grpc.service.transport_policy import Hop
from arcp_grpc.v1.session_service_pb2 import ConnectRequest, ConnectResponse
from gateway.links import CoreStream, Health, LocalLink
from gateway.server import GatewayConfig, RunningGateway, start_gateway

_BOUND = 5.0  # seconds; a safety net, never what a test checks
_HELLO = json.dumps(
    {
        "arcp": "1.1",
        "id": new_ulid(),
        "type": "session.hello",
        "payload": {
            "client": {"name": "bridge-ends-test", "version": "1"},
            "auth": {"scheme": "bearer", "token": "tok-alice"},
            "capabilities": {"encodings": ["json"]},
        },
    }
)


def _hello() -> ConnectRequest:
    request = ConnectRequest(id="01HELLO0000000000000000000")
    request.hello.client.name = "bridge-ends-test"
    request.hello.auth.token = "tok-alice"
    request.hello.capabilities.encodings.append("json")
    return request


async def test_cancelling_a_local_stream_ends_it_for_whichever_task_reads_it(
    core: RunningCore,
) -> None:
    """The welcome is read by one task, the rest by another: a cancel must end the
    stream where the second waits. It cancelled the first reader's task (here already
    done, so nothing ended and the second reader waited for ever)."""
    stream = LocalLink(core).connect()
    frames = aiter(stream)

    async def next_frame() -> ConnectResponse:
        return await anext(frames)

    await stream.write(_hello())
    welcome = await asyncio.wait_for(asyncio.create_task(next_frame()), _BOUND)
    assert (welcome.frames[0] if welcome.frames else welcome).HasField("welcome")
    reader = asyncio.create_task(next_frame())  # an idle session: nothing more comes
    await asyncio.sleep(0.05)
    assert not reader.done()
    assert stream.cancel()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(reader, _BOUND)
    assert not stream.cancel()  # already over


class _Core:
    """A core whose streams never answer and, with `raises`, fail with it once the
    client's first frame arrived; with `holds`, a cancel is noted but the stream keeps
    waiting (a core slow to let go)."""

    def __init__(self, *, raises: Exception | None = None, holds: bool = False) -> None:
        self.raises = raises
        self.holds = holds
        self.cancels = 0
        self.reader_ended = asyncio.Event()
        self._written = asyncio.Event()
        self._released = asyncio.Event()

    def connect(self, client: Hop | None = None) -> CoreStream:
        return _Stream(self)

    async def health(self) -> Health:
        return Health("SERVING")

    async def close(self) -> None:
        return None


class _Stream:
    def __init__(self, core: _Core) -> None:
        self._core = core

    def __aiter__(self) -> AsyncIterator[ConnectResponse]:
        return self._read()

    async def _read(self) -> AsyncIterator[ConnectResponse]:
        core = self._core
        try:
            await core._written.wait()
            if core.raises is not None and not core.cancels:
                raise core.raises
            await core._released.wait()
            return
            yield  # an async generator that yields nothing
        finally:
            core.reader_ended.set()

    async def write(self, request: ConnectRequest) -> None:
        self._core._written.set()

    def cancel(self) -> bool:
        core = self._core
        core.cancels += 1
        if not core.holds:
            core._written.set()
            core._released.set()
        return True


async def _gateway(core: _Core) -> RunningGateway:
    return await start_gateway(GatewayConfig(core_address="in-test", port=0), link=core)


async def test_a_failing_downstream_is_logged_and_closes_the_socket_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It was suppressed: no log, and the client saw a normal close (1000)."""
    core = _Core(raises=RuntimeError("the core's stream broke its contract"))
    gateway = await _gateway(core)
    try:
        with caplog.at_level(logging.ERROR, logger="gateway.bridge"):
            async with connect(gateway.url) as ws:
                await ws.send(_HELLO)
                await asyncio.wait_for(ws.wait_closed(), _BOUND)
            assert ws.close_code == 1011
            assert ws.close_reason == "gateway error"
    finally:
        await gateway.stop()
    failures = [r for r in caplog.records if r.name == "gateway.bridge"]
    assert [r.getMessage() for r in failures] == ["bridge failed"]
    assert failures[0].exc_info is not None
    assert "broke its contract" in str(failures[0].exc_info[1])


async def test_a_cancelled_bridge_ends_both_sides_and_stays_cancelled() -> None:
    """The client left, the bridge waits for the core to let go, and the gateway's task
    for the socket is cancelled meanwhile: the cancellation was swallowed (the task
    returned as if finished) while the bridge stopped waiting for its core side."""
    core = _Core(holds=True)
    gateway = await _gateway(core)
    try:
        async with connect(gateway.url) as ws:
            await ws.send(_HELLO)
            [handler] = gateway.server.handler_tasks
        async with asyncio.timeout(_BOUND):
            while not core.cancels:  # noqa: ASYNC110  the bridge told the core to let go
                await asyncio.sleep(0.01)
        assert not handler.done()  # still waiting for its core side
        handler.cancel()
        await asyncio.wait({handler}, timeout=_BOUND)
        assert handler.cancelled()
        assert core.reader_ended.is_set()  # the core side was ended too, not left behind
    finally:
        await gateway.stop()
