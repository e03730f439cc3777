"""A real `arcp-grpc serve` for the client's tests (SQLite in a temporary directory, gRPC
on 127.0.0.1 port 0), and a client on it with the serve's own dev token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from arcp_grpc.client import Client
from tests.serve_process import ServeProcess

__all__ = ["SERVE_ARGS"]

SERVE_ARGS = ("--grpc-port", "0", "--gateway-port", "0", "--no-metrics")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One serve per test module: the tests here make jobs of their own and read only those."""
    process = ServeProcess(tmp_path_factory.mktemp("serve"), *SERVE_ARGS)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def client(served: ServeProcess) -> AsyncIterator[Client]:
    async with await Client.connect(served.info["grpc"], token=served.token) as connected:
        yield connected
