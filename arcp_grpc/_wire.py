"""Hand-framed protobuf fields, so bytes serialised once are sent as they are.

The idempotency cache stores `JobAccepted` bytes and the event log stores
`JobEvent` bytes; responses that embed them are built by prefixing a field
tag and length instead of parsing and re-serialising (§7.2: the replay is
the original, byte for byte).
"""

from __future__ import annotations

__all__ = ["length_delimited", "varint"]


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def length_delimited(field_number: int, payload: bytes) -> bytes:
    """A length-delimited (wire type 2) field holding `payload`."""
    return varint(field_number << 3 | 2) + varint(len(payload)) + payload
