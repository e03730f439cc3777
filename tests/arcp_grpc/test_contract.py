"""The protobuf contract covers the whole ARCP v1.1 surface (spec §6–§12).

The spec's names live here, typed out from the text, so a name the proto
lacks fails the test rather than silently shrinking the contract.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor
from google.rpc import status_pb2

from arcp_grpc.v1 import (
    errors_pb2,
    events_pb2,
    job_service_pb2,
    jobs_pb2,
    session_pb2,
    session_service_pb2,
)

# Envelope type (spec section) -> oneof field of the client or server frame.
CLIENT_FRAMES = {
    "session.hello": "hello",  # §6.2
    "session.resume": "resume",  # §6.3
    "session.ping": "ping",  # §6.4
    "session.pong": "pong",  # §6.4
    "session.ack": "ack",  # §6.5
    "session.list_jobs": "list_jobs",  # §6.6
    "session.close": "close",  # §6.7
    "session.bye": "bye",  # published SDK dialect of §6.7
    "job.submit": "submit",  # §7.1
    "job.cancel": "cancel",  # §7.4
    "job.subscribe": "subscribe",  # §7.6
    "job.unsubscribe": "unsubscribe",  # §7.6
}
SERVER_FRAMES = {
    "session.welcome": "welcome",  # §6.2
    "session.ping": "ping",  # §6.4
    "session.pong": "pong",  # §6.4
    "session.jobs": "jobs",  # §6.6
    "session.closed": "closed",  # §6.7
    "session.error": "error",  # §12
    "job.accepted": "accepted",  # §7.1
    "job.cancelled": "cancelled",  # §7.4
    "job.subscribed": "subscribed",  # §7.6
    "job.event": "event",  # §8.1
    "job.result": "result",  # §8.4
    "job.error": "job_error",  # §7.3, §12
}
EVENT_KINDS = [  # §8.2; x-vendor.* is the vendor extension kind
    "log",
    "thought",
    "tool_call",
    "tool_result",
    "status",
    "metric",
    "artifact_ref",
    "delegate",
    "progress",
    "result_chunk",
    "x-vendor.*",
]
ERROR_CODES = [  # §12, all fifteen
    "PERMISSION_DENIED",
    "LEASE_SUBSET_VIOLATION",
    "JOB_NOT_FOUND",
    "DUPLICATE_KEY",
    "AGENT_NOT_AVAILABLE",
    "AGENT_VERSION_NOT_AVAILABLE",
    "CANCELLED",
    "TIMEOUT",
    "RESUME_WINDOW_EXPIRED",
    "HEARTBEAT_LOST",
    "LEASE_EXPIRED",
    "BUDGET_EXHAUSTED",
    "INVALID_REQUEST",
    "UNAUTHENTICATED",
    "INTERNAL_ERROR",
]
JOB_STATES = ["pending", "running", "success", "error", "cancelled", "timed_out"]  # §7.3
FEATURES_IN_WELCOME = ["agents", "encodings", "features"]  # §6.2


def _oneof_fields(message: Descriptor, oneof: str) -> set[str]:
    return {f.name for f in message.oneofs_by_name[oneof].fields}


@pytest.mark.parametrize(("spec_type", "field"), sorted(CLIENT_FRAMES.items()))
def test_every_client_envelope_type_has_a_frame(spec_type: str, field: str) -> None:
    assert field in _oneof_fields(session_service_pb2.ConnectRequest.DESCRIPTOR, "frame"), spec_type


@pytest.mark.parametrize(("spec_type", "field"), sorted(SERVER_FRAMES.items()))
def test_every_server_envelope_type_has_a_frame(spec_type: str, field: str) -> None:
    assert field in _oneof_fields(session_service_pb2.ConnectResponse.DESCRIPTOR, "frame"), (
        spec_type
    )


def test_frames_have_no_unnamed_extras() -> None:
    """Every frame field is one of the spec's envelope types: the mapping is one to one."""
    assert _oneof_fields(session_service_pb2.ConnectRequest.DESCRIPTOR, "frame") == set(
        CLIENT_FRAMES.values()
    )
    assert _oneof_fields(session_service_pb2.ConnectResponse.DESCRIPTOR, "frame") == set(
        SERVER_FRAMES.values()
    )


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_every_event_kind_has_a_typed_body(kind: str) -> None:
    field = "vendor" if kind == "x-vendor.*" else kind
    body = events_pb2.JobEvent.DESCRIPTOR.fields_by_name[field]
    assert body.containing_oneof is not None
    assert body.containing_oneof.name == "body"
    assert body.message_type is not None  # a typed body, not a bare string


@pytest.mark.parametrize("code", ERROR_CODES)
def test_every_error_code_is_in_the_enum(code: str) -> None:
    assert errors_pb2.ErrorCode.Value(f"ERROR_CODE_{code}") > 0


def test_error_enum_holds_exactly_the_fifteen_codes() -> None:
    values = errors_pb2.DESCRIPTOR.enum_types_by_name["ErrorCode"].values
    names = {v.name.removeprefix("ERROR_CODE_") for v in values}
    assert names - {"UNSPECIFIED"} == set(ERROR_CODES)


@pytest.mark.parametrize("state", JOB_STATES)
def test_every_job_state_is_in_the_enum(state: str) -> None:
    assert jobs_pb2.JobStatus.Value(f"JOB_STATUS_{state.upper()}") > 0


def test_welcome_capabilities_carry_the_agent_inventory() -> None:
    fields = session_pb2.Capabilities.DESCRIPTOR.fields_by_name
    assert set(FEATURES_IN_WELCOME) <= set(fields)
    agent = jobs_pb2.AgentInfo.DESCRIPTOR.fields_by_name
    assert {"name", "versions", "default_version"} <= set(agent)


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        (
            jobs_pb2.JobSubmit,
            {
                "agent",
                "input",
                "lease_request",
                "lease_constraints",
                "idempotency_key",
                "max_runtime_sec",
                "trace_id",
            },
        ),  # §7.1
        (
            jobs_pb2.JobAccepted,
            {
                "job_id",
                "agent",
                "lease",
                "lease_constraints",
                "budget",
                "credentials",
                "accepted_at",
                "trace_id",
            },
        ),  # §7.1
        (jobs_pb2.JobSubscribe, {"job_id", "from_event_seq", "history"}),  # §7.6
        (
            jobs_pb2.JobSubscribed,
            {
                "job_id",
                "current_status",
                "agent",
                "lease",
                "lease_constraints",
                "budget",
                "parent_job_id",
                "trace_id",
                "subscribed_from",
                "replayed",
            },
        ),  # §7.6
        (
            jobs_pb2.JobSummary,
            {
                "job_id",
                "agent",
                "status",
                "lease",
                "parent_job_id",
                "created_at",
                "trace_id",
                "last_event_seq",
            },
        ),  # §6.6
        (jobs_pb2.ListJobsFilter, {"status", "agent", "created_after"}),  # §6.6
        (
            session_pb2.SessionWelcome,
            {
                "session_id",
                "runtime",
                "resume_token",
                "resume_window_sec",
                "heartbeat_interval_sec",
                "capabilities",
            },
        ),  # §6.2
        (session_pb2.SessionResume, {"session_id", "resume_token", "last_event_seq"}),  # §6.3
        (session_pb2.SessionPing, {"nonce", "sent_at"}),  # §6.4
        (session_pb2.SessionPong, {"ping_nonce", "received_at"}),  # §6.4
        (session_pb2.SessionAck, {"last_processed_seq"}),  # §6.5
        (events_pb2.ProgressEvent, {"current", "total", "units", "message"}),  # §8.2.1
        (
            events_pb2.ResultChunkEvent,
            {"result_id", "chunk_seq", "data", "encoding", "more"},
        ),  # §8.4
        (jobs_pb2.JobResult, {"final_status", "value", "streamed", "summary"}),  # §8.4
        (events_pb2.ToolCallEvent, {"tool", "args", "call_id"}),  # §8.2
        (events_pb2.ToolResultEvent, {"call_id", "result", "error"}),  # §8.2
        (events_pb2.MetricEvent, {"name", "value", "unit", "dimensions"}),  # §8.2
        (events_pb2.ArtifactRefEvent, {"uri", "content_type", "byte_size", "sha256"}),  # §8.2
        (errors_pb2.ErrorDetail, {"code", "message", "retryable", "details"}),  # §12
    ],
)
def test_spec_fields_are_present(message: type, fields: set[str]) -> None:
    assert fields <= set(message.DESCRIPTOR.fields_by_name)  # type: ignore[attr-defined]


def test_credential_wire_shape() -> None:
    """§9.8.1: id, scheme, value, endpoint required; profile, constraints optional."""
    from arcp_grpc.v1 import lease_pb2

    fields = set(lease_pb2.Credential.DESCRIPTOR.fields_by_name)
    assert {"id", "scheme", "value", "endpoint", "profile", "constraints"} <= fields


def test_job_service_has_every_rpc() -> None:
    service = job_service_pb2.DESCRIPTOR.services_by_name["JobService"]
    assert {m.name for m in service.methods} == {
        "SubmitJob",
        "GetJob",
        "ListJobs",
        "CancelJob",
        "WatchJob",
        "ListAgents",
        "RunJob",
        "SubmitJobs",
        "ListNodes",
        "ListWorkers",
    }
    for server_stream in ("WatchJob", "RunJob"):
        method = service.methods_by_name[server_stream]
        assert method.server_streaming
        assert not method.client_streaming
    submit_many = service.methods_by_name["SubmitJobs"]
    assert submit_many.client_streaming
    assert submit_many.server_streaming


def _wire_shape(field: Any) -> tuple[int, int, bool, str]:
    """What decides how a field is encoded: number, type, repetition, message type."""
    message = field.message_type.full_name if field.message_type is not None else ""
    return field.number, field.type, field.is_repeated, message


def test_streamed_submit_answers_mirror_the_unary_ones() -> None:
    """RunJob's later messages decode as WatchJobResponse (same numbers and types), and a
    SubmitJobs item's error has google.rpc.Status's wire shape, so clients reuse both."""
    run = job_service_pb2.RunJobResponse.DESCRIPTOR.fields_by_name
    watch = job_service_pb2.WatchJobResponse.DESCRIPTOR.fields_by_name
    for name, field in watch.items():
        assert _wire_shape(run[name]) == _wire_shape(field), name
    status = status_pb2.Status.DESCRIPTOR.fields_by_name
    ours = job_service_pb2.RpcStatus.DESCRIPTOR.fields_by_name
    assert set(ours) == set(status)
    for name, rpc_field in status.items():
        assert _wire_shape(ours[name]) == _wire_shape(rpc_field), name
    oneof = job_service_pb2.SubmitJobsResponse.DESCRIPTOR.oneofs_by_name["result"]
    assert {f.name for f in oneof.fields} == {"accepted", "error"}


def test_session_service_connect_is_bidirectional() -> None:
    service = session_service_pb2.DESCRIPTOR.services_by_name["SessionService"]
    connect = service.methods_by_name["Connect"]
    assert connect.client_streaming
    assert connect.server_streaming


def test_finished_job_is_a_result_or_an_error() -> None:
    oneof = jobs_pb2.JobOutcome.DESCRIPTOR.oneofs_by_name["outcome"]
    assert {f.name for f in oneof.fields} == {"result", "error"}
