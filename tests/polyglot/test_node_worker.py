"""The TypeScript worker (examples/worker-ts) hosts an agent for a real core (issue 23).

Acceptance: an ARCP client through the gateway submits to an agent hosted by the Node
worker and receives its events and result. The worker is the example as a user runs
it (`node --import tsx src/main.ts`), built from stubs generated here by buf, talking
to a real `serve` child over real sockets; the core answers its step (a tool call) from
the job's lease (§9.3). A client token is refused as a worker token: exit 2.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arcp import ClientInfo, WebSocketTransport
from arcp._client.client import ARCPClient

from tests.arcp_grpc.worker.conftest import WorkerProcess, serving_workers
from tests.polyglot.node_project import ROOT, generate, npm_ci, require_node, typecheck
from tests.serve_process import ServeProcess, clean_env

EXAMPLE = ROOT / "examples" / "worker-ts"
WORKER_TOKEN = "wtok-node"
SAFETY = 30.0  # seconds; a bound on every wait, never what a test checks


@pytest.fixture(scope="module")
def example() -> Path:
    """The example worker, installed, with fresh stubs, type-checked."""
    require_node()
    npm_ci(EXAMPLE)
    generate(EXAMPLE)
    typecheck(EXAMPLE)
    return EXAMPLE


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("serve")
    with serving_workers(workdir, ARCP_AUTH_WORKERS=f"{WORKER_TOKEN}=node-pool") as process:
        yield process


def _node_worker(example: Path, core: str, token: str) -> WorkerProcess:
    env = {**clean_env(ARCP_CORE=core, ARCP_TOKEN=token), "NO_COLOR": "1"}
    process = subprocess.Popen(
        ["node", "--import", "tsx", "src/main.ts"],
        cwd=example,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return WorkerProcess(process)


async def _run(served: ServeProcess, input_value: Any, lease: dict[str, list[str]]) -> Any:
    arcp = ARCPClient(client=ClientInfo(name="node-worker-test", version="1"), token=served.token)
    await arcp.connect(await WebSocketTransport.connect(served.info["gateway"]))
    try:
        handle = await arcp.submit(agent="ts-echo", input=input_value, lease_request=lease)
        result = await asyncio.wait_for(handle.done, SAFETY)
        events = [event async for event in handle.events()]
    finally:
        await arcp.close()
    return result, events


async def test_an_arcp_client_through_the_gateway_runs_an_agent_of_the_node_worker(
    example: Path, served: ServeProcess
) -> None:
    worker = _node_worker(example, served.info["grpc"], WORKER_TOKEN)
    try:
        await asyncio.to_thread(worker.wait_ready)
        result, events = await _run(served, {"tool": "lookup"}, {"tool.call": ["lookup"]})
        refused, _ = await _run(served, {"tool": "shell"}, {"tool.call": ["lookup"]})
    finally:
        worker.stop()
    assert result.final_status == "success"
    assert result.result == {"echo": {"tool": "lookup"}, "tool": "lookup", "runtime": "node"}
    assert [e["kind"] for e in events] == ["log", "progress", "progress"]
    assert events[0]["body"]["message"] == "echoing from a TypeScript worker"
    assert [e["body"]["current"] for e in events[1:]] == [1, 2]
    assert refused.final_status == "success"  # the agent caught the core's refusal (§9.3)
    assert refused.result["tool"] == {"refused": "PERMISSION_DENIED"}


def test_the_node_worker_exits_2_when_the_core_refuses_its_token(
    example: Path, served: ServeProcess
) -> None:
    worker = _node_worker(example, served.info["grpc"], served.token)  # a client token
    _, err = worker.process.communicate(timeout=SAFETY)
    assert worker.process.returncode == 2
    assert "the core refused the worker token" in err
