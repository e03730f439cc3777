"""The jobs this node holds in memory: the running ones, and a few recently finished.

A running job is here from the moment its row is about to commit (followers may
attach at once) until its end is recorded. The recently finished small jobs are
kept so the follower that typically arrives right after the end (WatchJob after
SubmitJob, a session's pump) needs no store read; they are bounded in count and
per-job size, since finished jobs live in the store. The table also counts the
jobs admitted and not yet ended per principal (children count as their root's
principal's): what `[limits]` caps (§14).
"""

from __future__ import annotations

from collections import OrderedDict

from arcp_grpc.runtime.job import ActiveJob

__all__ = ["JobTable"]

_RECENT_MAX_EVENTS = 64  # only jobs this small are remembered after their end
_RECENT_MAX_BYTES = 64 * 1024  # events and outcome together (a big result is the store's)


class JobTable:
    """Running jobs by id, recently finished ones, and running counts per principal."""

    def __init__(self, recent_jobs: int) -> None:
        self.active: dict[str, ActiveJob] = {}
        self.recent: OrderedDict[str, ActiveJob] = OrderedDict()
        self._recent_jobs = recent_jobs
        self._running: dict[str, int] = {}
        self.running_total = 0

    def running(self, principal: str) -> int:
        """Jobs of `principal` admitted and not yet ended."""
        return self._running.get(principal, 0)

    def count(self, job: ActiveJob, delta: int) -> None:
        name = job.principal.name
        running = self._running.get(name, 0) + delta
        if running:
            self._running[name] = running
        else:
            del self._running[name]
        self.running_total += delta

    def known(self, job_id: str) -> ActiveJob | None:
        """A running or recently finished job held in memory."""
        return self.active.get(job_id) or self.recent.get(job_id)

    def remember(self, job: ActiveJob) -> None:
        """Keep a job that just ended, if it is small, for the followers that come next."""
        if (
            job.last_seq > _RECENT_MAX_EVENTS
            or job.feed.held_bytes > _RECENT_MAX_BYTES
            or self._recent_jobs <= 0
        ):
            return
        job.task = None  # keep the state followers read, drop what ran it
        job.children = []
        job.parent = None
        job.result_stream = None
        self.recent[job.job_id] = job
        while len(self.recent) > self._recent_jobs:
            self.recent.popitem(last=False)

    def forget_recent(self, finished_before: float) -> None:
        """Drop remembered jobs the purge may have deleted, so none outlives its row
        in memory; `recent` is in order of finishing, so the old ones are in front."""
        for job_id, job in list(self.recent.items()):
            if job.final is not None and job.final.completed_at.ToSeconds() >= finished_before:
                return
            del self.recent[job_id]
