"""Streamed results (§8.4) and provisioned credentials (§9.8) through JobService.

Chunked results reassemble byte-exact, end with `more: false` and a result
carrying `result_id` and size; exceeding a cap ends the job with
INTERNAL_ERROR as its only terminal frame. Credentials are issued before
`job.accepted`, never shared between jobs, revoked on every terminal state,
and rotation emits `status` `credential_rotated`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.credentials import DevProvisioner
from arcp_grpc.errors import InternalError
from arcp_grpc.runtime import RuntimeLimits
from arcp_grpc.v1 import events_pb2, jobs_pb2
from arcp_grpc.v1 import job_service_pb2 as pb
from tests.conftest import (
    SAFETY,
    SPENDING,
    CoreFactory,
    Watched,
    bearer,
    error_code,
    new_stub,
    submit_request,
    wait_for_seq,
    watch_all,
)

if TYPE_CHECKING:
    from arcp_grpc.v1.job_service_pb2_grpc import JobServiceAsyncStub as Stub


@dataclass
class Seen:
    """What agents observed, for the test to compare with the wire."""

    digests: dict[str, str] = field(default_factory=dict)
    credentials: dict[str, list[str]] = field(default_factory=dict)
    live_at_start: dict[str, bool] = field(default_factory=dict)
    rotated: dict[str, tuple[str, str]] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def _registry(seen: Seen, provisioner: DevProvisioner) -> AgentRegistry:
    registry = AgentRegistry()

    @registry.agent("blob")
    async def blob(ctx: JobContext, input_value: Any) -> Any:
        """A few MiB of random data, base64 text, streamed in configured chunks."""
        data = base64.b64encode(os.urandom(int(input_value["raw_bytes"])))
        seen.digests[ctx.job_id] = hashlib.sha256(data).hexdigest()
        stream = ctx.open_result(input_value.get("encoding", "utf8"))
        await stream.write_all(data)
        await stream.close()
        return None

    @registry.agent("oversize")
    async def oversize(ctx: JobContext, input_value: Any) -> Any:
        """Writes past a cap; with `swallow` it catches the error and returns normally."""
        stream = ctx.open_result("utf8")
        try:
            for _ in range(int(input_value["writes"])):
                await stream.write("x" * int(input_value["size"]))
        except InternalError:
            if not input_value.get("swallow"):
                raise
        await stream.close()
        return None

    @registry.agent("holder")
    async def holder(ctx: JobContext, input_value: Any) -> Any:
        """Records its credentials and whether they are live, then waits or fails."""
        values = [c.value for c in ctx.credentials]
        seen.credentials[ctx.job_id] = values
        seen.live_at_start[ctx.job_id] = all(provisioner.is_live(v) for v in values)
        await ctx.status("holding")
        mode = input_value.get("mode", "succeed") if isinstance(input_value, dict) else "succeed"
        if mode == "fail":
            raise ValueError("boom")
        if mode == "wait":
            await asyncio.Event().wait()
        return {"ok": True}

    @registry.agent("rotator")
    async def rotator(ctx: JobContext, input_value: Any) -> Any:
        (old,) = ctx.credentials
        new = await ctx.rotate_credential(old.id)
        seen.rotated[ctx.job_id] = (old.value, new.value)
        await seen.release.wait()
        return {"rotated": new.id == old.id}

    return registry


@dataclass
class Env:
    stub: Stub
    seen: Seen
    provisioner: DevProvisioner


@pytest.fixture
async def env(make_core: CoreFactory) -> AsyncIterator[Env]:
    seen = Seen()
    provisioner = DevProvisioner()
    core = await make_core(agents=_registry(seen, provisioner), provisioner=provisioner)
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        yield Env(new_stub(channel), seen, provisioner)


def _chunks(watched: Watched) -> list[events_pb2.ResultChunkEvent]:
    return [e.result_chunk for e in watched.of("result_chunk")]


# -- streamed results --------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf8", "base64"])
async def test_a_chunked_result_reassembles_byte_exact(env: Env, encoding: str) -> None:
    raw_bytes = 3 * 1024 * 1024  # 4 MiB once base64-encoded
    accepted = (
        await env.stub.SubmitJob(
            submit_request("blob", {"raw_bytes": raw_bytes, "encoding": encoding}),
            metadata=bearer(),
        )
    ).accepted
    watched = await watch_all(env.stub, accepted.job_id)
    chunks = _chunks(watched)
    assert len(chunks) > 1
    assert [c.chunk_seq for c in chunks] == list(range(len(chunks)))
    assert [c.more for c in chunks] == [True] * (len(chunks) - 1) + [False]
    assert all(len(c.data) <= RuntimeLimits().chunk_bytes for c in chunks)
    expected = (
        events_pb2.CHUNK_ENCODING_UTF8 if encoding == "utf8" else events_pb2.CHUNK_ENCODING_BASE64
    )
    assert {c.encoding for c in chunks} == {expected}
    data = b"".join(c.data for c in chunks)
    assert hashlib.sha256(data).hexdigest() == env.seen.digests[accepted.job_id]
    assert watched.outcome is not None
    result = watched.outcome.result
    assert result.final_status == jobs_pb2.JOB_STATUS_SUCCESS
    assert result.WhichOneof("result") == "streamed"  # never mixed with an inline value
    assert result.streamed.result_id == chunks[0].result_id
    assert {c.result_id for c in chunks} == {result.streamed.result_id}
    assert result.streamed.result_size == len(data)


async def test_default_chunks_fit_a_one_mebibyte_json_frame() -> None:
    """§8.4 note: base64 of a default chunk plus its envelope stays far below 1 MiB."""
    chunk = RuntimeLimits().chunk_bytes
    assert len(base64.b64encode(b"\0" * chunk)) + 4096 < 1024 * 1024


@pytest.mark.parametrize(
    ("limits", "writes", "size", "swallow"),
    [
        (RuntimeLimits(max_chunk_bytes=1024), 1, 2048, False),
        (RuntimeLimits(max_chunk_bytes=1024), 3, 2048, True),
        (RuntimeLimits(max_result_bytes=4096), 10, 1000, False),
        (RuntimeLimits(max_result_bytes=4096), 10, 1000, True),
    ],
    ids=["chunk-cap", "chunk-cap-swallowed", "total-cap", "total-cap-swallowed"],
)
async def test_exceeding_a_result_cap_is_the_only_terminal(
    make_core: CoreFactory, limits: RuntimeLimits, writes: int, size: int, swallow: bool
) -> None:
    """§8.4, §14: INTERNAL_ERROR and nothing that looks like success before it, even
    when the agent catches the error and returns as if done."""
    provisioner = DevProvisioner()
    core = await make_core(
        agents=_registry(Seen(), provisioner), provisioner=provisioner, limits=limits
    )
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        accepted = (
            await stub.SubmitJob(
                submit_request(
                    "oversize",
                    {"writes": writes, "size": size, "swallow": swallow},
                    lease=SPENDING,
                ),
                metadata=bearer(),
            )
        ).accepted
        watched = await watch_all(stub, accepted.job_id)
        assert watched.frames_with_outcome == 1
        assert watched.outcome is not None
        assert watched.outcome.WhichOneof("outcome") == "error"
        assert error_code(watched.outcome.error) == "INTERNAL_ERROR"
        assert watched.outcome.error.final_status == jobs_pb2.JOB_STATUS_ERROR
        assert all(c.more for c in _chunks(watched)), "a final chunk claimed the result complete"
        summary = await stub.GetJob(pb.GetJobRequest(job_id=accepted.job_id), metadata=bearer())
        assert summary.job.status == jobs_pb2.JOB_STATUS_ERROR
        assert summary.outcome == watched.outcome
        (credential,) = accepted.credentials
        await _until(lambda: not provisioner.is_live(credential.value))


# -- credentials --------------------------------------------------------------


async def _until(predicate: Callable[[], bool]) -> None:
    """Wait for a condition the runtime reaches asynchronously (revocation runs after
    the terminal frame); the bound is a safety net, not the assertion."""
    for _ in range(int(SAFETY / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_credentials_are_issued_before_acceptance_and_never_shared(env: Env) -> None:
    """§9.8: `job.accepted` carries live credentials, the agent gets the same ones,
    and no two jobs share an id or a value."""
    accepted = [
        (
            await env.stub.SubmitJob(submit_request("holder", lease=SPENDING), metadata=bearer())
        ).accepted
        for _ in range(3)
    ]
    values = []
    for job in accepted:
        assert len(job.credentials) == 1
        credential = job.credentials[0]
        assert credential.value
        assert credential.id
        assert credential.scheme == "bearer"
        values.append(credential.value)
        await watch_all(env.stub, job.job_id)
        assert env.seen.credentials[job.job_id] == [credential.value]
        assert env.seen.live_at_start[job.job_id]
    assert len(set(values)) == 3
    assert len({c.id for job in accepted for c in job.credentials}) == 3


@pytest.mark.parametrize("ending", ["success", "error", "cancelled", "timed_out"])
async def test_credentials_are_revoked_on_every_terminal_state(env: Env, ending: str) -> None:
    """§9.8.2: whatever ends the job, its credentials stop working."""
    mode = {"success": "succeed", "error": "fail"}.get(ending, "wait")
    request = submit_request(
        "holder",
        {"mode": mode},
        lease=SPENDING,
        max_runtime_sec=1 if ending == "timed_out" else None,
    )
    accepted = (await env.stub.SubmitJob(request, metadata=bearer())).accepted
    (credential,) = accepted.credentials
    await wait_for_seq(env.stub, accepted.job_id, lambda e: e.status.phase == "holding")
    assert env.seen.live_at_start[accepted.job_id]
    if ending == "cancelled":
        await env.stub.CancelJob(
            pb.CancelJobRequest(cancel=jobs_pb2.JobCancel(job_id=accepted.job_id)),
            metadata=bearer(),
        )
    watched = await watch_all(env.stub, accepted.job_id)
    assert watched.outcome is not None
    final = (
        watched.outcome.result.final_status
        if watched.outcome.HasField("result")
        else watched.outcome.error.final_status
    )
    assert jobs_pb2.JobStatus.Name(final) == f"JOB_STATUS_{ending.upper()}"
    await _until(lambda: not env.provisioner.is_live(credential.value))


async def test_rotation_emits_credential_rotated_and_revokes_the_old_value(env: Env) -> None:
    accepted = (
        await env.stub.SubmitJob(submit_request("rotator", lease=SPENDING), metadata=bearer())
    ).accepted
    event = await wait_for_seq(
        env.stub, accepted.job_id, lambda e: e.status.phase == "credential_rotated"
    )
    old_value, new_value = env.seen.rotated[accepted.job_id]
    assert old_value == accepted.credentials[0].value
    assert event.status.credential.value == new_value != old_value
    assert event.status.credential.id == accepted.credentials[0].id
    assert not env.provisioner.is_live(old_value)
    assert env.provisioner.is_live(new_value)
    env.seen.release.set()
    watched = await watch_all(env.stub, accepted.job_id)
    assert watched.outcome is not None
    assert watched.outcome.result.final_status == jobs_pb2.JOB_STATUS_SUCCESS
    await _until(lambda: not env.provisioner.is_live(new_value))


async def test_only_the_submitter_sees_credentials(env: Env) -> None:
    """§14: while a job runs its credentials appear in the submitter's GetJob/ListJobs,
    nobody else's (after its end in nobody's: see tests/gateway/test_sessions_authority.py)."""
    request = submit_request("holder", {"mode": "wait"}, lease=SPENDING)
    accepted = (await env.stub.SubmitJob(request, metadata=bearer())).accepted
    await wait_for_seq(env.stub, accepted.job_id, lambda e: e.status.phase == "holding")
    mine = await env.stub.GetJob(pb.GetJobRequest(job_id=accepted.job_id), metadata=bearer())
    assert [c.value for c in mine.job.credentials] == [accepted.credentials[0].value]
    listed = await env.stub.ListJobs(pb.ListJobsRequest(), metadata=bearer())
    assert [c.value for c in listed.jobs[0].credentials] == [accepted.credentials[0].value]
    bobs = await env.stub.ListJobs(pb.ListJobsRequest(), metadata=bearer("tok-bob"))
    assert list(bobs.jobs) == []
    await env.stub.CancelJob(
        pb.CancelJobRequest(cancel=jobs_pb2.JobCancel(job_id=accepted.job_id)),
        metadata=bearer(),
    )
