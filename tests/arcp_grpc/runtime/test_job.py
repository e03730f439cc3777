"""One job's lifecycle (`arcp_grpc.runtime.job`): its phases move forward only, its status
follows from them, an ended job emits nothing, and the lease is held once."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from arcp_grpc.agents import RegisteredAgent
from arcp_grpc.auth import Principal
from arcp_grpc.base.job_host import ChildRequest, HostFunction
from arcp_grpc.errors import Cancelled, InvalidRequest
from arcp_grpc.lease import BudgetCounters, Lease, LeaseClock
from arcp_grpc.runtime import RuntimeLimits
from arcp_grpc.runtime.job import ActiveJob, Phase
from arcp_grpc.v1 import events_pb2, jobs_pb2, lease_pb2


class Services:
    """Records what the job appends; the rest is not used here."""

    limits = RuntimeLimits()

    def __init__(self) -> None:
        self.appended: list[tuple[int, bool]] = []

    def append(self, job_id: str, seq: int, blob: bytes, *, secret: bool) -> None:
        self.appended.append((seq, secret))

    async def backpressure(self) -> None:
        return None

    def tool(self, name: str) -> HostFunction:
        raise AssertionError("unused")

    def model(self, name: str) -> HostFunction:
        raise AssertionError("unused")

    async def rotate_credential(self, job: ActiveJob, credential_id: str) -> lease_pb2.Credential:
        raise AssertionError("unused")

    async def delegate(self, parent: ActiveJob, request: ChildRequest) -> ActiveJob:
        raise AssertionError("unused")


async def _agent(ctx: object, value: object) -> object:
    return value


def _job(services: Services, expires_at: datetime | None = None) -> ActiveJob:
    lease = Lease.parse({"tool.call": ["echo"]})
    now = datetime.now(UTC)
    return ActiveJob(
        services=services,
        job_id="job_1",
        principal=Principal("alice"),
        agent=RegisteredAgent("echo", "1.0.0", _agent),
        trace_id="0" * 32,
        lease=lease,
        clock=LeaseClock(expires_at, wall_now=now, mono_now=time.monotonic()),
        budget=BudgetCounters(lease.budget_amounts()),
        credentials=[],
        summary=jobs_pb2.JobSummary(job_id="job_1", agent="echo@1.0.0"),
        max_runtime_sec=None,
    )


def _ended(job: ActiveJob) -> None:
    outcome = jobs_pb2.JobOutcome(result=jobs_pb2.JobResult(job_id=job.job_id))
    final = job.view()
    final.status = jobs_pb2.JOB_STATUS_SUCCESS
    job.end(outcome, outcome.SerializeToString(), final)


def test_status_follows_the_phase_then_the_stored_summary() -> None:
    job = _job(Services())
    assert (job.phase, job.status) == (Phase.PENDING, jobs_pb2.JOB_STATUS_PENDING)
    job.start()
    assert job.status == jobs_pb2.JOB_STATUS_RUNNING
    job.decide()
    assert job.status == jobs_pb2.JOB_STATUS_RUNNING  # finishing is still running outside
    _ended(job)
    assert (job.phase, job.status) == (Phase.ENDED, jobs_pb2.JOB_STATUS_SUCCESS)
    assert job.done.is_set()
    assert job.ended
    assert job.feed.outcome is not None


def test_an_ended_job_emits_nothing_and_cannot_be_stopped() -> None:
    services = Services()
    job = _job(services)
    job.start()
    assert job.emit("log", events_pb2.LogEvent(message="hi")) == 1
    _ended(job)
    with pytest.raises(InvalidRequest):
        job.emit("log", events_pb2.LogEvent(message="late"))
    assert services.appended == [(1, False)]
    assert job.stop(Cancelled("too late")) is False
    assert job.stop_error is None


def test_the_lease_and_its_expiry_are_filled_from_one_source() -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    job = _job(Services(), expires)
    record = job.record()
    assert list(record.lease.capabilities["tool.call"].patterns) == ["echo"]
    assert record.lease_constraints.expires_at.ToDatetime(UTC) == expires
    assert job.lease_expires_at == record.lease_constraints.expires_at.ToJsonString()
    assert job.expires_at == expires
    assert not job.summary.HasField("lease")  # the acceptance keeps no second copy
