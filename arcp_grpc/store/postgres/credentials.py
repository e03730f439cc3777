"""The cluster store's credential ledger (§9.8.2, §14): a row per minted value, kept
until its revocation at the upstream is confirmed, so a value whose revocation failed
is never forgotten. Every node sees every value; which one a node may revoke depends
on where its job runs (`live_credentials`).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from arcp_grpc.store.postgres.connections import PostgresConnections, Reads
from arcp_grpc.store.protocol import CredentialEntry, UnrevokedCredential
from arcp_grpc.store.rows import UNREVOKED_CREDENTIALS

__all__ = ["PostgresCredentials", "insert_credentials", "unrevoked_credentials"]


class PostgresCredentials(PostgresConnections):
    """`CredentialLedger` on the shared database."""

    async def mark_revoked(self, credential_id: str, version: int) -> None:
        await self._execute(
            "UPDATE credentials SET revoked_at = extract(epoch FROM now())"
            " WHERE credential_id = $1 AND version = $2",
            credential_id,
            version,
        )

    async def record_credentials(self, entries: Sequence[CredentialEntry]) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await insert_credentials(conn, entries)

        await self._writes().write(op)

    async def rotate_credential(self, old_id: str, old_version: int, new: CredentialEntry) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE credentials SET retired = TRUE WHERE credential_id = $1 AND version = $2",
                old_id,
                old_version,
            )
            await insert_credentials(conn, [new])

        await self._writes().write(op)

    async def live_credentials(self) -> list[CredentialEntry]:
        """Unrevoked values of this node's jobs, of finished jobs, retired ones and those
        of no job (a lost idempotent race): a running job elsewhere still uses its own.
        Two nodes may both revoke a due value; revoking twice is harmless."""
        rows = await self._reads().fetch(
            "SELECT c.credential_id, c.job_id, c.provisioner, c.sealed_value, c.version,"
            " c.retired FROM credentials c LEFT JOIN jobs j ON j.job_id = c.job_id"
            " WHERE c.revoked_at IS NULL AND (c.retired OR j.job_id IS NULL"
            " OR j.completed_at IS NOT NULL OR j.owner_node = $1)",
            self.node_id,
        )
        return [CredentialEntry(*r) for r in rows]

    async def unrevoked_credentials(self) -> list[UnrevokedCredential]:
        return await unrevoked_credentials(self._reads())


async def insert_credentials(conn: asyncpg.Connection, entries: Sequence[CredentialEntry]) -> None:
    """Record minted values, inside the caller's transaction (a job's creation, a rotation)."""
    await conn.executemany(
        "INSERT INTO credentials (credential_id, version, job_id, provisioner, sealed_value,"
        " retired) VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (e.credential_id, e.version, e.job_id, e.provisioner, e.sealed_value, e.retired)
            for e in entries
        ],
    )


async def unrevoked_credentials(conn: asyncpg.Connection | Reads) -> list[UnrevokedCredential]:
    """Values due for revocation and still live on any node (§14), oldest first; a
    plain function of a connection so the operator CLI needs no store of its own."""
    rows = await conn.fetch(UNREVOKED_CREDENTIALS)
    return [UnrevokedCredential(*r) for r in rows]
