"""`Client.submit_many`: many submissions over one SubmitJobs stream, back-pressured.

At most ``window`` submissions are sent and not yet answered; the source is read only as
answers free a place, so a generator of a million submissions is never held in memory,
and a slow core slows the caller rather than filling a buffer. The core answers in
completion order, each answer carrying the ``correlation_id`` (here the submission's
index) of its request; a refused item is answered with its error and the stream goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

import grpc
from google.rpc import status_pb2

from arcp_grpc.base.wire import field_payload
from arcp_grpc.client.failures import error_of
from arcp_grpc.client.requests import fill_submit
from arcp_grpc.client.transport import Transport
from arcp_grpc.client.values import Job, Submission
from arcp_grpc.errors import ARCPError
from arcp_grpc.grpc_status import from_status
from arcp_grpc.v1 import job_service_pb2

__all__ = ["Submitted", "submit_stream"]


@dataclass(frozen=True)
class Submitted:
    """The answer to one submission of `Client.submit_many`: its ``index`` in the source,
    and the accepted ``job`` or the ``error`` it was refused with (``retry_after`` set
    for a quota refusal), never both."""

    index: int
    submission: Submission = field(repr=False)
    job: Job | None
    error: ARCPError | None


async def submit_stream(
    transport: Transport,
    submissions: Iterable[Submission] | AsyncIterable[Submission],
    window: int,
    keyed: Callable[[Submission], Submission] | None,
) -> AsyncIterator[Submitted]:
    """The answers of one SubmitJobs stream (see the module docstring). ``keyed`` gives
    every submission an idempotency key (under a retry policy), so that resubmitting one
    whose answer was lost is a replay (§7.2)."""
    slots = asyncio.Semaphore(window)
    sent: dict[str, tuple[int, Submission]] = {}
    refused: list[Submitted] = []  # refused here, before sending: answered in order

    async def requests() -> AsyncIterator[job_service_pb2.SubmitJobsRequest]:
        index = 0
        source = _aiter(submissions)
        while True:
            await slots.acquire()
            submission = await anext(source, None)
            if submission is None:
                return
            submission = keyed(submission) if keyed is not None else submission
            request = job_service_pb2.SubmitJobsRequest(correlation_id=str(index))
            try:
                fill_submit(request.submit, submission)
            except ARCPError as exc:
                refused.append(Submitted(index, submission, None, exc))
                slots.release()
            else:
                sent[str(index)] = (index, submission)
                yield request
            index += 1

    call = transport.submit_jobs(requests(), metadata=transport.metadata)
    try:
        async for data in call:
            while refused:
                yield refused.pop(0)
            answer = job_service_pb2.SubmitJobsResponse.FromString(data)
            index, submission = sent.pop(answer.correlation_id)
            slots.release()
            yield Submitted(index, submission, *_result(answer, data))
    except grpc.RpcError as exc:
        raise error_of(exc, transport.address) from None
    finally:
        call.cancel()
    for late in refused:
        yield late


def _result(
    answer: job_service_pb2.SubmitJobsResponse, data: bytes
) -> tuple[Job | None, ARCPError | None]:
    if answer.HasField("accepted"):
        accepted = field_payload(data, 2) or b""  # SubmitJobsResponse.accepted, as sent
        return Job.from_bytes(accepted, replay=answer.replay), None
    status = status_pb2.Status.FromString(answer.error.SerializeToString())
    return None, from_status(status)


async def _aiter(
    submissions: Iterable[Submission] | AsyncIterable[Submission],
) -> AsyncIterator[Submission]:
    if isinstance(submissions, AsyncIterable):
        async for submission in submissions:
            yield submission
    else:
        for submission in submissions:
            yield submission
