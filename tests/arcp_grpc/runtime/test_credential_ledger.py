"""The credential ledger on both stores: every value a provisioner minted is
recorded before it can be lost and revoked in the end, with an upstream whose
revocations fail for a while (§9.8.2, §14 "Credential revocation reliability")."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import grpc
import pytest

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.cli.ledger_report import unrevoked
from arcp_grpc.context import JobContext
from arcp_grpc.credentials import DevProvisioner
from arcp_grpc.process.metrics import Metrics
from arcp_grpc.runtime import RuntimeLimits
from arcp_grpc.server import CoreConfig
from arcp_grpc.v1 import lease_pb2
from tests.conftest import (
    SAFETY,
    SPENDING,
    CoreFactory,
    bearer,
    new_stub,
    submit_request,
    watch_all,
)

_ONE_TRY = RuntimeLimits(revoke_attempts=1)


class FlakyUpstream(DevProvisioner):
    """The development provisioner with an upstream that refuses revocations until
    `recover()`; it remembers every value it ever minted."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = True
        self.minted: list[str] = []
        self.failures = 0

    def recover(self) -> None:
        self.failing = False

    def live_values(self) -> list[str]:
        return [value for value in self.minted if self.is_live(value)]

    def _mint(self) -> str:
        value = super()._mint()
        self.minted.append(value)
        return value

    async def revoke(self, credential: lease_pb2.Credential) -> None:
        if self.failing:
            self.failures += 1
            raise ConnectionError("upstream unavailable")
        await super().revoke(credential)


class RenamingUpstream(FlakyUpstream):
    """An upstream whose rotation gives the new value an id of its own."""

    async def rotate(self, credential: lease_pb2.Credential) -> lease_pb2.Credential:
        rotated = await super().rotate(credential)
        rotated.id = credential.id + "-next"
        return rotated


async def _rotate_then_return(ctx: JobContext, _input: object) -> str:
    await ctx.rotate_credential(ctx.credentials[0].id)
    return "rotated"


def _rotating_agents() -> AgentRegistry:
    registry = AgentRegistry()
    registry.register("rotator", "1.0.0", _rotate_then_return)
    return registry


@pytest.mark.parametrize("upstream_kind", [FlakyUpstream, RenamingUpstream])
async def test_a_rotated_value_whose_revocation_failed_is_revoked_after_a_restart(
    make_core: CoreFactory, core_config: CoreConfig, upstream_kind: type[FlakyUpstream]
) -> None:
    """§9.8.2: the prior value of a rotation must be revoked. Its revocation failing
    must not let the ledger forget it (it used to be overwritten by the new value)."""
    upstream = upstream_kind()
    core = await make_core(agents=_rotating_agents(), provisioner=upstream, limits=_ONE_TRY)
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        accepted = (
            await stub.SubmitJob(submit_request("rotator", {}, lease=SPENDING), metadata=bearer())
        ).accepted
        await watch_all(stub, accepted.job_id)
    await core.stop(grace=1.0)
    assert len(upstream.minted) == 2  # the issued value and the rotated one
    assert upstream.live_values() == upstream.minted
    # Operators see both, each with why it is due (§14: surface them), core down.
    due = await unrevoked(core_config.store_url, core_config.data_dir)
    assert sorted(c.why for c in due) == ["job ended", "rotated"]
    assert {c.job_id for c in due} == {accepted.job_id}

    upstream.recover()
    again = await make_core(agents=_rotating_agents(), provisioner=upstream, limits=_ONE_TRY)
    assert upstream.live_values() == []
    assert await again.store.unrevoked_credentials() == []


async def test_the_losers_of_a_keyed_submit_race_are_revoked_after_a_restart(
    make_core: CoreFactory, core_config: CoreConfig
) -> None:
    """§7.2 + §14: twenty identical keyed submits at once may each mint a credential
    before the unique key picks one winner; the losers' values must reach the ledger
    so a failed revocation of them is retried, like any other."""
    upstream = FlakyUpstream()
    core = await make_core(provisioner=upstream, limits=_ONE_TRY)
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        request = submit_request("echo", {}, key="race", lease=SPENDING)
        answers = await asyncio.gather(
            *(stub.SubmitJob(request, metadata=bearer()) for _ in range(20))
        )
        (job_id,) = {answer.accepted.job_id for answer in answers}
        await watch_all(stub, job_id)
    await core.stop(grace=1.0)
    assert len(upstream.minted) >= 1
    assert upstream.live_values() == upstream.minted  # none revoked: the upstream is down
    due = await unrevoked(core_config.store_url, core_config.data_dir)
    assert sorted(c.why for c in due) == sorted(
        ["job ended"] + ["not accepted"] * (len(upstream.minted) - 1)
    )

    upstream.recover()
    again = await make_core(provisioner=upstream, limits=_ONE_TRY)
    assert upstream.live_values() == []
    assert await again.store.unrevoked_credentials() == []


class SweepWatch(Metrics):
    """The Prometheus observer, also telling the test what each sweep left."""

    def __init__(self) -> None:
        super().__init__()
        self.sweeps: asyncio.Queue[int] = asyncio.Queue()

    def credentials_unrevoked(self, count: int) -> None:
        super().credentials_unrevoked(count)
        self.sweeps.put_nowait(count)

    async def until_a_sweep_leaves(self, count: int) -> None:
        while await asyncio.wait_for(self.sweeps.get(), SAFETY) != count:
            pass

    def sample(self, name: str) -> float | None:
        return self.registry.get_sample_value(name)


async def test_revocations_are_retried_while_the_core_runs(make_core: CoreFactory) -> None:
    """§14: an upstream that comes back is retried periodically, not only at the next
    start; until then the value is counted by `arcp_credentials_unrevoked` and each
    exhausted try by `arcp_credential_revocation_failures_total`."""
    upstream = FlakyUpstream()
    limits = RuntimeLimits(revoke_attempts=1, revoke_retry_sec=0.02)
    metrics = SweepWatch()
    core = await make_core(provisioner=upstream, limits=limits, observer=metrics)
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        request = submit_request("echo", {}, lease=SPENDING)
        accepted = (await stub.SubmitJob(request, metadata=bearer())).accepted
        await watch_all(stub, accepted.job_id)

    await metrics.until_a_sweep_leaves(1)
    assert metrics.sample("arcp_credentials_unrevoked") == 1.0
    # Failed at the job's end, then again by the sweep that counted it.
    assert (metrics.sample("arcp_credential_revocation_failures_total") or 0) >= 2
    (credential,) = accepted.credentials
    assert upstream.is_live(credential.value)

    upstream.recover()
    await metrics.until_a_sweep_leaves(0)
    assert metrics.sample("arcp_credentials_unrevoked") == 0.0
    assert not upstream.is_live(credential.value)
    assert await core.store.unrevoked_credentials() == []


async def test_operators_list_unrevoked_values_from_the_store(
    make_core: CoreFactory, core_config: CoreConfig
) -> None:
    """§14 "surface unrevocable credentials to operators": `arcp-grpc credentials
    --unrevoked` reads the store (here while the core runs) and shows no value."""
    upstream = FlakyUpstream()
    core = await make_core(provisioner=upstream, limits=_ONE_TRY)
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        request = submit_request("echo", {}, lease=SPENDING)
        accepted = (await stub.SubmitJob(request, metadata=bearer())).accepted
        await watch_all(stub, accepted.job_id)
    await core.store.flush()
    (credential,) = accepted.credentials

    async def cli(*extra: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "arcp_grpc.cli.main",
            "credentials",
            "--unrevoked",
            "--data-dir",
            str(core_config.data_dir),
            "--store",
            core_config.store_url or f"sqlite:///{core_config.data_dir / 'arcp.sqlite3'}",
            *extra,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "ARCP_CONFIG": ""},
        )
        out, _ = await asyncio.wait_for(process.communicate(), SAFETY)
        assert process.returncode is not None
        return process.returncode, out.decode()

    async def listed() -> list[dict[str, object]]:
        code, out = await cli("--json")
        assert code == 0
        return [json.loads(line) for line in out.splitlines()]

    (row,) = await listed()
    assert (row["credential_id"], row["job_id"], row["why"]) == (
        credential.id,
        accepted.job_id,
        "job ended",
    )
    code, text = await cli()
    assert code == 0
    assert f"{credential.id} v0 job={accepted.job_id}" in text
    assert credential.value not in text

    await core.stop(grace=1.0)
    upstream.recover()
    await make_core(provisioner=upstream, limits=_ONE_TRY)  # its start sweeps the ledger
    assert await listed() == []
