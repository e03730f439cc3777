"""500 jobs from 10 clients at once: every one reaches a terminal state with a
complete, ordered event log (§8.3: `job_seq` 1..n, gap-free)."""

from __future__ import annotations

import asyncio

import grpc

from arcp_grpc.server import RunningCore
from arcp_grpc.v1 import job_service_pb2 as pb
from arcp_grpc.v1 import jobs_pb2
from tests.conftest import SAFETY, Watched, bearer, new_stub, submit_request, watch_all

CLIENTS = 10
JOBS_PER_CLIENT = 50
EVENTS = 20


async def _client(address: str, index: int) -> list[tuple[str, Watched]]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = new_stub(channel)

        async def one(job: int) -> tuple[str, Watched]:
            # Watch right after acceptance, so most streams follow live jobs.
            response = await stub.SubmitJob(
                submit_request("chatty", {"events": EVENTS}, key=f"c{index}-j{job}"),
                metadata=bearer(),
            )
            job_id = response.accepted.job_id
            return job_id, await watch_all(stub, job_id)

        return list(await asyncio.gather(*(one(job) for job in range(JOBS_PER_CLIENT))))


async def test_five_hundred_concurrent_jobs_complete_in_order(core: RunningCore) -> None:
    results = await asyncio.wait_for(
        asyncio.gather(*(_client(core.grpc_address, i) for i in range(CLIENTS))), SAFETY * 2
    )
    jobs = [pair for client in results for pair in client]
    assert len({job_id for job_id, _ in jobs}) == CLIENTS * JOBS_PER_CLIENT
    for job_id, watched in jobs:
        assert watched.seqs == list(range(1, EVENTS + 1)), job_id
        assert [e.log.message for e in watched.events] == [f"event {i}" for i in range(EVENTS)]
        assert {e.job_id for e in watched.events} == {job_id}
        assert watched.frames_with_outcome == 1
        assert watched.outcome is not None
        assert watched.outcome.result.final_status == jobs_pb2.JOB_STATUS_SUCCESS
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        listed = await new_stub(channel).ListJobs(
            pb.ListJobsRequest(page_size=1000), metadata=bearer()
        )
    assert len(listed.jobs) == CLIENTS * JOBS_PER_CLIENT
    assert {j.status for j in listed.jobs} == {jobs_pb2.JOB_STATUS_SUCCESS}
    assert {j.last_event_seq for j in listed.jobs} == {EVENTS}
