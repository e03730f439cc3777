"""The client's pure parts, without a socket: requests from arguments, values from
messages, and the retry policy's waits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from arcp_grpc.client import Outcome, RetryPolicy, Submission, plain
from arcp_grpc.client.requests import fill_submit, list_filter, with_key
from arcp_grpc.errors import InvalidRequest, QuotaExceeded, Timeout
from arcp_grpc.v1 import events_pb2, jobs_pb2


def test_a_submission_becomes_the_job_submit_of_section_7_1() -> None:
    submit = jobs_pb2.JobSubmit()
    fill_submit(
        submit,
        Submission(
            "greeter@1.0.0",
            {"name": "x", "n": 2},
            idempotency_key="k",
            lease={"tool.call": ["search"]},
            budget={"USD": "5.00"},
            max_runtime=30,
        ),
    )
    assert (submit.agent, submit.idempotency_key, submit.max_runtime_sec) == (
        "greeter@1.0.0",
        "k",
        30,
    )
    assert submit.input.struct_value.fields["n"].number_value == 2
    capabilities = submit.lease_request.capabilities
    assert list(capabilities["tool.call"].patterns) == ["search"]
    assert list(capabilities["cost.budget"].patterns) == ["USD:5.00"]  # §9.6
    assert not submit.HasField("lease_constraints")


@pytest.mark.parametrize(
    ("submission", "message"),
    [
        (Submission("echo", {"deep": [float("inf")]}), r"input\.deep\[0\]: number inf"),
        (Submission("echo", lease={"fs.read": "/tmp/**"}), "must be a list of patterns"),
        (Submission("echo", lease_expires_at=datetime(2030, 1, 1)), "aware datetime"),
    ],
)
def test_what_the_core_would_refuse_is_refused_before_sending(
    submission: Submission, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        fill_submit(jobs_pb2.JobSubmit(), submission)


def test_with_key_generates_a_key_once_and_keeps_a_given_one() -> None:
    keyed = with_key(Submission("echo"))
    assert keyed.idempotency_key
    assert with_key(keyed) is keyed
    assert with_key(Submission("echo")).idempotency_key != keyed.idempotency_key


def test_list_filter_takes_the_spec_status_names() -> None:
    where = list_filter(["running", "TIMED_OUT"], "echo", None)
    assert list(where.status) == [jobs_pb2.JOB_STATUS_RUNNING, jobs_pb2.JOB_STATUS_TIMED_OUT]
    with pytest.raises(InvalidRequest, match="status must be one of pending, running"):
        list_filter(["finished"], "", None)


def test_an_error_outcome_carries_the_typed_error() -> None:
    outcome = jobs_pb2.JobOutcome()
    outcome.error.job_id = "job_1"
    outcome.error.final_status = jobs_pb2.JOB_STATUS_TIMED_OUT
    outcome.error.error.CopyFrom(Timeout("ran past 5 s").to_proto())
    ended = Outcome.from_proto(outcome)
    assert (ended.status, ended.ok, ended.result) == ("timed_out", False, None)
    assert isinstance(ended.error, Timeout)
    assert ended.error.message == "ran past 5 s"


def test_plain_gives_whole_numbers_as_ints() -> None:
    metric = events_pb2.MetricEvent(name="tokens", value=3.0, unit="n")
    assert plain(metric) == {"name": "tokens", "value": 3, "unit": "n"}
    assert plain(events_pb2.MetricEvent(value=2.5))["value"] == 2.5


def test_the_policy_waits_retry_after_when_the_core_named_one() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=0.5, multiplier=2)
    refused = QuotaExceeded.of("max_running_jobs_per_principal", 1500, "busy")
    assert [policy.delay(n, refused) for n in range(3)] == [0.1, 0.2, 0.4]
    refused.retry_after = 1.5
    assert policy.delay(0, refused) == 1.5
    assert policy.delay(5, InvalidRequest("x")) == 0.5  # capped
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def test_an_outcome_reads_its_result_and_end_from_the_proto_when_asked() -> None:
    """Issue 25: ``result`` and ``completed_at`` are converted on first access, not when
    the outcome arrives; what they hold is unchanged (§7.3)."""
    outcome = jobs_pb2.JobOutcome()
    outcome.result.job_id = "job_1"
    outcome.result.final_status = jobs_pb2.JOB_STATUS_SUCCESS
    outcome.result.value.struct_value.fields["n"].number_value = 2
    outcome.result.completed_at.FromDatetime(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    ended = Outcome.from_proto(outcome)
    assert not {"result", "completed_at"} & vars(ended).keys()  # nothing converted yet
    assert (ended.job_id, ended.status, ended.ok, ended.error) == ("job_1", "success", True, None)
    assert ended.result == {"n": 2}
    assert isinstance(ended.result["n"], int)
    assert ended.completed_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
