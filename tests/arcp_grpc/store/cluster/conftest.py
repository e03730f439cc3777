"""Several `PostgresStore` instances on one schema are several nodes of one cluster:
the fixtures the cluster store tests share (PostgreSQL only)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from arcp_grpc.store import JobRow
from arcp_grpc.store.postgres.store import PostgresStore
from tests.conftest import StoreFactory, postgres_schema

__all__ = ["Nodes", "job", "node", "store_url"]

Nodes = Callable[[], Awaitable[PostgresStore]]


@pytest.fixture
async def store_url(postgres_server: str) -> AsyncIterator[str]:
    """Only PostgreSQL: these are a shared store's guarantees."""
    async with postgres_schema(postgres_server) as url:
        yield url


@pytest.fixture
def node(make_store: StoreFactory) -> Nodes:
    """Open another node on the test's schema (closed at teardown by `make_store`)."""

    async def factory() -> PostgresStore:
        store = await make_store()
        assert isinstance(store, PostgresStore)
        return store

    return factory


def job(job_id: str, principal: str = "alice") -> JobRow:
    return JobRow(job_id, principal, "echo@1.0.0", 1, time.time(), "1" * 32, "", b"s", b"a")
