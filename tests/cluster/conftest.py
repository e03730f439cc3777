"""Two `serve` processes on one PostgreSQL database: the fixtures every cluster test
shares (DESIGN.md, scale-out). Each node has its core and its gateway, on real sockets;
`cluster.node_timeout_sec` is small so that a node's death is noticed quickly. A module
needing other settings (caps, timeouts) builds its own from `tests.cluster.nodes`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.cluster.nodes import Cluster, running_cluster, write_cluster_config
from tests.conftest import postgres_schema

__all__ = ["TIMEOUT"]

TIMEOUT = 2.0  # cluster.node_timeout_sec for these nodes: a kill is noticed quickly


@pytest.fixture
async def store_url(postgres_server: str) -> AsyncIterator[str]:
    async with postgres_schema(postgres_server) as url:
        yield url


@pytest.fixture
def cluster_config(tmp_path: Path, store_url: str) -> Path:
    return write_cluster_config(tmp_path, store_url, node_timeout_sec=TIMEOUT)


@pytest.fixture
def cluster(tmp_path: Path, cluster_config: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, cluster_config) as nodes:
        yield nodes
