"""JobService over gRPC directly (target 4): ``SubmitJob`` then ``WatchJob`` until the outcome.

A backend that does not want an ARCP session submits with a unary call and follows the job
with the server stream, whose messages carry events in batches; the last one holds the
outcome. It can also do both in one call (``RunJob``) or submit many jobs over one stream
(``SubmitJobs``): the JobService-only scenarios. Requests are built before the clock starts,
as in the lean WebSocket generator.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from arcp_grpc.v1 import job_service_pb2, job_service_pb2_grpc, jobs_pb2
from bench.loadgen.base import ECHO_INPUT, ProtocolViolation

__all__ = ["GrpcConn", "GrpcDriver", "submit_request"]

#: Bound on stream messages per watch, so a confused server cannot loop us forever.
_MAX_MESSAGES_PER_WATCH = 50_000_000

#: The core's ``CoreConfig.max_message_bytes`` default. A lagging watcher gets result chunks
#: batched into one ``WatchJobResponse`` that can exceed grpc's 4 MiB client default (seen:
#: 8 MiB for a 16 MiB result), so the channel accepts what the core may send.
_MAX_RECEIVE_BYTES = 64 * 1024 * 1024
_CHANNEL_OPTIONS = (("grpc.max_receive_message_length", _MAX_RECEIVE_BYTES),)
#: Between two "anything still running?" polls after a streamed submit: each poll costs the
#: server a ListJobs, which is charged to the jobs' CPU, so not too often.
_IDLE_POLL_S = 0.005
_IDLE_POLLS = 24_000  # two minutes of polls at most; the scenario timeout usually ends it first


def submit_request(agent: str, agent_input: Any, key: str = "") -> job_service_pb2.SubmitJobRequest:
    value = json_format.ParseDict(agent_input, struct_pb2.Value())
    return job_service_pb2.SubmitJobRequest(
        submit=jobs_pb2.JobSubmit(agent=agent, input=value, idempotency_key=key)
    )


class GrpcConn:
    """One channel to the core; jobs run one at a time."""

    def __init__(self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
        self._channel = channel
        self._stub = job_service_pb2_grpc.JobServiceStub(channel)
        self._metadata = metadata
        self._echo = submit_request("echo", ECHO_INPUT)
        self._run_echo = job_service_pb2.RunJobRequest(submit=self._echo.submit)

    async def _submit(self, request: job_service_pb2.SubmitJobRequest) -> str:
        response = await self._stub.SubmitJob(request, metadata=self._metadata)
        return response.accepted.job_id

    async def _watch(self, job_id: str) -> tuple[int, int]:
        """Follow ``job_id`` to its outcome; count ``log`` events and result-chunk bytes."""
        events = chunk_bytes = 0
        request = job_service_pb2.WatchJobRequest(job_id=job_id, after_seq=0)
        stream = self._stub.WatchJob(request, metadata=self._metadata)
        received = 0
        async for message in stream:
            for event in message.events:
                body = event.WhichOneof("body")
                if body == "result_chunk":
                    chunk_bytes += len(event.result_chunk.data)
                elif body == "log":
                    events += 1
            if message.HasField("outcome"):
                if message.outcome.WhichOneof("outcome") != "result":
                    raise ProtocolViolation(f"job ended with {message.outcome}")
                return events, chunk_bytes
            received += 1
            if received > _MAX_MESSAGES_PER_WATCH:
                break
        raise ProtocolViolation("WatchJob ended without an outcome")

    async def run_echo(self) -> tuple[float, float]:
        start = time.perf_counter()
        job_id = await self._submit(self._echo)
        accepted = time.perf_counter()
        await self._watch(job_id)
        return accepted - start, time.perf_counter() - start

    async def submit_keyed(self, key: str, *, wait_result: bool) -> float:
        request = submit_request("echo", ECHO_INPUT, key)
        start = time.perf_counter()
        job_id = await self._submit(request)
        elapsed = time.perf_counter() - start
        if wait_result:
            await self._watch(job_id)
        return elapsed

    async def run_chatty(self, events: int) -> tuple[float, int]:
        request = submit_request("chatty", {"events": events})
        start = time.perf_counter()
        received, _ = await self._watch(await self._submit(request))
        return time.perf_counter() - start, received

    async def run_report(self, size: int) -> tuple[float, int]:
        request = submit_request("report", {"bytes": size})
        start = time.perf_counter()
        _, received = await self._watch(await self._submit(request))
        return time.perf_counter() - start, received

    async def run_job_echo(self) -> tuple[float, float]:
        start = time.perf_counter()
        accepted = 0.0
        received = 0
        async for message in self._stub.RunJob(self._run_echo, metadata=self._metadata):
            if not accepted:
                if not message.HasField("accepted"):
                    raise ProtocolViolation("RunJob's first message has no JobAccepted")
                accepted = time.perf_counter()
            if message.HasField("outcome"):
                if message.outcome.WhichOneof("outcome") != "result":
                    raise ProtocolViolation(f"job ended with {message.outcome}")
                return accepted - start, time.perf_counter() - start
            received += 1
            if received > _MAX_MESSAGES_PER_WATCH:
                break
        raise ProtocolViolation("RunJob ended without an outcome")

    async def submit_stream(self, count: int) -> float:
        items = [
            job_service_pb2.SubmitJobsRequest(correlation_id=str(i), submit=self._echo.submit)
            for i in range(count)
        ]
        start = time.perf_counter()
        answered: set[str] = set()
        async for answer in self._stub.SubmitJobs(iter(items), metadata=self._metadata):
            if answer.WhichOneof("result") != "accepted":
                raise ProtocolViolation(f"item {answer.correlation_id} refused: {answer.error}")
            answered.add(answer.correlation_id)
        elapsed = time.perf_counter() - start
        if len(answered) != count:
            raise ProtocolViolation(f"{len(answered)} of {count} items answered")
        return elapsed

    async def wait_idle(self) -> None:
        live = job_service_pb2.ListJobsRequest(
            filter=jobs_pb2.ListJobsFilter(
                status=[jobs_pb2.JOB_STATUS_PENDING, jobs_pb2.JOB_STATUS_RUNNING]
            ),
            page_size=1,
        )
        for _ in range(_IDLE_POLLS):
            page = await self._stub.ListJobs(live, metadata=self._metadata)
            if not page.jobs and not page.next_page_token:
                return
            await asyncio.sleep(_IDLE_POLL_S)
        raise ProtocolViolation("jobs still running long after their submission")

    async def close(self) -> None:
        await self._channel.close()


class GrpcDriver:
    """Opens a channel and proves it with ``ListAgents``: JobService has no session, so
    "handshake" here is connection setup plus the first authenticated call."""

    def __init__(self, address: str, token: str) -> None:
        self.address = address
        self.token = token
        self._metadata = (("authorization", f"Bearer {token}"),)

    async def connect(self) -> GrpcConn:
        channel = grpc.aio.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
        try:
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            await stub.ListAgents(job_service_pb2.ListAgentsRequest(), metadata=self._metadata)
        except BaseException:
            await channel.close()
            raise
        return GrpcConn(channel, self._metadata)
