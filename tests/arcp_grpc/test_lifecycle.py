"""Job lifecycle over JobService: every event kind in order (§8.2), pending →
running → exactly one terminal state (§7.3), `max_runtime_sec` (TIMEOUT),
cancellation by the submitter (§7.4), and WatchJob resumption from a
`job_seq` with nothing lost or repeated (§8.3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf import json_format

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.v1 import events_pb2, jobs_pb2
from arcp_grpc.v1 import job_service_pb2 as pb
from tests.conftest import (
    SAFETY,
    CoreFactory,
    arcp_error,
    bearer,
    error_code,
    new_stub,
    submit_request,
    wait_for_seq,
    watch_all,
)

if TYPE_CHECKING:
    from arcp_grpc.v1.job_service_pb2_grpc import JobServiceAsyncStub as Stub


class Gates:
    """Events the test sets to let an agent go on; nothing waits on a clock."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.second = asyncio.Event()
        self.observed_cancel = asyncio.Event()


def _registry(gates: Gates) -> AgentRegistry:
    registry = AgentRegistry()

    @registry.agent("everything")
    async def everything(ctx: JobContext, input_value: Any) -> Any:
        await ctx.log("starting", level="debug")
        await ctx.thought("plan: show every kind")
        await ctx.status("working", "phase one")
        await ctx.metric("tokens.in", 42, "tokens", {"model": "m"})
        await ctx.artifact("file:///tmp/out.txt", "text/plain", byte_size=3, sha256="abc")
        await ctx.progress(1, total=2, units="steps", message="half")
        await ctx.call_tool("search", {"query": "q"})
        await ctx.vendor_event("x-vendor.acme.note", {"k": "v"})
        stream = ctx.open_result("utf8")
        await stream.write("part one, ")
        await stream.write("part two")
        await stream.close()
        return None

    @registry.agent("gated")
    async def gated(ctx: JobContext, input_value: Any) -> Any:
        for index in range(5):
            await ctx.log(f"first {index}")
        await gates.release.wait()
        for index in range(5):
            await ctx.log(f"second {index}")
        await gates.second.wait()
        return {"ok": True}

    @registry.agent("forever")
    async def forever(ctx: JobContext, input_value: Any) -> Any:
        await ctx.status("started")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            gates.observed_cancel.set()
            raise
        return None

    registry.register_tool("search", _search)
    return registry


async def _search(args: Any) -> Any:
    return {"hits": [args["query"]]}


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
async def stub(make_core: CoreFactory, gates: Gates) -> AsyncIterator[Stub]:
    core = await make_core(agents=_registry(gates), demo_agents=False)
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        yield new_stub(channel)


async def test_every_event_kind_arrives_in_order(stub: Stub) -> None:
    """§8.2: each kind an agent emits reaches WatchJob in emission order, job_seq 1..n."""
    accepted = (
        await stub.SubmitJob(
            submit_request("everything", lease={"tool.call": ["search"]}), metadata=bearer()
        )
    ).accepted
    watched = await watch_all(stub, accepted.job_id)
    assert watched.kinds() == [
        "log",
        "thought",
        "status",
        "metric",
        "artifact_ref",
        "progress",
        "tool_call",
        "tool_result",
        "vendor",
        "result_chunk",
        "result_chunk",
    ]
    assert watched.seqs == list(range(1, len(watched.events) + 1))
    assert all(e.job_id == accepted.job_id for e in watched.events)
    log, thought, status, metric, artifact, progress, call, result, vendor, c0, c1 = watched.events
    assert (log.log.level, log.log.message) == (events_pb2.LOG_LEVEL_DEBUG, "starting")
    assert thought.thought.text == "plan: show every kind"
    assert (status.status.phase, status.status.message) == ("working", "phase one")
    assert (metric.metric.name, metric.metric.value, metric.metric.unit) == (
        "tokens.in",
        42.0,
        "tokens",
    )
    assert json_format.MessageToDict(metric.metric.dimensions) == {"model": "m"}
    assert (artifact.artifact_ref.uri, artifact.artifact_ref.byte_size) == (
        "file:///tmp/out.txt",
        3,
    )
    assert (progress.progress.current, progress.progress.total) == (1.0, 2.0)
    assert call.tool_call.tool == "search"
    assert json_format.MessageToDict(call.tool_call.args) == {"query": "q"}
    assert result.tool_result.call_id == call.tool_call.call_id
    assert json_format.MessageToDict(result.tool_result.result) == {"hits": ["q"]}
    assert vendor.vendor.kind == "x-vendor.acme.note"
    assert json_format.MessageToDict(vendor.vendor.body) == {"k": "v"}
    assert [(c.result_chunk.chunk_seq, c.result_chunk.more) for c in (c0, c1)] == [
        (0, True),
        (1, False),
    ]
    assert c0.result_chunk.data + c1.result_chunk.data == b"part one, part two"
    assert watched.outcome is not None
    assert watched.frames_with_outcome == 1
    streamed = watched.outcome.result.streamed
    assert streamed.result_id == c0.result_chunk.result_id == c1.result_chunk.result_id
    assert streamed.result_size == len(b"part one, part two")


async def test_pending_then_running_then_exactly_one_terminal(stub: Stub, gates: Gates) -> None:
    """§7.3: a job is pending or running until it ends, then terminal once and for all."""
    accepted = (await stub.SubmitJob(submit_request("gated"), metadata=bearer())).accepted
    first = await stub.GetJob(pb.GetJobRequest(job_id=accepted.job_id), metadata=bearer())
    assert first.job.status in (jobs_pb2.JOB_STATUS_PENDING, jobs_pb2.JOB_STATUS_RUNNING)
    assert not first.HasField("outcome")
    await wait_for_seq(stub, accepted.job_id, lambda e: e.job_seq == 5)
    running = await stub.GetJob(pb.GetJobRequest(job_id=accepted.job_id), metadata=bearer())
    assert running.job.status == jobs_pb2.JOB_STATUS_RUNNING
    gates.release.set()
    gates.second.set()
    watched = await watch_all(stub, accepted.job_id)
    assert watched.frames_with_outcome == 1
    assert watched.outcome is not None
    assert watched.outcome.WhichOneof("outcome") == "result"
    assert watched.outcome.result.final_status == jobs_pb2.JOB_STATUS_SUCCESS
    done = await stub.GetJob(pb.GetJobRequest(job_id=accepted.job_id), metadata=bearer())
    assert done.job.status == jobs_pb2.JOB_STATUS_SUCCESS
    assert done.job.HasField("completed_at")
    assert done.outcome == watched.outcome
    # A terminal job stays terminal: a late cancel cannot turn it into another state.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CancelJob(
            pb.CancelJobRequest(cancel=jobs_pb2.JobCancel(job_id=accepted.job_id)),
            metadata=bearer(),
        )
    assert arcp_error(caught.value).code == "INVALID_REQUEST"
    again = await watch_all(stub, accepted.job_id)
    assert again.outcome == watched.outcome
    assert again.seqs == watched.seqs


async def test_max_runtime_sec_ends_the_job_timed_out(stub: Stub, gates: Gates) -> None:
    """§7.3: past `max_runtime_sec` the job ends timed_out with TIMEOUT."""
    accepted = (
        await stub.SubmitJob(submit_request("forever", max_runtime_sec=1), metadata=bearer())
    ).accepted
    watched = await watch_all(stub, accepted.job_id)
    assert watched.outcome is not None
    assert watched.frames_with_outcome == 1
    error = watched.outcome.error
    assert error.final_status == jobs_pb2.JOB_STATUS_TIMED_OUT
    assert error_code(error) == "TIMEOUT"
    assert gates.observed_cancel.is_set()
    summary = await stub.GetJob(pb.GetJobRequest(job_id=accepted.job_id), metadata=bearer())
    assert summary.job.status == jobs_pb2.JOB_STATUS_TIMED_OUT


async def test_max_runtime_sec_zero_is_invalid(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitJob(submit_request("forever", max_runtime_sec=0), metadata=bearer())
    assert arcp_error(caught.value).code == "INVALID_REQUEST"


async def test_cancel_by_the_submitter_ends_the_job_cancelled(stub: Stub, gates: Gates) -> None:
    """§7.4: the submitter's cancel ends the job with CANCELLED, final status cancelled."""
    accepted = (await stub.SubmitJob(submit_request("forever"), metadata=bearer())).accepted
    await wait_for_seq(stub, accepted.job_id, lambda e: e.WhichOneof("body") == "status")
    reply = await stub.CancelJob(
        pb.CancelJobRequest(cancel=jobs_pb2.JobCancel(job_id=accepted.job_id, reason="enough")),
        metadata=bearer(),
    )
    assert reply.cancelled.job_id == accepted.job_id
    watched = await watch_all(stub, accepted.job_id)
    assert watched.outcome is not None
    error = watched.outcome.error
    assert error.final_status == jobs_pb2.JOB_STATUS_CANCELLED
    assert error_code(error) == "CANCELLED"
    assert error.error.message == "enough"
    assert gates.observed_cancel.is_set()
    # Cancelling a cancelled job is idempotent (CancelJob is IDEMPOTENT).
    await stub.CancelJob(
        pb.CancelJobRequest(cancel=jobs_pb2.JobCancel(job_id=accepted.job_id)), metadata=bearer()
    )
    summary = await stub.GetJob(pb.GetJobRequest(job_id=accepted.job_id), metadata=bearer())
    assert summary.job.status == jobs_pb2.JOB_STATUS_CANCELLED


async def test_cancel_of_a_job_ended_otherwise_names_its_final_status(stub: Stub) -> None:
    """§7.4 covers non-terminal jobs; for an ended one the refusal carries `final_status`
    so a client can answer every ended job alike (`arcp-grpc cancel` does)."""
    accepted = (await stub.SubmitJob(submit_request("everything"), metadata=bearer())).accepted
    outcome = (await watch_all(stub, accepted.job_id)).outcome
    assert outcome is not None
    assert outcome.error.final_status == jobs_pb2.JOB_STATUS_ERROR  # no lease for its tool
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CancelJob(
            pb.CancelJobRequest(cancel=jobs_pb2.JobCancel(job_id=accepted.job_id)),
            metadata=bearer(),
        )
    error = arcp_error(caught.value)
    assert error.code == "INVALID_REQUEST"
    assert error.details == {"job_id": accepted.job_id, "final_status": "error"}


async def test_a_cut_watch_resumes_from_its_last_seq_exactly_once(stub: Stub, gates: Gates) -> None:
    """§8.3: drop the stream mid-job, reopen with the last job_seq seen: every event
    arrives exactly once, including those emitted while nobody watched."""
    accepted = (await stub.SubmitJob(submit_request("gated"), metadata=bearer())).accepted
    seen: list[int] = []
    call = stub.WatchJob(pb.WatchJobRequest(job_id=accepted.job_id), metadata=bearer())

    async def first_part() -> None:
        async for frame in call:
            seen.extend(e.job_seq for e in frame.events)
            if seen and seen[-1] >= 5:
                return

    await asyncio.wait_for(first_part(), SAFETY)
    call.cancel()
    assert seen == [1, 2, 3, 4, 5]
    gates.release.set()  # five more events while no stream is open
    await wait_for_seq(stub, accepted.job_id, lambda e: e.job_seq == 10)
    gates.second.set()
    rest = await watch_all(stub, accepted.job_id, after_seq=seen[-1])
    combined = seen + rest.seqs
    assert combined == list(range(1, 11))
    assert [e.log.message for e in rest.events] == [f"second {i}" for i in range(5)]
    assert rest.outcome is not None
    assert rest.outcome.result.final_status == jobs_pb2.JOB_STATUS_SUCCESS


async def test_a_busy_stream_cut_anywhere_resumes_without_loss(make_core: CoreFactory) -> None:
    """The same with a job emitting thousands of events while the cut happens."""
    core = await make_core()
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        total = 3000
        accepted = (
            await stub.SubmitJob(submit_request("chatty", {"events": total}), metadata=bearer())
        ).accepted
        seen: list[int] = []
        call = stub.WatchJob(pb.WatchJobRequest(job_id=accepted.job_id), metadata=bearer())

        async def some() -> None:
            async for frame in call:
                seen.extend(e.job_seq for e in frame.events)
                if len(seen) >= 100:
                    return

        await asyncio.wait_for(some(), SAFETY)
        call.cancel()
        rest = await watch_all(stub, accepted.job_id, after_seq=seen[-1])
        assert seen + rest.seqs == list(range(1, total + 1))
        assert rest.outcome is not None
        assert rest.outcome.result.final_status == jobs_pb2.JOB_STATUS_SUCCESS
