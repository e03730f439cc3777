"""Target ``cluster``: this project on PostgreSQL, 1, 2 and 3 nodes, via the gateway.

Beside ``ours-gateway`` (the embedded default on SQLite) and the reference, these columns
show what a shared database costs per job and what more nodes add on the same machine.
Each repetition runs on a fresh schema of the run's PostgreSQL (``ARCP_BENCH_POSTGRES_URL``,
else ``ARCP_TEST_POSTGRES_URL``, else a throwaway server the harness starts: see
``bench.runner``). That server runs with ``fsync=off``, as the test suite's does; one more
column runs one node on a second server at PostgreSQL's durable defaults (``fsync=on``,
``synchronous_commit=on``, ``full_page_writes=on``: what operators run), given by
``ARCP_BENCH_POSTGRES_DURABLE_URL`` or started by the harness. The lean client drives them;
its sessions alternate between the nodes.
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

__all__ = ["DATABASES", "POSTGRES_DURABLE_ENV", "POSTGRES_ENV", "columns"]

#: Where the harness puts the run's PostgreSQL server URLs for the launchers.
POSTGRES_ENV = "ARCP_BENCH_POSTGRES_URL"
POSTGRES_DURABLE_ENV = "ARCP_BENCH_POSTGRES_DURABLE_URL"

#: `Column.database` → (its URL's environment variable, the server settings the harness
#: starts it with after `scripts/test-postgres`'s own, which turn fsync off).
DATABASES = {
    "fast": (POSTGRES_ENV, ""),
    "durable": (
        POSTGRES_DURABLE_ENV,
        "-c fsync=on -c full_page_writes=on -c synchronous_commit=on",
    ),
}


def _nodes(count: int, database: str) -> Any:
    def args(_workdir: Path) -> tuple[str, ...]:
        return ("--postgres", os.environ[DATABASES[database][0]], "--nodes", str(count))

    return args


def _spread(info: dict[str, Any]) -> Driver:
    return SpreadDriver([LeanDriver(url, BENCH_TOKEN) for url in info["url"].split(",")])


def _column(key: str, label: str, count: int, database: str) -> Column:
    return Column(
        key=key,
        label=label,
        target="cluster",
        server_module="bench.servers.cluster",
        server_args=_nodes(count, database),
        make_driver=_spread,
        baseline=REFERENCE_LEAN,
        measures_rss=False,
        database=database,
    )


def columns() -> list[Column]:
    """1, 2 and 3 nodes on PostgreSQL with fsync off, and 1 node at the durable defaults,
    each with the lean client."""
    return [
        *(
            _column(
                f"pg{count}-lean",
                f"ours on PostgreSQL, {count} node{'s' if count > 1 else ''} · lean client",
                count,
                "fast",
            )
            for count in (1, 2, 3)
        ),
        _column(
            "pg1d-lean",
            "ours on PostgreSQL (fsync on), 1 node · lean client",
            1,
            "durable",
        ),
    ]
