"""When the store can no longer commit: on SQLite a real SQLITE_FULL (the file may not
grow), on PostgreSQL the server ending the node's writing connection.

The store stops accepting writes; what it could not record is never shown as if it
had been, and the core says it is not serving.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.auth import Principal
from arcp_grpc.context import JobContext
from arcp_grpc.v1 import errors_pb2, jobs_pb2
from tests.conftest import CoreFactory, break_store


async def test_a_job_whose_end_cannot_be_recorded_is_reported_as_failed(
    make_core: CoreFactory,
) -> None:
    release = asyncio.Event()

    async def large_result(ctx: JobContext, value: Any) -> Any:
        await release.wait()
        return {"blob": "x" * 200_000}  # its outcome needs new pages

    agents = AgentRegistry()
    agents.register("large", "1.0.0", large_result)
    core = await make_core(agents=agents)
    alice = Principal("alice")
    submission = await core.runtime.submit(alice, jobs_pb2.JobSubmit(agent="large"))
    watch = core.runtime.watch(alice, submission.job_id, 0)
    await break_store(core)
    release.set()
    async with asyncio.timeout(10):
        async for batch in watch:
            if batch.outcome is not None:
                outcome = jobs_pb2.JobOutcome.FromString(batch.outcome)
                break
    assert outcome.WhichOneof("outcome") == "error"  # not the result the store never kept
    assert outcome.error.error.code == errors_pb2.ERROR_CODE_INTERNAL_ERROR
    assert outcome.error.error.retryable
    async with asyncio.timeout(10):  # told on the loop, right after the failed commit
        while core.serving_status() != "NOT_SERVING":  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await core.stop(grace=0.5)  # and it still stops cleanly
