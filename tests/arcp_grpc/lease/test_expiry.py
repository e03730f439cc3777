"""Lease expiry (§9.5): timestamps, ``expires_at``, a child's expiry and the lease clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from arcp_grpc.errors import InvalidRequest, LeaseSubsetViolation
from arcp_grpc.lease.expiry import (
    LeaseClock,
    child_expiry,
    format_timestamp,
    parse_expires_at,
    parse_timestamp,
)

NOW = datetime(2026, 5, 13, 19, 30, tzinfo=UTC)

# --------------------------------------------------------------------------
# Expiry (§9.5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-13T23:42:00Z", datetime(2026, 5, 13, 23, 42, tzinfo=UTC)),
        ("2026-05-13T23:42:00+00:00", datetime(2026, 5, 13, 23, 42, tzinfo=UTC)),
        ("2026-05-13T19:30:00.000001Z", datetime(2026, 5, 13, 19, 30, 0, 1, tzinfo=UTC)),
        ("2026-05-13T23:42:00.5Z", datetime(2026, 5, 13, 23, 42, 0, 500000, tzinfo=UTC)),
        ("2026-05-13T23:42:00.123456789Z", datetime(2026, 5, 13, 23, 42, 0, 123456, tzinfo=UTC)),
        ("2028-02-29T00:00:00Z", datetime(2028, 2, 29, tzinfo=UTC)),
    ],
)
def test_parse_expires_at_valid(text: str, expected: datetime) -> None:
    parsed = parse_expires_at(text, now=NOW)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "2026-05-13T23:42:00",  # naive
        "2026-05-14T01:42:00+02:00",  # the same instant, but not UTC
        "2026-05-13T23:42:00-00:00",
        "2026-05-13T23:42:00+0000",
        "2026-05-13 23:42:00Z",
        "2026-05-13t23:42:00z",
        "2026-05-13T23:42Z",
        "2026-05-13",
        "20260513T234200Z",
        "2026-02-30T00:00:00Z",
        "2026-05-13T24:00:00Z",
        "2026-05-13T23:59:60Z",
        "2026-05-13T23:42:00.Z",
        "2026-05-13T23:42:00Z ",
        "２０２６-05-13T23:42:00Z",
        "tomorrow",
        "",
        "2026-05-13T19:30:00Z",  # equal to now: not in the future
        "2026-05-13T19:29:59.999999Z",  # past
        "1999-01-01T00:00:00Z",
    ],
)
def test_parse_expires_at_rejects(text: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_expires_at(text, now=NOW)
    assert info.value.details == {"field": "lease_constraints.expires_at"}


def test_parse_expires_at_needs_aware_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_expires_at("2026-05-13T23:42:00Z", now=NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 5, 13, 23, 42, tzinfo=UTC), "2026-05-13T23:42:00Z"),
        (datetime(2026, 5, 13, 23, 42, 0, 500000, tzinfo=UTC), "2026-05-13T23:42:00.5Z"),
        (datetime(2026, 5, 14, 1, 42, tzinfo=timezone(timedelta(hours=2))), "2026-05-13T23:42:00Z"),
    ],
)
def test_format_timestamp(moment: datetime, text: str) -> None:
    assert format_timestamp(moment) == text
    assert parse_timestamp(text) == moment


def test_format_timestamp_rejects_naive() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_timestamp(datetime(2026, 1, 1))


_T1 = datetime(2026, 5, 13, 20, tzinfo=UTC)
_T2 = datetime(2026, 5, 13, 21, tzinfo=UTC)


@pytest.mark.parametrize(
    ("child", "parent", "effective"),
    [
        (None, None, None),
        (None, _T2, _T2),  # inherited implicitly (§9.4)
        (_T1, None, _T1),
        (_T1, _T2, _T1),  # earlier is fine
        (_T2, _T2, _T2),
    ],
)
def test_child_expiry(
    child: datetime | None, parent: datetime | None, effective: datetime | None
) -> None:
    assert child_expiry(child, parent) == effective


def test_child_expiry_later_than_parent_is_violation() -> None:
    with pytest.raises(LeaseSubsetViolation) as info:
        child_expiry(_T2, _T1)
    assert info.value.details == {"field": "lease_constraints.expires_at"}
    with pytest.raises(LeaseSubsetViolation):
        child_expiry(_T1 + timedelta(microseconds=1), _T1)


def test_lease_clock_uses_monotonic_deadline() -> None:
    clock = LeaseClock(NOW + timedelta(seconds=60), NOW, 1000.0)
    assert clock.deadline == 1060.0
    assert clock.expired(1000.0) is False
    assert clock.expired(1059.999) is False
    assert clock.expired(1060.0) is True  # at expires_at: expired (§9.5)
    assert clock.expired(2000.0) is True
    assert clock.seconds_left(1000.0) == 60.0
    assert clock.seconds_left(1059.5) == 0.5
    assert clock.seconds_left(1100.0) == 0.0


def test_lease_clock_accepts_keywords_and_other_offsets() -> None:
    wall = datetime(2026, 5, 13, 21, 30, tzinfo=timezone(timedelta(hours=2)))  # == NOW
    clock = LeaseClock(NOW + timedelta(seconds=1.5), wall_now=wall, mono_now=10.0)
    assert clock.seconds_left(10.0) == 1.5


def test_lease_clock_without_expiry_never_expires() -> None:
    clock = LeaseClock(None, NOW, 5.0)
    assert clock.deadline is None
    assert clock.expired(1e12) is False
    assert clock.seconds_left(1e12) is None


def test_lease_clock_already_past_is_expired_at_once() -> None:
    clock = LeaseClock(NOW - timedelta(seconds=1), NOW, 50.0)
    assert clock.expired(50.0) is True
    assert clock.seconds_left(50.0) == 0.0
