"""ARCP sessions end to end through the gateway: sequencing, resume, heartbeats,
ack and back-pressure, subscriptions, cancel authority, negotiated features,
list_jobs and principal isolation (§6, §7, §8.3, §14)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.service.sessions import SessionLimits
from arcp_grpc.v1 import job_service_pb2 as pb
from tests.conftest import SPENDING, bearer, new_stub
from tests.gateway.conftest import (
    ALL_FEATURES,
    TERMINAL,
    RawClient,
    RawFactory,
    Stack,
    StackFactory,
    open_raw,
    wait_until_finished,
)

Frame = dict[str, Any]


def seqs(frames: list[Frame]) -> list[int]:
    return [f["event_seq"] for f in frames if "event_seq" in f]


def report_body(size: int) -> str:
    """What the demo `report` agent streams for `{"bytes": size}`."""
    line = ("arcp report line " * 4)[:63] + "\n"
    return (line * (size // len(line) + 1))[:size]


async def until_all_terminal(client: RawClient, job_ids: set[str]) -> list[Frame]:
    frames: list[Frame] = []
    waiting = set(job_ids)
    while waiting:
        frame = await client.recv()
        frames.append(frame)
        if frame["type"] in TERMINAL:
            waiting.discard(frame["job_id"])
    return frames


# -- sequencing (§8.3) --------------------------------------------------------


async def test_event_seq_is_gap_free_across_interleaved_and_subscribed_jobs(
    raw: RawFactory,
) -> None:
    submitter = await raw()
    other = await submitter.submit("counter", {"steps": 30, "interval": 0.005})
    other_id = other["payload"]["job_id"]
    client = await raw()
    jobs = set()
    for events in (40, 25, 60):
        accepted = await client.submit("chatty", {"events": events})
        jobs.add(accepted["payload"]["job_id"])
    request_id = await client.send("job.subscribe", {"job_id": other_id, "history": True})
    jobs.add(other_id)
    frames = await until_all_terminal(client, jobs)
    numbered = seqs(frames)
    assert numbered == list(range(1, len(numbered) + 1))
    per_job = {job: [f for f in frames if f.get("job_id") == job] for job in jobs}
    assert len(per_job[other_id]) >= 32  # subscribed, log, 30 progress, result
    assert per_job[other_id][0]["type"] == "job.subscribed"
    assert per_job[other_id][0]["payload"]["request_id"] == request_id
    assert sum(len(v) for k, v in per_job.items() if k != other_id) == 40 + 25 + 60 + 3
    job_seqs = [f["payload"]["job_seq"] for f in per_job[other_id] if f["type"] == "job.event"]
    assert job_seqs == list(range(1, len(job_seqs) + 1))  # history then live, no gap


async def test_subscribed_arrives_before_replayed_history(raw: RawFactory) -> None:
    """§7.6: the authority descriptor first, then history, then live events."""
    submitter = await raw()
    accepted = await submitter.submit("counter", {"steps": 200, "interval": 0.005})
    job_id = accepted["payload"]["job_id"]
    await submitter.recv_until(lambda f: f.get("payload", {}).get("job_seq") == 5)
    observer = await raw()
    await observer.send("job.subscribe", {"job_id": job_id, "history": True, "from_event_seq": 0})
    frames = await observer.until_terminal(job_id)
    assert frames[0]["type"] == "job.subscribed"
    assert frames[0]["payload"]["current_status"] == "running"
    replayed = frames[0]["payload"]["replayed_events"]
    assert replayed >= 5
    job_seqs = [f["payload"]["job_seq"] for f in frames if f["type"] == "job.event"]
    assert job_seqs == list(range(1, 202))
    assert seqs(frames) == list(range(1, len(frames)))


async def test_subscribe_without_history_sees_only_live_events(raw: RawFactory) -> None:
    submitter = await raw()
    accepted = await submitter.submit("counter", {"steps": 100, "interval": 0.005})
    job_id = accepted["payload"]["job_id"]
    await submitter.recv_until(lambda f: f.get("payload", {}).get("job_seq") == 10)
    observer = await raw()
    await observer.send("job.subscribe", {"job_id": job_id})
    frames = await observer.until_terminal(job_id)
    subscribed = frames[0]["payload"]
    assert subscribed["replayed"] is False
    first = next(f for f in frames if f["type"] == "job.event")
    assert first["payload"]["job_seq"] > subscribed["subscribed_from"] >= 10
    assert first["event_seq"] == 1


async def test_unsubscribe_stops_delivery(raw: RawFactory) -> None:
    submitter = await raw()
    accepted = await submitter.submit("counter", {"steps": 100, "interval": 0.005})
    job_id = accepted["payload"]["job_id"]
    observer = await raw()
    await observer.send("job.subscribe", {"job_id": job_id})
    await observer.recv_until(lambda f: f["type"] == "job.event")
    request_id = await observer.send("job.unsubscribe", {"job_id": job_id})
    await submitter.until_terminal(job_id)
    # A marker job: everything before its result is what the observer got.
    marker = await observer.run("echo", "marker")
    after = [f for f in marker if f.get("job_id") == job_id]
    assert not any(f["type"] in TERMINAL for f in after)
    assert not any(f.get("payload", {}).get("request_id") == request_id for f in after)
    again = await observer.send("job.unsubscribe", {"job_id": job_id})
    reply = await observer.reply_to(again)
    assert reply["payload"]["code"] == "INVALID_REQUEST"
    own = await observer.submit("echo", 1)
    request_id = await observer.send("job.unsubscribe", {"job_id": own["payload"]["job_id"]})
    assert (await observer.reply_to(request_id))["payload"]["code"] == "INVALID_REQUEST"


# -- cancel authority (§7.4, §7.6, §7.7) ----------------------------------------


async def test_only_the_submitting_session_may_cancel(raw: RawFactory) -> None:
    submitter = await raw()
    accepted = await submitter.submit("counter", {"steps": 1000, "interval": 0.01})
    job_id = accepted["payload"]["job_id"]
    subscriber = await raw()
    await subscriber.send("job.subscribe", {"job_id": job_id})
    await subscriber.recv_until(lambda f: f["type"] == "job.subscribed")
    request_id = await subscriber.send("job.cancel", {"job_id": job_id})
    denied = await subscriber.reply_to(request_id)
    assert denied["payload"]["code"] == "PERMISSION_DENIED"
    stranger = await raw("tok-bob")
    request_id = await stranger.send("job.cancel", {"job_id": job_id})
    assert (await stranger.reply_to(request_id))["payload"]["code"] == "JOB_NOT_FOUND"
    await submitter.send("job.cancel", {"job_id": job_id})
    frames = await submitter.until_terminal(job_id)
    assert frames[-1]["payload"]["code"] == "CANCELLED"
    seen = await subscriber.until_terminal(job_id)
    assert seen[-1]["payload"]["final_status"] == "cancelled"


async def test_cancel_after_resume_keeps_authority(raw: RawFactory) -> None:
    """§7.7: resume carries cancel authority; subscribe does not."""
    first = await raw()
    accepted = await first.submit("counter", {"steps": 1000, "interval": 0.01})
    job_id = accepted["payload"]["job_id"]
    await first.close()
    second = await raw(hello=False)
    assert (await second.hello(resume=first.resume_block()))["type"] == "session.welcome"
    await second.send("job.cancel", {"job_id": job_id})
    frames = await second.until_terminal(job_id)
    assert frames[-1]["payload"]["final_status"] == "cancelled"


async def test_a_long_lived_session_forgets_the_jobs_it_ran(stack: Stack, raw: RawFactory) -> None:
    """Cancel authority needs only the session's running jobs; a session that runs jobs
    for days must not keep every job id (and a late cancel still reads as one, §7.4)."""
    client = await raw()
    job_ids = []
    for index in range(30):
        frames = await client.run("echo", {"index": index})
        job_ids.append(frames[0]["payload"]["job_id"])
    session = stack.core.sessions._sessions[client.session_id]
    assert session.submitted == set()
    request_id = await client.send("job.cancel", {"job_id": job_ids[-1]})
    late = await client.reply_to(request_id)
    assert late["payload"]["code"] == "INVALID_REQUEST"
    assert "already ended" in late["payload"]["message"]


# -- principals (§6.6, §7.6, §14) -----------------------------------------------


async def test_other_principal_cannot_subscribe_or_list(raw: RawFactory) -> None:
    alice = await raw()
    frames = await alice.run("echo", {"secret": 1}, lease_request=SPENDING)
    job_id = frames[0]["payload"]["job_id"]
    credential = frames[0]["payload"]["credentials"][0]["value"]
    bob = await raw("tok-bob")
    request_id = await bob.send("job.subscribe", {"job_id": job_id, "history": True})
    reply = await bob.reply_to(request_id)
    assert reply["payload"]["code"] == "PERMISSION_DENIED"
    await bob.run("echo", 2)
    request_id = await bob.send("session.list_jobs", {})
    listing = await bob.reply_to(request_id)
    assert [j["job_id"] for j in listing["payload"]["jobs"]] != []
    assert job_id not in [j["job_id"] for j in listing["payload"]["jobs"]]
    assert credential not in str(listing)
    request_id = await alice.send("session.list_jobs", {})
    own = await alice.reply_to(request_id)
    assert [j["job_id"] for j in own["payload"]["jobs"]] == [job_id]
    assert credential not in str(own)  # ended: revoked, shown to nobody (DESIGN.md)


async def test_list_jobs_filters_and_paging(raw: RawFactory) -> None:
    client = await raw()
    ids = [(await client.run("echo", i))[0]["payload"]["job_id"] for i in range(5)]
    greeter = (await client.run("greeter@1.0.0", {}))[0]["payload"]
    running = await client.submit("counter", {"steps": 1000, "interval": 0.01})
    running_id = running["payload"]["job_id"]

    async def listing(payload: Frame) -> Frame:
        request_id = await client.send("session.list_jobs", payload)
        reply = await client.reply_to(request_id)
        assert reply["type"] == "session.jobs", reply
        body: Frame = reply["payload"]
        return body

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = await listing({"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert len(page["jobs"]) <= 2
        seen += [j["job_id"] for j in page["jobs"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert sorted(seen) == sorted([*ids, greeter["job_id"], running_id])
    assert len(seen) == len(set(seen))
    page = await listing({"filter": {"status": ["running", "pending"]}})
    assert [j["job_id"] for j in page["jobs"]] == [running_id]
    page = await listing({"filter": {"agent": "greeter"}})
    assert [j["job_id"] for j in page["jobs"]] == [greeter["job_id"]]
    page = await listing({"filter": {"created_after": greeter["accepted_at"]}})
    assert running_id in [j["job_id"] for j in page["jobs"]]
    assert not set(ids) & {j["job_id"] for j in page["jobs"]}
    request_id = await client.send("session.list_jobs", {"limit": 1001})
    assert (await client.reply_to(request_id))["payload"]["code"] == "INVALID_REQUEST"


# -- negotiated features only (§6.2) --------------------------------------------


async def test_no_progress_events_without_the_progress_feature(raw: RawFactory) -> None:
    client = await raw(features=[f for f in ALL_FEATURES if f != "progress"])
    assert "progress" not in client.received[0]["payload"]["capabilities"]["features"]
    frames = await client.run("counter", {"steps": 5, "interval": 0.001})
    kinds = [f["payload"]["kind"] for f in frames if f["type"] == "job.event"]
    assert kinds == ["log"]
    assert seqs(frames) == [1, 2]  # filtered events take no sequence number


async def _rotating(ctx: JobContext, _input: Any) -> Any:
    """Rotates its credential (§9.8.2) and logs a line that merely mentions it."""
    await ctx.log("about to emit credential_rotated")
    await ctx.rotate_credential(ctx.credentials[0].id)
    return "rotated"


async def test_credentials_reach_only_clients_that_negotiated_them(
    make_stack: StackFactory,
) -> None:
    """§6.2, §9.8: accepted, listings and credential_rotated events carry credentials
    only for a client with `provisioned_credentials`; budgets need `cost.budget`."""
    agents = AgentRegistry()
    agents.register("rotating", "1.0.0", _rotating)
    stack = await make_stack(agents=agents)
    lease = {**SPENDING, "cost.budget": ["USD:1.00"]}
    without = [f for f in ALL_FEATURES if f not in ("provisioned_credentials", "cost.budget")]
    plain = await open_raw(stack.url)
    await plain.hello(features=without)
    frames = await plain.run("rotating", None, lease_request=lease)
    accepted = frames[0]["payload"]
    assert "credentials" not in accepted
    assert "budget" not in accepted
    events = [f["payload"] for f in frames if f["type"] == "job.event"]
    assert [e["kind"] for e in events] == ["log"]  # the rotation is not shown
    full = await open_raw(stack.url)
    await full.hello()
    frames = await full.run("rotating", None, lease_request=lease)
    assert frames[0]["payload"]["credentials"]
    assert frames[0]["payload"]["budget"]
    phases = [f["payload"]["body"].get("phase") for f in frames if f["type"] == "job.event"]
    assert "credential_rotated" in phases
    await plain.close()
    await full.close()


async def test_result_inline_without_result_chunk(raw: RawFactory) -> None:
    client = await raw(features=[f for f in ALL_FEATURES if f != "result_chunk"])
    frames = await client.run("report", {"bytes": 3000})
    assert not [f for f in frames if f.get("payload", {}).get("kind") == "result_chunk"]
    assert frames[-1]["type"] == "job.result"
    assert frames[-1]["payload"]["result"] == report_body(3000)


async def test_result_chunks_with_result_chunk(raw: RawFactory) -> None:
    client = await raw()
    frames = await client.run("report", {"bytes": 3000})
    chunks = [
        f["payload"]["body"] for f in frames if f.get("payload", {}).get("kind") == "result_chunk"
    ]
    assert chunks
    assert "".join(c["data"] for c in chunks) == report_body(3000)
    assert frames[-1]["payload"]["result_size"] == 3000


async def test_result_above_the_inline_cap_fails_clearly(make_stack: StackFactory) -> None:
    stack = await make_stack(session_limits=SessionLimits(max_inline_result_bytes=1000))
    client = await open_raw(stack.url)
    try:
        await client.hello(features=[f for f in ALL_FEATURES if f != "result_chunk"])
        frames = await client.run("report", {"bytes": 5000})
        terminal = frames[-1]
        assert terminal["type"] == "job.error"
        assert terminal["payload"]["code"] == "INTERNAL_ERROR"
        assert "result_chunk" in terminal["payload"]["message"]
        small = await client.run("report", {"bytes": 900})
        assert small[-1]["payload"]["result"] == report_body(900)
    finally:
        await client.close()


async def test_feature_not_negotiated_is_refused(raw: RawFactory) -> None:
    client = await raw(features=["heartbeat"])
    assert client.received[0]["payload"]["capabilities"]["features"] == ["heartbeat"]
    request_id = await client.send("job.subscribe", {"job_id": "job_x"})
    assert (await client.reply_to(request_id))["payload"]["code"] == "INVALID_REQUEST"
    request_id = await client.send("session.ack", {"last_processed_seq": 1})
    assert (await client.reply_to(request_id))["payload"]["code"] == "INVALID_REQUEST"


# -- disconnected sessions, heartbeats, ack (§6.3-§6.5) ------------------------


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


async def test_no_introspection_shows_an_ended_jobs_credentials(
    raw: RawFactory, stack: Stack
) -> None:
    """DESIGN.md "Replay after a rotation": once a job ended its values are revoked and
    no introspection surface shows them, even to the submitter (§14): list_jobs,
    job.subscribed, GetJob, ListJobs."""
    client = await raw()
    frames = await client.run("echo", {"x": 1}, lease_request=SPENDING)
    assert frames[0]["payload"]["credentials"]  # it had one while it ran
    job_id = frames[0]["payload"]["job_id"]
    listing = await client.reply_to(await client.send("session.list_jobs", {}))
    (entry,) = [j for j in listing["payload"]["jobs"] if j["job_id"] == job_id]
    assert "credentials" not in entry
    subscribed = await client.reply_to(await client.send("job.subscribe", {"job_id": job_id}))
    assert subscribed["type"] == "job.subscribed"
    assert "credentials" not in subscribed["payload"]
    async with grpc.aio.insecure_channel(stack.core.grpc_address) as channel:
        stub = new_stub(channel)
        got = await stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=bearer())
        assert list(got.job.credentials) == []
        listed = await stub.ListJobs(pb.ListJobsRequest(), metadata=bearer())
        assert [list(j.credentials) for j in listed.jobs if j.job_id == job_id] == [[]]
