"""Identifiers have the shapes ARCP requires (§5 envelope ids, §11 trace ids)."""

from __future__ import annotations

import re
import time

from arcp_grpc.base.ids import new_id, new_trace_id, new_ulid

ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}\Z")  # the published client's own pattern
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _decode(ulid: str) -> int:
    value = 0
    for char in ulid:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_ulids_are_well_formed_and_unique() -> None:
    ids = [new_ulid() for _ in range(5000)]
    assert all(ULID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_ulid_carries_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    stamp = _decode(new_ulid()) >> 80
    after = time.time_ns() // 1_000_000
    assert before <= stamp <= after


def test_prefixed_ids() -> None:
    job_id = new_id("job")
    assert job_id.startswith("job_")
    assert ULID.match(job_id.removeprefix("job_"))


def test_trace_ids_are_w3c() -> None:
    traces = {new_trace_id() for _ in range(1000)}
    assert len(traces) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) and t != "0" * 32 for t in traces)
