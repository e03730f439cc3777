"""How much work each scenario does, in the full run and in ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL", "QUICK", "Scale"]


@dataclass(frozen=True)
class Scale:
    """Counts and bounds for one run; every loop in the harness is bounded by these."""

    handshakes: int
    sequential_jobs: int
    sessions: int
    jobs_per_session: int
    idempotent_pairs: int
    events: int
    chunk_bytes: int
    rss_rounds: int
    rss_jobs_per_round: int
    rss_events_per_round: int
    rss_report_bytes_per_round: int
    scenario_timeout_s: float
    run_deadline_s: float


#: The figures issue 7 asks for: 8 sessions × 500 jobs, 20,000 events, 16 MiB, 5 rounds.
FULL = Scale(
    handshakes=100,
    sequential_jobs=1000,
    sessions=8,
    jobs_per_session=500,
    idempotent_pairs=200,
    events=20_000,
    chunk_bytes=16 * 1024 * 1024,
    rss_rounds=5,
    rss_jobs_per_round=1200,
    rss_events_per_round=2000,
    rss_report_bytes_per_round=8 * 1024 * 1024,
    scenario_timeout_s=120.0,
    run_deadline_s=570.0,
)

#: Small enough for a run under a minute on 2 shared cores.
QUICK = Scale(
    handshakes=10,
    sequential_jobs=150,
    sessions=8,
    jobs_per_session=25,
    idempotent_pairs=30,
    events=3000,
    chunk_bytes=2 * 1024 * 1024,
    rss_rounds=5,
    rss_jobs_per_round=100,
    rss_events_per_round=300,
    rss_report_bytes_per_round=1024 * 1024,
    scenario_timeout_s=20.0,
    run_deadline_s=55.0,
)
