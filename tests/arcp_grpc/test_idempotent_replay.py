"""Exact replay of `job.accepted` (§7.2), the reason this project exists.

The first acceptance is serialised once and cached; an identical resubmission
with the same key gets those bytes back on the wire. The tests read raw
response bytes with a bytes-level stub, so a runtime that rebuilt the message
(new credentials, a new `accepted_at`, a re-serialisation) would fail them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.credentials import DevProvisioner
from arcp_grpc.runtime import RuntimeLimits
from arcp_grpc.server import CoreConfig, RunningCore
from arcp_grpc.v1 import job_service_pb2 as pb
from arcp_grpc.v1 import jobs_pb2
from tests.conftest import (
    SAFETY,
    SPENDING,
    CoreFactory,
    arcp_error,
    bearer,
    new_stub,
    stored_bytes,
    submit_request,
    wait_for_seq,
    watch_all,
)

SUBMIT = "/arcp.v1.JobService/SubmitJob"
EXPIRES = datetime(2099, 1, 1, tzinfo=UTC)
LEASE = {
    "model.use": ["tier-fast/*"],
    "cost.budget": ["USD:5.00"],
    "tool.call": ["search"],
}


@dataclass(frozen=True)
class Raw:
    """One SubmitJob answer as it crossed the wire."""

    body: bytes
    replay: str

    @property
    def accepted(self) -> jobs_pb2.JobAccepted:
        return pb.SubmitJobResponse.FromString(self.body).accepted


class Gate:
    def __init__(self) -> None:
        self.open = asyncio.Event()


def _registry(gate: Gate) -> AgentRegistry:
    registry = AgentRegistry()

    @registry.agent("stepper")
    async def stepper(ctx: JobContext, input_value: Any) -> Any:
        await ctx.log("before")
        await gate.open.wait()
        for index in range(3):
            await ctx.log(f"after {index}")
        return {"done": True}

    @registry.agent("rotator")
    async def rotator(ctx: JobContext, input_value: Any) -> Any:
        (credential,) = ctx.credentials
        await ctx.rotate_credential(credential.id)
        await gate.open.wait()
        return {"rotated": True}

    return registry


async def raw_submit(
    channel: grpc.aio.Channel, request: pb.SubmitJobRequest, token: str = "tok-alice"
) -> Raw:
    """SubmitJob through a stub that does not parse the response: the bytes as sent."""
    method = channel.unary_unary(
        SUBMIT,
        request_serializer=pb.SubmitJobRequest.SerializeToString,
        response_deserializer=lambda body: body,
    )
    call = method(request, metadata=bearer(token))
    body = await call
    metadata = await call.trailing_metadata()
    replay = dict(metadata).get("arcp-replay", "") if metadata is not None else ""
    assert isinstance(body, bytes)
    return Raw(body, str(replay))


def _full_request(key: str, **changes: Any) -> pb.SubmitJobRequest:
    """A submit that fills every parameter the fingerprint covers."""
    params: dict[str, Any] = {
        "agent": "greeter@2.0.0",
        "input_value": {"name": "ada", "nested": {"a": 1, "b": [1, 2]}},
        "lease": LEASE,
        "expires_at": EXPIRES,
        "max_runtime_sec": 60,
    }
    params.update(changes)
    agent = params.pop("agent")
    input_value = params.pop("input_value")
    return submit_request(agent, input_value, key=key, **params)


@dataclass
class Env:
    core: RunningCore
    channel: grpc.aio.Channel
    gate: Gate
    provisioner: DevProvisioner


@pytest.fixture
async def env(make_core: CoreFactory) -> AsyncIterator[Env]:
    gate = Gate()
    provisioner = DevProvisioner()
    core = await make_core(agents=_registry(gate), provisioner=provisioner)
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        yield Env(core, channel, gate, provisioner)


async def _job_count(channel: grpc.aio.Channel, token: str = "tok-alice") -> int:
    listed = await new_stub(channel).ListJobs(pb.ListJobsRequest(), metadata=bearer(token))
    return len(listed.jobs)


async def test_resubmission_returns_the_original_bytes(env: Env) -> None:
    """§7.2: same key, same parameters → the same `JobAccepted`, byte for byte,
    credentials included, marked `arcp-replay: true`."""
    first = await raw_submit(env.channel, _full_request("K"))
    second = await raw_submit(env.channel, _full_request("K"))
    assert (first.replay, second.replay) == ("false", "true")
    assert second.body == first.body
    accepted = first.accepted
    assert accepted.agent == "greeter@2.0.0"
    assert accepted.job_id
    assert accepted.trace_id
    assert accepted.HasField("accepted_at")
    assert accepted.lease_constraints.expires_at.ToDatetime(tzinfo=UTC) == EXPIRES
    assert dict(accepted.budget) == {"USD": "5.00"}
    assert sorted(accepted.lease.capabilities) == sorted(LEASE)
    (credential,) = accepted.credentials
    assert credential.value.startswith("sk-dev-")
    assert second.accepted == accepted
    assert await _job_count(env.channel) == 1


async def test_replay_survives_a_restart(make_core: CoreFactory, tmp_path: Path) -> None:
    """§7.2: the cache is durable; a new core process on the same file replays it."""
    gate = Gate()
    gate.open.set()
    core = await make_core(agents=_registry(gate))
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        first = await raw_submit(channel, _full_request("K-restart"))
        await watch_all(new_stub(channel), first.accepted.job_id)
    await core.stop(grace=1.0)

    again = await make_core(agents=_registry(gate))
    async with grpc.aio.insecure_channel(again.grpc_address) as channel:
        second = await raw_submit(channel, _full_request("K-restart"))
        assert second.replay == "true"
        assert second.body == first.body
        assert len(first.accepted.credentials) == 1
        assert await _job_count(channel) == 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await raw_submit(channel, _full_request("K-restart", max_runtime_sec=61))
        assert arcp_error(caught.value).code == "DUPLICATE_KEY"


async def test_fifty_concurrent_identical_submits_make_one_job(env: Env) -> None:
    """§7.2: the store's unique key, not check-then-insert, picks one winner."""
    answers = await asyncio.wait_for(
        asyncio.gather(
            *(raw_submit(env.channel, _full_request("K50", agent="stepper")) for _ in range(50))
        ),
        SAFETY,
    )
    assert {a.body for a in answers} == {answers[0].body}
    assert sorted(a.replay for a in answers).count("false") == 1
    assert await _job_count(env.channel) == 1
    # The losers' credentials were revoked; the one every caller got still works.
    (credential,) = answers[0].accepted.credentials
    assert env.provisioner.is_live(credential.value)
    env.gate.open.set()
    watched = await watch_all(new_stub(env.channel), answers[0].accepted.job_id)
    assert watched.outcome is not None
    assert watched.outcome.result.final_status == jobs_pb2.JOB_STATUS_SUCCESS


@pytest.mark.parametrize(
    "change",
    [
        {"agent": "greeter@1.0.0"},
        {"agent": "greeter"},  # resolves to the same 2.0.0, but the pin is part of the request
        {"input_value": {"name": "bob", "nested": {"a": 1, "b": [1, 2]}}},
        {"input_value": {"name": "ada", "nested": {"a": 1, "b": [2, 1]}}},
        {"lease": {**LEASE, "cost.budget": ["USD:5.01"]}},
        {"lease": {"model.use": ["tier-fast/*"], "cost.budget": ["USD:5.00"]}},
        {"expires_at": EXPIRES + timedelta(seconds=1)},
        {"expires_at": None},
        {"max_runtime_sec": 61},
        {"max_runtime_sec": None},
    ],
    ids=[
        "agent-version",
        "agent-pin-dropped",
        "input-value",
        "input-array-order",
        "lease-budget",
        "lease-namespace",
        "expires-at",
        "expires-at-dropped",
        "max-runtime",
        "max-runtime-dropped",
    ],
)
async def test_any_changed_parameter_is_duplicate_key(env: Env, change: dict[str, Any]) -> None:
    """§7.2: same key, different parameters → DUPLICATE_KEY, and no new job."""
    first = await raw_submit(env.channel, _full_request("K-dup"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_submit(env.channel, _full_request("K-dup", **change))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    error = arcp_error(caught.value)
    assert error.code == "DUPLICATE_KEY"
    assert error.retryable is False
    assert await _job_count(env.channel) == 1
    # The original still replays after the conflict.
    assert (await raw_submit(env.channel, _full_request("K-dup"))).body == first.body


async def test_reordered_json_keys_are_the_same_request(env: Env) -> None:
    """§7.2: key order in `input` is not a parameter."""
    first = await raw_submit(
        env.channel,
        _full_request("K-order", input_value={"name": "ada", "nested": {"a": 1, "b": [1, 2]}}),
    )
    second = await raw_submit(
        env.channel,
        _full_request("K-order", input_value={"nested": {"b": [1, 2], "a": 1}, "name": "ada"}),
    )
    assert second.replay == "true"
    assert second.body == first.body
    assert await _job_count(env.channel) == 1


async def test_keys_are_scoped_per_principal(env: Env) -> None:
    """§7.2, §14: bob's K is not alice's K."""
    alice = await raw_submit(env.channel, _full_request("K-shared"))
    bob = await raw_submit(env.channel, _full_request("K-shared"), token="tok-bob")
    assert bob.replay == "false"
    assert bob.accepted.job_id != alice.accepted.job_id
    assert bob.accepted.credentials[0].value != alice.accepted.credentials[0].value
    bob_again = await raw_submit(env.channel, _full_request("K-shared"), token="tok-bob")
    assert bob_again.body == bob.body
    assert await _job_count(env.channel) == 1
    assert await _job_count(env.channel, "tok-bob") == 1


async def test_a_key_starts_a_new_job_after_its_window(make_core: CoreFactory) -> None:
    """§7.2: past `idempotency_ttl_sec` the key is free again."""
    ttl = 0.5
    core = await make_core(limits=RuntimeLimits(idempotency_ttl_sec=ttl))
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        first = await raw_submit(channel, submit_request("echo", {"n": 1}, key="K-ttl"))
        for _ in range(int(SAFETY / 0.05)):  # wait for the window to close, not a fixed time
            if await core.store.find_claim("alice", "K-ttl", time.time()) is None:
                break
            await asyncio.sleep(0.05)
        second = await raw_submit(channel, submit_request("echo", {"n": 1}, key="K-ttl"))
        assert second.replay == "false"
        assert second.accepted.job_id != first.accepted.job_id
        assert await _job_count(channel) == 2
        third = await raw_submit(channel, submit_request("echo", {"n": 1}, key="K-ttl"))
        assert third.body == second.body


async def test_replay_of_a_running_job_follows_it_to_the_end(env: Env) -> None:
    """§7.2: a replay attaches the caller to the original job's later events."""
    first = await raw_submit(env.channel, submit_request("stepper", key="K-run"))
    stub = new_stub(env.channel)
    job_id = first.accepted.job_id
    await wait_for_seq(stub, job_id, lambda e: e.log.message == "before")
    replay = await raw_submit(env.channel, submit_request("stepper", key="K-run"))
    assert replay.replay == "true"
    assert replay.accepted.job_id == job_id
    status = await stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=bearer())
    assert status.job.status == jobs_pb2.JOB_STATUS_RUNNING
    watching = asyncio.create_task(watch_all(stub, job_id, after_seq=status.job.last_event_seq))
    env.gate.open.set()
    rest = await watching
    assert [e.log.message for e in rest.events] == ["after 0", "after 1", "after 2"]
    assert rest.outcome is not None
    assert rest.outcome.result.final_status == jobs_pb2.JOB_STATUS_SUCCESS


async def test_replay_of_a_finished_job_gets_the_outcome_at_once(env: Env) -> None:
    env.gate.open.set()
    first = await raw_submit(env.channel, submit_request("stepper", key="K-done"))
    stub = new_stub(env.channel)
    done = await watch_all(stub, first.accepted.job_id)
    replay = await raw_submit(env.channel, submit_request("stepper", key="K-done"))
    assert replay.body == first.body
    summary = await stub.GetJob(pb.GetJobRequest(job_id=first.accepted.job_id), metadata=bearer())
    assert summary.outcome == done.outcome
    tail = await watch_all(stub, first.accepted.job_id, after_seq=summary.job.last_event_seq)
    assert tail.events == []
    assert tail.outcome == done.outcome


async def test_the_database_file_holds_no_credential_in_clear(
    env: Env, core_config: CoreConfig
) -> None:
    """§7.2, §14: credential values in cached bytes, the ledger and rotation events
    are encrypted at rest: `grep` of the SQLite file and its WAL, or of every row of
    the PostgreSQL schema, finds none."""
    first = await raw_submit(env.channel, submit_request("rotator", key="K-secret", lease=SPENDING))
    stub = new_stub(env.channel)
    rotated = await wait_for_seq(
        stub, first.accepted.job_id, lambda e: e.status.phase == "credential_rotated"
    )
    await raw_submit(env.channel, submit_request("rotator", key="K-secret", lease=SPENDING))
    values = [first.accepted.credentials[0].value, rotated.status.credential.value]
    assert all(values)
    await env.core.store.flush()
    live = await stored_bytes(core_config)
    assert b"sk-dev-" not in live
    for value in values:
        assert value.encode() not in live
    env.gate.open.set()
    await watch_all(stub, first.accepted.job_id)
    await env.core.stop(grace=1.0)
    stopped = await stored_bytes(core_config)
    assert first.accepted.job_id.encode() in stopped  # the file is the real one
    for value in values:
        assert value.encode() not in stopped
