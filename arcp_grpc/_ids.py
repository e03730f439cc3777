"""Identifiers: ULIDs for envelopes and objects, W3C trace ids (§5, §11)."""

from __future__ import annotations

import base64
import random
import time

__all__ = ["new_id", "new_trace_id", "new_ulid"]

_CROCKFORD = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)


def new_ulid() -> str:
    """A ULID: 48-bit millisecond time and 80 random bits, Crockford base32.

    Made on every frame, so it runs in C: the 128 bits, shifted to sit under two
    leading zero bits of a 17-byte buffer, base32-encode to exactly the ULID's
    26 characters (RFC 4648 alphabet, then translated to Crockford's).
    """
    # Uniqueness, not secrecy, is what an id needs: the fast PRNG (seeded from
    # os.urandom) is enough. Secrets (resume tokens) use `secrets` instead.
    value = (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)
    raw = (value << 6).to_bytes(17, "big")
    return base64.b32encode(raw)[:26].translate(_FROM_RFC4648).decode()


def new_id(prefix: str) -> str:
    """`prefix_` + ULID, the form ARCP uses for jobs, sessions and credentials."""
    return f"{prefix}_{new_ulid()}"


def new_trace_id() -> str:
    """A W3C trace id: 32 lowercase hex digits, never all zero (§11)."""
    while True:
        trace = f"{random.getrandbits(128):032x}"
        if trace != "0" * 32:
            return trace
