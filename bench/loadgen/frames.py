"""Pure builders for ARCP v1.1 JSON frames (§5.1 envelope), used by the lean generator.

No I/O here. The shapes follow the reference client: every envelope carries
``arcp: "1.1"``, a ULID ``id``, a ``type`` and a ``payload``; requests after the handshake
carry the ``session_id`` from ``session.welcome`` (§6.2).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

__all__ = [
    "LEAN_FEATURES",
    "PROTOCOL_VERSION",
    "bye_frame",
    "hello_frame",
    "new_ulid",
    "submit_frame",
]

PROTOCOL_VERSION = "1.1"

#: The v1.1 features (§6.3) the lean client offers. ``heartbeat`` is left out on purpose: the
#: lean client never answers pings, and the runtime must then not send any.
LEAN_FEATURES = (
    "ack",
    "list_jobs",
    "subscribe",
    "lease_expires_at",
    "cost.budget",
    "progress",
    "result_chunk",
    "agent_versions",
)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID (48-bit millisecond time, 80 random bits) in Crockford base32, 26 characters."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def _dump(envelope: dict[str, Any]) -> str:
    return json.dumps(envelope, separators=(",", ":"))


def hello_frame(env_id: str, token: str, features: tuple[str, ...] = LEAN_FEATURES) -> str:
    """``session.hello`` with bearer auth (§6.1, §6.3)."""
    return _dump(
        {
            "arcp": PROTOCOL_VERSION,
            "id": env_id,
            "type": "session.hello",
            "payload": {
                "client": {"name": "arcp-bench-lean", "version": "0.1.0"},
                "auth": {"scheme": "bearer", "token": token},
                "capabilities": {"encodings": ["json"], "features": list(features)},
            },
        }
    )


def submit_frame(
    env_id: str,
    session_id: str,
    agent: str,
    agent_input: Any,
    idempotency_key: str | None = None,
) -> str:
    """``job.submit`` with an empty lease request (§7.1); the key enables replay (§7.2)."""
    payload: dict[str, Any] = {"agent": agent, "input": agent_input, "lease_request": {}}
    if idempotency_key is not None:
        payload["idempotency_key"] = idempotency_key
    return _dump(
        {
            "arcp": PROTOCOL_VERSION,
            "id": env_id,
            "type": "job.submit",
            "session_id": session_id,
            "payload": payload,
        }
    )


def bye_frame(env_id: str, session_id: str) -> str:
    """``session.bye`` (§6.7)."""
    return _dump(
        {
            "arcp": PROTOCOL_VERSION,
            "id": env_id,
            "type": "session.bye",
            "session_id": session_id,
            "payload": {"reason": "bench done"},
        }
    )
