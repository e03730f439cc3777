"""Refused client frames (``gateway/_client_frames.py``): always ``InvalidRequest``
(§12 ``INVALID_REQUEST``), naming the offending field in ``details["field"]``
(``"$"`` for the frame as a whole: size, UTF-8, JSON syntax, not an object).

The cases cover the envelope (§5), every payload field of every client frame
type, free-form values that a double cannot carry exactly, lease constraints
that are not UTC (§9.5), and the core's caps, which the gateway applies too.
"""

from __future__ import annotations

import json

import pytest

from arcp_grpc.errors import InvalidRequest
from gateway.codec import decode_client_frame
from tests.gateway.codec_samples import JOB, SESSION, TRACE, ULID, decode, frame

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
