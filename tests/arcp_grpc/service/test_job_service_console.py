"""What the console reads through JobService beyond ARCP frames: a job's input and
limit for its owner (to run it again) and the runtime's nodes (`ListNodes`), on both
stores (a PostgreSQL core is a one-node cluster, an SQLite core a node alone)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import json_format

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.v1 import job_service_pb2 as pb
from arcp_grpc.v1 import jobs_pb2
from tests.conftest import CoreFactory, bearer, new_stub, submit_request, watch_all

if TYPE_CHECKING:
    from arcp_grpc.v1.job_service_pb2_grpc import JobServiceAsyncStub as Stub

INPUT = {"n": 7, "nested": [1, "a", {"deep": None}]}


async def _get(stub: Stub, job_id: str, token: str = "tok-alice") -> pb.GetJobResponse:
    return await stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=bearer(token))


async def test_get_job_gives_its_owner_the_input_and_limit_and_listings_leave_them_out(
    stub: Stub,
) -> None:
    accepted = (
        await stub.SubmitJob(submit_request("echo", INPUT, max_runtime_sec=30), metadata=bearer())
    ).accepted
    plain = (await stub.SubmitJob(submit_request("echo"), metadata=bearer())).accepted
    for job in (accepted, plain):
        assert (await watch_all(stub, job.job_id)).outcome is not None
    got = (await _get(stub, accepted.job_id)).job
    assert json_format.MessageToDict(got.input) == INPUT
    assert got.HasField("max_runtime_sec")
    assert got.max_runtime_sec == 30
    bare = (await _get(stub, plain.job_id)).job
    assert not bare.HasField("input")
    assert not bare.HasField("max_runtime_sec")
    listed = (await stub.ListJobs(pb.ListJobsRequest(), metadata=bearer())).jobs
    assert [j.job_id for j in listed] == [plain.job_id, accepted.job_id]
    assert not any(j.HasField("input") for j in listed)  # a page stays light
    assert listed[1].max_runtime_sec == 30


async def test_a_delegated_child_keeps_the_input_its_parent_gave(stub: Stub) -> None:
    """§10: the child is the submitter's job too, so its owner can run it again."""
    request = submit_request("delegator", INPUT, lease={"agent.delegate": ["echo"]})
    parent = (await stub.SubmitJob(request, metadata=bearer())).accepted
    watched = await watch_all(stub, parent.job_id)
    assert watched.outcome is not None
    child_id = str(watched.outcome.result.value.struct_value["child_job_id"])
    child = (await _get(stub, child_id)).job
    assert child.parent_job_id == parent.job_id
    assert json_format.MessageToDict(child.input) == INPUT


async def test_list_nodes_reports_this_node_with_its_running_jobs(
    make_core: CoreFactory,
) -> None:
    gate = asyncio.Event()
    registry = AgentRegistry()

    @registry.agent("gated")
    async def gated(ctx: JobContext, input_value: Any) -> Any:
        await gate.wait()
        return None

    core = await make_core(agents=registry)
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        running = [
            (await stub.SubmitJob(submit_request("gated"), metadata=bearer(token))).accepted
            for token in ("tok-alice", "tok-bob")
        ]
        nodes = (await stub.ListNodes(pb.ListNodesRequest(), metadata=bearer())).nodes
        assert len(nodes) == 1
        (node,) = nodes
        assert node.answering
        assert node.state == pb.NODE_STATE_ALIVE
        assert node.label
        assert node.running_jobs == 2  # every principal's, as a count
        gate.set()
        for job in running:
            token = "tok-alice" if job is running[0] else "tok-bob"
            outcome = (await watch_all(stub, job.job_id, token=token)).outcome
            assert outcome is not None
            assert outcome.result.final_status == jobs_pb2.JOB_STATUS_SUCCESS
        after = (await stub.ListNodes(pb.ListNodesRequest(), metadata=bearer())).nodes
        assert [n.running_jobs for n in after] == [0]
