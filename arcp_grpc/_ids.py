"""Identifiers: ULIDs for envelopes and objects, W3C trace ids (§5, §11)."""

from __future__ import annotations

import os
import time

__all__ = ["new_id", "new_trace_id", "new_ulid"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID: 48-bit millisecond time and 80 random bits, Crockford base32."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """`prefix_` + ULID, the form ARCP uses for jobs, sessions and credentials."""
    return f"{prefix}_{new_ulid()}"


def new_trace_id() -> str:
    """A W3C trace id: 32 lowercase hex digits, never all zero (§11)."""
    while True:
        trace = os.urandom(16).hex()
        if trace != "0" * 32:
            return trace
