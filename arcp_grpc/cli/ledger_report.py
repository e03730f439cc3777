"""The operator's view of the credential ledger: `arcp-grpc credentials --unrevoked`.

It reads the store directly (the SQLite file read-only, or the PostgreSQL
database), not through the core. Why not an RPC: the listing is for the
moment something is wrong, so it must work while the core is down or cannot
start; JobService is principal-scoped, and an operator call on it would need
a second kind of token on the same port. Whoever may read the store is the
operator already, and the listing shows no credential value (only ids, job,
provisioner, age and why it is due), so it needs neither the store key nor a
network surface of its own (§14: "surface unrevocable credentials to
operators").
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from arcp_grpc.store import StoreUnavailable, UnrevokedCredential
from arcp_grpc.store.url import postgres_dsn, sqlite_path

__all__ = ["unrevoked"]


async def unrevoked(store_url: str, data_dir: Path) -> list[UnrevokedCredential]:
    """Every credential value due for revocation and still live, oldest first."""
    path = sqlite_path(store_url, data_dir)
    if path is not None:
        return _from_sqlite(path)
    import asyncpg  # only for a PostgreSQL store

    from arcp_grpc.store.postgres.credentials import unrevoked_credentials

    try:
        conn = await asyncpg.connect(postgres_dsn(store_url))
    except (OSError, asyncpg.PostgresError) as exc:
        raise StoreUnavailable(f"cannot reach the PostgreSQL store: {exc}") from None
    try:
        return await unrevoked_credentials(conn)
    finally:
        await conn.close()


def _from_sqlite(path: Path) -> list[UnrevokedCredential]:
    from arcp_grpc.store.sqlite.store import unrevoked_credentials

    if not path.is_file():
        raise StoreUnavailable(f"no store at {path} (give --data-dir or --store)")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return unrevoked_credentials(conn)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot read the store at {path}: {exc}") from None
    finally:
        conn.close()
