"""One Work stream of a worker: register, run what the core assigns, answer for it.

The stream's rules (docs/workers.md): the first message registers the agents and
the slots; the core then sends assignments (never more at once than the slots),
step answers, stops, budget updates, credits and heartbeats. Events, outcomes and
steps count against the event window the welcome grants; an agent that emits with
no credit left waits (`JobContext` awaits its host's back-pressure after every
event), so a slow core slows the agent instead of growing a queue. When the stream
ends the worker's running jobs are abandoned: the core has ended them (INTERNAL_ERROR,
retryable) and re-runs nothing, so neither does the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.base.agentref import parse_agent_ref
from arcp_grpc.base.json_values import FieldError, fill_value, value_to_py
from arcp_grpc.base.stamps import stamp
from arcp_grpc.context import JobContext
from arcp_grpc.errors import ARCPError, InternalError
from arcp_grpc.v1 import jobs_pb2
from arcp_grpc.v1 import worker_service_pb2 as pb
from arcp_grpc.worker.host import RemoteHost

__all__ = ["WORK_METHOD", "WorkerStream"]

WORK_METHOD = "/arcp.v1.WorkerService/Work"

log = logging.getLogger("arcp_grpc.worker")


class WorkerStream:
    """The worker's side of one Work stream; `run` returns when the stream ends."""

    def __init__(self, registry: AgentRegistry, slots: int, library: str) -> None:
        self._registry = registry
        self._register = pb.WorkRequest(
            register=pb.WorkerRegister(agents=registry.inventory(), slots=slots, library=library)
        )
        self._outgoing: asyncio.Queue[pb.WorkRequest | None] = asyncio.Queue()
        self._jobs: dict[str, tuple[RemoteHost, asyncio.Task[None]]] = {}
        self._answers: dict[int, asyncio.Future[pb.StepAnswer]] = {}
        self._next_step = 0
        self._credit = 0  # counted messages the worker may still send
        self._credited = asyncio.Event()
        self.welcome: pb.WorkerWelcome | None = None

    async def run(self, channel: aio.Channel, token: str) -> None:
        """Serve the stream until it ends. Raises grpc.aio.AioRpcError when the core
        refuses it (UNAUTHENTICATED: a client token, or no token at all)."""
        work = channel.stream_stream(
            WORK_METHOD,
            request_serializer=pb.WorkRequest.SerializeToString,
            response_deserializer=pb.WorkResponse.FromString,
        )
        call = work(self._requests(), metadata=(("authorization", f"Bearer {token}"),))
        beats: asyncio.Task[None] | None = None
        responses = aiter(call)
        try:
            silence: float | None = None
            while True:
                try:
                    response = await asyncio.wait_for(anext(responses), silence)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    log.warning("the core was silent for %g s; reconnecting", silence)
                    return
                if response.WhichOneof("kind") == "welcome":
                    self.welcome = response.welcome
                    log.info("registered with the core as worker %s", self.welcome.worker)
                    self._grant(response.welcome.event_window)
                    silence = response.welcome.heartbeat_timeout_sec or None
                    beats = asyncio.create_task(self._beat(response.welcome.heartbeat_interval_sec))
                    continue
                self._dispatch(response)
        finally:
            if beats is not None:
                beats.cancel()
            call.cancel()
            self._abandon()

    # -- from the core ---------------------------------------------------------------

    def _dispatch(self, response: pb.WorkResponse) -> None:
        kind = response.WhichOneof("kind")
        if kind == "assignment":
            self._start(response.assignment)
        elif kind == "answer":
            waiter = self._answers.pop(response.answer.step_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(response.answer)
        elif kind == "stop":
            held = self._jobs.get(response.stop.job_id)
            if held is not None:
                held[0].stop(ARCPError.from_proto(response.stop.reason))
                held[1].cancel()
        elif kind == "credit":
            self._grant(response.credit.events)
        elif kind == "budget":
            held = self._jobs.get(response.budget.job_id)
            if held is not None:
                held[0].update_budget(response.budget.remaining)

    def _grant(self, events: int) -> None:
        self._credit += events
        if self._credit > 0:
            self._credited.set()

    # -- to the core -----------------------------------------------------------------

    async def _requests(self) -> AsyncIterator[pb.WorkRequest]:
        yield self._register
        while True:
            request = await self._outgoing.get()
            if request is None:
                return
            yield request

    def _send(self, request: pb.WorkRequest) -> None:
        """Queue one counted message (an event, an outcome, a step)."""
        self._credit -= 1
        if self._credit <= 0:
            self._credited.clear()
        self._outgoing.put_nowait(request)

    async def _wait_credit(self) -> None:
        while self._credit <= 0:
            await self._credited.wait()

    async def ask(self, step: pb.StepRequest) -> pb.StepAnswer:
        """Send `step` and wait for the core's answer."""
        await self._wait_credit()
        self._next_step += 1
        step.step_id = self._next_step
        waiter: asyncio.Future[pb.StepAnswer] = asyncio.get_running_loop().create_future()
        self._answers[step.step_id] = waiter
        self._send(pb.WorkRequest(step=step))
        return await waiter

    async def _beat(self, every: float) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while every > 0:
                await asyncio.sleep(every)
                beat = pb.WorkerHeartbeat()
                stamp(beat.sent_at)
                self._outgoing.put_nowait(pb.WorkRequest(heartbeat=beat))

    # -- running jobs ----------------------------------------------------------------

    def _start(self, assignment: pb.JobAssignment) -> None:
        host = RemoteHost(
            assignment,
            registry=self._registry,
            send=self._send,
            ask=self.ask,
            credit=self._wait_credit,
        )
        task = asyncio.create_task(self._run(host, assignment), name=f"job {assignment.job_id}")
        self._jobs[assignment.job_id] = (host, task)
        task.add_done_callback(lambda _: self._jobs.pop(assignment.job_id, None))

    async def _run(self, host: RemoteHost, assignment: pb.JobAssignment) -> None:
        input_value = value_to_py(assignment.input) if assignment.HasField("input") else None
        outcome = pb.WorkerOutcome(job_id=host.job_id)
        try:
            agent = self._registry.resolve(parse_agent_ref(assignment.agent))
            value = await agent.fn(JobContext(host, input_value), input_value)
            if host.stop_error is not None:
                raise host.stop_error
            _finish(outcome, host, await _close_stream(host, value))
        except asyncio.CancelledError:
            return  # the core stopped the job and recorded its end
        except ARCPError as error:
            outcome.error.CopyFrom((host.stop_error or error).to_proto())
        except Exception as exc:
            log.warning("agent %s failed in job %s", assignment.agent, host.job_id, exc_info=exc)
            failed = InternalError(f"agent {assignment.agent} failed: {type(exc).__name__}")
            outcome.error.CopyFrom(failed.to_proto())
        host.finished = True
        await self._wait_credit()
        self._send(pb.WorkRequest(outcome=outcome))

    def _abandon(self) -> None:
        for _, task in self._jobs.values():
            task.cancel()
        for waiter in self._answers.values():
            waiter.cancel()
        self._answers.clear()


async def _close_stream(host: RemoteHost, value: Any) -> Any:
    """As the executor does: an open streamed result is closed when the agent returns."""
    stream = host.result_stream
    if host.streamed is not None and stream is not None and not stream.closed:
        await stream.close()
    return value


def _finish(outcome: pb.WorkerOutcome, host: RemoteHost, value: Any) -> None:
    if host.streamed is not None:
        if value is not None:
            raise InternalError("the agent streamed its result and also returned one (§8.4)")
        outcome.streamed.CopyFrom(jobs_pb2.StreamedResult())
        return
    try:
        fill_value(outcome.result, value)
    except FieldError as exc:
        raise InternalError(
            f"the agent returned a result that is not JSON: {exc.path('result')}: {exc.message}"
        ) from None
