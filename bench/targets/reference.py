"""Target 1: the reference runtime (``arcp.runtime.ARCPRuntime`` over WebSocket)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.loadgen.base import Driver
from bench.loadgen.client import ClientDriver
from bench.loadgen.lean import LeanDriver
from bench.servers._common import BENCH_TOKEN
from bench.targets import Column

__all__ = ["REFERENCE_CLIENT", "REFERENCE_LEAN", "columns"]

REFERENCE_CLIENT = "ref-client"
REFERENCE_LEAN = "ref-lean"


def _no_args(_workdir: Path) -> tuple[str, ...]:
    return ()


def _client(info: dict[str, Any]) -> Driver:
    return ClientDriver(info["url"], BENCH_TOKEN)


def _lean(info: dict[str, Any]) -> Driver:
    return LeanDriver(info["url"], BENCH_TOKEN)


def columns() -> list[Column]:
    """The reference runtime driven by the published client and by the lean client."""
    return [
        Column(
            key=REFERENCE_CLIENT,
            label="reference · published client",
            target="reference",
            server_module="bench.servers.reference",
            server_args=_no_args,
            make_driver=_client,
            baseline=None,
            measures_rss=False,
        ),
        Column(
            key=REFERENCE_LEAN,
            label="reference · lean client",
            target="reference",
            server_module="bench.servers.reference",
            server_args=_no_args,
            make_driver=_lean,
            baseline=None,
            measures_rss=True,
        ),
    ]
