"""Remote workers: run agents written against `arcp_grpc.agents` / `arcp_grpc.context`,
unchanged, outside the core (issue 23, docs/workers.md).

    registry = AgentRegistry()

    @registry.agent("echo")
    async def echo(ctx: JobContext, input: Any) -> Any:
        return input

    await run_worker(["core-a:7400", "core-b:7400"], token=WORKER_TOKEN, registry=registry)

The core keeps the job's authority (lease, budget, expiry, credentials) and answers
every authority-bearing step; `arcp-grpc worker` is this library's command.
A client-side package: it speaks only the wire (`arcp.v1.WorkerService`).
"""

from __future__ import annotations

from arcp_grpc.worker.host import RemoteChild, RemoteHost
from arcp_grpc.worker.runner import LIBRARY, WorkerRefused, run_worker
from arcp_grpc.worker.stream import WORK_METHOD, WorkerStream

__all__ = [
    "LIBRARY",
    "WORK_METHOD",
    "RemoteChild",
    "RemoteHost",
    "WorkerRefused",
    "WorkerStream",
    "run_worker",
]
