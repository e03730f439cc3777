"""The store's own two errors: what a caller of the store must tell apart, in the store's
words. The service edge maps them to ARCP and gRPC errors once
(`arcp_grpc.service.edge_errors`); the store raises no ARCP error itself.

    StoreError
     ├── StoreFailed    the store could not do it (`transient`: unreachable now, so
     │                  the same request later may succeed; else failed for good)
     └── StoreRejected  the request's own data was refused (a value a column cannot
                        hold, a cursor this runtime did not issue)

Neither carries a driver's text: the store logs that once, where it refused or failed,
and raises a message a client may read (issue 20).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["StoreError", "StoreFailed", "StoreRejected"]


class StoreError(Exception):
    """Base of the store's errors; `message` is safe to show a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StoreFailed(StoreError):
    """The store could not do what was asked: `transient` when it is unreachable now and
    the same request later may succeed, else it failed for good (a full disk, a
    statement the server refused for no fault of the request)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class StoreRejected(StoreError):
    """The request's own data was refused; `details` name what (`{"field": ...}`), in
    terms the client sent, never the driver's."""

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details: dict[str, Any] = dict(details or {})
