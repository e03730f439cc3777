"""Scenarios a–g of issue 7, written once against ``bench.loadgen.base.Driver``.

Each returns the figures of one repetition; ``bench.runner`` repeats them on fresh servers
and takes medians. Warm-up work runs before every clock starts and is never counted.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from bench.loadgen.base import Conn, Driver, ProtocolViolation
from bench.procs import rss_mib
from bench.scale import Scale

__all__ = [
    "LOWER_IS_BETTER",
    "SCENARIOS",
    "Figures",
    "chunked",
    "concurrent",
    "events",
    "handshake",
    "idempotent",
    "rss_rounds",
    "sequential",
]

Figures = dict[str, float]
Scenario = Callable[[Driver, Scale], Awaitable[Figures]]

#: Metrics where a smaller number is better (latencies, memory); all others are rates.
LOWER_IS_BETTER = frozenset(
    {"handshake_ms", "accepted_ms", "result_ms", "first_submit_ms", "replay_ms", "rss_last_mib"}
)

_WARMUP_JOBS = 20


def _ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e3


async def handshake(driver: Driver, scale: Scale) -> Figures:
    """a. Median time to open a session: connect + ``session.hello`` → ``session.welcome``."""
    latencies = []
    for _ in range(scale.handshakes):
        start = time.perf_counter()
        conn = await driver.connect()
        latencies.append(time.perf_counter() - start)
        await conn.close()
    return {"handshake_ms": _ms(latencies)}


async def sequential(driver: Driver, scale: Scale) -> Figures:
    """b. One session, one echo job at a time: submit→accepted, submit→result, jobs/s."""
    conn = await driver.connect()
    try:
        for _ in range(_WARMUP_JOBS):
            await conn.run_echo()
        accepted, result = [], []
        start = time.perf_counter()
        for _ in range(scale.sequential_jobs):
            to_accept, to_result = await conn.run_echo()
            accepted.append(to_accept)
            result.append(to_result)
        elapsed = time.perf_counter() - start
    finally:
        await conn.close()
    return {
        "accepted_ms": _ms(accepted),
        "result_ms": _ms(result),
        "seq_jobs_per_s": scale.sequential_jobs / elapsed,
    }


async def _echo_loop(conn: Conn, jobs: int) -> None:
    for _ in range(jobs):
        await conn.run_echo()


async def _concurrent_jobs(driver: Driver, sessions: int, jobs_per_session: int) -> float:
    """Run ``sessions`` closed-loop sessions concurrently; return elapsed seconds."""
    conns = [await driver.connect() for _ in range(sessions)]
    try:
        await asyncio.gather(*(_echo_loop(conn, 3) for conn in conns))
        start = time.perf_counter()
        await asyncio.gather(*(_echo_loop(conn, jobs_per_session) for conn in conns))
        return time.perf_counter() - start
    finally:
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)


async def concurrent(driver: Driver, scale: Scale) -> Figures:
    """c. ``sessions`` sessions, each submitting echo jobs back to back: total jobs/s."""
    elapsed = await _concurrent_jobs(driver, scale.sessions, scale.jobs_per_session)
    return {"conc_jobs_per_s": scale.sessions * scale.jobs_per_session / elapsed}


async def idempotent(driver: Driver, scale: Scale) -> Figures:
    """d. First keyed submit vs. its replay once the job finished (§7.2): submit→accepted."""
    conn = await driver.connect()
    prefix = uuid.uuid4().hex[:12]
    try:
        for i in range(_WARMUP_JOBS):
            await conn.submit_keyed(f"warm-{prefix}-{i}", wait_result=True)
        first, replay = [], []
        for i in range(scale.idempotent_pairs):
            key = f"bench-{prefix}-{i}"
            first.append(await conn.submit_keyed(key, wait_result=True))
            replay.append(await conn.submit_keyed(key, wait_result=False))
    finally:
        await conn.close()
    first_ms, replay_ms = _ms(first), _ms(replay)
    return {
        "first_submit_ms": first_ms,
        "replay_ms": replay_ms,
        "replay_speedup": first_ms / replay_ms,
    }


async def events(driver: Driver, scale: Scale) -> Figures:
    """e. One ``chatty`` job emitting ``scale.events`` log events: events/s submit→result."""
    conn = await driver.connect()
    try:
        await conn.run_chatty(100)
        elapsed, received = await conn.run_chatty(scale.events)
    finally:
        await conn.close()
    if received != scale.events:
        raise ProtocolViolation(f"received {received} of {scale.events} events")
    return {"events_per_s": scale.events / elapsed}


async def chunked(driver: Driver, scale: Scale) -> Figures:
    """f. One ``report`` job streaming ``scale.chunk_bytes`` as result chunks: MB/s."""
    conn = await driver.connect()
    try:
        await conn.run_report(64 * 1024)
        elapsed, received = await conn.run_report(scale.chunk_bytes)
    finally:
        await conn.close()
    if received != scale.chunk_bytes:
        raise ProtocolViolation(f"received {received} of {scale.chunk_bytes} bytes")
    return {"chunk_mb_per_s": scale.chunk_bytes / 2**20 / elapsed}


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


#: Scenarios a–f by their ``--only`` name; ``rss`` (g) needs the server pid, see the runner.
SCENARIOS: dict[str, Scenario] = {
    "handshake": handshake,
    "sequential": sequential,
    "concurrent": concurrent,
    "idempotent": idempotent,
    "events": events,
    "chunked": chunked,
}
