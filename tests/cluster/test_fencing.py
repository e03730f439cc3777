"""A paused node is fenced (issue 20, item 1): two `serve` nodes on one PostgreSQL.

A node SIGSTOPped past `cluster.node_timeout_sec` is declared dead; the survivor ends
its jobs with a retryable INTERNAL_ERROR. When it runs again, nothing it emits may
contradict the store: its clients get no frame of those jobs except a close (1011 /
UNAVAILABLE) or the recorded terminal, it records no further event or session frame,
a resume through the survivor replays only what the store holds, and the process
exits 75 (EX_TEMPFAIL) to be restarted as a new node. Submits sent to it while it was
dead are all refused, and no job is left running with a dead owner.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc

from arcp_grpc.v1 import job_service_pb2 as pb
from tests.cluster.conftest import TIMEOUT
from tests.cluster.nodes import Cluster
from tests.conftest import bearer, new_stub, submit_request
from tests.gateway.conftest import SAFETY, TERMINAL, RawClient, open_raw

_EXIT_FENCED = 75
_SLOW = {"steps": 40, "interval": 0.1}  # 4 s: still running when the node is paused


async def _query(url: str, statement: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()


async def _until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    """Poll `check` (another process's state: nothing to wait on here) until it holds."""

    async def poll() -> None:
        while True:
            if await check():
                return
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), within)


async def _snapshot(url: str, session_id: str, job_ids: list[str]) -> tuple[Any, ...]:
    events = await _query(
        url, "SELECT job_id, seq FROM events WHERE job_id = ANY($1::text[])", job_ids
    )
    frames = await _query(url, "SELECT seq FROM session_frames WHERE session_id = $1", session_id)
    return frozenset((r["job_id"], r["seq"]) for r in events), frozenset(r["seq"] for r in frames)


async def _all_ended(url: str, job_ids: list[str]) -> bool:
    rows = await _query(
        url,
        "SELECT 1 FROM jobs WHERE job_id = ANY($1::text[]) AND completed_at IS NOT NULL",
        job_ids,
    )
    return len(rows) == len(job_ids)


async def _watch(stub: Any, job_id: str, seen: list[pb.WatchJobResponse]) -> grpc.StatusCode:
    call = stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=bearer())
    try:
        async for message in call:
            seen.append(message)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def _terminals(client: RawClient, job_ids: list[str]) -> list[dict[str, Any]]:
    """The terminal frame of each job, in whatever order the jobs' ends arrive."""
    ends: dict[str, dict[str, Any]] = {}
    while len(ends) < len(job_ids):
        frame, _ = await client.recv_until(
            lambda f: f.get("type") in TERMINAL and f.get("job_id") in job_ids
        )
        ends[frame["job_id"]] = frame
    return list(ends.values())


async def test_a_paused_node_sends_and_records_nothing_the_store_does_not_hold(
    cluster: Cluster, store_url: str
) -> None:
    a = cluster.a.process
    assert a is not None
    client = await open_raw(cluster.a.info["gateway"])
    assert (await client.hello())["type"] == "session.welcome"
    job_ids = [(await client.submit("counter", _SLOW))["payload"]["job_id"] for _ in range(3)]
    await client.recv_until(lambda f: f.get("payload", {}).get("job_seq") == 2)
    async with cluster.grpc(cluster.a) as chan_a:
        watched: list[pb.WatchJobResponse] = []
        watching = asyncio.ensure_future(_watch(new_stub(chan_a), job_ids[0], watched))
        await _until(lambda: asyncio.sleep(0, bool(watched)), SAFETY)  # a first message
        os.kill(a.pid, signal.SIGSTOP)
        try:
            await _until(lambda: _all_ended(store_url, job_ids), TIMEOUT + 2 + SAFETY)
            recorded = await _snapshot(store_url, client.session_id, job_ids)
        finally:
            os.kill(a.pid, signal.SIGCONT)
        code, late = await client.closed(within=TIMEOUT + SAFETY)
        ended_with = await asyncio.wait_for(watching, SAFETY)
    assert code == 1011  # the client is sent elsewhere
    assert a.wait(timeout=SAFETY + 10) == _EXIT_FENCED
    assert await _snapshot(store_url, client.session_id, job_ids) == recorded  # nothing more

    events, session_seqs = recorded
    for frame in [*client.received, *late]:
        if frame.get("event_seq"):
            assert frame["event_seq"] in session_seqs, frame  # every frame sent was recorded
        if frame.get("job_id") in job_ids:
            assert frame["type"] != "job.result", frame  # the store holds B's error
            if frame["type"] == "job.event":
                assert (frame["job_id"], frame["payload"]["job_seq"]) in events, frame
            if frame["type"] == "job.error":
                assert frame["payload"]["code"] == "INTERNAL_ERROR", frame
    for message in watched:
        assert all((job_ids[0], e.job_seq) in events for e in message.events)
        assert not message.outcome.HasField("result")
    assert ended_with in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.OK)

    again = await open_raw(cluster.b.info["gateway"])
    try:
        welcome = await again.hello(resume=client.resume_block())
        assert welcome["type"] == "session.welcome", welcome
        ends = await _terminals(again, job_ids)
    finally:
        await again.close()
    assert {(f["type"], f["payload"]["code"]) for f in ends} == {("job.error", "INTERNAL_ERROR")}


async def test_submits_to_a_dead_node_are_refused_and_nothing_runs_with_a_dead_owner(
    cluster: Cluster, store_url: str
) -> None:
    a = cluster.a.process
    assert a is not None
    client = await open_raw(cluster.a.info["gateway"])
    assert (await client.hello())["type"] == "session.welcome"
    async with cluster.grpc(cluster.a) as chan_a:
        stub = new_stub(chan_a)
        await stub.ListAgents(pb.ListAgentsRequest(), metadata=bearer())  # connected
        os.kill(a.pid, signal.SIGSTOP)
        try:

            async def declared_dead() -> bool:
                rows = await _query(store_url, "SELECT 1 FROM nodes WHERE state = 'dead'")
                return bool(rows)

            await _until(declared_dead, TIMEOUT + 2 + SAFETY)
            request = submit_request("counter", _SLOW)
            grpc_submits = [
                asyncio.ensure_future(stub.SubmitJob(request, metadata=bearer())) for _ in range(20)
            ]
            ws_submits = [asyncio.ensure_future(client.submit("counter", _SLOW)) for _ in range(5)]
            await asyncio.sleep(0.5)  # on their way into the paused node's sockets
        finally:
            os.kill(a.pid, signal.SIGCONT)
        answers = await asyncio.gather(*grpc_submits, return_exceptions=True)
        ws_answers = await asyncio.gather(*ws_submits, return_exceptions=True)
    a.kill()
    a.wait(timeout=SAFETY)
    accepted = [x for x in answers if not isinstance(x, BaseException)]
    assert accepted == []  # the store refused every job of a node it holds dead
    refused = [x for x in answers if isinstance(x, grpc.aio.AioRpcError)]
    assert {x.code() for x in refused} <= {grpc.StatusCode.UNAVAILABLE}
    assert not [x for x in ws_answers if isinstance(x, dict) and x["type"] == "job.accepted"]
    rows = await _query(store_url, "SELECT count(*) AS n FROM jobs")
    assert rows[0]["n"] == 0

    async def none_orphaned() -> bool:
        rows = await _query(
            store_url,
            "SELECT 1 FROM jobs j WHERE completed_at IS NULL AND NOT EXISTS (SELECT 1"
            " FROM nodes n WHERE n.node_id = j.owner_node AND n.state = 'alive')",
        )
        return not rows

    await _until(none_orphaned, TIMEOUT + 2 + SAFETY)
