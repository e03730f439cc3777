"""Submit fingerprints for idempotent replay (spec §7.2).

A resubmission with the same ``idempotency_key`` must get the first
``job.accepted`` back only if its parameters are identical; otherwise it is
``DUPLICATE_KEY``. "Identical" is decided by comparing a SHA-256 of one
canonical encoding of the parameters, stored next to the cached reply.

What counts as the same:

- ``agent`` exactly as requested: ``echo`` and ``echo@1.0.0`` differ even
  if the bare name resolves to 1.0.0 today, because it may not tomorrow.
- ``input`` as canonical JSON: object keys sorted, no whitespace, UTF-8.
  Numbers compare by value: an integral float within ±2**53 is written as
  an integer, so ``1`` and ``1.0`` are the same input. That is deliberate:
  on the way through ``google.protobuf.Value`` every JSON number becomes a
  double, so the same client input reaches the core as ``1`` over one route
  and ``1.0`` over another, and must not turn a replay into ``DUPLICATE_KEY``.
- ``lease_request`` with namespaces sorted and pattern order kept (the
  order is the client's statement; only JSON object order is meaningless).
- ``expires_at`` normalised to RFC 3339 UTC, so ``+00:00`` and ``Z`` (and
  ``.000``) agree; text that does not parse is kept verbatim.
- ``max_runtime_sec``, with ``None`` (no limit) distinct from ``0``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence

from arcp_grpc.errors import InvalidRequest
from arcp_grpc.lease import format_timestamp, parse_timestamp

__all__ = ["canonical_json", "submit_fingerprint"]

# Domain separation: a fingerprint can never equal a hash of other data.
_DOMAIN = b"arcp-grpc/submit-fingerprint/v1\n"
_MAX_SAFE_INTEGER = 2**53
_MAX_DEPTH = 200

_Json = None | bool | int | float | str | list["_Json"] | dict[str, "_Json"]


def _normalise(value: object, depth: int) -> _Json:
    if depth > _MAX_DEPTH:
        raise InvalidRequest("input is nested too deeply", details={"field": "input"})
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequest("input contains a non-finite number", details={"field": "input"})
        if value.is_integer() and abs(value) < _MAX_SAFE_INTEGER:
            return int(value)
        return value
    if isinstance(value, Mapping):
        result: dict[str, _Json] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidRequest(
                    "input object keys must be strings", details={"field": "input"}
                )
            result[key] = _normalise(item, depth + 1)
        return result
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_normalise(item, depth + 1) for item in value]
    raise InvalidRequest(
        f"input contains a {type(value).__name__}, which is not JSON",
        details={"field": "input"},
    )


def canonical_json(value: object) -> bytes:
    """One byte string per JSON value: sorted keys, no whitespace, UTF-8.

    Integral floats within ±2**53 are written as integers (see the module
    docstring); NaN, infinities, non-string keys and non-JSON types raise
    :class:`InvalidRequest`.
    """
    try:
        text = json.dumps(
            _normalise(value, 0),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise InvalidRequest(f"input is not encodable: {exc}", details={"field": "input"}) from None
    return text.encode("utf-8")


def _expiry(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return format_timestamp(parse_timestamp(text))
    except InvalidRequest:
        # Such a submit is rejected anyway; keep it distinct and deterministic.
        return text


def submit_fingerprint(
    *,
    agent: str,
    input_json: object,
    lease_request: Mapping[str, Sequence[str]],
    lease_constraints_expires_at: str | None,
    max_runtime_sec: int | None,
) -> bytes:
    """SHA-256 (32 bytes) of the submit parameters §7.2 compares.

    Each parameter changed alone changes the result; a reordered JSON object
    or different whitespace in the original text does not.
    """
    record = {
        "agent": agent,
        "expires_at": _expiry(lease_constraints_expires_at),
        "input": input_json,
        "lease_request": {
            namespace: list(lease_request[namespace]) for namespace in sorted(lease_request)
        },
        "max_runtime_sec": max_runtime_sec,
    }
    return hashlib.sha256(_DOMAIN + canonical_json(record)).digest()
