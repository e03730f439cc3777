"""A Python client for backends: `Client`, asyncio-native and typed, over the core's
gRPC JobService (docs/client.md).

.. code-block:: python

    from arcp_grpc.client import Client

    async with await Client.connect("127.0.0.1:7400", token="tok-alice") as client:
        outcome = await client.run("greeter", {"name": "Ada"})
        print(outcome.result)

Values come back as plain Python data with their protobuf message in ``proto``; failures
are raised as the runtime's own exceptions (`arcp_grpc.errors`), with `Unavailable` for a
core that could not be reached.
"""

from __future__ import annotations

from arcp_grpc.client.batch import Submitted
from arcp_grpc.client.client import RECONNECT, Client, SubmitOptions
from arcp_grpc.client.failures import RetryPolicy, Unavailable
from arcp_grpc.client.following import Run, Watch
from arcp_grpc.client.values import (
    Agent,
    Event,
    Job,
    JobInfo,
    Outcome,
    Submission,
    Worker,
    plain,
)

__all__ = [
    "RECONNECT",
    "Agent",
    "Client",
    "Event",
    "Job",
    "JobInfo",
    "Outcome",
    "RetryPolicy",
    "Run",
    "Submission",
    "SubmitOptions",
    "Submitted",
    "Unavailable",
    "Watch",
    "Worker",
    "plain",
]
