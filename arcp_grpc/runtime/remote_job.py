"""One job run by a remote worker: the core's half of the relay (issue 23).

The job is an `ActiveJob` like any other and its agent's `JobContext` is the
core's: every authority-bearing step the worker asks about is answered by that
context's own checks (`authorize`: expiry §9.5, budget §9.6, then the lease §9.3),
a cost report is charged by its `metric` (§9.6), a streamed result goes through
its `ResultStream` (the same chunk caps, §8.4, §14). The worker's other events are
recorded as the job's, in the order it sent them, through the one `emit`, so
replay, resume and watchers see a remote job exactly as an in-process one.

What the core adds for a remote worker, which it trusts to run code but not to
widen its authority: a cost report that takes a budget below zero ends the job
with BUDGET_EXHAUSTED at once (an in-process agent is refused at its next step);
`delegate` events and `cost.budget.remaining` metrics are the core's own and are
never taken from a worker; nothing sent for a job that is stopping is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from google.protobuf import struct_pb2

from arcp_grpc.base.job_host import ChildRequest
from arcp_grpc.base.json_values import fill_value, struct_to_py, value_to_py
from arcp_grpc.context import JobContext, ResultStream
from arcp_grpc.errors import ARCPError, BudgetExhausted, Cancelled, InternalError, InvalidRequest
from arcp_grpc.lease import format_amount
from arcp_grpc.runtime.job import ActiveJob, Phase
from arcp_grpc.v1 import events_pb2
from arcp_grpc.v1 import worker_service_pb2 as pb

__all__ = ["RemoteJob", "WorkerChannel"]

log = logging.getLogger("arcp_grpc.workers")

# Event kinds a worker's agent emits as they are; `metric` and `result_chunk` go
# through the context, `delegate` is the core's own (the answer to a DelegateStep).
_PLAIN = frozenset({"log", "thought", "tool_call", "tool_result", "status", "artifact_ref"})
_ENCODINGS = {events_pb2.CHUNK_ENCODING_UTF8: "utf8", events_pb2.CHUNK_ENCODING_BASE64: "base64"}


class WorkerChannel(Protocol):
    """The stream of the worker running a job (`arcp_grpc.runtime.workers.WorkerLink`)."""

    def send(self, message: pb.WorkResponse) -> None:
        """Queue one message for the worker."""
        ...

    def settle(self) -> None:
        """One counted message of the worker is handled (flow control)."""
        ...


class RemoteJob:
    """The relay of one job to its worker: events in, steps answered, the end awaited."""

    def __init__(self, job: ActiveJob, ctx: JobContext) -> None:
        self.job = job
        self._ctx = ctx
        self.link: WorkerChannel | None = None
        self.ended: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._stream: ResultStream | None = None
        self._steps: set[asyncio.Task[None]] = set()
        self._children: dict[str, ActiveJob] = {}
        self._reported = False  # the worker sent the job's outcome

    @property
    def live(self) -> bool:
        """Whether what the worker sends for the job is still recorded."""
        job = self.job
        return job.phase is Phase.RUNNING and job.stop_error is None and not self.ended.done()

    def assignment(self, input_value: Any, *, credentials: bool) -> pb.WorkResponse:
        job = self.job
        record = job.record()
        limits = job.limits
        assigned = pb.JobAssignment(
            job_id=job.job_id,
            agent=job.agent.ref,
            lease=record.lease,
            lease_constraints=record.lease_constraints,
            budget=job.budget.snapshot(),
            trace_id=job.trace_id,
            chunk_bytes=limits.chunk_bytes,
            max_chunk_bytes=limits.max_chunk_bytes,
            max_result_bytes=limits.max_result_bytes,
        )
        if credentials:  # §14: never over a plaintext hop from another host
            assigned.credentials.extend(job.credentials)
        if input_value is not None:
            assigned.input.CopyFrom(_value(input_value))
        return pb.WorkResponse(assignment=assigned)

    # -- what the worker sends -------------------------------------------------------

    async def on_event(self, event: events_pb2.JobEvent) -> None:
        if not self.live:
            return  # the job is stopping: its outcome is the core's, not the worker's
        kind = event.WhichOneof("body")
        try:
            if kind in _PLAIN:
                if kind == "status" and event.status.HasField("credential"):
                    raise InvalidRequest("a worker may not send credential events (§9.8.2)")
                await self._emit(kind, getattr(event, kind))
            elif kind == "progress":
                body = event.progress
                if body.current < 0:
                    raise InvalidRequest("progress.current must be non-negative (§8.2.1)")
                await self._emit(kind, body)
            elif kind == "vendor":
                await self._ctx.vendor_event(event.vendor.kind, struct_to_py(event.vendor.body))
            elif kind == "metric":
                await self._metric(event.metric)
            elif kind == "result_chunk":
                await self._chunk(event.result_chunk)
            else:
                raise InvalidRequest(f"a worker may not send {kind or 'empty'} events")
        except ARCPError as error:
            self.job.stop(error)

    def on_outcome(self, outcome: pb.WorkerOutcome) -> None:
        self._reported = True
        if self.ended.done():
            return
        which = outcome.WhichOneof("outcome")
        if which == "result":
            self.ended.set_result(value_to_py(outcome.result))
        elif which == "streamed" and self._stream is not None and self._stream.closed:
            self.ended.set_result(None)
        elif which == "error":
            self.ended.set_exception(ARCPError.from_proto(outcome.error))
        else:
            self.ended.set_exception(
                InternalError(f"the worker ended the job with a {which or 'missing'} outcome")
            )

    def on_step(self, step: pb.StepRequest, link: WorkerChannel) -> None:
        """Answer one step in a task of its own: a child's end may take long."""
        task = asyncio.create_task(self._answer(step, link))
        self._steps.add(task)
        task.add_done_callback(self._steps.discard)

    def close(self, link: WorkerChannel | None) -> None:
        """The job's relay ends: stop open steps, and tell a worker still there why."""
        for task in self._steps:
            task.cancel()
        # Cancelling the relay cancelled `ended` too: what the worker knows is `_reported`.
        if link is not None and not self._reported:
            reason = self.job.stop_error or Cancelled("the core ended the job")
            link.send(
                pb.WorkResponse(stop=pb.JobStop(job_id=self.job.job_id, reason=reason.to_proto()))
            )
        if not self.ended.done():
            self.ended.cancel()

    # -- the core's checks -----------------------------------------------------------

    async def _emit(self, kind: str, body: Any) -> None:
        self.job.emit(kind, body)
        await self.job.backpressure()

    async def _metric(self, body: events_pb2.MetricEvent) -> None:
        if body.name == "cost.budget.remaining":
            return  # the core reports what remains, after charging (§9.6)
        dimensions = struct_to_py(body.dimensions) if body.dimensions.fields else None
        await self._ctx.metric(body.name, body.value, body.unit, dimensions)
        job = self.job
        if not body.name.startswith("cost.") or job.budget.remaining(body.unit) is None:
            return
        if self.link is not None:
            budget = pb.BudgetUpdate(job_id=job.job_id, remaining=job.budget.snapshot())
            self.link.send(pb.WorkResponse(budget=budget))
        spent = [c for c, left in job.budget.available().items() if left < 0]
        if spent:
            left = format_amount(job.budget.available()[spent[0]])
            job.stop(
                BudgetExhausted(
                    f"the {spent[0]} budget is exhausted ({left} left) (§9.6)",
                    details={"currency": spent[0]},
                )
            )

    async def _chunk(self, chunk: events_pb2.ResultChunkEvent) -> None:
        if self._stream is None:
            encoding = _ENCODINGS.get(chunk.encoding)
            if encoding is None:
                raise InvalidRequest("result chunks must be utf8 or base64 (§8.4)")
            self._stream = self._ctx.open_result(encoding)
        await self._stream.write(chunk.data)
        if not chunk.more:
            await self._stream.close()

    async def _answer(self, step: pb.StepRequest, link: WorkerChannel) -> None:
        answer = pb.StepAnswer(job_id=step.job_id, step_id=step.step_id)
        try:
            await self._decide(step, answer)
        except ARCPError as error:
            answer.error.CopyFrom(error.to_proto())
        with contextlib.suppress(Exception):
            link.send(pb.WorkResponse(answer=answer))
        link.settle()

    async def _decide(self, step: pb.StepRequest, answer: pb.StepAnswer) -> None:
        which = step.WhichOneof("step")
        if not self.live:
            raise self.job.stop_error or Cancelled("the job is ending")
        if which == "authorize":
            answer.resource = self._ctx.authorize(step.authorize.namespace, step.authorize.resource)
        elif which == "rotate_credential":
            credential = await self._ctx.rotate_credential(step.rotate_credential.credential_id)
            answer.credential.CopyFrom(credential)
        elif which == "delegate":
            answer.child_job_id = await self._delegate(step.delegate)
        elif which in ("await_child", "stop_child"):
            child_id = getattr(step, which).child_job_id
            child = self._children.get(child_id)
            if child is None:
                raise InvalidRequest(f"job {child_id!r} is not a child of this job")
            if which == "await_child":
                answer.child_outcome.CopyFrom(await child.wait())
            else:
                child.stop(Cancelled("cancelled by the parent job"))
                answer.stopped = True
        else:
            raise InvalidRequest(f"unknown step {which or 'missing'}")

    async def _delegate(self, step: pb.DelegateStep) -> str:
        """What `JobContext.delegate` does, answered with the child's id (§9.4, §10)."""
        self._ctx.authorize("agent.delegate", step.agent.split("@", 1)[0])
        lease = (
            {ns: tuple(p.patterns) for ns, p in step.lease_request.capabilities.items()}
            if step.HasField("lease_request")
            else None
        )
        expires = step.lease_constraints.expires_at
        request = ChildRequest(
            step.agent,
            value_to_py(step.input) if step.HasField("input") else None,
            lease,
            expires.ToJsonString() if step.lease_constraints.HasField("expires_at") else None,
            step.max_runtime_sec or None,
        )
        child = await self.job.delegate(request)
        self._children[child.job_id] = child
        return child.job_id


def _value(value: Any) -> struct_pb2.Value:
    msg = struct_pb2.Value()
    fill_value(msg, value)
    return msg
