"""The store: everything the core must not lose (jobs, events, idempotency claims, sessions,
the credential ledger), behind one protocol with two backends.

`arcp_grpc.store` is the protocol and its rows; `arcp_grpc.store.sqlite` (the embedded
default) and `arcp_grpc.store.postgres` (a cluster's) implement it; `url` parses a store URL,
`secretbox` seals secrets at rest and `copy` moves a SQLite store into PostgreSQL. The store
imports nothing above it: not the runtime, not a servicer (docs/architecture.md).
"""

from __future__ import annotations

from arcp_grpc.store.protocol import (
    ClusterMembership,
    ClusterStore,
    CredentialEntry,
    CredentialStore,
    EventRow,
    IdempotencyClaim,
    IdempotencyConflict,
    JobChanges,
    JobPage,
    JobQuery,
    JobRow,
    JobStore,
    SessionFollow,
    SessionFrame,
    SessionRow,
    SessionStore,
    Store,
    StoreUnavailable,
    UnrevokedCredential,
)

__all__ = [
    "ClusterMembership",
    "ClusterStore",
    "CredentialEntry",
    "CredentialStore",
    "EventRow",
    "IdempotencyClaim",
    "IdempotencyConflict",
    "JobChanges",
    "JobPage",
    "JobQuery",
    "JobRow",
    "JobStore",
    "SessionFollow",
    "SessionFrame",
    "SessionRow",
    "SessionStore",
    "Store",
    "StoreUnavailable",
    "UnrevokedCredential",
]
