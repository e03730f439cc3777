"""Queries and control over jobs: get, list, watch, cancel, and what the sessions and
the follow loop read (§6.6, §7.4, §8.3).

Who may see or cancel which job is decided by `arcp_grpc.runtime.access` (another
principal's job is "not found", §6.6), what a caller sees of it by its `Disclosure`
(`arcp_grpc.runtime.disclosure`, §7.6, §14). Memory answers first (running and
recently finished jobs), the store after; with a cluster, an unfinished job absent
from memory runs on another node, and a cancel for it becomes a durable request its
owner acts on (§7.4).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

from arcp_grpc.auth import Principal
from arcp_grpc.errors import Cancelled, InvalidRequest, JobNotFound
from arcp_grpc.runtime.access import authorize_cancel, authorize_observe
from arcp_grpc.runtime.disclosure import Disclosure
from arcp_grpc.runtime.events import JobEvents
from arcp_grpc.runtime.feed import FeedBatch, JobFeed, follow
from arcp_grpc.runtime.job import ActiveJob
from arcp_grpc.runtime.outcome import status
from arcp_grpc.runtime.parts import RuntimeParts
from arcp_grpc.store import EventRow, JobChanges, JobQuery, JobRow
from arcp_grpc.v1 import jobs_pb2, lease_pb2

__all__ = ["JobQueries", "job_query"]

_MAX_JOB_ID = 128
_LIVE = frozenset({jobs_pb2.JOB_STATUS_PENDING, jobs_pb2.JOB_STATUS_RUNNING})
#: An `access` function: returns, or raises the answer for (caller, job id, owner).
_Check = Callable[[str, str, str | None], None]
_LIST_READS = 5  # store pages read at most to fill one page filtered on live statuses


class JobQueries:
    """Answers about jobs, from memory or the store; the `EventHistory` of `follow`."""

    def __init__(self, parts: RuntimeParts, events: JobEvents) -> None:
        self._parts = parts
        self._events = events

    async def cancel(self, principal: Principal, job_id: str, reason: str) -> None:
        """Cancel a job of `principal` (§7.4; `access.authorize_cancel`)."""
        known = self._parts.table.known(job_id)
        if known is not None:
            authorize_cancel(principal.name, job_id, known.principal.name)
            if job_id in self._parts.table.active:
                known.stop(Cancelled(reason or "cancelled by the submitter"))
                return
            final = known.status
        else:
            row = await self._checked_row(authorize_cancel, principal.name, job_id)
            if row.completed_at is None and self._parts.cluster is not None:
                # Running on another node: a durable request its owner acts on.
                if await self._parts.cluster.request_cancel(job_id, reason):
                    return
                row = await self._checked_row(authorize_cancel, principal.name, job_id)  # ended
            final = status(row.status)
        if final == jobs_pb2.JOB_STATUS_CANCELLED:
            return  # CancelJob is idempotent
        # `final_status` lets a client answer every ended job alike (the CLI does).
        name = jobs_pb2.JobStatus.Name(final).removeprefix("JOB_STATUS_").lower()
        raise InvalidRequest(
            f"job {job_id} already ended ({name})",
            details={"job_id": job_id, "final_status": name},
        )

    async def get(
        self, shown: Disclosure, job_id: str
    ) -> tuple[jobs_pb2.JobSummary, jobs_pb2.JobOutcome | None]:
        """A job `shown.principal` may see (§6.6), as it may see it (`Disclosure`)."""
        job = self._parts.table.known(job_id)
        if job is not None:
            authorize_observe(shown.principal, job_id, job.principal.name)
            return self._shown_job(shown, job), job.outcome
        row = await self._checked_row(authorize_observe, shown.principal, job_id)
        summary = self._summary_of(shown, row)
        if row.completed_at is None:
            summary.last_event_seq = await self._parts.store.last_seq(job_id)
        outcome = jobs_pb2.JobOutcome.FromString(row.outcome) if row.outcome else None
        return summary, outcome

    async def list_jobs(
        self, shown: Disclosure, query: JobQuery
    ) -> tuple[list[jobs_pb2.JobSummary], str]:
        """`shown.principal`'s own jobs, newest first (§6.6; the store keeps to
        `query.principal`, see `job_query`), as it may see them (`Disclosure`, §14).

        The store records unfinished jobs as pending; whether one is running is known
        here. So a filter on pending or running asks the store for unfinished jobs and
        keeps those whose live status matches, reading on (a few pages at most) to
        fill the page.
        """
        wanted = set(query.statuses)
        live = wanted & _LIVE
        if live:
            stored = tuple(sorted((wanted - _LIVE) | {jobs_pb2.JOB_STATUS_PENDING}))
            query = replace(query, statuses=stored)
        summaries: list[jobs_pb2.JobSummary] = []
        for _ in range(_LIST_READS):
            page = await self._parts.store.list_jobs(query)
            for row in page.jobs:
                job = self._parts.table.known(row.job_id)
                summary = self._shown_job(shown, job) if job else self._summary_of(shown, row)
                if not wanted or summary.status in wanted:
                    summary.ClearField("input")  # GetJob's alone (`Disclosure`)
                    summaries.append(summary)
            if not live or not page.next_cursor or len(summaries) >= query.limit:
                break
            query = replace(query, cursor=page.next_cursor, limit=query.limit - len(summaries))
        return summaries, page.next_cursor

    async def watch(
        self, principal: Principal, job_id: str, after_seq: int
    ) -> AsyncIterator[FeedBatch]:
        """Events after `after_seq`, then the outcome (WatchJob, subscriptions), of a
        job `principal` may see (§6.6). Which events go out is the caller's
        `Disclosure.events` or `JobDelivery`'s: this is the job's log as stored."""
        job = self._parts.table.known(job_id)
        if job is not None:
            authorize_observe(principal.name, job_id, job.principal.name)
        else:
            await self._checked_row(authorize_observe, principal.name, job_id)
        async for batch in follow(self, job_id, after_seq):
            yield batch

    async def owner(self, job_id: str) -> str | None:
        """The principal that submitted `job_id`, or None if there is no such job."""
        job = self._parts.table.known(job_id)
        if job is not None:
            return job.principal.name
        if len(job_id) > _MAX_JOB_ID:
            return None
        row = await self._parts.store.get_job(job_id) if job_id else None
        return row.principal if row is not None else None

    async def trace_id(self, job_id: str) -> str:
        """A job's trace id (§11), from memory when the job is there."""
        job = self._parts.table.known(job_id)
        if job is not None:
            return job.trace_id
        row = await self._parts.store.get_job(job_id)
        return row.trace_id if row is not None else ""

    def live_feed(self, job_id: str) -> tuple[JobFeed, str] | None:
        """The feed and trace id of a running job that has committed no event yet, so a
        follower listening from now on misses nothing; None otherwise (then `watch`)."""
        job = self._parts.table.active.get(job_id)
        if job is None or job.feed.committed_seq:
            return None
        return job.feed, job.trace_id

    async def committed_seq(self, job_id: str) -> int:
        """The highest `job_seq` a follower can see now."""
        job = self._parts.table.known(job_id)
        if job is not None:
            return job.feed.committed_seq
        row = await self._parts.store.get_job(job_id)
        if row is None:
            return 0
        if row.completed_at is not None:
            return row.last_seq
        return await self._parts.store.last_seq(job_id)

    def agents(self) -> list[jobs_pb2.AgentInfo]:
        return self._parts.inventory()

    async def _checked_row(self, check: _Check, caller: str, job_id: str) -> JobRow:
        """The stored job, once `check` (an `access` function) let `caller` have it."""
        if len(job_id) > _MAX_JOB_ID:
            raise JobNotFound("no job has an id that long")  # never echo oversized input
        row = await self._parts.store.get_job(job_id) if job_id else None
        check(caller, job_id, row.principal if row is not None else None)
        assert row is not None, "an access check refuses a job that does not exist"
        return row

    @staticmethod
    def _shown_job(shown: Disclosure, job: ActiveJob) -> jobs_pb2.JobSummary:
        return shown.summary(
            job.view(), job.principal.name, running=not job.ended, credentials=job.credentials
        )

    def _summary_of(self, shown: Disclosure, row: JobRow) -> jobs_pb2.JobSummary:
        summary = jobs_pb2.JobSummary.FromString(row.summary)
        summary.status = status(row.status)
        if row.completed_at is None and self._parts.cluster is not None:
            summary.status = jobs_pb2.JOB_STATUS_RUNNING  # on another node (it starts at once)
        summary.last_event_seq = row.last_seq
        running = row.completed_at is None
        credentials: Sequence[lease_pb2.Credential] = ()
        if running:  # an ended job's values are revoked: never read
            accepted = jobs_pb2.JobAccepted.FromString(
                self._parts.box.open_any(row.accepted, row.job_id.encode())
            )
            credentials = accepted.credentials
        return shown.summary(summary, row.principal, running=running, credentials=credentials)

    # -- EventHistory (for `follow`) ---------------------------------------------

    async def read(self, job_id: str, after_seq: int, limit: int) -> list[EventRow]:
        return await self._parts.store.read_events(job_id, after_seq, limit)

    async def outcome(self, job_id: str) -> bytes | None:
        row = await self._parts.store.get_job(job_id)
        return row.outcome if row is not None else None

    def feed(self, job_id: str) -> JobFeed | None:
        job = self._parts.table.known(job_id)
        return job.feed if job is not None else None

    def changes(self, job_id: str) -> JobChanges | None:
        return self._parts.cluster.changes(job_id) if self._parts.cluster is not None else None

    def plain(self, row: EventRow) -> bytes:
        return self._events.plain(row)


def job_query(
    principal: Principal, where: jobs_pb2.ListJobsFilter, limit: int, cursor: str
) -> JobQuery:
    """A listing request from the contract's filter (§6.6); `limit` 0 means 100."""
    if limit > 1000:
        raise InvalidRequest("a page holds at most 1000 jobs", details={"field": "limit"})
    created_after = (
        where.created_after.ToNanoseconds() / 1e9 if where.HasField("created_after") else None
    )
    return JobQuery(
        principal=principal.name,
        statuses=tuple(where.status),
        agent=where.agent,
        created_after=created_after,
        limit=limit or 100,
        cursor=cursor,
    )
