"""Leases (§9): what a job may do, how a request is matched against it, how a child's lease
is checked as a subset of its parent's, its budgets (§9.6) and its expiry (§9.5).

Pure: no I/O, no clock but the one a `LeaseClock` is given. The runtime and the agent
context build on it; it imports only `errors` and `base` (docs/architecture.md).
"""

from __future__ import annotations

from arcp_grpc.lease.budget import BudgetCounters, format_amount, parse_amount
from arcp_grpc.lease.expiry import (
    LeaseClock,
    child_expiry,
    format_timestamp,
    parse_expires_at,
    parse_timestamp,
)
from arcp_grpc.lease.lease import Lease

__all__ = [
    "BudgetCounters",
    "Lease",
    "LeaseClock",
    "child_expiry",
    "format_amount",
    "format_timestamp",
    "parse_amount",
    "parse_expires_at",
    "parse_timestamp",
]
