"""Deterministic mutators for the fuzz targets: byte edits plus edits that keep the
input's structure (a JSON value, a protobuf field), so most inputs get past the
parser and reach the rules behind it. Random byte edits alone mostly produce
invalid JSON or broken varints, which only exercise the first few lines.

Used by the pytest smoke run with a seeded `random.Random`, and by atheris as its
custom mutator (seeded from libFuzzer's seed), so both runs share the same ideas.
"""

from __future__ import annotations

import json
import random
from typing import Any, Final

from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from arcp_grpc.v1 import session_service_pb2 as spb
from tests.fuzz.targets import JOB_REQUESTS

__all__ = ["MAX_INPUT_BYTES", "mutate"]

MAX_INPUT_BYTES: Final = 64 * 1024

# Tokens that have found bugs in parsers like these: JSON structure, numbers a double
# cannot carry, lone surrogates, line breaks, and protobuf varints and lengths.
TOKENS: Final = (
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"1e999",
    b"NaN",
    b"-Infinity",
    b"-0",
    b"9" * 30,
    b'"\\ud800"',
    b'"\\u0000"',
    b"\n",
    "\u2028".encode(),
    "\U0001f600".encode(),
    b"\x00",
    b"\xff",
    b"[" * 40,
    b'{"a":' * 30,
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
    b"\xff\xff\xff\xff\x0f",
    b"\x0a\x7f",
    b"\x12\x00",
)

STRINGS: Final = (
    "",
    " ",
    "x" * 129,
    "x" * 257,
    "x" * 1025,
    "y" * 5000,
    "a\nb",
    "a\r\nCRITICAL forged",
    "\u2028",
    "\x00",
    "\x85",
    "é",
    "\U0001f600",
    "0" * 32,
    "4bf92f3577b34da6a3ce929d0e0e4736",
    "4BF92F3577B34DA6A3CE929D0E0E4736",
    "job_01JABCDEFGHJKMNPQRSTVWXYZ",
    "echo@1.0.0",
    "ECHO",
    "a@b@c",
    "/../../etc/passwd",
    "https://u@h/**",
    "USD:-1",
    "USD:1e999",
    "**",
    "%2e%2e/",
    "2026-13-45T99:99:99Z",
)
INTEGERS: Final = (0, 1, -1, 2**31 - 1, 2**32, 2**53 + 1, 2**62, 2**63 - 1, -(2**63), 2**64 - 1)
NUMBERS: Final = (0.5, -0.0, 1e308, float("nan"), float("inf"), float("-inf"), 2.0**64)


def mutate(target: str, data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """One mutation of `data` for `target`: a third byte edits, the rest structural."""
    if rng.randrange(3) == 0:
        return _bytes(data, rng, seeds)
    if target == "client_frame":
        return _json(data, rng)
    if target == "connect_request":
        return _proto(data, spb.ConnectRequest, rng) or _bytes(data, rng, seeds)
    if not data:
        return bytes([rng.randrange(len(JOB_REQUESTS))])
    message = JOB_REQUESTS[data[0] % len(JOB_REQUESTS)]
    body = _proto(data[1:], message, rng)
    return data[:1] + body if body is not None else _bytes(data, rng, seeds)


def _bytes(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """One to four byte-level edits: flip, insert, delete, duplicate, splice, replace."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        at = rng.randint(0, len(out))
        if op == 0 and out:
            index = rng.randrange(len(out))
            out[index] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[at:at] = rng.choice(TOKENS)
        elif op == 2 and out:
            del out[at : at + rng.randint(1, 16)]
        elif op == 3 and out:
            start = rng.randrange(len(out))
            out[at:at] = out[start : start + rng.randint(1, 64)]
        elif op == 4:
            other = rng.choice(seeds)
            cut = rng.randint(0, len(other))
            out[at:] = other[cut:]
        else:
            out[at : at + rng.randint(0, 8)] = rng.choice(TOKENS)
    return bytes(out[:MAX_INPUT_BYTES])


# -- JSON: edit one node of the parsed frame ---------------------------------------


def _json(data: bytes, rng: random.Random) -> bytes:
    try:
        tree = json.loads(data)
    except (ValueError, RecursionError):
        return _bytes(data, rng, [data])
    for _ in range(rng.randint(1, 3)):
        tree = _edit(tree, rng, depth=0)
    text = json.dumps(tree, allow_nan=True, ensure_ascii=rng.random() < 0.5)
    return text.encode("utf-8", "surrogatepass")[:MAX_INPUT_BYTES]


def _edit(node: Any, rng: random.Random, depth: int) -> Any:
    """`node` with one descendant (or itself) replaced, removed or added to."""
    if isinstance(node, dict) and node and rng.random() < 0.8:
        # At the envelope, mostly the payload: that is where the frame types differ.
        key = "payload" if depth == 0 and "payload" in node and rng.random() < 0.7 else None
        key = key or rng.choice(list(node))
        choice = rng.randrange(10)
        if choice == 0:
            del node[key]
        elif choice == 1:
            node[rng.choice((*STRINGS[:6], key + "_x"))] = _value(rng, depth)
        else:
            node[key] = _edit(node[key], rng, depth + 1)
        return node
    if isinstance(node, list) and node and rng.random() < 0.8:
        index = rng.randrange(len(node))
        node[index] = _edit(node[index], rng, depth + 1)
        return node
    return _value(rng, depth)


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(8)
    if kind == 0:
        return rng.choice(STRINGS)
    if kind == 1:
        return rng.choice(INTEGERS)
    if kind == 2:
        return rng.choice(NUMBERS)
    if kind == 3:
        return rng.choice((None, True, False, [], {}))
    if kind == 4:
        nested: Any = rng.choice(INTEGERS)
        for _ in range(rng.choice((23, 24, 25, 40))):
            nested = [nested] if rng.random() < 0.5 else {"k": nested}
        return nested
    if kind == 5 and depth < 6:
        return {rng.choice(STRINGS[:8]): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if kind == 6 and depth < 6:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice(STRINGS) * rng.randint(1, 3)


# -- protobuf: set one field anywhere in the parsed message -------------------------


def _proto(data: bytes, message_type: type[Message], rng: random.Random) -> bytes | None:
    try:
        message = message_type.FromString(data)
    except (DecodeError, RecursionError, ValueError):
        return None
    for _ in range(rng.randint(1, 3)):
        _set_field(message, rng, depth=0)
    return message.SerializeToString()[:MAX_INPUT_BYTES]


def _set_field(message: Message, rng: random.Random, depth: int) -> None:
    if isinstance(message, struct_pb2.Value):
        _set_value(message, rng, depth)
        return
    fields = message.DESCRIPTOR.fields
    if not fields:
        return
    field: Any = fields[rng.randrange(len(fields))]  # upb's or the Python FieldDescriptor
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        container: Any = getattr(message, field.name)
        key = rng.choice(("fs.read", "net.fetch", "cost.budget", "x-acme", "", *STRINGS[:8]))
        value_field = field.message_type.fields_by_name["value"]
        if value_field.type == FieldDescriptor.TYPE_MESSAGE:
            _set_field(container[key], rng, depth + 1)
        else:
            container[key] = rng.choice(STRINGS)
        return
    repeated = field.is_repeated
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        target = getattr(message, field.name).add() if repeated else getattr(message, field.name)
        if depth < 8:
            _set_field(target, rng, depth + 1)
        else:
            target.SetInParent()
        return
    value = _scalar(field, rng)
    if value is None:
        return
    try:
        if repeated:
            getattr(message, field.name).append(value)
        else:
            setattr(message, field.name, value)
    except (TypeError, ValueError):
        pass  # out of range for this field's type: protobuf itself refuses it


def _scalar(field: Any, rng: random.Random) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return rng.choice(STRINGS)
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice(NUMBERS)
    if kind == FieldDescriptor.TYPE_ENUM:
        return rng.choice((0, 1, 2, 7, 99, -1))
    if kind == FieldDescriptor.TYPE_BYTES:
        return rng.choice(STRINGS).encode("utf-8", "surrogatepass")
    return rng.choice(INTEGERS)


def _set_value(value: struct_pb2.Value, rng: random.Random, depth: int) -> None:
    kind = rng.randrange(6)
    if kind == 0:
        value.number_value = rng.choice(NUMBERS)
    elif kind == 1:
        value.string_value = rng.choice(STRINGS)
    elif kind == 2:
        inner = value
        for _ in range(rng.choice((23, 24, 25, 32))):
            inner = inner.list_value.values.add()
        inner.number_value = rng.choice(NUMBERS)
    elif kind == 3 and depth < 8:
        _set_value(value.struct_value.fields[rng.choice(STRINGS[:8])], rng, depth + 1)
    elif kind == 4 and depth < 8:
        _set_value(value.list_value.values.add(), rng, depth + 1)
    else:
        value.null_value = struct_pb2.NULL_VALUE
