"""`arcp.v1.JobService` over grpc.aio: an adapter from RPCs to `JobRuntime`.

Errors are mapped here and only here (`edge_errors.arcp_error`, then
`arcp_grpc.grpc_status`): a failed call aborts with the rich status, a refused
`SubmitJobs` item carries the same status in its answer. Responses that hold a
`JobAccepted` or `JobEvent`s (SubmitJob, RunJob, SubmitJobs, WatchJob) are framed by
hand around bytes serialised once (the cached `JobAccepted`, the stored `JobEvent`s), so
a replay is the original on the wire, byte for byte (§7.2).

`RunJob` is `submit` then `watch` on one stream, so a backend pays one call
per job; `SubmitJobs` runs up to `SUBMIT_WINDOW` submissions of one stream at
once and answers each as it completes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from arcp_grpc.auth import Authenticator, Principal
from arcp_grpc.base.validate import MAX_NAME_CHARS, check_job_request, request_parser
from arcp_grpc.base.wire import length_delimited, varint
from arcp_grpc.errors import ARCPError, InvalidRequest
from arcp_grpc.grpc_status import rich_status, to_status
from arcp_grpc.runtime import (
    CLEAR,
    JOB_SERVICE_FEATURES,
    Disclosure,
    JobRuntime,
    job_query,
)
from arcp_grpc.service.edge_errors import arcp_error
from arcp_grpc.service.stream_gate import gated
from arcp_grpc.service.transport_policy import WITHHELD, call_hops, credentials_allowed
from arcp_grpc.v1 import job_service_pb2 as pb
from arcp_grpc.v1 import jobs_pb2

__all__ = ["SERVICE_NAME", "JobServiceServicer", "job_service_handler"]

SERVICE_NAME = "arcp.v1.JobService"
REPLAY_TRAILER = "arcp-replay"
FRAME_BYTES = 1024 * 1024  # soft cap on one WatchJob response; one event may exceed it
# SubmitJobs items of one stream submitted but not yet answered on the wire. Enough to keep
# the store's commits and the event loop busy; beyond it the stream stops reading, so a
# client that sends faster than it reads is held back by HTTP/2 flow control.
SUBMIT_WINDOW = 64
# `replay: true`, field 4 of both RunJobResponse and SubmitJobsResponse (a varint field).
_REPLAY_TRUE = varint(4 << 3) + varint(1)

log = logging.getLogger("arcp_grpc.job_service")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Ctx = grpc.aio.ServicerContext[Any, Any]


def _unary_edge(
    fn: Callable[[Any, Req, Ctx], Awaitable[Resp]],
) -> Callable[[Any, Req, Ctx], Awaitable[Resp]]:
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Req, context: Ctx) -> Resp:
        try:
            _check(request)
            return await fn(self, request, context)
        except Exception as exc:
            await _abort(context, exc, fn.__name__)
        raise AssertionError("unreachable: abort raises")

    return wrapper


def _check(request: object) -> None:
    """Refuse what `request_parser` could not decode, and oversized or malformed fields."""
    if isinstance(request, InvalidRequest):
        raise request
    check_job_request(request)


async def _abort(context: Ctx, exc: Exception, rpc: str) -> None:
    """The one mapping of a failure to a gRPC status (AIP-193); never a stack trace."""
    await context.abort_with_status(to_status(arcp_error(exc, rpc)))


def _submission_of(
    request: pb.SubmitJobRequest | pb.RunJobRequest | pb.SubmitJobsRequest,
) -> jobs_pb2.JobSubmit:
    """The request's `JobSubmit`, which every submitting RPC requires."""
    if not request.HasField("submit"):
        raise InvalidRequest("submit is required", details={"field": "submit"})
    return request.submit


class JobServiceServicer:
    """Every JobService RPC; the caller's principal comes from bearer metadata."""

    def __init__(
        self, runtime: JobRuntime, auth: Authenticator, *, plaintext_credentials: bool = False
    ) -> None:
        self._runtime = runtime
        self._auth = auth
        self._plaintext_credentials = plaintext_credentials  # auth.plaintext_credentials
        # SubmitJobs items in flight, held here so that a stream that ends early (the
        # client went away) never leaves a submission half done or its task unreferenced.
        self._items: set[asyncio.Task[None]] = set()

    def _principal(self, context: Ctx) -> Principal:
        return self._auth.authenticate_metadata(context.invocation_metadata() or ())

    @staticmethod
    def _traceparent(context: Ctx) -> str:
        """The caller's span, from W3C `traceparent` metadata (§11); '' when none."""
        for key, value in context.invocation_metadata() or ():
            if key == "traceparent":
                return value if isinstance(value, str) else value.decode("ascii", "replace")
        return ""

    def _shown(self, principal: Principal, context: Ctx) -> Disclosure:
        """What this call's caller may see (§14): it negotiates nothing, so every feature;
        the transport is judged only if a credential is about to go out."""
        transport = CLEAR if self._plaintext_credentials else _CallTransport(context)
        return Disclosure(principal.name, JOB_SERVICE_FEATURES, transport)

    @_unary_edge
    async def SubmitJob(self, request: pb.SubmitJobRequest, context: Ctx) -> bytes:
        principal = self._principal(context)
        submission = await self._runtime.submit(
            principal, _submission_of(request), self._traceparent(context)
        )
        accepted = self._shown(principal, context).accepted(submission.accepted)
        # In the trailers: sending initial metadata on its own costs an extra write and a
        # wait, which measured as ~0.25 ms on a ~0.7 ms call.
        context.set_trailing_metadata(((REPLAY_TRAILER, "true" if submission.replay else "false"),))
        return length_delimited(1, accepted)  # SubmitJobResponse.accepted

    @_unary_edge
    async def GetJob(self, request: pb.GetJobRequest, context: Ctx) -> pb.GetJobResponse:
        shown = self._shown(self._principal(context), context)
        summary, outcome = await self._runtime.get(shown, request.job_id)
        response = pb.GetJobResponse(job=summary)
        if outcome is not None:
            response.outcome.CopyFrom(outcome)
        return response

    @_unary_edge
    async def ListJobs(self, request: pb.ListJobsRequest, context: Ctx) -> pb.ListJobsResponse:
        principal = self._principal(context)
        query = job_query(principal, request.filter, request.page_size, request.page_token)
        jobs, cursor = await self._runtime.list_jobs(self._shown(principal, context), query)
        return pb.ListJobsResponse(jobs=jobs, next_page_token=cursor)

    @_unary_edge
    async def CancelJob(self, request: pb.CancelJobRequest, context: Ctx) -> pb.CancelJobResponse:
        principal = self._principal(context)
        await self._runtime.cancel(principal, request.cancel.job_id, request.cancel.reason)
        response = pb.CancelJobResponse()
        response.cancelled.job_id = request.cancel.job_id
        return response

    @_unary_edge
    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: Ctx
    ) -> pb.ListAgentsResponse:
        self._principal(context)
        return pb.ListAgentsResponse(agents=self._runtime.agents())

    @_unary_edge
    async def ListNodes(self, request: pb.ListNodesRequest, context: Ctx) -> pb.ListNodesResponse:
        self._principal(context)
        return pb.ListNodesResponse(nodes=await self._runtime.nodes())

    @_unary_edge
    async def ListWorkers(
        self, request: pb.ListWorkersRequest, context: Ctx
    ) -> pb.ListWorkersResponse:
        self._principal(context)
        return pb.ListWorkersResponse(workers=self._runtime.workers_connected())

    async def WatchJob(self, request: pb.WatchJobRequest, context: Ctx) -> AsyncIterator[bytes]:
        try:
            _check(request)
            principal = self._principal(context)
            shown = self._shown(principal, context)
            job_id = request.job_id
            # Asked once the watch is authorised (§6.6), and only for a batch that may
            # hold a rotation: a lookup per call cost a store read once the job had ended.
            submitter: str | None = None
            lease = self._runtime.lease
            async for batch in gated(
                lease, self._runtime.watch(principal, job_id, request.after_seq)
            ):
                events: Sequence[bytes] = batch.events
                if shown.may_rotate(events):
                    if submitter is None:
                        submitter = await self._runtime.owner(job_id) or ""
                    events = shown.events(events, submitter)
                for frame in _frames(events, batch.outcome):
                    yield frame
        except Exception as exc:
            await _abort(context, exc, "WatchJob")

    async def RunJob(self, request: pb.RunJobRequest, context: Ctx) -> AsyncIterator[bytes]:
        try:
            _check(request)
            principal = self._principal(context)
            submission = await self._runtime.submit(
                principal, _submission_of(request), self._traceparent(context)
            )
            shown = self._shown(principal, context)
            first = length_delimited(3, shown.accepted(submission.accepted))  # .accepted
            yield (first + _REPLAY_TRUE) if submission.replay else first
            async for batch in gated(
                self._runtime.lease, self._runtime.watch(principal, submission.job_id, 0)
            ):
                # RunJobResponse.events and .outcome are numbered as WatchJobResponse's.
                # The caller submitted the job (or replayed its own submission, §7.2).
                events = shown.events(batch.events, principal.name)
                for frame in _frames(events, batch.outcome):
                    yield frame
        except Exception as exc:
            await _abort(context, exc, "RunJob")

    async def SubmitJobs(
        self, requests: AsyncIterator[bytes], context: Ctx
    ) -> AsyncIterator[bytes]:
        try:
            principal = self._principal(context)
            shown = self._shown(principal, context)
            stream = _SubmitStream(
                self._runtime, principal, self._items, shown, self._traceparent(context)
            )
            async for answer in stream.answers(requests):
                yield answer
        except Exception as exc:
            await _abort(context, exc, "SubmitJobs")


class _SubmitStream:
    """One SubmitJobs stream: reads items, submits up to `SUBMIT_WINDOW` at once, and
    hands back each item's `SubmitJobsResponse` bytes in completion order.

    A window slot is taken when an item is read and given back once its answer has been
    written, so memory per stream is bounded whatever the client does. Per-item failures
    become answers, an item that does not even decode included (it is parsed here, not by
    grpc, whose failure would end the stream); only a failure to read the stream ends it.
    """

    def __init__(
        self,
        runtime: JobRuntime,
        principal: Principal,
        items: set[asyncio.Task[None]],
        shown: Disclosure,
        traceparent: str,
    ) -> None:
        self._shown = shown  # §14: a plaintext, non-local caller gets no credential values
        self._traceparent = traceparent  # the stream's caller's span: every item's parent
        self._runtime = runtime
        self._principal = principal
        self._items = items
        self._window = asyncio.Semaphore(SUBMIT_WINDOW)
        self._ready: asyncio.Queue[bytes | Exception | None] = asyncio.Queue()

    async def answers(self, requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while (answer := await self._ready.get()) is not None:
                if isinstance(answer, Exception):
                    raise answer
                yield answer
                self._window.release()
        finally:
            reader.cancel()

    async def _read(self, requests: AsyncIterator[bytes]) -> None:
        try:
            async for raw in requests:
                await self._window.acquire()
                try:
                    request = pb.SubmitJobsRequest.FromString(raw)
                except DecodeError:
                    # No correlation id can be read from it: answered with none.
                    undecodable = InvalidRequest("the item is not a SubmitJobsRequest")
                    self._ready.put_nowait(_refusal(b"", undecodable))
                    continue
                item = asyncio.create_task(self._answer(request))
                self._items.add(item)
                item.add_done_callback(self._items.discard)
            for _ in range(SUBMIT_WINDOW):  # every slot back: every answer written
                await self._window.acquire()
        except Exception as exc:
            self._ready.put_nowait(exc)
        else:
            self._ready.put_nowait(None)

    async def _answer(self, request: pb.SubmitJobsRequest) -> None:
        correlation = request.correlation_id.encode()
        if len(correlation) > MAX_NAME_CHARS:  # never echo oversized input
            self._ready.put_nowait(
                _refusal(b"", InvalidRequest("correlation_id is too long", details={}))
            )
            return
        head = length_delimited(1, correlation) if correlation else b""  # .correlation_id
        try:
            submitted = await self._runtime.submit(
                self._principal, _submission_of(request), self._traceparent
            )
        except Exception as exc:
            self._ready.put_nowait(_refusal(head, arcp_error(exc, "SubmitJobs")))
            return
        answer = head + length_delimited(2, self._shown.accepted(submitted.accepted))
        self._ready.put_nowait((answer + _REPLAY_TRUE) if submitted.replay else answer)


def _refusal(head: bytes, error: ARCPError) -> bytes:
    """A `SubmitJobsResponse` refusing one item: its correlation id field, then the error."""
    status = rich_status(error).SerializeToString()
    return head + length_delimited(3, status)  # SubmitJobsResponse.error


class _CallTransport:
    """§14: whether one call's transport may carry credential values (TLS, or a peer on
    this host; `arcp_grpc.service.transport_policy`), a `Transport` for the call's
    `Disclosure`. Decided once per call, and only when a credential is about to go out:
    most jobs carry none, and the decision reads the call's peer, auth context and
    metadata (a third of SubmitJob's own CPU when it was made on every call)."""

    __slots__ = ("_allowed", "_context")

    def __init__(self, context: Ctx) -> None:
        self._context = context
        self._allowed: bool | None = None  # undecided until asked

    def carries_credentials(self) -> bool:
        if self._allowed is None:
            self._allowed = credentials_allowed(call_hops(self._context), plaintext_ok=False)
            if not self._allowed:
                log.warning(WITHHELD, self._context.peer())
        return self._allowed


def _frames(events: Sequence[bytes], outcome: bytes | None) -> Iterator[bytes]:
    """`WatchJobResponse` messages for one feed batch, each at most about
    `FRAME_BYTES`, so a batch of large result chunks never exceeds a client's
    default 4 MiB receive limit. The outcome rides on the last one."""
    frame: list[bytes] = []
    size = 0
    for event in events:
        field = length_delimited(1, event)  # WatchJobResponse.events
        if frame and size + len(field) > FRAME_BYTES:
            yield b"".join(frame)
            frame, size = [], 0
        frame.append(field)
        size += len(field)
    if outcome is not None:
        frame.append(length_delimited(2, outcome))  # WatchJobResponse.outcome
    if frame:
        yield b"".join(frame)


def _raw(frame: bytes) -> bytes:
    return frame


def job_service_handler(servicer: JobServiceServicer) -> grpc.GenericRpcHandler:
    """The handler for every RPC of `arcp.v1.JobService`."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "SubmitJob": grpc.unary_unary_rpc_method_handler(
            servicer.SubmitJob,
            request_deserializer=request_parser(pb.SubmitJobRequest),
            response_serializer=_raw,
        ),
        "GetJob": grpc.unary_unary_rpc_method_handler(
            servicer.GetJob,
            request_deserializer=request_parser(pb.GetJobRequest),
            response_serializer=pb.GetJobResponse.SerializeToString,
        ),
        "ListJobs": grpc.unary_unary_rpc_method_handler(
            servicer.ListJobs,
            request_deserializer=request_parser(pb.ListJobsRequest),
            response_serializer=pb.ListJobsResponse.SerializeToString,
        ),
        "CancelJob": grpc.unary_unary_rpc_method_handler(
            servicer.CancelJob,
            request_deserializer=request_parser(pb.CancelJobRequest),
            response_serializer=pb.CancelJobResponse.SerializeToString,
        ),
        "WatchJob": grpc.unary_stream_rpc_method_handler(
            servicer.WatchJob,
            request_deserializer=request_parser(pb.WatchJobRequest),
            response_serializer=_raw,
        ),
        "ListAgents": grpc.unary_unary_rpc_method_handler(
            servicer.ListAgents,
            request_deserializer=request_parser(pb.ListAgentsRequest),
            response_serializer=pb.ListAgentsResponse.SerializeToString,
        ),
        "ListWorkers": grpc.unary_unary_rpc_method_handler(
            servicer.ListWorkers,
            request_deserializer=request_parser(pb.ListWorkersRequest),
            response_serializer=pb.ListWorkersResponse.SerializeToString,
        ),
        "RunJob": grpc.unary_stream_rpc_method_handler(
            servicer.RunJob,
            request_deserializer=request_parser(pb.RunJobRequest),
            response_serializer=_raw,
        ),
        "ListNodes": grpc.unary_unary_rpc_method_handler(
            servicer.ListNodes,
            request_deserializer=request_parser(pb.ListNodesRequest),
            response_serializer=pb.ListNodesResponse.SerializeToString,
        ),
        "SubmitJobs": grpc.stream_stream_rpc_method_handler(
            servicer.SubmitJobs,
            request_deserializer=_raw,  # parsed per item, so a bad item is only refused
            response_serializer=_raw,
        ),
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
