"""`arcp-grpc workers` (issue 23): the connected workers, their agents and slots, from a
real `serve` with real `arcp-grpc worker` children, over JobService.ListWorkers. The
module's core has no worker until its second test starts one (the tests run in order)."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.arcp_grpc.worker.conftest import WORKER_TOKEN, WorkerProcess
from tests.serve_process import ServeProcess, run_cli


def test_workers_says_when_none_is_connected_and_refuses_a_worker_token(
    served: ServeProcess,
) -> None:
    shown = served.cli("workers")
    assert (shown.returncode, shown.stdout) == (0, "no worker is connected\n")
    refused = run_cli("workers", "--address", served.info["grpc"], "--token", WORKER_TOKEN)
    assert refused.returncode == 1
    assert "unauthenticated" in refused.stderr.lower()  # a worker token is no client token


def test_workers_lists_each_connected_worker_with_its_agents_and_slots(
    served: ServeProcess, workers: Callable[..., WorkerProcess]
) -> None:
    workers(WORKER_TOKEN, "--slots", "3")
    shown = served.cli("workers")
    assert shown.returncode == 0, shown.stderr
    (line,) = shown.stdout.splitlines()
    assert line.startswith("worker-a")
    assert "0/3 busy" in line
    assert "remote-echo@1.0.0" in line

    listed = served.cli("workers", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = [json.loads(text) for text in listed.stdout.splitlines()]
    assert row["type"] == "worker"
    assert (row["name"], row["slots"]) == ("worker-a", 3)
    assert row["library"].startswith("arcp-grpc-python/")
    agents = {agent["name"]: agent["versions"] for agent in row["agents"]}
    assert agents["remote-echo"] == ["1.0.0"]
