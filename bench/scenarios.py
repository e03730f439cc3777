"""Scenarios a–g of issue 7 and h–i of issue 14, written once against
``bench.loadgen.base.Driver``.

Each returns the figures of one repetition; ``bench.runner`` repeats them on fresh servers
and takes medians. Warm-up work runs before every clock starts and is never counted. Each
also reports the server's CPU per unit of its work (µs per job, per event, per MiB), read
from ``/proc`` around the timed section only, so a latency or rate always comes with what
it cost the server. h (``runjob``) and i (``streamed``) use calls only JobService has; j
(``client``, `bench.client_overhead`) compares `arcp_grpc.client` with the raw stubs; k
(``workers``, `bench.remote_worker`) a remote worker's echo with the in-process one.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from bench.client_overhead import CLIENT_METRICS, client_overhead
from bench.loadgen.base import Conn, Driver, JobApiConn, ProtocolViolation
from bench.procs import rss_mib
from bench.remote_worker import WORKER_METRICS, remote_worker
from bench.scale import Scale

__all__ = [
    "JOB_API_SCENARIOS",
    "LOWER_IS_BETTER",
    "SCENARIOS",
    "Figures",
    "ServerCpu",
    "chunked",
    "concurrent",
    "events",
    "handshake",
    "idempotent",
    "rss_rounds",
    "run_job",
    "sequential",
    "streamed",
]

Figures = dict[str, float]
#: Reads the server's CPU seconds so far (``bench.procs.cpu_seconds`` of its pid).
ServerCpu = Callable[[], float]
Scenario = Callable[[Driver, Scale, ServerCpu], Awaitable[Figures]]

#: Server CPU per unit of work, µs: one per scenario (``*_cpu_us``).
CPU_METRICS = frozenset(
    {
        "handshake_cpu_us",
        "seq_cpu_us",
        "conc_cpu_us",
        "idem_cpu_us",
        "events_cpu_us",
        "chunk_cpu_us",
        "run_cpu_us",
        "streamed_cpu_us",
    }
)

#: Metrics where a smaller number is better (latencies, memory, CPU); all others are rates.
LOWER_IS_BETTER = frozenset(
    {
        "handshake_ms",
        "accepted_ms",
        "result_ms",
        "first_submit_ms",
        "replay_ms",
        "rss_last_mib",
        "run_accepted_ms",
        "run_result_ms",
        *CLIENT_METRICS,
        *WORKER_METRICS,
        *CPU_METRICS,
    }
)

_WARMUP_JOBS = 20


def _ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e3


def _per_unit_us(cpu: ServerCpu, since: float, units: float) -> float:
    """Server CPU µs per unit of work since the reading ``since``. /proc counts in clock
    ticks (10 ms), so the timed sections are long enough for a tick to be a small error."""
    return (cpu() - since) / units * 1e6


async def handshake(driver: Driver, scale: Scale, cpu: ServerCpu) -> Figures:
    """a. Median time to open a session: connect + ``session.hello`` → ``session.welcome``."""
    latencies = []
    since = cpu()
    for _ in range(scale.handshakes):
        start = time.perf_counter()
        conn = await driver.connect()
        latencies.append(time.perf_counter() - start)
        await conn.close()
    return {
        "handshake_ms": _ms(latencies),
        "handshake_cpu_us": _per_unit_us(cpu, since, scale.handshakes),
    }


async def _one_at_a_time(
    run: Callable[[], Awaitable[tuple[float, float]]], scale: Scale, cpu: ServerCpu
) -> tuple[list[float], list[float], float, float]:
    """Warm up, then `scale.sequential_jobs` jobs one after another: each one's seconds to
    acceptance and to its result, the wall time, and the server's CPU µs per job."""
    for _ in range(_WARMUP_JOBS):
        await run()
    accepted, result = [], []
    since = cpu()
    start = time.perf_counter()
    for _ in range(scale.sequential_jobs):
        to_accept, to_result = await run()
        accepted.append(to_accept)
        result.append(to_result)
    elapsed = time.perf_counter() - start
    return accepted, result, elapsed, _per_unit_us(cpu, since, scale.sequential_jobs)


async def sequential(driver: Driver, scale: Scale, cpu: ServerCpu) -> Figures:
    """b. One session, one echo job at a time: submit→accepted, submit→result, jobs/s."""
    conn = await driver.connect()
    try:
        accepted, result, elapsed, cpu_us = await _one_at_a_time(conn.run_echo, scale, cpu)
    finally:
        await conn.close()
    return {
        "accepted_ms": _ms(accepted),
        "result_ms": _ms(result),
        "seq_jobs_per_s": scale.sequential_jobs / elapsed,
        "seq_cpu_us": cpu_us,
    }


async def _echo_loop(conn: Conn, jobs: int) -> None:
    for _ in range(jobs):
        await conn.run_echo()


async def _concurrent_jobs(
    driver: Driver, sessions: int, jobs_per_session: int, cpu: ServerCpu | None = None
) -> tuple[float, float]:
    """Run ``sessions`` closed-loop sessions concurrently; return elapsed seconds and the
    server CPU seconds they took (0 without ``cpu``)."""
    conns = [await driver.connect() for _ in range(sessions)]
    try:
        await asyncio.gather(*(_echo_loop(conn, 3) for conn in conns))
        since = cpu() if cpu else 0.0
        start = time.perf_counter()
        await asyncio.gather(*(_echo_loop(conn, jobs_per_session) for conn in conns))
        return time.perf_counter() - start, (cpu() - since if cpu else 0.0)
    finally:
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)


async def concurrent(driver: Driver, scale: Scale, cpu: ServerCpu) -> Figures:
    """c. ``sessions`` sessions, each submitting echo jobs back to back: total jobs/s."""
    jobs = scale.sessions * scale.jobs_per_session
    elapsed, used = await _concurrent_jobs(driver, scale.sessions, scale.jobs_per_session, cpu)
    return {"conc_jobs_per_s": jobs / elapsed, "conc_cpu_us": used / jobs * 1e6}


async def idempotent(driver: Driver, scale: Scale, cpu: ServerCpu) -> Figures:
    """d. First keyed submit vs. its replay once the job finished (§7.2): submit→accepted.
    The CPU figure is per pair: the first submit with its job run, plus the replay."""
    conn = await driver.connect()
    prefix = uuid.uuid4().hex[:12]
    try:
        for i in range(_WARMUP_JOBS):
            await conn.submit_keyed(f"warm-{prefix}-{i}", wait_result=True)
        first, replay = [], []
        since = cpu()
        for i in range(scale.idempotent_pairs):
            key = f"bench-{prefix}-{i}"
            first.append(await conn.submit_keyed(key, wait_result=True))
            replay.append(await conn.submit_keyed(key, wait_result=False))
        cpu_us = _per_unit_us(cpu, since, scale.idempotent_pairs)
    finally:
        await conn.close()
    first_ms, replay_ms = _ms(first), _ms(replay)
    return {
        "first_submit_ms": first_ms,
        "replay_ms": replay_ms,
        "replay_speedup": first_ms / replay_ms,
        "idem_cpu_us": cpu_us,
    }


async def events(driver: Driver, scale: Scale, cpu: ServerCpu) -> Figures:
    """e. One ``chatty`` job emitting ``scale.events`` log events: events/s submit→result."""
    conn = await driver.connect()
    try:
        await conn.run_chatty(100)
        since = cpu()
        elapsed, received = await conn.run_chatty(scale.events)
        cpu_us = _per_unit_us(cpu, since, scale.events)
    finally:
        await conn.close()
    if received != scale.events:
        raise ProtocolViolation(f"received {received} of {scale.events} events")
    return {"events_per_s": scale.events / elapsed, "events_cpu_us": cpu_us}


async def chunked(driver: Driver, scale: Scale, cpu: ServerCpu) -> Figures:
    """f. One ``report`` job streaming ``scale.chunk_bytes`` as result chunks: MB/s."""
    conn = await driver.connect()
    try:
        await conn.run_report(64 * 1024)
        since = cpu()
        elapsed, received = await conn.run_report(scale.chunk_bytes)
        cpu_us = _per_unit_us(cpu, since, scale.chunk_bytes / 2**20)
    finally:
        await conn.close()
    if received != scale.chunk_bytes:
        raise ProtocolViolation(f"received {received} of {scale.chunk_bytes} bytes")
    return {"chunk_mb_per_s": scale.chunk_bytes / 2**20 / elapsed, "chunk_cpu_us": cpu_us}


async def _job_api(driver: Driver) -> JobApiConn:
    conn = await driver.connect()
    if not isinstance(conn, JobApiConn):
        await conn.close()
        raise ProtocolViolation("this client has no JobService-only calls")
    return conn


async def run_job(driver: Driver, scale: Scale, cpu: ServerCpu) -> Figures:
    """h. One channel, one echo job at a time through ``RunJob``: submit→accepted (the
    first message) and submit→result in one call, jobs/s (JobService only)."""
    conn = await _job_api(driver)
    try:
        accepted, result, elapsed, cpu_us = await _one_at_a_time(conn.run_job_echo, scale, cpu)
    finally:
        await conn.close()
    return {
        "run_accepted_ms": _ms(accepted),
        "run_result_ms": _ms(result),
        "run_jobs_per_s": scale.sequential_jobs / elapsed,
        "run_cpu_us": cpu_us,
    }


async def streamed(driver: Driver, scale: Scale, cpu: ServerCpu) -> Figures:
    """i. ``sessions × jobs_per_session`` echo jobs (as many as scenario c) submitted over
    one ``SubmitJobs`` stream: jobs/s until every one is accepted, and until every one has
    also finished; the CPU figure covers both (JobService only)."""
    jobs = scale.sessions * scale.jobs_per_session
    conn = await _job_api(driver)
    try:
        await conn.submit_stream(_WARMUP_JOBS)
        await conn.wait_idle()
        since = cpu()
        start = time.perf_counter()
        accepted = await conn.submit_stream(jobs)
        await conn.wait_idle()
        finished = time.perf_counter() - start
        cpu_us = _per_unit_us(cpu, since, jobs)
    finally:
        await conn.close()
    return {
        "streamed_jobs_per_s": jobs / accepted,
        "streamed_done_jobs_per_s": jobs / finished,
        "streamed_cpu_us": cpu_us,
    }


async def rss_rounds(driver: Driver, scale: Scale, pid: int) -> Figures:
    """g. Server RSS after each of ``scale.rss_rounds`` identical rounds: flat or growing?

    A round is ``rss_jobs_per_round`` echo jobs over 4 sessions, one chatty job and one
    streamed result of ``rss_report_bytes_per_round`` (what a large result leaves behind
    counts too); RSS is read from ``/proc/<pid>/status`` after each round settles.
    """
    figures: Figures = {"rss_start_mib": rss_mib(pid)}
    sessions = 4
    for round_no in range(1, scale.rss_rounds + 1):
        await _concurrent_jobs(driver, sessions, scale.rss_jobs_per_round // sessions)
        conn = await driver.connect()
        try:
            await conn.run_chatty(scale.rss_events_per_round)
            await conn.run_report(scale.rss_report_bytes_per_round)
        finally:
            await conn.close()
        await asyncio.sleep(0.3)
        figures[f"rss_r{round_no}_mib"] = rss_mib(pid)
    last = figures[f"rss_r{scale.rss_rounds}_mib"]
    figures["rss_last_mib"] = last
    figures["rss_growth_pct"] = (last / figures["rss_r1_mib"] - 1) * 100
    return figures


#: Scenarios a–f and h–i by their ``--only`` name; ``rss`` (g) needs the server pid, see the
#: runner.
SCENARIOS: dict[str, Scenario] = {
    "handshake": handshake,
    "sequential": sequential,
    "concurrent": concurrent,
    "idempotent": idempotent,
    "events": events,
    "chunked": chunked,
    "runjob": run_job,
    "streamed": streamed,
    "client": client_overhead,
    "workers": remote_worker,
}

#: Scenarios that only a JobService column can run (``Column.job_api``).
JOB_API_SCENARIOS = frozenset({"runjob", "streamed", "client", "workers"})
