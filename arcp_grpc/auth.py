"""Bearer-token authentication (§6.1): tokens map to principals.

Tokens are kept only as SHA-256 digests, so the table in memory holds no
usable secret, and lookup by digest does not compare secrets byte by byte.

The wire profile is a property of the token, not only of the principal
(DESIGN.md, "Wire profile"): ``"tok" = "alice:sdk"`` lets one principal run a
published-SDK client beside a spec-exact one (``"tok2" = "alice"`` or
``"alice:spec"``). A token that names no profile gets its principal's
(``[auth] compat_principals``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from arcp_grpc.errors import Unauthenticated
from arcp_grpc.v1 import session_pb2

__all__ = ["PROFILE_NAMES", "Authenticator", "Principal", "parse_token_target"]

# What a token's target may name after its last ":" (`parse_token_target`).
PROFILE_NAMES: dict[str, int] = {
    "spec": session_pb2.WIRE_PROFILE_SPEC,
    "sdk": session_pb2.WIRE_PROFILE_SDK_COMPAT,
}


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
        """From token → ``"PRINCIPAL"`` or ``"PRINCIPAL:PROFILE"`` (`parse_token_target`),
        with principal name → its default wire profile."""
        profiles = profiles or {}
        principals: dict[str, Principal] = {}
        for token, target in tokens.items():
            name, profile = parse_token_target(target)
            if profile is None:
                profile = profiles.get(name, session_pb2.WIRE_PROFILE_SPEC)
            principals[token] = Principal(name, profile)
        return cls(principals)

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

    def authenticate_metadata(self, metadata: Iterable[tuple[str, str | bytes]]) -> Principal:
        """From a gRPC call's metadata (its `authorization` entry)."""
        for key, value in metadata:
            if key == "authorization":
                return self.authenticate_header(value if isinstance(value, str) else value.decode())
        return self.authenticate_header(None)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_token_target(target: str) -> tuple[str, int | None]:
    """``"alice"`` → ("alice", None); ``"alice:sdk"`` → ("alice", SDK_COMPAT). After the
    last ":" must come a profile name (`PROFILE_NAMES`): a typo is an error, not a new
    principal. Raises ValueError."""
    name, sep, profile = target.rpartition(":")
    if not sep:
        return target, None
    if not name or profile not in PROFILE_NAMES:
        raise ValueError(
            f"{target!r} is not PRINCIPAL or PRINCIPAL:PROFILE with PROFILE one of"
            f" {sorted(PROFILE_NAMES)}"
        )
    return name, PROFILE_NAMES[profile]
