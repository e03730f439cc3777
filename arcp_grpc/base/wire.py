"""Hand-framed protobuf fields, so bytes serialised once are sent as they are.

The idempotency cache stores `JobAccepted` bytes and the event log stores
`JobEvent` bytes; responses that embed them are built by prefixing a field
tag and length instead of parsing and re-serialising (§7.2: the replay is
the original, byte for byte).
"""

from __future__ import annotations

__all__ = ["field_payload", "length_delimited", "only_field", "varint"]


_ONE_BYTE = tuple(bytes((n,)) for n in range(0x80))


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer (one or two bytes on the
    hot path: tags, lengths and sequence numbers are small)."""
    if value < 0x80:
        return _ONE_BYTE[value]
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(field_number: int, payload: bytes) -> bytes:
    """A length-delimited (wire type 2) field holding `payload`."""
    return varint(field_number << 3 | 2) + varint(len(payload)) + payload


def only_field(message: bytes) -> tuple[int, bytes]:
    """(field number, payload) of a message that is one length-delimited field, such as
    a serialised `JobOutcome` (a oneof of two messages): its member, without parsing.
    A one-byte tag and length are read inline: a client reads every `SubmitJob` answer
    here, and the general varint loop is a measurable part of its cost (issue 25)."""
    if len(message) > 1 and message[0] < 0x80 and message[1] < 0x80:
        tag, length, offset = message[0], message[1], 2
    else:
        tag, offset = _read_varint(message, 0)
        length, offset = _read_varint(message, offset)
    if tag & 7 != 2 or offset + length != len(message):
        raise ValueError("not a single length-delimited field")
    return tag >> 3, message[offset:]


def field_payload(message: bytes, number: int) -> bytes | None:
    """The payload of length-delimited field `number` of a serialised message (its last
    occurrence, as a parser would keep), without parsing the rest: a client keeps the
    `JobAccepted` bytes a response embeds exactly as sent (§7.2)."""
    found: bytes | None = None
    offset = 0
    while offset < len(message):
        tag, offset = _read_varint(message, offset)
        wire_type = tag & 7
        if wire_type == 0:
            _, offset = _read_varint(message, offset)
            continue
        if wire_type in _FIXED:
            offset += _FIXED[wire_type]
            continue
        if wire_type != 2:
            raise ValueError(f"unsupported wire type {wire_type}")
        length, offset = _read_varint(message, offset)
        if offset + length > len(message):
            raise ValueError("truncated length-delimited field")
        if tag >> 3 == number:
            found = message[offset : offset + length]
        offset += length
    if offset != len(message):
        raise ValueError("truncated fixed-width field")
    return found


_FIXED = {1: 8, 5: 4}  # wire types I64 and I32: their width in bytes


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7
