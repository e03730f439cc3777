"""Provisioned credentials (§9.8): the provisioner interface and a development one.

A provisioner mints short-lived credentials for one job at a time, scoped to
the job's lease, and revokes them when the job ends. The core records every
credential it has not yet revoked in the store, so a revocation that fails
(or is interrupted by a restart) is retried until it succeeds (§14).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from arcp_grpc.base.ids import new_id
from arcp_grpc.lease import format_amount
from arcp_grpc.v1 import lease_pb2

__all__ = ["CredentialProvisioner", "CredentialRequest", "DevProvisioner"]


@dataclass(frozen=True, slots=True)
class CredentialRequest:
    """What a provisioner needs to scope a credential to a job (§9.8.3)."""

    job_id: str
    model_patterns: tuple[str, ...]
    budget: Mapping[str, Decimal]
    expires_at: datetime | None


class CredentialProvisioner(Protocol):
    """Issues, rotates and revokes upstream credentials. Raising from `revoke`
    means "try again later": the core keeps the credential in its ledger."""

    name: str

    async def issue(self, request: CredentialRequest) -> list[lease_pb2.Credential]: ...

    async def rotate(self, credential: lease_pb2.Credential) -> lease_pb2.Credential: ...

    async def revoke(self, credential: lease_pb2.Credential) -> None: ...


class DevProvisioner:
    """A self-contained provisioner for development and tests: it is its own
    upstream, so `is_live` shows exactly which values still carry authority."""

    name = "dev"

    def __init__(self, endpoint: str = "http://127.0.0.1/dev-llm/v1", profile: str = "openai"):
        self._endpoint = endpoint
        self._profile = profile
        self._live: set[str] = set()

    def is_live(self, value: str) -> bool:
        return value in self._live

    async def issue(self, request: CredentialRequest) -> list[lease_pb2.Credential]:
        credential = lease_pb2.Credential(
            id=new_id("cred"),
            scheme="bearer",
            value=self._mint(),
            endpoint=self._endpoint,
            profile=self._profile,
        )
        constraints = credential.constraints
        if request.budget:
            constraints.capabilities["cost.budget"].patterns.extend(
                f"{currency}:{format_amount(amount)}"
                for currency, amount in sorted(request.budget.items())
            )
        if request.model_patterns:
            constraints.capabilities["model.use"].patterns.extend(request.model_patterns)
        if request.expires_at is not None:
            constraints.expires_at.FromDatetime(request.expires_at)
        return [credential]

    async def rotate(self, credential: lease_pb2.Credential) -> lease_pb2.Credential:
        rotated = lease_pb2.Credential()
        rotated.CopyFrom(credential)
        rotated.value = self._mint()
        return rotated

    async def revoke(self, credential: lease_pb2.Credential) -> None:
        self._live.discard(credential.value)

    def _mint(self) -> str:
        value = "sk-dev-" + secrets.token_urlsafe(24)
        self._live.add(value)
        return value
