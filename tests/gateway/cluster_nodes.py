"""`serve` nodes of a cluster on one PostgreSQL database, for the cluster tests.

One configuration file serves every node (the store, its shared key, the tokens);
each node is a real `serve` child process with its own working directory.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from tests.serve_process import ServeProcess

__all__ = ["cluster_config_file", "node"]


def cluster_config_file(tmp_path: Path, store_url: str, *, node_timeout_sec: float) -> Path:
    """A configuration every node of one cluster shares."""
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
node_timeout_sec = {node_timeout_sec}
heartbeat_sec = 0.25
"""
    )
    return config


def node(tmp_path: Path, config: Path, name: str, *role: str) -> ServeProcess:
    """A node (not started) named `node-NAME`; `role` is e.g. ("core",) or
    ("gateway", "--core", "A,B") and may carry further flags."""
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
