"""The core's side of provisioned credentials (§9.8): issue, rotate, revoke, remember.

Every credential a provisioner issues is recorded (sealed) in the store's
ledger in the same transaction as its job, and marked revoked only once the
provisioner confirmed it. Whatever is still unrevoked when a process starts
is revoked then (§14: revocation is a durability concern).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Container, Sequence
from datetime import datetime

from arcp_grpc._lease import Lease
from arcp_grpc._secretbox import SecretBox
from arcp_grpc.credentials import CredentialProvisioner, CredentialRequest
from arcp_grpc.errors import InvalidRequest
from arcp_grpc.store import CredentialEntry, Store
from arcp_grpc.v1 import lease_pb2

__all__ = ["CredentialLedger"]

log = logging.getLogger("arcp_grpc.credentials")


class CredentialLedger:
    """Credentials of jobs, kept by one provisioner and recorded in the store."""

    def __init__(
        self,
        provisioner: CredentialProvisioner,
        store: Store,
        box: SecretBox,
        *,
        revoke_attempts: int,
    ) -> None:
        self.provisioner = provisioner
        self._store = store
        self._box = box
        self._attempts = revoke_attempts

    async def issue(
        self, job_id: str, lease: Lease, expires_at: datetime | None
    ) -> list[lease_pb2.Credential]:
        """Credentials for a job whose lease reaches a cost-bearing upstream: one that
        grants `model.use` or `cost.budget` (§9.8). Others get none: a credential
        scoped to nothing would grant nothing."""
        if "model.use" not in lease.grants and "cost.budget" not in lease.grants:
            return []
        return await self.provisioner.issue(
            CredentialRequest(
                job_id=job_id,
                model_patterns=lease.grants.get("model.use", ()),
                budget=lease.budget_amounts(),
                expires_at=expires_at,
            )
        )

    def entries(
        self, job_id: str, credentials: Sequence[lease_pb2.Credential]
    ) -> list[CredentialEntry]:
        """Ledger rows (sealed: the values are secrets) to store with the job."""
        return [self._entry(job_id, credential) for credential in credentials]

    def _entry(self, job_id: str, credential: lease_pb2.Credential) -> CredentialEntry:
        sealed = self._box.seal(credential.SerializeToString(), credential.id.encode())
        return CredentialEntry(credential.id, job_id, self.provisioner.name, sealed)

    async def rotate(
        self, job_id: str, credentials: list[lease_pb2.Credential], credential_id: str
    ) -> lease_pb2.Credential:
        """Re-issue one credential in place; the prior value is revoked (§9.8.2)."""
        index = next((i for i, c in enumerate(credentials) if c.id == credential_id), None)
        if index is None:
            raise InvalidRequest(f"job has no credential {credential_id!r}")
        old = credentials[index]
        new = await self.provisioner.rotate(old)
        credentials[index] = new
        await self._store.replace_credential(self._entry(job_id, new))
        await self._revoke(old)
        return new

    async def revoke_all(self, credentials: Sequence[lease_pb2.Credential]) -> None:
        """Revoke a finished job's credentials; failures stay in the ledger for later."""
        for credential in credentials:
            if await self._revoke(credential):
                await self._store.mark_revoked(credential.id)

    async def sweep(self, running: Container[str]) -> None:
        """Revoke what a previous process left live, except running jobs' credentials."""
        for entry in await self._store.live_credentials():
            if entry.job_id in running:
                continue
            if entry.provisioner != self.provisioner.name:
                log.error(
                    "credential %s of job %s needs provisioner %r, which is not configured",
                    entry.credential_id,
                    entry.job_id,
                    entry.provisioner,
                )
                continue
            credential = lease_pb2.Credential.FromString(
                self._box.open(entry.sealed_value, entry.credential_id.encode())
            )
            if await self._revoke(credential):
                await self._store.mark_revoked(entry.credential_id)

    async def _revoke(self, credential: lease_pb2.Credential) -> bool:
        delay = 0.05
        for attempt in range(1, self._attempts + 1):
            try:
                await self.provisioner.revoke(credential)
                return True
            except Exception:
                log.warning(
                    "revoking credential %s failed (attempt %d)",
                    credential.id,
                    attempt,
                    exc_info=True,
                )
                await asyncio.sleep(delay)
                delay *= 2
        log.error("credential %s is still live; revocation retries at next start", credential.id)
        return False
