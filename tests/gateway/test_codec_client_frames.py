"""Client frames, JSON <-> ``ConnectRequest`` (``gateway/_client_frames.py``).

Every client frame type as the published client (``arcp``, 1.1.3) builds it,
the resume and close dialects it reveals (§6.3, §6.7; the ``Dialect`` table in
``gateway/codec.py``), the accepted id forms, and the field rules: unknown
top-level fields ignored, ``null`` means absent, sizes counted in UTF-8 bytes,
free-form numbers kept exact; and the way back (``encode_client_frame``), which
round-trips every client frame type. Refused input is in ``test_codec_bad_input.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from arcp._envelope import Envelope
from arcp._messages.execution import (
    JobCancelPayload,
    JobSubmitPayload,
    JobSubscribePayload,
    JobUnsubscribePayload,
    LeaseConstraints,
)
from arcp._messages.session import (
    ListJobsFilter,
    SessionAckPayload,
    SessionByePayload,
    SessionListJobsPayload,
    SessionPingPayload,
    SessionPongPayload,
    SessionResume,
)
from google.protobuf import timestamp_pb2

from arcp_grpc.errors import InvalidRequest
from arcp_grpc.v1 import jobs_pb2, session_pb2
from gateway.codec import CloseForm, Dialect, ResumeForm, decode_client_frame, encode_client_frame
from tests.gateway.codec_samples import (
    JOB,
    SESSION,
    TRACE,
    TS,
    TS_SECONDS,
    ULID,
    ConnectRequest,
    decode,
    frame,
    sdk_hello,
    wire,
)

UUID7 = "0190b1e2-3c4d-7e5f-8a9b-0c1d2e3f4a5b"


# ---- client frames built by the published client -----------------------------


def test_sdk_hello() -> None:
    got = decode(sdk_hello())
    assert got.type == "session.hello"
    assert got.resume_form is None
    assert got.close_form is None
    hello = got.request.hello
    assert got.request.id == ULID
    assert (hello.client.name, hello.client.version) == ("examplectl", "0.4.1")
    assert (hello.auth.scheme, hello.auth.token) == ("bearer", "tok")
    assert list(hello.capabilities.features) == ["heartbeat", "ack"]
    assert not hello.HasField("resume")


def test_sdk_hello_with_resume_is_the_in_hello_dialect() -> None:
    resume = SessionResume(session_id=SESSION, resume_token="rtk_x", last_event_seq=41)
    got = decode(sdk_hello(resume))
    assert got.resume_form is ResumeForm.IN_HELLO
    assert got.request.hello.resume == session_pb2.SessionResume(
        session_id=SESSION, resume_token="rtk_x", last_event_seq=41
    )
    assert Dialect(resume=ResumeForm.SESSION_RESUME).learn(got).resume is ResumeForm.IN_HELLO


def test_spec_session_resume_is_the_resume_dialect() -> None:
    got = decode(
        frame(
            "session.resume",
            {
                "session_id": SESSION,
                "resume_token": "rtk_x",
                "last_event_seq": 7,
                "auth": {"scheme": "bearer", "token": "tok"},
            },
        )
    )
    assert got.resume_form is ResumeForm.SESSION_RESUME
    assert got.request.resume.last_event_seq == 7
    assert got.request.resume.auth.token == "tok"
    assert Dialect().learn(got) == Dialect(resume=ResumeForm.SESSION_RESUME)


def test_sdk_submit_with_trace_id() -> None:
    payload = JobSubmitPayload(
        agent="code-refactor@2.0.0",
        input={"files": ["a.py"], "depth": 2, "ratio": 0.5, "none": None},
        lease_request={"fs.read": ["/ws/**"], "cost.budget": ["USD:5.00"]},
        lease_constraints=LeaseConstraints(expires_at="2026-05-13T23:42:00Z"),
        idempotency_key="refactor-1",
        max_runtime_sec=1800,
    )
    text = wire(
        Envelope(
            id=ULID,
            type="job.submit",
            session_id=SESSION,
            trace_id=TRACE,
            payload=payload.model_dump(mode="json", exclude_none=True),
        )
    )
    submit = decode(text).request.submit
    expected = jobs_pb2.JobSubmit(
        agent="code-refactor@2.0.0",
        idempotency_key="refactor-1",
        max_runtime_sec=1800,
        trace_id=TRACE,
    )
    expected.input.struct_value.update({"files": ["a.py"], "depth": 2, "ratio": 0.5, "none": None})
    expected.lease_request.capabilities["fs.read"].patterns.append("/ws/**")
    expected.lease_request.capabilities["cost.budget"].patterns.append("USD:5.00")
    expected.lease_constraints.expires_at.FromSeconds(TS_SECONDS + 4 * 3600 - 13)
    assert submit == expected


def test_sdk_cancel_carries_job_id_on_the_envelope_only() -> None:
    text = wire(
        Envelope(
            id=ULID,
            type="job.cancel",
            session_id=SESSION,
            job_id=JOB,
            payload=JobCancelPayload(reason="client.cancel").model_dump(mode="json"),
        )
    )
    got = decode(text).request
    assert got.cancel == jobs_pb2.JobCancel(job_id=JOB, reason="client.cancel")


@pytest.mark.parametrize(
    ("type_", "payload", "expected"),
    [
        (
            "session.list_jobs",
            SessionListJobsPayload(
                filter=ListJobsFilter(
                    status=("running", "pending"), agent="code-refactor", created_after=TS
                ),
                limit=100,
                cursor="c1",
            ),
            ConnectRequest(
                id=ULID,
                list_jobs=session_pb2.SessionListJobs(
                    filter=jobs_pb2.ListJobsFilter(
                        status=[jobs_pb2.JOB_STATUS_RUNNING, jobs_pb2.JOB_STATUS_PENDING],
                        agent="code-refactor",
                        created_after=timestamp_pb2.Timestamp(seconds=TS_SECONDS),
                    ),
                    limit=100,
                    cursor="c1",
                ),
            ),
        ),
        (
            "job.subscribe",
            JobSubscribePayload(job_id=JOB, history=True, from_event_seq=0),
            ConnectRequest(
                id=ULID,
                subscribe=jobs_pb2.JobSubscribe(job_id=JOB, history=True, from_event_seq=0),
            ),
        ),
        (
            "job.unsubscribe",
            JobUnsubscribePayload(job_id=JOB),
            ConnectRequest(id=ULID, unsubscribe=jobs_pb2.JobUnsubscribe(job_id=JOB)),
        ),
        (
            "session.ack",
            SessionAckPayload(last_processed_seq=1827),
            ConnectRequest(id=ULID, ack=session_pb2.SessionAck(last_processed_seq=1827)),
        ),
        (
            "session.pong",
            SessionPongPayload(ping_nonce="p_1", received_at="2026-05-13T19:42:13.020Z"),
            ConnectRequest(
                id=ULID,
                pong=session_pb2.SessionPong(
                    ping_nonce="p_1",
                    received_at=timestamp_pb2.Timestamp(seconds=TS_SECONDS, nanos=20_000_000),
                ),
            ),
        ),
        (
            "session.ping",
            SessionPingPayload(nonce="p_2", sent_at="2026-05-13T19:42:13.000123Z"),
            ConnectRequest(
                id=ULID,
                ping=session_pb2.SessionPing(
                    nonce="p_2", sent_at=timestamp_pb2.Timestamp(seconds=TS_SECONDS, nanos=123_000)
                ),
            ),
        ),
        (
            "session.bye",
            SessionByePayload(reason="client.close"),
            ConnectRequest(id=ULID, bye=session_pb2.SessionBye(reason="client.close")),
        ),
    ],
)
def test_sdk_client_frames(type_: str, payload: Any, expected: ConnectRequest) -> None:
    job_id = JOB if type_ == "job.subscribe" else None
    text = wire(
        Envelope(
            id=ULID,
            type=type_,
            session_id=SESSION,
            job_id=job_id,
            payload=payload.model_dump(mode="json", exclude_none=True),
        )
    )
    got = decode(text)
    assert got.type == type_
    assert got.request == expected


def test_bye_and_close_set_the_close_dialect() -> None:
    bye = decode(frame("session.bye", {"reason": "done"}))
    close = decode(frame("session.close", {"reason": "done"}))
    assert bye.close_form is CloseForm.BYE
    assert close.close_form is CloseForm.CLOSE
    assert close.request.close.reason == "done"
    assert Dialect().learn(close).close is CloseForm.CLOSE
    assert Dialect(close=CloseForm.CLOSE).learn(bye).close is CloseForm.BYE
    plain = decode(frame("session.ack", {"last_processed_seq": 1}))
    dialect = Dialect()
    assert dialect.learn(plain) is dialect


@pytest.mark.parametrize("envelope_id", [ULID, UUID7, "sess_" + ULID])
def test_accepted_id_forms(envelope_id: str) -> None:
    text = json.dumps(
        {
            "arcp": "1.1",
            "id": envelope_id,
            "type": "session.ack",
            "payload": {"last_processed_seq": 0},
        }
    )
    assert decode(text).request.id == envelope_id


def test_unknown_top_level_fields_are_ignored() -> None:
    text = json.dumps(
        {
            "arcp": "1.1",
            "id": ULID,
            "type": "session.ack",
            "x-future": {"anything": [1, 2, 9007199254740993, "\ud800"]},
            "extensions": None,
            "payload": {"last_processed_seq": 3},
        }
    )
    assert decode(text).request == ConnectRequest(
        id=ULID, ack=session_pb2.SessionAck(last_processed_seq=3)
    )


def test_null_means_absent() -> None:
    text = frame(
        "job.submit",
        {
            "agent": "echo",
            "input": None,
            "lease_request": None,
            "lease_constraints": None,
            "idempotency_key": None,
            "max_runtime_sec": None,
        },
        trace_id=None,
        session_id=None,
    )
    submit = decode(text).request.submit
    assert submit == jobs_pb2.JobSubmit(agent="echo")
    assert not submit.HasField("max_runtime_sec")


def test_bytes_input_and_multibyte_size() -> None:
    text = frame("session.bye", {"reason": "日本語"})
    assert decode(text.encode()).request.bye.reason == "日本語"
    size = len(text.encode())
    assert decode_client_frame(text, max_bytes=size).request.bye.reason == "日本語"
    with pytest.raises(InvalidRequest) as exc:
        decode_client_frame(text, max_bytes=size - 1)
    assert exc.value.details == {"field": "$"}
    with pytest.raises(InvalidRequest):
        decode_client_frame(text.encode(), max_bytes=size - 1)


def test_free_form_numbers_kept_exact() -> None:
    text = (
        f'{{"arcp":"1.1","id":"{ULID}","type":"job.submit","payload":{{"agent":"echo",'
        '"input":[9007199254740992,-9007199254740992,0.1,1e5,1.50,-0.0,1e300]}}'
    )
    values = decode(text).request.submit.input.list_value.values
    assert [v.number_value for v in values] == [2**53, -(2**53), 0.1, 1e5, 1.5, -0.0, 1e300]


# ---- client frame round trip ------------------------------------------------


CLIENT_TEXTS = [
    sdk_hello(),
    sdk_hello(SessionResume(session_id=SESSION, resume_token="rtk", last_event_seq=3)),
    frame("session.resume", {"session_id": SESSION, "resume_token": "t", "last_event_seq": 0}),
    frame("session.ping", {"nonce": "p", "sent_at": "2026-05-13T19:42:13.5Z"}),
    frame("session.pong", {"ping_nonce": "p", "received_at": TS}),
    frame("session.ack", {"last_processed_seq": 2**60}),
    frame("session.list_jobs", {"filter": {"status": ["error"]}, "limit": 5}),
    frame("session.bye", {"reason": "bye"}),
    frame("session.close", {"reason": ""}),
    frame(
        "job.submit", {"agent": "a@1", "input": {"k": [1, "v", None, True, {}, []]}}, trace_id=TRACE
    ),
    frame("job.cancel", {"job_id": JOB, "reason": "r"}, job_id=JOB),
    frame("job.subscribe", {"job_id": JOB, "from_event_seq": 4, "history": True}, job_id=JOB),
    frame("job.unsubscribe", {"job_id": JOB}, job_id=JOB),
]


@pytest.mark.parametrize("text", CLIENT_TEXTS)
def test_client_frames_round_trip(text: str) -> None:
    first = decode(text).request
    rendered = encode_client_frame(first)
    assert decode(rendered).request == first
    assert encode_client_frame(first) == rendered  # deterministic
    Envelope.from_wire(json.loads(rendered))  # the published envelope accepts it


def test_client_frame_offset_timestamp_is_normalised_to_utc() -> None:
    got = decode(frame("session.ping", {"nonce": "n", "sent_at": "2026-05-13T21:42:13+02:00"}))
    assert got.request.ping.sent_at.seconds == TS_SECONDS
    assert json.loads(encode_client_frame(got.request))["payload"]["sent_at"] == TS


def test_encode_client_frame_without_frame() -> None:
    with pytest.raises(ValueError, match="no frame"):
        encode_client_frame(ConnectRequest(id=ULID))
