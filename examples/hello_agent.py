"""A complete in-process agent: register it, start the core, submit over gRPC,
watch the job to its result. Run it with ``python examples/hello_agent.py``.

This file is included verbatim in ``docs/agents.md``; a test runs it.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.errors import PermissionDenied
from arcp_grpc.server import CoreConfig, start_core
from arcp_grpc.v1 import job_service_pb2, job_service_pb2_grpc, jobs_pb2

__all__ = ["main", "registry", "run"]

registry = AgentRegistry()


async def shout(args: Any) -> Any:
    """A tool: agents reach it only through `ctx.call_tool`, under `tool.call`."""
    return {"text": str(args["text"]).upper()}


registry.register_tool("shout", shout)


@registry.agent("hello", version="1.0.0", default=True)
async def hello(ctx: JobContext, input_value: Any) -> Any:
    """Greets someone, using a tool and reporting what it costs."""
    name = input_value.get("name", "world")
    await ctx.log(f"greeting {name}")
    await ctx.progress(1, total=2, units="steps")
    loud = await ctx.call_tool("shout", {"text": f"hello, {name}"})
    await ctx.report_cost(0.01, "USD")  # decrements the job's USD budget
    try:
        ctx.authorize("fs.read", "/etc/passwd")  # not in the lease: refused
    except PermissionDenied:
        await ctx.log("the lease does not cover /etc/passwd", level="warn")
    await ctx.progress(2, total=2, units="steps")
    return {"greeting": loud["text"], "agent": ctx.agent}


async def run(data_dir: Path) -> dict[str, Any]:
    """Start a core with `registry`, run one job, return what the client saw."""
    config = CoreConfig(data_dir=data_dir, tokens={"dev-token": "me"}, demo_agents=False)
    core = await start_core(config, agents=registry)
    try:
        async with grpc.aio.insecure_channel(core.grpc_address) as channel:
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            metadata = (("authorization", "Bearer dev-token"),)
            submit = jobs_pb2.JobSubmit(agent="hello", idempotency_key="hello-1")
            submit.input.struct_value.update({"name": "ada"})
            submit.lease_request.capabilities["tool.call"].patterns.append("shout")
            submit.lease_request.capabilities["cost.budget"].patterns.append("USD:1.00")
            response = await stub.SubmitJob(
                job_service_pb2.SubmitJobRequest(submit=submit), metadata=metadata
            )
            job_id = response.accepted.job_id
            kinds: list[str] = []
            result: Any = None
            watch = job_service_pb2.WatchJobRequest(job_id=job_id, after_seq=0)
            async for frame in stub.WatchJob(watch, metadata=metadata):
                kinds.extend(str(event.WhichOneof("body")) for event in frame.events)
                if frame.HasField("outcome"):
                    result = json_format.MessageToDict(frame.outcome.result.value)
            return {"agent": response.accepted.agent, "events": kinds, "result": result}
    finally:
        await core.stop()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(await run(Path(tmp)), indent=2))


if __name__ == "__main__":
    asyncio.run(main())
