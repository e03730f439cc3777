"""Identifiers: ULIDs for envelopes and objects, W3C trace ids (§5, §11)."""

from __future__ import annotations

import random
import time

__all__ = ["new_id", "new_trace_id", "new_ulid"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every pair of Crockford digits, indexed by the 10 bits they encode.
_PAIRS = tuple(high + low for high in _CROCKFORD for low in _CROCKFORD)
_PAIR_SHIFTS = tuple(range(120, -1, -10))


def new_ulid() -> str:
    """A ULID: 48-bit millisecond time and 80 random bits, Crockford base32.

    Made for every frame, so it is cheap: the 128 bits under two leading zero
    bits are 130 bits, written as 13 pairs of digits from a 1024-entry table.
    """
    # Uniqueness, not secrecy, is what an id needs: the fast PRNG (seeded from
    # os.urandom) is enough. Secrets (resume tokens) use `secrets` instead.
    value = (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)
    return "".join([_PAIRS[value >> shift & 1023] for shift in _PAIR_SHIFTS])


def new_id(prefix: str) -> str:
    """`prefix_` + ULID, the form ARCP uses for jobs, sessions and credentials."""
    return f"{prefix}_{new_ulid()}"


def new_trace_id() -> str:
    """A W3C trace id: 32 lowercase hex digits, never all zero (§11)."""
    while True:
        trace = f"{random.getrandbits(128):032x}"
        if trace != "0" * 32:
            return trace
