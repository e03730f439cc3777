"""ARCP sessions through the gateway: disconnected sessions, resume and replay.

Jobs run on while a session is away and every event arrives on resume, from the
store beyond the session buffer (§6.3); acknowledged events are freed (§6.5);
``session.close`` leaves jobs resumable within the window and not after (§6.7);
an idempotent replay attaches to the running job and is followed by its
credential rotations (§7.2, §9.8.2).
"""

from __future__ import annotations

import asyncio
from typing import Any

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.service.sessions import SessionLimits
from tests.conftest import SPENDING
from tests.gateway.conftest import (
    Frame,
    RawFactory,
    StackFactory,
    open_raw,
    seqs,
    wait_until_finished,
)

# -- disconnected sessions and resume (§6.3, §6.5, §6.7) -------------------------


async def test_jobs_run_while_disconnected_and_everything_arrives_on_resume(
    raw: RawFactory,
) -> None:
    client = await raw()
    accepted = await client.submit("counter", {"steps": 30, "interval": 0.01})
    job_id = accepted["payload"]["job_id"]
    await client.recv_until(lambda f: f.get("event_seq") == 3)
    await client.close()
    await asyncio.sleep(0.5)  # the job finishes while nobody listens
    back = await raw(hello=False)
    assert (await back.hello(resume=client.resume_block()))["type"] == "session.welcome"
    frames = await back.until_terminal(job_id)
    assert seqs(frames) == list(range(4, 33))
    assert frames[-1]["payload"]["result"] == {"count": 30}


async def test_a_resume_gets_events_beyond_the_buffer_from_the_store(
    make_stack: StackFactory,
) -> None:
    """While a session is away its jobs' events wait in the store, not in the session
    buffer: a resume gets every one, however many more than `max_buffered_frames`."""
    stack = await make_stack(session_limits=SessionLimits(max_buffered_frames=20))
    client = await open_raw(stack.url)
    await client.hello()
    accepted = await client.submit("counter", {"steps": 200, "interval": 0.005})
    job_id = accepted["payload"]["job_id"]
    await client.recv_until(lambda f: f.get("payload", {}).get("job_seq") == 5)
    client.ws.transport.abort()  # gone without a word, mid-job
    await wait_until_finished(stack.core, "alice", job_id)
    back = await open_raw(stack.url)
    try:
        welcome = await back.hello(resume=client.resume_block())
        assert welcome["type"] == "session.welcome", welcome
        rest = await back.until_terminal(job_id)
        job_seqs = [f["payload"]["job_seq"] for f in rest if f["type"] == "job.event"]
        assert job_seqs == list(range(6, 202))  # 196 events for a 20-frame buffer
        assert rest[-1]["payload"]["result"] == {"count": 200}
        assert seqs(rest) == list(range(client.last_seq + 1, client.last_seq + 1 + len(rest)))
    finally:
        await back.close()


async def test_ack_frees_the_buffer(raw: RawFactory) -> None:
    """§6.5: acknowledged events may be freed, so a resume before them is refused."""
    client = await raw()
    await client.run("chatty", {"events": 10})
    await client.send("session.ack", {"last_processed_seq": 8})
    await client.run("echo", "sync")  # the ack is processed before this submit
    await client.close()
    early = await raw(hello=False)
    reply = await early.hello(resume=client.resume_block(last_seq=5))
    assert reply["payload"]["code"] == "RESUME_WINDOW_EXPIRED"
    ok = await raw(hello=False)
    assert (await ok.hello(resume=client.resume_block(last_seq=8)))["type"] == "session.welcome"
    frames = [await ok.recv() for _ in range(4)]
    assert seqs(frames) == [9, 10, 11, 12]


async def test_jobs_survive_session_close_and_remain_resumable(raw: RawFactory) -> None:
    """§6.7: in-flight jobs are not affected by session.close; resumable in the window."""
    client = await raw()
    accepted = await client.submit("counter", {"steps": 20, "interval": 0.01})
    job_id = accepted["payload"]["job_id"]
    await client.send("session.close", {"reason": "later"})
    await client.recv_until(lambda f: f["type"] == "session.closed")
    await client.closed()
    back = await raw(hello=False)
    assert (await back.hello(resume=client.resume_block()))["type"] == "session.welcome"
    frames = await back.until_terminal(job_id)
    assert frames[-1]["payload"]["result"] == {"count": 20}
    assert seqs(frames)[0] == client.last_seq + 1


async def test_resume_after_the_window_is_expired(make_stack: StackFactory) -> None:
    stack = await make_stack(session_limits=SessionLimits(resume_window_sec=1))
    client = await open_raw(stack.url)
    await client.hello()
    await client.run("echo", 1)
    await client.close()
    late = await open_raw(stack.url)
    try:
        for _ in range(100):  # bounded: the sweeper runs every 0.2 s
            await asyncio.sleep(0.1)
            if len(stack.core.sessions) == 0:
                break
        reply = await late.hello(resume=client.resume_block())
        assert reply["payload"]["code"] == "RESUME_WINDOW_EXPIRED"
    finally:
        await late.close()


# -- idempotent replay (§7.2) ---------------------------------------------------


async def test_idempotent_replay_attaches_to_the_running_job(raw: RawFactory) -> None:
    """§7.2: a replay gets the cached acceptance and the job's remaining events."""
    first = await raw()
    accepted = await first.submit("counter", {"steps": 50, "interval": 0.01}, idempotency_key="k1")
    job_id = accepted["payload"]["job_id"]
    second = await raw()
    replay = await second.submit("counter", {"interval": 0.01, "steps": 50}, idempotency_key="k1")
    assert replay["payload"]["job_id"] == job_id
    assert {k: v for k, v in replay["payload"].items() if k != "request_id"} == {
        k: v for k, v in accepted["payload"].items() if k != "request_id"
    }
    frames = await second.until_terminal(job_id)
    assert frames[-1]["payload"]["result"] == {"count": 50}
    conflict = await second.submit("counter", {"steps": 51}, idempotency_key="k1")
    assert conflict["payload"]["code"] == "DUPLICATE_KEY"
    done = await second.submit("counter", {"interval": 0.01, "steps": 50}, idempotency_key="k1")
    assert done["payload"]["job_id"] == job_id
    tail = await second.until_terminal(job_id)
    assert [f["type"] for f in tail] == ["job.result"]


async def _rotating_then_waiting(ctx: JobContext, _input: Any) -> Any:
    """Rotates its credential (§9.8.2), then runs until cancelled."""
    await ctx.rotate_credential(ctx.credentials[0].id)
    await asyncio.Event().wait()


def _rotation_value(frame: Frame) -> str | None:
    body = frame.get("payload", {}).get("body", {})
    if frame.get("type") == "job.event" and body.get("phase") == "credential_rotated":
        value = body.get("value")
        assert isinstance(value, str)
        return value
    return None


async def test_a_replay_after_a_rotation_is_followed_by_the_rotation(
    make_stack: StackFactory,
) -> None:
    """DESIGN.md "Replay after a rotation": the replayed `job.accepted` is the original
    (§7.2), and the job's `credential_rotated` events follow it at once, so the caller
    converges on the live value (§9.8.2)."""
    agents = AgentRegistry()
    agents.register("rotating-waiting", "1.0.0", _rotating_then_waiting)
    stack = await make_stack(agents=agents)
    first = await open_raw(stack.url)
    again = await open_raw(stack.url)
    try:
        await first.hello()
        original = await first.submit(
            "rotating-waiting", idempotency_key="rotate-1", lease_request=SPENDING
        )
        job_id = original["payload"]["job_id"]
        (issued,) = original["payload"]["credentials"]
        rotated, _ = await first.recv_until(lambda f: _rotation_value(f) is not None)
        live = _rotation_value(rotated)
        assert live != issued["value"]

        await again.hello()
        request_id = await again.send(
            "job.submit",
            {"agent": "rotating-waiting", "idempotency_key": "rotate-1", "lease_request": SPENDING},
        )
        replayed = await again.recv()
        assert replayed["type"] == "job.accepted"
        assert replayed["payload"]["request_id"] == request_id
        assert {**replayed["payload"], "request_id": ""} == {
            **original["payload"],
            "request_id": "",
        }
        follows = await again.recv()
        assert follows["job_id"] == job_id
        assert _rotation_value(follows) == live
        await first.send("job.cancel", {"job_id": job_id})
        await first.until_terminal(job_id)
    finally:
        await first.close()
        await again.close()
