"""W3C `traceparent` parsing (§11): what the runtime takes from a caller, and what it ignores."""

from __future__ import annotations

import pytest

from arcp_grpc.tracing.traceparent import (
    Remote,
    format_traceparent,
    parse_traceparent,
    trace_id_of,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_sound_header_names_the_callers_span() -> None:
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-01") == Remote(TRACE, SPAN, sampled=True)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00") == Remote(TRACE, SPAN, sampled=False)
    # A later version may add fields; what version 00 defines is still read (W3C §3.2.4).
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-more") == Remote(TRACE, SPAN, sampled=True)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"00-{TRACE.upper()}-{SPAN}-01",  # uppercase hex
        f"00-{TRACE[:-1]}-{SPAN}-01",
    ],
)
def test_a_header_w3c_says_to_ignore_names_nothing(header: str) -> None:
    assert parse_traceparent(header) is None
    assert trace_id_of(header) == ""


def test_the_trace_id_of_a_header_and_a_header_of_our_span_round_trip() -> None:
    header = format_traceparent(TRACE, SPAN, sampled=True)
    assert header == f"00-{TRACE}-{SPAN}-01"
    assert trace_id_of(header) == TRACE
