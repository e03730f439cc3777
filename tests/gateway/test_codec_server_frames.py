"""Server frames, ``ConnectResponse`` -> JSON (``gateway/_render_frames.py``) and back
(``gateway/_read_frames.py``): the shape of each frame type, where the two wire
profiles differ (cancelled and timed-out ends, §7.3, §7.4; ``replayed``, §7.6),
the close dialect (§6.7), the envelope fields, and the contract violations a
renderer refuses. Event bodies are in ``test_codec_events.py``, a job's lease,
budget and credentials in ``test_codec_authority.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from arcp._errors import CancelledError, error_from_payload
from arcp._messages.execution import JobErrorPayload, JobResultPayload

from arcp_grpc.v1 import jobs_pb2
from gateway.codec import (
    WIRE_PROFILE_SDK_COMPAT,
    WIRE_PROFILE_SPEC,
    CloseForm,
    Dialect,
    decode_server_frame,
    encode_server_frame,
)
from tests.gateway.codec_samples import JOB, REQ, SESSION, TS, ULID, ConnectResponse, _ts, render


def test_welcome_shape() -> None:
    payload = render("welcome")["payload"]
    assert payload == {
        "session_id": SESSION,
        "runtime": {"name": "arcp-grpc", "version": "0.1.0"},
        "resume_token": "rtk_1",
        "resume_window_sec": 600,
        "heartbeat_interval_sec": 30,
        "capabilities": {
            "encodings": ["json"],
            "features": ["heartbeat", "agent_versions"],
            "agents": [
                {"name": "echo", "versions": ["1.0.0", "2.0.0"], "default": "2.0.0"},
                {"name": "bare", "versions": ["0.1"]},
            ],
        },
        "accepted_at": "2026-05-13T19:42:13.123Z",
        "resumed": True,
    }
    assert "wire_profile" not in json.dumps(payload)


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("job_error_cancelled", "cancelled", "CANCELLED"),
        ("job_error_timed_out", "timed_out", "TIMEOUT"),
    ],
)
def test_cancel_and_timeout_terminal_per_profile(name: str, status: str, code: str) -> None:
    spec = render(name, WIRE_PROFILE_SPEC)
    assert spec["type"] == "job.error"  # §7.3, §7.4
    assert (spec["payload"]["final_status"], spec["payload"]["code"]) == (status, code)
    sdk = render(name, WIRE_PROFILE_SDK_COMPAT)
    assert sdk["type"] == "job.result"
    assert JobResultPayload.model_validate(sdk["payload"]).final_status == status
    assert sdk["payload"]["code"] == code


@pytest.mark.parametrize("status", [jobs_pb2.JOB_STATUS_CANCELLED, jobs_pb2.JOB_STATUS_TIMED_OUT])
def test_result_form_cancel_becomes_job_error_in_spec(status: int) -> None:
    msg = ConnectResponse(id=ULID, job_id=JOB, event_seq=3)
    msg.result.job_id = JOB
    msg.result.final_status = status  # type: ignore[assignment]
    msg.result.summary = "stopped"
    _ts(msg.result.completed_at)
    spec = json.loads(encode_server_frame(msg, profile=WIRE_PROFILE_SPEC, dialect=Dialect()))
    assert spec["type"] == "job.error"
    assert spec["payload"]["code"] in {"CANCELLED", "TIMEOUT"}
    assert spec["payload"]["message"] == "stopped"
    sdk = json.loads(encode_server_frame(msg, profile=WIRE_PROFILE_SDK_COMPAT, dialect=Dialect()))
    assert sdk["type"] == "job.result"
    assert decode_server_frame(json.dumps(sdk)) == msg


def test_job_error_is_readable_by_the_published_client() -> None:
    payload = render("job_error", WIRE_PROFILE_SDK_COMPAT)["payload"]
    error = error_from_payload(JobErrorPayload.model_validate(payload).model_dump())
    assert error.code == "LEASE_EXPIRED"
    assert error.details == {"why": "test"}
    spec = render("job_error_cancelled")["payload"]
    assert isinstance(error_from_payload(spec), CancelledError)


def test_subscribed_replayed_per_profile() -> None:
    spec = render("subscribed", WIRE_PROFILE_SPEC)["payload"]
    assert (spec["replayed"], spec["replayed_events"]) == (True, 3)  # §7.6 boolean
    sdk = render("subscribed", WIRE_PROFILE_SDK_COMPAT)["payload"]
    assert sdk["replayed"] == 3
    assert "replayed_events" not in sdk
    assert sdk["request_id"] == REQ
    assert sdk["budget"] == {"USD": "USD:3.58"}


def test_closed_follows_the_close_dialect() -> None:
    assert render("closed", dialect=Dialect())["type"] == "session.bye"
    closed = render("closed", dialect=Dialect(close=CloseForm.CLOSE))
    assert closed["type"] == "session.closed"
    assert closed["payload"] == {"reason": "client.close"}


def test_jobs_entries_carry_both_created_and_submitted_at() -> None:
    payload = render("jobs")["payload"]
    first, second = payload["jobs"]
    assert first["created_at"] == first["submitted_at"] == TS
    assert first["budget"] == {"USD": 3.58}
    assert second["completed_at"] == "2026-05-13T19:42:18Z"
    assert payload["request_id"] == REQ
    assert payload["next_cursor"] == "100"


def test_session_error_shape() -> None:
    payload = render("error")["payload"]
    assert payload == {
        "request_id": REQ,
        "code": "INVALID_REQUEST",
        "message": "payload.agent: bad",
        "retryable": False,
        "details": {"field": "payload.agent"},
    }


def test_result_shapes() -> None:
    inline = render("result")["payload"]
    assert inline == {
        "final_status": "success",
        "result": {"answer": 42, "items": [1.5, "x"]},
        "summary": "done",
        "completed_at": TS,
    }
    streamed = render("result_streamed")["payload"]
    assert streamed == {
        "final_status": "success",
        "result_id": "res_1",
        "result_size": 31_457_280,
        "completed_at": TS,
    }


def test_envelope_job_id_falls_back_to_the_inner_job_id() -> None:
    msg = ConnectResponse(id=ULID, event_seq=1)
    msg.event.job_id = JOB
    msg.event.thought.text = "t"
    env = json.loads(encode_server_frame(msg, profile=WIRE_PROFILE_SPEC, dialect=Dialect()))
    assert env["job_id"] == JOB
    assert "session_id" not in env
    assert "trace_id" not in env


def test_event_seq_zero_is_not_sent() -> None:
    env = render("ping")
    assert "event_seq" not in env
    assert "job_id" not in env


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.ClearField("frame"), "no frame"),
        (lambda m: m.jobs.jobs.add(), "UNSPECIFIED"),
        (lambda m: m.accepted.budget.__setitem__("USD", "five"), "not a decimal"),
        (lambda m: m.event.metric.__setattr__("value", float("nan")), "non-finite"),
        (lambda m: m.event.vendor.__setattr__("kind", "acme.trace"), "x-vendor"),
        (lambda m: m.result.__setattr__("final_status", jobs_pb2.JOB_STATUS_ERROR), "terminal"),
        (lambda m: m.job_error.__setattr__("final_status", jobs_pb2.JOB_STATUS_SUCCESS), "error"),
        (lambda m: m.event.SetInParent(), "no body"),
    ],
)
def test_contract_violations_raise_value_error(mutate: Any, message: str) -> None:
    msg = ConnectResponse(id=ULID)
    mutate(msg)
    with pytest.raises(ValueError, match=message):
        encode_server_frame(msg, profile=WIRE_PROFILE_SPEC, dialect=Dialect())
