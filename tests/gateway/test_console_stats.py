"""The Agents page's numbers (`gateway._console_stats`), pure: rates over the window,
failures among finished jobs only, nearest-rank percentiles, slices oldest first."""

from __future__ import annotations

from gateway._console_stats import JobSample, agent_stats

NOW = 10_000.0


def _job(agent: str, age: float, ran: float | None, status: str = "success") -> JobSample:
    created = NOW - age
    return JobSample(agent, status, created, None if ran is None else created + ran)


def test_rates_failures_and_percentiles() -> None:
    jobs = [_job("echo", 100 + n, (n + 1) / 100) for n in range(20)]  # 10 ms .. 200 ms
    jobs += [
        _job("echo", 50, 1.0, "error"),
        _job("echo", 40, 1.0, "timed_out"),
        _job("echo", 30, 0.5, "cancelled"),  # the submitter's choice, not a failure
        _job("echo", 20, None, "running"),  # not finished: counted, not timed
        _job("echo", 4000, 0.1),  # older than the window
        _job("other", 10, 0.2),  # an agent no longer registered still shows
    ]
    stats = {
        s["agent"]: s
        for s in agent_stats(["echo", "idle"], jobs, now=NOW, window_sec=3600, slices=12)
    }
    echo = stats["echo"]
    assert echo["jobs"] == 24
    assert echo["finished"] == 23
    assert echo["failed"] == 2
    assert echo["failure_rate"] == 2 / 23
    assert echo["jobs_per_sec"] == 24 / 3600
    assert round(echo["p50_ms"]) == 120  # 12th of 23 sorted durations
    assert round(echo["p95_ms"]) == 1000
    assert [s["jobs"] for s in echo["slices"]] == [0] * 11 + [24]
    assert stats["idle"] == {**stats["idle"], "jobs": 0, "p50_ms": None, "failure_rate": None}
    assert stats["other"]["jobs"] == 1
    assert list(stats) == ["echo", "idle", "other"]
