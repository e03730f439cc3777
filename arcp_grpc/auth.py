"""Bearer-token authentication (§6.1): tokens map to principals.

Tokens are kept only as SHA-256 digests, so the table in memory holds no
usable secret, and lookup by digest does not compare secrets byte by byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from arcp_grpc.errors import Unauthenticated
from arcp_grpc.v1 import session_pb2

__all__ = ["Authenticator", "Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller; `profile` picks the wire profile its sessions use."""

    name: str
    profile: int = session_pb2.WIRE_PROFILE_SPEC


class Authenticator:
    """Resolves bearer tokens to principals."""

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        self._by_digest = {_digest(token): p for token, p in principals.items()}

    @classmethod
    def from_tokens(
        cls, tokens: Mapping[str, str], profiles: Mapping[str, int] | None = None
    ) -> Authenticator:
        """From token → principal name, with optional principal name → wire profile."""
        profiles = profiles or {}
        return cls(
            {
                token: Principal(name, profiles.get(name, session_pb2.WIRE_PROFILE_SPEC))
                for token, name in tokens.items()
            }
        )

    def authenticate(self, token: str) -> Principal:
        if not token:
            raise Unauthenticated("a bearer token is required")
        principal = self._by_digest.get(_digest(token))
        if principal is None:
            raise Unauthenticated("the bearer token is not valid")
        return principal

    def authenticate_header(self, header: str | None) -> Principal:
        """From an `authorization: Bearer <token>` gRPC metadata value."""
        if not header:
            raise Unauthenticated("missing authorization metadata (Bearer token)")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthenticated("authorization metadata must use the Bearer scheme")
        return self.authenticate(token.strip())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
