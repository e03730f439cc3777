"""JobService's streaming submit paths over a real grpc.aio server: RunJob (submit and
follow a job in one call) and SubmitJobs (many submissions on one stream).

Exact replay (§7.2) is checked on the bytes as they crossed the wire, read through
stubs that do not parse responses, so a rebuilt or re-serialised `JobAccepted` fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.base.wire import length_delimited, only_field, varint
from arcp_grpc.context import JobContext
from arcp_grpc.credentials import DevProvisioner
from arcp_grpc.errors import PermissionDenied
from arcp_grpc.grpc_status import ERROR_DOMAIN
from arcp_grpc.service.job_service import SUBMIT_WINDOW
from arcp_grpc.v1 import job_service_pb2 as pb
from arcp_grpc.v1 import jobs_pb2
from tests.conftest import (
    SAFETY,
    SPENDING,
    CoreFactory,
    arcp_error,
    bearer,
    error_code,
    event_kind,
    new_stub,
    submit_request,
    watch_all,
)

RUN = "/arcp.v1.JobService/RunJob"
SUBMIT = "/arcp.v1.JobService/SubmitJob"
SUBMIT_MANY = "/arcp.v1.JobService/SubmitJobs"
REPLAY = varint(4 << 3) + varint(1)  # `replay: true` (field 4) of both streamed responses


def _registry() -> AgentRegistry:
    """Agents beside the demo ones (`echo` returns its input)."""
    registry = AgentRegistry()

    @registry.agent("steps")
    async def steps(ctx: JobContext, input_value: Any) -> Any:
        for index in range(int(input_value["n"])):
            await ctx.log(f"step {index}")
        return {"steps": input_value["n"]}

    @registry.agent("refuses")
    async def refuses(ctx: JobContext, input_value: Any) -> Any:
        await ctx.log("about to refuse")
        raise PermissionDenied("this agent refuses every job")

    @registry.agent("crashes")
    async def crashes(ctx: JobContext, input_value: Any) -> Any:
        await ctx.log("about to crash")
        raise RuntimeError("a bug in the agent")

    return registry


@dataclass
class Env:
    channel: grpc.aio.Channel


@pytest.fixture
async def env(make_core: CoreFactory) -> AsyncIterator[Env]:
    """A core with the agents above and a credential provisioner (§9.8), so that an
    acceptance carries secrets a rebuilt replay could lose."""
    core = await make_core(agents=_registry(), provisioner=DevProvisioner())
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        yield Env(channel)


def _run_request(agent: str, input_value: Any = None, **kwargs: Any) -> pb.RunJobRequest:
    return pb.RunJobRequest(submit=submit_request(agent, input_value, **kwargs).submit)


async def raw_run(channel: grpc.aio.Channel, request: pb.RunJobRequest) -> list[bytes]:
    """Every RunJob message as it crossed the wire, in order."""
    method = channel.unary_stream(
        RUN,
        request_serializer=pb.RunJobRequest.SerializeToString,
        response_deserializer=lambda body: body,
    )

    async def read() -> list[bytes]:
        return [message async for message in method(request, metadata=bearer())]

    return await asyncio.wait_for(read(), SAFETY)


async def raw_submit_many(
    channel: grpc.aio.Channel,
    requests: Iterable[pb.SubmitJobsRequest | bytes],
    token: str = "tok-alice",
) -> list[bytes]:
    """Every SubmitJobs answer as it crossed the wire, in the order they came; a `bytes`
    item is sent as it is."""
    method = channel.stream_stream(
        SUBMIT_MANY,
        request_serializer=lambda body: body,
        response_deserializer=lambda body: body,
    )
    items = [r if isinstance(r, bytes) else r.SerializeToString() for r in requests]

    async def read() -> list[bytes]:
        return [answer async for answer in method(iter(items), metadata=bearer(token))]

    return await asyncio.wait_for(read(), SAFETY)


def _item(correlation_id: str, request: pb.SubmitJobRequest) -> pb.SubmitJobsRequest:
    return pb.SubmitJobsRequest(correlation_id=correlation_id, submit=request.submit)


def _by_id(answers: list[bytes]) -> dict[str, bytes]:
    by_id = {pb.SubmitJobsResponse.FromString(a).correlation_id: a for a in answers}
    assert len(by_id) == len(answers), "each item is answered exactly once"
    return by_id


def _error_of(answer: bytes) -> tuple[int, error_details_pb2.ErrorInfo]:
    """The gRPC code and ErrorInfo of a refused item, read as a google.rpc.Status."""
    parsed = pb.SubmitJobsResponse.FromString(answer)
    assert parsed.WhichOneof("result") == "error"
    status = status_pb2.Status.FromString(parsed.error.SerializeToString())
    (packed,) = status.details
    info = error_details_pb2.ErrorInfo()
    assert packed.Unpack(info)
    assert info.domain == ERROR_DOMAIN
    return status.code, info


async def test_run_job_streams_acceptance_events_and_result(env: Env) -> None:
    """§7.1, §8, §7.3 in one call: the acceptance alone first, then every event in
    gap-free `job_seq` order, and the outcome on the last message."""
    messages = [
        pb.RunJobResponse.FromString(m)
        for m in await raw_run(env.channel, _run_request("steps", {"n": 5}))
    ]
    first, rest = messages[0], messages[1:]
    assert first.HasField("accepted")
    assert not first.replay
    assert not first.events
    assert not first.HasField("outcome")
    assert first.accepted.agent == "steps@1.0.0"
    job_id = first.accepted.job_id
    assert not any(m.HasField("accepted") for m in rest)
    events = [e for m in rest for e in m.events]
    assert [e.job_seq for e in events] == [1, 2, 3, 4, 5]
    assert {e.job_id for e in events} == {job_id}
    assert [e.log.message for e in events] == [f"step {i}" for i in range(5)]
    assert [m.HasField("outcome") for m in rest][-1]
    assert sum(m.HasField("outcome") for m in rest) == 1
    outcome = rest[-1].outcome
    assert outcome.result.job_id == job_id
    assert outcome.result.final_status == jobs_pb2.JOB_STATUS_SUCCESS
    assert outcome.result.value.struct_value["steps"] == 5
    got = await new_stub(env.channel).GetJob(pb.GetJobRequest(job_id=job_id), metadata=bearer())
    assert got.outcome == outcome


async def test_run_job_replay_sends_the_original_acceptance_bytes(env: Env) -> None:
    """§7.2: a RunJob with a used key sends the cached `JobAccepted` bytes unchanged
    (provisioned credentials included), marked `replay`, then follows the original job;
    SubmitJob and RunJob replay each other's acceptance byte for byte."""
    submitted = submit_request("steps", {"n": 2}, key="K-run", lease=SPENDING)
    stub = new_stub(env.channel)
    call = env.channel.unary_unary(
        SUBMIT,
        request_serializer=pb.SubmitJobRequest.SerializeToString,
        response_deserializer=lambda body: body,
    )
    body = await call(submitted, metadata=bearer())
    field, accepted = only_field(body)
    assert field == 1
    (credential,) = jobs_pb2.JobAccepted.FromString(accepted).credentials
    assert credential.value.startswith("sk-dev-")

    request = pb.RunJobRequest(submit=submitted.submit)
    replayed = await raw_run(env.channel, request)
    assert replayed[0] == length_delimited(3, accepted) + REPLAY
    job_id = jobs_pb2.JobAccepted.FromString(accepted).job_id
    original = await watch_all(stub, job_id)
    events = [e for m in replayed[1:] for e in pb.RunJobResponse.FromString(m).events]
    assert events == original.events
    assert pb.RunJobResponse.FromString(replayed[-1]).outcome == original.outcome

    again = await raw_run(env.channel, request)
    assert again[0] == replayed[0]
    listed = await stub.ListJobs(pb.ListJobsRequest(), metadata=bearer())
    assert [j.job_id for j in listed.jobs] == [job_id]  # no job ran twice


async def test_a_first_run_job_is_what_submit_job_replays(env: Env) -> None:
    """§7.2 the other way round: RunJob's acceptance is the one cached."""
    submitted = submit_request("echo", {"v": 1}, key="K-first-run")
    first = await raw_run(env.channel, pb.RunJobRequest(submit=submitted.submit))
    field, accepted = only_field(first[0])
    assert field == 3  # no `replay` field: a new job
    call = env.channel.unary_unary(
        SUBMIT,
        request_serializer=pb.SubmitJobRequest.SerializeToString,
        response_deserializer=lambda body: body,
    )
    assert await call(submitted, metadata=bearer()) == length_delimited(1, accepted)


@pytest.mark.parametrize(
    ("agent", "code"), [("refuses", "PERMISSION_DENIED"), ("crashes", "INTERNAL_ERROR")]
)
async def test_run_job_of_a_failing_agent_ends_with_its_error(
    env: Env, agent: str, code: str
) -> None:
    """§7.3, §12: the stream carries the events the agent emitted, then the job's error
    as the outcome; the call itself succeeds (the job ran and ended)."""
    messages = [
        pb.RunJobResponse.FromString(m) for m in await raw_run(env.channel, _run_request(agent))
    ]
    events = [e for m in messages for e in m.events]
    assert [event_kind(e) for e in events] == ["log"]
    outcome = messages[-1].outcome
    assert outcome.WhichOneof("outcome") == "error"
    assert outcome.error.final_status == jobs_pb2.JOB_STATUS_ERROR
    assert outcome.error.job_id == messages[0].accepted.job_id
    assert error_code(outcome.error) == code


@pytest.mark.parametrize(
    ("request_", "status", "reason"),
    [
        (_run_request("nosuch"), grpc.StatusCode.NOT_FOUND, "AGENT_NOT_AVAILABLE"),
        (_run_request("Not A Name!"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
        (pb.RunJobRequest(), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
    ],
    ids=["unknown-agent", "malformed-agent", "no-submit"],
)
async def test_run_job_refused_submission_fails_the_call(
    env: Env, request_: pb.RunJobRequest, status: grpc.StatusCode, reason: str
) -> None:
    """A refused submission is the status SubmitJob returns, and no job exists."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_run(env.channel, request_)
    assert caught.value.code() == status
    assert arcp_error(caught.value).code == reason
    listed = await new_stub(env.channel).ListJobs(pb.ListJobsRequest(), metadata=bearer())
    assert list(listed.jobs) == []


async def test_submit_jobs_answers_each_item_and_bad_items_do_not_end_the_stream(
    env: Env,
) -> None:
    """Each item gets its own answer under its correlation id: accepted jobs run to
    their result; a refused item carries the unary calls' status (gRPC code, one
    ErrorInfo with the ARCP code) while the items around it go through."""
    stub = new_stub(env.channel)
    held = await stub.SubmitJob(submit_request("echo", {"v": 0}, key="K-held"), metadata=bearer())
    good = [_item(f"good-{i}", submit_request("echo", {"v": i})) for i in range(6)]
    bad = [
        _item("unknown-agent", submit_request("nosuch")),
        _item("malformed-agent", submit_request("Not A Name!")),
        _item("no-submit", pb.SubmitJobRequest()),
        _item("conflict", submit_request("echo", {"v": 99}, key="K-held")),
        _item("long-key", submit_request("echo", key="k" * 300)),
    ]
    undecodable = b"\xff\xff\xff"  # not a SubmitJobsRequest at all: answered with no id
    interleaved: list[pb.SubmitJobsRequest | bytes] = [
        good[0],
        *bad[:2],
        good[1],
        undecodable,
        good[2],
        *bad[2:],
        *good[3:],
    ]
    answers = _by_id(await raw_submit_many(env.channel, interleaved))
    assert set(answers) == {i.correlation_id for i in [*good, *bad]} | {""}

    expected = {
        "unknown-agent": (code_pb2.NOT_FOUND, "AGENT_NOT_AVAILABLE"),
        "malformed-agent": (code_pb2.INVALID_ARGUMENT, "INVALID_REQUEST"),
        "no-submit": (code_pb2.INVALID_ARGUMENT, "INVALID_REQUEST"),
        "conflict": (code_pb2.ALREADY_EXISTS, "DUPLICATE_KEY"),
        "long-key": (code_pb2.INVALID_ARGUMENT, "INVALID_REQUEST"),
        "": (code_pb2.INVALID_ARGUMENT, "INVALID_REQUEST"),
    }
    for correlation_id, (code, reason) in expected.items():
        status_code, info = _error_of(answers[correlation_id])
        assert (status_code, info.reason) == (code, reason), correlation_id
        assert info.metadata["retryable"] == "false"

    for index, item in enumerate(good):
        answer = pb.SubmitJobsResponse.FromString(answers[item.correlation_id])
        assert answer.WhichOneof("result") == "accepted"
        assert not answer.replay
        watched = await watch_all(stub, answer.accepted.job_id)
        assert watched.outcome is not None
        assert watched.outcome.result.value.struct_value["v"] == index
    listed = await stub.ListJobs(pb.ListJobsRequest(), metadata=bearer())
    assert len(listed.jobs) == len(good) + 1  # the held key's job; no refused item made one
    assert held.accepted.job_id in {j.job_id for j in listed.jobs}


async def test_submit_jobs_replays_each_item_byte_for_byte(env: Env) -> None:
    """§7.2 per item: resubmitting keyed items (on a new stream, or twice on one) answers
    each with the cached `JobAccepted` bytes, credentials included, marked `replay`."""
    keyed = [
        _item(f"item-{i}", submit_request("echo", {"v": i}, key=f"K-many-{i}", lease=SPENDING))
        for i in range(4)
    ]
    first = _by_id(await raw_submit_many(env.channel, keyed))
    for item in keyed:
        accepted = pb.SubmitJobsResponse.FromString(first[item.correlation_id]).accepted
        assert len(accepted.credentials) == 1
    again = [
        _item(f"again-{i.correlation_id}", pb.SubmitJobRequest(submit=i.submit)) for i in keyed
    ]
    second = _by_id(await raw_submit_many(env.channel, [*keyed, *again]))
    head = len(length_delimited(1, b"item-0"))
    for item in keyed:
        original = first[item.correlation_id]
        assert second[item.correlation_id] == original + REPLAY
        renamed = second[f"again-{item.correlation_id}"]
        prefix = length_delimited(1, f"again-{item.correlation_id}".encode())
        assert renamed == prefix + original[head:] + REPLAY
    listed = await new_stub(env.channel).ListJobs(pb.ListJobsRequest(), metadata=bearer())
    assert len(listed.jobs) == len(keyed)


async def test_submit_jobs_answers_every_item_beyond_the_window(env: Env) -> None:
    """More items than `SUBMIT_WINDOW` on one stream: every one is answered once and
    makes one job; the stream then ends with OK."""
    count = SUBMIT_WINDOW * 2 + 5
    items = [_item(str(i), submit_request("echo", {"v": i})) for i in range(count)]
    answers = _by_id(await raw_submit_many(env.channel, items))
    assert set(answers) == {str(i) for i in range(count)}
    job_ids = {pb.SubmitJobsResponse.FromString(a).accepted.job_id for a in answers.values()}
    assert len(job_ids) == count
    stub = new_stub(env.channel)
    listed = await stub.ListJobs(pb.ListJobsRequest(page_size=1000), metadata=bearer())
    assert {j.job_id for j in listed.jobs} == job_ids


async def test_submit_jobs_keys_are_scoped_per_principal(env: Env) -> None:
    """§7.2, §6.6: the same key from another principal is a new job, not a replay."""
    item = _item("x", submit_request("echo", {"v": 1}, key="K-shared"))
    alice = pb.SubmitJobsResponse.FromString((await raw_submit_many(env.channel, [item]))[0])
    bob = pb.SubmitJobsResponse.FromString(
        (await raw_submit_many(env.channel, [item], token="tok-bob"))[0]
    )
    assert not alice.replay
    assert not bob.replay
    assert alice.accepted.job_id != bob.accepted.job_id


async def test_a_client_leaving_mid_stream_leaves_no_half_done_submission(env: Env) -> None:
    """A SubmitJobs caller that cancels after its first answers: every job the server
    accepted still runs to its end, and the service goes on serving (no wedged stream)."""
    stub = new_stub(env.channel)
    items = [_item(str(i), submit_request("steps", {"n": 3})) for i in range(SUBMIT_WINDOW)]
    call = stub.SubmitJobs(iter(items), metadata=bearer())
    first = await asyncio.wait_for(call.read(), SAFETY)
    assert isinstance(first, pb.SubmitJobsResponse)
    assert first.WhichOneof("result") == "accepted"
    call.cancel()

    listed = await stub.ListJobs(pb.ListJobsRequest(page_size=1000), metadata=bearer())
    assert first.accepted.job_id in {j.job_id for j in listed.jobs}
    for job in listed.jobs:
        watched = await watch_all(stub, job.job_id)
        assert watched.outcome is not None
        assert watched.outcome.result.final_status == jobs_pb2.JOB_STATUS_SUCCESS
        assert watched.seqs == [1, 2, 3]
    after = await raw_submit_many(env.channel, [_item("after", submit_request("echo"))])
    assert pb.SubmitJobsResponse.FromString(after[0]).WhichOneof("result") == "accepted"
