"""JobService over a real grpc.aio server: authentication on every RPC (§6.1),
agent resolution (§7.5), principal isolation (§6.6, §7.4), ListJobs filters and
paging, gRPC health checking and server reflection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.server import RunningCore
from arcp_grpc.v1 import job_service_pb2 as pb
from arcp_grpc.v1 import jobs_pb2
from tests.conftest import CoreFactory, arcp_error, bearer, new_stub, submit_request, watch_all

if TYPE_CHECKING:
    from arcp_grpc.v1.job_service_pb2_grpc import JobServiceAsyncStub as Stub


async def _every_rpc(stub: Stub, metadata: Any) -> list[grpc.aio.AioRpcError]:
    """Call each JobService RPC with `metadata`; return the errors raised."""
    errors: list[grpc.aio.AioRpcError] = []
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: stub.SubmitJob(submit_request("echo", {"x": 1}), metadata=metadata),
        lambda: stub.GetJob(pb.GetJobRequest(job_id="job_x"), metadata=metadata),
        lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=metadata),
        lambda: stub.CancelJob(
            pb.CancelJobRequest(cancel=jobs_pb2.JobCancel(job_id="job_x")), metadata=metadata
        ),
        lambda: stub.ListAgents(pb.ListAgentsRequest(), metadata=metadata),
        lambda: stub.ListNodes(pb.ListNodesRequest(), metadata=metadata),
        lambda: stub.ListWorkers(pb.ListWorkersRequest(), metadata=metadata),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call()
        errors.append(caught.value)
    streams: list[Callable[[], AsyncIterable[object]]] = [
        lambda: stub.WatchJob(pb.WatchJobRequest(job_id="job_x"), metadata=metadata),
        lambda: stub.RunJob(pb.RunJobRequest(submit=_echo_submit()), metadata=metadata),
        lambda: stub.SubmitJobs(
            iter([pb.SubmitJobsRequest(correlation_id="1", submit=_echo_submit())]),
            metadata=metadata,
        ),
    ]
    for stream in streams:
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            async for _ in stream():
                pass
        errors.append(streamed.value)
    return errors


def _echo_submit() -> jobs_pb2.JobSubmit:
    return submit_request("echo", {"x": 1}).submit


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        bearer("tok-mallory"),
        (("authorization", "Basic dG9rLWFsaWNl"),),
        (("authorization", "Bearer "),),
    ],
    ids=["missing", "wrong-token", "wrong-scheme", "empty-token"],
)
async def test_every_rpc_requires_a_valid_bearer_token(stub: Stub, metadata: Any) -> None:
    """§6.1: no principal, no service, on each RPC of the contract (an RPC the servicer
    lacked would answer UNIMPLEMENTED)."""
    errors = await _every_rpc(stub, metadata)
    assert len(errors) == len(pb.DESCRIPTOR.services_by_name["JobService"].methods)
    for error in errors:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert arcp_error(error).code == "UNAUTHENTICATED"
    listed = await stub.ListJobs(pb.ListJobsRequest(), metadata=bearer())
    assert list(listed.jobs) == []  # nothing was submitted


async def test_list_agents_shows_versions_and_defaults(stub: Stub) -> None:
    agents = {
        a.name: a for a in (await stub.ListAgents(pb.ListAgentsRequest(), metadata=bearer())).agents
    }
    assert list(agents["greeter"].versions) == ["1.0.0", "2.0.0"]
    assert agents["greeter"].default_version == "2.0.0"
    assert agents["echo"].default_version == "1.0.0"


@pytest.mark.parametrize(
    ("agent", "resolved", "version"),
    [("greeter", "greeter@2.0.0", "2.0.0"), ("greeter@1.0.0", "greeter@1.0.0", "1.0.0")],
)
async def test_agent_reference_resolves_to_name_at_version(
    stub: Stub, agent: str, resolved: str, version: str
) -> None:
    """§7.5: a bare name runs the default version; a pin runs exactly that one."""
    response = await stub.SubmitJob(submit_request(agent, {"name": "ada"}), metadata=bearer())
    assert response.accepted.agent == resolved
    watched = await watch_all(stub, response.accepted.job_id)
    assert watched.outcome is not None
    assert watched.outcome.result.value.struct_value["version"] == version


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        ("nosuch", "AGENT_NOT_AVAILABLE"),
        ("nosuch@1.0.0", "AGENT_NOT_AVAILABLE"),
        ("greeter@9.9.9", "AGENT_VERSION_NOT_AVAILABLE"),
    ],
)
async def test_unknown_agent_or_version_is_refused(stub: Stub, agent: str, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitJob(submit_request(agent), metadata=bearer())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert arcp_error(caught.value).code == reason
    listed = await stub.ListJobs(pb.ListJobsRequest(), metadata=bearer())
    assert list(listed.jobs) == []


async def test_malformed_agent_reference_is_invalid_request(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitJob(submit_request("Not A Name!"), metadata=bearer())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert arcp_error(caught.value).code == "INVALID_REQUEST"


async def test_another_principal_cannot_see_watch_or_cancel_a_job(make_core: CoreFactory) -> None:
    """§6.6, §7.4: bob gets JOB_NOT_FOUND for alice's job, and the job is untouched."""
    gate = asyncio.Event()
    registry = AgentRegistry()

    @registry.agent("gated")
    async def gated(ctx: JobContext, input_value: Any) -> Any:
        await ctx.status("waiting")
        await gate.wait()
        return {"done": True}

    core = await make_core(agents=registry)
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        job_id = (await stub.SubmitJob(submit_request("gated"), metadata=bearer())).accepted.job_id
        bob = bearer("tok-bob")
        attempts: list[Awaitable[object]] = [
            stub.CancelJob(
                pb.CancelJobRequest(cancel=jobs_pb2.JobCancel(job_id=job_id)), metadata=bob
            ),
            stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=bob),
        ]
        for attempt in attempts:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await attempt
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            assert arcp_error(caught.value).code == "JOB_NOT_FOUND"
        with pytest.raises(grpc.aio.AioRpcError) as watch_error:
            await watch_all(stub, job_id, token="tok-bob")
        assert arcp_error(watch_error.value).code == "JOB_NOT_FOUND"
        listed = await stub.ListJobs(pb.ListJobsRequest(), metadata=bob)
        assert list(listed.jobs) == []

        still = await stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=bearer())
        assert still.job.status in (jobs_pb2.JOB_STATUS_PENDING, jobs_pb2.JOB_STATUS_RUNNING)
        gate.set()
        watched = await watch_all(stub, job_id)
        assert watched.outcome is not None
        assert watched.outcome.result.final_status == jobs_pb2.JOB_STATUS_SUCCESS
        # Finished jobs are just as invisible to bob (read from the store now).
        with pytest.raises(grpc.aio.AioRpcError) as after:
            await stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=bob)
        assert arcp_error(after.value).code == "JOB_NOT_FOUND"
        with pytest.raises(grpc.aio.AioRpcError) as cancel_after:
            await stub.CancelJob(
                pb.CancelJobRequest(cancel=jobs_pb2.JobCancel(job_id=job_id)), metadata=bob
            )
        assert arcp_error(cancel_after.value).code == "JOB_NOT_FOUND"


async def test_unknown_job_is_not_found(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetJob(pb.GetJobRequest(job_id="job_does_not_exist"), metadata=bearer())
    assert arcp_error(caught.value).code == "JOB_NOT_FOUND"


async def _finished(stub: Stub, agent: str, token: str = "tok-alice") -> jobs_pb2.JobAccepted:
    accepted = (
        await stub.SubmitJob(submit_request(agent, {"n": 1}), metadata=bearer(token))
    ).accepted
    watched = await watch_all(stub, accepted.job_id, token=token)
    assert watched.outcome is not None
    return accepted


async def test_list_jobs_filters_by_status_agent_and_creation_time(stub: Stub) -> None:
    echoes = [await _finished(stub, "echo") for _ in range(3)]
    greets = [await _finished(stub, "greeter@1.0.0"), await _finished(stub, "greeter")]
    bobs = await _finished(stub, "echo", token="tok-bob")
    failed = (
        await stub.SubmitJob(submit_request("counter", {"steps": -1}), metadata=bearer())
    ).accepted
    await watch_all(stub, failed.job_id)

    async def ids(**filter_fields: Any) -> list[str]:
        request = pb.ListJobsRequest(filter=jobs_pb2.ListJobsFilter(**filter_fields))
        return [j.job_id for j in (await stub.ListJobs(request, metadata=bearer())).jobs]

    everyone = await ids()
    assert bobs.job_id not in everyone
    assert len(everyone) == 6
    assert everyone[0] == failed.job_id  # newest first
    assert await ids(status=[jobs_pb2.JOB_STATUS_ERROR]) == [failed.job_id]
    assert set(await ids(status=[jobs_pb2.JOB_STATUS_SUCCESS])) == {
        a.job_id for a in echoes + greets
    }
    assert set(await ids(agent="greeter")) == {a.job_id for a in greets}
    assert await ids(agent="greeter@1.0.0") == [greets[0].job_id]
    assert set(await ids(agent="echo")) == {a.job_id for a in echoes}
    created = (
        await stub.GetJob(pb.GetJobRequest(job_id=echoes[2].job_id), metadata=bearer())
    ).job.created_at
    after = timestamp_pb2.Timestamp()
    after.CopyFrom(created)
    assert set(await ids(created_after=after)) == {a.job_id for a in greets} | {failed.job_id}


async def test_list_jobs_pages_through_every_job_once(stub: Stub) -> None:
    submitted = [await _finished(stub, "echo") for _ in range(7)]
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = await stub.ListJobs(
            pb.ListJobsRequest(page_size=3, page_token=token), metadata=bearer()
        )
        assert len(page.jobs) <= 3
        seen.extend(j.job_id for j in page.jobs)
        token = page.next_page_token
        if not token:
            break
    assert seen == [a.job_id for a in reversed(submitted)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListJobs(pb.ListJobsRequest(page_token="not-a-cursor!"), metadata=bearer())
    assert arcp_error(caught.value).code == "INVALID_REQUEST"


async def test_health_checking_reports_serving(
    core: RunningCore, channel: grpc.aio.Channel
) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "arcp.v1.JobService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_server_reflection_lists_the_services(core: RunningCore) -> None:
    def services() -> list[str]:
        with grpc.insecure_channel(core.grpc_address) as channel:
            database = ProtoReflectionDescriptorDatabase(channel)
            names = list(database.get_services())
            database.FindFileContainingSymbol("arcp.v1.JobService")
            return names

    names = await asyncio.to_thread(services)
    assert "arcp.v1.JobService" in names
    assert "grpc.health.v1.Health" in names
