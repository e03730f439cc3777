"""Every contract message serialises and parses back equal (spec §5: JSON values
inside frames must survive the trip exactly)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from arcp_grpc.v1 import (
    errors_pb2,
    events_pb2,
    job_service_pb2,
    jobs_pb2,
    lease_pb2,
    session_pb2,
    session_service_pb2,
)

MODULES = [
    errors_pb2,
    events_pb2,
    jobs_pb2,
    lease_pb2,
    session_pb2,
    session_service_pb2,
    job_service_pb2,
]

# Free-form JSON that must cross the contract intact.
AWKWARD_JSON: Any = {
    "object": {"nested": {"deeper": [1, 2, {"k": "v"}]}},
    "array": [None, True, False, 0, -1, 3.5, "x", [], {}],
    "unicode": 'héllo ✓ 日本語 🚀 \u0000 "quoted" \\ back',
    "null": None,
    "booleans": [True, False],
    "large": 9007199254740991,  # 2**53 - 1, the largest exact double integer
    "negative_large": -9007199254740991,
    "fractional": 0.1 + 0.2,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "empty_string": "",
    "": "empty key",
}


def _all_messages() -> list[Descriptor]:
    found: list[Descriptor] = []
    for module in MODULES:
        found.extend(module.DESCRIPTOR.message_types_by_name.values())
    return found


def _fill(message: Message, depth: int = 0) -> None:
    """Set every field of `message` (first member of each oneof) to a non-default value."""
    seen_oneofs: set[str] = set()
    for field in message.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if oneof is not None and not oneof.name.startswith("_"):
            if oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(oneof.name)
        _set(message, field, depth)  # type: ignore[arg-type]


def _scalar(field: FieldDescriptor) -> Any:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return "s-ü-🚀"
    if t == FieldDescriptor.TYPE_BYTES:
        return b"\x00\xff bytes"
    if t == FieldDescriptor.TYPE_BOOL:
        return True
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 0.5
    if t == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return field.enum_type.values[-1].number
    return 7


def _set(message: Message, field: FieldDescriptor, depth: int) -> None:
    is_repeated = field.is_repeated
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        container = getattr(message, field.name)
        key = _scalar(key_field)
        if value_field.message_type is None:
            container[key] = _scalar(value_field)
        else:
            _fill(container[key], depth + 1)
        return
    if field.message_type is not None:
        full = field.message_type.full_name
        if full == "google.protobuf.Value":
            target = (
                getattr(message, field.name).add() if is_repeated else getattr(message, field.name)
            )
            struct = struct_pb2.Struct()
            struct.update(AWKWARD_JSON)
            target.struct_value.CopyFrom(struct)
            return
        if full == "google.protobuf.Struct":
            target = (
                getattr(message, field.name).add() if is_repeated else getattr(message, field.name)
            )
            target.update(AWKWARD_JSON)
            return
        if full == "google.protobuf.Timestamp":
            target = (
                getattr(message, field.name).add() if is_repeated else getattr(message, field.name)
            )
            target.FromJsonString("2026-05-13T19:42:13.123456Z")
            return
        if depth > 4:
            return
        child = getattr(message, field.name).add() if is_repeated else getattr(message, field.name)
        _fill(child, depth + 1)
        if not is_repeated and not child.ListFields():
            child.SetInParent()
        return
    if is_repeated:
        getattr(message, field.name).append(_scalar(field))
    else:
        setattr(message, field.name, _scalar(field))


@pytest.mark.parametrize("descriptor", _all_messages(), ids=lambda d: d.full_name)
def test_message_roundtrips(descriptor: Descriptor) -> None:
    cls = GetMessageClass(descriptor)
    original = cls()
    _fill(original)
    wire = original.SerializeToString(deterministic=True)
    parsed = cls.FromString(wire)
    assert parsed == original
    assert parsed.SerializeToString(deterministic=True) == wire  # deterministic: same bytes


@pytest.mark.parametrize("descriptor", _all_messages(), ids=lambda d: d.full_name)
def test_every_oneof_member_roundtrips(descriptor: Descriptor) -> None:
    """Each alternative of each oneof (every frame type, every event kind) survives."""
    cls = GetMessageClass(descriptor)
    for oneof in descriptor.oneofs:
        for field in oneof.fields:
            message = cls()
            _set(message, field, 0)
            if field.message_type is not None:
                getattr(message, field.name).SetInParent()
            assert message.WhichOneof(oneof.name) == field.name
            parsed = cls.FromString(message.SerializeToString())
            assert parsed == message
            assert parsed.WhichOneof(oneof.name) == field.name


def test_free_form_values_keep_every_json_shape() -> None:
    submit = jobs_pb2.JobSubmit(agent="echo")
    submit.input.struct_value.update(AWKWARD_JSON)
    parsed = jobs_pb2.JobSubmit.FromString(submit.SerializeToString())
    from google.protobuf import json_format

    back = json_format.MessageToDict(parsed.input)
    assert back == AWKWARD_JSON
    assert math.isclose(back["fractional"], 0.30000000000000004, rel_tol=0, abs_tol=0)
    assert back["large"] == 2**53 - 1
    assert back["null"] is None


def test_credentials_survive_inside_accepted() -> None:
    accepted = jobs_pb2.JobAccepted(job_id="job_1", agent="echo@1.0.0", budget={"USD": "5.00"})
    cred = accepted.credentials.add(
        id="cred_1",
        scheme="bearer",
        value="sk-virt-x",
        endpoint="https://llm.example/v1",
        profile="openai",
    )
    cred.constraints.capabilities["model.use"].patterns.append("tier-fast/*")
    cred.constraints.expires_at.FromJsonString("2026-05-13T23:42:00Z")
    parsed = jobs_pb2.JobAccepted.FromString(accepted.SerializeToString(deterministic=True))
    assert parsed.credentials[0].value == "sk-virt-x"
    assert list(parsed.credentials[0].constraints.capabilities["model.use"].patterns) == [
        "tier-fast/*"
    ]
