"""Two `serve` processes on one PostgreSQL schema: the cluster the cluster tests drive,
each node with its core and its gateway, everything over real sockets (DESIGN.md,
scale-out). Shared by the test modules that need a cluster, each choosing its own
extra configuration (caps, timeouts) on top of the common one.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from tests.serve_process import ServeProcess

__all__ = ["Cluster", "node_process", "running_cluster", "write_cluster_config"]


@dataclass
class Cluster:
    a: ServeProcess
    b: ServeProcess

    def grpc(self, node: ServeProcess) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(node.info["grpc"])


def write_cluster_config(
    tmp_path: Path,
    store_url: str,
    *,
    node_timeout_sec: float,
    store_extra: str = "",
    extra: str = "",
) -> Path:
    """One configuration for every node: the store, its shared key, the tokens of alice
    and bob, the cluster's timing; `store_extra` (more `[store]` settings) and `extra`
    (more TOML, e.g. a `[limits]` table)."""
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
{store_extra}
[cluster]
node_timeout_sec = {node_timeout_sec}
heartbeat_sec = 0.25
{extra}
"""
    )
    return config


def node_process(tmp_path: Path, config: Path, name: str, *role: str) -> ServeProcess:
    """A node (not yet started) named `node-NAME`, with its own working directory."""
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


@contextmanager
def running_cluster(tmp_path: Path, config: Path) -> Iterator[Cluster]:
    """Nodes a and b started on `config`; both stopped at the end, whatever happened."""
    nodes = [node_process(tmp_path, config, name) for name in ("a", "b")]
    try:
        for node in nodes:
            node.start()
        yield Cluster(*nodes)
    finally:
        for node in nodes:
            node.stop()
