"""`start_core` stops whatever it started when a later step fails, and `stop` ends it all.

A core that could not bind its port must not leave the runtime's loops, the session
sweeper or the store's writer behind: `serve` reports the error and exits, and an
embedding application retries on another port with the same data directory.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from arcp_grpc.auth import Principal
from arcp_grpc.server import CoreConfig, start_core
from arcp_grpc.v1 import jobs_pb2


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket holds for the whole test."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def leftovers() -> list[str]:
    """Tasks other than the test's own, and the store's threads, still running."""
    tasks = [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    threads = [t.name for t in threading.enumerate() if t.name.startswith("arcp-")]
    return tasks + threads


async def test_a_core_that_cannot_bind_stops_what_it_started(
    core_config: CoreConfig, taken_port: int
) -> None:
    with pytest.raises((OSError, RuntimeError)):
        await start_core(replace(core_config, grpc_port=taken_port))
    assert leftovers() == []  # the runtime's loops, the session sweeper, the store
    core = await start_core(core_config)  # the same data directory, a free port
    try:
        alice = Principal("alice")
        submission = await core.runtime.submit(alice, jobs_pb2.JobSubmit(agent="echo"))
        async for batch in core.runtime.watch(alice, submission.job_id, 0):
            if batch.outcome is not None:
                outcome = jobs_pb2.JobOutcome.FromString(batch.outcome)
                break
        assert outcome.WhichOneof("outcome") == "result"
    finally:
        await core.stop(grace=0.5)


async def test_a_stopped_core_leaves_nothing_running(core_config: CoreConfig) -> None:
    core = await start_core(core_config)
    assert core.serving_status() == "SERVING"
    await core.stop(grace=0.5)
    assert core.serving_status() == "NOT_SERVING"
    assert leftovers() == []
    await core.stop(grace=0.5)  # a second stop finds nothing left to stop
