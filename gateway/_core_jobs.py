"""The core's JobService as the console's endpoints call it: with the caller's token.

The console needs a few answers ARCP frames do not carry: a job's input and limits
(to run it again), a cancel of a job another session submitted (§7.4 lets only the
submitting session cancel over ARCP; JobService lets its principal), the cluster's
nodes and a window of jobs for the Agents page. The gateway asks the core's own
gRPC API for them, forwarding the `Authorization` header the browser sent as the
call's bearer metadata: the core authenticates and authorises exactly as for any
backend, and the gateway holds no credential and decides nothing (DESIGN.md: the
gateway translates).

In front of several cores (`--core A,B`) a call goes to the core that last answered
and moves on to the next only when one cannot be reached; they share one store, so
any of them gives the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message

from arcp_grpc.client.failures import Unavailable, error_of
from arcp_grpc.v1 import job_service_pb2_grpc
from gateway.links import Keepalive

if TYPE_CHECKING:
    from arcp_grpc.v1.job_service_pb2_grpc import JobServiceAsyncStub

__all__ = ["CoreJobs"]

_CALL_SEC = 10.0  # a console request waits this long for the core, then reports it
R = TypeVar("R", bound=Message)


class CoreJobs:
    """JobService stubs for the gateway's cores; `call` tries them in turn."""

    def __init__(
        self,
        addresses: Sequence[str],
        credentials: grpc.ChannelCredentials | None,
        keepalive: Keepalive,
    ) -> None:
        options = keepalive.channel_options()
        self._channels = [
            grpc.aio.secure_channel(a, credentials, options=options)
            if credentials
            else grpc.aio.insecure_channel(a, options=options)
            for a in addresses
        ]
        self._addresses = list(addresses)
        self._stubs: list[JobServiceAsyncStub] = [
            job_service_pb2_grpc.JobServiceStub(c) for c in self._channels
        ]
        self._current = 0  # the core that answered last

    async def call(
        self,
        pick: Callable[[JobServiceAsyncStub], grpc.aio.UnaryUnaryMultiCallable[Any, R]],
        request: Message,
        authorization: str,
    ) -> R:
        """`pick(stub)(request)` with `authorization` as the call's metadata. Raises the
        ARCP error the core answered with, or `Unavailable` when none could be reached."""
        metadata = (("authorization", authorization),) if authorization else None
        failure: Unavailable | None = None
        for attempt in range(len(self._stubs)):
            index = (self._current + attempt) % len(self._stubs)
            try:
                reply = await pick(self._stubs[index])(
                    request, metadata=metadata, timeout=_CALL_SEC
                )
            except grpc.aio.AioRpcError as exc:
                error = error_of(exc, self._addresses[index])
                if not isinstance(error, Unavailable):
                    raise error from None
                failure = error
                continue
            self._current = index
            return reply
        assert failure is not None  # at least one address, each one failed
        raise failure

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
