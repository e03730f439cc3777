"""Hand-framed protobuf fields parse exactly as protobuf's own encoding (§7.2 replay
bytes are spliced into responses with these)."""

from __future__ import annotations

import pytest

from arcp_grpc.base.wire import field_payload, length_delimited, only_field, varint
from arcp_grpc.v1 import events_pb2, job_service_pb2, jobs_pb2


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16_383, 16_384, 2_000_000])
def test_spliced_accepted_parses_as_the_response(size: int) -> None:
    accepted = jobs_pb2.JobAccepted(job_id="job_1", agent="echo@1.0.0", trace_id="t" * size)
    raw = accepted.SerializeToString(deterministic=True)
    framed = length_delimited(1, raw)
    assert job_service_pb2.SubmitJobResponse.FromString(framed).accepted == accepted
    assert framed == job_service_pb2.SubmitJobResponse(accepted=accepted).SerializeToString()


@pytest.mark.parametrize(
    "value", [0, 1, 127, 128, 255, 16_383, 16_384, 2**21 - 1, 2**21, 2**32, 2**63 - 1]
)
def test_varint_matches_protobuf(value: int) -> None:
    # A uint64 field's encoding is the tag byte followed by the varint.
    encoded = jobs_pb2.JobSummary(last_event_seq=value).SerializeToString()
    if value == 0:
        assert encoded == b""
    else:
        assert encoded == varint(11 << 3) + varint(value)


@pytest.mark.parametrize("size", [8, 200])  # a length in one varint byte (read inline), or two
@pytest.mark.parametrize("member", ["result", "error"])
def test_only_field_is_the_outcome_member_as_serialised(member: str, size: int) -> None:
    outcome = jobs_pb2.JobOutcome()
    getattr(outcome, member).job_id = "job_" + "x" * size
    raw = outcome.SerializeToString(deterministic=True)
    number, body = only_field(raw)
    assert number == jobs_pb2.JobOutcome.DESCRIPTOR.fields_by_name[member].number
    assert body == getattr(outcome, member).SerializeToString(deterministic=True)


@pytest.mark.parametrize("raw", [b"", b"\x0a", b"\x0a\x05ab", b"\x08\x01", b"\x0a\x01ab"])
def test_only_field_refuses_anything_else(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"varint|length-delimited"):
        only_field(raw)


def test_field_payload_is_the_embedded_acceptance_as_sent() -> None:
    """A RunJob's first message (accepted + replay) and a SubmitJobs answer: the client
    keeps the `JobAccepted` bytes of each exactly as they came (§7.2)."""
    accepted = jobs_pb2.JobAccepted(job_id="job_1", agent="echo@1.0.0", trace_id="t" * 300)
    raw = accepted.SerializeToString(deterministic=True)
    first = job_service_pb2.RunJobResponse(accepted=accepted, replay=True).SerializeToString()
    assert field_payload(first, 3) == raw
    assert field_payload(first, 1) is None
    item = job_service_pb2.SubmitJobsResponse(correlation_id="c1", accepted=accepted)
    assert field_payload(item.SerializeToString(), 2) == raw
    fixed = events_pb2.MetricEvent(name="n", value=1.5).SerializeToString()  # a double: I64
    assert field_payload(fixed, 1) == b"n"


@pytest.mark.parametrize("raw", [b"\x0a\x05ab", b"\x09\x00", b"\x0b"])
def test_field_payload_refuses_a_truncated_or_group_field(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"truncated|wire type"):
        field_payload(raw, 1)
