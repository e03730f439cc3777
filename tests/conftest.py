"""Shared fixtures: a real core (gRPC on 127.0.0.1, SQLite file in tmp_path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from arcp_grpc.server import CoreConfig, RunningCore, start_core
from arcp_grpc.v1 import job_service_pb2_grpc

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}


def bearer(token: str = "tok-alice") -> tuple[tuple[str, str], ...]:
    """gRPC call metadata for a bearer token."""
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def core_config(tmp_path: Path) -> CoreConfig:
    return CoreConfig(data_dir=tmp_path / "data", tokens=TOKENS)


@pytest.fixture
async def core(core_config: CoreConfig) -> AsyncIterator[RunningCore]:
    running = await start_core(core_config)
    try:
        yield running
    finally:
        await running.stop(grace=0.5)


@pytest.fixture
async def channel(core: RunningCore) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(core.grpc_address) as chan:
        yield chan


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> job_service_pb2_grpc.JobServiceStub:
    return job_service_pb2_grpc.JobServiceStub(channel)
