"""Admission: a submit becomes a job, or replays the acceptance it already had.

Rules that make the seed bug impossible (§7.2):

- `JobAccepted` is serialised exactly once, at first acceptance, and stored
  (sealed: it holds credential values) in the same transaction that creates
  the job and claims `(principal, idempotency_key)`.
- A resubmission with identical parameters returns those stored bytes; it
  never rebuilds the message. Different parameters raise DUPLICATE_KEY.
- The store's unique key on the claim, not a check-then-insert, settles
  concurrent identical submits.

Every submit path (the gRPC JobService, the ARCP SessionService) comes here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from arcp_grpc import tracing
from arcp_grpc.auth import Principal
from arcp_grpc.base.agentref import parse_agent_ref
from arcp_grpc.base.ids import new_trace_id
from arcp_grpc.base.json_values import value_to_py
from arcp_grpc.base.validate import check_submit
from arcp_grpc.errors import (
    DuplicateKey,
    InternalError,
    InvalidRequest,
    NodeUnavailable,
    StoreUnreachable,
)
from arcp_grpc.lease import BudgetCounters, Lease, parse_expires_at
from arcp_grpc.runtime.executor import Executor
from arcp_grpc.runtime.factory import JobFactory
from arcp_grpc.runtime.fingerprint import submit_fingerprint
from arcp_grpc.runtime.job import ActiveJob
from arcp_grpc.runtime.parts import RuntimeParts
from arcp_grpc.runtime.quotas import Quotas
from arcp_grpc.runtime.replay_cache import Claimed, ReplayCache
from arcp_grpc.store import Handoff, IdempotencyClaim, IdempotencyConflict, NodeNotAlive, OverCap
from arcp_grpc.v1 import jobs_pb2

__all__ = ["Admission", "Submission", "expires_at_of", "max_runtime_of"]

_RUNNING_CAP = "max_running_jobs_per_principal"


@dataclass(frozen=True, slots=True)
class Submission:
    """The answer to a submit: the `JobAccepted` bytes and whether they are a replay."""

    job_id: str
    accepted: bytes
    replay: bool


_FENCED = "this node was declared dead by the cluster and accepts no job; submit to another node"


class Admission:
    """Accepts submits while the node serves; replays identical resubmits (§7.2)."""

    def __init__(
        self, parts: RuntimeParts, *, quotas: Quotas, factory: JobFactory, executor: Executor
    ) -> None:
        self._parts = parts
        self._quotas = quotas
        self._factory = factory
        self._executor = executor
        limits = parts.limits
        self._replays = ReplayCache(
            limits.replay_cache_entries, max_bytes=limits.replay_cache_bytes
        )
        # Set: every submit is refused with this error (a fresh one each time).
        self._refusal: tuple[type[InternalError], str] | None = None

    def close(self) -> None:
        """Refuse new work from now on: the runtime is shutting down."""
        self._refusal = self._refusal or (InternalError, "the runtime is shutting down")

    def fence(self) -> None:
        """Refuse new work from now on: the cluster declared this node dead (issue 20)."""
        self._refusal = (NodeUnavailable, _FENCED)

    async def submit(
        self, principal: Principal, submit: jobs_pb2.JobSubmit, traceparent: str = ""
    ) -> Submission:
        """Accept a job, or replay the original acceptance for an identical resubmit (§7.2).
        `traceparent`: the caller's span (§11); the job continues its trace when the
        submit names none, and the submit's span is its child."""
        started = time.perf_counter()
        trace_id = submit.trace_id or tracing.trace_id_of(traceparent) or new_trace_id()
        with tracing.span("arcp.submit", trace_id=trace_id, traceparent=traceparent) as span:
            submission = await self._accept(principal, submit, trace_id)
            span.set("arcp.job_id", submission.job_id)
            span.set("arcp.replay", submission.replay)
        self._parts.observer.submitted(time.perf_counter() - started, replay=submission.replay)
        return submission

    async def _accept(
        self, principal: Principal, submit: jobs_pb2.JobSubmit, trace_id: str
    ) -> Submission:
        if self._refusal is not None:
            error, message = self._refusal
            raise error(message)
        cluster = self._parts.cluster
        if cluster is not None and not cluster.reachable():
            # Issue 20: no job this node could not record; the client retries (here once
            # the store answers again, or through another node).
            raise StoreUnreachable("the store is unreachable: this node accepts no jobs now")
        check_submit(submit)  # every submit path (SessionService, JobService) comes here
        now = time.time()
        ref = parse_agent_ref(submit.agent)
        lease_request = {
            ns: list(p.patterns) for ns, p in submit.lease_request.capabilities.items()
        }
        expires_at = expires_at_of(submit, now)
        max_runtime = max_runtime_of(submit)
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
            held = await self._parts.store.find_claim(principal.name, key, now)
            if held is not None:
                return await self._replay(principal.name, key, held, fingerprint)
            claim = IdempotencyClaim(
                principal.name, key, fingerprint, now + self._parts.limits.idempotency_ttl_sec
            )
        agent = self._parts.resolve(ref)
        lease = Lease.parse(lease_request)
        # No await between this check and `persist` counting the job: concurrent
        # submits cannot all pass it. A shared store counts the principal's running
        # jobs on every node again, in the insert that takes the slot.
        table = self._parts.table
        self._quotas.check_job(principal.name, table.running(principal.name), table.running_total)
        cap = self._quotas.cap(principal.name, _RUNNING_CAP)
        job = self._factory.new_job(
            principal,
            agent,
            lease,
            expires_at,
            BudgetCounters(lease.budget_amounts()),
            trace_id=trace_id,
            max_runtime=max_runtime,
            parent=None,
            submitted_input=submit.input if submit.HasField("input") else None,
        )
        # An agent only another node's workers host: that node owns and runs the job
        # (issue 23); this one follows it as any job of another node.
        peer = self._parts.workers.peer_for(agent)
        handoff = (
            Handoff(peer, self._sealed_input(job.job_id, submit), max_runtime)
            if peer is not None
            else None
        )
        try:
            accepted = await self._factory.persist(job, claim, now, cap, handoff)
        except IdempotencyConflict as held_by:
            await self._discard_credentials(job)
            held = (held_by.job_id, held_by.fingerprint)
            return await self._replay(principal.name, key, held, fingerprint)
        except OverCap as over:
            await self._discard_credentials(job)
            raise self._quotas.refusal(principal.name, _RUNNING_CAP, over.held) from None
        except NodeNotAlive:
            # Declared dead while the submit was on its way (the store refused the job in
            # the same statement): nothing was accepted; the client retries elsewhere.
            await self._discard_credentials(job)
            self.fence()
            raise NodeUnavailable(_FENCED) from None
        if claim is not None:
            self._replays.put(
                principal.name, key, Claimed(job.job_id, fingerprint, accepted, claim.expires_at)
            )
        if handoff is None:
            self._executor.launch(job, input_value)
        return Submission(job.job_id, accepted, replay=False)

    def _sealed_input(self, job_id: str, submit: jobs_pb2.JobSubmit) -> bytes:
        """The input a handed job is run with, sealed in the store like any secret."""
        return self._parts.box.seal(submit.input.SerializeToString(), job_id.encode())

    async def _discard_credentials(self, job: ActiveJob) -> None:
        """The values minted for a job that was not created: revoked, never shown."""
        if self._parts.ledger is not None:
            await self._parts.ledger.discard(job.job_id, job.credentials)

    async def _replay(
        self, principal: str, key: str, held: tuple[str, bytes], fingerprint: bytes
    ) -> Submission:
        job_id, held_fingerprint = held
        row = await self._parts.store.get_job(job_id)
        if row is None:
            raise InternalError(f"idempotency claim names missing job {job_id}")
        claimed = Claimed(
            job_id,
            held_fingerprint,
            self._parts.box.open_any(row.accepted, job_id.encode()),
            row.created_at + self._parts.limits.idempotency_ttl_sec,
        )
        self._replays.put(principal, key, claimed)
        return _replay_of(claimed, fingerprint)


def _replay_of(claimed: Claimed, fingerprint: bytes) -> Submission:
    """The original acceptance, byte for byte, or DUPLICATE_KEY (§7.2)."""
    if claimed.fingerprint != fingerprint:
        raise DuplicateKey(
            "idempotency_key was used with different parameters (§7.2)",
            details={"job_id": claimed.job_id},
        )
    return Submission(claimed.job_id, claimed.accepted, replay=True)


def expires_at_of(submit: jobs_pb2.JobSubmit, now: float) -> datetime | None:
    """The submit's lease expiry (§9.5), or None when it sets none."""
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


def max_runtime_of(submit: jobs_pb2.JobSubmit) -> int | None:
    """The submit's `max_runtime_sec` (§7.3), or None when it sets none."""
    if not submit.HasField("max_runtime_sec"):
        return None
    if submit.max_runtime_sec == 0:
        raise InvalidRequest(
            "max_runtime_sec must be at least 1", details={"field": "max_runtime_sec"}
        )
    return submit.max_runtime_sec
