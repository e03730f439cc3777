"""Resume under fault (§6.3, §8.3): random socket drops across a chatty job lose
and duplicate no event.

The socket is aborted (no closing handshake, frames in flight are lost) at
random points; each time the client resumes with the last `event_seq` it saw.
The seed is fixed so a failure reproduces.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from tests.gateway.conftest import SAFETY, TERMINAL, RawClient, Stack, open_raw

DROPS = 200
EVENTS = 3000


async def reconnect(url: str, previous: RawClient) -> RawClient:
    client = await open_raw(url)
    client.last_seq = previous.last_seq
    welcome = await client.hello(resume=previous.resume_block())
    assert welcome["type"] == "session.welcome", welcome
    assert welcome["payload"]["session_id"] == previous.session_id
    return client


async def test_random_drops_lose_and_duplicate_nothing(stack: Stack) -> None:
    rng = random.Random(20260513)
    client = await open_raw(stack.url)
    await client.hello()
    accepted = await client.submit("chatty", {"events": EVENTS})
    job_id = accepted["payload"]["job_id"]
    delivered: list[dict[str, Any]] = []
    drops = 0
    finished = False

    async def run() -> None:
        nonlocal client, drops, finished
        while not finished:
            budget = rng.randint(0, 25) if drops < DROPS else None
            read = 0
            while budget is None or read < budget:
                frame = await client.recv()
                if "event_seq" not in frame:
                    continue
                delivered.append(frame)
                read += 1
                if frame["type"] in TERMINAL and frame.get("job_id") == job_id:
                    finished = True
                    break
            if finished:
                break
            client.ws.transport.abort()  # frames in flight are lost
            drops += 1
            client = await reconnect(stack.url, client)
            if drops % 3 == 0:  # acks interleave with resumes; neither may lose anything
                await client.send("session.ack", {"last_processed_seq": client.last_seq})

    try:
        await asyncio.wait_for(run(), SAFETY * 2)
    finally:
        await client.close()
    numbered = [f["event_seq"] for f in delivered]
    assert numbered == list(range(1, len(numbered) + 1))  # no gap, no duplicate, in order
    assert drops == DROPS
    logs = [f for f in delivered if f["type"] == "job.event" and f["payload"]["kind"] == "log"]
    assert [f["payload"]["job_seq"] for f in logs] == list(range(1, EVENTS + 1))
    terminal = delivered[-1]
    assert terminal["type"] == "job.result"
    assert terminal["payload"]["result"] == {"events": EVENTS}
    # Besides the logs and the result, only back-pressure signals (§6.5) were sequenced.
    others = [f for f in delivered[:-1] if f not in logs]
    assert all(f["payload"]["body"]["phase"] == "back_pressure" for f in others)
