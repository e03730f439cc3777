"""The Python worker (`arcp-grpc worker`) runs unchanged agents for a real core (issue 23).

Everything over real sockets: a `serve` child, `arcp-grpc worker` children, and clients
on gRPC (`arcp_grpc.client`) and through the gateway (the published ARCP client).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from arcp import ClientInfo, WebSocketTransport
from arcp._client.client import ARCPClient

from arcp_grpc.client import Client
from tests.arcp_grpc.worker.conftest import WorkerProcess
from tests.serve_process import ServeProcess

SAFETY = 30.0


async def test_grpc_client_runs_an_agent_hosted_by_a_worker(
    client: Client, workers: Callable[..., WorkerProcess]
) -> None:
    workers()
    run = client.run("remote-echo", {"n": 1})
    kinds = [event.kind async for event in run]
    outcome = run.outcome
    assert outcome is not None
    assert outcome.status == "success"
    assert outcome.result == {"echo": {"n": 1}, "trace": 32}
    assert kinds == ["log", "progress"]
    agents = {agent.name: agent.versions for agent in await client.agents()}
    assert agents["remote-echo"] == ("1.0.0",)
    assert "echo" in agents  # in-process agents beside the remote ones


async def test_arcp_client_through_the_gateway_runs_a_remote_agent(
    served: ServeProcess, workers: Callable[..., WorkerProcess]
) -> None:
    workers()
    arcp = ARCPClient(client=ClientInfo(name="worker-test", version="1"), token=served.token)
    await arcp.connect(await WebSocketTransport.connect(served.info["gateway"]))
    try:
        handle = await arcp.submit(agent="remote-echo", input={"via": "gateway"})
        result = await asyncio.wait_for(handle.done, SAFETY)
        events = [event async for event in handle.events()]
    finally:
        await arcp.close()
    assert result.final_status == "success"
    assert result.result == {"echo": {"via": "gateway"}, "trace": 32}
    assert [e["kind"] for e in events] == ["log", "progress"]


async def test_a_streamed_result_goes_through_the_cores_result_stream(
    client: Client, workers: Callable[..., WorkerProcess]
) -> None:
    workers()
    run = client.run("remote-stream", {"parts": ["ab", "cd", "ef"]})
    chunks = [e.proto.result_chunk async for e in run if e.kind == "result_chunk"]
    assert run.outcome is not None
    assert run.outcome.status == "success"
    assert [(c.chunk_seq, c.data, c.more) for c in chunks] == [
        (0, b"ab", True),
        (1, b"cd", True),
        (2, b"ef", False),
    ]
    assert len({c.result_id for c in chunks}) == 1
    assert run.outcome.proto.result.streamed.result_id == chunks[0].result_id
