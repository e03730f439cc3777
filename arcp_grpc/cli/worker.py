"""`arcp-grpc worker`: host agents for remote cores (issue 23, docs/workers.md).

    arcp-grpc worker --core HOST:PORT[,HOST:PORT...] --token TOKEN --agents MODULE:ATTR

The agents are the same `module:attribute` registries `serve --agents` loads, run
unchanged. The token is a worker token (`[auth.workers]` on the core; also
`ARCP_TOKEN`); a core that refuses it ends the command with exit 2 and one line,
since no retry can help. A broken stream reconnects to any listed core.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from arcp_grpc.config import ConfigError, load_agents
from arcp_grpc.process import event_loop
from arcp_grpc.worker import run_worker

__all__ = ["add_worker_parser", "run_worker_command"]


def add_worker_parser(commands: argparse._SubParsersAction[Any]) -> None:
    worker = commands.add_parser("worker", help="host agents for remote cores (a worker)")
    worker.add_argument(
        "--core", required=True, help="the cores' gRPC addresses, HOST:PORT[,HOST:PORT...]"
    )
    worker.add_argument("--token", help="worker token (ARCP_TOKEN)")
    worker.add_argument(
        "--agents",
        action="append",
        required=True,
        metavar="MODULE:ATTR",
        help="an AgentRegistry or a callable returning one (repeatable)",
    )
    worker.add_argument("--slots", type=int, default=4, help="jobs run at once (4)")
    worker.add_argument("--ca", help="PEM roots: use TLS to the cores (ARCP_TLS_CA)")


def run_worker_command(args: argparse.Namespace) -> int:
    """Serve until interrupted; `WorkerRefused` (exit 2) reaches `main`'s one-line report."""
    token = args.token or os.environ.get("ARCP_TOKEN", "")
    if not token:
        raise ConfigError("worker: no token; pass --token or set ARCP_TOKEN")
    if args.slots < 1:
        raise ConfigError(f"worker: --slots must be at least 1, got {args.slots}")
    registry = load_agents(tuple(args.agents))
    assert registry is not None  # --agents is required
    ca_file = args.ca or os.environ.get("ARCP_TLS_CA")
    ca = Path(ca_file).read_bytes() if ca_file else None
    cores = [address.strip() for address in args.core.split(",") if address.strip()]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    event_loop.run(run_worker(cores, token=token, registry=registry, slots=args.slots, ca=ca))
    return 0
