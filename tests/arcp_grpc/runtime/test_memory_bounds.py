"""What a job or a session may hold in memory is bounded in bytes, not only in count.

A job streaming a large result must not keep it in the core's memory: not in its
live feed's tail, not in a session's resume buffer, not in the store's write queue
(§6.5 allows eviction forced by memory limits; the events themselves are durable).
"""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.auth import Principal
from arcp_grpc.context import JobContext
from arcp_grpc.errors import ResumeWindowExpired
from arcp_grpc.runtime import Disclosure, RuntimeLimits
from arcp_grpc.runtime.feed import _TAIL_BYTES, JobFeed
from arcp_grpc.runtime.job import ActiveJob
from arcp_grpc.server import CoreConfig, start_core
from arcp_grpc.service.sessions import FrameHeader, Session, SessionLimits
from arcp_grpc.v1 import jobs_pb2
from tests.conftest import TOKENS

CHUNK = 256 * 1024


async def test_a_feed_keeps_only_its_last_bytes_of_large_events() -> None:
    feed = JobFeed("job_1")
    for seq in range(1, 101):  # 25 MiB of events
        feed.on_commit([(seq, bytes([seq]) * CHUNK)])
    kept = feed.after(0, 1000)
    assert sum(len(blob) for _, blob in kept) <= _TAIL_BYTES
    assert [seq for seq, _ in kept] == list(range(101 - len(kept), 101))  # the newest, in order
    assert not feed.tail_covers(0)  # older ones come from the store
    assert feed.tail_covers(100 - len(kept))


async def test_a_session_buffer_evicts_by_bytes_and_a_resume_past_it_is_refused() -> None:
    limits = SessionLimits(max_buffered_bytes=4 * CHUNK)
    session = Session("sess_1", Principal("alice"), frozenset(), limits)
    header = FrameHeader("sess_1", job_id="job_1", trace_id="t")
    for _ in range(20):
        session.deliver(header, 23, b"x" * CHUNK)
    assert session.replay.bytes <= 4 * CHUNK + 1024  # a frame's header on top of its body
    assert len(session.replay.after(20 - 3, "sess_1")) == 3
    with pytest.raises(ResumeWindowExpired):
        session.replay.after(0, "sess_1")  # those frames were evicted for memory


async def test_a_large_streamed_result_waits_for_the_store_instead_of_queueing(
    tmp_path: Path,
) -> None:
    limit = 1024 * 1024
    seen: list[int] = []
    holder: dict[str, Any] = {}

    async def producer(ctx: JobContext, value: Any) -> None:
        stream = ctx.open_result("base64")
        for _ in range(64):  # 16 MiB, sixteen times the limit
            await stream.write(b"r" * CHUNK)
            seen.append(holder["store"].write_backlog()[1])
        await stream.close()

    agents = AgentRegistry()
    agents.register("producer", "1.0.0", producer)
    config = CoreConfig(
        data_dir=tmp_path / "core",
        tokens=TOKENS,
        limits=RuntimeLimits(max_pending_event_bytes=limit),
    )
    core = await start_core(config, agents=agents)
    holder["store"] = core.store
    alice = Principal("alice")
    as_alice = Disclosure(alice.name, frozenset())
    try:
        submission = await core.runtime.submit(alice, jobs_pb2.JobSubmit(agent="producer"))
        async with asyncio.timeout(20):
            while (await core.runtime.get(as_alice, submission.job_id))[1] is None:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert len(seen) == 64
        assert max(seen) <= limit + CHUNK  # at most the chunk that crossed the line
    finally:
        await core.stop(grace=0.5)


async def test_only_small_finished_jobs_stay_in_memory(tmp_path: Path) -> None:
    """Recently finished jobs are kept for the follower that comes next, but one with a
    large result is the store's alone; both read back the same."""
    config = CoreConfig(data_dir=tmp_path / "core", tokens=TOKENS)
    core = await start_core(config)
    alice = Principal("alice")
    as_alice = Disclosure(alice.name, frozenset())
    try:
        outcomes = {}
        for name, text in (("small", "hi"), ("large", "x" * (256 * 1024))):
            submit = jobs_pb2.JobSubmit(agent="echo")
            submit.input.struct_value.fields["text"].string_value = text
            submission = await core.runtime.submit(alice, submit)
            async with asyncio.timeout(20):
                while (await core.runtime.get(as_alice, submission.job_id))[1] is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            outcomes[name] = submission.job_id
        assert core.runtime.feed(outcomes["small"]) is not None  # still in memory
        assert core.runtime.feed(outcomes["large"]) is None  # only in the store
        _, large = await core.runtime.get(as_alice, outcomes["large"])
        assert large is not None
        assert large.result.value.struct_value.fields["text"].string_value == "x" * (256 * 1024)
    finally:
        await core.stop(grace=0.5)


async def test_a_finished_job_is_not_held_until_its_lease_expiry(tmp_path: Path) -> None:
    """The timer that ends a job outliving its lease (§9.5) goes with the job's end: a job
    that finished long before its `expires_at` is not kept in memory (its event tail is up
    to 4 MiB) until that wall-clock time."""
    config = CoreConfig(
        data_dir=tmp_path / "core", tokens=TOKENS, limits=RuntimeLimits(recent_jobs=0)
    )
    core = await start_core(config)
    alice = Principal("alice")
    try:
        submit = jobs_pb2.JobSubmit(agent="echo")
        submit.lease_constraints.expires_at.FromDatetime(datetime.now(UTC) + timedelta(days=1))
        submission = await core.runtime.submit(alice, submit)
        async with asyncio.timeout(20):
            while core.runtime.feed(submission.job_id) is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await asyncio.sleep(0)  # let the job's task finish unwinding
        gc.collect()
        held = [
            job
            for job in gc.get_objects()
            if isinstance(job, ActiveJob) and job.job_id == submission.job_id
        ]
        assert held == []
    finally:
        await core.stop(grace=0.5)
