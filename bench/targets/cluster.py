"""Target ``cluster``: this project on PostgreSQL, one node and two nodes, via the gateway.

Beside ``ours-gateway`` (the embedded default on SQLite) and the reference, these columns
show what a shared database costs per job and what a second node adds on the same machine.
Each repetition runs on a fresh schema of the run's PostgreSQL (``ARCP_BENCH_POSTGRES_URL``,
else ``ARCP_TEST_POSTGRES_URL``, else a throwaway server the harness starts: see
``bench.runner``). The lean client drives them; its sessions alternate between the nodes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.loadgen.base import Driver, SpreadDriver
from bench.loadgen.lean import LeanDriver
from bench.servers._common import BENCH_TOKEN
from bench.targets import Column
from bench.targets.reference import REFERENCE_LEAN

__all__ = ["POSTGRES_ENV", "columns"]

#: Where the harness puts the run's PostgreSQL server URL for the launchers.
POSTGRES_ENV = "ARCP_BENCH_POSTGRES_URL"


def _nodes(count: int) -> Any:
    def args(_workdir: Path) -> tuple[str, ...]:
        return ("--postgres", os.environ[POSTGRES_ENV], "--nodes", str(count))

    return args


def _spread(info: dict[str, Any]) -> Driver:
    return SpreadDriver([LeanDriver(url, BENCH_TOKEN) for url in info["url"].split(",")])


def columns() -> list[Column]:
    """One node and two nodes on PostgreSQL, each with the lean client."""
    return [
        Column(
            key=f"pg{count}-lean",
            label=f"ours on PostgreSQL, {count} node{'s' if count > 1 else ''} · lean client",
            target="cluster",
            server_module="bench.servers.cluster",
            server_args=_nodes(count),
            make_driver=_spread,
            baseline=REFERENCE_LEAN,
            measures_rss=False,
        )
        for count in (1, 2)
    ]
