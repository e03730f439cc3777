"""A core on PostgreSQL while its database is cut off (issue 20), through a real TCP
proxy (`tests.pg_proxy`): the node reports NOT_SERVING and refuses new jobs with a
retryable error; the running job goes on, and its output waits in memory up to
`runtime.max_pending_event_bytes`, past which the agent's emits wait (back-pressure,
never loss); once the database answers, everything is committed, the watcher gets
every event once and in order, and the node is SERVING again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.auth import Principal
from arcp_grpc.context import JobContext
from arcp_grpc.errors import StoreUnreachable
from arcp_grpc.runtime import ClusterLimits, RuntimeLimits
from arcp_grpc.server import CoreConfig, RunningCore, start_core
from arcp_grpc.v1 import events_pb2, jobs_pb2
from tests.conftest import TOKENS, event_kind, postgres_schema
from tests.pg_proxy import PgProxy, proxied

_EVENTS = 120
_EVENT_TEXT = 1000  # characters per log event
_BOUND = 16_000  # runtime.max_pending_event_bytes here: about 16 events
_WITHIN = 20.0  # s: a safety net for every wait, never what the test checks


@pytest.fixture
async def proxy(postgres_server: str) -> AsyncIterator[tuple[PgProxy, str]]:
    """A proxy to a fresh schema, and the store URL through it."""
    async with postgres_schema(postgres_server) as url, proxied(url) as made:
        yield made


@pytest.fixture
async def core(
    proxy: tuple[PgProxy, str], tmp_path: Path
) -> AsyncIterator[tuple[RunningCore, asyncio.Event, list[int]]]:
    go = asyncio.Event()
    emitted = [0]

    async def steady(ctx: JobContext, value: Any) -> Any:
        await go.wait()
        for index in range(_EVENTS):
            await ctx.log(f"{index:04d}" + "x" * _EVENT_TEXT)
            emitted[0] += 1
        return {"events": _EVENTS}

    agents = AgentRegistry()
    agents.register("steady", "1.0.0", steady)
    config = CoreConfig(
        data_dir=tmp_path / "data",
        tokens=TOKENS,
        store_url=proxy[1],
        limits=RuntimeLimits(max_pending_event_bytes=_BOUND),
        cluster=ClusterLimits(node_timeout_sec=2.0, heartbeat_sec=0.2),
    )
    running = await start_core(config, agents=agents)
    try:
        yield running, go, emitted
    finally:
        await running.stop(grace=0.5)


async def _until(condition: Any, what: str) -> float:
    """Seconds until `condition()` holds (bounded by `_WITHIN`)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < _WITHIN, what
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_an_outage_holds_the_agent_at_the_byte_bound_and_loses_nothing(
    core: tuple[RunningCore, asyncio.Event, list[int]], proxy: tuple[PgProxy, str]
) -> None:
    running, go, emitted = core
    cut = proxy[0]
    alice = Principal("alice")
    submission = await running.runtime.submit(alice, jobs_pb2.JobSubmit(agent="steady"))
    watch = running.runtime.watch(alice, submission.job_id, 0)
    cut.down()
    go.set()
    await _until(lambda: running.serving_status() == "NOT_SERVING", "NOT_SERVING in the outage")
    await _until(lambda: emitted[0] > 0, "the agent runs on")
    await asyncio.sleep(1.0)  # time enough to emit everything, were it not held
    held = emitted[0]
    assert held < _EVENTS  # the agent waits: back-pressure
    _, queued = running.store.write_backlog()
    assert queued <= _BOUND + 2 * _EVENT_TEXT  # the bound, plus the event that crossed it
    with pytest.raises(StoreUnreachable) as refused:  # no new job it could not record
        await running.runtime.submit(alice, jobs_pb2.JobSubmit(agent="steady"))
    assert refused.value.retryable

    cut.up()
    back = await _until(lambda: running.serving_status() == "SERVING", "SERVING again")
    assert back < 5.0  # the bound: SERVING within seconds of the database
    seen: list[str] = []
    outcome = jobs_pb2.JobOutcome()
    async with asyncio.timeout(_WITHIN):
        async for batch in watch:
            for blob in batch.events:
                event = events_pb2.JobEvent.FromString(blob)
                if event_kind(event) == "log":
                    seen.append(event.log.message[:4])
            if batch.outcome is not None:
                outcome.ParseFromString(batch.outcome)
                break
    assert seen == [f"{i:04d}" for i in range(_EVENTS)]  # every event, once, in order
    assert outcome.WhichOneof("outcome") == "result"  # the job finished normally
    stored = await running.store.read_events(submission.job_id, 0, 10 * _EVENTS)
    assert [row.seq for row in stored] == list(range(1, len(stored) + 1))  # none repeated


async def test_a_node_stops_even_while_its_database_is_cut_off(
    core: tuple[RunningCore, asyncio.Event, list[int]], proxy: tuple[PgProxy, str]
) -> None:
    """A SIGTERM during an outage must not hang the process (systemd would SIGKILL it):
    the stop waits for the store a bounded time, then gives up on what was queued."""
    running, go, _ = core
    await running.runtime.submit(Principal("alice"), jobs_pb2.JobSubmit(agent="steady"))
    proxy[0].down()
    go.set()
    await _until(lambda: running.serving_status() == "NOT_SERVING", "NOT_SERVING in the outage")
    async with asyncio.timeout(_WITHIN + 20):  # the bounded waits (docs/operations.md)
        await running.stop(grace=0.5)
    assert running.stopped
