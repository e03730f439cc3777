"""Listing by live status (§6.6): the store keeps unfinished jobs as pending and the
runtime knows which run, so filters on pending/running are answered from both, with
paging that still walks every match exactly once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from arcp_grpc.v1 import job_service_pb2 as pb
from arcp_grpc.v1 import jobs_pb2
from tests.conftest import bearer, submit_request, wait_for_seq, watch_all

if TYPE_CHECKING:
    from arcp_grpc.v1.job_service_pb2_grpc import JobServiceAsyncStub as Stub

RUNNING = jobs_pb2.JOB_STATUS_RUNNING
SUCCESS = jobs_pb2.JOB_STATUS_SUCCESS


async def _list(
    stub: Stub, statuses: list[jobs_pb2.JobStatus.ValueType], page_size: int
) -> list[jobs_pb2.JobSummary]:
    found: list[jobs_pb2.JobSummary] = []
    token = ""
    for _ in range(50):
        request = pb.ListJobsRequest(page_size=page_size, page_token=token)
        request.filter.status.extend(statuses)
        reply = await stub.ListJobs(request, metadata=bearer())
        found.extend(reply.jobs)
        token = reply.next_page_token
        if not token:
            return found
    raise AssertionError("paging did not end")


async def test_running_filter_pages_through_live_jobs_only(stub: Stub) -> None:
    finished = []
    for index in range(7):
        accepted = (await stub.SubmitJob(submit_request("echo", index), metadata=bearer())).accepted
        await watch_all(stub, accepted.job_id)
        finished.append(accepted.job_id)
    running = []
    for _ in range(5):
        request = submit_request("counter", {"steps": 100_000, "interval": 0.05})
        accepted = (await stub.SubmitJob(request, metadata=bearer())).accepted
        await wait_for_seq(stub, accepted.job_id, lambda e: e.WhichOneof("body") == "progress")
        running.append(accepted.job_id)
    more = (await stub.SubmitJob(submit_request("echo", "last"), metadata=bearer())).accepted
    await watch_all(stub, more.job_id)
    finished.append(more.job_id)

    listed = await _list(stub, [RUNNING], page_size=2)
    assert sorted(j.job_id for j in listed) == sorted(running)
    assert {j.status for j in listed} == {RUNNING}

    both = await _list(stub, [RUNNING, SUCCESS], page_size=3)
    assert sorted(j.job_id for j in both) == sorted(running + finished)

    done = await _list(stub, [SUCCESS], page_size=4)
    assert sorted(j.job_id for j in done) == sorted(finished)
