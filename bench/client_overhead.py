"""Scenario j (issue 25): what `arcp_grpc.client` adds over the raw generated stubs.

The same echo jobs, one at a time on one core, go through raw ``grpc.aio`` stubs and
through `Client`, alternately (raw, client, client, raw, ...) so that both see the same
server state, cache and machine load in the same run: SubmitJob p50 and RunJob
submit→result p50 of each, and the ratios client ÷ raw (1.0: no overhead). Requests for
the raw side are built before the clock starts, as the other JobService scenarios do; the
client builds its own from arguments, which is part of what it costs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import grpc

from arcp_grpc.client import Client
from arcp_grpc.v1 import job_service_pb2, job_service_pb2_grpc, jobs_pb2
from bench.loadgen.base import ECHO_INPUT, Driver, ProtocolViolation
from bench.loadgen.grpc_direct import GrpcDriver, submit_request
from bench.scale import Scale

__all__ = ["CLIENT_METRICS", "client_overhead"]

#: Latencies (lower is better) and their ratios (lower is better: 1.0 = as fast as raw).
CLIENT_METRICS = frozenset(
    {
        "raw_submit_ms",
        "client_submit_ms",
        "client_submit_ratio",
        "raw_run_ms",
        "client_run_ms",
        "client_run_ratio",
    }
)

_WARMUP = 20
Figures = dict[str, float]


async def client_overhead(driver: Driver, scale: Scale, cpu: Callable[[], float]) -> Figures:
    """j. See the module docstring; `scale.sequential_jobs` jobs per side and call. No
    server CPU figure: both sides cost the server the same, by construction."""
    if not isinstance(driver, GrpcDriver):
        raise ProtocolViolation("the client scenario needs the JobService column")
    submit = submit_request("echo", ECHO_INPUT)
    run = job_service_pb2.RunJobRequest(submit=submit.submit)
    metadata = (("authorization", f"Bearer {driver.token}"),)
    async with (
        await Client.connect(driver.address, token=driver.token) as client,
        grpc.aio.insecure_channel(driver.address) as channel,
    ):
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        timings: dict[str, list[float]] = {"raw_submit": [], "client_submit": [], "raw_run": [],
                                           "client_run": []}  # fmt: skip

        async def raw_submit() -> None:
            await stub.SubmitJob(submit, metadata=metadata)

        async def client_submit() -> None:
            await client.submit("echo", ECHO_INPUT)

        async def raw_run() -> None:
            async for message in stub.RunJob(run, metadata=metadata):
                if message.HasField("outcome"):
                    _check(message.outcome)

        async def client_run() -> None:
            if not (await client.run("echo", ECHO_INPUT)).ok:
                raise ProtocolViolation("an echo job failed through the client")

        calls = {"raw_submit": raw_submit, "client_submit": client_submit,
                 "raw_run": raw_run, "client_run": client_run}  # fmt: skip
        for _ in range(_WARMUP):
            for call in calls.values():
                await call()
        for i in range(scale.sequential_jobs):
            order = ("raw", "client") if i % 2 == 0 else ("client", "raw")
            for kind in ("submit", "run"):
                for side in order:
                    name = f"{side}_{kind}"
                    start = time.perf_counter()
                    await calls[name]()
                    timings[name].append(time.perf_counter() - start)
    p50 = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    return {
        "raw_submit_ms": p50["raw_submit"],
        "client_submit_ms": p50["client_submit"],
        "client_submit_ratio": p50["client_submit"] / p50["raw_submit"],
        "raw_run_ms": p50["raw_run"],
        "client_run_ms": p50["client_run"],
        "client_run_ratio": p50["client_run"] / p50["raw_run"],
    }


def _check(outcome: jobs_pb2.JobOutcome) -> None:
    if outcome.WhichOneof("outcome") != "result":
        raise ProtocolViolation(f"job ended with {outcome}")
