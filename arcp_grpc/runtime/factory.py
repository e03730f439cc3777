"""Making a job: the `ActiveJob`, its credentials, its one `JobAccepted`, its row.

`persist` is where §7.2's first rule holds: `JobAccepted` is serialised exactly
once, at first acceptance, and stored (sealed when it holds credential values)
in the same transaction that creates the job and claims its idempotency key
(`arcp_grpc.runtime.admission` states the whole invariant).

A job another node accepted for an agent a worker of this node hosts is made again
here from its stored acceptance (`adopt`, issue 23): the same lease, expiry, budget and
credentials, so this node runs it exactly as the one that accepted it would have.

The factory is also what every job it makes calls back (`JobServices`): its
events, back-pressure, tools and models, rotations, and delegation, which makes
a child the same way (§9.4, §10).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf import struct_pb2

from arcp_grpc import tracing
from arcp_grpc.agents import RegisteredAgent
from arcp_grpc.auth import Principal
from arcp_grpc.base.agentref import parse_agent_ref
from arcp_grpc.base.ids import new_id
from arcp_grpc.base.job_host import ChildRequest, HostFunction
from arcp_grpc.base.json_values import fill_value
from arcp_grpc.base.stamps import stamp
from arcp_grpc.lease import BudgetCounters, Lease, LeaseClock, child_expiry, parse_expires_at
from arcp_grpc.runtime.events import JobEvents
from arcp_grpc.runtime.executor import Executor
from arcp_grpc.runtime.job import ActiveJob
from arcp_grpc.runtime.job_credentials import JobCredentials
from arcp_grpc.runtime.limits import RuntimeLimits
from arcp_grpc.runtime.parts import RuntimeParts
from arcp_grpc.store import Handoff, IdempotencyClaim, JobRow
from arcp_grpc.store.secretbox import SecretBox
from arcp_grpc.v1 import events_pb2, jobs_pb2, lease_pb2

__all__ = ["JobFactory"]


@dataclass(frozen=True, slots=True, eq=False)
class JobFactory:
    """Builds and records jobs, and serves them while they run (`JobServices`)."""

    parts: RuntimeParts
    events: JobEvents
    executor: Executor
    rotation: JobCredentials  # credential rotations, asked for by the jobs (§9.8.2)

    def new_job(
        self,
        principal: Principal,
        agent: RegisteredAgent,
        lease: Lease,
        expires_at: datetime | None,
        budget: BudgetCounters,
        *,
        trace_id: str,
        max_runtime: int | None,
        parent: ActiveJob | None,
        submitted_input: struct_pb2.Value | None = None,
    ) -> ActiveJob:
        """A job not yet stored. Its summary keeps the submission's input and limit, so
        that its owner can run it again (GetJob; `Disclosure.summary`)."""
        job_id = new_id("job")
        summary = jobs_pb2.JobSummary(
            job_id=job_id,
            agent=agent.ref,
            status=jobs_pb2.JOB_STATUS_PENDING,
            trace_id=trace_id,
            parent_job_id=parent.job_id if parent else "",
            max_runtime_sec=max_runtime,
        )
        if submitted_input is not None:
            summary.input.CopyFrom(submitted_input)
        summary.budget.update(budget.snapshot())
        stamp(summary.created_at)
        return self._job(principal, agent, lease, expires_at, budget, summary, max_runtime, parent)

    def adopt(self, row: JobRow, max_runtime: int | None) -> ActiveJob:
        """A job another node accepted and handed to this one, whose worker hosts its
        agent (issue 23): the same job, made again from what the acceptance recorded."""
        accepted = jobs_pb2.JobAccepted.FromString(
            self.parts.box.open_any(row.accepted, row.job_id.encode())
        )
        lease = Lease.parse({ns: list(p.patterns) for ns, p in accepted.lease.capabilities.items()})
        constraints = accepted.lease_constraints
        summary = jobs_pb2.JobSummary.FromString(row.summary)
        summary.ClearField("lease")  # `ActiveJob.record` adds them from the lease and clock
        summary.ClearField("lease_constraints")
        ref = parse_agent_ref(row.agent)  # resolved at acceptance: `name@version`
        job = self._job(
            Principal(row.principal),
            self.parts.workers.relay(ref.name, ref.version or ""),
            lease,
            constraints.expires_at.ToDatetime(UTC) if constraints.HasField("expires_at") else None,
            BudgetCounters(lease.budget_amounts()),
            summary,
            max_runtime,
            None,
        )
        job.credentials = list(accepted.credentials)
        return job

    def _job(
        self,
        principal: Principal,
        agent: RegisteredAgent,
        lease: Lease,
        expires_at: datetime | None,
        budget: BudgetCounters,
        summary: jobs_pb2.JobSummary,
        max_runtime: int | None,
        parent: ActiveJob | None,
    ) -> ActiveJob:
        return ActiveJob(
            services=self,
            job_id=summary.job_id,
            principal=principal,
            agent=agent,
            trace_id=summary.trace_id,
            lease=lease,
            clock=LeaseClock(expires_at, wall_now=datetime.now(UTC), mono_now=time.monotonic()),
            budget=budget,
            credentials=[],
            summary=summary,
            max_runtime_sec=max_runtime,
            parent=parent,
        )

    async def persist(
        self,
        job: ActiveJob,
        claim: IdempotencyClaim | None,
        now: float,
        running_cap: int | None = None,
        handoff: Handoff | None = None,
    ) -> bytes:
        """Provision credentials, serialise `JobAccepted` once, store job + claim atomically
        (under `running_cap` on a shared store: `JobStore.create_job`). A job handed to
        another node (`handoff`) is that node's to run: not counted or held here."""
        if handoff is None:
            self.parts.table.count(job, 1)
        try:
            with tracing.span("arcp.accept") as span:
                span.set("arcp.job_id", job.job_id)
                span.set("arcp.agent", job.agent.ref)
                return await self._store_new(job, claim, now, running_cap, handoff)
        except BaseException:
            if handoff is None:
                self.parts.table.count(job, -1)
            raise

    async def _store_new(
        self,
        job: ActiveJob,
        claim: IdempotencyClaim | None,
        now: float,
        running_cap: int | None,
        handoff: Handoff | None,
    ) -> bytes:
        ledger = self.parts.ledger
        if ledger is not None:
            job.credentials = await ledger.issue(job.job_id, job.lease, job.expires_at)
        record = job.record()  # the summary the store keeps, with the lease
        accepted = jobs_pb2.JobAccepted(
            job_id=job.job_id,
            agent=job.agent.ref,
            lease=record.lease,
            budget=job.summary.budget,
            credentials=job.credentials,
            accepted_at=job.summary.created_at,
            trace_id=job.trace_id,
            parent_job_id=job.summary.parent_job_id,
        )
        if record.HasField("lease_constraints"):
            accepted.lease_constraints.CopyFrom(record.lease_constraints)
        accepted_bytes = accepted.SerializeToString(deterministic=True)
        row = JobRow(
            job_id=job.job_id,
            principal=job.principal.name,
            agent=job.agent.ref,
            status=jobs_pb2.JOB_STATUS_PENDING,
            created_at=now,
            trace_id=job.trace_id,
            parent_job_id=job.summary.parent_job_id,
            summary=record.SerializeToString(deterministic=True),
            accepted=(
                self.parts.box.seal(accepted_bytes, job.job_id.encode())
                if job.credentials  # nothing else in it is secret
                else SecretBox.plain(accepted_bytes)
            ),
        )
        entries = ledger.entries(job.job_id, job.credentials) if ledger is not None else []
        active = self.parts.table.active
        if handoff is None:
            active[job.job_id] = job  # followers may attach as soon as the row commits
        try:
            await self.parts.store.create_job(
                row, claim, entries, now, running_cap=running_cap, handoff=handoff
            )
        except BaseException:
            active.pop(job.job_id, None)
            raise
        return accepted_bytes

    # -- JobServices: what a running job calls back ------------------------------

    @property
    def limits(self) -> RuntimeLimits:
        return self.parts.limits

    def append(self, job_id: str, seq: int, blob: bytes, *, secret: bool) -> None:
        self.events.append(job_id, seq, blob, secret=secret)

    async def backpressure(self) -> None:
        await self.events.backpressure()

    def tool(self, name: str) -> HostFunction:
        return self.parts.registry.tool(name)

    def model(self, name: str) -> HostFunction:
        return self.parts.registry.model(name)

    async def rotate_credential(self, job: ActiveJob, credential_id: str) -> lease_pb2.Credential:
        return await self.rotation.rotate(job, credential_id)

    async def delegate(self, parent: ActiveJob, request: ChildRequest) -> ActiveJob:
        """Start a child job with a strict subset of the parent's authority (§9.4, §10).
        Its span is current where the child is launched: the child's run is its child,
        in the parent's trace (§11)."""
        with tracing.span("arcp.delegate") as span:
            span.set("arcp.parent_job_id", parent.job_id)
            span.set("arcp.agent", request.agent)
            child = await self._delegate(parent, request)
            span.set("arcp.job_id", child.job_id)
            return child

    async def _delegate(self, parent: ActiveJob, request: ChildRequest) -> ActiveJob:
        now = time.time()
        registered = self.parts.resolve(parse_agent_ref(request.agent))
        # The tightest counter along the ancestor chain bounds the child (§9.4).
        lease = parent.lease.derive_child(request.lease_request, parent.budget.available())
        requested = (
            parse_expires_at(request.expires_at, now=datetime.fromtimestamp(now, UTC))
            if request.expires_at
            else None
        )
        expiry = child_expiry(requested, parent.expires_at)
        child = self.new_job(
            parent.principal,
            registered,
            lease,
            expiry,
            BudgetCounters(lease.budget_amounts(), parent=parent.budget),
            trace_id=parent.trace_id,  # §11: the child continues the parent's trace
            max_runtime=request.max_runtime_sec,
            parent=parent,
            submitted_input=_value_of(request.input_value),
        )
        await self.persist(child, None, now)
        parent.children.append(child)
        body = events_pb2.DelegateEvent(child_job_id=child.job_id, agent=registered.ref)
        terms = child.record()
        body.lease.CopyFrom(terms.lease)
        body.lease_constraints.CopyFrom(terms.lease_constraints)
        parent.emit("delegate", body)
        self.parts.observer.delegated()
        self.executor.launch(child, request.input_value)
        return child


def _value_of(obj: object) -> struct_pb2.Value | None:
    """A child's input (plain JSON from its parent's agent) as the summary keeps it."""
    if obj is None:
        return None
    value = struct_pb2.Value()
    fill_value(value, obj)
    return value
