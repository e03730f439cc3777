"""Running a job: the agent's task, its deadline and lease expiry, and its one end.

A job ends exactly once: with the agent's value (or its streamed result, §8.4),
the agent's error, or the reason the runtime recorded when it stopped the job
(cancel §7.4, `max_runtime_sec` §7.3, lease expiry §9.5, shutdown), which wins
over whatever the agent did after. The end is written to the store before
followers hear of it; children are stopped first, and the job's credentials
are revoked after (§9.8.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from arcp_grpc import tracing
from arcp_grpc.base.json_values import FieldError, fill_value
from arcp_grpc.base.logs import bind as bind_log_context
from arcp_grpc.base.stamps import stamp
from arcp_grpc.context import JobContext
from arcp_grpc.errors import ARCPError, Cancelled, InternalError, LeaseExpired, Timeout
from arcp_grpc.runtime.job import ActiveJob
from arcp_grpc.runtime.outcome import failure
from arcp_grpc.runtime.parts import RuntimeParts
from arcp_grpc.v1 import errors_pb2, jobs_pb2

__all__ = ["Executor"]

log = logging.getLogger("arcp_grpc.runtime")


class Executor:
    """Launches jobs, runs their agents and records their ends."""

    def __init__(self, parts: RuntimeParts) -> None:
        self._parts = parts
        # Writes and revocations that outlive the task that started them; `stop` waits.
        self.background: set[asyncio.Task[Any]] = set()

    def launch(self, job: ActiveJob, input_value: Any) -> None:
        self._parts.observer.launched()
        job.task = asyncio.create_task(self._traced(job, input_value), name=f"job {job.job_id}")
        seconds = job.clock.seconds_left(time.monotonic())
        if seconds is not None:
            loop = asyncio.get_running_loop()
            job.expiry_timer = loop.call_later(
                seconds + self._parts.limits.lease_grace_sec, _expire_late, job
            )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _traced(self, job: ActiveJob, input_value: Any) -> None:
        """The job's run span around its run: current in the job's task, so a delegation
        and the child it starts are its descendants (§10, §11); the child of the span
        that launched it (the submit, or the parent's delegation)."""
        with tracing.span("arcp.run") as span:
            span.set("arcp.job_id", job.job_id)
            span.set("arcp.agent", job.agent.ref)
            await self._run(job, input_value)
            _describe_end(span, job)

    async def _run(self, job: ActiveJob, input_value: Any) -> None:
        bind_log_context(job_id=job.job_id, trace_id=job.trace_id)
        ctx = JobContext(job, input_value)
        outcome: jobs_pb2.JobOutcome
        try:
            # Let the acceptance go out first: the submitter's reply was queued just
            # after this task was created and must not wait for the agent's first step.
            await asyncio.sleep(0)
            job.start()  # known in memory only: starting a job costs no write
            async with asyncio.timeout(job.max_runtime_sec) as deadline:
                value = await job.agent.fn(ctx, input_value)
            outcome = await _success(job, value)
        except asyncio.CancelledError:
            if job.stop_error is None:
                job.stop_error = InternalError("the job task was cancelled")
            outcome = failure(job.job_id, job.stop_error)
        except TimeoutError:
            if deadline.expired():
                job.stop_error = job.stop_error or Timeout(
                    f"the job ran longer than max_runtime_sec={job.max_runtime_sec} (§7.3)"
                )
                outcome = failure(job.job_id, job.stop_error)
            else:
                outcome = _agent_failed(job, TimeoutError("timed out"))
        except ARCPError as error:
            outcome = failure(job.job_id, error)
        except Exception as exc:
            outcome = _agent_failed(job, exc)
        if job.stop_error is not None and not outcome.HasField("error"):
            outcome = failure(job.job_id, job.stop_error)  # the runtime's reason wins
        # From here on a stop only records its reason (the outcome is decided), so the
        # terminal write and the revocation run to the end. A cancel requested while
        # the agent was not suspended (a cap error it raised or swallowed, a cancel
        # racing its return) may still be pending on this task: then the write runs
        # in a task of its own, shielded.
        job.decide()
        task = asyncio.current_task()
        if task is None or not task.cancelling():
            await self._finish(job, outcome)
            return
        finishing = asyncio.create_task(self._finish(job, outcome))
        self.background.add(finishing)
        finishing.add_done_callback(self.background.discard)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(finishing)

    async def _finish(self, job: ActiveJob, outcome: jobs_pb2.JobOutcome) -> None:
        summary: jobs_pb2.JobSummary | None = None
        recorded: tuple[jobs_pb2.JobOutcome, bytes] | None = None
        try:
            for child in job.children:
                if child.stop(Cancelled("the parent job ended")):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            child.done.wait(), timeout=self._parts.limits.shutdown_grace_sec
                        )
            summary = _final_summary(job)  # after the children: their ends may add events
            recorded = await self._record(job, outcome, summary)
        finally:
            if summary is None:
                summary = _final_summary(job)
            # Followers hear only an end the store holds. When none could be recorded
            # (the store failed, or this task was cancelled mid-write) they get a
            # retryable INTERNAL_ERROR saying so (§12): what the next start, or a
            # survivor's takeover, records for a job whose end was lost; never the
            # decided outcome the store does not hold, and never silence.
            if recorded is None:
                recorded = _unrecorded(job, summary)
            outcome, outcome_bytes = recorded
            job.end(outcome, outcome_bytes, summary)
            self._parts.observer.finished(summary.status)
            self._parts.table.active.pop(job.job_id, None)
            self._parts.table.count(job, -1)
            self._parts.table.remember(job)
            # On every path, recorded or not: a job that ended holds no live credential
            # (§9.8.2); a failed revocation stays in the ledger for the next sweep.
            if job.credentials:
                assert self._parts.ledger is not None
                self.spawn(self._parts.ledger.revoke_all(job.credentials))

    async def _record(
        self, job: ActiveJob, outcome: jobs_pb2.JobOutcome, summary: jobs_pb2.JobSummary
    ) -> tuple[jobs_pb2.JobOutcome, bytes] | None:
        """Write the job's end; returns the outcome the store now holds, with its bytes
        (another node's, when it took the job over), or None when the store recorded
        none. An end the store refused (not failed) is replaced by a recorded
        INTERNAL_ERROR, so the store and the followers agree."""
        try:
            return await self._write_end(job, outcome, summary)
        except InternalError as failed:  # the store failed: it accepts no more writes
            log.error("the end of job %s could not be recorded: %s", job.job_id, failed)
            return None
        except Exception as refused:  # a value it would not keep, or an unforeseen error
            log.error("the store refused the end of job %s: %s", job.job_id, refused)
        substitute, _ = _unrecorded(job, summary)
        try:
            return await self._write_end(job, substitute, summary)
        except Exception as failed:  # the followers are told in `_finish`
            log.error("the end of job %s could not be recorded: %s", job.job_id, failed)
            return None

    async def _write_end(
        self, job: ActiveJob, outcome: jobs_pb2.JobOutcome, summary: jobs_pb2.JobSummary
    ) -> tuple[jobs_pb2.JobOutcome, bytes]:
        """The end the store holds once this one was offered: this one, or, when the job
        was not this node's to finish (a survivor took it over while this node was paused
        or cut off), the survivor's recorded end, which followers get instead (issue 20)."""
        summary.status = _status(outcome)
        outcome_bytes = outcome.SerializeToString(deterministic=True)
        held = await self._parts.store.finish_job(
            job.job_id,
            status=summary.status,
            outcome=outcome_bytes,
            summary=summary.SerializeToString(deterministic=True),
            completed_at=time.time(),
            last_seq=job.last_seq,
        )
        if held:
            return outcome, outcome_bytes
        row = await self._parts.store.get_job(job.job_id)
        if row is None or row.outcome is None:  # purged or not ended: nothing to publish
            raise InternalError("the job was taken over and its end is not recorded")
        log.warning("job %s was ended by another node; its recorded end stands", job.job_id)
        recorded = jobs_pb2.JobOutcome.FromString(row.outcome)
        summary.status = _status(recorded)
        return recorded, row.outcome


def _describe_end(span: tracing.Span, job: ActiveJob) -> None:
    """The run's end on its span, with §11's recommended `arcp.lease.expires_at` and
    `arcp.budget.remaining`."""
    outcome = job.outcome
    if outcome is None or not span.recording():
        return
    # The ARCP names (§7.3 `final_status`, §12 codes), not the proto enums'.
    status = jobs_pb2.JobStatus.Name(_status(outcome)).removeprefix("JOB_STATUS_")
    span.set("arcp.status", status.lower())
    if outcome.HasField("error"):
        error = outcome.error.error
        code = errors_pb2.ErrorCode.Name(error.code).removeprefix("ERROR_CODE_")
        span.fail(f"{code}: {error.message}")
    if job.lease_expires_at:
        span.set("arcp.lease.expires_at", job.lease_expires_at)
    if job.final is not None and job.final.budget:
        budget = job.final.budget
        span.set("arcp.budget.remaining", ",".join(f"{k}:{budget[k]}" for k in sorted(budget)))


def _final_summary(job: ActiveJob) -> jobs_pb2.JobSummary:
    summary = job.view()
    summary.last_event_seq = job.last_seq
    stamp(summary.completed_at)
    return summary


def _status(outcome: jobs_pb2.JobOutcome) -> jobs_pb2.JobStatus.ValueType:
    if outcome.HasField("error"):
        return outcome.error.final_status
    return jobs_pb2.JOB_STATUS_SUCCESS


def _unrecorded(job: ActiveJob, summary: jobs_pb2.JobSummary) -> tuple[jobs_pb2.JobOutcome, bytes]:
    """The retryable INTERNAL_ERROR that stands for an end the store did not take (§12)."""
    outcome = failure(job.job_id, InternalError("the job's end could not be recorded"))
    summary.status = _status(outcome)
    return outcome, outcome.SerializeToString(deterministic=True)


def _agent_failed(job: ActiveJob, exc: BaseException) -> jobs_pb2.JobOutcome:
    log.warning("agent %s failed in job %s", job.agent.ref, job.job_id, exc_info=exc)
    return failure(job.job_id, InternalError(f"agent {job.agent.ref} failed: {type(exc).__name__}"))


async def _success(job: ActiveJob, value: Any) -> jobs_pb2.JobOutcome:
    result = jobs_pb2.JobResult(job_id=job.job_id, final_status=jobs_pb2.JOB_STATUS_SUCCESS)
    if job.streamed is not None:
        if value is not None:
            raise InternalError("the agent streamed its result and also returned one (§8.4)")
        stream = job.result_stream
        if stream is not None and not stream.closed:
            await stream.close()
        result.streamed.CopyFrom(job.streamed)
    else:
        try:
            fill_value(result.value, value)
        except FieldError as exc:
            raise InternalError(
                f"the agent returned a result that is not JSON: {exc.path('result')}: {exc.message}"
            ) from None
    stamp(result.completed_at)
    return jobs_pb2.JobOutcome(result=result)


def _expire_late(job: ActiveJob) -> None:
    """Proactive end of a job whose lease expired without a violating operation."""
    job.stop(LeaseExpired(f"the lease expired at {job.lease_expires_at} (§9.5)"))
