"""Request messages from the client's arguments: pure, so a bad argument is refused here,
before anything is sent, with the ARCP error the core would have answered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from arcp_grpc.base.ids import new_ulid
from arcp_grpc.base.json_values import FieldError, fill_value
from arcp_grpc.client.values import Submission
from arcp_grpc.errors import InvalidRequest
from arcp_grpc.v1 import jobs_pb2

__all__ = ["fill_submit", "list_filter", "with_key"]

_BUDGET = "cost.budget"  # the lease namespace of budget counters (§9.6)
_STATUSES = {
    name.removeprefix("JOB_STATUS_").lower(): value
    for name, value in jobs_pb2.JobStatus.items()
    if value != jobs_pb2.JOB_STATUS_UNSPECIFIED
}


def with_key(submission: Submission) -> Submission:
    """The submission with an idempotency key, generated when it has none, so that a
    retried submit is the exact replay of the first (§7.2), never a second job."""
    if submission.idempotency_key:
        return submission
    return replace(submission, idempotency_key=f"arcp-client-{new_ulid()}")


def fill_submit(submit: jobs_pb2.JobSubmit, submission: Submission) -> None:
    """Fill ``submit`` (a request's own `JobSubmit`, empty) from a submission (§7.1);
    input that JSON cannot carry is ``InvalidRequest`` naming its place
    (``input.items[2]``). In place and touching only the fields the submission sets: a
    copy into the request, or a read of an absent lease, costs a submit tens of
    microseconds on a busy machine (issue 25: the client adds no latency over raw stubs)."""
    submit.agent = submission.agent
    if submission.idempotency_key:
        submit.idempotency_key = submission.idempotency_key
    if submission.trace_id:
        submit.trace_id = submission.trace_id
    if submission.input is not None:
        try:
            fill_value(submit.input, submission.input)
        except FieldError as exc:
            raise InvalidRequest(f"{exc.path('input')}: {exc.message}") from None
    if submission.lease or submission.budget:
        capabilities = submit.lease_request.capabilities
        for namespace, patterns in (submission.lease or {}).items():
            if isinstance(patterns, str):
                raise InvalidRequest(
                    f"lease[{namespace!r}] must be a list of patterns, not a string"
                )
            capabilities[namespace].patterns.extend(patterns)
        for currency, amount in (submission.budget or {}).items():
            capabilities[_BUDGET].patterns.append(f"{currency}:{amount}")
    if submission.lease_expires_at is not None:
        submit.lease_constraints.expires_at.FromDatetime(_utc(submission.lease_expires_at))
    if submission.max_runtime is not None:
        submit.max_runtime_sec = submission.max_runtime


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise InvalidRequest("lease_expires_at must be an aware datetime (with a timezone)")
    return moment


def list_filter(
    statuses: Iterable[str], agent: str, created_after: datetime | None
) -> jobs_pb2.ListJobsFilter:
    """The `ListJobsFilter` for `Client.list`: statuses by their spec names (§7.3)."""
    where = jobs_pb2.ListJobsFilter(agent=agent)
    for name in statuses:
        try:
            where.status.append(_STATUSES[name.lower()])
        except KeyError:
            raise InvalidRequest(
                f"status must be one of {', '.join(_STATUSES)}, not {name!r}"
            ) from None
    if created_after is not None:
        where.created_after.FromDatetime(_utc(created_after))
    return where
