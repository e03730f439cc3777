"""Free-form JSON values (`input`, results, tool arguments) to and from
`google.protobuf.Value`, written by hand.

The runtime and the gateway convert these on every job, so this avoids
``json_format`` (about 3x slower on a 180-node value, see gateway/_values.py)
and gives both sides one meaning: integral doubles within ±2^53 come back as
integers, object keys come back sorted (protobuf map order is not stable), a
number a double cannot carry exactly is refused, and nesting is capped so
every message stays parseable.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Final

from google.protobuf import struct_pb2

__all__ = [
    "MAX_SAFE_INTEGER",
    "MAX_VALUE_DEPTH",
    "BadNumber",
    "FieldError",
    "fill_struct",
    "fill_value",
    "json_number",
    "number",
    "struct_to_py",
    "value_to_py",
]

MAX_SAFE_INTEGER: Final = 2**53
"""Largest integer magnitude a double (and a JavaScript client) holds exactly."""

MAX_VALUE_DEPTH: Final = 24
"""Deepest nesting of objects/arrays accepted in a free-form value.

protobuf parsers refuse messages nested deeper than 100; each JSON level of a
``Value`` costs three message levels, so ``job.submit.input`` breaks at 33
levels. 24 leaves room for the core to wrap the value in its own messages."""


class FieldError(Exception):
    """A bad field found below the top of a value; ``path`` grows while unwinding.

    The gateway codec turns it into INVALID_REQUEST, the runtime (an agent's result)
    into INTERNAL_ERROR. Building the path on the way out keeps the success path
    free of string work.
    """

    def __init__(self, message: str, *segments: str) -> None:
        super().__init__(message)
        self.message = message
        self.segments = list(segments)

    def under(self, segment: str) -> FieldError:
        """Prefix a path segment (``.key`` or ``[i]``) and return self for re-raise."""
        self.segments.append(segment)
        return self

    def path(self, root: str) -> str:
        """The full dotted path below ``root``."""
        return root + "".join(reversed(self.segments))


class BadNumber:
    """A JSON number token the codec must not carry silently (see module doc)."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"BadNumber({self.token!r})"


def number(obj: Any) -> float | None:
    """A JSON number as a double, or None when ``obj`` is not a usable number."""
    kind = type(obj)
    if kind is int or kind is float:
        return float(obj)
    if kind is Decimal:
        value = float(obj)
        return value if math.isfinite(value) else None
    return None


def fill_value(msg: struct_pb2.Value, obj: Any, depth: int = 0) -> None:
    """Set ``msg`` to the JSON value ``obj``; raise FieldError for what it cannot carry."""
    kind = type(obj)
    if kind is str:
        try:
            msg.string_value = obj
        except UnicodeEncodeError:
            raise FieldError("string is not valid Unicode (lone surrogate)") from None
    elif kind is bool:
        msg.bool_value = obj
    elif kind is int:
        msg.number_value = obj
    elif kind is float:
        if not math.isfinite(obj):
            raise FieldError(f"number {obj} is not JSON (NaN and Infinity are not numbers)")
        msg.number_value = obj
    elif obj is None:
        msg.null_value = struct_pb2.NULL_VALUE
    elif kind is dict:
        if depth >= MAX_VALUE_DEPTH:
            raise FieldError(f"value nested deeper than {MAX_VALUE_DEPTH} levels")
        fill_struct(msg.struct_value, obj, depth + 1)
    elif kind is list:
        if depth >= MAX_VALUE_DEPTH:
            raise FieldError(f"value nested deeper than {MAX_VALUE_DEPTH} levels")
        values = msg.list_value
        values.SetInParent()
        add = values.values.add
        for index, item in enumerate(obj):
            try:
                fill_value(add(), item, depth + 1)
            except FieldError as exc:
                raise exc.under(f"[{index}]") from None
    elif kind is Decimal:
        value = number(obj)
        if value is None:
            raise FieldError(f"number {obj} cannot be represented exactly")
        msg.number_value = value
    elif kind is BadNumber:
        raise FieldError(
            f"number {obj.token} cannot be represented exactly "
            f"(integers must be within ±2^53, NaN and Infinity are not JSON)"
        )
    else:
        # Subclasses (an IntEnum, an OrderedDict from an agent) as their JSON base type;
        # json.loads never yields them, so the codec's path never gets here.
        for base in _JSON_BASES:
            if isinstance(obj, base):
                fill_value(msg, base(obj), depth)
                return
        raise FieldError(f"{kind.__name__} is not a JSON value")


_JSON_BASES: Final[tuple[type[Any], ...]] = (bool, int, float, str, dict, list)


def fill_struct(msg: struct_pb2.Struct, obj: dict[str, Any], depth: int = 0) -> None:
    """Set ``msg`` to the JSON object ``obj`` (see :func:`fill_value`)."""
    msg.SetInParent()
    fields = msg.fields
    for key, item in obj.items():
        try:
            entry = fields[key]
        except UnicodeEncodeError:
            raise FieldError("object key is not valid Unicode (lone surrogate)").under(
                f".{key!a}"
            ) from None
        try:
            fill_value(entry, item, depth)
        except FieldError as exc:
            raise exc.under(f".{key}") from None


def json_number(value: float) -> int | float:
    """A double as the JSON number it renders as (integral values as integers)."""
    if not math.isfinite(value):
        raise ValueError(f"non-finite number {value!r} cannot be rendered as JSON")
    # Integral doubles print as integers (`3`, not `3.0`) so counts and ids an
    # agent wrote as integers come back as integers; -0.0 keeps its sign.
    if (
        value.is_integer()
        and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
        and (value or math.copysign(1.0, value) > 0)
    ):
        return int(value)
    return value


def value_to_py(msg: struct_pb2.Value) -> Any:
    """The JSON value of ``msg`` as Python data; an unset Value is null."""
    kind = msg.WhichOneof("kind")
    if kind == "string_value":
        return msg.string_value
    if kind == "number_value":
        return json_number(msg.number_value)
    if kind == "bool_value":
        return msg.bool_value
    if kind == "struct_value":
        return struct_to_py(msg.struct_value)
    if kind == "list_value":
        return [value_to_py(item) for item in msg.list_value.values]
    return None


def struct_to_py(msg: struct_pb2.Struct) -> dict[str, Any]:
    """The JSON object of ``msg`` with sorted keys (deterministic output)."""
    fields = msg.fields
    return {key: value_to_py(fields[key]) for key in sorted(fields)}
