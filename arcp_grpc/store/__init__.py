"""The store: everything the core must not lose (jobs, events, idempotency claims, sessions,
the credential ledger), behind one protocol with two backends.

`arcp_grpc.store` is the protocol and its rows; `arcp_grpc.store.sqlite` (the embedded
default) and `arcp_grpc.store.postgres` (a cluster's) implement it; `url` parses a store URL,
`secretbox` seals secrets at rest and `copy` moves a SQLite store into PostgreSQL. The store
imports nothing above it: not the runtime, not a servicer, not the ARCP errors: it raises
its own (`errors`), which the service edge maps (docs/architecture.md).
"""

from __future__ import annotations

# The protocol and the store's errors are this package's face: their names, listed once,
# in each module's `__all__`.
from arcp_grpc.store import errors, protocol
from arcp_grpc.store.errors import *  # noqa: F403
from arcp_grpc.store.protocol import *  # noqa: F403

__all__ = protocol.__all__ + errors.__all__
