"""The embedded store: one SQLite file in WAL mode, its writer thread and its schema."""

from __future__ import annotations

from arcp_grpc.store.sqlite.store import WAL_LIMIT, SQLiteStore

__all__ = ["WAL_LIMIT", "SQLiteStore"]
