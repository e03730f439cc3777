"""ARCP errors to and from gRPC statuses (AIP-193), mapped once here.

A failed RPC carries the natural gRPC code and a ``google.rpc.Status`` whose
details hold exactly one ``google.rpc.ErrorInfo``: ``reason`` is the ARCP
code (§12), ``domain`` is ``arcp.dev``, and ``metadata`` carries
``retryable`` plus any string-valued details. Clients in every language read
the ARCP code from ``ErrorInfo.reason``.

A quota refusal (`QuotaExceeded`, DESIGN.md "Quotas") and an unreachable store
(`StoreUnreachable`: UNAVAILABLE with a ``RetryInfo``) are the exceptions
to "the natural code of the ARCP code": §12 calls it ``INTERNAL_ERROR``, but
the gRPC code is ``RESOURCE_EXHAUSTED`` and the status also carries a
``google.rpc.QuotaFailure`` (which cap) and a ``google.rpc.RetryInfo`` (when
to try again), which gRPC clients and proxies understand without knowing ARCP.
Likewise a node the cluster declared dead (`NodeUnavailable`) answers ``UNAVAILABLE``:
the request was not acted on, and any gRPC client may retry it on another node.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from arcp_grpc.errors import (
    ARCPError,
    InternalError,
    NodeUnavailable,
    QuotaExceeded,
    StoreUnreachable,
    error_class,
)

__all__ = [
    "ERROR_DOMAIN",
    "GRPC_CODES",
    "from_rpc_error",
    "from_status",
    "rich_status",
    "to_status",
]

ERROR_DOMAIN = "arcp.dev"

GRPC_CODES: dict[str, grpc.StatusCode] = {
    "PERMISSION_DENIED": grpc.StatusCode.PERMISSION_DENIED,
    "LEASE_SUBSET_VIOLATION": grpc.StatusCode.PERMISSION_DENIED,
    "JOB_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "DUPLICATE_KEY": grpc.StatusCode.ALREADY_EXISTS,
    "AGENT_NOT_AVAILABLE": grpc.StatusCode.NOT_FOUND,
    "AGENT_VERSION_NOT_AVAILABLE": grpc.StatusCode.NOT_FOUND,
    "CANCELLED": grpc.StatusCode.CANCELLED,
    "TIMEOUT": grpc.StatusCode.DEADLINE_EXCEEDED,
    "RESUME_WINDOW_EXPIRED": grpc.StatusCode.FAILED_PRECONDITION,
    "HEARTBEAT_LOST": grpc.StatusCode.UNAVAILABLE,
    "LEASE_EXPIRED": grpc.StatusCode.FAILED_PRECONDITION,
    "BUDGET_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "INVALID_REQUEST": grpc.StatusCode.INVALID_ARGUMENT,
    "UNAUTHENTICATED": grpc.StatusCode.UNAUTHENTICATED,
    "INTERNAL_ERROR": grpc.StatusCode.INTERNAL,
}


def rich_status(error: ARCPError) -> status_pb2.Status:
    """The ``google.rpc.Status`` of an ARCP error: what a failed call carries, and what a
    streamed item's answer (`SubmitJobsResponse.error`) carries in place of a failed call."""
    info = error_details_pb2.ErrorInfo(
        reason=error.code,
        domain=ERROR_DOMAIN,
        metadata={"retryable": "true" if error.retryable else "false", **_flat(error.details)},
    )
    details: list[Any] = [info]
    code = GRPC_CODES[error.code]
    if isinstance(error, QuotaExceeded):
        code = grpc.StatusCode.RESOURCE_EXHAUSTED
        details += _quota_details(error)
    elif isinstance(error, StoreUnreachable):
        code = grpc.StatusCode.UNAVAILABLE  # what gRPC clients and proxies retry on
        details.append(_retry_info(error.retry_after_ms))
    elif isinstance(error, NodeUnavailable):
        code = grpc.StatusCode.UNAVAILABLE  # retried elsewhere by clients and balancers
    return status_pb2.Status(
        code=getattr(code_pb2, code.name),
        message=error.message,
        details=[_packed(detail) for detail in details],
    )


def _quota_details(error: QuotaExceeded) -> list[Any]:
    violation = error_details_pb2.QuotaFailure.Violation(
        subject=error.limit, description=error.message
    )
    return [
        error_details_pb2.QuotaFailure(violations=[violation]),
        _retry_info(error.retry_after_ms),
    ]


def _retry_info(retry_after_ms: int) -> error_details_pb2.RetryInfo:
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(retry_after_ms)
    return error_details_pb2.RetryInfo(retry_delay=delay)


def _packed(detail: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


def to_status(error: ARCPError) -> grpc.Status:
    """The rich gRPC status for an ARCP error, for ``context.abort_with_status``."""
    converted: grpc.Status = rpc_status.to_status(rich_status(error))
    return converted


def from_rpc_error(exc: grpc.RpcError) -> ARCPError:
    """The ARCP error a failed call carries; a status without ErrorInfo is internal."""
    status = rpc_status.from_call(exc)
    if status is None:
        details = exc.details() if hasattr(exc, "details") else str(exc)
        return InternalError(f"gRPC call failed: {details}")
    return from_status(status)


def from_status(status: status_pb2.Status) -> ARCPError:
    """The ARCP error a ``google.rpc.Status`` carries (a failed call's, or a streamed
    item's `SubmitJobsResponse.error`), with ``retry_after`` from its ``RetryInfo``;
    a status without ErrorInfo is internal."""
    error: ARCPError = InternalError(f"gRPC call failed: {status.message}")
    delay: float | None = None
    for packed in status.details:
        info = error_details_pb2.ErrorInfo()
        retry = error_details_pb2.RetryInfo()
        if packed.Unpack(info) and info.domain == ERROR_DOMAIN:  # Unpack checks the type
            meta = dict(info.metadata)
            retryable = meta.pop("retryable", "false") == "true"
            klass = error_class(info.reason, meta)
            error = klass(status.message, retryable=retryable, details=meta)
        elif packed.Unpack(retry):
            delay = retry.retry_delay.ToMilliseconds() / 1000
    error.retry_after = delay
    return error


def _flat(details: dict[str, Any]) -> dict[str, str]:
    """ErrorInfo metadata is string to string; structured values are dropped."""
    return {k: v if isinstance(v, str) else str(v) for k, v in details.items() if v is not None}
