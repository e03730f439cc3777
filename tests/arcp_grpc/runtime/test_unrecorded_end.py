"""A job's end reaches its followers only once the store holds it (issue 20, item 5).

When the store will not record the decided outcome (it refused a value, raised an error
of its own, or failed), no follower sees that outcome: they see the end the store holds,
or, if it holds none, a retryable INTERNAL_ERROR saying the end could not be recorded
(§12). Either way the job's credentials are revoked (§9.8.2).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.auth import Principal
from arcp_grpc.context import JobContext
from arcp_grpc.credentials import CredentialRequest, DevProvisioner
from arcp_grpc.runtime import JobRuntime
from arcp_grpc.store import StoreFailed, StoreRejected
from arcp_grpc.store.secretbox import SecretBox
from arcp_grpc.store.sqlite import SQLiteStore
from arcp_grpc.v1 import errors_pb2, jobs_pb2, lease_pb2
from tests.conftest import SAFETY, SPENDING


class _NoSuccessStore(SQLiteStore):
    """A real SQLite store that will not record a successful end: it raises `error()`
    instead; with `failed`, it records no end at all (as a store that failed)."""

    def __init__(self, path: Path, error: Callable[[], Exception], *, failed: bool) -> None:
        super().__init__(path)
        self._error = error
        self._failed = failed

    async def finish_job(self, job_id: str, *, outcome: bytes, **fields: Any) -> bool:
        if self._failed or jobs_pb2.JobOutcome.FromString(outcome).HasField("result"):
            raise self._error()
        return await super().finish_job(job_id, outcome=outcome, **fields)


class _RecordingProvisioner:
    """The dev provisioner, noting every credential it was asked to revoke."""

    name = "dev"

    def __init__(self) -> None:
        self._dev = DevProvisioner()
        self.revoked: list[str] = []

    async def issue(self, request: CredentialRequest) -> list[lease_pb2.Credential]:
        return await self._dev.issue(request)

    async def rotate(self, credential: lease_pb2.Credential) -> lease_pb2.Credential:
        return await self._dev.rotate(credential)

    async def revoke(self, credential: lease_pb2.Credential) -> None:
        self.revoked.append(credential.id)
        await self._dev.revoke(credential)


async def _outcome_of(runtime: JobRuntime, principal: Principal, job_id: str) -> bytes:
    async with asyncio.timeout(SAFETY):
        async for batch in runtime.watch(principal, job_id, 0):
            if batch.outcome is not None:
                return batch.outcome
    raise AssertionError("the watch ended without an outcome")


@pytest.mark.parametrize(
    ("error", "failed"),
    [
        (lambda: StoreRejected("the store refused a value: a text is too long"), False),
        (lambda: sqlite3.OperationalError("disk I/O error"), False),
        (lambda: StoreFailed("the store failed and accepts no more writes"), True),
    ],
    ids=["refused", "driver-error", "store-failed"],
)
async def test_followers_never_see_an_end_the_store_does_not_hold(
    tmp_path: Path, error: Callable[[], Exception], failed: bool
) -> None:
    release = asyncio.Event()

    async def succeed(ctx: JobContext, value: Any) -> Any:
        await release.wait()
        return {"ok": True}

    agents = AgentRegistry()
    agents.register("succeed", "1.0.0", succeed)
    store = _NoSuccessStore(tmp_path / "arcp.sqlite3", error, failed=failed)
    await store.open()
    provisioner = _RecordingProvisioner()
    runtime = JobRuntime(store, agents, SecretBox(os.urandom(32)), provisioner=provisioner)
    alice = Principal("alice")
    try:
        await runtime.start()
        submit = jobs_pb2.JobSubmit(agent="succeed")
        for namespace, patterns in SPENDING.items():
            submit.lease_request.capabilities[namespace].patterns.extend(patterns)
        submission = await runtime.submit(alice, submit)
        accepted = jobs_pb2.JobAccepted.FromString(submission.accepted)
        assert accepted.credentials, "the job holds a credential to revoke"
        watching = asyncio.create_task(_outcome_of(runtime, alice, submission.job_id))
        await asyncio.sleep(0.05)  # the follower is attached to the live feed
        release.set()
        seen = jobs_pb2.JobOutcome.FromString(await watching)
        late = jobs_pb2.JobOutcome.FromString(await _outcome_of(runtime, alice, submission.job_id))

        row = await store.get_job(submission.job_id)
        assert row is not None
        for outcome in (seen, late):
            assert outcome.WhichOneof("outcome") == "error", "a success the store does not hold"
            assert outcome.error.error.code == errors_pb2.ERROR_CODE_INTERNAL_ERROR
            assert outcome.error.error.retryable
            if row.outcome is not None:  # the store holds an end: it is the one seen
                assert jobs_pb2.JobOutcome.FromString(row.outcome) == outcome
        assert (row.outcome is None) == failed

        async with asyncio.timeout(SAFETY):
            while len(provisioner.revoked) < len(accepted.credentials):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert sorted(provisioner.revoked) == sorted(c.id for c in accepted.credentials)
    finally:
        release.set()
        await runtime.stop(grace=0.5)
        await store.close()
