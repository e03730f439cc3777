"""Whether a node runs alone or in a cluster is the store's explicit answer (`Store.cluster`),
not a guess from its shape: a store that says None runs as a single node, whatever methods it
has, and one that names a `ClusterStore` gets followed, cancelled and taken over across nodes
through it (DESIGN.md, scale-out)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.runtime import JobRuntime
from arcp_grpc.store import ClusterStore
from arcp_grpc.store.postgres import PostgresStore
from arcp_grpc.store.secretbox import SecretBox
from arcp_grpc.store.sqlite import SQLiteStore

_NOWHERE = "postgresql://nobody@127.0.0.1:1/none"  # never connected: no store is opened


def _runtime(store: SQLiteStore | PostgresStore) -> JobRuntime:
    return JobRuntime(store, AgentRegistry(), SecretBox(os.urandom(32)))


class _SharedSQLite(SQLiteStore):
    """A store that says it is shared: the runtime must take its word for it."""

    def __init__(self, path: Path, cluster: ClusterStore) -> None:
        super().__init__(path)
        self._shared_as = cluster

    @property
    def cluster(self) -> ClusterStore:  # type: ignore[override]
        return self._shared_as


async def test_a_store_without_cluster_support_runs_as_a_single_node(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "arcp.sqlite3")
    assert store.cluster is None
    assert _runtime(store).cluster is None


async def test_cluster_support_is_found_through_the_explicit_capability(tmp_path: Path) -> None:
    postgres = PostgresStore(_NOWHERE, node_id="node_a")
    assert postgres.cluster is postgres
    assert _runtime(postgres).cluster is postgres
    # The same answer from a store of another shape: the attribute decides, not the methods.
    claimed = _SharedSQLite(tmp_path / "arcp.sqlite3", postgres)
    assert _runtime(claimed).cluster is postgres


def test_the_cluster_protocol_is_not_guessed_from_a_stores_shape() -> None:
    """`ClusterStore` is not runtime-checkable: a structural check on its members would run
    a store that lacks one of them as a single node without a word."""
    with pytest.raises(TypeError):
        isinstance(PostgresStore(_NOWHERE, node_id="node_a"), ClusterStore)  # type: ignore[misc]
