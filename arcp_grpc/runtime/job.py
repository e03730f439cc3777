"""The state of one running job and the single path by which its events leave it.

`emit` stamps the next `job_seq`, serialises the `JobEvent` once and hands it
to the runtime, which queues it for the store's group commit; followers see it
only after the commit (§8.3: events are durable before delivery). `stop`
records why the runtime is ending the job (cancel, lease expiry, shutdown)
before cancelling its task, so the terminal frame names the real cause exactly
once.

A job moves through its `Phase`s forward only: pending (accepted),
running (the agent runs), finishing (its outcome is decided and being
written: nothing cancels it any more), ended (the outcome is recorded). Each
fact is held once: the status follows from the phase and, once ended, from
the stored summary; the lease and its expiry live in `lease` and `clock`, and
every message that carries them (the summary, `JobAccepted`, a `delegate`
event) is filled from there.

An `ActiveJob` is the `JobHost` the agent's context acts on
(`arcp_grpc.base.job_host`); what it needs of the runtime in turn is the
narrow `JobServices` below, not the runtime itself.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from google.protobuf import timestamp_pb2

from arcp_grpc.agents import RegisteredAgent
from arcp_grpc.auth import Principal
from arcp_grpc.base.job_host import ChildRequest, HostFunction, OpenStream
from arcp_grpc.base.stamps import stamp
from arcp_grpc.errors import ARCPError, InvalidRequest, LeaseExpired
from arcp_grpc.lease import BudgetCounters, Lease, LeaseClock
from arcp_grpc.runtime.feed import JobFeed
from arcp_grpc.runtime.limits import RuntimeLimits
from arcp_grpc.v1 import events_pb2, jobs_pb2, lease_pb2

__all__ = ["ActiveJob", "JobServices", "Phase"]


class Phase(enum.Enum):
    """Where a job is in its life. The executor moves it forward only; a job stopped
    before its agent started goes from PENDING straight to FINISHING."""

    PENDING = enum.auto()  # accepted; the agent has not started
    RUNNING = enum.auto()  # the agent runs
    FINISHING = enum.auto()  # the outcome is decided and being written
    ENDED = enum.auto()  # the outcome is recorded; followers have it


_INTERRUPTIBLE = frozenset({Phase.PENDING, Phase.RUNNING})


class JobServices(Protocol):
    """What a running job needs of the runtime that holds it."""

    @property
    def limits(self) -> RuntimeLimits: ...

    def append(self, job_id: str, seq: int, blob: bytes, *, secret: bool) -> None:
        """Queue one serialised event for the group commit; sealed if `secret`."""
        ...

    async def backpressure(self) -> None: ...

    def tool(self, name: str) -> HostFunction: ...

    def model(self, name: str) -> HostFunction: ...

    async def rotate_credential(self, job: ActiveJob, credential_id: str) -> lease_pb2.Credential:
        """Re-issue a credential of `job`; it emits `credential_rotated` (§9.8.2)."""
        ...

    async def delegate(self, parent: ActiveJob, request: ChildRequest) -> ActiveJob:
        """Start a child of `parent` (§9.4, §10)."""
        ...


@dataclass(eq=False)
class ActiveJob:
    """A job between acceptance and its terminal state. Once ended it leaves the
    runtime's table of running jobs; a small one stays in memory a while for the
    followers that come next (`arcp_grpc.runtime.table`)."""

    services: JobServices
    job_id: str
    principal: Principal
    agent: RegisteredAgent
    trace_id: str
    lease: Lease
    clock: LeaseClock  # holds the lease's `expires_at` too (§9.5)
    budget: BudgetCounters
    credentials: list[lease_pb2.Credential]
    # What the acceptance fixed besides the lease: ids, agent, trace, created_at, the
    # budget granted. `record` adds the lease and its expiry.
    summary: jobs_pb2.JobSummary
    max_runtime_sec: int | None
    parent: ActiveJob | None = None
    feed: JobFeed = field(init=False)
    children: list[ActiveJob] = field(default_factory=list)
    next_seq: int = 1
    phase: Phase = Phase.PENDING
    task: asyncio.Task[None] | None = None
    # Ends the job once its lease has expired (§9.5), set at launch when the lease has an
    # `expires_at`; cancelled at the end, or the loop would hold the ended job till then.
    expiry_timer: asyncio.TimerHandle | None = None
    stop_error: ARCPError | None = None
    streamed: jobs_pb2.StreamedResult | None = None
    result_stream: OpenStream | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)  # set on entering ENDED
    outcome: jobs_pb2.JobOutcome | None = None  # set on entering ENDED
    final: jobs_pb2.JobSummary | None = None  # the stored summary, set on entering ENDED

    def __post_init__(self) -> None:
        self.feed = JobFeed(self.job_id)

    # -- the lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """PENDING → RUNNING: the agent takes its first step."""
        self.phase = Phase.RUNNING

    def decide(self) -> None:
        """→ FINISHING: the outcome is decided; from here a stop only records its
        reason, so the terminal write and the revocation run to the end."""
        self.phase = Phase.FINISHING

    def end(
        self, outcome: jobs_pb2.JobOutcome, outcome_bytes: bytes, final: jobs_pb2.JobSummary
    ) -> None:
        """→ ENDED: the outcome is recorded (or its recording failed for good); tell
        the followers and the waiters."""
        self.phase = Phase.ENDED
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
            self.expiry_timer = None
        self.outcome = outcome
        self.final = final
        self.feed.finish(outcome_bytes)
        self.done.set()

    @property
    def status(self) -> jobs_pb2.JobStatus.ValueType:
        """Running is known in memory only: the store keeps "not finished", which is
        all recovery needs, and starting a job costs no write."""
        if self.final is not None:
            return self.final.status
        if self.phase is Phase.PENDING:
            return jobs_pb2.JOB_STATUS_PENDING
        return jobs_pb2.JOB_STATUS_RUNNING

    @property
    def expires_at(self) -> datetime | None:
        return self.clock.expires_at

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @functools.cached_property
    def _recorded(self) -> jobs_pb2.JobSummary:
        """Built once: neither the acceptance nor the lease changes after it, and the
        summary is asked for at acceptance, at the end and by every live read."""
        summary = jobs_pb2.JobSummary()
        summary.CopyFrom(self.summary)
        for namespace, patterns in self.lease.grants.items():
            summary.lease.capabilities[namespace].patterns.extend(patterns)
        if self.clock.expires_at is not None:
            summary.lease_constraints.expires_at.FromDatetime(self.clock.expires_at)
        return summary

    def record(self) -> jobs_pb2.JobSummary:
        """The summary as accepted, with the lease and its expiry: what the store keeps.
        A copy: callers fill in what changes (status, last seq, budget)."""
        summary = jobs_pb2.JobSummary()
        summary.CopyFrom(self._recorded)
        return summary

    def emit(self, kind: str, body: Any, *, secret: bool = False) -> int:
        """Append one event with body `body` in oneof field `kind`; returns its seq.
        An ended job emits nothing more: its outcome was its last word (§8.3)."""
        if self.phase is Phase.ENDED:
            raise InvalidRequest("the job has ended; it can emit no more events")
        seq = self.next_seq
        self.next_seq = seq + 1
        event = events_pb2.JobEvent(job_id=self.job_id, job_seq=seq)
        stamp(event.ts)
        getattr(event, kind).CopyFrom(body)
        self.services.append(self.job_id, seq, event.SerializeToString(), secret=secret)
        return seq

    def stop(self, error: ARCPError) -> bool:
        """End the job with `error` unless it already ends; cancels its task."""
        if self.stop_error is not None or self.phase is Phase.ENDED:
            return False
        self.stop_error = error
        self.cancel_task()
        return True

    def cancel_task(self) -> None:
        """Interrupt the agent, unless its outcome is already being written."""
        if self.task is not None and not self.task.done() and self.phase in _INTERRUPTIBLE:
            self.task.cancel()

    def expire(self, error: LeaseExpired) -> None:
        """The agent hit an expired lease: the job ends with LEASE_EXPIRED once the agent
        has unwound, or after the grace period (§9.5, §13.4)."""
        if self.stop_error is None and self.phase is not Phase.ENDED:
            self.stop_error = error
            grace = self.services.limits.lease_grace_sec
            asyncio.get_running_loop().call_later(grace, self.cancel_task)

    async def wait(self) -> jobs_pb2.JobOutcome:
        await self.done.wait()
        assert self.outcome is not None
        return self.outcome

    def view(self) -> jobs_pb2.JobSummary:
        """The live summary, without credential values: what a caller may see of them
        is added by its `Disclosure` (`arcp_grpc.runtime.disclosure`, §9.8, §14), and
        the store never keeps them in a summary."""
        if self.final is not None:
            summary = jobs_pb2.JobSummary()
            summary.CopyFrom(self.final)
            return summary
        summary = self.record()
        summary.status = self.status
        summary.last_event_seq = self.feed.committed_seq
        summary.budget.clear()
        summary.budget.update(self.budget.snapshot())
        return summary

    # -- the rest of `JobHost`: what the agent's context asks ------------------

    @property
    def agent_ref(self) -> str:
        return self.agent.ref

    @property
    def stopping(self) -> bool:
        """A stop reason is recorded; the task is, or soon will be, cancelled."""
        return self.stop_error is not None

    @property
    def ended(self) -> bool:
        return self.phase is Phase.ENDED

    # the lease (§9.3, §9.5)

    @property
    def grants(self) -> Mapping[str, tuple[str, ...]]:
        return self.lease.grants

    def authorize_lease(self, namespace: str, resource: str) -> str:
        return self.lease.authorize(namespace, resource)

    def lease_expired(self) -> bool:
        return self.clock.expired(time.monotonic())

    @property
    def lease_expires_at(self) -> str:
        if self.clock.expires_at is None:
            return ""
        expiry = timestamp_pb2.Timestamp()
        expiry.FromDatetime(self.clock.expires_at)
        return expiry.ToJsonString()

    # the budget, whose counters chain to the ancestors' (§9.6)

    def budget_remaining(self, currency: str) -> Decimal | None:
        return self.budget.remaining(currency)

    def charge_budget(self, currency: str, amount: Decimal) -> bool:
        return self.budget.charge(currency, amount)

    def exhausted_budget(self) -> str | None:
        return self.budget.exhausted()

    # what the runtime provides

    @property
    def limits(self) -> RuntimeLimits:
        return self.services.limits

    async def backpressure(self) -> None:
        await self.services.backpressure()

    def tool(self, name: str) -> HostFunction:
        return self.services.tool(name)

    def model(self, name: str) -> HostFunction:
        return self.services.model(name)

    async def rotate_credential(self, credential_id: str) -> lease_pb2.Credential:
        return await self.services.rotate_credential(self, credential_id)

    async def delegate(self, request: ChildRequest) -> ActiveJob:
        return await self.services.delegate(self, request)
