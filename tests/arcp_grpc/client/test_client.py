"""Every method of `arcp_grpc.client.Client` against a real `serve` over real sockets:
what a backend gets back (plain values, the protobuf beside them) and what it is raised."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from arcp_grpc.client import Client, Submission, Unavailable
from arcp_grpc.errors import AgentNotAvailable, InvalidRequest, JobNotFound, Unauthenticated
from arcp_grpc.v1 import jobs_pb2
from tests.conftest import SAFETY
from tests.serve_process import ServeProcess

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_submit_returns_the_job_and_a_replay_is_the_first_acceptance_byte_for_byte(
    client: Client,
) -> None:
    """§7.2: an identical keyed resubmission is answered with the first acceptance's
    bytes, and the client hands those bytes back unchanged."""
    first = await client.submit("echo", {"n": 1}, idempotency_key="key-replay", trace_id=TRACE)
    assert first.job_id.startswith("job_")
    assert (first.agent, first.replay, first.trace_id) == ("echo@1.0.0", False, TRACE)
    assert first.proto == jobs_pb2.JobAccepted.FromString(first.accepted_bytes)
    again = await client.submit("echo", {"n": 1}, idempotency_key="key-replay", trace_id=TRACE)
    assert again.replay
    assert again.job_id == first.job_id
    assert again.accepted_bytes == first.accepted_bytes


async def test_submit_sends_lease_budget_and_max_runtime(client: Client) -> None:
    job = await client.submit(
        "echo",
        {},
        lease={"model.use": ["tier-fast/*"]},
        budget={"USD": "5.00"},
        max_runtime=30,
    )
    assert job.lease == {"model.use": ["tier-fast/*"], "cost.budget": ["USD:5.00"]}
    assert job.budget == {"USD": "5.00"}


async def test_run_awaits_the_outcome_as_plain_json(client: Client) -> None:
    outcome = await client.run("greeter", {"name": "Ada"})
    assert outcome.ok
    assert outcome.result == {"greeting": "Hello, Ada!", "version": "2.0.0"}
    assert outcome.proto.result.value.struct_value.fields["greeting"].string_value == (
        "Hello, Ada!"
    )


async def test_run_yields_every_event_in_order_then_the_outcome(client: Client) -> None:
    run = client.run("counter", {"steps": 3, "interval": 0.01})
    job = await run.accepted()
    events = [event async for event in run]
    assert [event.seq for event in events] == [1, 2, 3, 4]
    assert events[0].kind == "log"
    assert [e.body["current"] for e in events[1:]] == [1, 2, 3]  # whole numbers as ints
    assert isinstance(events[1].body["current"], int)
    assert run.outcome is not None
    assert (run.outcome.job_id, run.outcome.result) == (job.job_id, {"count": 3})


async def test_following_to_the_outcome_leaves_nothing_for_the_loop_to_close(
    client: Client,
) -> None:
    """Issue 25: a run or watch that reached its outcome has finished with its stream. A
    suspended async generator left behind is closed later by the event loop in a task of
    its own, whose cost fell on the caller's next call (the bench's SubmitJob overhead)."""
    left: list[str] = []
    hooks = sys.get_asyncgen_hooks()
    loop_finalizer = hooks.finalizer
    assert loop_finalizer is not None

    def finalizer(generator: AsyncGenerator[Any, Any]) -> None:
        left.append(repr(generator))
        loop_finalizer(generator)

    sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=finalizer)
    try:
        assert (await client.run("echo", {"n": 1})).ok
        job = await client.submit("chatty", {"events": 2})
        assert [event.seq async for event in client.watch(job.job_id)] == [1, 2]
        gc.collect()
    finally:
        sys.set_asyncgen_hooks(*hooks)
    assert left == []


async def test_a_failed_job_is_an_outcome_with_the_arcp_error(client: Client) -> None:
    outcome = await client.run("counter", {"steps": -1})
    assert (outcome.ok, outcome.status, outcome.result) == (False, "error", None)
    assert isinstance(outcome.error, InvalidRequest)
    assert outcome.error.code == "INVALID_REQUEST"


async def test_submit_many_answers_each_and_a_refusal_does_not_end_the_stream(
    client: Client,
) -> None:
    submissions = [Submission("echo", {"i": i}) for i in range(6)]
    submissions.insert(3, Submission("no-such-agent", {}))
    answers = [answer async for answer in client.submit_many(submissions, window=2)]
    assert sorted(a.index for a in answers) == list(range(7))
    refused = [a for a in answers if a.error is not None]
    assert [a.index for a in refused] == [3]
    assert isinstance(refused[0].error, AgentNotAvailable)
    accepted = {a.index: a.job for a in answers if a.job is not None}
    assert len({job.job_id for job in accepted.values()}) == 6
    for index, job in accepted.items():
        outcome = await client.watch(job.job_id).wait()
        assert outcome.result == {"i": index if index < 3 else index - 1}


async def test_submit_many_reads_the_source_only_as_answers_free_the_window(
    client: Client,
) -> None:
    """Back-pressure: with a window of 2, the source is never more than 2 ahead of the
    answers the caller has taken."""
    taken = 0
    ahead: list[int] = []

    async def source() -> AsyncIterator[Submission]:
        for i in range(8):
            ahead.append(i - taken)
            yield Submission("echo", {"i": i})

    async for _ in client.submit_many(source(), window=2):
        taken += 1
    assert taken == 8
    assert max(ahead) <= 2


async def test_get_and_list_follow_pages(client: Client) -> None:
    jobs = [await client.submit("greeter", {"name": f"p{i}"}) for i in range(5)]
    for job in jobs:
        await client.watch(job.job_id).wait()
    listed = [info async for info in client.list(agent="greeter", page_size=2)]
    assert [info.job_id for info in listed[:5]] == [job.job_id for job in reversed(jobs)]
    assert all(info.status == "success" for info in listed)
    only_success = [info async for info in client.list(status=["success"], page_size=50)]
    assert {job.job_id for job in jobs} <= {info.job_id for info in only_success}
    info = await client.get(jobs[0].job_id)
    assert (info.status, info.agent) == ("success", "greeter@2.0.0")
    assert info.outcome is not None
    assert info.outcome.result == {"greeting": "Hello, p0!", "version": "2.0.0"}


async def test_watch_after_skips_what_was_seen(client: Client) -> None:
    job = await client.submit("chatty", {"events": 5})
    seen = [event.seq async for event in client.watch(job.job_id)]
    assert seen == [1, 2, 3, 4, 5]
    watch = client.watch(job.job_id, after=3)
    assert [event.seq async for event in watch] == [4, 5]
    assert watch.outcome is not None
    assert watch.outcome.ok


async def test_cancel_ends_a_running_job_cancelled(client: Client) -> None:
    job = await client.submit("counter", {"steps": 1000, "interval": 0.05})
    await client.cancel(job.job_id, "enough")
    outcome = await asyncio.wait_for(client.watch(job.job_id).wait(), SAFETY)
    assert outcome.status == "cancelled"
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.message) == ("CANCELLED", "enough")


async def test_agents_lists_names_versions_and_defaults(client: Client) -> None:
    agents = {agent.name: agent for agent in await client.agents()}
    assert agents["greeter"].versions == ("1.0.0", "2.0.0")
    assert agents["greeter"].default_version == "2.0.0"


async def test_errors_are_the_runtimes_exceptions_with_the_arcp_code(
    client: Client, served: ServeProcess
) -> None:
    with pytest.raises(JobNotFound) as missing:
        await client.get("job_missing")
    assert (missing.value.code, missing.value.retryable) == ("JOB_NOT_FOUND", False)
    with pytest.raises(JobNotFound):
        await client.cancel("job_missing")
    with pytest.raises(JobNotFound):
        async for _ in client.watch("job_missing"):
            pass
    with pytest.raises(AgentNotAvailable):
        await client.run("no-such-agent")
    with pytest.raises(InvalidRequest, match=r"input\.x: number nan is not JSON"):
        await client.submit("echo", {"x": float("nan")})  # refused before it is sent
    async with await Client.connect(served.info["grpc"], token="wrong") as stranger:
        with pytest.raises(Unauthenticated):
            await stranger.agents()


async def test_no_token_and_no_core_are_typed_errors() -> None:
    with pytest.raises(Unauthenticated, match="ARCP_TOKEN"):
        await Client.connect("127.0.0.1:1", env={})
    async with await Client.connect("127.0.0.1:1", env={"ARCP_TOKEN": "t"}) as nowhere:
        with pytest.raises(Unavailable) as unreachable:
            await nowhere.agents()
        with pytest.raises(Unavailable):  # at once: a watch never answered is not resumed
            await asyncio.wait_for(nowhere.watch("job_x").wait(), 5)
    assert unreachable.value.retryable
    assert unreachable.value.code == "INTERNAL_ERROR"
    assert "127.0.0.1:1" in str(unreachable.value)
