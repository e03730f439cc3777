"""What the agent API (`arcp_grpc.context`) needs of the job it runs in: plain Protocols.

`JobContext`, `ResultStream` and `ChildJob` are the agent author's public API; the
runtime's `ActiveJob` is what they act on. Neither side may import the other (no cycle,
not even under `TYPE_CHECKING`), so the seam is written down here, below both: the
context speaks only to a `JobHost`, and the runtime's job implements it.

It lives in `base` because it needs nothing above it: the host answers in plain values
(grants as a mapping, a budget remaining as a `Decimal`) and protobuf messages, never in
the lease layer's or the store's objects. The checks themselves stay where they are: the
context's `authorize` is still the one gate (§9.3), in its order (§9.5, §9.6, then the
lease patterns); the host only answers each question.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from arcp_grpc.errors import ARCPError, LeaseExpired
from arcp_grpc.v1 import jobs_pb2, lease_pb2

__all__ = [
    "ChildHandle",
    "ChildRequest",
    "HostFunction",
    "JobHost",
    "OpenStream",
    "StreamLimits",
]

HostFunction = Callable[[Any], Awaitable[Any]]
"""A registered tool or model, as the host hands it out (`arcp_grpc.agents`)."""


@dataclass(frozen=True, slots=True)
class ChildRequest:
    """What a job asks of a child it delegates to (§9.4, §10): the lease and expiry
    requested are narrowed to the parent's by the runtime."""

    agent: str
    input_value: Any
    lease_request: Mapping[str, Sequence[str]] | None
    expires_at: str | None
    max_runtime_sec: int | None


class StreamLimits(Protocol):
    """The caps a streamed result obeys (§8.4, §14)."""

    @property
    def chunk_bytes(self) -> int: ...

    @property
    def max_chunk_bytes(self) -> int: ...

    @property
    def max_result_bytes(self) -> int: ...


class OpenStream(Protocol):
    """A job's open streamed result, as the runtime closes it when the agent returns."""

    @property
    def closed(self) -> bool: ...

    async def close(self) -> None: ...


class ChildHandle(Protocol):
    """A delegated job as its parent sees it (§10)."""

    @property
    def job_id(self) -> str: ...

    def stop(self, error: ARCPError) -> bool:
        """End the job with `error` unless it already ends."""
        ...

    async def wait(self) -> jobs_pb2.JobOutcome:
        """The job's outcome, once it ended."""
        ...


class JobHost(ChildHandle, Protocol):
    """The running job behind one `JobContext`."""

    streamed: jobs_pb2.StreamedResult | None  # set once the agent opens a result stream
    result_stream: OpenStream | None

    @property
    def agent_ref(self) -> str: ...

    @property
    def trace_id(self) -> str: ...

    @property
    def grants(self) -> Mapping[str, tuple[str, ...]]: ...

    @property
    def credentials(self) -> Sequence[lease_pb2.Credential]: ...

    @property
    def parent(self) -> JobHost | None: ...

    @property
    def stopping(self) -> bool:
        """The runtime has decided to end the job (cancel, expiry, shutdown)."""
        ...

    @property
    def ended(self) -> bool:
        """The job has its outcome: it may emit no more events."""
        ...

    @property
    def limits(self) -> StreamLimits: ...

    @property
    def lease_expires_at(self) -> str:
        """The lease's `expires_at` as RFC 3339 text, for messages (§9.5)."""
        ...

    def lease_expired(self) -> bool:
        """Whether the lease expired, on the monotonic clock (§9.5, §14)."""
        ...

    def exhausted_budget(self) -> str | None:
        """A currency whose budget is spent, along the ancestor chain (§9.6)."""
        ...

    def budget_remaining(self, currency: str) -> Decimal | None: ...

    def charge_budget(self, currency: str, amount: Decimal) -> bool:
        """Spend `amount` of a budgeted currency; False if it is not budgeted (§9.6)."""
        ...

    def authorize_lease(self, namespace: str, resource: str) -> str:
        """The canonical resource if the lease's patterns cover it (§9.3)."""
        ...

    def expire(self, error: LeaseExpired) -> None:
        """The agent hit an expired lease: end the job after the grace (§9.5, §13.4)."""
        ...

    def emit(self, kind: str, body: Any, *, secret: bool = False) -> int:
        """Append one event; returns its `job_seq`. Raises InvalidRequest once ended."""
        ...

    async def backpressure(self) -> None:
        """Wait while the store's write queue is long (the emitter slows down)."""
        ...

    def tool(self, name: str) -> HostFunction: ...

    def model(self, name: str) -> HostFunction: ...

    async def rotate_credential(self, credential_id: str) -> lease_pb2.Credential: ...

    async def delegate(self, request: ChildRequest) -> ChildHandle:
        """Start a child job with a subset of this job's authority (§9.4, §10)."""
        ...
