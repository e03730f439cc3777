"""Hand-framed protobuf fields parse exactly as protobuf's own encoding (§7.2 replay
bytes are spliced into responses with these)."""

from __future__ import annotations

import pytest

from arcp_grpc._wire import length_delimited, varint
from arcp_grpc.v1 import job_service_pb2, jobs_pb2


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
