"""The job runtime: submission, exact idempotent replay, execution, cancellation.

Transport-free: the gRPC JobService and the ARCP SessionService are adapters
over this class. Rules that make the seed bug impossible (§7.2):

- `JobAccepted` is serialised exactly once, at first acceptance, and stored
  (sealed: it holds credential values) in the same transaction that creates
  the job and claims `(principal, idempotency_key)`.
- A resubmission with identical parameters returns those stored bytes; it
  never rebuilds the message. Different parameters raise DUPLICATE_KEY.
- The store's unique key on the claim, not a check-then-insert, settles
  concurrent identical submits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from arcp_grpc.agents import AgentRegistry, RegisteredAgent
from arcp_grpc.auth import Principal
from arcp_grpc.base.agentref import parse_agent_ref
from arcp_grpc.base.ids import new_id, new_trace_id
from arcp_grpc.base.json_values import FieldError, fill_value, value_to_py
from arcp_grpc.base.logs import bind as bind_log_context
from arcp_grpc.base.stamps import stamp
from arcp_grpc.base.validate import check_submit
from arcp_grpc.context import JobContext
from arcp_grpc.credentials import CredentialProvisioner
from arcp_grpc.errors import (
    ARCPError,
    Cancelled,
    DuplicateKey,
    InternalError,
    InvalidRequest,
    JobNotFound,
    LeaseExpired,
    Timeout,
)
from arcp_grpc.lease import BudgetCounters, Lease, LeaseClock, child_expiry, parse_expires_at
from arcp_grpc.runtime.cluster import ClusterLimits, ClusterMember
from arcp_grpc.runtime.credential_ledger import CredentialLedger
from arcp_grpc.runtime.feed import FeedBatch, JobFeed, follow
from arcp_grpc.runtime.fingerprint import submit_fingerprint
from arcp_grpc.runtime.job import ActiveJob
from arcp_grpc.runtime.observe import RuntimeObserver
from arcp_grpc.runtime.quotas import Quotas
from arcp_grpc.runtime.replay_cache import Claimed, ReplayCache
from arcp_grpc.service.delivery import is_rotation
from arcp_grpc.store import (
    ClusterStore,
    EventRow,
    IdempotencyClaim,
    IdempotencyConflict,
    JobChanges,
    JobQuery,
    JobRow,
    Store,
    StoreUnavailable,
)
from arcp_grpc.store.secretbox import SecretBox
from arcp_grpc.v1 import events_pb2, jobs_pb2, lease_pb2

__all__ = ["JobRuntime", "RuntimeLimits", "Submission", "job_query"]

log = logging.getLogger("arcp_grpc.runtime")

_PURGE_BATCH = 200  # jobs per purge transaction: short, so other writes interleave
_PURGE_ROUNDS = 500  # batches per round at most; the next round goes on

_STATUS_OF_CODE = {
    "CANCELLED": jobs_pb2.JOB_STATUS_CANCELLED,
    "TIMEOUT": jobs_pb2.JOB_STATUS_TIMED_OUT,
}


@dataclass(frozen=True, slots=True)
class RuntimeLimits:
    """Caps and windows; every field is a documented configuration knob."""

    chunk_bytes: int = 192 * 1024  # base64 of 192 KiB is 256 KiB: frames stay far below 1 MiB
    max_chunk_bytes: int = 1024 * 1024  # §14: cap on one result chunk
    max_result_bytes: int = 256 * 1024 * 1024  # §14: cap on one streamed result
    idempotency_ttl_sec: float = 24 * 3600.0  # §7.2: how long a key replays
    lease_grace_sec: float = 1.0  # §14: bounded grace before an expired job is ended
    max_pending_writes: int = 8192  # back-pressure: emitters wait beyond this
    max_pending_event_bytes: int = 16 * 1024 * 1024  # or beyond this many bytes of events
    revoke_attempts: int = 5  # §9.8.2: tries before a revocation waits for the next sweep
    revoke_retry_sec: float = 60.0  # §14: how often unrevoked credentials are retried
    shutdown_grace_sec: float = 10.0  # how long running jobs get to finish on stop
    replay_cache_entries: int = 10_000  # idempotency claims kept in memory for fast replay
    replay_cache_bytes: int = 64 * 1024 * 1024  # and the bytes they may hold together
    recent_jobs: int = 512  # small finished jobs kept in memory for the followers that come next
    retention_sec: float = 7 * 24 * 3600.0  # finished jobs are purged this long after; 0: never


@dataclass(frozen=True, slots=True)
class Submission:
    """The answer to a submit: the `JobAccepted` bytes and whether they are a replay."""

    job_id: str
    accepted: bytes
    replay: bool


class JobRuntime:
    """Runs jobs for principals; owns the store, the agents and the credentials."""

    def __init__(
        self,
        store: Store,
        registry: AgentRegistry,
        box: SecretBox,
        *,
        provisioner: CredentialProvisioner | None = None,
        limits: RuntimeLimits | None = None,
        cluster_limits: ClusterLimits | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.store = store
        self.quotas = quotas or Quotas()
        # Jobs admitted and not yet ended, by principal (children count as their root's
        # principal's): what `[limits]` caps (§14).
        self._running: dict[str, int] = {}
        self._running_total = 0
        # Set when other nodes share the store: jobs may run, and be cancelled, elsewhere.
        self.cluster: ClusterStore | None = store if isinstance(store, ClusterStore) else None
        self.cluster_limits = cluster_limits or ClusterLimits()
        self._member: asyncio.Task[None] | None = None
        self.on_fenced: Callable[[], None] = lambda: None
        self.registry = registry
        self.box = box
        self.provisioner = provisioner
        self.limits = limits or RuntimeLimits()
        self.credentials = (
            CredentialLedger(
                provisioner,
                store,
                box,
                revoke_attempts=self.limits.revoke_attempts,
                observer=lambda: self.observer,
            )
            if provisioner is not None
            else None
        )
        self._active: dict[str, ActiveJob] = {}
        # Recently finished small jobs, so the follower that typically arrives right
        # after the end (WatchJob after SubmitJob, a session's pump) needs no store
        # read. Bounded in count and per-job size: finished jobs live in the store.
        self._recent: OrderedDict[str, ActiveJob] = OrderedDict()
        self._background: set[asyncio.Task[Any]] = set()
        self._accepting = True
        self._purger: asyncio.Task[None] | None = None
        self._revoker: asyncio.Task[None] | None = None
        self._replays = ReplayCache(
            self.limits.replay_cache_entries, max_bytes=self.limits.replay_cache_bytes
        )
        self.observer = RuntimeObserver()  # metrics hooks (arcp_grpc.process.metrics)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Recover from a previous process, then serve (§9.8.2 revocation retries)."""
        self.store.set_commit_listener(self._on_commit)
        await self._check_key()
        await self._recover_interrupted()
        await self._sweep_credentials()
        self._purger = asyncio.create_task(self._purge_loop(), name="arcp-store-purge")
        if self.credentials is not None:
            self._revoker = asyncio.create_task(self._revoke_loop(), name="arcp-credential-sweep")
        if self.cluster is not None:
            self.cluster.set_cancel_listener(self._cancel_here)
            member = ClusterMember(
                self.cluster,
                self.cluster_limits,
                end_orphans=self._end_orphans,
                cancel_local=self._cancel_here,
                fenced=self._fenced,
            )
            self._member = asyncio.create_task(member.run(), name="arcp-cluster-member")

    async def _check_key(self) -> None:
        """Refuse a store whose sealed rows this node's key cannot open (a cluster's
        nodes must share one key): better no start than unreadable replays."""
        stored = await self.store.key_check(self.box.seal(_KEY_CHECK, _KEY_CHECK))
        try:
            self.box.open(stored, _KEY_CHECK)
        except InternalError:
            raise StoreUnavailable(
                "the store's sealed rows were written with another key: give every node the"
                " same store key (store.key_file, or core.store_key)"
            ) from None

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, give running jobs `grace` seconds, then end the rest."""
        self._accepting = False
        grace = self.limits.shutdown_grace_sec if grace is None else grace
        running = list(self._active.values())
        if running:
            waits = [asyncio.ensure_future(job.done.wait()) for job in running]
            _, pending = await asyncio.wait(waits, timeout=grace)
            for wait in pending:
                wait.cancel()
        for job in list(self._active.values()):
            # A resubmit with the same key would replay this very outcome (§7.2).
            job.stop(
                InternalError(
                    "the runtime shut down before the job finished; to run it again, "
                    "resubmit with a new idempotency key"
                )
            )
        for job in list(self._active.values()):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.done.wait(), timeout=5.0)
        if self._purger is not None:
            self._purger.cancel()
        if self._revoker is not None:
            self._revoker.cancel()
        if self._member is not None:
            self._member.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=5.0)
        await self.store.flush()
        if self.cluster is not None:
            with contextlib.suppress(InternalError):
                await self.cluster.leave()

    # -- submission --------------------------------------------------------------

    async def submit(self, principal: Principal, submit: jobs_pb2.JobSubmit) -> Submission:
        """Accept a job, or replay the original acceptance for an identical resubmit (§7.2)."""
        started = time.perf_counter()
        submission = await self._accept(principal, submit)
        self.observer.submitted(time.perf_counter() - started, replay=submission.replay)
        return submission

    async def _accept(self, principal: Principal, submit: jobs_pb2.JobSubmit) -> Submission:
        if not self._accepting:
            raise InternalError("the runtime is shutting down")
        check_submit(submit)  # every submit path (SessionService, JobService) comes here
        now = time.time()
        ref = parse_agent_ref(submit.agent)
        lease_request = {
            ns: list(p.patterns) for ns, p in submit.lease_request.capabilities.items()
        }
        expires_at = _expires_at(submit, now)
        max_runtime = _max_runtime(submit)
        input_value = value_to_py(submit.input) if submit.HasField("input") else None
        key = submit.idempotency_key
        claim = None
        fingerprint = b""
        if key:
            fingerprint = submit_fingerprint(
                agent=submit.agent,
                input_json=input_value,
                lease_request=lease_request,
                lease_constraints_expires_at=(
                    submit.lease_constraints.expires_at.ToJsonString() if expires_at else None
                ),
                max_runtime_sec=max_runtime,
            )
            cached = self._replays.get(principal.name, key, now)
            if cached is not None:
                return _replay_of(cached, fingerprint)
            held = await self.store.find_claim(principal.name, key, now)
            if held is not None:
                return await self._replay(principal.name, key, held, fingerprint)
            claim = IdempotencyClaim(
                principal.name, key, fingerprint, now + self.limits.idempotency_ttl_sec
            )
        agent = self.registry.resolve(ref)
        lease = Lease.parse(lease_request)
        # No await between this check and `_persist` counting the job: concurrent
        # submits cannot all pass it.
        self.quotas.check_job(
            principal.name, self._running.get(principal.name, 0), self._running_total
        )
        job = self._new_job(
            principal,
            agent,
            lease,
            expires_at,
            BudgetCounters(lease.budget_amounts()),
            trace_id=submit.trace_id or new_trace_id(),
            max_runtime=max_runtime,
            parent=None,
        )
        try:
            accepted = await self._persist(job, claim, now)
        except IdempotencyConflict as held_by:
            if self.credentials is not None:
                await self.credentials.discard(job.job_id, job.credentials)
            held = (held_by.job_id, held_by.fingerprint)
            return await self._replay(principal.name, key, held, fingerprint)
        if claim is not None:
            self._replays.put(
                principal.name, key, Claimed(job.job_id, fingerprint, accepted, claim.expires_at)
            )
        self._launch(job, input_value)
        return Submission(job.job_id, accepted, replay=False)

    async def _replay(
        self, principal: str, key: str, held: tuple[str, bytes], fingerprint: bytes
    ) -> Submission:
        job_id, held_fingerprint = held
        row = await self.store.get_job(job_id)
        if row is None:
            raise InternalError(f"idempotency claim names missing job {job_id}")
        claimed = Claimed(
            job_id,
            held_fingerprint,
            self.box.open_any(row.accepted, job_id.encode()),
            row.created_at + self.limits.idempotency_ttl_sec,
        )
        self._replays.put(principal, key, claimed)
        return _replay_of(claimed, fingerprint)

    async def delegate(
        self,
        parent: ActiveJob,
        *,
        agent: str,
        input_value: Any,
        lease_request: Mapping[str, Sequence[str]] | None,
        expires_at: str | None,
        max_runtime_sec: int | None,
    ) -> ActiveJob:
        """Start a child job with a strict subset of the parent's authority (§9.4, §10)."""
        now = time.time()
        registered = self.registry.resolve(parse_agent_ref(agent))
        # The tightest counter along the ancestor chain bounds the child (§9.4).
        lease = parent.lease.derive_child(lease_request, parent.budget.available())
        requested = (
            parse_expires_at(expires_at, now=datetime.fromtimestamp(now, UTC))
            if expires_at
            else None
        )
        expiry = child_expiry(requested, parent.expires_at)
        child = self._new_job(
            parent.principal,
            registered,
            lease,
            expiry,
            BudgetCounters(lease.budget_amounts(), parent=parent.budget),
            trace_id=parent.trace_id,  # §11: the child continues the parent's trace
            max_runtime=max_runtime_sec,
            parent=parent,
        )
        await self._persist(child, None, now)
        parent.children.append(child)
        body = events_pb2.DelegateEvent(child_job_id=child.job_id, agent=registered.ref)
        body.lease.CopyFrom(child.summary.lease)
        body.lease_constraints.CopyFrom(child.summary.lease_constraints)
        parent.emit("delegate", body)
        self._launch(child, input_value)
        return child

    def _new_job(
        self,
        principal: Principal,
        agent: RegisteredAgent,
        lease: Lease,
        expires_at: datetime | None,
        budget: BudgetCounters,
        *,
        trace_id: str,
        max_runtime: int | None,
        parent: ActiveJob | None,
    ) -> ActiveJob:
        job_id = new_id("job")
        summary = jobs_pb2.JobSummary(
            job_id=job_id,
            agent=agent.ref,
            status=jobs_pb2.JOB_STATUS_PENDING,
            trace_id=trace_id,
            parent_job_id=parent.job_id if parent else "",
        )
        for namespace, patterns in lease.grants.items():
            summary.lease.capabilities[namespace].patterns.extend(patterns)
        if expires_at is not None:
            summary.lease_constraints.expires_at.FromDatetime(expires_at)
        summary.budget.update(budget.snapshot())
        stamp(summary.created_at)
        return ActiveJob(
            runtime=self,
            job_id=job_id,
            principal=principal,
            agent=agent,
            trace_id=trace_id,
            lease=lease,
            clock=LeaseClock(expires_at, wall_now=datetime.now(UTC), mono_now=time.monotonic()),
            expires_at=expires_at,
            budget=budget,
            credentials=[],
            summary=summary,
            max_runtime_sec=max_runtime,
            parent=parent,
        )

    async def _persist(self, job: ActiveJob, claim: IdempotencyClaim | None, now: float) -> bytes:
        """Provision credentials, serialise `JobAccepted` once, store job + claim atomically."""
        self._count(job, 1)
        try:
            return await self._store_new(job, claim, now)
        except BaseException:
            self._count(job, -1)
            raise

    def _count(self, job: ActiveJob, delta: int) -> None:
        name = job.principal.name
        running = self._running.get(name, 0) + delta
        if running:
            self._running[name] = running
        else:
            del self._running[name]
        self._running_total += delta

    async def _store_new(self, job: ActiveJob, claim: IdempotencyClaim | None, now: float) -> bytes:
        if self.credentials is not None:
            job.credentials = await self.credentials.issue(job.job_id, job.lease, job.expires_at)
        accepted = jobs_pb2.JobAccepted(
            job_id=job.job_id,
            agent=job.agent.ref,
            lease=job.summary.lease,
            budget=job.summary.budget,
            credentials=job.credentials,
            accepted_at=job.summary.created_at,
            trace_id=job.trace_id,
            parent_job_id=job.summary.parent_job_id,
        )
        if job.summary.HasField("lease_constraints"):
            accepted.lease_constraints.CopyFrom(job.summary.lease_constraints)
        accepted_bytes = accepted.SerializeToString(deterministic=True)
        row = JobRow(
            job_id=job.job_id,
            principal=job.principal.name,
            agent=job.agent.ref,
            status=jobs_pb2.JOB_STATUS_PENDING,
            created_at=now,
            trace_id=job.trace_id,
            parent_job_id=job.summary.parent_job_id,
            summary=job.summary.SerializeToString(deterministic=True),
            accepted=(
                self.box.seal(accepted_bytes, job.job_id.encode())
                if job.credentials  # nothing else in it is secret
                else SecretBox.plain(accepted_bytes)
            ),
        )
        ledger = self.credentials.entries(job.job_id, job.credentials) if self.credentials else []
        self._active[job.job_id] = job  # followers may attach as soon as the row commits
        try:
            await self.store.create_job(row, claim, ledger, now)
        except BaseException:
            self._active.pop(job.job_id, None)
            raise
        return accepted_bytes

    # -- execution ---------------------------------------------------------------

    def _launch(self, job: ActiveJob, input_value: Any) -> None:
        self.observer.launched()
        job.task = asyncio.create_task(self._run(job, input_value), name=f"job {job.job_id}")
        seconds = job.clock.seconds_left(time.monotonic())
        if seconds is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(seconds + self.limits.lease_grace_sec, self._expire_late, job)

    async def _run(self, job: ActiveJob, input_value: Any) -> None:
        bind_log_context(job_id=job.job_id, trace_id=job.trace_id)
        ctx = JobContext(job, input_value)
        outcome: jobs_pb2.JobOutcome
        try:
            # Let the acceptance go out first: the submitter's reply was queued just
            # after this task was created and must not wait for the agent's first step.
            await asyncio.sleep(0)
            # Running is known in memory only: the store keeps "not finished", which is
            # all recovery needs, and starting a job costs no write (see `list_jobs`).
            job.status = jobs_pb2.JOB_STATUS_RUNNING
            async with asyncio.timeout(job.max_runtime_sec) as deadline:
                value = await job.agent.fn(ctx, input_value)
            outcome = await self._success(job, value)
        except asyncio.CancelledError:
            if job.stop_error is None:
                job.stop_error = InternalError("the job task was cancelled")
            outcome = _failure(job.job_id, job.stop_error)
        except TimeoutError:
            if deadline.expired():
                job.stop_error = job.stop_error or Timeout(
                    f"the job ran longer than max_runtime_sec={job.max_runtime_sec} (§7.3)"
                )
                outcome = _failure(job.job_id, job.stop_error)
            else:
                outcome = self._agent_failed(job, TimeoutError("timed out"))
        except ARCPError as error:
            outcome = _failure(job.job_id, error)
        except Exception as exc:
            outcome = self._agent_failed(job, exc)
        if job.stop_error is not None and not outcome.HasField("error"):
            outcome = _failure(job.job_id, job.stop_error)  # the runtime's reason wins
        # From here on a stop only records its reason (the outcome is decided), so the
        # terminal write and the revocation run to the end. A cancel requested while
        # the agent was not suspended (a cap error it raised or swallowed, a cancel
        # racing its return) may still be pending on this task: then the write runs
        # in a task of its own, shielded.
        job.finishing = True
        task = asyncio.current_task()
        if task is None or not task.cancelling():
            await self._finish(job, outcome)
            return
        finishing = asyncio.create_task(self._finish(job, outcome))
        self._background.add(finishing)
        finishing.add_done_callback(self._background.discard)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(finishing)

    def _agent_failed(self, job: ActiveJob, exc: BaseException) -> jobs_pb2.JobOutcome:
        log.warning("agent %s failed in job %s", job.agent.ref, job.job_id, exc_info=exc)
        return _failure(
            job.job_id, InternalError(f"agent {job.agent.ref} failed: {type(exc).__name__}")
        )

    async def _success(self, job: ActiveJob, value: Any) -> jobs_pb2.JobOutcome:
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
                    f"the agent returned a result that is not JSON: {exc.path('result')}:"
                    f" {exc.message}"
                ) from None
        stamp(result.completed_at)
        return jobs_pb2.JobOutcome(result=result)

    async def _finish(self, job: ActiveJob, outcome: jobs_pb2.JobOutcome) -> None:
        for child in job.children:
            if child.stop(Cancelled("the parent job ended")):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        child.done.wait(), timeout=self.limits.shutdown_grace_sec
                    )
        status = (
            outcome.error.final_status if outcome.HasField("error") else jobs_pb2.JOB_STATUS_SUCCESS
        )
        summary = job.view(with_credentials=False)
        summary.status = status
        summary.last_event_seq = job.last_seq
        stamp(summary.completed_at)
        outcome_bytes = outcome.SerializeToString(deterministic=True)
        try:
            await self.store.finish_job(
                job.job_id,
                status,
                outcome_bytes,
                summary.SerializeToString(deterministic=True),
                time.time(),
                job.last_seq,
                shared=len(self._active) > 1,  # a lone job's end is written at once
            )
        except InternalError as failure:
            # The store failed: this end is not recorded, and the next start ends the job
            # as interrupted (a retryable INTERNAL_ERROR). Followers are told that now,
            # not an outcome the store will never show.
            log.error("the end of job %s could not be recorded: %s", job.job_id, failure)
            outcome = _failure(job.job_id, InternalError("the job's end could not be recorded"))
            status = summary.status = outcome.error.final_status
            outcome_bytes = outcome.SerializeToString(deterministic=True)
        finally:
            job.status = status
            job.outcome = outcome
            job.feed.finish(outcome_bytes)
            job.final = summary
            job.done.set()
            self.observer.finished(status)
            self._active.pop(job.job_id, None)
            self._count(job, -1)
            self._remember(job)
        if job.credentials:
            assert self.credentials is not None
            self._spawn(self.credentials.revoke_all(job.credentials))

    def _remember(self, job: ActiveJob) -> None:
        if (
            job.last_seq > _RECENT_MAX_EVENTS
            or job.feed.held_bytes > _RECENT_MAX_BYTES
            or self.limits.recent_jobs <= 0
        ):
            return
        job.task = None  # keep the state followers read, drop what ran it
        job.children = []
        job.parent = None
        job.result_stream = None
        self._recent[job.job_id] = job
        while len(self._recent) > self.limits.recent_jobs:
            self._recent.popitem(last=False)

    def _known(self, job_id: str) -> ActiveJob | None:
        """A running or recently finished job held in memory."""
        return self._active.get(job_id) or self._recent.get(job_id)

    def expire(self, job: ActiveJob, error: LeaseExpired) -> None:
        """The agent hit an expired lease: the job ends with LEASE_EXPIRED once the agent
        has unwound, or after the grace period (§9.5, §13.4)."""
        if job.stop_error is None and not job.done.is_set():
            job.stop_error = error
            asyncio.get_running_loop().call_later(self.limits.lease_grace_sec, job.cancel_task)

    def _expire_late(self, job: ActiveJob) -> None:
        """Proactive end of a job whose lease expired without a violating operation."""
        expiry = job.summary.lease_constraints.expires_at.ToJsonString()
        job.stop(LeaseExpired(f"the lease expired at {expiry} (§9.5)"))

    async def backpressure(self) -> None:
        """Make emitters wait while the store's write queue is long or heavy."""
        writes, event_bytes = self.store.write_backlog()
        limits = self.limits
        if writes > limits.max_pending_writes or event_bytes > limits.max_pending_event_bytes:
            await self.store.flush()

    def _on_commit(self, events: Sequence[EventRow]) -> None:
        self.observer.events_committed(len(events))
        committed: dict[str, list[tuple[int, bytes]]] = {}
        for row in events:
            if row.job_id in self._active:
                committed.setdefault(row.job_id, []).append((row.seq, self.plain(row)))
        for job_id, rows in committed.items():
            self._active[job_id].feed.on_commit(rows)

    # -- control and observation -------------------------------------------------

    async def cancel(self, principal: Principal, job_id: str, reason: str) -> None:
        """Cancel a job of `principal` (§7.4). Another principal's job is not found."""
        job = self._active.get(job_id)
        if job is not None and job.principal.name == principal.name:
            job.stop(Cancelled(reason or "cancelled by the submitter"))
            return
        known = self._recent.get(job_id)
        if known is not None and known.principal.name == principal.name:
            final = known.status
        else:
            row = await self._visible_row(principal, job_id)
            if row.completed_at is None and self.cluster is not None:
                # Running on another node: a durable request its owner acts on.
                if await self.cluster.request_cancel(job_id, reason):
                    return
                row = await self._visible_row(principal, job_id)  # it ended meanwhile
            final = _status(row.status)
        if final == jobs_pb2.JOB_STATUS_CANCELLED:
            return  # CancelJob is idempotent
        # `final_status` lets a client answer every ended job alike (the CLI does).
        status = jobs_pb2.JobStatus.Name(final).removeprefix("JOB_STATUS_").lower()
        raise InvalidRequest(
            f"job {job_id} already ended ({status})",
            details={"job_id": job_id, "final_status": status},
        )

    async def get(
        self, principal: Principal, job_id: str
    ) -> tuple[jobs_pb2.JobSummary, jobs_pb2.JobOutcome | None]:
        job = self._known(job_id)
        if job is not None and job.principal.name == principal.name:
            return job.view(with_credentials=True), job.outcome
        row = await self._visible_row(principal, job_id)
        summary = self._summary_of(row)
        if row.completed_at is None:
            summary.last_event_seq = await self.store.last_seq(job_id)
        outcome = jobs_pb2.JobOutcome.FromString(row.outcome) if row.outcome else None
        return summary, outcome

    async def list_jobs(
        self, principal: Principal, query: JobQuery
    ) -> tuple[list[jobs_pb2.JobSummary], str]:
        """A principal's own jobs, newest first (§6.6), with their credentials (§14).

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
            page = await self.store.list_jobs(query)
            for row in page.jobs:
                job = self._known(row.job_id)
                summary = job.view(with_credentials=True) if job else self._summary_of(row)
                if not wanted or summary.status in wanted:
                    summaries.append(summary)
            if not live or not page.next_cursor or len(summaries) >= query.limit:
                break
            query = replace(query, cursor=page.next_cursor, limit=query.limit - len(summaries))
        return summaries, page.next_cursor

    async def watch(
        self, principal: Principal, job_id: str, after_seq: int
    ) -> AsyncIterator[FeedBatch]:
        """Events after `after_seq`, then the outcome (WatchJob, subscriptions)."""
        job = self._known(job_id)
        if job is None:
            await self._visible_row(principal, job_id)
        elif job.principal.name != principal.name:
            raise JobNotFound(f"job {job_id!r} not found", details={"job_id": job_id})
        async for batch in follow(self, job_id, after_seq):
            yield batch

    async def owner(self, job_id: str) -> str | None:
        """The principal that submitted `job_id`, or None if there is no such job."""
        job = self._known(job_id)
        if job is not None:
            return job.principal.name
        if len(job_id) > _MAX_JOB_ID:
            return None
        row = await self.store.get_job(job_id) if job_id else None
        return row.principal if row is not None else None

    async def trace_id(self, job_id: str) -> str:
        """A job's trace id (§11), from memory when the job is there."""
        job = self._known(job_id)
        if job is not None:
            return job.trace_id
        row = await self.store.get_job(job_id)
        return row.trace_id if row is not None else ""

    def live_feed(self, job_id: str) -> tuple[JobFeed, str] | None:
        """The feed and trace id of a running job that has committed no event yet, so a
        follower listening from now on misses nothing; None otherwise (then `watch`)."""
        job = self._active.get(job_id)
        if job is None or job.feed.committed_seq:
            return None
        return job.feed, job.trace_id

    async def committed_seq(self, job_id: str) -> int:
        """The highest `job_seq` a follower can see now."""
        job = self._known(job_id)
        if job is not None:
            return job.feed.committed_seq
        row = await self.store.get_job(job_id)
        if row is None:
            return 0
        return row.last_seq if row.completed_at is not None else await self.store.last_seq(job_id)

    def agents(self) -> list[jobs_pb2.AgentInfo]:
        return self.registry.inventory()

    async def _visible_row(self, principal: Principal, job_id: str) -> JobRow:
        if len(job_id) > _MAX_JOB_ID:
            raise JobNotFound("no job has an id that long")  # never echo oversized input
        row = await self.store.get_job(job_id) if job_id else None
        if row is None or row.principal != principal.name:
            # Never reveal another principal's job exists (§6.6).
            raise JobNotFound(f"job {job_id!r} not found", details={"job_id": job_id})
        return row

    def _summary_of(self, row: JobRow) -> jobs_pb2.JobSummary:
        summary = jobs_pb2.JobSummary.FromString(row.summary)
        summary.status = _status(row.status)
        if row.completed_at is None and self.cluster is not None:
            summary.status = jobs_pb2.JOB_STATUS_RUNNING  # on another node (it starts at once)
        summary.last_event_seq = row.last_seq
        if row.completed_at is None:  # an ended job's values are revoked: never shown
            accepted = jobs_pb2.JobAccepted.FromString(
                self.box.open_any(row.accepted, row.job_id.encode())
            )
            summary.credentials.extend(accepted.credentials)
        return summary

    # -- EventHistory (for `follow`) ---------------------------------------------

    async def read(self, job_id: str, after_seq: int, limit: int) -> list[EventRow]:
        return await self.store.read_events(job_id, after_seq, limit)

    async def outcome(self, job_id: str) -> bytes | None:
        row = await self.store.get_job(job_id)
        return row.outcome if row is not None else None

    def feed(self, job_id: str) -> JobFeed | None:
        job = self._known(job_id)
        return job.feed if job is not None else None

    def changes(self, job_id: str) -> JobChanges | None:
        return self.cluster.changes(job_id) if self.cluster is not None else None

    def plain(self, row: EventRow) -> bytes:
        return self.box.open(row.blob, row.job_id.encode()) if row.sealed else row.blob

    # -- credentials -------------------------------------------------------------

    async def rotate_credential(self, job: ActiveJob, credential_id: str) -> lease_pb2.Credential:
        """Re-issue a credential; emits `status` `credential_rotated` (§9.8.2)."""
        if self.credentials is None:
            raise InvalidRequest("no credential provisioner is configured")
        new = await self.credentials.rotate(job.job_id, job.credentials, credential_id)
        job.emit(
            "status",
            events_pb2.StatusEvent(phase="credential_rotated", credential=new),
            secret=True,
        )
        return new

    async def rotations(self, job_id: str, upto: int) -> list[tuple[int, bytes]]:
        """The `credential_rotated` events of a running job up to `job_seq` `upto`: what
        a replayed `job.accepted` (the original bytes, §7.2) is followed by, so the
        caller converges on the live values (DESIGN.md, "Replay after a rotation").
        None once the job ended: its values are revoked and no surface shows them."""
        job = self._known(job_id)
        if job is not None and job.final is not None:
            return []
        if job is None:
            row = await self.store.get_job(job_id)
            if row is None or row.completed_at is not None:
                return []
        found: list[tuple[int, bytes]] = []
        after = 0
        while after < upto:  # a scan, on replays only, in bounded pages
            page = await self.store.read_events(job_id, after, min(_ROTATION_PAGE, upto - after))
            if not page:
                break
            for event in page:
                if event.sealed:  # only secret events are sealed: rotations (§9.8.2)
                    blob = self.plain(event)
                    if is_rotation(blob):
                        found.append((event.seq, blob))
            after = page[-1].seq
        return found

    async def _sweep_credentials(self) -> None:
        """Revoke due credentials: a previous process's, retired ones, ones whose
        revocation failed (§14 revocation reliability)."""
        if self.credentials is not None:
            await self.credentials.sweep(self._active)
            return
        left = await self.store.live_credentials()
        if left:
            log.error(
                "%d credentials are still live and no provisioner is configured to revoke them",
                len(left),
            )

    # -- recovery and housekeeping -----------------------------------------------

    async def _recover_interrupted(self) -> None:
        """Jobs a dead process left running end with a retryable INTERNAL_ERROR."""
        for row in await self.store.interrupted_jobs():
            await self._end_interrupted(row, "the runtime stopped while the job was running")
            log.warning(
                "job %s was interrupted by a restart; it ended with INTERNAL_ERROR", row.job_id
            )

    async def _end_orphans(self, node: str, rows: Sequence[JobRow]) -> None:
        """End the running jobs of a node declared dead (now this node's to end), then
        revoke their credentials (§9.8.2, §14)."""
        for row in rows:
            await self._end_interrupted(
                row, f"the node running the job ({node}) stopped; resubmit with a new key"
            )
            log.warning("job %s of dead node %s ended with INTERNAL_ERROR", row.job_id, node)
        if rows:
            await self._sweep_credentials()

    def _cancel_here(self, job_id: str, reason: str) -> None:
        """Another node relayed a cancel for a job running here (§7.4)."""
        job = self._active.get(job_id)
        if job is not None:
            job.stop(Cancelled(reason or "cancelled by the submitter"))

    def _fenced(self) -> None:
        """This node was declared dead: its jobs were ended elsewhere, so stop them here
        (their late end is not recorded) and refuse new work."""
        self._accepting = False
        for job in list(self._active.values()):
            job.stop(InternalError("this node was declared dead by the cluster"))
        self.on_fenced()

    async def _end_interrupted(self, row: JobRow, message: str) -> None:
        """Record the end of a job no process runs any more: a retryable INTERNAL_ERROR."""
        outcome = _failure(row.job_id, InternalError(message))
        summary = jobs_pb2.JobSummary.FromString(row.summary)
        summary.status = jobs_pb2.JOB_STATUS_ERROR
        stamp(summary.completed_at)
        last_seq = await self.store.last_seq(row.job_id)
        summary.last_event_seq = last_seq
        await self.store.finish_job(
            row.job_id,
            jobs_pb2.JOB_STATUS_ERROR,
            outcome.SerializeToString(deterministic=True),
            summary.SerializeToString(deterministic=True),
            time.time(),
            last_seq,
        )

    async def _purge_loop(self) -> None:
        """Expired idempotency claims, and finished jobs past the retention window."""
        windows = [self.limits.idempotency_ttl_sec, self.limits.retention_sec or math.inf]
        interval = min(60.0, max(1.0, min(windows) / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                purged = await self.store.purge_claims(time.time())
                if purged:
                    log.info("purged %d expired idempotency keys", purged)
                if self.limits.retention_sec:
                    await self.purge_finished(time.time() - self.limits.retention_sec)
            except ARCPError:
                log.exception("purging the store failed; the next round retries")

    async def purge_finished(self, finished_before: float) -> int:
        """Delete jobs that ended before `finished_before` with their events, a batch
        per transaction, then give the space back; returns how many (issue 15)."""
        total = 0
        for _ in range(_PURGE_ROUNDS):
            purged = await self.store.purge_jobs(finished_before, _PURGE_BATCH)
            total += purged
            if purged < _PURGE_BATCH:
                break
        if total:
            self._forget_recent(finished_before)
            await self.store.reclaim()
            log.info("purged %d jobs finished before the retention window", total)
        return total

    def _forget_recent(self, finished_before: float) -> None:
        """Drop remembered jobs the purge may have deleted, so none outlives its row
        in memory; `_recent` is in order of finishing, so the old ones are in front."""
        for job_id, job in list(self._recent.items()):
            if job.final is not None and job.final.completed_at.ToSeconds() >= finished_before:
                return
            del self._recent[job_id]

    async def _revoke_loop(self) -> None:
        """Retry due revocations while the process runs, not only at its next start
        (§14): an upstream that was down comes back, and nobody restarts for it."""
        while True:
            await asyncio.sleep(self.limits.revoke_retry_sec)
            try:
                await self._sweep_credentials()
            except ARCPError:
                log.exception("retrying credential revocations failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


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


def _failure(job_id: str, error: ARCPError) -> jobs_pb2.JobOutcome:
    failed = jobs_pb2.JobError(
        job_id=job_id,
        final_status=_STATUS_OF_CODE.get(error.code, jobs_pb2.JOB_STATUS_ERROR),
        error=error.to_proto(),
    )
    stamp(failed.completed_at)
    return jobs_pb2.JobOutcome(error=failed)


_MAX_JOB_ID = 128
_KEY_CHECK = b"arcp-grpc store key check"
_LIVE = frozenset({jobs_pb2.JOB_STATUS_PENDING, jobs_pb2.JOB_STATUS_RUNNING})
_LIST_READS = 5  # store pages read at most to fill one page filtered on live statuses
_ROTATION_PAGE = 1000  # events read at once when a replay looks for rotations
_RECENT_MAX_EVENTS = 64  # only jobs this small are remembered after their end
_RECENT_MAX_BYTES = 64 * 1024  # events and outcome together (a big result is the store's)


def _replay_of(claimed: Claimed, fingerprint: bytes) -> Submission:
    """The original acceptance, byte for byte, or DUPLICATE_KEY (§7.2)."""
    if claimed.fingerprint != fingerprint:
        raise DuplicateKey(
            "idempotency_key was used with different parameters (§7.2)",
            details={"job_id": claimed.job_id},
        )
    return Submission(claimed.job_id, claimed.accepted, replay=True)


def _status(value: int) -> jobs_pb2.JobStatus.ValueType:
    return jobs_pb2.JobStatus.ValueType(value)


def _expires_at(submit: jobs_pb2.JobSubmit, now: float) -> datetime | None:
    if not submit.lease_constraints.HasField("expires_at"):
        return None
    stamp = submit.lease_constraints.expires_at
    try:
        text = stamp.ToJsonString()
    except ValueError:  # seconds or nanos outside the Timestamp range: bad input, not a fault
        raise InvalidRequest(
            "lease_constraints.expires_at is not a valid timestamp (§9.5)",
            details={"field": "lease_constraints.expires_at"},
        ) from None
    return parse_expires_at(text, now=datetime.fromtimestamp(now, UTC))


def _max_runtime(submit: jobs_pb2.JobSubmit) -> int | None:
    if not submit.HasField("max_runtime_sec"):
        return None
    if submit.max_runtime_sec == 0:
        raise InvalidRequest(
            "max_runtime_sec must be at least 1", details={"field": "max_runtime_sec"}
        )
    return submit.max_runtime_sec
