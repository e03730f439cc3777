"""Launch N nodes of a cluster on one PostgreSQL database (the ``cluster`` target).

Each node is ``bench.servers.ours`` in its own process (core + embedded gateway, as
``arcp-grpc serve --store postgresql://…`` runs), all on a fresh schema of the server
given by ``--postgres`` and sharing one sealing key. The ready file lists every node's
gateway URL and gRPC address, comma-separated; the load generator spreads its sessions
over them. The nodes are this process's children, in its process group, so the
harness's CPU figures (the process tree) and its stop reach them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from arcp_grpc.process import event_loop
from bench.servers._common import launcher_args, wait_for_stop, write_ready

__all__ = ["main"]

_READY_S = 60.0


async def _serve(args: Any) -> None:
    schema = "bench_" + secrets.token_hex(6)
    admin = await asyncpg.connect(args.postgres)
    await admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in args.postgres else "?"
    store_url = f"{args.postgres}{separator}search_path={schema}"
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        infos = await asyncio.to_thread(_start_nodes, args, store_url, nodes)
        write_ready(
            args.port_file,
            {
                "url": ",".join(info["url"] for info in infos),
                "grpc": ",".join(info["grpc"] for info in infos),
            },
        )
        await wait_for_stop(args.max_seconds)
    finally:
        await asyncio.to_thread(_stop_nodes, nodes)
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


def _start_nodes(
    args: Any, store_url: str, nodes: list[subprocess.Popen[bytes]]
) -> list[dict[str, Any]]:
    """Spawn the nodes (appended to `nodes` as they start) and wait until each is ready."""
    key = base64.b64encode(os.urandom(32)).decode()
    stem, workdir = Path(args.port_file).stem, Path(args.port_file).parent
    ready = []
    for index in range(args.nodes):
        port_file = workdir / f"{stem}-node{index}.json"
        data_dir = workdir / f"{stem}-node{index}-data"
        data_dir.mkdir(exist_ok=True)
        port_file.unlink(missing_ok=True)
        command = [
            *(sys.executable, "-m", "bench.servers.ours", "--gateway"),
            *("--port-file", str(port_file), "--max-seconds", str(args.max_seconds)),
            *("--data-dir", str(data_dir), "--store-url", store_url, "--store-key", key),
        ]
        nodes.append(subprocess.Popen(command, stdin=subprocess.DEVNULL))
        ready.append(port_file)
    deadline = time.monotonic() + _READY_S
    for port_file, node in zip(ready, nodes, strict=True):
        while not port_file.exists():
            if node.poll() is not None:
                raise RuntimeError(f"a node exited with {node.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError("a node was not ready in time")
            time.sleep(0.05)
    return [json.loads(path.read_text()) for path in ready]


def _stop_nodes(nodes: list[subprocess.Popen[bytes]]) -> None:
    for node in nodes:
        node.terminate()
    for node in nodes:
        try:
            node.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node.kill()


def main() -> None:
    """Entry point of ``python -m bench.servers.cluster``."""
    parser = launcher_args("arcp-grpc nodes on one PostgreSQL database", event_loop_choice=True)
    parser.add_argument("--postgres", required=True, help="a PostgreSQL server's URL")
    parser.add_argument("--nodes", type=int, default=2, help="how many nodes")
    args = parser.parse_args()
    event_loop.run(_serve(args), args.event_loop)


if __name__ == "__main__":
    main()
