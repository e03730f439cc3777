"""`arcp.v1.WorkerService.Work`: one remote worker's stream (issue 23, docs/workers.md).

An adapter (STYLE.md): it authenticates the worker with its own token table
(`[auth.workers]`; a client token is never a worker token, nor the reverse), reads
its registration, and hands the stream's messages to the runtime's `WorkerLink`,
which does the work. What is the stream's own is here: the welcome, heartbeats both
ways, and noticing a worker gone (its stream broke, or it was silent past
`heartbeat_timeout_sec`), after which the runtime ends its running jobs.

Flow control: the worker may have `event_window` counted messages (events, outcomes,
steps) unhandled; the link grants credit back as it handles them, and this stream
reads the next message only once the last one was handled (an event waits for the
store's back-pressure), so a slow store slows the worker, never grows a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from arcp_grpc.auth import Authenticator
from arcp_grpc.base.agentref import parse_agent_ref
from arcp_grpc.base.stamps import stamp
from arcp_grpc.base.validate import request_parser
from arcp_grpc.errors import ARCPError, InvalidRequest
from arcp_grpc.grpc_status import to_status
from arcp_grpc.runtime import JobRuntime, WorkerLink
from arcp_grpc.service.transport_policy import call_hops, credentials_allowed
from arcp_grpc.v1 import jobs_pb2
from arcp_grpc.v1 import worker_service_pb2 as pb

__all__ = ["SERVICE_NAME", "WorkerServiceServicer", "worker_handler"]

SERVICE_NAME = "arcp.v1.WorkerService"
REGISTER_TIMEOUT_SEC = 10.0  # a stream that does not register in time is closed
MAX_SLOTS = 10_000

log = logging.getLogger("arcp_grpc.workers")

Ctx = grpc.aio.ServicerContext[Any, Any]


class WorkerServiceServicer:
    """Serves `Work`: registers the worker with the runtime and relays its stream."""

    def __init__(
        self, runtime: JobRuntime, auth: Authenticator, *, plaintext_credentials: bool = False
    ) -> None:
        self._directory = runtime.workers
        self._auth = auth
        self._plaintext_credentials = plaintext_credentials

    async def Work(
        self, requests: AsyncIterator[pb.WorkRequest | InvalidRequest], context: Ctx
    ) -> AsyncIterator[pb.WorkResponse]:
        outbox: asyncio.Queue[pb.WorkResponse | ARCPError | None] = asyncio.Queue()
        try:
            # The first message is read before the token is judged: a refusal sent while
            # the worker's first write is still in flight races it, and the worker's gRPC
            # then reports its failed write (INTERNAL) instead of our UNAUTHENTICATED.
            first = await asyncio.wait_for(anext(requests), REGISTER_TIMEOUT_SEC)
            name = self._auth.authenticate_metadata(context.invocation_metadata() or ()).name
            link = self._register(name, first, outbox.put_nowait, context)
        except (ARCPError, TimeoutError, StopAsyncIteration) as refused:
            error = (
                refused
                if isinstance(refused, ARCPError)
                else InvalidRequest("a worker's first message must be `register`")
            )
            await context.abort_with_status(to_status(error))
            return
        limits = self._directory.limits
        yield pb.WorkResponse(
            welcome=pb.WorkerWelcome(
                worker=name,
                node_id=self._directory.node_id,
                heartbeat_interval_sec=limits.heartbeat_sec,
                heartbeat_timeout_sec=limits.heartbeat_timeout_sec,
                event_window=limits.event_window,
            )
        )
        self._directory.connect(link)
        log.info("worker %s connected: %s", name, ", ".join(sorted(link.agents)))
        reader = asyncio.create_task(_read(requests, link, outbox, limits.heartbeat_timeout_sec))
        beats = asyncio.create_task(_beat(outbox, limits.heartbeat_sec))
        why = "its stream ended"
        try:
            while True:
                message = await outbox.get()
                if message is None:
                    break
                if isinstance(message, ARCPError):
                    why = message.message
                    await context.abort_with_status(to_status(message))
                yield message
        finally:
            reader.cancel()
            beats.cancel()
            self._directory.disconnect(link, why)
            log.info("worker %s disconnected: %s", name, why)

    def _register(
        self, name: str, first: pb.WorkRequest | InvalidRequest, send: Any, context: Ctx
    ) -> WorkerLink:
        if isinstance(first, InvalidRequest):
            raise first
        if first.WhichOneof("kind") != "register":
            raise InvalidRequest("a worker's first message must be `register`")
        register = first.register
        if not 1 <= register.slots <= MAX_SLOTS:
            raise InvalidRequest(f"slots must be between 1 and {MAX_SLOTS}")
        if not register.agents:
            raise InvalidRequest("a worker must host at least one agent")
        agents: dict[str, jobs_pb2.AgentInfo] = {}
        for info in register.agents:
            for version in info.versions:
                parse_agent_ref(f"{info.name}@{version}")  # the names §7.5 allows
            default = info.default_version or (info.versions[0] if info.versions else "")
            if default not in info.versions or info.name in agents:
                raise InvalidRequest(f"agent {info.name!r}: versions and default disagree")
            agents[info.name] = jobs_pb2.AgentInfo(
                name=info.name, versions=sorted(info.versions), default_version=default
            )
        credentials_ok = credentials_allowed(
            call_hops(context), plaintext_ok=self._plaintext_credentials
        )
        return WorkerLink(
            name,
            agents,
            register.slots,
            send,
            credentials_ok,
            self._directory.limits.event_window,
            library=register.library,
        )


async def _read(
    requests: AsyncIterator[pb.WorkRequest | InvalidRequest],
    link: WorkerLink,
    outbox: asyncio.Queue[pb.WorkResponse | ARCPError | None],
    silence_sec: float,
) -> None:
    """Hand each message to the link; a silent or broken stream ends the worker."""
    try:
        while True:
            request = await asyncio.wait_for(anext(requests), silence_sec)
            if isinstance(request, InvalidRequest):
                raise request
            await link.receive(request)
    except StopAsyncIteration:
        outbox.put_nowait(None)
    except TimeoutError:
        outbox.put_nowait(InvalidRequest(f"the worker was silent for {silence_sec:g} s"))
    except ARCPError as error:
        outbox.put_nowait(error)
    except grpc.aio.AioRpcError:
        outbox.put_nowait(None)


async def _beat(outbox: asyncio.Queue[pb.WorkResponse | ARCPError | None], every: float) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(every)
            beat = pb.WorkerHeartbeat()
            stamp(beat.sent_at)
            outbox.put_nowait(pb.WorkResponse(heartbeat=beat))


def worker_handler(servicer: WorkerServiceServicer) -> grpc.GenericRpcHandler:
    """The handler of `arcp.v1.WorkerService` (a malformed message reads as an
    InvalidRequest, which ends the stream with INVALID_ARGUMENT)."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Work": grpc.stream_stream_rpc_method_handler(
            servicer.Work,
            request_deserializer=request_parser(pb.WorkRequest),
            response_serializer=pb.WorkResponse.SerializeToString,
        )
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
