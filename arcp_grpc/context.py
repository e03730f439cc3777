"""`JobContext`: everything an agent may do, each step checked against its lease.

Authority-bearing operations (tools, models, filesystem and network access
the agent declares, delegation) pass one gate, `authorize`, before they run
(§9.3): lease expiry on the monotonic clock (§9.5, §14), then every budget
counter (§9.6), then the lease patterns. A failed check raises the typed
error to the agent; for tool calls it is also reported as the `tool_result`
(§9.5, §13.4). Observability (log, thought, status, metric, progress,
artifact_ref, x-vendor events) is never gated.

The context acts on its job only through `JobHost` (`arcp_grpc.base.job_host`): the
agent author's API imports nothing of the runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from google.protobuf import json_format

from arcp_grpc.base.ids import new_id
from arcp_grpc.base.job_host import ChildHandle, ChildRequest, JobHost
from arcp_grpc.errors import (
    ARCPError,
    BudgetExhausted,
    Cancelled,
    InternalError,
    InvalidRequest,
    LeaseExpired,
)
from arcp_grpc.v1 import events_pb2, jobs_pb2, lease_pb2

__all__ = ["ChildJob", "JobContext", "ResultStream"]

_LOG_LEVELS = {
    "debug": events_pb2.LOG_LEVEL_DEBUG,
    "info": events_pb2.LOG_LEVEL_INFO,
    "warn": events_pb2.LOG_LEVEL_WARN,
    "warning": events_pb2.LOG_LEVEL_WARN,
    "error": events_pb2.LOG_LEVEL_ERROR,
}


class JobContext:
    """The agent's handle on its job. One per job; not shared between jobs."""

    def __init__(self, job: JobHost, input_value: Any) -> None:
        self._job = job
        self.input = input_value
        self._calls = 0

    # -- identity ----------------------------------------------------------

    @property
    def job_id(self) -> str:
        return self._job.job_id

    @property
    def agent(self) -> str:
        """The resolved agent, ``name@version``."""
        return self._job.agent_ref

    @property
    def trace_id(self) -> str:
        """The W3C trace id to forward to tools and sub-agents (§11)."""
        return self._job.trace_id

    @property
    def lease(self) -> Mapping[str, tuple[str, ...]]:
        return self._job.grants

    @property
    def credentials(self) -> tuple[lease_pb2.Credential, ...]:
        """Credentials provisioned for this job (§9.8); secrets, never log them."""
        return tuple(self._job.credentials)

    @property
    def cancelled(self) -> bool:
        """True once the runtime has decided to end the job (cancel, expiry, shutdown)."""
        return self._job.stopping

    def budget_remaining(self, currency: str) -> Decimal | None:
        return self._job.budget_remaining(currency)

    # -- events that need no authority -----------------------------------

    async def log(self, message: str, level: str = "info") -> None:
        try:
            enum_level = _LOG_LEVELS[level]
        except KeyError:
            raise InvalidRequest(
                f"log level {level!r} is not one of debug/info/warn/error"
            ) from None
        await self._emit("log", events_pb2.LogEvent(level=enum_level, message=message))

    async def thought(self, text: str) -> None:
        await self._emit("thought", events_pb2.ThoughtEvent(text=text))

    async def status(self, phase: str, message: str = "") -> None:
        await self._emit("status", events_pb2.StatusEvent(phase=phase, message=message))

    async def progress(
        self,
        current: float,
        total: float | None = None,
        units: str = "",
        message: str = "",
    ) -> None:
        """Structured progress (§8.2.1); `current` must be non-negative."""
        if current < 0:
            raise InvalidRequest("progress.current must be non-negative (§8.2.1)")
        body = events_pb2.ProgressEvent(current=current, units=units, message=message)
        if total is not None:
            body.total = total
        await self._emit("progress", body)

    async def artifact(
        self, uri: str, content_type: str, *, byte_size: int | None = None, sha256: str = ""
    ) -> None:
        body = events_pb2.ArtifactRefEvent(uri=uri, content_type=content_type, sha256=sha256)
        if byte_size is not None:
            body.byte_size = byte_size
        await self._emit("artifact_ref", body)

    async def vendor_event(self, kind: str, body: Mapping[str, Any]) -> None:
        """An ``x-vendor.*`` event (§8.2)."""
        if not kind.startswith("x-vendor.") or len(kind) <= len("x-vendor."):
            raise InvalidRequest(f"vendor event kind {kind!r} must start with 'x-vendor.'")
        event = events_pb2.VendorEvent(kind=kind)
        event.body.update(dict(body))
        await self._emit("vendor", event)

    async def metric(
        self,
        name: str,
        value: float,
        unit: str = "",
        dimensions: Mapping[str, Any] | None = None,
    ) -> None:
        """A metric; ``cost.*`` metrics in a budgeted currency decrement the budget of
        this job and of every ancestor, then report ``cost.budget.remaining`` (§9.6)."""
        is_cost = name.startswith("cost.") and name != "cost.budget.remaining"
        amount = _decimal(value)
        if is_cost and amount < 0:
            raise InvalidRequest(f"cost metric {name!r} has a negative value (§9.6)")
        body = events_pb2.MetricEvent(name=name, value=value, unit=unit)
        if dimensions:
            body.dimensions.update(dict(dimensions))
        await self._emit("metric", body)
        if is_cost and unit and self._job.charge_budget(unit, amount):
            job: JobHost | None = self._job
            while job is not None:
                remaining = job.budget_remaining(unit)
                if remaining is not None and not job.ended:
                    job.emit(
                        "metric",
                        events_pb2.MetricEvent(
                            name="cost.budget.remaining", value=float(remaining), unit=unit
                        ),
                    )
                job = job.parent

    async def report_cost(self, amount: float, currency: str, name: str = "cost.inference") -> None:
        await self.metric(name, amount, currency)

    # -- authority ---------------------------------------------------------

    def authorize(self, namespace: str, resource: str) -> str:
        """Check one operation against the lease before it runs (§9.3, §9.5, §9.6).

        Agents call this before any filesystem or network access they perform
        themselves (``fs.read``, ``fs.write``, ``net.fetch``) and then use the
        canonical resource it returns; tool, model and delegation helpers call
        it for them. Raises PermissionDenied when the lease does not cover it.
        """
        job = self._job
        if job.lease_expired():
            error = LeaseExpired(
                f"the lease expired at {job.lease_expires_at}",
                details={"namespace": namespace},
            )
            job.expire(error)
            raise error
        exhausted = job.exhausted_budget()
        if exhausted is not None:
            raise BudgetExhausted(
                f"the {exhausted} budget is exhausted", details={"currency": exhausted}
            )
        # The canonical form is what the caller must act on: it is what was checked.
        return job.authorize_lease(namespace, resource)

    async def call_tool(self, tool: str, args: Any = None) -> Any:
        """Run a registered tool under `tool.call` (§9.3); emits tool_call and tool_result."""
        self._calls += 1
        call_id = f"call_{self._calls}"
        call = events_pb2.ToolCallEvent(tool=tool, call_id=call_id)
        json_format.ParseDict(args, call.args)
        await self._emit("tool_call", call)
        try:
            self.authorize("tool.call", tool)
            result = await self._job.tool(tool)(args)
        except ARCPError as error:
            await self._emit(
                "tool_result", events_pb2.ToolResultEvent(call_id=call_id, error=error.to_proto())
            )
            raise
        body = events_pb2.ToolResultEvent(call_id=call_id)
        json_format.ParseDict(result, body.result)
        await self._emit("tool_result", body)
        return result

    async def call_model(self, model: str, request: Any = None) -> Any:
        """Run a registered model under `model.use` (§9.7); a lease without
        `model.use` grants no model."""
        self.authorize("model.use", model)
        return await self._job.model(model)(request)

    async def rotate_credential(self, credential_id: str) -> lease_pb2.Credential:
        """Re-issue a credential; emits `status` `credential_rotated` (§9.8.2)."""
        return await self._job.rotate_credential(credential_id)

    # -- delegation ----------------------------------------------------------

    async def delegate(
        self,
        agent: str,
        input_value: Any = None,
        *,
        lease_request: Mapping[str, Sequence[str]] | None = None,
        expires_at: str | None = None,
        max_runtime_sec: int | None = None,
    ) -> ChildJob:
        """Start a sub-agent with a subset of this job's lease (§9.4, §10)."""
        name = agent.split("@", 1)[0]
        self.authorize("agent.delegate", name)
        child = await self._job.delegate(
            ChildRequest(agent, input_value, lease_request, expires_at, max_runtime_sec)
        )
        return ChildJob(child)

    # -- results -------------------------------------------------------------

    def open_result(self, encoding: str = "utf8") -> ResultStream:
        """Stream the job's result as `result_chunk` events (§8.4). Once opened, the
        job's result is this stream: the agent must return None."""
        if self._job.streamed is not None:
            raise InvalidRequest("the result stream is already open")
        if encoding not in ("utf8", "base64"):
            raise InvalidRequest("result encoding must be utf8 or base64 (§8.4)")
        self._job.streamed = jobs_pb2.StreamedResult(result_id=new_id("res"))
        stream = ResultStream(self, encoding)
        self._job.result_stream = stream
        return stream

    async def _emit(self, kind: str, body: Any) -> None:
        self._job.emit(kind, body)  # an ended job refuses (InvalidRequest)
        await self._job.backpressure()


class ResultStream:
    """An open streamed result. `write` sends one chunk; `write_all` splits data into
    chunks of the configured size; `close` sends the final chunk (``more: false``)."""

    def __init__(self, ctx: JobContext, encoding: str) -> None:
        self._ctx = ctx
        self._encoding = (
            events_pb2.CHUNK_ENCODING_UTF8
            if encoding == "utf8"
            else events_pb2.CHUNK_ENCODING_BASE64
        )
        self._pending: bytes | None = None
        self._next = 0
        self.closed = False

    async def write(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        job = self._ctx._job
        limits = job.limits
        assert job.streamed is not None
        if self.closed:
            raise InvalidRequest("the result stream is closed")
        if len(raw) > limits.max_chunk_bytes:
            self._fail(f"a result chunk of {len(raw)} bytes exceeds {limits.max_chunk_bytes}")
        if job.streamed.result_size + len(raw) > limits.max_result_bytes:
            self._fail(f"the streamed result exceeds {limits.max_result_bytes} bytes")
        # Hold one chunk back so the last one can carry `more: false` (§8.4).
        if self._pending is not None:
            await self._send(self._pending, more=True)
        self._pending = raw
        job.streamed.result_size += len(raw)

    async def write_all(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        size = self._ctx._job.limits.chunk_bytes
        for start in range(0, len(raw), size):
            await self.write(raw[start : start + size])

    async def close(self) -> None:
        if self.closed:
            return
        await self._send(self._pending or b"", more=False)
        self._pending = None
        self.closed = True

    async def _send(self, raw: bytes, *, more: bool) -> None:
        job = self._ctx._job
        assert job.streamed is not None
        if self._encoding == events_pb2.CHUNK_ENCODING_UTF8:
            try:
                raw.decode()
            except UnicodeDecodeError:
                raise InvalidRequest("utf8 result chunks must be valid UTF-8; use base64") from None
        body = events_pb2.ResultChunkEvent(
            result_id=job.streamed.result_id,
            chunk_seq=self._next,
            data=raw,
            encoding=self._encoding,
            more=more,
        )
        self._next += 1
        await self._ctx._emit("result_chunk", body)

    def _fail(self, message: str) -> None:
        error = InternalError(message)  # §14: exceeding a chunk cap ends the job
        # The stream is dead: no later close() may send a `more: false` chunk that
        # would present a truncated result as complete before the error (§8.4).
        self.closed = True
        self._pending = None
        self._ctx._job.stop(error)
        raise error


class ChildJob:
    """A delegated job (§10). `result()` waits for its end."""

    def __init__(self, job: ChildHandle) -> None:
        self._job = job

    @property
    def job_id(self) -> str:
        return self._job.job_id

    async def result(self) -> Any:
        """The child's inline result; raises the child's error if it failed."""
        outcome = await self._job.wait()
        if outcome.HasField("error"):
            raise ARCPError.from_proto(outcome.error.error)
        result = outcome.result
        if result.HasField("value"):
            return json_format.MessageToDict(result.value)
        return None

    def cancel(self) -> None:
        self._job.stop(Cancelled("cancelled by the parent job"))


def _decimal(value: float) -> Decimal:
    try:
        return Decimal(repr(value))
    except InvalidOperation:
        raise InvalidRequest(f"metric value {value!r} is not a number") from None
