"""The gateway codec: every frame type both ways, both profiles, both dialects.

Client frames are built the way the published client (``arcp``, 1.1.3) builds
them, and SDK_COMPAT output is checked with that client's own payload models:
a frame it cannot parse fails every open job on its connection.
"""

from __future__ import annotations

import gc
import json
import re
import tracemalloc
from typing import Any

import pytest
from arcp._envelope import Envelope
from arcp._errors import CancelledError, error_from_payload
from arcp._messages.execution import (
    JobAcceptedPayload,
    JobCancelPayload,
    JobErrorPayload,
    JobEventPayload,
    JobResultPayload,
    JobSubmitPayload,
    JobSubscribedPayload,
    JobSubscribePayload,
    JobUnsubscribePayload,
    LeaseConstraints,
)
from arcp._messages.session import (
    AuthBearer,
    Capabilities,
    ClientInfo,
    ListJobsFilter,
    SessionAckPayload,
    SessionByePayload,
    SessionErrorPayload,
    SessionHelloPayload,
    SessionJobsPayload,
    SessionListJobsPayload,
    SessionPingPayload,
    SessionPongPayload,
    SessionResume,
    SessionWelcomePayload,
)
from google.protobuf import struct_pb2, timestamp_pb2

from arcp_grpc.errors import InvalidRequest
from arcp_grpc.v1 import errors_pb2, events_pb2, jobs_pb2, session_pb2, session_service_pb2
from gateway.codec import (
    WIRE_PROFILE_SDK_COMPAT,
    WIRE_PROFILE_SPEC,
    ClientFrame,
    CloseForm,
    Dialect,
    ResumeForm,
    decode_client_frame,
    decode_server_frame,
    encode_client_frame,
    encode_server_frame,
)

ConnectRequest = session_service_pb2.ConnectRequest
ConnectResponse = session_service_pb2.ConnectResponse

ULID = "01JABCDEFGHJKMNPQRSTVWXYZ0"
REQ = "01JREQ0000000000000000000A"
UUID7 = "0190b1e2-3c4d-7e5f-8a9b-0c1d2e3f4a5b"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
JOB = "job_01JABCDEFGHJKMNPQRSTVWXYZ"
SESSION = "sess_01JABCDEFGHJKMNPQRSTVWXYZ"
TS = "2026-05-13T19:42:13Z"
TS_SECONDS = 1778701333
MAX = 1 << 20
STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
PROFILES = [WIRE_PROFILE_SPEC, WIRE_PROFILE_SDK_COMPAT]
DIALECTS = [Dialect(), Dialect(resume=ResumeForm.SESSION_RESUME, close=CloseForm.CLOSE)]


def wire(env: Envelope) -> str:
    """A frame exactly as the published client puts it on the socket."""
    return json.dumps(env.to_wire())


def frame(type_: str, payload: Any, **envelope: Any) -> str:
    return json.dumps({"arcp": "1.1", "id": ULID, "type": type_, "payload": payload, **envelope})


def decode(text: str | bytes) -> ClientFrame:
    return decode_client_frame(text, max_bytes=MAX)


# ---- client frames built by the published client -----------------------------


def sdk_hello(resume: SessionResume | None = None) -> str:
    payload = SessionHelloPayload(
        client=ClientInfo(name="examplectl", version="0.4.1"),
        auth=AuthBearer(token="tok"),
        capabilities=Capabilities(encodings=("json",), features=("heartbeat", "ack")),
        resume=resume,
    )
    return wire(
        Envelope(
            id=ULID,
            type="session.hello",
            payload=payload.model_dump(mode="json", exclude_none=True),
        )
    )


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


# ---- bad input: always InvalidRequest, naming the field ----------------------

BAD_INPUTS: list[tuple[str, str | bytes, str]] = [
    ("not json", "{", "$"),
    ("empty", "", "$"),
    ("array", "[]", "$"),
    ("string", '"x"', "$"),
    ("not utf-8", b'{"arcp":"1.1","x":"\xff"}', "$"),
    ("too deep", "[" * 100_000 + "]" * 100_000, "$"),
    ("missing arcp", json.dumps({"id": ULID, "type": "session.ack"}), "arcp"),
    ("wrong arcp", json.dumps({"arcp": "1.0", "id": ULID, "type": "session.ack"}), "arcp"),
    ("numeric arcp", json.dumps({"arcp": 1.1, "id": ULID, "type": "session.ack"}), "arcp"),
    ("missing id", json.dumps({"arcp": "1.1", "type": "session.ack"}), "id"),
    ("bad id", json.dumps({"arcp": "1.1", "id": "01j-lower", "type": "session.ack"}), "id"),
    ("id newline", json.dumps({"arcp": "1.1", "id": ULID + "\n", "type": "session.ack"}), "id"),
    (
        "uuid4 id",
        frame("session.ack", {}).replace(ULID, "0190b1e2-3c4d-4e5f-8a9b-0c1d2e3f4a5b"),
        "id",
    ),
    ("numeric id", json.dumps({"arcp": "1.1", "id": 5, "type": "session.ack"}), "id"),
    ("missing type", json.dumps({"arcp": "1.1", "id": ULID}), "type"),
    ("unknown type", frame("session.dance", {}), "type"),
    ("server type", frame("session.welcome", {}), "type"),
    ("type not string", json.dumps({"arcp": "1.1", "id": ULID, "type": 3}), "type"),
    ("trace upper", frame("job.submit", {"agent": "a"}, trace_id=TRACE.upper()), "trace_id"),
    ("trace zero", frame("job.submit", {"agent": "a"}, trace_id="0" * 32), "trace_id"),
    ("trace short", frame("job.submit", {"agent": "a"}, trace_id=TRACE[:-1]), "trace_id"),
    ("session_id type", frame("session.bye", {}, session_id=5), "session_id"),
    ("event_seq negative", frame("session.bye", {}, event_seq=-1), "event_seq"),
    ("payload array", frame("session.bye", []), "payload"),
    ("agent missing", frame("job.submit", {}), "payload.agent"),
    ("agent upper", frame("job.submit", {"agent": "Echo"}), "payload.agent"),
    ("agent empty version", frame("job.submit", {"agent": "echo@"}), "payload.agent"),
    ("agent bad version", frame("job.submit", {"agent": "echo@1 0"}), "payload.agent"),
    ("agent number", frame("job.submit", {"agent": 7}), "payload.agent"),
    (
        "input big int",
        f'{{"arcp":"1.1","id":"{ULID}","type":"job.submit","payload":{{"agent":"a",'
        '"input":{"items":[1,2,3,9007199254740993]}}}',
        "payload.input.items[3]",
    ),
    (
        "input huge int",
        '{{"arcp":"1.1","id":"{}","type":"job.submit","payload":{{"agent":"a",'
        '"input":{{"n":{}}}}}}}'.format(ULID, "9" * 5000),
        "payload.input.n",
    ),
    (
        "input NaN",
        f'{{"arcp":"1.1","id":"{ULID}","type":"job.submit","payload":{{"agent":"a",'
        '"input":[{"x":NaN}]}}',
        "payload.input[0].x",
    ),
    (
        "input Infinity",
        f'{{"arcp":"1.1","id":"{ULID}","type":"job.submit","payload":{{"agent":"a",'
        '"input":-Infinity}}',
        "payload.input",
    ),
    (
        "input overflow",
        f'{{"arcp":"1.1","id":"{ULID}","type":"job.submit","payload":{{"agent":"a",'
        '"input":{"a":{"b":1e400}}}}',
        "payload.input.a.b",
    ),
    (
        "input rounding",
        f'{{"arcp":"1.1","id":"{ULID}","type":"job.submit","payload":{{"agent":"a",'
        '"input":[0.10000000000000000001]}}',
        "payload.input[0]",
    ),
    (
        "input lone surrogate",
        f'{{"arcp":"1.1","id":"{ULID}","type":"job.submit","payload":{{"agent":"a",'
        '"input":{"k":["\\ud800"]}}}',
        "payload.input.k[0]",
    ),
    (
        "input too deep",
        frame("job.submit", {"agent": "a", "input": json.loads("[" * 30 + "]" * 30)}),
        "payload.input" + "[0]" * 24,
    ),
    (
        "lease not object",
        frame("job.submit", {"agent": "a", "lease_request": []}),
        "payload.lease_request",
    ),
    (
        "lease patterns not list",
        frame("job.submit", {"agent": "a", "lease_request": {"fs.read": "/x"}}),
        "payload.lease_request.fs.read",
    ),
    (
        "lease pattern not string",
        frame("job.submit", {"agent": "a", "lease_request": {"fs.read": ["/x", 3]}}),
        "payload.lease_request.fs.read[1]",
    ),
    *[
        (
            f"expires_at {value}",
            frame("job.submit", {"agent": "a", "lease_constraints": {"expires_at": value}}),
            "payload.lease_constraints.expires_at",
        )
        for value in [
            "2026-05-13T23:42:00",
            "2026-05-13T23:42:00+01:00",
            "2026-05-13T23:42:00-00:30",
            "tomorrow",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-05-13",
            "2026-05-13T23:42:60Z",
            "٢٠٢٦-05-13T23:42:00Z",
        ]
    ],
    (
        "expires_at number",
        frame("job.submit", {"agent": "a", "lease_constraints": {"expires_at": 1}}),
        "payload.lease_constraints.expires_at",
    ),
    (
        "idempotency empty",
        frame("job.submit", {"agent": "a", "idempotency_key": ""}),
        "payload.idempotency_key",
    ),
    (
        "max_runtime negative",
        frame("job.submit", {"agent": "a", "max_runtime_sec": -1}),
        "payload.max_runtime_sec",
    ),
    (
        "max_runtime zero",
        frame("job.submit", {"agent": "a", "max_runtime_sec": 0}),
        "payload.max_runtime_sec",
    ),
    (
        "max_runtime float",
        frame("job.submit", {"agent": "a", "max_runtime_sec": 1.5}),
        "payload.max_runtime_sec",
    ),
    (
        "max_runtime bool",
        frame("job.submit", {"agent": "a", "max_runtime_sec": True}),
        "payload.max_runtime_sec",
    ),
    (
        "max_runtime huge",
        frame("job.submit", {"agent": "a", "max_runtime_sec": 2**32}),
        "payload.max_runtime_sec",
    ),
    (
        "ack negative",
        frame("session.ack", {"last_processed_seq": -5}),
        "payload.last_processed_seq",
    ),
    ("ack missing", frame("session.ack", {}), "payload.last_processed_seq"),
    ("ack string", frame("session.ack", {"last_processed_seq": "5"}), "payload.last_processed_seq"),
    (
        "ack over uint64",
        frame("session.ack", {"last_processed_seq": 2**64}),
        "payload.last_processed_seq",
    ),
    ("ping nonce missing", frame("session.ping", {}), "payload.nonce"),
    (
        "ping sent_at bad",
        frame("session.ping", {"nonce": "n", "sent_at": "now"}),
        "payload.sent_at",
    ),
    ("pong nonce number", frame("session.pong", {"ping_nonce": 1}), "payload.ping_nonce"),
    ("hello client string", frame("session.hello", {"client": "x"}), "payload.client"),
    ("hello client name", frame("session.hello", {"client": {"name": 1}}), "payload.client.name"),
    ("hello auth token", frame("session.hello", {"auth": {"token": []}}), "payload.auth.token"),
    (
        "hello feature",
        frame("session.hello", {"capabilities": {"features": ["ack", 2]}}),
        "payload.capabilities.features[1]",
    ),
    (
        "hello resume seq",
        frame(
            "session.hello",
            {"resume": {"session_id": "s", "resume_token": "t", "last_event_seq": -1}},
        ),
        "payload.resume.last_event_seq",
    ),
    (
        "hello resume token",
        frame("session.hello", {"resume": {"session_id": "s", "last_event_seq": 1}}),
        "payload.resume.resume_token",
    ),
    (
        "resume session",
        frame("session.resume", {"resume_token": "t", "last_event_seq": 1}),
        "payload.session_id",
    ),
    (
        "list status",
        frame("session.list_jobs", {"filter": {"status": ["running", "done"]}}),
        "payload.filter.status[1]",
    ),
    ("list filter", frame("session.list_jobs", {"filter": "running"}), "payload.filter"),
    ("list limit zero", frame("session.list_jobs", {"limit": 0}), "payload.limit"),
    ("list cursor", frame("session.list_jobs", {"cursor": 5}), "payload.cursor"),
    (
        "list created_after",
        frame("session.list_jobs", {"filter": {"created_after": "2026-05-13"}}),
        "payload.filter.created_after",
    ),
    ("bye reason", frame("session.bye", {"reason": False}), "payload.reason"),
    ("close reason", frame("session.close", {"reason": {}}), "payload.reason"),
    ("cancel job missing", frame("job.cancel", {"reason": "r"}), "payload.job_id"),
    ("cancel job differs", frame("job.cancel", {"job_id": "a"}, job_id="b"), "payload.job_id"),
    ("envelope job_id type", frame("job.cancel", {}, job_id=5), "job_id"),
    (
        "subscribe history",
        frame("job.subscribe", {"job_id": JOB, "history": "yes"}),
        "payload.history",
    ),
    (
        "subscribe from",
        frame("job.subscribe", {"job_id": JOB, "from_event_seq": -1}),
        "payload.from_event_seq",
    ),
    ("unsubscribe job", frame("job.unsubscribe", {"job_id": 1}), "payload.job_id"),
    # The core's caps (arcp_grpc.base.validate), applied by the gateway too.
    (
        "cancel reason cap",
        frame("job.cancel", {"job_id": JOB, "reason": "r" * 1025}),
        "payload.reason",
    ),
    ("job_id cap", frame("job.unsubscribe", {"job_id": "j" * 129}), "payload.job_id"),
    ("job_id control", frame("job.subscribe", {"job_id": "job\n1"}), "payload.job_id"),
    (
        "envelope session_id",
        frame("session.ping", {"nonce": "n"}, session_id="s\u2028"),
        "session_id",
    ),
    ("envelope job_id cap", frame("session.ping", {"nonce": "n"}, job_id="j" * 129), "job_id"),
    ("nonce cap", frame("session.ping", {"nonce": "n" * 257}), "payload.nonce"),
    ("bye reason cap", frame("session.bye", {"reason": "r" * 1025}), "payload.reason"),
    ("cursor cap", frame("session.list_jobs", {"cursor": "c" * 513}), "payload.cursor"),
    (
        "resume token cap",
        frame(
            "session.resume",
            {"session_id": SESSION, "resume_token": "t" * 4097, "last_event_seq": 0},
        ),
        "payload.resume_token",
    ),
    (
        "features cap",
        frame("session.hello", {"capabilities": {"features": ["f"] * 65}}),
        "payload.capabilities.features",
    ),
    ("agent cap", frame("job.submit", {"agent": "a" * 257}), "payload.agent"),
    (
        "lease cap",
        frame(
            "job.submit", {"agent": "echo", "lease_request": {"fs.read": ["/" + "p" * 999] * 70}}
        ),
        "payload.lease_request",
    ),
    (
        "idempotency key cap",
        frame("job.submit", {"agent": "echo", "idempotency_key": "k" * 257}),
        "payload.idempotency_key",
    ),
]


@pytest.mark.parametrize(
    ("text", "field"), [(t, f) for _, t, f in BAD_INPUTS], ids=[n for n, _, _ in BAD_INPUTS]
)
def test_bad_input_names_the_field(text: str | bytes, field: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        decode(text)
    assert exc.value.details == {"field": field}
    assert exc.value.code == "INVALID_REQUEST"
    assert field in exc.value.message


def test_oversize_frame() -> None:
    with pytest.raises(InvalidRequest) as exc:
        decode_client_frame(frame("session.bye", {"reason": "x" * 100}), max_bytes=64)
    assert exc.value.details == {"field": "$"}
    assert "exceeds" in exc.value.message


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


# ---- server frames ------------------------------------------------------------


def _ts(msg: Any, seconds: int = TS_SECONDS, nanos: int = 0) -> None:
    msg.seconds = seconds
    msg.nanos = nanos


def _lease(msg: Any) -> None:
    msg.capabilities["fs.read"].patterns.extend(["/ws/**"])
    msg.capabilities["cost.budget"].patterns.extend(["USD:5.00"])


def server_frames() -> dict[str, ConnectResponse]:
    """One canonical frame per ConnectResponse member (and per event kind)."""
    out: dict[str, ConnectResponse] = {}

    r = ConnectResponse(id=ULID, session_id=SESSION)
    w = r.welcome
    w.session_id = SESSION
    w.runtime.name, w.runtime.version = "arcp-grpc", "0.1.0"
    w.resume_token, w.resume_window_sec, w.heartbeat_interval_sec = "rtk_1", 600, 30
    w.capabilities.encodings.append("json")
    w.capabilities.features.extend(["heartbeat", "agent_versions"])
    w.capabilities.agents.add(name="echo", versions=["1.0.0", "2.0.0"], default_version="2.0.0")
    w.capabilities.agents.add(name="bare", versions=["0.1"])
    _ts(w.accepted_at, nanos=123_000_000)
    w.resumed = True
    out["welcome"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION)
    r.ping.nonce = "p_1"
    _ts(r.ping.sent_at)
    out["ping"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, request_id=REQ)
    r.pong.ping_nonce = "p_1"
    _ts(r.pong.received_at, nanos=20_000_000)
    out["pong"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, request_id=REQ)
    job = r.jobs.jobs.add(job_id=JOB, agent="echo@2.0.0", status=jobs_pb2.JOB_STATUS_RUNNING)
    _lease(job.lease)
    _ts(job.lease_constraints.expires_at, seconds=TS_SECONDS + 3600)
    job.budget["USD"] = "3.58"
    job.parent_job_id = "job_parent"
    _ts(job.created_at)
    job.trace_id = TRACE
    job.last_event_seq = 1822
    done = r.jobs.jobs.add(job_id="job_2", agent="echo@1.0.0", status=jobs_pb2.JOB_STATUS_SUCCESS)
    _ts(done.created_at)
    _ts(done.completed_at, seconds=TS_SECONDS + 5)
    r.jobs.next_cursor = "100"
    out["jobs"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION)
    r.closed.reason = "client.close"
    out["closed"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, request_id=REQ)
    r.error.error.code = errors_pb2.ERROR_CODE_INVALID_REQUEST
    r.error.error.message = "payload.agent: bad"
    r.error.error.details.update({"field": "payload.agent"})
    out["error"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, request_id=REQ, job_id=JOB, trace_id=TRACE)
    a = r.accepted
    a.job_id, a.agent, a.trace_id = JOB, "echo@2.0.0", TRACE
    _lease(a.lease)
    _ts(a.lease_constraints.expires_at, seconds=TS_SECONDS + 3600)
    a.budget["USD"] = "5.00"
    a.budget["credits"] = "1000"
    cred = a.credentials.add(
        id="cred_1", scheme="bearer", value="sk-virt", endpoint="https://gw/v1"
    )
    cred.profile = "openai"
    cred.constraints.capabilities["model.use"].patterns.append("tier-fast/*")
    _ts(cred.constraints.expires_at, seconds=TS_SECONDS + 3600)
    _ts(a.accepted_at)
    out["accepted"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, request_id=REQ, job_id=JOB)
    r.cancelled.job_id = JOB
    out["cancelled"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, request_id=REQ, job_id=JOB, trace_id=TRACE)
    s = r.subscribed
    s.job_id, s.agent, s.trace_id = JOB, "echo@2.0.0", TRACE
    s.current_status = jobs_pb2.JOB_STATUS_RUNNING
    _lease(s.lease)
    s.budget["USD"] = "3.58"
    s.subscribed_from, s.replayed = 1830, 3
    out["subscribed"] = r

    def event(name: str) -> ConnectResponse:
        r = ConnectResponse(id=ULID, session_id=SESSION, job_id=JOB, trace_id=TRACE, event_seq=42)
        r.event.job_id = JOB
        r.event.job_seq = 7
        _ts(r.event.ts)
        out[f"event.{name}"] = r
        return r

    event("log").event.log.CopyFrom(
        events_pb2.LogEvent(level=events_pb2.LOG_LEVEL_WARN, message="m")
    )
    event("thought").event.thought.text = "hmm"
    tool_call = event("tool_call").event.tool_call
    tool_call.tool, tool_call.call_id = "grep", "c1"
    tool_call.args.struct_value.update({"pattern": "x", "n": 3})
    event("tool_result").event.tool_result.CopyFrom(
        events_pb2.ToolResultEvent(call_id="c1", result=struct_pb2.Value(string_value="ok"))
    )
    failed = event("tool_result_error").event.tool_result
    failed.call_id = "c2"
    failed.error.code = errors_pb2.ERROR_CODE_BUDGET_EXHAUSTED
    failed.error.message = "spent"
    status = event("status").event.status
    status.phase, status.message = "credential_rotated", "rotated"
    status.credential.CopyFrom(cred)
    metric = event("metric").event.metric
    metric.name, metric.value, metric.unit = "cost.inference", 0.0234, "USD"
    metric.dimensions.update({"model": "tier-fast/a"})
    artifact = event("artifact_ref").event.artifact_ref
    artifact.uri, artifact.content_type, artifact.byte_size = "s3://b/k", "text/plain", 12
    artifact.sha256 = "ab" * 32
    delegate = event("delegate").event.delegate
    delegate.child_job_id, delegate.agent = "job_child", "helper@1.0.0"
    _lease(delegate.lease)
    progress = event("progress").event.progress
    progress.current, progress.total, progress.units, progress.message = 47, 120, "files", "m"
    event("result_chunk").event.result_chunk.CopyFrom(
        events_pb2.ResultChunkEvent(
            result_id="res_1",
            chunk_seq=0,
            data="héllo".encode(),
            encoding=events_pb2.CHUNK_ENCODING_UTF8,
            more=True,
        )
    )
    event("result_chunk_binary").event.result_chunk.CopyFrom(
        events_pb2.ResultChunkEvent(
            result_id="res_1",
            chunk_seq=1,
            data=b"\x00\xff\xfe",
            encoding=events_pb2.CHUNK_ENCODING_BASE64,
            more=False,
        )
    )
    vendor = event("vendor").event.vendor
    vendor.kind = "x-vendor.acme.trace"
    vendor.body.update({"span": "abc", "depth": 2})

    r = ConnectResponse(id=ULID, session_id=SESSION, job_id=JOB, trace_id=TRACE, event_seq=43)
    r.result.job_id = JOB
    r.result.final_status = jobs_pb2.JOB_STATUS_SUCCESS
    r.result.value.struct_value.update({"answer": 42, "items": [1.5, "x"]})
    r.result.summary = "done"
    _ts(r.result.completed_at)
    out["result"] = r

    r = ConnectResponse(id=ULID, session_id=SESSION, job_id=JOB, event_seq=44)
    r.result.job_id = JOB
    r.result.final_status = jobs_pb2.JOB_STATUS_SUCCESS
    r.result.streamed.result_id, r.result.streamed.result_size = "res_1", 31_457_280
    _ts(r.result.completed_at)
    out["result_streamed"] = r

    for name, status_value, code in [
        ("job_error", jobs_pb2.JOB_STATUS_ERROR, errors_pb2.ERROR_CODE_LEASE_EXPIRED),
        ("job_error_cancelled", jobs_pb2.JOB_STATUS_CANCELLED, errors_pb2.ERROR_CODE_CANCELLED),
        ("job_error_timed_out", jobs_pb2.JOB_STATUS_TIMED_OUT, errors_pb2.ERROR_CODE_TIMEOUT),
    ]:
        r = ConnectResponse(id=ULID, session_id=SESSION, job_id=JOB, event_seq=45)
        r.job_error.job_id = JOB
        r.job_error.final_status = status_value
        r.job_error.error.code = code
        r.job_error.error.message = "ended"
        r.job_error.error.details.update({"why": "test"})
        _ts(r.job_error.completed_at)
        out[name] = r
    return out


SERVER_FRAMES = server_frames()
SERVER_CASES = [
    pytest.param(name, profile, dialect, id=f"{name}-{profile}-{dialect.close.name}")
    for name in SERVER_FRAMES
    for profile in PROFILES
    for dialect in DIALECTS
]


def render(
    name: str,
    profile: session_pb2.WireProfile.ValueType = WIRE_PROFILE_SPEC,
    dialect: Dialect | None = None,
) -> Any:
    text = encode_server_frame(SERVER_FRAMES[name], profile=profile, dialect=dialect or Dialect())
    return json.loads(text)


def test_every_response_member_is_covered() -> None:
    members = {f.name for f in ConnectResponse.DESCRIPTOR.oneofs_by_name["frame"].fields}
    covered = {SERVER_FRAMES[name].WhichOneof("frame") for name in SERVER_FRAMES}
    assert covered == members
    kinds = {f.name for f in events_pb2.JobEvent.DESCRIPTOR.oneofs_by_name["body"].fields}
    assert {
        f.event.WhichOneof("body") for f in SERVER_FRAMES.values() if f.HasField("event")
    } == kinds


@pytest.mark.parametrize(("name", "profile", "dialect"), SERVER_CASES)
def test_server_frame_round_trip_and_determinism(
    name: str, profile: session_pb2.WireProfile.ValueType, dialect: Dialect
) -> None:
    msg = SERVER_FRAMES[name]
    text = encode_server_frame(msg, profile=profile, dialect=dialect)
    assert encode_server_frame(msg, profile=profile, dialect=dialect) == text
    assert not re.search(r"\s", STRING_LITERAL.sub('""', text))  # compact separators
    env = json.loads(text)
    assert list(env)[:3] == ["arcp", "id", "type"]
    assert list(env)[-1] == "payload"
    assert decode_server_frame(text) == msg


@pytest.mark.parametrize(("name", "profile", "dialect"), SERVER_CASES)
def test_published_client_parses_every_frame(
    name: str, profile: session_pb2.WireProfile.ValueType, dialect: Dialect
) -> None:
    """The envelope always; the payload models under SDK_COMPAT (read pump, dispatch.py)."""
    env = Envelope.from_wire(render(name, profile, dialect))
    if profile != WIRE_PROFILE_SDK_COMPAT:
        return
    payload = env.payload
    models: dict[str, Any] = {
        "session.welcome": SessionWelcomePayload,
        "session.ping": SessionPingPayload,
        "session.pong": SessionPongPayload,
        "session.jobs": SessionJobsPayload,
        "session.bye": SessionByePayload,
        "session.error": SessionErrorPayload,
        "job.accepted": JobAcceptedPayload,
        "job.subscribed": JobSubscribedPayload,
        "job.event": JobEventPayload,
        "job.result": JobResultPayload,
        "job.error": JobErrorPayload,
    }
    model = models.get(env.type)
    if model is None:  # session.closed, job.cancelled: the client ignores them
        assert env.type in {"session.closed", "job.cancelled"}
        return
    model.model_validate(payload)
    if env.type in {"job.event", "job.result", "job.error"}:
        assert env.job_id == JOB  # the client drops job frames without it


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


def test_budget_per_profile_is_exact() -> None:
    spec = encode_server_frame(
        SERVER_FRAMES["accepted"], profile=WIRE_PROFILE_SPEC, dialect=Dialect()
    )
    assert '"budget":{"USD":5.00,"credits":1000}' in spec  # §7.1: numbers, exact tokens
    sdk = render("accepted", WIRE_PROFILE_SDK_COMPAT)["payload"]
    assert sdk["budget"] == {"USD": "USD:5.00", "credits": "credits:1000"}
    unspecified = encode_server_frame(
        SERVER_FRAMES["accepted"], profile=session_pb2.WIRE_PROFILE_UNSPECIFIED, dialect=Dialect()
    )
    assert unspecified == spec


def test_accepted_payload_has_request_id_and_credentials() -> None:
    payload = render("accepted")["payload"]
    assert payload["request_id"] == REQ
    assert payload["lease"] == {"cost.budget": ["USD:5.00"], "fs.read": ["/ws/**"]}
    assert payload["lease_constraints"] == {"expires_at": "2026-05-13T20:42:13Z"}
    assert payload["credentials"] == [
        {
            "id": "cred_1",
            "scheme": "bearer",
            "value": "sk-virt",
            "endpoint": "https://gw/v1",
            "profile": "openai",
            "constraints": {"model.use": ["tier-fast/*"], "expires_at": "2026-05-13T20:42:13Z"},
        }
    ]


def test_sdk_profile_drops_unknown_credential_schemes() -> None:
    msg = ConnectResponse()
    msg.CopyFrom(SERVER_FRAMES["accepted"])
    msg.accepted.credentials.add(id="c2", scheme="signed_url", value="v", endpoint="https://x")
    sdk = json.loads(encode_server_frame(msg, profile=WIRE_PROFILE_SDK_COMPAT, dialect=Dialect()))
    assert [c["id"] for c in sdk["payload"]["credentials"]] == ["cred_1"]
    JobAcceptedPayload.model_validate(sdk["payload"])
    spec = json.loads(encode_server_frame(msg, profile=WIRE_PROFILE_SPEC, dialect=Dialect()))
    assert [c["id"] for c in spec["payload"]["credentials"]] == ["cred_1", "c2"]


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


EVENT_BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "event.log": ("log", {"level": "warn", "message": "m"}),
    "event.thought": ("thought", {"text": "hmm"}),
    "event.tool_call": (
        "tool_call",
        {
            "tool": "grep",
            "args": {"n": 3, "pattern": "x"},
            "call_id": "c1",
            "name": "grep",
            "arguments": {"n": 3, "pattern": "x"},
            "tool_call_id": "c1",
        },
    ),
    "event.tool_result": (
        "tool_result",
        {"call_id": "c1", "tool_call_id": "c1", "result": "ok", "output": "ok"},
    ),
    "event.tool_result_error": (
        "tool_result",
        {
            "call_id": "c2",
            "tool_call_id": "c2",
            "error": {"code": "BUDGET_EXHAUSTED", "message": "spent", "retryable": False},
        },
    ),
    "event.metric": (
        "metric",
        {
            "name": "cost.inference",
            "value": 0.0234,
            "unit": "USD",
            "dimensions": {"model": "tier-fast/a"},
            "attributes": {"model": "tier-fast/a"},
        },
    ),
    "event.artifact_ref": (
        "artifact_ref",
        {
            "uri": "s3://b/k",
            "content_type": "text/plain",
            "media_type": "text/plain",
            "byte_size": 12,
            "size_bytes": 12,
            "sha256": "ab" * 32,
        },
    ),
    "event.progress": (
        "progress",
        {"current": 47, "total": 120, "units": "files", "message": "m"},
    ),
    "event.result_chunk": (
        "result_chunk",
        {"result_id": "res_1", "chunk_seq": 0, "data": "héllo", "encoding": "utf8", "more": True},
    ),
    "event.result_chunk_binary": (
        "result_chunk",
        {"result_id": "res_1", "chunk_seq": 1, "data": "AP/+", "encoding": "base64", "more": False},
    ),
    "event.vendor": ("x-vendor.acme.trace", {"depth": 2, "span": "abc"}),
}


@pytest.mark.parametrize("name", sorted(EVENT_BODIES))
def test_event_bodies(name: str) -> None:
    kind, body = EVENT_BODIES[name]
    env = render(name)
    assert env["event_seq"] == 42
    assert env["job_id"] == JOB
    assert env["trace_id"] == TRACE
    assert env["payload"]["kind"] == kind
    assert env["payload"]["ts"] == TS
    assert env["payload"]["body"] == body


def test_status_credential_rotation_body() -> None:
    body = render("event.status")["payload"]["body"]
    assert (body["phase"], body["id"], body["value"]) == ("credential_rotated", "cred_1", "sk-virt")
    assert body["credential"]["endpoint"] == "https://gw/v1"


def test_invalid_utf8_chunk_falls_back_to_base64() -> None:
    msg = ConnectResponse()
    msg.CopyFrom(SERVER_FRAMES["event.result_chunk"])
    msg.event.result_chunk.data = b"\xff\xfe"
    body = json.loads(encode_server_frame(msg, profile=WIRE_PROFILE_SPEC, dialect=Dialect()))
    assert body["payload"]["body"]["encoding"] == "base64"
    assert body["payload"]["body"]["data"] == "//4="


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


def test_decode_server_frame_rejects_junk() -> None:
    junk: list[str | bytes] = ["", "[]", '{"arcp":"1.1","id":"x","type":"job.dance"}', b"\xff"]
    for text in junk:
        with pytest.raises(InvalidRequest):
            decode_server_frame(text)


def test_public_exports_are_pinned() -> None:
    import gateway.codec

    assert set(gateway.codec.__all__) == {
        "MAX_SAFE_INTEGER",
        "MAX_VALUE_DEPTH",
        "UNANSWERED_TYPES",
        "WIRE_PROFILE_SDK_COMPAT",
        "WIRE_PROFILE_SPEC",
        "ClientFrame",
        "CloseForm",
        "Dialect",
        "ResumeForm",
        "WireProfile",
        "decode_client_frame",
        "decode_server_frame",
        "encode_client_frame",
        "encode_server_frame",
    }


def test_the_envelope_cache_is_bounded_in_bytes() -> None:
    """Frames with huge ids (from a core that does not cap them) are rendered but not
    kept: 40 distinct 1 MiB trace ids must not stay pinned in the gateway's memory."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for index in range(40):
            msg = ConnectResponse(id=f"01J{index:023d}", session_id=SESSION, job_id=JOB)
            msg.trace_id = f"{index:02d}" + "a" * (1024 * 1024)
            msg.cancelled.job_id = JOB
            text = encode_server_frame(msg, profile=WIRE_PROFILE_SPEC, dialect=Dialect())
            assert msg.trace_id in text
            del msg, text
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held - before < 8 * 1024 * 1024  # cached, 40 of them would hold 80 MiB
