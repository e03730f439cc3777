"""The job runtime: admission and exact replay (§7.2), execution, cancellation and expiry,
recovery, quotas, credentials and their ledger, live feeds, and a node's part in a cluster.

What the layers above use is exported here; the modules inside import each other by their
full path, never through this package (docs/architecture.md).
"""

from __future__ import annotations

from arcp_grpc.runtime.access import (
    authorize_cancel,
    authorize_observe,
    authorize_resume,
    authorize_session_cancel,
    authorize_subscribe,
)
from arcp_grpc.runtime.admission import Submission
from arcp_grpc.runtime.cluster import ClusterLimits
from arcp_grpc.runtime.disclosure import (
    BUDGET_FEATURE,
    CLEAR,
    CREDENTIALS_FEATURE,
    JOB_SERVICE_FEATURES,
    Disclosure,
    Transport,
)
from arcp_grpc.runtime.feed import JobFeed
from arcp_grpc.runtime.job_credentials import is_rotation
from arcp_grpc.runtime.job_runtime import JobRuntime
from arcp_grpc.runtime.limits import RuntimeLimits
from arcp_grpc.runtime.node_lease import NodeLease
from arcp_grpc.runtime.observe import RuntimeObserver
from arcp_grpc.runtime.queries import job_query
from arcp_grpc.runtime.quotas import PER_PRINCIPAL, QuotaLimits, Quotas
from arcp_grpc.runtime.supervisor import Supervisor
from arcp_grpc.runtime.workers import WorkerDirectory, WorkerLimits, WorkerLink

__all__ = [
    "BUDGET_FEATURE",
    "CLEAR",
    "CREDENTIALS_FEATURE",
    "JOB_SERVICE_FEATURES",
    "PER_PRINCIPAL",
    "ClusterLimits",
    "Disclosure",
    "JobFeed",
    "JobRuntime",
    "NodeLease",
    "QuotaLimits",
    "Quotas",
    "RuntimeLimits",
    "RuntimeObserver",
    "Submission",
    "Supervisor",
    "Transport",
    "WorkerDirectory",
    "WorkerLimits",
    "WorkerLink",
    "authorize_cancel",
    "authorize_observe",
    "authorize_resume",
    "authorize_session_cancel",
    "authorize_subscribe",
    "is_rotation",
    "job_query",
]
