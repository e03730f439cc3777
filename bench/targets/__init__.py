"""What the harness measures: columns (a server launcher plus a load generator) per target.

- ``reference``: the PyPI reference runtime with the published client and the lean client;
- ``ours-gateway`` / ``ours-grpc``: this project through its gateway and over JobService;
- ``ceilings``: raw ``websockets`` and raw grpc.aio (``bench.targets.ceilings``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen.base import Driver

__all__ = ["Column"]


@dataclass(frozen=True)
class Column:
    """One column of the report: a server kind driven by one kind of client.

    ``baseline`` names the reference column its ratios are taken against (the one with the
    same kind of load generator); ``unavailable`` says why it cannot run, if it cannot;
    ``job_api`` marks a JobService column, which also runs the scenarios only JobService's
    calls allow (``bench.scenarios.JOB_API_SCENARIOS``).
    """

    key: str
    label: str
    target: str
    server_module: str
    server_args: Callable[[Path], tuple[str, ...]]
    make_driver: Callable[[dict[str, Any]], Driver]
    baseline: str | None
    measures_rss: bool
    unavailable: str | None = None
    job_api: bool = False
    database: str = ""
