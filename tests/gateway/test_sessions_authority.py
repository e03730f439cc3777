"""ARCP sessions through the gateway: who may act on a job and who may see it.

Cancel authority stays with the submitting session and survives a resume, never
a subscription (§7.4, §7.6, §7.7); another principal can neither subscribe to
nor list a job (§6.6, §7.6, §14); ``list_jobs`` filters and pages (§6.6); an
ended job's credentials show on no introspection surface (§14).
"""

from __future__ import annotations

import grpc

from arcp_grpc.v1 import job_service_pb2 as pb
from tests.conftest import SPENDING, bearer, new_stub
from tests.gateway.conftest import Frame, RawFactory, Stack

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
