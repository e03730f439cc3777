"""What a PostgreSQL driver error means to the store's caller, in the store's own words
(`arcp_grpc.store.errors`): the request's data refused, or the store failed.

The driver's text names the schema's columns and constraints and may quote the value
itself: it is logged here, once, where the store refused or failed, and never raised.
A lost connection is neither (`reconnect.is_connection_loss`): the writer reconnects,
and a read says the store is unreachable for now.
"""

from __future__ import annotations

import logging

import asyncpg

from arcp_grpc.store.errors import StoreError, StoreFailed, StoreRejected
from arcp_grpc.store.postgres.reconnect import is_connection_loss

__all__ = ["DRIVER_ERRORS", "read_error", "request_error"]

log = logging.getLogger("arcp_grpc.postgres_store")

# Everything the driver raises for a statement or a connection (asyncpg's and the socket's).
DRIVER_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)

# What a client is told of a refused value, by the server's SQLSTATE (the client's terms).
_REFUSED: tuple[tuple[type[asyncpg.PostgresError], str], ...] = (
    (asyncpg.CharacterNotInRepertoireError, "a text holds a character it cannot keep (NUL)"),
    (asyncpg.UntranslatableCharacterError, "a text holds a character it cannot keep (NUL)"),
    (asyncpg.StringDataRightTruncationError, "a text is too long"),
    (asyncpg.NumericValueOutOfRangeError, "a number is out of range"),
    (asyncpg.IntegrityConstraintViolationError, "a value conflicts with one it holds"),
)


def request_error(exc: BaseException) -> StoreRejected | None:
    """The caller's error when the request's own data caused `exc` (a NUL in a text
    field, a value out of range), logged with the driver's text; None when the store
    itself failed."""
    if not isinstance(exc, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError):
        return None
    log.warning("the store refused a value of a request (SQLSTATE %s): %s", exc.sqlstate, exc)
    what = next((text for kind, text in _REFUSED if isinstance(exc, kind)), "")
    return StoreRejected(f"the store refused a value: {what or 'one it cannot hold'}")


def read_error(exc: BaseException) -> StoreError | None:
    """The store's error for a read's driver error: unreachable now (transient), the
    request's data refused, or the store failed (the driver's text logged); None when
    `exc` is not the driver's."""
    if is_connection_loss(exc):
        return StoreFailed("the store is unreachable; try again shortly", transient=True)
    if not isinstance(exc, DRIVER_ERRORS):
        return None
    rejected = request_error(exc)
    if rejected is not None:
        return rejected
    log.error("a read of the store failed: %s", exc)
    return StoreFailed("the store failed")
