"""A real `serve` with worker tokens, and real `arcp-grpc worker` processes beside it.

Every process is a child on 127.0.0.1; a worker is ready once it logged its welcome.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from arcp_grpc.client import Client
from tests.serve_process import ARCP_GRPC, ServeProcess, clean_env

__all__ = ["ROOT", "WORKER_TOKEN", "WorkerProcess", "serving_workers", "start_worker"]

ROOT = Path(__file__).resolve().parents[3]
WORKER_TOKEN = "wtok-alpha"
OTHER_WORKER_TOKEN = "wtok-beta"
AGENTS = "tests.arcp_grpc.worker.agents:registry"
_READY = 30.0  # seconds; a safety net, never what a test checks


class WorkerProcess:
    """One `arcp-grpc worker` child."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def wait_ready(self) -> None:
        """Block until the worker logged its welcome (bounded)."""
        assert self.process.stderr is not None
        deadline = time.monotonic() + _READY
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if "registered with the core" in line:
                return
            if not line and self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}")
        raise AssertionError("the worker did not register")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=10)


def start_worker(
    core: str, token: str = WORKER_TOKEN, *extra: str, ready: bool = True
) -> WorkerProcess:
    process = subprocess.Popen(
        [ARCP_GRPC, "worker", "--core", core, "--token", token, "--agents", AGENTS, *extra],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker = WorkerProcess(process)
    if ready:
        worker.wait_ready()
    return worker


@contextmanager
def serving_workers(workdir: Path, **env: str) -> Iterator[ServeProcess]:
    """A `serve` child on ports of its own, with `env` (its worker tokens) added."""
    process = ServeProcess(
        workdir,
        "--grpc-port",
        "0",
        "--gateway-port",
        "0",
        "--no-metrics",
        env=clean_env(**env),
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serving_workers(
        tmp_path_factory.mktemp("serve"),
        ARCP_AUTH_WORKERS=f"{WORKER_TOKEN}=worker-a, {OTHER_WORKER_TOKEN}=worker-b",
        ARCP_WORKERS_WAIT_SEC="2",
    ) as process:
        yield process


@pytest.fixture
def workers(served: ServeProcess) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers against the served core; each is killed at the end of the test."""
    started: list[WorkerProcess] = []

    def start(token: str = WORKER_TOKEN, *extra: str, ready: bool = True) -> WorkerProcess:
        worker = start_worker(served.info["grpc"], token, *extra, ready=ready)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
async def client(served: ServeProcess) -> AsyncIterator[Client]:
    async with await Client.connect(served.info["grpc"], token=served.token) as connected:
        yield connected
