"""ARCP errors (spec §12) as one exception tree.

Every failure the runtime reports is one of these; edges map them once:
the gRPC servicers to a ``google.rpc.Status`` (see ``_grpc_status``), the
gateway to an ARCP error frame. Nothing else on the wire is built from
strings.

.. code-block:: text

    ARCPError
     ├── PermissionDenied            PERMISSION_DENIED
     ├── LeaseSubsetViolation        LEASE_SUBSET_VIOLATION
     ├── JobNotFound                 JOB_NOT_FOUND
     ├── DuplicateKey                DUPLICATE_KEY
     ├── AgentNotAvailable           AGENT_NOT_AVAILABLE
     ├── AgentVersionNotAvailable    AGENT_VERSION_NOT_AVAILABLE
     ├── Cancelled                   CANCELLED
     ├── Timeout                     TIMEOUT
     ├── ResumeWindowExpired         RESUME_WINDOW_EXPIRED
     ├── HeartbeatLost               HEARTBEAT_LOST
     ├── LeaseExpired                LEASE_EXPIRED          (never retryable)
     ├── BudgetExhausted             BUDGET_EXHAUSTED       (never retryable)
     ├── InvalidRequest              INVALID_REQUEST
     ├── Unauthenticated             UNAUTHENTICATED
     └── InternalError               INTERNAL_ERROR         (always retryable)
          ├── QuotaExceeded          INTERNAL_ERROR, details.reason QUOTA_EXCEEDED
          └── StoreUnreachable       INTERNAL_ERROR, details.reason STORE_UNREACHABLE
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from google.protobuf import json_format, struct_pb2

from arcp_grpc.v1 import errors_pb2

__all__ = [
    "ARCPError",
    "AgentNotAvailable",
    "AgentVersionNotAvailable",
    "BudgetExhausted",
    "Cancelled",
    "DuplicateKey",
    "HeartbeatLost",
    "InternalError",
    "InvalidRequest",
    "JobNotFound",
    "LeaseExpired",
    "LeaseSubsetViolation",
    "NodeUnavailable",
    "PermissionDenied",
    "QuotaExceeded",
    "ResumeWindowExpired",
    "StoreUnreachable",
    "Timeout",
    "Unauthenticated",
    "error_class",
]


class ARCPError(Exception):
    """Base of every ARCP error; ``code`` is the §12 name, ``retryable`` its default."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    retryable_default: ClassVar[bool] = False
    fixed_retryable: ClassVar[bool | None] = None  # §12: some codes' retryable is not a choice
    # `details.reason`: which error of a code this is, where §12 has none of its own.
    reason: ClassVar[str] = ""
    # Seconds the peer asked the caller to wait before trying again (a gRPC
    # ``google.rpc.RetryInfo``, set by `grpc_status.from_rpc_error`); None when it named none.
    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if self.fixed_retryable is not None:
            self.retryable = self.fixed_retryable
        else:
            self.retryable = self.retryable_default if retryable is None else retryable
        self.details: dict[str, Any] = dict(details or {})
        if self.reason:
            self.details["reason"] = self.reason

    def to_proto(self) -> errors_pb2.ErrorDetail:
        """The contract's view of this error."""
        detail = errors_pb2.ErrorDetail(
            code=errors_pb2.ErrorCode.Value(f"ERROR_CODE_{self.code}"),
            message=self.message,
            retryable=self.retryable,
        )
        if self.details:
            detail.details.CopyFrom(_struct(self.details))
        return detail

    @classmethod
    def from_proto(cls, detail: errors_pb2.ErrorDetail) -> ARCPError:
        """Rebuild the typed error a peer reported."""
        name = errors_pb2.ErrorCode.Name(detail.code).removeprefix("ERROR_CODE_")
        details = _plain(detail.details) if detail.HasField("details") else None
        klass = error_class(name, details)
        return klass(detail.message, retryable=detail.retryable, details=details)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, retryable={self.retryable})"


class PermissionDenied(ARCPError):
    """An operation the lease does not cover (§9.3), or another principal's job."""

    code = "PERMISSION_DENIED"


class LeaseSubsetViolation(ARCPError):
    """A delegation that would widen the parent's authority (§9.4)."""

    code = "LEASE_SUBSET_VIOLATION"


class JobNotFound(ARCPError):
    """No such job, or one the caller may not know exists (§6.6)."""

    code = "JOB_NOT_FOUND"


class DuplicateKey(ARCPError):
    """An idempotency key reused with different parameters (§7.2)."""

    code = "DUPLICATE_KEY"


class AgentNotAvailable(ARCPError):
    """The agent name is not registered (§7.5)."""

    code = "AGENT_NOT_AVAILABLE"


class AgentVersionNotAvailable(ARCPError):
    """The agent exists but not at the requested version (§7.5)."""

    code = "AGENT_VERSION_NOT_AVAILABLE"


class Cancelled(ARCPError):
    """The job was cancelled by its submitter (§7.4)."""

    code = "CANCELLED"


class Timeout(ARCPError):
    """The job ran past ``max_runtime_sec`` (§7.3)."""

    code = "TIMEOUT"


class ResumeWindowExpired(ARCPError):
    """The buffer no longer covers the requested resume point (§6.3)."""

    code = "RESUME_WINDOW_EXPIRED"


class HeartbeatLost(ARCPError):
    """The peer went silent for two heartbeat intervals (§6.4)."""

    code = "HEARTBEAT_LOST"
    retryable_default = True


class LeaseExpired(ARCPError):
    """An operation at or after the lease's ``expires_at`` (§9.5); never retryable."""

    code = "LEASE_EXPIRED"
    fixed_retryable: ClassVar[bool | None] = False


class BudgetExhausted(ARCPError):
    """An operation with a budget counter at or below zero (§9.6); never retryable."""

    code = "BUDGET_EXHAUSTED"
    fixed_retryable: ClassVar[bool | None] = False


class InvalidRequest(ARCPError):
    """A malformed envelope or a schema violation (§5, §12)."""

    code = "INVALID_REQUEST"


class Unauthenticated(ARCPError):
    """Missing or wrong bearer token (§6.1)."""

    code = "UNAUTHENTICATED"


class InternalError(ARCPError):
    """A runtime fault; always retryable (§12)."""

    code = "INTERNAL_ERROR"
    fixed_retryable: ClassVar[bool | None] = True


QUOTA_REASON = "QUOTA_EXCEEDED"
STORE_UNREACHABLE_REASON = "STORE_UNREACHABLE"


class _RetryLater(InternalError):
    """A retryable ``INTERNAL_ERROR`` that says why (``details.reason``, since §12 has no
    code for it) and when to try again (``details.retry_after_ms``)."""

    retry_after_default_ms: ClassVar[int] = 0

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, details=details)
        # A peer's details may carry the number as text (gRPC metadata) or a double (Struct).
        retry = self.details.get("retry_after_ms", self.retry_after_default_ms)
        self.details["retry_after_ms"] = int(float(retry))

    @property
    def retry_after_ms(self) -> int:
        return int(self.details["retry_after_ms"])


class QuotaExceeded(_RetryLater):
    """A per-principal or global cap refused a session or a job (§14 SHOULD).

    §12 has no quota code, so on the ARCP wire this is a retryable
    ``INTERNAL_ERROR`` whose details say which cap and when to try again:
    ``{"reason": "QUOTA_EXCEEDED", "limit": NAME, "retry_after_ms": N}``
    (DESIGN.md, "Quotas"); on gRPC it is ``RESOURCE_EXHAUSTED`` with a
    ``QuotaFailure`` and a ``RetryInfo`` beside the ``ErrorInfo``.
    """

    reason = QUOTA_REASON

    @classmethod
    def of(cls, limit: str, retry_after_ms: int, message: str) -> QuotaExceeded:
        return cls(message, details={"limit": limit, "retry_after_ms": retry_after_ms})

    @property
    def limit(self) -> str:
        return str(self.details.get("limit", ""))


class StoreUnreachable(_RetryLater):
    """This node cannot reach its store right now (a database restart, a cut
    connection): try again in a moment, or through another node (issue 20).

    Like a quota refusal, §12 has no code for it: on the ARCP wire it is a retryable
    ``INTERNAL_ERROR`` with ``{"reason": "STORE_UNREACHABLE", "retry_after_ms": N}``;
    on gRPC it is ``UNAVAILABLE`` (what gRPC clients retry on) with a ``RetryInfo``.
    """

    reason = STORE_UNREACHABLE_REASON
    retry_after_default_ms = 1000  # the reconnect backoff's bound is 2 s; most come back sooner


NODE_UNAVAILABLE_REASON = "NODE_UNAVAILABLE"


class NodeUnavailable(InternalError):
    """This node may not serve: the cluster declared it dead (issue 20). The request
    was not acted on; the same request to another node succeeds.

    §12 has no code for it, so on the ARCP wire it is a retryable ``INTERNAL_ERROR``
    with ``details.reason`` ``NODE_UNAVAILABLE``; on gRPC it is ``UNAVAILABLE``, the
    code every gRPC client and balancer retries elsewhere."""

    reason = NODE_UNAVAILABLE_REASON


_BY_REASON: dict[str, type[InternalError]] = {
    QUOTA_REASON: QuotaExceeded,
    STORE_UNREACHABLE_REASON: StoreUnreachable,
    NODE_UNAVAILABLE_REASON: NodeUnavailable,
}

_BY_CODE: dict[str, type[ARCPError]] = {
    klass.code: klass
    for klass in (
        PermissionDenied,
        LeaseSubsetViolation,
        JobNotFound,
        DuplicateKey,
        AgentNotAvailable,
        AgentVersionNotAvailable,
        Cancelled,
        Timeout,
        ResumeWindowExpired,
        HeartbeatLost,
        LeaseExpired,
        BudgetExhausted,
        InvalidRequest,
        Unauthenticated,
        InternalError,
    )
}


def error_class(code: str, details: Mapping[str, Any] | None = None) -> type[ARCPError]:
    """The exception class for a §12 code (and its details, whose `reason` tells a quota
    refusal, an unreachable store or a fenced node from another internal error); unknown
    codes are internal errors."""
    klass = _BY_CODE.get(code, InternalError)
    if klass is InternalError and details:
        return _BY_REASON.get(str(details.get("reason", "")), InternalError)
    return klass


def _struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def _plain(struct: struct_pb2.Struct) -> dict[str, Any]:
    return dict(json_format.MessageToDict(struct))
