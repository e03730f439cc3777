"""The one mapping, at the service edge, of any failure to the ARCP error a client sees
(§12), which `arcp_grpc.grpc_status` turns into a gRPC status and the gateway into an
error frame. Every servicer (JobService, SessionService's Connect streams, the in-process
link behind them, WorkerService) ends a failed call through here.

- an ARCP error is the client's answer as raised;
- the store's own errors (`arcp_grpc.store.errors`): a transient `StoreFailed` is
  `StoreUnreachable` (retryable; UNAVAILABLE on gRPC), any other `StoreFailed` an
  INTERNAL_ERROR, a `StoreRejected` INVALID_REQUEST with its details. Their messages
  hold no driver text (the store logged that where it arose);
- anything else is a bug: INTERNAL_ERROR "internal error", its traceback logged here.
"""

from __future__ import annotations

import logging

from arcp_grpc.errors import ARCPError, InternalError, InvalidRequest, StoreUnreachable
from arcp_grpc.store import StoreFailed, StoreRejected

__all__ = ["arcp_error"]

log = logging.getLogger("arcp_grpc.service")


def arcp_error(exc: BaseException, where: str) -> ARCPError:
    """The ARCP error a client gets for `exc`, raised while serving `where` (an RPC or
    a frame type, named in the log)."""
    if isinstance(exc, ARCPError):
        return exc
    if isinstance(exc, StoreRejected):
        return InvalidRequest(exc.message, details=exc.details)
    if isinstance(exc, StoreFailed):
        if exc.transient:
            return StoreUnreachable(exc.message)
        return InternalError(exc.message)
    log.error("unexpected failure in %s", where, exc_info=exc)
    return InternalError("internal error")
