"""Scale: 200 concurrent WebSocket sessions through one gateway, 5 jobs each, all complete.

Raw clients (lighter than the published client) keep the test within the
2-core budget; what it checks is completeness and per-session sequencing,
never speed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.gateway.conftest import SAFETY, TERMINAL, RawClient, Stack, open_raw

SESSIONS = 200
JOBS = 5


async def one_session(url: str, index: int) -> list[int]:
    client: RawClient = await open_raw(url)
    try:
        welcome = await client.hello("tok-alice" if index % 2 else "tok-bob")
        assert welcome["type"] == "session.welcome", welcome
        ids = set()
        for job in range(JOBS):
            request_id = await client.send(
                "job.submit", {"agent": "chatty", "input": {"events": 3 + job}}
            )
            ids.add(request_id)
        results: dict[str, Any] = {}
        numbered: list[int] = []
        while len(results) < JOBS:
            frame = await client.recv()
            if "event_seq" in frame:
                numbered.append(frame["event_seq"])
            if frame["type"] == "session.error":
                raise AssertionError(frame)
            if frame["type"] in TERMINAL:
                assert frame["type"] == "job.result", frame
                results[frame["job_id"]] = frame["payload"]["result"]
        assert numbered == list(range(1, len(numbered) + 1))
        assert sorted(r["events"] for r in results.values()) == [3, 4, 5, 6, 7]
        return numbered
    finally:
        await client.close()


async def test_200_sessions_5_jobs_each_all_complete(stack: Stack) -> None:
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(one_session(stack.url, i) for i in range(SESSIONS))), SAFETY * 3
    )
    assert len(outcomes) == SESSIONS
    assert all(len(numbered) == 3 + 4 + 5 + 6 + 7 + JOBS for numbered in outcomes)
