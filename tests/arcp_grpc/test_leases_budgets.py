"""Leases (§9), budgets (§9.6) and delegation (§9.4, §10) as a client sees them
through JobService: every authority-bearing operation is checked before it
runs, and each failure carries its exact code, final status and `retryable`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf import json_format

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.errors import ARCPError
from arcp_grpc.v1 import job_service_pb2 as pb
from arcp_grpc.v1 import jobs_pb2
from tests.conftest import (
    CoreFactory,
    Watched,
    arcp_error,
    bearer,
    error_code,
    new_stub,
    submit_request,
    watch_all,
)

if TYPE_CHECKING:
    from arcp_grpc.v1.job_service_pb2_grpc import JobServiceAsyncStub as Stub

_MAX_LOOPS = 2000  # every agent loop is bounded; the test's safety net is far shorter


async def _search(args: Any) -> Any:
    return {"query": args.get("query", "") if isinstance(args, dict) else ""}


async def _model(request: Any) -> Any:
    return {"echo": request}


def _registry() -> AgentRegistry:
    registry = AgentRegistry()
    # `search` and `tier-fast/echo` come with the demo agents.
    registry.register_tool("admin", _search)
    registry.register_model("tier-slow/big", _model)

    @registry.agent("probe")
    async def probe(ctx: JobContext, input_value: Any) -> Any:
        """Try each [namespace, resource]; report "ok" or the error code."""
        results = []
        for namespace, resource in input_value["checks"]:
            try:
                ctx.authorize(namespace, resource)
                results.append("ok")
            except ARCPError as error:
                results.append(error.code)
        return {"results": results}

    @registry.agent("intruder")
    async def intruder(ctx: JobContext, input_value: Any) -> Any:
        """Lets a denial propagate: the job fails with it."""
        ctx.authorize("fs.read", input_value["path"])
        return {"read": input_value["path"]}

    @registry.agent("tools")
    async def tools(ctx: JobContext, input_value: Any) -> Any:
        outcomes = []
        for tool in input_value["tools"]:
            try:
                await ctx.call_tool(tool, {"query": "q"})
                outcomes.append("ok")
            except ARCPError as error:
                outcomes.append(error.code)
        return {"tools": outcomes}

    @registry.agent("models")
    async def models(ctx: JobContext, input_value: Any) -> Any:
        outcomes = []
        for model in input_value["models"]:
            try:
                await ctx.call_model(model, "hi")
                outcomes.append("ok")
            except ARCPError as error:
                outcomes.append(error.code)
        return {"models": outcomes}

    @registry.agent("until-expired")
    async def until_expired(ctx: JobContext, input_value: Any) -> Any:
        """Calls a tool until the lease expires; the LEASE_EXPIRED propagates."""
        for _ in range(_MAX_LOOPS):
            await ctx.call_tool("search", {"query": "tick"})
            await asyncio.sleep(0.02)
        return {"never": "expired"}

    @registry.agent("idle")
    async def idle(ctx: JobContext, input_value: Any) -> Any:
        await ctx.status("idling")
        await asyncio.Event().wait()
        return None

    @registry.agent("burner")
    async def burner(ctx: JobContext, input_value: Any) -> Any:
        """Spends until the budget is gone; BUDGET_EXHAUSTED propagates."""
        cost = float(input_value.get("cost", 0.25)) if isinstance(input_value, dict) else 0.25
        for _ in range(_MAX_LOOPS):
            await ctx.call_tool("search", {"query": "spend"})
            await ctx.report_cost(cost, "USD")
        return {"never": "exhausted"}

    @registry.agent("negative")
    async def negative(ctx: JobContext, input_value: Any) -> Any:
        await ctx.report_cost(-0.5, "USD")
        return None

    @registry.agent("parent")
    async def parent(ctx: JobContext, input_value: Any) -> Any:
        """Delegates per input; reports what happened to the child and to itself."""
        await ctx.report_cost(float(input_value.get("spend_first", 0)), "USD")
        try:
            child = await ctx.delegate(
                input_value["child"],
                input_value.get("child_input"),
                lease_request=input_value.get("lease"),
                expires_at=input_value.get("expires_at"),
            )
        except ARCPError as error:
            return {"delegate": error.code}
        try:
            child_result = await child.result()
            child_outcome: Any = {"result": child_result}
        except ARCPError as error:
            child_outcome = {"error": error.code, "retryable": error.retryable}
        try:
            await ctx.call_tool("search", {"query": "after child"})
            after = "ok"
        except ARCPError as error:
            after = error.code
        remaining = ctx.budget_remaining("USD")
        return {
            "child_job_id": child.job_id,
            "child": child_outcome,
            "parent_after": after,
            "parent_remaining": None if remaining is None else str(remaining),
        }

    @registry.agent("trace-child")
    async def trace_child(ctx: JobContext, input_value: Any) -> Any:
        return {"trace_id": ctx.trace_id}

    @registry.agent("starver")
    async def starver(ctx: JobContext, input_value: Any) -> Any:
        """Starts a child that keeps spending in small steps, then drains the
        parent's own budget: the child must be stopped too."""
        child = await ctx.delegate("burner", {"cost": 0.01}, lease_request=None)
        await ctx.report_cost(10.0, "USD")
        try:
            await child.result()
        except ARCPError as error:
            return {"child_job_id": child.job_id, "child": error.code}
        return {"child_job_id": child.job_id, "child": "finished"}

    return registry


@pytest.fixture
async def stub(make_core: CoreFactory) -> AsyncIterator[Stub]:
    core = await make_core(agents=_registry())
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        yield new_stub(channel)


async def _run(stub: Stub, agent: str, input_value: Any, **kwargs: Any) -> Watched:
    accepted = (
        await stub.SubmitJob(submit_request(agent, input_value, **kwargs), metadata=bearer())
    ).accepted
    watched = await watch_all(stub, accepted.job_id)
    assert watched.outcome is not None
    return watched


def _value(watched: Watched) -> Any:
    assert watched.outcome is not None
    assert watched.outcome.WhichOneof("outcome") == "result", watched.outcome
    return json_format.MessageToDict(watched.outcome.result.value)


# -- lease patterns ---------------------------------------------------------


async def test_path_escapes_are_denied(stub: Stub) -> None:
    """§9.3: `..`, `//` and percent-encoded dots cannot climb out of a grant."""
    checks = [
        ["fs.read", "/data/reports/q1.txt"],
        ["fs.read", "/data/../etc/passwd"],
        ["fs.read", "/data/reports/../../etc/passwd"],
        ["fs.read", "/data/%2e%2e/etc/passwd"],
        ["fs.read", "/data/%2E%2E/etc/passwd"],
        ["fs.read", "/data/%252e%252e/etc/passwd"],
        ["fs.read", "/data//../etc/passwd"],
        ["fs.read", "/etc/passwd"],
        ["fs.write", "/data/reports/q1.txt"],
        ["net.fetch", "https://api.example.com/v1/items"],
        ["net.fetch", "https://api.example.com/v1/../admin"],
        ["net.fetch", "https://api.example.com/v1/%2e%2e/admin"],
        ["net.fetch", "https://evil.example.com/v1/items"],
    ]
    lease = {"fs.read": ["/data/**"], "net.fetch": ["https://api.example.com/v1/**"]}
    results = _value(await _run(stub, "probe", {"checks": checks}, lease=lease))["results"]
    denied = "PERMISSION_DENIED"
    assert results == ["ok", *[denied] * 7, denied, "ok", denied, denied, denied]


async def test_a_propagated_denial_fails_the_job_with_permission_denied(stub: Stub) -> None:
    watched = await _run(
        stub, "intruder", {"path": "/data/%2e%2e/secrets"}, lease={"fs.read": ["/data/**"]}
    )
    assert watched.outcome is not None
    error = watched.outcome.error
    assert error.final_status == jobs_pb2.JOB_STATUS_ERROR
    assert error_code(error) == "PERMISSION_DENIED"


async def test_tool_calls_outside_the_lease_are_denied_before_running(stub: Stub) -> None:
    """§9.3: the tool_call is reported, the tool does not run, tool_result carries the error."""
    watched = await _run(
        stub,
        "tools",
        {"tools": ["search", "admin", "../admin", "search/../admin"]},
        lease={"tool.call": ["search"]},
    )
    assert _value(watched)["tools"] == [
        "ok",
        "PERMISSION_DENIED",
        "PERMISSION_DENIED",
        "PERMISSION_DENIED",
    ]
    results = watched.of("tool_result")
    assert results[0].tool_result.WhichOneof("outcome") == "result"
    for denied in results[1:]:
        assert denied.tool_result.WhichOneof("outcome") == "error"
        assert denied.tool_result.error.code == arcp_code("PERMISSION_DENIED")


async def test_model_use_is_enforced(stub: Stub) -> None:
    """§9.7: only granted models; no `model.use` grant means no model."""
    granted = await _run(
        stub,
        "models",
        {"models": ["tier-fast/echo", "tier-slow/big"]},
        lease={"model.use": ["tier-fast/*"]},
    )
    assert _value(granted)["models"] == ["ok", "PERMISSION_DENIED"]
    none = await _run(stub, "models", {"models": ["tier-fast/echo"]})
    assert _value(none)["models"] == ["PERMISSION_DENIED"]


@pytest.mark.parametrize(
    "lease",
    [{"fs.read": ["relative/path"]}, {"cost.budget": ["USD:-1"]}, {"fs.read": "not-a-list"}],
    ids=["relative-path", "negative-budget", "bad-pattern"],
)
async def test_lease_grammar_is_validated_at_submit(stub: Stub, lease: Any) -> None:
    request = submit_request("probe", {"checks": []})
    if isinstance(next(iter(lease.values())), str):
        request.submit.lease_request.capabilities["fs.read"].patterns.append("/a/***/b")
    else:
        for namespace, patterns in lease.items():
            request.submit.lease_request.capabilities[namespace].patterns.extend(patterns)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitJob(request, metadata=bearer())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert arcp_error(caught.value).code == "INVALID_REQUEST"
    assert list((await stub.ListJobs(pb.ListJobsRequest(), metadata=bearer())).jobs) == []


# -- expiry -----------------------------------------------------------------


async def test_expires_at_in_the_past_is_invalid_request(stub: Stub) -> None:
    """§9.5: `expires_at` must be in the future at submit."""
    past = datetime.now(UTC) - timedelta(seconds=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitJob(
            submit_request("probe", {"checks": []}, expires_at=past), metadata=bearer()
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = arcp_error(caught.value)
    assert error.code == "INVALID_REQUEST"
    assert error.details.get("field") == "lease_constraints.expires_at"
    assert list((await stub.ListJobs(pb.ListJobsRequest(), metadata=bearer())).jobs) == []


@pytest.mark.parametrize(
    "stamp",
    ["2099-01-01T00:00:00+02:00", "2099-01-01T00:00:00", "2000-01-01T00:00:00Z"],
    ids=["offset", "naive", "past"],
)
async def test_delegated_expires_at_must_be_future_utc(stub: Stub, stamp: str) -> None:
    """§9.5: a non-UTC or naive `expires_at` is refused as INVALID_REQUEST."""
    watched = await _run(
        stub,
        "parent",
        {"child": "trace-child", "expires_at": stamp},
        lease={"agent.delegate": ["trace-child"]},
    )
    assert _value(watched) == {"delegate": "INVALID_REQUEST"}


async def test_lease_expiry_during_execution(stub: Stub) -> None:
    """§9.5: the operation after expiry fails LEASE_EXPIRED (tool_result), then the job
    ends with job.error LEASE_EXPIRED, final status error, retryable false."""
    expires = datetime.now(UTC) + timedelta(seconds=1)
    watched = await _run(
        stub, "until-expired", None, lease={"tool.call": ["search"]}, expires_at=expires
    )
    results = watched.of("tool_result")
    assert all(r.tool_result.WhichOneof("outcome") == "result" for r in results[:-1])
    last = results[-1].tool_result
    assert last.WhichOneof("outcome") == "error"
    assert last.error.code == arcp_code("LEASE_EXPIRED")
    assert last.error.retryable is False
    assert watched.outcome is not None
    error = watched.outcome.error
    assert error.final_status == jobs_pb2.JOB_STATUS_ERROR
    assert error_code(error) == "LEASE_EXPIRED"
    assert error.error.retryable is False


async def test_an_idle_job_is_ended_when_its_lease_expires(make_core: CoreFactory) -> None:
    """§9.5: expiry is enforced even if the agent never touches its authority."""
    from arcp_grpc.runtime import RuntimeLimits

    core = await make_core(agents=_registry(), limits=RuntimeLimits(lease_grace_sec=0.1))
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        expires = datetime.now(UTC) + timedelta(seconds=1)
        watched = await _run(stub, "idle", None, expires_at=expires)
        assert watched.outcome is not None
        assert error_code(watched.outcome.error) == "LEASE_EXPIRED"
        assert watched.outcome.error.final_status == jobs_pb2.JOB_STATUS_ERROR
        assert watched.outcome.error.error.retryable is False


# -- budgets ----------------------------------------------------------------


async def test_budget_exhaustion_reported_as_tool_result(stub: Stub) -> None:
    """§9.6: cost metrics decrement the counter, `cost.budget.remaining` follows each,
    and the call at zero fails BUDGET_EXHAUSTED, retryable false."""
    watched = await _run(
        stub,
        "spender",
        {"cost_per_call": 0.25, "max_calls": 10},
        lease={"cost.budget": ["USD:1.00"], "tool.call": ["search"]},
    )
    assert _value(watched) == {"calls": 4}
    remaining = [
        (m.metric.value, m.metric.unit)
        for m in watched.of("metric")
        if m.metric.name == "cost.budget.remaining"
    ]
    assert remaining == [(0.75, "USD"), (0.5, "USD"), (0.25, "USD"), (0.0, "USD")]
    kinds = [k for k in watched.kinds() if k != "log"]
    # tool_call, tool_result, cost metric, remaining metric — four times, then the refusal
    assert kinds == ["tool_call", "tool_result", "metric", "metric"] * 4 + [
        "tool_call",
        "tool_result",
    ]
    refusal = watched.of("tool_result")[-1].tool_result
    assert refusal.error.code == arcp_code("BUDGET_EXHAUSTED")
    assert refusal.error.retryable is False


async def test_budget_exhaustion_propagated_fails_the_job(stub: Stub) -> None:
    watched = await _run(
        stub, "burner", {"cost": 0.5}, lease={"cost.budget": ["USD:1.00"], "tool.call": ["search"]}
    )
    assert watched.outcome is not None
    error = watched.outcome.error
    assert error.final_status == jobs_pb2.JOB_STATUS_ERROR
    assert error_code(error) == "BUDGET_EXHAUSTED"
    assert error.error.retryable is False
    assert watched.of("tool_result")[-1].tool_result.error.code == arcp_code("BUDGET_EXHAUSTED")


async def test_negative_cost_is_rejected(stub: Stub) -> None:
    """§9.6: a negative cost would refill the budget; it is refused."""
    accepted = (
        await stub.SubmitJob(
            submit_request("negative", lease={"cost.budget": ["USD:1.00"]}), metadata=bearer()
        )
    ).accepted
    watched = await watch_all(stub, accepted.job_id)
    assert watched.outcome is not None
    assert error_code(watched.outcome.error) == "INVALID_REQUEST"
    assert not any(m.metric.name.startswith("cost.") for m in watched.of("metric"))
    summary = await stub.GetJob(pb.GetJobRequest(job_id=accepted.job_id), metadata=bearer())
    assert dict(summary.job.budget) == {"USD": "1.00"}


# -- delegation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("child_lease", "expires_at"),
    [
        ({"fs.read": ["/etc/**"]}, None),
        ({"fs.read": ["/data/**"], "fs.write": ["/data/**"]}, None),
        ({"cost.budget": ["USD:5.00"]}, None),
        ({"cost.budget": ["EUR:1.00"]}, None),
        (None, "2099-01-01T00:00:00Z"),
    ],
    ids=["wider-path", "new-namespace", "bigger-budget", "new-currency", "later-expiry"],
)
async def test_child_lease_must_be_a_subset(
    stub: Stub, child_lease: Any, expires_at: str | None
) -> None:
    """§9.4: anything wider than the parent is LEASE_SUBSET_VIOLATION, and no child starts."""
    parent_lease = {
        "fs.read": ["/data/**"],
        "cost.budget": ["USD:1.00"],
        "agent.delegate": ["trace-child"],
    }
    watched = await _run(
        stub,
        "parent",
        {"child": "trace-child", "lease": child_lease, "expires_at": expires_at},
        lease=parent_lease,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    assert _value(watched) == {"delegate": "LEASE_SUBSET_VIOLATION"}
    assert watched.of("delegate") == []
    jobs = (await stub.ListJobs(pb.ListJobsRequest(), metadata=bearer())).jobs
    assert len(jobs) == 1


async def test_delegation_needs_agent_delegate(stub: Stub) -> None:
    watched = await _run(stub, "parent", {"child": "trace-child"}, lease={"fs.read": ["/data/**"]})
    assert _value(watched) == {"delegate": "PERMISSION_DENIED"}


async def test_child_inherits_the_trace_id(stub: Stub) -> None:
    """§11: the child continues the parent's trace."""
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    watched = await _run(
        stub,
        "parent",
        {"child": "trace-child", "lease": {"fs.read": ["/data/a/**"]}},
        lease={"agent.delegate": ["trace-child"], "fs.read": ["/data/**"]},
        trace_id=trace,
    )
    value = _value(watched)
    assert value["child"] == {"result": {"trace_id": trace}}
    child = await stub.GetJob(pb.GetJobRequest(job_id=value["child_job_id"]), metadata=bearer())
    assert child.job.trace_id == trace
    assert child.job.parent_job_id == watched.events[0].job_id
    assert dict(child.job.lease.capabilities)["fs.read"].patterns == ["/data/a/**"]
    (delegate,) = watched.of("delegate")
    assert delegate.delegate.child_job_id == value["child_job_id"]
    assert delegate.delegate.agent == "trace-child@1.0.0"


async def test_a_delegated_child_over_budget_is_stopped(stub: Stub) -> None:
    """§9.6: the child's spend counts against the parent; at zero both are stopped."""
    watched = await _run(
        stub,
        "parent",
        {"child": "burner", "spend_first": 0.25, "child_input": {"cost": 0.25}, "lease": None},
        lease={
            "cost.budget": ["USD:1.00"],
            "tool.call": ["search"],
            "agent.delegate": ["burner"],
        },
    )
    value = _value(watched)
    assert value["child"] == {"error": "BUDGET_EXHAUSTED", "retryable": False}
    assert value["parent_after"] == "BUDGET_EXHAUSTED"
    assert value["parent_remaining"] in ("0", "0.00")
    child = await watch_all(stub, value["child_job_id"])
    assert child.outcome is not None
    assert error_code(child.outcome.error) == "BUDGET_EXHAUSTED"
    assert child.outcome.error.final_status == jobs_pb2.JOB_STATUS_ERROR
    child_costs = [m for m in child.of("metric") if m.metric.name == "cost.inference"]
    assert len(child_costs) == 3  # 0.75 left after the parent's 0.25
    # The parent saw its own counter fall with each of the child's costs.
    parent_remaining = [
        m.metric.value for m in watched.of("metric") if m.metric.name == "cost.budget.remaining"
    ]
    assert parent_remaining == [0.75, 0.5, 0.25, 0.0]


async def test_a_child_is_stopped_when_the_parent_runs_dry(stub: Stub) -> None:
    """An ancestor at zero blocks every descendant, whatever the child's own counter."""
    watched = await _run(
        stub,
        "starver",
        None,
        lease={
            "cost.budget": ["USD:1.00"],
            "tool.call": ["search"],
            "agent.delegate": ["burner"],
        },
    )
    value = _value(watched)
    assert value["child"] == "BUDGET_EXHAUSTED"
    child = await watch_all(stub, value["child_job_id"])
    spent = [m for m in child.of("metric") if m.metric.name == "cost.inference"]
    # Its own counter (1.00 at 0.01 a call) would have allowed 100 calls.
    assert len(spent) < 100
    assert child.of("tool_result")[-1].tool_result.error.code == arcp_code("BUDGET_EXHAUSTED")


def arcp_code(name: str) -> int:
    from arcp_grpc.v1 import errors_pb2

    return errors_pb2.ErrorCode.Value(f"ERROR_CODE_{name}")


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(10**12, 0), (4102444800, -5)], ids=["out-of-range", "negative-nanos"]
)
async def test_an_impossible_expires_at_is_invalid_request(
    stub: Stub, seconds: int, nanos: int
) -> None:
    """Bad input is the client's error, never an INTERNAL fault of the runtime."""
    request = submit_request("probe", {"checks": []})
    request.submit.lease_constraints.expires_at.seconds = seconds
    request.submit.lease_constraints.expires_at.nanos = nanos
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitJob(request, metadata=bearer())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert arcp_error(caught.value).code == "INVALID_REQUEST"
