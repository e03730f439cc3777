"""The core's side of provisioned credentials (§9.8): issue, rotate, revoke, remember.

Every value a provisioner mints is recorded (sealed) in the store's ledger as
a row of its own, keyed by credential id and version, and marked revoked only
once the provisioner confirmed it (§14: revocation is a durability concern):

- a new job's values go in with the job, in one transaction;
- a submit that loses an idempotent race records its values before revoking
  them, so a failed revocation is retried like any other;
- a rotation records the new value and retires the old in one transaction,
  then revokes the old: the ledger never overwrites a value it still owes.

`sweep` revokes whatever is due and still live (retired values, values of
ended jobs or of no job); the runtime runs it at start and periodically, and
reports what it could not revoke (metric, ERROR log, `arcp-grpc credentials
--unrevoked`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Container, Sequence
from datetime import datetime

from arcp_grpc.credentials import CredentialProvisioner, CredentialRequest
from arcp_grpc.errors import InvalidRequest
from arcp_grpc.lease import Lease
from arcp_grpc.runtime.observe import RuntimeObserver
from arcp_grpc.store import CredentialEntry, Store
from arcp_grpc.store.secretbox import SecretBox
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
        observer: RuntimeObserver | None = None,
    ) -> None:
        self.provisioner = provisioner
        self._store = store
        self._box = box
        self._attempts = revoke_attempts
        self._observer = observer or RuntimeObserver()
        # The live version of each credential of a running job here (a rotation bumps it).
        self._versions: dict[str, int] = {}
        # Values being revoked right now, which a concurrent sweep leaves alone.
        self._revoking: set[tuple[str, int]] = set()

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
        return [self._entry(job_id, credential, 0) for credential in credentials]

    def _entry(
        self, job_id: str, credential: lease_pb2.Credential, version: int, *, retired: bool = False
    ) -> CredentialEntry:
        sealed = self._box.seal(credential.SerializeToString(), credential.id.encode())
        return CredentialEntry(
            credential.id, job_id, self.provisioner.name, sealed, version, retired
        )

    async def discard(self, job_id: str, credentials: Sequence[lease_pb2.Credential]) -> None:
        """Revoke the values of a submit that was not accepted (it lost an idempotent
        race), recording them first: nothing else would remember them (§14)."""
        if not credentials:
            return
        await self._store.record_credentials(
            [self._entry(job_id, credential, 0, retired=True) for credential in credentials]
        )
        await self.revoke_all(credentials)

    async def rotate(
        self, job_id: str, credentials: list[lease_pb2.Credential], credential_id: str
    ) -> lease_pb2.Credential:
        """Re-issue one credential in place; the prior value is revoked (§9.8.2), and
        stays in the ledger, retired, until the provisioner confirms it."""
        index = next((i for i, c in enumerate(credentials) if c.id == credential_id), None)
        if index is None:
            raise InvalidRequest(f"job has no credential {credential_id!r}")
        old = credentials[index]
        old_version = self._versions.get(credential_id, 0)
        new = await self.provisioner.rotate(old)
        # The id stays the same across a rotation (§9.8.2) in the usual case; a provisioner
        # that gives the new value an id of its own starts that id's versions at 0.
        version = old_version + 1 if new.id == old.id else 0
        await self._store.rotate_credential(old.id, old_version, self._entry(job_id, new, version))
        credentials[index] = new
        self._versions.pop(credential_id, None)
        self._versions[new.id] = version
        await self._revoke_and_mark(old, old_version)
        return new

    async def revoke_all(self, credentials: Sequence[lease_pb2.Credential]) -> None:
        """Revoke a finished job's credentials; failures stay in the ledger for later."""
        for credential in credentials:
            await self._revoke_and_mark(credential, self._versions.pop(credential.id, 0))

    async def sweep(self, running: Container[str]) -> int:
        """Revoke every due value still live (a previous process's, a retired one, one a
        revocation failed on), except running jobs' current values. Returns how many
        due values are still live afterwards."""
        left = 0
        for entry in await self._store.live_credentials():
            if (entry.job_id in running and not entry.retired) or (
                (entry.credential_id, entry.version) in self._revoking
            ):
                continue
            if entry.provisioner != self.provisioner.name:
                log.error(
                    "credential %s of job %s needs provisioner %r, which is not configured",
                    entry.credential_id,
                    entry.job_id,
                    entry.provisioner,
                )
                left += 1
                continue
            credential = lease_pb2.Credential.FromString(
                self._box.open(entry.sealed_value, entry.credential_id.encode())
            )
            if not await self._revoke_and_mark(credential, entry.version):
                left += 1
        self._observer.credentials_unrevoked(left)
        return left

    async def _revoke_and_mark(self, credential: lease_pb2.Credential, version: int) -> bool:
        key = (credential.id, version)
        self._revoking.add(key)
        try:
            if not await self._revoke(credential):
                self._observer.revocation_failed()
                return False
            await self._store.mark_revoked(credential.id, version)
            return True
        finally:
            self._revoking.discard(key)

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
                if attempt < self._attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
        log.error(
            "credential %s is still live at its upstream; the ledger keeps it and retries"
            " (see `arcp-grpc credentials --unrevoked`)",
            credential.id,
        )
        return False
