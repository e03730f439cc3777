"""ARCP sessions through the gateway: keeping a connection alive and in step.

Heartbeats: two silent intervals close the transport but not the job, answered
pings keep it (§6.4); a connection that never says hello is closed; a consumer
that lags without acking gets one back-pressure signal, an acking one none (§6.5).
"""

from __future__ import annotations

import asyncio

from arcp_grpc.service.sessions import SessionLimits
from tests.gateway.conftest import TERMINAL, StackFactory, open_raw, seqs

# -- heartbeats and back-pressure (§6.4, §6.5) -----------------------------------


async def test_heartbeat_loss_closes_transport_but_not_job(make_stack: StackFactory) -> None:
    """§6.4: two silent intervals → HEARTBEAT_LOST; the job goes on; resumable."""
    stack = await make_stack(session_limits=SessionLimits(heartbeat_interval_sec=1))
    client = await open_raw(stack.url)
    client.answer_pings = False
    await client.hello()
    accepted = await client.submit("counter", {"steps": 300, "interval": 0.01})
    job_id = accepted["payload"]["job_id"]
    _, frames = await client.closed()
    errors = [f for f in frames if f["type"] == "session.error"]
    assert [e["payload"]["code"] for e in errors] == ["HEARTBEAT_LOST"]
    assert not any(f["type"] in TERMINAL for f in frames)
    seen = [f["event_seq"] for f in [*client.received, *frames] if "event_seq" in f]
    back = await open_raw(stack.url)
    try:
        welcome = await back.hello(resume=client.resume_block(max(seen, default=0)))
        assert welcome["type"] == "session.welcome"
        rest = await back.until_terminal(job_id)
        assert rest[-1]["payload"]["result"] == {"count": 300}
        assert seqs(rest)[0] == max(seen, default=0) + 1
    finally:
        await back.close()


async def test_a_connection_that_never_says_hello_is_closed(make_stack: StackFactory) -> None:
    """Heartbeats (§6.4) start with a session; before it, `hello_timeout_sec` bounds the wait."""
    stack = await make_stack(session_limits=SessionLimits(hello_timeout_sec=0.3))
    silent = await open_raw(stack.url)
    code, frames = await silent.closed()
    assert [(f["type"], f["payload"]["code"]) for f in frames] == [
        ("session.error", "UNAUTHENTICATED")
    ]
    assert "session.hello" in frames[0]["payload"]["message"]
    assert code == 1008


async def test_the_hello_deadline_spares_a_session_opened_in_time(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(session_limits=SessionLimits(hello_timeout_sec=0.3))
    client = await open_raw(stack.url)
    try:
        assert (await client.hello())["type"] == "session.welcome"
        await asyncio.sleep(0.6)  # well past the deadline
        frames = await client.run("echo", {"still": "here"})
        assert frames[-1]["type"] == "job.result"
        assert not [f for f in client.received if f["type"] == "session.error"]
    finally:
        await client.close()


async def test_pings_answered_keep_the_session_alive(make_stack: StackFactory) -> None:
    stack = await make_stack(session_limits=SessionLimits(heartbeat_interval_sec=1))
    client = await open_raw(stack.url)
    try:
        await client.hello()
        frames = await client.run("counter", {"steps": 3, "interval": 1.0})
        assert frames[-1]["payload"]["result"] == {"count": 3}
        pings = [f for f in client.received if f["type"] == "session.ping"]
        assert pings
        assert all("event_seq" not in p for p in pings)
    finally:
        await client.close()


async def test_lagging_consumer_gets_back_pressure(make_stack: StackFactory) -> None:
    stack = await make_stack(session_limits=SessionLimits(back_pressure_lag=20))
    client = await open_raw(stack.url)
    try:
        await client.hello()
        frames = await client.run("chatty", {"events": 60})
        signals = [
            f
            for f in frames
            if f["type"] == "job.event" and f["payload"]["body"].get("phase") == "back_pressure"
        ]
        assert len(signals) == 1
        assert signals[0]["payload"]["kind"] == "status"
        assert signals[0]["event_seq"] == 22
        await client.send("session.ack", {"last_processed_seq": client.last_seq})
        again = await client.run("chatty", {"events": 30})
        assert [
            f
            for f in again
            if f["type"] == "job.event" and f["payload"]["body"].get("phase") == "back_pressure"
        ]  # signalled again once the consumer lags again after acking
    finally:
        await client.close()


async def test_no_back_pressure_for_acking_consumer(make_stack: StackFactory) -> None:
    stack = await make_stack(session_limits=SessionLimits(back_pressure_lag=20))
    client = await open_raw(stack.url)
    try:
        await client.hello()
        for _ in range(4):
            await client.run("chatty", {"events": 10})
            await client.send("session.ack", {"last_processed_seq": client.last_seq})
        assert not [
            f
            for f in client.received
            if f["type"] == "job.event" and f["payload"]["body"].get("phase") == "back_pressure"
        ]
    finally:
        await client.close()
