"""Identifiers: ULIDs for envelopes and objects, W3C trace ids (§5, §11)."""

from __future__ import annotations

import random
import time

__all__ = ["new_id", "new_trace_id", "new_ulid"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every pair of Crockford digits, indexed by the 10 bits they encode.
_PAIRS = tuple(high + low for high in _CROCKFORD for low in _CROCKFORD)
_prefix_ms = -1
_prefix = ""


def new_ulid() -> str:
    """A ULID: 48-bit millisecond time and 80 random bits, Crockford base32.

    Made for every frame, so it is cheap (~0.4 µs): the 128 bits under two
    leading zero bits are 130 bits, 13 pairs of digits from a 1024-entry table.
    The first five pairs are the millisecond, written once per millisecond.
    """
    global _prefix_ms, _prefix
    ms = time.time_ns() // 1_000_000
    if ms != _prefix_ms:
        _prefix = "".join([_PAIRS[ms >> shift & 1023] for shift in (40, 30, 20, 10, 0)])
        _prefix_ms = ms
    # Uniqueness, not secrecy, is what an id needs: the fast PRNG (seeded from
    # os.urandom) is enough. Secrets (resume tokens) use `secrets` instead.
    bits = random.getrandbits(80)
    pairs = _PAIRS
    return "".join(
        (
            _prefix,
            pairs[bits >> 70],
            pairs[bits >> 60 & 1023],
            pairs[bits >> 50 & 1023],
            pairs[bits >> 40 & 1023],
            pairs[bits >> 30 & 1023],
            pairs[bits >> 20 & 1023],
            pairs[bits >> 10 & 1023],
            pairs[bits & 1023],
        )
    )


def new_id(prefix: str) -> str:
    """`prefix_` + ULID, the form ARCP uses for jobs, sessions and credentials."""
    return f"{prefix}_{new_ulid()}"


def new_trace_id() -> str:
    """A W3C trace id: 32 lowercase hex digits, never all zero (§11)."""
    while True:
        trace = f"{random.getrandbits(128):032x}"
        if trace != "0" * 32:
            return trace
