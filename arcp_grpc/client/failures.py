"""A failed call as the runtime's own exception, and the opt-in retry of retryable ones.

The ARCP error a status carries is read in one place shared with the server side,
`arcp_grpc.grpc_status.from_rpc_error` (its ``ErrorInfo`` gives the §12 code and
``retryable``, its ``RetryInfo`` the ``retry_after``). What that place cannot know is a
failure with no ARCP answer at all: the core unreachable, or the connection dropped under
a call. That is `Unavailable`, an ``INTERNAL_ERROR`` (retryable, §12) that also says where
the client was going.

Retrying is opt-in (`RetryPolicy`), because only the caller knows whether a repeat is
safe; the client makes it safe for a submit by sending an idempotency key (generated when
the caller gave none), so a retried submit is the exact replay of the first (§7.2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from grpc import aio

from arcp_grpc.errors import ARCPError, InternalError
from arcp_grpc.grpc_status import from_rpc_error

__all__ = ["NO_RETRY", "RetryPolicy", "Unavailable", "error_of", "retrying"]

T = TypeVar("T")

_STATUS_DETAILS = "grpc-status-details-bin"  # the rich status every ARCP answer carries


class Unavailable(InternalError):
    """The core could not be reached, or the connection dropped under the call: no ARCP
    answer came back. ``address`` is where the client was going, ``detail`` gRPC's words."""

    def __init__(self, address: str, detail: str) -> None:
        super().__init__(f"cannot reach the core at {address}: {detail}")
        self.address = address
        self.detail = detail


def error_of(exc: grpc.RpcError, address: str) -> ARCPError:
    """The exception a failed call raises: `Unavailable` for a transport failure, else
    the ARCP error its status carries."""
    if (
        isinstance(exc, aio.AioRpcError | grpc.Call)
        and exc.code() == grpc.StatusCode.UNAVAILABLE
        and not any(key == _STATUS_DETAILS for key, _ in exc.trailing_metadata() or ())
    ):
        return Unavailable(address, exc.details() or "connection failed")
    return from_rpc_error(exc)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to repeat a call that failed with a retryable error.

    ``attempts`` counts the first try. The wait before a repeat is the ``retry_after``
    the core asked for (a quota refusal's ``RetryInfo``), else an exponential backoff from
    ``initial_backoff`` by ``multiplier`` up to ``max_backoff`` seconds. An error that is
    not retryable (§12) is raised at once.
    """

    attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("RetryPolicy backoffs must be >= 0 and multiplier >= 1")

    def delay(self, retry: int, error: ARCPError) -> float:
        """Seconds to wait before repeat number `retry` (0 for the first repeat)."""
        if error.retry_after is not None:
            return error.retry_after
        return min(self.max_backoff, self.initial_backoff * self.multiplier**retry)


NO_RETRY = RetryPolicy(attempts=1)


async def retrying(policy: RetryPolicy, call: Callable[[], Awaitable[T]], address: str) -> T:
    """`call()` until it succeeds, fails with an error that is not retryable, or the
    policy's attempts are spent; failures are raised as `error_of` maps them (an ARCP
    error the call raised itself is judged as it is)."""
    if policy.attempts == 1:  # the default: no loop, no timer
        try:
            return await call()
        except grpc.RpcError as exc:
            raise error_of(exc, address) from None
    retry = 0
    while True:
        try:
            return await call()
        except grpc.RpcError as exc:
            error = error_of(exc, address)
        except ARCPError as exc:  # a call that mapped its own failure (Unavailable included)
            error = exc
        if not error.retryable or retry + 1 >= policy.attempts:
            raise error from None
        await asyncio.sleep(policy.delay(retry, error))
        retry += 1
