"""Scenario k (issue 23): what a remote worker costs over an in-process agent.

The same echo agent (`arcp_grpc.demo_agents.echo`) runs in the core (`echo`) and in an
`arcp-grpc worker` child connected to the same core (`remote-echo`, `bench.worker_agents`).
Jobs go one at a time through RunJob (submit → result), in blocks that alternate
(in-process, remote, remote, in-process, ...) so both sides see the same server state and
machine load in the same run. Figures per side: RunJob p50, jobs/s (jobs ÷ the wall time
of that side's blocks), the core's CPU per job, and for the remote side the worker's CPU
per job; the ratios remote ÷ in-process (1.0: no overhead).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from arcp_grpc.v1 import job_service_pb2, job_service_pb2_grpc
from bench.loadgen.base import ECHO_INPUT, Driver, ProtocolViolation
from bench.loadgen.grpc_direct import GrpcDriver, submit_request
from bench.procs import cpu_seconds
from bench.scale import Scale
from bench.servers._common import BENCH_WORKER_TOKEN

__all__ = ["WORKER_METRICS", "remote_worker"]

#: Latencies, CPU per job and ratios (lower is better); `*_jobs_per_s` are rates.
WORKER_METRICS = frozenset(
    {
        "inproc_run_ms",
        "remote_run_ms",
        "remote_run_ratio",
        "inproc_core_cpu_us",
        "remote_core_cpu_us",
        "remote_worker_cpu_us",
        "remote_core_cpu_ratio",
    }
)

_BLOCK = 25  # jobs per block; blocks alternate between the sides
_WARMUP = 20
_READY_S = 30.0
Figures = dict[str, float]


async def remote_worker(driver: Driver, scale: Scale, cpu: Callable[[], float]) -> Figures:
    """k. See the module docstring; `scale.sequential_jobs` jobs per side."""
    if not isinstance(driver, GrpcDriver):
        raise ProtocolViolation("the workers scenario needs the JobService column")
    worker = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("arcp-grpc")),
        *("worker", "--core", driver.address, "--token", BENCH_WORKER_TOKEN),
        *("--agents", "bench.worker_agents:registry", "--slots", "1"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    metadata = (("authorization", f"Bearer {driver.token}"),)
    try:
        async with grpc.aio.insecure_channel(driver.address) as channel:
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            await asyncio.wait_for(_hosted(stub, metadata), _READY_S)
            requests = {
                side: job_service_pb2.RunJobRequest(submit=submit_request(agent, ECHO_INPUT).submit)
                for side, agent in (("inproc", "echo"), ("remote", "remote-echo"))
            }

            async def run(side: str) -> float:
                start = time.perf_counter()
                async for message in stub.RunJob(requests[side], metadata=metadata):
                    if message.HasField("outcome") and not message.outcome.HasField("result"):
                        raise ProtocolViolation(f"a {side} echo job failed: {message.outcome}")
                return time.perf_counter() - start

            for _ in range(_WARMUP):
                for side in requests:
                    await run(side)
            latencies: dict[str, list[float]] = {"inproc": [], "remote": []}
            wall = {"inproc": 0.0, "remote": 0.0}
            core = {"inproc": 0.0, "remote": 0.0}
            worker_cpu = 0.0
            for block in range(max(1, scale.sequential_jobs // _BLOCK)):
                order = ("inproc", "remote") if block % 2 == 0 else ("remote", "inproc")
                for side in order:
                    core_before, worker_before = cpu(), cpu_seconds(worker.pid)
                    started = time.perf_counter()
                    latencies[side].extend([await run(side) for _ in range(_BLOCK)])
                    wall[side] += time.perf_counter() - started
                    core[side] += cpu() - core_before
                    if side == "remote":
                        worker_cpu += cpu_seconds(worker.pid) - worker_before
    finally:
        worker.kill()
        await worker.wait()
    jobs = len(latencies["inproc"])
    p50 = {side: statistics.median(values) * 1000 for side, values in latencies.items()}
    per_s = {side: jobs / wall[side] for side in wall}
    cpu_us = {side: core[side] / jobs * 1e6 for side in core}
    return {
        "inproc_run_ms": p50["inproc"],
        "remote_run_ms": p50["remote"],
        "remote_run_ratio": p50["remote"] / p50["inproc"],
        "inproc_jobs_per_s": per_s["inproc"],
        "remote_jobs_per_s": per_s["remote"],
        "remote_jobs_ratio": per_s["remote"] / per_s["inproc"],
        "inproc_core_cpu_us": cpu_us["inproc"],
        "remote_core_cpu_us": cpu_us["remote"],
        "remote_worker_cpu_us": worker_cpu / jobs * 1e6,
        "remote_core_cpu_ratio": cpu_us["remote"] / max(cpu_us["inproc"], 1e-9),
    }


async def _hosted(
    stub: job_service_pb2_grpc.JobServiceAsyncStub, metadata: tuple[tuple[str, str]]
) -> None:
    """Until the core lists the worker's agent (the worker registered)."""
    while True:
        reply = await stub.ListAgents(job_service_pb2.ListAgentsRequest(), metadata=metadata)
        if any(agent.name == "remote-echo" for agent in reply.agents):
            return
        await asyncio.sleep(0.05)
