"""Raw ARCP frames through the gateway: bad input, both dialects, the spec's own forms.

A plain `websockets` client reaches what the published client's API cannot:
malformed frames, frames out of order, the v1.1 text's dialect and the
default SPEC wire profile. Per-message errors keep the session open, which
each test proves by a successful submit afterwards (§12, DESIGN.md
"Non-negotiables").
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from arcp_grpc.service.sessions import SessionLimits
from tests.gateway.conftest import (
    ALL_FEATURES,
    RawClient,
    RawFactory,
    Stack,
    StackFactory,
    open_raw,
)

Frame = dict[str, Any]

POLICY = 1008  # WebSocket close code: authentication or handshake refused


def error_of(frame: Frame) -> tuple[str, str]:
    """(code, details.field) of a `session.error` frame."""
    assert frame["type"] == "session.error", frame
    payload = frame["payload"]
    return payload["code"], payload.get("details", {}).get("field", "")


async def still_open(client: RawClient) -> None:
    """The session still works: a submit runs to its result."""
    frames = await client.run("echo", {"still": "open"})
    assert frames[-1]["type"] == "job.result"
    assert frames[-1]["payload"]["result"] == {"still": "open"}


# -- per-message errors keep the session open --------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("{not json", "$"),
        ('{"arcp": "1.1",', "$"),
        ("[1, 2, 3]", "$"),
        ('"session.hello"', "$"),
        ("42", "$"),
        ("null", "$"),
        (b'{"arcp":"1.1"}', "$"),  # binary frames are not ARCP
    ],
)
async def test_unparseable_frames_get_invalid_request_and_session_stays_open(
    raw: RawFactory, data: str | bytes, field: str
) -> None:
    client = await raw()
    await client.send_raw(data)
    reply = await client.recv()
    assert error_of(reply) == ("INVALID_REQUEST", field)
    await still_open(client)


async def test_unparseable_frame_before_hello_keeps_the_socket(raw: RawFactory) -> None:
    client = await raw(hello=False)
    await client.send_raw("{oops")
    assert error_of(await client.recv())[0] == "INVALID_REQUEST"
    welcome = await client.hello()
    assert welcome["type"] == "session.welcome"
    await still_open(client)


async def test_frame_over_the_cap_is_refused_and_session_stays_open(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(max_frame_bytes=2048)
    client = await open_raw(stack.url)
    try:
        assert (await client.hello())["type"] == "session.welcome"
        await client.send("job.submit", {"agent": "echo", "input": {"pad": "x" * 4096}})
        reply = await client.recv()
        code, field = error_of(reply)
        assert (code, field) == ("INVALID_REQUEST", "$")
        assert "2048" in reply["payload"]["message"]
        await still_open(client)
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"agent": 5}, "payload.agent"),
        ({"agent": "echo", "max_runtime_sec": "soon"}, "payload.max_runtime_sec"),
        ({"agent": "echo", "max_runtime_sec": -1}, "payload.max_runtime_sec"),
        ({"agent": "echo", "idempotency_key": 7}, "payload.idempotency_key"),
        ({"agent": "echo", "lease_request": {"tool.call": "search"}}, "payload.lease_request"),
        ({"agent": "echo", "lease_constraints": "tomorrow"}, "payload.lease_constraints"),
        ({"agent": "Not Valid"}, "payload.agent"),
        ({}, "payload.agent"),
    ],
)
async def test_wrong_field_types_name_the_field(
    raw: RawFactory, payload: Frame, field: str
) -> None:
    client = await raw()
    request_id = await client.send("job.submit", payload)
    reply = await client.recv()
    code, got = error_of(reply)
    assert code == "INVALID_REQUEST"
    assert got.startswith(field), (got, reply)
    assert reply["payload"]["request_id"] == request_id
    await still_open(client)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"n": 2**53 + 1}, "payload.input.n"),
        ({"deep": [1, {"n": -(2**53) - 1}]}, "payload.input.deep[1].n"),
        (2**63, "payload.input"),
    ],
)
async def test_integers_beyond_2_53_are_refused_naming_the_field(
    raw: RawFactory, value: Any, where: str
) -> None:
    client = await raw()
    await client.send("job.submit", {"agent": "echo", "input": value})
    code, field = error_of(await client.recv())
    assert code == "INVALID_REQUEST"
    assert field == where
    await still_open(client)


async def test_integers_at_2_53_pass_exactly(raw: RawFactory) -> None:
    client = await raw()
    value = {"max": 2**53, "min": -(2**53)}
    frames = await client.run("echo", value)
    assert frames[-1]["payload"]["result"] == value


async def test_unknown_message_type_is_refused(raw: RawFactory) -> None:
    client = await raw()
    request_id = await client.send("job.teleport", {"job_id": "job_x"})
    reply = await client.recv()
    assert error_of(reply) == ("INVALID_REQUEST", "type")
    assert reply["payload"]["request_id"] == request_id
    await still_open(client)


@pytest.mark.parametrize("version", ["1.0", "2.0", 1.1, None])
async def test_wrong_arcp_version_is_invalid_request(raw: RawFactory, version: Any) -> None:
    client = await raw()
    env = RawClient.envelope("job.submit", {"agent": "echo"})
    if version is None:
        del env["arcp"]
    else:
        env["arcp"] = version
    await client.send_raw(json.dumps(env))
    assert error_of(await client.recv()) == ("INVALID_REQUEST", "arcp")
    await still_open(client)


@pytest.mark.parametrize("bad_id", ["", "not-a-ulid", "01ARZ3NDEKTSV4RRFFQ69G5FA", 17])
async def test_bad_envelope_id_is_invalid_request(raw: RawFactory, bad_id: Any) -> None:
    client = await raw()
    env = RawClient.envelope("session.list_jobs", {})
    env["id"] = bad_id
    await client.send_raw(json.dumps(env))
    assert error_of(await client.recv()) == ("INVALID_REQUEST", "id")
    await still_open(client)


async def test_unknown_top_level_fields_are_ignored(raw: RawFactory) -> None:
    """§5: forward compatibility."""
    client = await raw()
    request_id = await client.send(
        "job.submit", {"agent": "echo", "input": 1}, x_future={"a": [1]}, priority="high"
    )
    accepted = await client.reply_to(request_id)
    assert accepted["type"] == "job.accepted"
    frames = await client.until_terminal(accepted["payload"]["job_id"])
    assert frames[-1]["payload"]["result"] == 1


@pytest.mark.parametrize(
    "expires_at",
    [
        "2099-01-01T00:00:00",  # naive
        "2099-01-01T00:00:00+02:00",  # not UTC
        "next tuesday",  # unparseable
        "2001-01-01T00:00:00Z",  # past
    ],
)
async def test_bad_expires_at_is_invalid_request(raw: RawFactory, expires_at: str) -> None:
    """§9.5: expires_at is a future UTC timestamp; anything else is the client's mistake."""
    client = await raw()
    reply = await client.submit("echo", 1, lease_constraints={"expires_at": expires_at})
    code, field = error_of(reply)
    assert code == "INVALID_REQUEST"
    assert "expires_at" in field or "expires_at" in reply["payload"]["message"]
    await still_open(client)


# -- ordering: hello first, once ---------------------------------------------


async def test_frame_before_hello_is_invalid_request_then_close(raw: RawFactory) -> None:
    client = await raw(hello=False)
    request_id = await client.send("job.submit", {"agent": "echo"})
    reply = await client.recv()
    assert error_of(reply)[0] == "INVALID_REQUEST"
    assert reply["payload"]["request_id"] == request_id
    code, _ = await client.closed()
    assert code == POLICY


async def test_second_hello_is_refused_and_session_stays_open(raw: RawFactory) -> None:
    client = await raw()
    session_id = client.session_id
    await client.send(
        "session.hello", {"auth": {"scheme": "bearer", "token": "tok-bob"}, "capabilities": {}}
    )
    reply = await client.recv()
    assert error_of(reply)[0] == "INVALID_REQUEST"
    assert reply["session_id"] == session_id
    await still_open(client)


@pytest.mark.parametrize("token", [None, "", "tok-wrong"])
async def test_missing_or_wrong_auth_is_unauthenticated_then_1008(
    raw: RawFactory, token: str | None
) -> None:
    client = await raw(hello=False)
    reply = await client.hello(token)
    assert error_of(reply)[0] == "UNAUTHENTICATED"
    code, frames = await client.closed()
    assert code == POLICY
    assert frames == []


# -- dialects (DESIGN.md "Wire dialects") ----------------------------------


async def test_close_dialect_session_close_gets_session_closed(raw: RawFactory) -> None:
    """§6.7: session.close is acknowledged with session.closed."""
    client = await raw()
    request_id = await client.send("session.close", {"reason": "done"})
    reply = await client.recv()
    assert reply["type"] == "session.closed"
    assert reply["payload"]["request_id"] == request_id
    code, _ = await client.closed()
    assert code == 1000


async def test_bye_dialect_session_bye_gets_session_bye(raw: RawFactory) -> None:
    client = await raw()
    await client.send("session.bye", {"reason": "done"})
    reply = await client.recv()
    assert reply["type"] == "session.bye"
    assert reply["payload"]["reason"] == "done"
    code, _ = await client.closed()
    assert code == 1000


async def _run_chatty_then_drop(raw: RawFactory, events: int) -> tuple[RawClient, str]:
    client = await raw()
    frames = await client.run("chatty", {"events": events})
    await client.close()
    return client, frames[0]["payload"]["job_id"]


@pytest.mark.parametrize("form", ["hello", "session.resume"])
async def test_resume_in_both_dialects_replays_after_last_seq(raw: RawFactory, form: str) -> None:
    """§6.3: replay `seq > last_event_seq` in either form; the token rotates."""
    old, job_id = await _run_chatty_then_drop(raw, 5)
    assert old.last_seq == 6  # 5 logs + result
    block = old.resume_block(last_seq=2)
    fresh = await raw(hello=False)
    if form == "hello":
        welcome = await fresh.hello(resume=block)
    else:
        welcome = await fresh.resume_frame(block)
    assert welcome["type"] == "session.welcome", welcome
    assert welcome["payload"]["session_id"] == old.session_id
    assert welcome["payload"]["resumed"] is True
    assert welcome["payload"]["resume_token"] != old.resume_token
    replayed = await fresh.until_terminal(job_id)
    assert [f["event_seq"] for f in replayed] == [3, 4, 5, 6]
    await still_open(fresh)


async def test_rejected_resume_attempts_do_not_lock_out_the_owner(raw: RawFactory) -> None:
    """A wrong token or another principal is refused and changes nothing (§6.3, §14)."""
    old, job_id = await _run_chatty_then_drop(raw, 3)
    wrong_token = {**old.resume_block(0), "resume_token": "rt_guess"}
    for token, block in (("tok-alice", wrong_token), ("tok-bob", old.resume_block(0))):
        intruder = await raw(hello=False)
        reply = await intruder.hello(token, resume=block)
        assert reply["type"] == "session.error"
        assert reply["payload"]["code"] in ("UNAUTHENTICATED", "PERMISSION_DENIED")
        code, _ = await intruder.closed()
        assert code == POLICY
    owner = await raw(hello=False)
    welcome = await owner.hello(resume=old.resume_block(0))
    assert welcome["type"] == "session.welcome"
    frames = await owner.until_terminal(job_id)
    assert [f["event_seq"] for f in frames] == [1, 2, 3, 4]


async def _prove(client: RawClient) -> None:
    """Use the resumed session (any frame would do): proof the welcome arrived."""
    request_id = await client.send(
        "session.ping", {"nonce": "p_1", "sent_at": "2026-01-01T00:00:00Z"}
    )
    assert (await client.reply_to(request_id))["type"] == "session.pong"


async def test_a_lost_welcome_does_not_lock_the_client_out(raw: RawFactory) -> None:
    """DESIGN.md "Resume tokens": a resume whose welcome (with the new token) never
    reached the client leaves the token it resumed with valid, so it can resume again;
    once it uses the resumed session, that token is dead (§6.3)."""
    old, job_id = await _run_chatty_then_drop(raw, 3)
    lost = await raw(hello=False)
    assert (await lost.hello(resume=old.resume_block(0)))["type"] == "session.welcome"
    await lost.close()  # the welcome was "lost": nothing was sent on the resumed session
    again = await raw(hello=False)
    welcome = await again.hello(resume=old.resume_block(0))
    assert welcome["type"] == "session.welcome"
    frames = await again.until_terminal(job_id)
    assert [f["event_seq"] for f in frames] == [1, 2, 3, 4]  # nothing lost either
    await _prove(again)
    await again.close()
    for stale in (old, lost):  # the proven-replaced token, and the one never used
        late = await raw(hello=False)
        assert error_of(await late.hello(resume=stale.resume_block()))[0] == "UNAUTHENTICATED"
    current = await raw(hello=False)
    assert (await current.hello(resume=again.resume_block()))["type"] == "session.welcome"


async def test_a_token_used_after_its_successor_is_refused_and_logged(
    raw: RawFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A previous token presented once the new one was used may have been stolen:
    UNAUTHENTICATED, and a WARNING for the operator (DESIGN.md, §14)."""
    old, _ = await _run_chatty_then_drop(raw, 1)
    first = await raw(hello=False)
    assert (await first.hello(resume=old.resume_block()))["type"] == "session.welcome"
    await _prove(first)
    await first.close()
    replay = await raw(hello=False)
    with caplog.at_level(logging.WARNING, logger="arcp_grpc.sessions"):
        reply = await replay.hello(resume=old.resume_block())
    assert error_of(reply)[0] == "UNAUTHENTICATED"
    theft = [r for r in caplog.records if "possible theft" in r.getMessage()]
    assert len(theft) == 1
    assert theft[0].levelno == logging.WARNING
    assert old.session_id in theft[0].getMessage()
    assert old.resume_token not in caplog.text  # never the secret itself
    current = await raw(hello=False)
    assert (await current.hello(resume=first.resume_block()))["type"] == "session.welcome"


async def test_resume_window_expired_when_the_buffer_no_longer_covers(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(session_limits=SessionLimits(max_buffered_frames=4))
    client = await open_raw(stack.url)
    await client.hello()
    await client.run("chatty", {"events": 10})
    await client.close()
    again = await open_raw(stack.url)
    try:
        reply = await again.hello(resume=client.resume_block(last_seq=2))
        assert error_of(reply)[0] == "RESUME_WINDOW_EXPIRED"
        assert (await again.closed())[0] == POLICY
        covered = await open_raw(stack.url)
        welcome = await covered.hello(resume=client.resume_block(last_seq=8))
        assert welcome["type"] == "session.welcome"
        frames = [await covered.recv() for _ in range(3)]
        assert [f["event_seq"] for f in frames] == [9, 10, 11]
        await covered.close()
    finally:
        await again.close()


async def test_resume_of_unknown_session_is_resume_window_expired(raw: RawFactory) -> None:
    client = await raw(hello=False)
    reply = await client.hello(
        resume={
            "session_id": "sess_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "resume_token": "rt_x",
            "last_event_seq": 0,
        }
    )
    assert error_of(reply)[0] == "RESUME_WINDOW_EXPIRED"


# -- the spec's own form of every frame (default SPEC profile) ----------------


async def test_spec_profile_welcome_and_ping_pong(raw: RawFactory) -> None:
    client = await raw()
    welcome = client.received[0]
    payload = welcome["payload"]
    assert welcome["session_id"] == payload["session_id"]
    assert payload["resume_token"].startswith("rt_")
    assert payload["resume_window_sec"] == 600
    assert payload["heartbeat_interval_sec"] == 30
    assert "provisioned_credentials" in payload["capabilities"]["features"]
    agents = {a["name"]: a for a in payload["capabilities"]["agents"]}
    assert agents["greeter"]["versions"] == ["1.0.0", "2.0.0"]
    assert agents["greeter"]["default"] == "2.0.0"
    request_id = await client.send(
        "session.ping", {"nonce": "p_1", "sent_at": "2026-01-01T00:00:00Z"}
    )
    pong = await client.reply_to(request_id)
    assert pong["type"] == "session.pong"
    assert pong["payload"]["ping_nonce"] == "p_1"
    assert "event_seq" not in pong  # §6.4: heartbeats are not sequenced


async def test_spec_profile_accepted_budget_is_a_number(raw: RawFactory) -> None:
    """§7.1: `budget: {"USD": 5.0}` in the spec form; credentials are present."""
    client = await raw()
    request_id = await client.send(
        "job.submit",
        {"agent": "echo", "input": 1, "lease_request": {"cost.budget": ["USD:5.00"]}},
    )
    accepted = await client.reply_to(request_id)
    payload = accepted["payload"]
    assert payload["request_id"] == request_id
    assert payload["budget"] == {"USD": 5.0}
    assert isinstance(payload["budget"]["USD"], float | int)
    assert payload["lease"]["cost.budget"] == ["USD:5.00"]
    assert payload["credentials"][0]["scheme"] == "bearer"
    assert payload["agent"] == "echo@1.0.0"
    assert len(payload["trace_id"]) == 32


async def test_spec_profile_cancel_is_cancelled_then_job_error(raw: RawFactory) -> None:
    """§7.4: job.cancelled, then job.error CANCELLED with final_status cancelled."""
    client = await raw()
    accepted = await client.submit("counter", {"steps": 1000, "interval": 0.01})
    job_id = accepted["payload"]["job_id"]
    request_id = await client.send("job.cancel", {"job_id": job_id, "reason": "enough"})
    frames = await client.until_terminal(job_id)
    kinds = [f["type"] for f in frames if f["type"] != "job.event"]
    assert kinds == ["job.cancelled", "job.error"]
    cancelled = next(f for f in frames if f["type"] == "job.cancelled")
    assert cancelled["payload"]["request_id"] == request_id
    terminal = frames[-1]["payload"]
    assert terminal["code"] == "CANCELLED"
    assert terminal["final_status"] == "cancelled"
    assert "completed_at" in terminal


async def test_spec_profile_timeout_is_job_error_timed_out(raw: RawFactory) -> None:
    client = await raw()
    frames = await client.run("counter", {"steps": 1000, "interval": 0.01}, max_runtime_sec=1)
    terminal = frames[-1]
    assert terminal["type"] == "job.error"
    assert terminal["payload"]["code"] == "TIMEOUT"
    assert terminal["payload"]["final_status"] == "timed_out"


async def test_spec_profile_job_error_and_events(raw: RawFactory) -> None:
    client = await raw()
    frames = await client.run("greeter", {"name": "Ada"})
    assert frames[0]["payload"]["agent"] == "greeter@2.0.0"
    thought = next(f for f in frames if f["type"] == "job.event")
    assert thought["payload"]["kind"] == "thought"
    assert thought["payload"]["job_seq"] == 1
    assert frames[-1]["payload"]["result"] == {"greeting": "Hello, Ada!", "version": "2.0.0"}
    unknown = await client.submit("no-such-agent", {})
    assert error_of(unknown)[0] == "AGENT_NOT_AVAILABLE"
    version = await client.submit("greeter@9.9.9", {})
    assert error_of(version)[0] == "AGENT_VERSION_NOT_AVAILABLE"
    await still_open(client)


async def test_spec_profile_list_jobs_and_subscribe(raw: RawFactory) -> None:
    client = await raw()
    frames = await client.run("chatty", {"events": 2})
    job_id = frames[0]["payload"]["job_id"]
    request_id = await client.send("session.list_jobs", {"limit": 10})
    jobs = await client.reply_to(request_id)
    assert jobs["type"] == "session.jobs"
    entry = jobs["payload"]["jobs"][0]
    assert entry["job_id"] == job_id
    assert entry["status"] == "success"
    assert entry["created_at"] == entry["submitted_at"]
    observer = await raw()
    request_id = await observer.send(
        "job.subscribe", {"job_id": job_id, "history": True, "from_event_seq": 0}
    )
    subscribed = await observer.recv()
    assert subscribed["type"] == "job.subscribed"
    assert subscribed["payload"]["request_id"] == request_id
    assert subscribed["payload"]["replayed"] is True  # §7.6: a boolean
    assert subscribed["payload"]["replayed_events"] == 2
    rest = await observer.until_terminal(job_id)
    assert [f["event_seq"] for f in rest] == [1, 2, 3]


async def test_sdk_profile_over_raw_frames(raw: RawFactory) -> None:
    """The compatibility profile: budget strings, cancel ends in job.result."""
    client = await raw("tok-sdk")
    accepted = await client.submit(
        "counter",
        {"steps": 1000, "interval": 0.01},
        lease_request={"cost.budget": ["USD:5.00"]},
    )
    assert accepted["payload"]["budget"] == {"USD": "USD:5.00"}
    job_id = accepted["payload"]["job_id"]
    await client.send("job.cancel", {}, job_id=job_id)  # the SDK's envelope-only form
    frames = await client.until_terminal(job_id)
    assert frames[-1]["type"] == "job.result"
    assert frames[-1]["payload"]["final_status"] == "cancelled"


async def test_one_principal_serves_both_profiles_through_two_tokens(
    make_stack: StackFactory,
) -> None:
    """DESIGN.md "Wire profile": the profile is chosen per token (`"alice:sdk"`), the
    principal's setting (`compat_principals`, not alice's here) being the default; both
    clients are the same principal (one sees the other's job) and a resume keeps the
    token's profile."""
    tokens = {"tok-alice": "alice", "tok-alice-sdk": "alice:sdk"}
    stack = await make_stack(tokens=tokens)
    spec, sdk = await open_raw(stack.url), await open_raw(stack.url)
    resumed = await open_raw(stack.url)
    try:
        await spec.hello("tok-alice")
        await sdk.hello("tok-alice-sdk")
        lease = {"cost.budget": ["USD:5.00"]}
        by_spec = await spec.submit("echo", 1, lease_request=lease)
        by_sdk = await sdk.submit("echo", 1, lease_request=lease)
        assert by_spec["payload"]["budget"] == {"USD": 5.0}
        assert by_sdk["payload"]["budget"] == {"USD": "USD:5.00"}
        await sdk.until_terminal(by_sdk["payload"]["job_id"])
        request_id = await sdk.send("session.list_jobs", {})
        listed = await sdk.reply_to(request_id)
        assert by_spec["payload"]["job_id"] in {j["job_id"] for j in listed["payload"]["jobs"]}
        await sdk.close()
        back = await resumed.hello("tok-alice-sdk", resume=sdk.resume_block())
        assert back["type"] == "session.welcome"
        again = await resumed.submit("echo", 2, lease_request=lease)
        assert again["payload"]["budget"] == {"USD": "USD:5.00"}
    finally:
        for client in (spec, sdk, resumed):
            await client.close()


async def test_errors_carry_the_session_and_retryable(raw: RawFactory, stack: Stack) -> None:
    client = await raw(features=[f for f in ALL_FEATURES if f != "list_jobs"])
    request_id = await client.send("session.list_jobs", {})
    reply = await client.recv()
    assert error_of(reply)[0] == "INVALID_REQUEST"  # §6.2: not negotiated
    assert reply["payload"]["request_id"] == request_id
    assert reply["payload"]["retryable"] is False
    assert reply["session_id"] == client.session_id
    await still_open(client)


async def test_message_over_the_socket_limit_closes_with_1009(make_stack: StackFactory) -> None:
    """Beyond `max_message_bytes` the socket closes (too big); the gateway carries on."""
    stack = await make_stack(max_frame_bytes=2048, max_message_bytes=4096)
    client = await open_raw(stack.url)
    await client.hello()
    await client.send("job.submit", {"agent": "echo", "input": "x" * 8192})
    code, _ = await client.closed()
    assert code == 1009
    fresh = await open_raw(stack.url)
    try:
        await fresh.hello()
        await still_open(fresh)
    finally:
        await fresh.close()
