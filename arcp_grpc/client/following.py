"""Following a job to its end: `Watch` (WatchJob, resumed across dropped streams) and `Run`
(RunJob: submit and follow in one call).

The invariant: a follower yields every event of the job exactly once, in ``job_seq``
order. The core's sequence is gap-free and a WatchJob from ``after_seq`` replays what
follows it from the store (§8.3), so a dropped stream is reopened from the last
``job_seq`` this follower yielded, never from what the core may have sent since; an event
at or below that mark (none should come) is dropped rather than repeated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from typing import Any

import grpc
from grpc import aio

from arcp_grpc.base.wire import field_payload
from arcp_grpc.client.failures import RetryPolicy, Unavailable, error_of, retrying
from arcp_grpc.client.transport import Transport
from arcp_grpc.client.values import Event, Job, Outcome
from arcp_grpc.errors import ARCPError
from arcp_grpc.v1 import job_service_pb2

__all__ = ["Run", "Watch"]


class Watch:
    """``async for event in watch``: a job's events after ``after``, to its end.

    A dropped stream (the core restarted, the network blinked) is reopened from
    ``last_seq`` under the ``reconnect`` policy, whose attempts count afresh after each
    event received; an error that is not retryable (``JOB_NOT_FOUND``), or any error
    before the core first answered, is raised. When the loop ends, ``outcome`` holds how
    the job ended.
    """

    def __init__(
        self,
        transport: Transport,
        job_id: str,
        after: int,
        reconnect: RetryPolicy,
        opened: aio.UnaryStreamCall[Any, bytes] | None = None,
    ) -> None:
        self.job_id = job_id
        self.last_seq = after
        self.outcome: Outcome | None = None
        self._transport = transport
        self._reconnect = reconnect
        self._opened = opened

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._follow()

    async def _follow(self) -> AsyncIterator[Event]:
        retry = 0
        answered = self._opened is not None  # the core has answered this follower
        while True:
            call = self._call()
            try:
                async for frame in _Frames(call):
                    answered = True
                    for proto in frame.events:
                        if proto.job_seq <= self.last_seq:
                            continue
                        self.last_seq = proto.job_seq
                        retry = 0
                        yield Event.from_proto(proto)
                    if frame.HasField("outcome"):
                        self.outcome = Outcome.from_proto(frame.outcome)
                        # The core ends the stream after the outcome: take its status now
                        # rather than cancel, which is work for both sides that would
                        # land on the caller's next call (issue 25).
                        await call.code()
                        return
                # The core closed the stream cleanly before the end (it is stopping).
                error: ARCPError = Unavailable(self._transport.address, "the stream ended early")
            except grpc.RpcError as exc:
                error = error_of(exc, self._transport.address)
            finally:
                call.cancel()  # a no-op once the stream has ended
            # A watch the core never answered is not resumed: the address is wrong or the
            # core is down, and the caller should hear it now, not after the policy's wait.
            if not (answered and error.retryable) or retry + 1 >= self._reconnect.attempts:
                raise error
            await asyncio.sleep(self._reconnect.delay(retry, error))
            retry += 1

    def _call(self) -> aio.UnaryStreamCall[Any, bytes]:
        if self._opened is not None:
            opened, self._opened = self._opened, None
            return opened
        request = job_service_pb2.WatchJobRequest(job_id=self.job_id, after_seq=self.last_seq)
        return self._transport.watch_job(request, metadata=self._transport.metadata)

    async def wait(self) -> Outcome:
        """Follow to the end without looking at the events; the outcome."""
        async for _ in self:
            pass
        assert self.outcome is not None
        return self.outcome


class Run:
    """A RunJob call: ``await run`` is the outcome; ``async for event in run`` the events
    first (then ``run.outcome``); ``await run.accepted()`` the `Job` as soon as the core
    accepted it. After the acceptance a dropped stream resumes as a `Watch` does."""

    def __init__(
        self,
        transport: Transport,
        request: job_service_pb2.RunJobRequest,
        retry: RetryPolicy,
        reconnect: RetryPolicy,
    ) -> None:
        self._transport = transport
        self._request = request
        self._retry = retry
        self._reconnect = reconnect
        self._job: Job | None = None
        self._watch: Watch | None = None

    @property
    def outcome(self) -> Outcome | None:
        return self._watch.outcome if self._watch is not None else None

    async def accepted(self) -> Job:
        """The acceptance (for an idempotent replay the first one, ``job.replay``
        true); a refused submission raises what SubmitJob would (§7.2)."""
        if self._job is None:
            job, call = await retrying(self._retry, self._open, self._transport.address)
            self._job = job
            self._watch = Watch(self._transport, job.job_id, 0, self._reconnect, call)
        return self._job

    async def _open(self) -> tuple[Job, aio.UnaryStreamCall[Any, bytes]]:
        call = self._transport.run_job(self._request, metadata=self._transport.metadata)
        first = await call.read()
        if not isinstance(first, bytes):  # aio.EOF
            call.cancel()
            raise Unavailable(self._transport.address, "the stream ended before the acceptance")
        message = job_service_pb2.RunJobResponse.FromString(first)
        accepted = field_payload(first, 3) or b""
        return Job.from_bytes(accepted, replay=message.replay), call

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        await self.accepted()
        assert self._watch is not None
        async for event in self._watch:
            yield event

    def __await__(self) -> Generator[Any, None, Outcome]:
        return self._outcome().__await__()

    async def _outcome(self) -> Outcome:
        await self.accepted()
        assert self._watch is not None
        return await self._watch.wait()


class _Frames:
    """A stream's messages as WatchJobResponses (WatchJob's, and RunJob's after the
    first), read with ``call.read()``. Not an async generator: a follower that stops at
    the outcome would leave one suspended, for the loop to close later in a task of its
    own, and that task ran on the caller's next call (issue 25)."""

    def __init__(self, call: aio.UnaryStreamCall[Any, bytes]) -> None:
        self._call = call

    def __aiter__(self) -> _Frames:
        return self

    async def __anext__(self) -> job_service_pb2.WatchJobResponse:
        data = await self._call.read()
        if not isinstance(data, bytes):  # aio.EOF
            raise StopAsyncIteration
        return job_service_pb2.WatchJobResponse.FromString(data)
