"""Resume tokens (§6.3; DESIGN.md "Resume tokens"): which token may resume a session when.

Only a token's digest is kept. A resume rotates the token, and the one it was made
with stays valid until the client proves it has the new one (a lost welcome must
not lock it out) or the resume window ends. One pure function decides, and both the
in-memory sessions (SQLite) and the stored ones (PostgreSQL) use it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time

from arcp_grpc.errors import Unauthenticated

__all__ = ["RETIRED", "ResumeTokens", "check_resume_token", "digest"]

log = logging.getLogger("arcp_grpc.sessions")

RETIRED = 0.0  # `previous_until` once the successor token was used


class ResumeTokens:
    """The digests of one session's resume tokens, on this node's monotonic clock."""

    __slots__ = ("current", "previous", "previous_until")

    def __init__(self) -> None:
        self.current = b""
        # The token the last resume was made with: still valid (a lost welcome must not
        # lock the client out) until `previous_until` (monotonic), or until the client
        # uses the session it resumed (`prove`), which sets `previous_until` to RETIRED.
        self.previous = b""
        self.previous_until = 0.0

    def rotate(self) -> str:
        """A fresh resume token (≥128 bits); only its digest is kept (§6.3)."""
        token = "rt_" + secrets.token_urlsafe(32)
        self.current = digest(token)
        return token

    def check(self, session_id: str, token: str) -> None:
        """Raise `Unauthenticated` unless `token` may resume the session now."""
        check_resume_token(
            session_id,
            digest(token),
            self.current,
            self.previous,
            self.previous_until,
            time.monotonic(),
        )

    def rotate_after_resume(self, presented: str, window_sec: float) -> str:
        """The token for a resume made with `presented`, which stays valid until the
        client proves it has the new one, or `window_sec` (the resume window) ends."""
        self.previous = digest(presented)
        self.previous_until = time.monotonic() + window_sec
        return self.rotate()

    def prove(self) -> bool:
        """The client used the session it resumed, so it has the new token: the one it
        resumed with is dead from now on. True if that changed anything."""
        if not self.previous or self.previous_until == RETIRED:
            return False
        self.previous_until = RETIRED
        return True


def check_resume_token(
    session_id: str,
    presented: bytes,
    current: bytes,
    previous: bytes,
    previous_until: float,
    now: float,
) -> None:
    """Whether a token (its digest, `presented`) may resume a session (§6.3, DESIGN.md
    "Resume tokens"): the current token, or the one the last resume was made with while
    it is valid (until `previous_until`, on the clock `now` is read from). A previous
    token presented after its successor was used may have been stolen: refused, and
    logged at WARNING for the operator. Raises `Unauthenticated`."""
    if current and hmac.compare_digest(presented, current):
        return
    if previous and hmac.compare_digest(presented, previous):
        if previous_until == RETIRED:
            log.warning(
                "session %s: a resume token was presented after its successor was used;"
                " refused (possible theft of the token, §14)",
                session_id,
            )
        elif now < previous_until:
            return
    raise Unauthenticated("the resume token or principal does not match the session")


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
