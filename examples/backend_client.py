"""A backend calling the core with `arcp_grpc.client`: submit, follow, run, list.

Start a core (``arcp-grpc serve``), then run ``python examples/backend_client.py`` from
the same directory (the token is read from ``ARCP_TOKEN``; `serve` prints where its
development token is). ``ARCP_ADDRESS`` names another core. This file is included
verbatim in ``docs/client.md``; a test runs it against a real `serve`.
"""

from __future__ import annotations

import asyncio
import json
import os

from arcp_grpc.client import Client, RetryPolicy, Submission
from arcp_grpc.errors import ARCPError

__all__ = ["main"]


async def main() -> None:
    address = os.environ.get("ARCP_ADDRESS", "127.0.0.1:7400")
    # retry: repeat a retryable failure; every submit then carries an idempotency key,
    # so a repeat is the replay of the first submit, never a second job (§7.2).
    async with await Client.connect(address, retry=RetryPolicy(attempts=3)) as client:
        # Submit, then follow the job's events to its outcome.
        job = await client.submit("counter", {"steps": 3, "interval": 0.01})
        watch = client.watch(job.job_id)
        progress = [event.body["current"] async for event in watch if event.kind == "progress"]
        assert watch.outcome is not None

        # Submit and wait in one call: the outcome holds the agent's JSON.
        greeting = await client.run("greeter", {"name": "backend"})

        # Many at once over one stream, at most 8 unanswered.
        batch = [Submission("echo", {"n": n}) for n in range(5)]
        accepted = [answer.job async for answer in client.submit_many(batch, window=8)]

        # Errors are the runtime's own exceptions, with the ARCP code.
        try:
            await client.get("job_that_does_not_exist")
        except ARCPError as exc:
            missing = exc.code

        print(
            json.dumps(
                {
                    "progress": progress,
                    "counted": watch.outcome.result,
                    "greeting": greeting.result,
                    "batch": sum(job is not None for job in accepted),
                    "missing": missing,
                    "agents": [agent.name for agent in await client.agents()],
                },
                sort_keys=True,
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
