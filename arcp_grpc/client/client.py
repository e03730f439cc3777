"""`Client`: a backend's typed, asyncio-native handle on the core's JobService.

Every method sends one kind of call and hands back plain values (`arcp_grpc.client.values`);
every failure is raised as the runtime's own exception (`arcp_grpc.errors`), read once by
`failures.error_of`. The client holds one channel; methods may run concurrently.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict, Unpack

import grpc
from grpc import aio

from arcp_grpc.base.wire import only_field
from arcp_grpc.client.batch import Submitted, submit_stream
from arcp_grpc.client.failures import NO_RETRY, RetryPolicy, error_of, retrying
from arcp_grpc.client.following import Run, Watch
from arcp_grpc.client.requests import fill_submit, list_filter, with_key
from arcp_grpc.client.transport import Transport
from arcp_grpc.client.values import Agent, Job, JobInfo, Submission, Worker
from arcp_grpc.v1 import job_service_pb2, jobs_pb2

__all__ = ["RECONNECT", "Client", "SubmitOptions"]

REPLAY_TRAILER = "arcp-replay"  # SubmitJob's trailer: "true" for an idempotent replay (§7.2)

# A watch follows a job through a restart of the core: about 15 s of tries without an event.
RECONNECT = RetryPolicy(attempts=10, initial_backoff=0.1, max_backoff=2.0)


class SubmitOptions(TypedDict, total=False):
    """A submit's options besides the agent and its input (§7.1); see `Submission`."""

    idempotency_key: str | None
    lease: Mapping[str, Sequence[str]] | None
    lease_expires_at: datetime | None
    budget: Mapping[str, str] | None
    max_runtime: int | None
    trace_id: str | None


class Client:
    """A connection to an ARCP core over gRPC (``JobService``).

    ``retry`` (off by default) repeats a call that failed with a retryable error; a
    submit under it always carries an idempotency key (one is generated when the caller
    gave none), so its repeat is the exact replay of the first, never a second job
    (§7.2). ``reconnect`` is how patiently `watch` and `run` resume a dropped stream.
    """

    def __init__(self, transport: Transport, retry: RetryPolicy | None, reconnect: RetryPolicy):
        self._transport = transport
        self._retry = retry
        self._reconnect = reconnect

    @classmethod
    async def connect(
        cls,
        address: str = "127.0.0.1:7400",
        *,
        token: str | None = None,
        ca: str | Path | bytes | None = None,
        retry: RetryPolicy | None = None,
        reconnect: RetryPolicy = RECONNECT,
        options: Sequence[tuple[str, Any]] = (),
        env: Mapping[str, str] = os.environ,
    ) -> Client:
        """A client for the core at ``address`` (``HOST:PORT``). ``token`` is the bearer
        token (default ``ARCP_TOKEN``); ``ca`` a PEM CA bundle (a path or its bytes) to
        verify the core's TLS certificate, plaintext without it; ``options`` are gRPC
        channel options. No call is made: an unreachable core fails the first call."""
        transport = Transport(address, token=token, ca=ca, options=options, env=env)
        return cls(transport, retry, reconnect)

    @property
    def address(self) -> str:
        return self._transport.address

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; calls in flight fail (CANCELLED)."""
        await self._transport.close()

    async def submit(
        self,
        agent: str,
        input: Any = None,
        **options: Unpack[SubmitOptions],
    ) -> Job:
        """SubmitJob (§7.1): the `Job` the core accepted; ``job.replay`` is true when an
        idempotency key answered with the first acceptance (§7.2). ``options`` are the
        `SubmitOptions`: ``idempotency_key``, ``lease``, ``lease_expires_at``, ``budget``,
        ``max_runtime`` (seconds) and ``trace_id``."""
        submission = self._keyed(Submission(agent, input, **options))
        request = job_service_pb2.SubmitJobRequest()
        fill_submit(request.submit, submission)
        keyed = bool(submission.idempotency_key)
        if self._retry is not None:
            submitted = partial(self._submit_job, request, keyed)
            return await retrying(self._retry, submitted, self.address)
        return await self._submit_job(request, keyed)

    async def _submit_job(self, request: job_service_pb2.SubmitJobRequest, keyed: bool) -> Job:
        """One SubmitJob call. It maps its own failure (`retrying` passes an ARCP error
        on as it is) so that the default, unretried submit runs through one coroutine
        rather than three: each costs microseconds on a busy machine (issue 25)."""
        transport = self._transport
        call = transport.submit_job(request, metadata=transport.metadata)
        try:
            data: bytes = await call
            # Only a keyed submit can be a replay (§7.2); reading the trailers costs an
            # await on the call's status (~40 µs), which an unkeyed submit need not pay.
            replay = keyed and await _replayed(call)
        except grpc.RpcError as exc:
            raise error_of(exc, transport.address) from None
        return Job.from_bytes(only_field(data)[1], replay=replay)  # SubmitJobResponse.accepted

    def run(
        self,
        agent: str,
        input: Any = None,
        **options: Unpack[SubmitOptions],
    ) -> Run:
        """RunJob: submit and follow to the end in one call. ``outcome = await
        client.run(...)``, or ``async for event in (run := client.run(...))`` and then
        ``run.outcome``."""
        request = job_service_pb2.RunJobRequest()
        fill_submit(request.submit, self._keyed(Submission(agent, input, **options)))
        return Run(self._transport, request, self._retry or NO_RETRY, self._reconnect)

    def submit_many(
        self,
        submissions: Iterable[Submission] | AsyncIterable[Submission],
        *,
        window: int = 64,
    ) -> AsyncIterator[Submitted]:
        """SubmitJobs: many submissions over one stream, at most ``window`` unanswered at
        once (back-pressure: the source is read only as answers come). Yields one
        `Submitted` per submission in completion order; a refused one carries its error
        rather than ending the stream."""
        if window < 1:
            raise ValueError("window must be at least 1")
        keyed = self._keyed if self._retry is not None else None
        return submit_stream(self._transport, submissions, window, keyed)

    async def get(self, job_id: str) -> JobInfo:
        """GetJob: the job's state and, once it ended, its outcome (no event replay)."""
        request = job_service_pb2.GetJobRequest(job_id=job_id)
        transport = self._transport

        async def call() -> job_service_pb2.GetJobResponse:
            reply: job_service_pb2.GetJobResponse = await transport.stub.GetJob(
                request, metadata=transport.metadata
            )
            return reply

        reply = await retrying(self._retry or NO_RETRY, call, transport.address)
        return JobInfo.from_proto(reply.job, reply.outcome if reply.HasField("outcome") else None)

    async def list(
        self,
        *,
        status: Iterable[str] = (),
        agent: str = "",
        created_after: datetime | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[JobInfo]:
        """ListJobs, newest first: the caller's jobs, fetched a page at a time as the
        iteration reaches it (§6.6). ``status`` takes the spec's names (``running``)."""
        request = job_service_pb2.ListJobsRequest(
            filter=list_filter(status, agent, created_after), page_size=page_size
        )
        transport = self._transport

        async def call() -> job_service_pb2.ListJobsResponse:
            page: job_service_pb2.ListJobsResponse = await transport.stub.ListJobs(
                request, metadata=transport.metadata
            )
            return page

        while True:
            page = await retrying(self._retry or NO_RETRY, call, transport.address)
            for summary in page.jobs:
                yield JobInfo.from_proto(summary)
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def watch(self, job_id: str, *, after: int = 0) -> Watch:
        """WatchJob: the job's events with ``job_seq`` above ``after``, then live to the
        end, resumed from the last one seen over a dropped stream (§8.3)."""
        return Watch(self._transport, job_id, after, self._reconnect)

    async def cancel(self, job_id: str, reason: str = "") -> None:
        """CancelJob (§7.4); a job that already ended is refused with its
        ``final_status`` in the error's details (a cancelled one is acknowledged)."""
        request = job_service_pb2.CancelJobRequest(
            cancel=jobs_pb2.JobCancel(job_id=job_id, reason=reason)
        )
        transport = self._transport

        async def call() -> None:
            await transport.stub.CancelJob(request, metadata=transport.metadata)

        await retrying(self._retry or NO_RETRY, call, transport.address)

    async def agents(self) -> builtins.list[Agent]:
        """ListAgents: the agents, their versions and default versions (§7.5)."""
        transport = self._transport

        async def call() -> job_service_pb2.ListAgentsResponse:
            reply: job_service_pb2.ListAgentsResponse = await transport.stub.ListAgents(
                job_service_pb2.ListAgentsRequest(), metadata=transport.metadata
            )
            return reply

        reply = await retrying(self._retry or NO_RETRY, call, transport.address)
        return [Agent.from_proto(info) for info in reply.agents]

    async def workers(self) -> builtins.list[Worker]:
        """ListWorkers: the remote workers connected to the cluster, their agents and
        slots (issue 23)."""
        transport = self._transport

        async def call() -> job_service_pb2.ListWorkersResponse:
            reply: job_service_pb2.ListWorkersResponse = await transport.stub.ListWorkers(
                job_service_pb2.ListWorkersRequest(), metadata=transport.metadata
            )
            return reply

        reply = await retrying(self._retry or NO_RETRY, call, transport.address)
        return [Worker.from_proto(info) for info in reply.workers]

    def _keyed(self, submission: Submission) -> Submission:
        """Under a retry policy every submit carries an idempotency key (see the class)."""
        return with_key(submission) if self._retry is not None else submission


async def _replayed(call: aio.UnaryUnaryCall[Any, bytes]) -> bool:
    """SubmitJob's ``arcp-replay`` trailer: "true" for an idempotent replay (§7.2)."""
    trailers = await call.trailing_metadata()
    return any(key == REPLAY_TRAILER and value == "true" for key, value in trailers or ())
