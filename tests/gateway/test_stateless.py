"""The gateway is stateless (DESIGN.md "Shape"): all session state is in the core.

A gateway stopped mid-session loses nothing: the client resumes through
another one. Two gateways front one core side by side, and a closed socket
never leaves a stream attached in the core.
"""

from __future__ import annotations

import asyncio

from tests.gateway.conftest import SAFETY, TERMINAL, RawClient, Stack, open_raw


async def wait_detached(stack: Stack) -> None:
    """Bounded: the core sees every Connect stream end once its socket is gone."""
    for _ in range(int(SAFETY / 0.02)):
        if stack.core.sessions.attached_count() == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{stack.core.sessions.attached_count()} streams still attached")


async def test_resume_through_a_new_gateway_after_the_first_stops(stack: Stack) -> None:
    client = await open_raw(stack.url)
    await client.hello()
    accepted = await client.submit("counter", {"steps": 80, "interval": 0.01})
    job_id = accepted["payload"]["job_id"]
    await client.recv_until(lambda f: f.get("event_seq") == 10)
    await stack.gateway.stop()  # every socket on it closes; the core keeps the session
    _, tail = await client.closed()
    for frame in tail:
        if "event_seq" in frame:
            client.last_seq = max(client.last_seq, frame["event_seq"])
    await wait_detached(stack)
    replacement = await stack.add_gateway()
    assert replacement.url != stack.gateways[0].url
    again = await open_raw(replacement.url)
    try:
        again.last_seq = client.last_seq
        welcome = await again.hello(resume=client.resume_block())
        assert welcome["type"] == "session.welcome"
        assert welcome["payload"]["session_id"] == client.session_id
        frames = await again.until_terminal(job_id)
    finally:
        await again.close()
    before = [f["event_seq"] for f in [*client.received, *tail] if "event_seq" in f]
    after = [f["event_seq"] for f in frames if "event_seq" in f]
    assert before + after == list(range(1, 83))  # log, 80 progress, result
    assert frames[-1]["payload"]["result"] == {"count": 80}


async def test_two_gateways_side_by_side(stack: Stack) -> None:
    second = await stack.add_gateway()
    one: RawClient = await open_raw(stack.url)
    two: RawClient = await open_raw(second.url)
    try:
        await one.hello()
        await two.hello()
        accepted = await one.submit("counter", {"steps": 30, "interval": 0.01})
        job_id = accepted["payload"]["job_id"]
        await two.send("job.subscribe", {"job_id": job_id, "history": True})
        own = await two.submit("chatty", {"events": 20})
        seen_one = await one.until_terminal(job_id)
        seen_two: list[dict[str, object]] = []
        waiting = {job_id, own["payload"]["job_id"]}
        while waiting:
            frame = await two.recv()
            seen_two.append(frame)
            if frame["type"] in TERMINAL:
                waiting.discard(str(frame["job_id"]))
        numbered = [f["event_seq"] for f in seen_two if "event_seq" in f]
        assert numbered == list(range(1, len(numbered) + 1))
        assert seen_one[-1]["payload"]["result"] == {"count": 30}
        relayed = [f for f in seen_two if f.get("job_id") == job_id and f["type"] == "job.event"]
        assert len(relayed) == 31
    finally:
        await one.close()
        await two.close()
    await wait_detached(stack)
    assert stack.core.sessions.attached_count() == 0
