"""Two `serve` processes on one PostgreSQL database: the fixtures every cluster test
shares (DESIGN.md, scale-out). Each node has its core and its gateway, on real sockets;
`cluster.node_timeout_sec` is small so that a node's death is noticed quickly."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.conftest import postgres_schema
from tests.serve_process import ServeProcess

__all__ = ["TIMEOUT", "Cluster", "node"]

TIMEOUT = 2.0  # cluster.node_timeout_sec for these nodes: a kill is noticed quickly


@dataclass
class Cluster:
    a: ServeProcess
    b: ServeProcess

    def grpc(self, node: ServeProcess) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(node.info["grpc"])


@pytest.fixture
async def store_url(postgres_server: str) -> AsyncIterator[str]:
    async with postgres_schema(postgres_server) as url:
        yield url


@pytest.fixture
def cluster_config(tmp_path: Path, store_url: str) -> Path:
    """One configuration for every node: the store, its shared key, the tokens."""
    key_file = tmp_path / "cluster.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    config = tmp_path / "cluster.toml"
    config.write_text(
        f"""
[auth]
dev_token = false
tokens = {{ "tok-alice" = "alice", "tok-bob" = "bob" }}
[store]
url = "{store_url}"
key_file = "{key_file}"
[cluster]
node_timeout_sec = {TIMEOUT}
heartbeat_sec = 0.25
"""
    )
    return config


def node(tmp_path: Path, config: Path, name: str, *role: str) -> ServeProcess:
    """A `serve` process (all of it, or the `role` given) named `node-NAME`."""
    workdir = tmp_path / name
    workdir.mkdir()
    return ServeProcess(
        workdir,
        *role,
        "--config",
        str(config),
        "--grpc-port",
        "0",
        "--gateway-port",
        "0",
        "--no-metrics",
        "--set",
        f"cluster.node_name=node-{name}",
    )


@pytest.fixture
def cluster(tmp_path: Path, cluster_config: Path) -> Iterator[Cluster]:
    nodes = [node(tmp_path, cluster_config, name) for name in ("a", "b")]
    try:
        for each in nodes:
            each.start()
        yield Cluster(*nodes)
    finally:
        for each in nodes:
            each.stop()
