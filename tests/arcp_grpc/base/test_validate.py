"""The input rules both edges share (`arcp_grpc.base.validate`): W3C trace ids (§11),
identifier and text caps, free-form values, and the request parser that turns
undecodable bytes into INVALID_REQUEST instead of raising."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from arcp_grpc.base.json_values import MAX_VALUE_DEPTH
from arcp_grpc.base.validate import (
    MAX_ID_CHARS,
    check_connect_request,
    check_id,
    check_job_request,
    check_submit,
    check_timestamp,
    check_trace_id,
    check_value,
    request_parser,
)
from arcp_grpc.errors import InvalidRequest
from arcp_grpc.v1 import job_service_pb2, jobs_pb2
from arcp_grpc.v1 import session_service_pb2 as spb


def _field(call: object, *args: object) -> str:
    assert callable(call)
    with pytest.raises(InvalidRequest) as caught:
        call(*args)
    field: str = caught.value.details["field"]
    assert field in caught.value.message
    return field


@pytest.mark.parametrize(
    "trace_id", ["", "4bf92f3577b34da6a3ce929d0e0e4736", "00000000000000000000000000000001"]
)
def test_w3c_trace_ids_and_absence_pass(trace_id: str) -> None:
    check_trace_id(trace_id)


@pytest.mark.parametrize(
    "trace_id",
    [
        "0" * 32,
        "4BF92F3577B34DA6A3CE929D0E0E4736",
        "4bf92f3577b34da6a3ce929d0e0e473",
        "4bf92f3577b34da6a3ce929d0e0e47366",
        "4bf92f3577b34da6a3ce929d0e0e473\n",
        "4bf92f3577b34da6a3ce929d0e0e473g",
        "a" * 1_000_000,
    ],
)
def test_other_trace_ids_are_refused(trace_id: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_trace_id(trace_id, "submit.trace_id")
    assert caught.value.details == {"field": "submit.trace_id"}
    assert len(caught.value.message) < 100  # the refusal never echoes the input


@pytest.mark.parametrize("value", ["", "job_01HX", "x" * MAX_ID_CHARS, "a-b_c.d:e/f"])
def test_identifiers_that_pass(value: str) -> None:
    check_id(value, "job_id")


@pytest.mark.parametrize(
    "value", ["x" * (MAX_ID_CHARS + 1), "job 1", "job\n1", "job\t1", "jöb", "job\u2028", "\x00"]
)
def test_identifiers_that_are_refused(value: str) -> None:
    assert _field(check_id, value, "job_id") == "job_id"


def test_timestamps_outside_years_1_to_9999_are_refused() -> None:
    check_timestamp(timestamp_pb2.Timestamp(seconds=253_402_300_799, nanos=999_999_999), "t")
    for stamp in (
        timestamp_pb2.Timestamp(seconds=2**62),
        timestamp_pb2.Timestamp(seconds=-62_135_596_801),
        timestamp_pb2.Timestamp(seconds=0, nanos=-1),
        timestamp_pb2.Timestamp(seconds=0, nanos=1_000_000_000),
    ):
        assert _field(check_timestamp, stamp, "filter.created_after") == "filter.created_after"


def _nested_list(depth: int) -> struct_pb2.Value:
    value = struct_pb2.Value(number_value=1)
    for _ in range(depth):
        outer = struct_pb2.Value()
        outer.list_value.values.add().CopyFrom(value)
        value = outer
    return value


def test_values_as_deep_as_the_gateway_allows_pass_one_more_level_does_not() -> None:
    check_value(_nested_list(MAX_VALUE_DEPTH), "input")
    assert _field(check_value, _nested_list(MAX_VALUE_DEPTH + 1), "input") == (
        "input" + "[0]" * MAX_VALUE_DEPTH
    )


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused_with_their_path(number: float) -> None:
    value = struct_pb2.Value()
    value.struct_value.fields["a"].list_value.values.add(string_value="ok")
    value.struct_value.fields["a"].list_value.values.add(number_value=number)
    assert _field(check_value, value, "input") == "input.a[1]"


def test_submit_names_each_field_under_its_path() -> None:
    check_submit(jobs_pb2.JobSubmit(agent="echo", idempotency_key="k", trace_id="1" * 32))
    cases = {
        "agent": jobs_pb2.JobSubmit(agent="a" * 257),
        "idempotency_key": jobs_pb2.JobSubmit(agent="a", idempotency_key="k" * 257),
        "trace_id": jobs_pb2.JobSubmit(agent="a", trace_id="xyz"),
        "lease_request": _wide_lease(),
    }
    for field, submit in cases.items():
        assert _field(check_submit, submit) == field
        assert _field(check_submit, submit, "submit") == f"submit.{field}"


def _wide_lease() -> jobs_pb2.JobSubmit:
    """100 patterns of 1000 characters: each within its own cap, 100 KB together."""
    submit = jobs_pb2.JobSubmit(agent="a")
    submit.lease_request.capabilities["fs.read"].patterns.extend(["/" + "p" * 999] * 100)
    return submit


def _frame(**members: object) -> spb.ConnectRequest:
    return spb.ConnectRequest(id="01FRAME0000000000000000000", **members)  # type: ignore[arg-type]


def test_connect_request_paths_follow_each_edge() -> None:
    request = _frame(cancel=jobs_pb2.JobCancel(job_id="job_1", reason="r" * 1025))
    assert _field(check_connect_request, request, "") == "cancel.reason"
    assert _field(check_connect_request, request, "payload") == "payload.reason"


def test_connect_request_checks_hello_resume_and_capabilities() -> None:
    request = _frame()
    request.hello.resume.session_id = "sess 1"
    assert _field(check_connect_request, request, "") == "hello.resume.session_id"
    request = _frame()
    request.hello.capabilities.features.extend(["f"] * 65)
    assert _field(check_connect_request, request, "") == "hello.capabilities.features"
    request = _frame()
    request.hello.auth.token = "t" * 4097
    assert _field(check_connect_request, request, "payload") == "payload.auth.token"


def test_job_requests() -> None:
    check_job_request(job_service_pb2.ListAgentsRequest())
    check_job_request(job_service_pb2.GetJobRequest(job_id="job_1"))
    assert _field(check_job_request, job_service_pb2.WatchJobRequest(job_id="j" * 129)) == "job_id"


def test_the_request_parser_returns_the_message_or_the_refusal() -> None:
    parse = request_parser(job_service_pb2.GetJobRequest)
    assert parse(job_service_pb2.GetJobRequest(job_id="a").SerializeToString()) == (
        job_service_pb2.GetJobRequest(job_id="a")
    )
    refused = parse(b"\xff\xff\xff")
    assert isinstance(refused, InvalidRequest)
    assert refused.details == {"field": "$"}
    assert "arcp.v1.GetJobRequest" in refused.message
