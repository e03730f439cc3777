"""The README's five-minute tour, run as a user would: real processes, real ports.

`arcp-grpc serve` starts on a fresh directory (port 0s and a ready file
instead of the default ports), the CLI submits a demo job and watches it,
the published Python ARCP client connects through the gateway and gets the
same result, the Python client (`arcp_grpc.client`) submits, watches and runs a
job, and the README's own blocks for steps 3 and 4 (the published client's
script, `buf curl` over server reflection) run as a reader pastes them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arcp import ClientInfo, WebSocketTransport
from arcp.client import ARCPClient

from arcp_grpc.client import Client
from tests.doc_blocks import marked_blocks, run_commands
from tests.serve_process import ServeProcess

ROOT = Path(__file__).resolve().parent.parent
_PORTS = ("--grpc-port", "0", "--gateway-port", "0", "--metrics-port", "0")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`arcp-grpc serve` in a fresh directory: the embedded default, data in ./data."""
    process = ServeProcess(tmp_path_factory.mktemp("tour"), *_PORTS)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_serve_prints_connection_instructions(served: ServeProcess) -> None:
    """A newcomer sees where to connect and how to authenticate, and the token is
    private to its owner."""
    token_file = Path(served.info["token_file"])
    assert token_file == served.workdir / "data" / "dev-token"
    assert token_file.stat().st_mode & 0o077 == 0
    assert served.info["gateway"].startswith("ws://127.0.0.1:")
    assert served.info["gateway"].endswith("/arcp")
    listed = served.try_it("buf curl ")  # plain gRPC, with the tool the project installs
    assert listed.returncode == 0, listed.stderr
    assert '"name": "greeter"' in listed.stdout


def test_cli_submits_counter_and_watches_progress_to_success(served: ServeProcess) -> None:
    done = served.cli("submit", "counter", "--input", '{"steps":3,"interval":0.01}', "--watch")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("accepted job_")
    assert any("3/3 steps" in line for line in lines)  # the progress bar, plain (not a TTY)
    assert "success job_" in done.stdout
    assert lines[-1] == '{"count": 3}'


async def test_published_client_gets_the_same_result_as_the_cli(served: ServeProcess) -> None:
    payload = {"greeting": "hi", "n": 2, "items": [1, "two", None]}
    via_cli = served.cli("submit", "echo", "--input", json.dumps(payload), "--watch", "--json")
    assert via_cli.returncode == 0, via_cli.stderr
    cli_result = _json_lines(via_cli.stdout)[-1]
    assert cli_result["type"] == "result"

    client = ARCPClient(client=ClientInfo(name="readme-tour", version="1.0"), token=served.token)
    await client.connect(await WebSocketTransport.connect(served.info["gateway"]))
    try:
        handle = await client.submit(agent="echo", input=payload)
        result = await asyncio.wait_for(handle.done, 30)
    finally:
        await client.close()
    assert result.final_status == "success"
    assert result.result == cli_result["value"] == payload


async def test_python_client_submits_watches_and_runs(served: ServeProcess) -> None:
    """Step 4's Python: the client submits, watches to the end, and runs a job."""
    async with await Client.connect(served.info["grpc"], token=served.token) as client:
        job = await client.submit("greeter", {"name": "client"})
        watch = client.watch(job.job_id)
        assert [(event.seq, event.kind) async for event in watch] == [(1, "thought")]
        assert watch.outcome is not None
        assert watch.outcome.result == {"greeting": "Hello, client!", "version": "2.0.0"}
        outcome = await client.run("echo", {"hello": "client"})
    assert outcome.result == {"hello": "client"}


def test_the_readme_steps_3_and_4_run_as_written(served: ServeProcess) -> None:
    """The marked blocks, from a directory standing in for the checkout (`serve`'s, with
    this checkout's .venv and tools/ linked in); only the default addresses are swapped
    for the test's ports. Step 3 imports no private module of the published client."""
    readme = (ROOT / "README.md").read_text()
    assert "from arcp._" not in readme
    assert "arcp._version" not in readme
    workdir = served.workdir
    (workdir / ".venv").symlink_to(Path(sys.prefix))
    (workdir / "tools").symlink_to(ROOT / "tools")
    swaps = {
        "ws://127.0.0.1:7401/arcp": served.info["gateway"],
        "127.0.0.1:7400": served.info["grpc"],
    }
    printed: list[str] = []
    for block in marked_blocks(readme, "readme-test"):
        body = block.body
        for default, actual in swaps.items():
            body = body.replace(default, actual)
        if block.name:
            (workdir / block.name).write_text(body)
            continue
        done = run_commands(body, workdir, served.env, timeout=120)
        assert done.returncode == 0, f"{body}\nexited {done.returncode}:\n{done.stderr}"
        printed.append(done.stdout)
    step3, step4 = printed
    assert step3.splitlines()[-1] == "{'hello': 'arcp'}"
    services = {"arcp.v1.JobService", "arcp.v1.SessionService", "grpc.health.v1.Health"}
    assert services <= set(step4.splitlines())
    assert '"jobId": "job_' in step4
    assert '"agent": "greeter@2.0.0"' in step4


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def test_gateway_health_and_metrics_endpoints(served: ServeProcess) -> None:
    status, body = _get(served.info["gateway_health"])
    assert status == 200
    assert json.loads(body) == {"gateway": "ok", "core": "SERVING"}
    for _ in range(2):  # the second submit is an idempotent replay (§7.2)
        done = served.cli("submit", "chatty", "--input", '{"events": 3}', "--key", "tour-metrics")
        assert done.returncode == 0, done.stderr
    watched = served.cli("watch", done.stdout.split()[1])
    assert watched.returncode == 0, watched.stderr
    _, metrics = _get(served.info["metrics"])
    samples = dict(
        line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#")
    )
    assert float(samples["arcp_idempotency_hits_total"]) >= 1
    assert float(samples["arcp_jobs_submitted_total"]) >= 1
    assert float(samples["arcp_replay_latency_seconds_count"]) >= 1
    assert float(samples["arcp_events_total"]) >= 3
    assert "arcp_sessions_open" in samples
