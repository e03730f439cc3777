"""The worker's `JobHost`: an assigned job as an unchanged agent's `JobContext` sees it.

An agent written against `arcp_grpc.agents` / `arcp_grpc.context` runs here exactly as
in the core; only its host differs. Events go to the core on the stream; every
authority-bearing step the context hands its host (a tool or model to run, a
delegation, a credential rotation) is asked of the core first and runs only on its
yes, so the core's lease, budget and expiry decide (§9.3, §9.5, §9.6). The host also
checks the lease it was handed for the steps the context checks synchronously (an
agent's own `fs.read`, `net.fetch`), so a refusal costs no round trip; cost is charged
by the core alone, which sends what remains back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.base.job_host import ChildRequest, HostFunction, OpenStream
from arcp_grpc.base.json_values import fill_value
from arcp_grpc.errors import ARCPError, InvalidRequest, LeaseExpired
from arcp_grpc.lease import Lease
from arcp_grpc.v1 import events_pb2, jobs_pb2, lease_pb2
from arcp_grpc.v1 import worker_service_pb2 as pb

__all__ = ["RemoteChild", "RemoteHost", "Steps"]

Steps = Callable[[pb.StepRequest], Awaitable[pb.StepAnswer]]
"""Ask the core about one step and wait for its answer (`WorkerStream.ask`)."""


@dataclass(frozen=True, slots=True)
class _Limits:
    chunk_bytes: int
    max_chunk_bytes: int
    max_result_bytes: int


class RemoteHost:
    """One assigned job on the worker (implements `arcp_grpc.base.job_host.JobHost`)."""

    def __init__(
        self,
        assignment: pb.JobAssignment,
        *,
        registry: AgentRegistry,
        send: Callable[[pb.WorkRequest], None],
        ask: Steps,
        credit: Callable[[], Awaitable[None]],
    ) -> None:
        self._assignment = assignment
        self._registry = registry
        self._send = send
        self._ask = ask
        self._credit = credit
        self._lease = Lease.parse(
            {ns: list(p.patterns) for ns, p in assignment.lease.capabilities.items()}
        )
        self._budget = {c: Decimal(v) for c, v in assignment.budget.items()}
        constraints = assignment.lease_constraints
        self._expires_at = (
            constraints.expires_at.ToDatetime(UTC) if constraints.HasField("expires_at") else None
        )
        self.streamed: jobs_pb2.StreamedResult | None = None
        self.result_stream: OpenStream | None = None
        self.stop_error: ARCPError | None = None
        self.finished = False  # the outcome was sent: the job emits nothing more

    # -- identity and terms --------------------------------------------------------

    @property
    def job_id(self) -> str:
        return self._assignment.job_id

    @property
    def agent_ref(self) -> str:
        return self._assignment.agent

    @property
    def trace_id(self) -> str:
        return self._assignment.trace_id

    @property
    def grants(self) -> Mapping[str, tuple[str, ...]]:
        return self._lease.grants

    @property
    def credentials(self) -> Sequence[lease_pb2.Credential]:
        return self._assignment.credentials

    @property
    def parent(self) -> None:
        return None  # a parent's budget is the core's to charge (§9.6, §10)

    @property
    def stopping(self) -> bool:
        return self.stop_error is not None

    @property
    def ended(self) -> bool:
        return self.finished

    @property
    def limits(self) -> _Limits:
        a = self._assignment
        return _Limits(a.chunk_bytes, a.max_chunk_bytes, a.max_result_bytes)

    @property
    def lease_expires_at(self) -> str:
        constraints = self._assignment.lease_constraints
        return constraints.expires_at.ToJsonString() if constraints.HasField("expires_at") else ""

    def lease_expired(self) -> bool:
        """A courtesy check on the worker's clock; the core's own clock decides (§9.5)."""
        return self._expires_at is not None and datetime.now(UTC) >= self._expires_at

    def exhausted_budget(self) -> str | None:
        return next((c for c, left in self._budget.items() if left <= 0), None)

    def budget_remaining(self, currency: str) -> Decimal | None:
        return self._budget.get(currency)

    def charge_budget(self, currency: str, amount: Decimal) -> bool:
        return False  # the core charges the cost metric it records (§9.6)

    def update_budget(self, remaining: Mapping[str, str]) -> None:
        """What the core says remains after a charged cost report."""
        self._budget = {c: Decimal(v) for c, v in remaining.items()}

    def authorize_lease(self, namespace: str, resource: str) -> str:
        return self._lease.authorize(namespace, resource)

    def expire(self, error: LeaseExpired) -> None:
        """The core ends an expired job itself; the agent sees the error now."""

    # -- the job's end -------------------------------------------------------------

    def stop(self, error: ARCPError) -> bool:
        """The agent's context ends the job (a result cap broken): `error` is its end."""
        if self.stop_error is not None or self.finished:
            return False
        self.stop_error = error
        return True

    async def wait(self) -> jobs_pb2.JobOutcome:
        raise InvalidRequest("a job cannot wait for its own end")

    # -- events --------------------------------------------------------------------

    def emit(self, kind: str, body: Any, *, secret: bool = False) -> int:
        if self.finished:
            raise InvalidRequest("the job has ended; it can emit no more events")
        event = events_pb2.JobEvent(job_id=self.job_id)
        getattr(event, kind).CopyFrom(body)
        self._send(pb.WorkRequest(event=event))
        return 0  # the core numbers the events it records (§8.3)

    async def backpressure(self) -> None:
        await self._credit()

    # -- authority: asked of the core ----------------------------------------------

    def tool(self, name: str) -> HostFunction:
        return self._gated("tool.call", name, self._registry.tool)

    def model(self, name: str) -> HostFunction:
        return self._gated("model.use", name, self._registry.model)

    async def rotate_credential(self, credential_id: str) -> lease_pb2.Credential:
        step = pb.StepRequest(job_id=self.job_id)
        step.rotate_credential.credential_id = credential_id
        return (await self._step(step)).credential

    async def delegate(self, request: ChildRequest) -> RemoteChild:
        step = pb.StepRequest(job_id=self.job_id)
        delegate = step.delegate
        delegate.agent = request.agent
        if request.input_value is not None:
            fill_value(delegate.input, request.input_value)
        if request.lease_request is not None:
            for namespace, patterns in request.lease_request.items():
                delegate.lease_request.capabilities[namespace].patterns.extend(patterns)
        if request.expires_at:
            delegate.lease_constraints.expires_at.FromJsonString(request.expires_at)
        delegate.max_runtime_sec = request.max_runtime_sec or 0
        answer = await self._step(step)
        return RemoteChild(answer.child_job_id, self)

    def _gated(
        self, namespace: str, name: str, lookup: Callable[[str], HostFunction]
    ) -> HostFunction:
        async def call(args: Any) -> Any:
            step = pb.StepRequest(job_id=self.job_id)
            step.authorize.namespace = namespace
            step.authorize.resource = name
            await self._step(step)
            return await lookup(name)(args)

        return call

    async def _step(self, step: pb.StepRequest) -> pb.StepAnswer:
        """The core's answer; its refusal raised as the ARCP error it carries."""
        answer = await self._ask(step)
        if answer.WhichOneof("answer") == "error":
            raise ARCPError.from_proto(answer.error)
        return answer


class RemoteChild:
    """A child job the core started for this worker's job (§10)."""

    def __init__(self, job_id: str, parent: RemoteHost) -> None:
        self._job_id = job_id
        self._parent = parent
        self._stops: set[asyncio.Task[pb.StepAnswer]] = set()

    @property
    def job_id(self) -> str:
        return self._job_id

    def stop(self, error: ARCPError) -> bool:
        step = pb.StepRequest(job_id=self._parent.job_id)
        step.stop_child.child_job_id = self._job_id
        task = asyncio.create_task(self._parent._step(step))
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)
        return True

    async def wait(self) -> jobs_pb2.JobOutcome:
        step = pb.StepRequest(job_id=self._parent.job_id)
        step.await_child.child_job_id = self._job_id
        return (await self._parent._step(step)).child_outcome
