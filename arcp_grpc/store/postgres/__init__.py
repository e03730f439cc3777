"""The cluster store: PostgreSQL shared by several core nodes, its writer and its schema."""

from __future__ import annotations

from arcp_grpc.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
