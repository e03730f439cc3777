"""Demo agents that show the protocol's features; `serve` registers them by default.

| agent | what it shows |
| --- | --- |
| `echo@1.0.0` | the smallest job: returns its input |
| `counter@1.0.0` | `progress` events (§8.2.1); input `{"steps": n, "interval": s}` |
| `chatty@1.0.0` | many `log` events; input `{"events": n}` |
| `report@1.0.0` | a streamed result (§8.4); input `{"bytes": n}` or `{"sections": n}` |
| `spender@1.0.0` | budgets (§9.6): calls the `search` tool and reports cost until exhausted |
| `greeter@1.0.0`, `greeter@2.0.0` | agent versions (§7.5); 2.0.0 is the default |
| `delegator@1.0.0` | delegation (§10): runs `echo` as a child with a subset lease |

Tools: `search` (returns canned results). Models: `tier-fast/echo`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.errors import BudgetExhausted, InvalidRequest

__all__ = ["demo_registry"]

_MAX_STEPS = 100_000
_MAX_EVENTS = 1_000_000
_MAX_REPORT = 256 * 1024 * 1024
_REPORT_PIECE = 3 * 1024 * 1024  # 16 chunks of 192 KiB, 49,152 lines of 64 bytes


def _int(input_value: Any, key: str, default: int, upper: int) -> int:
    value = input_value.get(key, default) if isinstance(input_value, dict) else default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= upper:
        raise InvalidRequest(f"input.{key} must be an integer between 0 and {upper}")
    return value


def _float(input_value: Any, key: str, default: float, upper: float) -> float:
    value = input_value.get(key, default) if isinstance(input_value, dict) else default
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= upper:
        raise InvalidRequest(f"input.{key} must be a number between 0 and {upper}")
    return float(value)


async def echo(ctx: JobContext, input_value: Any) -> Any:
    return input_value


async def counter(ctx: JobContext, input_value: Any) -> Any:
    steps = _int(input_value, "steps", 10, _MAX_STEPS)
    interval = _float(input_value, "interval", 0.1, 60.0)
    await ctx.log(f"counting to {steps}")
    for step in range(1, steps + 1):
        await asyncio.sleep(interval)
        await ctx.progress(step, total=steps, units="steps", message=f"step {step} of {steps}")
    return {"count": steps}


async def chatty(ctx: JobContext, input_value: Any) -> Any:
    events = _int(input_value, "events", 100, _MAX_EVENTS)
    for index in range(events):
        await ctx.log(f"event {index}")
    return {"events": events}


async def report(ctx: JobContext, input_value: Any) -> Any:
    size = _int(input_value, "bytes", 0, _MAX_REPORT)
    sections = _int(input_value, "sections", 0 if size else 5, 10_000)
    stream = ctx.open_result("utf8")
    if size:
        line = ("arcp report line " * 4)[:63] + "\n"
        # Written a piece at a time, so a large report is never whole in memory. A piece
        # is whole lines and whole default chunks: the stream is what one write would be.
        block = line * (_REPORT_PIECE // len(line))
        for start in range(0, size, _REPORT_PIECE):
            await stream.write_all(block[: min(_REPORT_PIECE, size - start)])
    for index in range(sections):
        await stream.write(f"## Section {index + 1}\n\nFindings for section {index + 1}.\n\n")
    await stream.close()
    return None


async def spender(ctx: JobContext, input_value: Any) -> Any:
    cost = _float(input_value, "cost_per_call", 0.25, 1_000_000.0)
    calls = _int(input_value, "max_calls", 100, 10_000)
    done = 0
    for query in range(calls):
        try:
            await ctx.call_tool("search", {"query": f"q{query}"})
        except BudgetExhausted:
            await ctx.log("budget exhausted; returning partial results", level="warn")
            break
        await ctx.report_cost(cost, "USD")
        done += 1
    return {"calls": done}


async def greeter_v1(ctx: JobContext, input_value: Any) -> Any:
    name = input_value.get("name", "world") if isinstance(input_value, dict) else "world"
    return {"greeting": f"hello, {name}", "version": "1.0.0"}


async def greeter_v2(ctx: JobContext, input_value: Any) -> Any:
    name = input_value.get("name", "world") if isinstance(input_value, dict) else "world"
    await ctx.thought(f"greeting {name} politely")
    return {"greeting": f"Hello, {name}!", "version": "2.0.0"}


async def delegator(ctx: JobContext, input_value: Any) -> Any:
    child = await ctx.delegate("echo", input_value, lease_request=None)
    return {"child_job_id": child.job_id, "child_result": await child.result()}


async def _search(args: Any) -> Any:
    query = args.get("query", "") if isinstance(args, dict) else ""
    return {"query": query, "results": [f"result for {query}"]}


async def _echo_model(request: Any) -> Any:
    return {"model": "tier-fast/echo", "output": request}


def demo_registry() -> AgentRegistry:
    """A fresh registry holding every demo agent, tool and model."""
    registry = AgentRegistry()
    registry.register("echo", "1.0.0", echo)
    registry.register("counter", "1.0.0", counter)
    registry.register("chatty", "1.0.0", chatty)
    registry.register("report", "1.0.0", report)
    registry.register("spender", "1.0.0", spender)
    registry.register("greeter", "1.0.0", greeter_v1)
    registry.register("greeter", "2.0.0", greeter_v2, default=True)
    registry.register("delegator", "1.0.0", delegator)
    registry.register_tool("search", _search)
    registry.register_model("tier-fast/echo", _echo_model)
    return registry
