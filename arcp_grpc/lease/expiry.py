"""Lease expiry (§9.5): UTC timestamps, ``expires_at`` and the monotonic lease clock.

Time is its own concern, apart from grants: ``expires_at`` is validated once
at submission, a delegated lease never outlives its parent's (§9.4), and the
runtime enforces the deadline with a :class:`LeaseClock` on the monotonic
clock (§14). Nothing here reads the time; callers pass ``now``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from arcp_grpc.errors import InvalidRequest, LeaseSubsetViolation

__all__ = [
    "LeaseClock",
    "child_expiry",
    "format_timestamp",
    "parse_expires_at",
    "parse_timestamp",
]

_EXPIRES_FIELD = "lease_constraints.expires_at"
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(Z|\+00:00)"
)


def _expiry_error(message: str) -> InvalidRequest:
    return InvalidRequest(message, details={"field": _EXPIRES_FIELD})


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 UTC timestamp (``Z`` or ``+00:00``) into an aware datetime.

    §9.5 requires UTC; any other offset, a naive time, or a date that does
    not exist raises :class:`InvalidRequest` on ``lease_constraints.expires_at``.
    Fractions beyond microseconds are truncated.
    """
    if not isinstance(text, str) or len(text) > 64:
        raise _expiry_error("expires_at must be an RFC 3339 UTC timestamp string")
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise _expiry_error(f"expires_at {text!r} is not an RFC 3339 UTC timestamp (§9.5)")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micro = int((match.group(7) or "0").ljust(6, "0")[:6])
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError:
        raise _expiry_error(f"expires_at {text!r} is not a valid date and time") from None


def format_timestamp(moment: datetime) -> str:
    """The canonical RFC 3339 spelling: UTC, ``Z``, fraction only when non-zero."""
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_expires_at(text: str, *, now: datetime) -> datetime:
    """Validate ``lease_constraints.expires_at`` at submission (§9.5).

    It must be a UTC RFC 3339 timestamp strictly after ``now`` (an aware
    datetime the caller supplies); anything else is :class:`InvalidRequest`.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    moment = parse_timestamp(text)
    if moment <= now:
        raise _expiry_error(f"expires_at {text!r} is not in the future (§9.5)")
    return moment


def child_expiry(child: datetime | None, parent: datetime | None) -> datetime | None:
    """A delegated lease's effective expiry: never later than the parent's (§9.4).

    A child without one inherits the parent's; a later one is a
    :class:`LeaseSubsetViolation`.
    """
    if parent is None:
        return child
    if child is None:
        return parent
    if child > parent:
        raise LeaseSubsetViolation(
            f"expires_at {format_timestamp(child)} is after the parent's "
            f"{format_timestamp(parent)} (§9.4)",
            details={"field": _EXPIRES_FIELD},
        )
    return child


class LeaseClock:
    """A lease deadline on the monotonic clock (§9.5, §14).

    The wall-clock ``expires_at`` is converted once, at construction, into a
    monotonic deadline, so later wall-clock steps (NTP, operator changes)
    cannot shorten or extend a lease. Clocks are injected; nothing here reads
    the time.
    """

    __slots__ = ("_deadline", "expires_at")

    def __init__(self, expires_at: datetime | None, wall_now: datetime, mono_now: float) -> None:
        self.expires_at = expires_at
        self._deadline: float | None = None
        if expires_at is not None:
            remaining: timedelta = expires_at - wall_now
            self._deadline = mono_now + remaining.total_seconds()

    @property
    def deadline(self) -> float | None:
        """The monotonic time at which the lease expires, or ``None`` for never."""
        return self._deadline

    def expired(self, mono_now: float) -> bool:
        """True at or after the deadline (§9.5: "at or after ``expires_at``")."""
        return self._deadline is not None and mono_now >= self._deadline

    def seconds_left(self, mono_now: float) -> float | None:
        """Seconds until expiry (0.0 once expired), or ``None`` without a deadline."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - mono_now)
