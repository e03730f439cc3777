"""Targets 3 and 4: this project through its WebSocket gateway, and over JobService directly.

They run only when the planned API imports: ``arcp_grpc.server.start_core``/``CoreConfig``
for both, plus ``gateway.server.start_gateway``/``GatewayConfig`` for the gateway columns.
Until then the report says "not available yet" for them, with the import error.
"""

from __future__ import annotations

import importlib
import uuid
from pathlib import Path
from typing import Any

from bench.loadgen.base import Driver
from bench.loadgen.client import ClientDriver
from bench.loadgen.grpc_direct import GrpcDriver
from bench.loadgen.lean import LeanDriver
from bench.servers._common import BENCH_TOKEN
from bench.targets import Column
from bench.targets.reference import REFERENCE_CLIENT, REFERENCE_LEAN

__all__ = ["columns", "missing"]


def missing(module: str, names: tuple[str, ...]) -> str | None:
    """Why ``module`` cannot serve the benchmark (``None`` when every name imports)."""
    try:
        loaded = importlib.import_module(module)
    except Exception as exc:  # any failure to import means "not available", with its reason
        return f"`{module}` does not import ({type(exc).__name__}: {exc})"
    absent = [name for name in names if not hasattr(loaded, name)]
    if absent:
        return f"`{module}` has no {', '.join(absent)}"
    return None


def _core_args(workdir: Path) -> tuple[str, ...]:
    data_dir = workdir / f"core-data-{uuid.uuid4().hex[:8]}"
    data_dir.mkdir()
    return ("--data-dir", str(data_dir))


def _gateway_args(workdir: Path) -> tuple[str, ...]:
    return (*_core_args(workdir), "--gateway")


def _client(info: dict[str, Any]) -> Driver:
    return ClientDriver(info["url"], BENCH_TOKEN)


def _lean(info: dict[str, Any]) -> Driver:
    return LeanDriver(info["url"], BENCH_TOKEN)


def _grpc(info: dict[str, Any]) -> Driver:
    return GrpcDriver(info["grpc"], BENCH_TOKEN)


def columns() -> list[Column]:
    """Gateway columns (published and lean client) and the JobService column."""
    core = missing("arcp_grpc.server", ("start_core", "CoreConfig"))
    gateway = core or missing("gateway.server", ("start_gateway", "GatewayConfig"))
    return [
        Column(
            key="gw-client",
            label="ours via gateway · published client",
            target="ours-gateway",
            server_module="bench.servers.ours",
            server_args=_gateway_args,
            make_driver=_client,
            baseline=REFERENCE_CLIENT,
            measures_rss=False,
            unavailable=gateway,
        ),
        Column(
            key="gw-lean",
            label="ours via gateway · lean client",
            target="ours-gateway",
            server_module="bench.servers.ours",
            server_args=_gateway_args,
            make_driver=_lean,
            baseline=REFERENCE_LEAN,
            measures_rss=True,
            unavailable=gateway,
        ),
        Column(
            key="grpc",
            label="ours over gRPC JobService",
            target="ours-grpc",
            server_module="bench.servers.ours",
            server_args=_core_args,
            make_driver=_grpc,
            baseline=REFERENCE_LEAN,
            measures_rss=True,
            unavailable=core,
            job_api=True,
        ),
    ]
