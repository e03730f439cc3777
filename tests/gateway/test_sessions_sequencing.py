"""ARCP sessions through the gateway: the session's event sequence and subscriptions.

One gap-free ``event_seq`` per session across interleaved and subscribed jobs
(§8.3); ``job.subscribed`` before replayed history, live-only subscriptions and
``job.unsubscribe`` (§7.6).
"""

from __future__ import annotations

from tests.gateway.conftest import TERMINAL, Frame, RawClient, RawFactory, seqs


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
