"""The Agents page's numbers: per agent, over a window of its jobs (pure).

From the job summaries of the window (the caller's own, JobService.ListJobs): jobs
per second, the share of finished jobs that failed, and the p50/p95 of how long
finished jobs took, overall and per slice of the window for the page's small charts.
A failure is a job that ended `error` or `timed_out`; a cancel is the submitter's
choice, not the agent's failure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JobSample", "agent_stats"]

_FAILED = frozenset({"error", "timed_out"})


@dataclass(frozen=True, slots=True)
class JobSample:
    """One job of the window: its agent's bare name, status and times (epoch seconds)."""

    agent: str
    status: str
    created_at: float
    completed_at: float | None


@dataclass
class _Tally:
    jobs: int = 0
    failed: int = 0
    durations_ms: list[float] = field(default_factory=list)

    def add(self, job: JobSample) -> None:
        self.jobs += 1
        if job.completed_at is None:
            return
        self.durations_ms.append((job.completed_at - job.created_at) * 1000)
        self.failed += job.status in _FAILED

    def render(self, seconds: float) -> dict[str, Any]:
        finished = len(self.durations_ms)
        ordered = sorted(self.durations_ms)
        return {
            "jobs": self.jobs,
            "finished": finished,
            "failed": self.failed,
            "jobs_per_sec": self.jobs / seconds,
            "failure_rate": self.failed / finished if finished else None,
            "p50_ms": _percentile(ordered, 50),
            "p95_ms": _percentile(ordered, 95),
        }


def _percentile(ordered: list[float], rank: int) -> float | None:
    """The nearest-rank percentile of sorted values; None for none."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


def agent_stats(
    agents: Iterable[str],
    jobs: Iterable[JobSample],
    *,
    now: float,
    window_sec: float,
    slices: int,
) -> list[dict[str, Any]]:
    """One entry per agent name (`agents` first, in order, then any other seen), with
    the window's totals and `slices` equal slices of it, oldest first."""
    start = now - window_sec
    width = window_sec / slices
    totals: dict[str, _Tally] = {name: _Tally() for name in agents}
    sliced: dict[str, list[_Tally]] = {name: [_Tally() for _ in range(slices)] for name in totals}
    for job in jobs:
        if job.created_at < start:
            continue
        if job.agent not in totals:
            totals[job.agent] = _Tally()
            sliced[job.agent] = [_Tally() for _ in range(slices)]
        totals[job.agent].add(job)
        index = min(slices - 1, int((job.created_at - start) // width))
        sliced[job.agent][index].add(job)
    return [
        {
            "agent": name,
            **tally.render(window_sec),
            "slices": [part.render(width) for part in sliced[name]],
        }
        for name, tally in totals.items()
    ]
