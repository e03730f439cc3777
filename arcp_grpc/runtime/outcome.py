"""How a failure becomes a job's outcome, and a stored status its enum: shared by the
executor (a job's end), recovery (an interrupted job's end) and the queries.

A cancel ends a job `cancelled` and a deadline `timed_out` (§7.3, §7.4); every other
error ends it in `error`.
"""

from __future__ import annotations

from arcp_grpc.base.stamps import stamp
from arcp_grpc.errors import ARCPError
from arcp_grpc.v1 import jobs_pb2

__all__ = ["failure", "status"]

_STATUS_OF_CODE = {
    "CANCELLED": jobs_pb2.JOB_STATUS_CANCELLED,
    "TIMEOUT": jobs_pb2.JOB_STATUS_TIMED_OUT,
}


def failure(job_id: str, error: ARCPError) -> jobs_pb2.JobOutcome:
    """The outcome of a job that ended with `error`."""
    failed = jobs_pb2.JobError(
        job_id=job_id,
        final_status=_STATUS_OF_CODE.get(error.code, jobs_pb2.JOB_STATUS_ERROR),
        error=error.to_proto(),
    )
    stamp(failed.completed_at)
    return jobs_pb2.JobOutcome(error=failed)


def status(value: int) -> jobs_pb2.JobStatus.ValueType:
    """A stored status as the contract's enum."""
    return jobs_pb2.JobStatus.ValueType(value)
