"""Agents a remote worker hosts in the tests: plain `arcp_grpc.agents` code, unchanged.

`arcp-grpc worker --agents tests.arcp_grpc.worker.agents:registry` loads them from the
repository root, as a user's module would be loaded."""

from __future__ import annotations

import asyncio
from typing import Any

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext

__all__ = ["registry"]

registry = AgentRegistry()


@registry.agent("remote-echo", version="1.0.0")
async def echo(ctx: JobContext, input_value: Any) -> Any:
    """Logs, reports progress, and returns its input with where it ran."""
    await ctx.log("echoing from a worker")
    await ctx.progress(1, 1, units="steps")
    return {"echo": input_value, "trace": len(ctx.trace_id)}


@registry.agent("remote-tools")
async def tools(ctx: JobContext, input_value: Any) -> Any:
    """Calls each tool named in the input; returns what each call gave or its error."""
    outcomes: dict[str, Any] = {}
    for name in input_value["tools"]:
        try:
            outcomes[name] = await ctx.call_tool(name, {"q": name})
        except Exception as error:
            outcomes[name] = getattr(error, "code", type(error).__name__)
    return outcomes


@registry.agent("remote-spender")
async def spender(ctx: JobContext, input_value: Any) -> Any:
    """Reports cost until the core ends the job."""
    for _ in range(1000):
        await ctx.report_cost(float(input_value["cost"]), "USD")
        await asyncio.sleep(0.01)
    return {"never": "stopped"}


@registry.agent("remote-idle")
async def idle(ctx: JobContext, input_value: Any) -> Any:
    """Says it started, then waits until the core ends it."""
    await ctx.status("idling")
    await asyncio.Event().wait()
    return None


@registry.agent("remote-stream")
async def stream(ctx: JobContext, input_value: Any) -> Any:
    """Streams its result in chunks (§8.4)."""
    result = ctx.open_result()
    for part in input_value["parts"]:
        await result.write(part)
    return None


async def _lookup(args: Any) -> Any:
    return {"found": args["q"]}


registry.register_tool("lookup", _lookup)
registry.register_tool("forbidden", _lookup)
