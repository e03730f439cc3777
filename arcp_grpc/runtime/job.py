"""The state of one running job and the single path by which its events leave it.

`emit` stamps the next `job_seq`, serialises the `JobEvent` once and queues
it for the store's group commit; followers see it only after the commit
(§8.3: events are durable before delivery). `stop` records why the runtime
is ending the job (cancel, lease expiry, shutdown) before cancelling its
task, so the terminal frame names the real cause exactly once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from arcp_grpc.agents import RegisteredAgent
from arcp_grpc.auth import Principal
from arcp_grpc.base.stamps import stamp
from arcp_grpc.errors import ARCPError
from arcp_grpc.lease import BudgetCounters, Lease, LeaseClock
from arcp_grpc.runtime.feed import JobFeed
from arcp_grpc.store import EventRow
from arcp_grpc.v1 import events_pb2, jobs_pb2, lease_pb2

if TYPE_CHECKING:
    from arcp_grpc.context import ResultStream
    from arcp_grpc.runtime.job_runtime import JobRuntime

__all__ = ["ActiveJob"]


@dataclass(eq=False)
class ActiveJob:
    """A job between acceptance and its terminal state; dropped from memory after."""

    runtime: JobRuntime
    job_id: str
    principal: Principal
    agent: RegisteredAgent
    trace_id: str
    lease: Lease
    clock: LeaseClock
    expires_at: datetime | None
    budget: BudgetCounters
    credentials: list[lease_pb2.Credential]
    summary: jobs_pb2.JobSummary
    max_runtime_sec: int | None
    parent: ActiveJob | None = None
    feed: JobFeed = field(init=False)
    children: list[ActiveJob] = field(default_factory=list)
    next_seq: int = 1
    status: jobs_pb2.JobStatus.ValueType = jobs_pb2.JOB_STATUS_PENDING
    task: asyncio.Task[None] | None = None
    stop_error: ARCPError | None = None
    finishing: bool = False  # the outcome is decided: nothing cancels the task any more
    streamed: jobs_pb2.StreamedResult | None = None
    result_stream: ResultStream | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: jobs_pb2.JobOutcome | None = None
    final: jobs_pb2.JobSummary | None = None  # the stored summary, once the job has ended

    def __post_init__(self) -> None:
        self.feed = JobFeed(self.job_id)

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    def emit(self, kind: str, body: Any, *, secret: bool = False) -> int:
        """Append one event with body `body` in oneof field `kind`; returns its seq."""
        seq = self.next_seq
        self.next_seq = seq + 1
        event = events_pb2.JobEvent(job_id=self.job_id, job_seq=seq)
        stamp(event.ts)
        getattr(event, kind).CopyFrom(body)
        blob = event.SerializeToString()
        if secret:
            blob = self.runtime.box.seal(blob, self.job_id.encode())
        self.runtime.store.append_event(EventRow(self.job_id, seq, blob, secret))
        return seq

    def stop(self, error: ARCPError) -> bool:
        """End the job with `error` unless it already ends; cancels its task."""
        if self.stop_error is not None or self.done.is_set():
            return False
        self.stop_error = error
        self.cancel_task()
        return True

    def cancel_task(self) -> None:
        """Interrupt the agent, unless its outcome is already being written."""
        if self.task is not None and not self.task.done() and not self.finishing:
            self.task.cancel()

    def view(self, *, with_credentials: bool) -> jobs_pb2.JobSummary:
        """The live summary; credentials only for the submitter (§14), and only while the
        job runs: once it ended they are revoked, and no surface shows them (DESIGN.md,
        "Replay after a rotation")."""
        summary = jobs_pb2.JobSummary()
        if self.final is not None:
            summary.CopyFrom(self.final)
        else:
            summary.CopyFrom(self.summary)
            summary.status = self.status
            summary.last_event_seq = self.feed.committed_seq
            summary.budget.clear()
            summary.budget.update(self.budget.snapshot())
        if with_credentials and self.final is None:
            summary.credentials.extend(self.credentials)
        return summary
