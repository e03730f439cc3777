"""Clients that send faster than the core handles, or read slower than it sends.

A flood is held back at the client's socket: the gateway hands the core one frame
at a time and reads the next from the socket only once the core has taken it, so
a flood waits in TCP buffers (bounded by the kernel) instead of piling up in the
gateway's memory. Nothing is lost: once the core catches up every frame is
answered, in the order sent.

A client that reads slower than its jobs write, or not at all, gets their output at
its own pace: the core reads the rest from the store as the client takes it, with
no more than half of `sessions.max_unsent_bytes` waiting in memory. Frames that
cannot wait (replies to a flood of requests nobody reads) are bounded by dropping
the transport past the limit; the session stays resumable (§6.3).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from arcp_grpc.base.ids import new_ulid
from arcp_grpc.credentials import CredentialRequest, DevProvisioner
from arcp_grpc.runtime.quotas import QuotaLimits
from arcp_grpc.server import CoreConfig, RunningCore, start_core
from arcp_grpc.service.sessions import SessionLimits
from arcp_grpc.v1 import lease_pb2
from gateway.links import LocalLink
from gateway.server import GatewayConfig, RunningGateway, start_gateway
from tests.gateway.conftest import (
    SAFETY,
    TOKENS,
    RawClient,
    StackFactory,
    open_raw,
    wait_until_finished,
)

FRAME_INPUT_BYTES = 256 * 1024
FLOOD_FRAMES = 512  # 128 MiB in all: far beyond every socket and stream buffer on the path
STALL_SECONDS = 1.0  # no frame taken for this long counts as held back


class SlowUpstreamProvisioner(DevProvisioner):
    """A provisioner whose upstream answers only when `answer` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def issue(self, request: CredentialRequest) -> list[lease_pb2.Credential]:
        self.asked.set()
        await self.answer.wait()
        return await super().issue(request)


@pytest.fixture(params=["grpc", "local"])
async def slow_stack(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[RunningCore, RunningGateway, SlowUpstreamProvisioner]]:
    provisioner = SlowUpstreamProvisioner()
    core = await start_core(
        CoreConfig(data_dir=tmp_path / "core", tokens=TOKENS), provisioner=provisioner
    )
    gateway = await start_gateway(
        GatewayConfig(core_address=core.grpc_address, port=0),
        link=LocalLink(core) if request.param == "local" else None,
    )
    try:
        yield core, gateway, provisioner
    finally:
        provisioner.answer.set()
        await gateway.stop()
        await core.stop(grace=0.5)


def _big_submit(client: RawClient, frame_id: str) -> str:
    """A valid submit the core refuses cheaply (no such agent): nothing is stored."""
    envelope = client.envelope(
        "job.submit",
        {"agent": "no-such-agent", "input": {"blob": "x" * FRAME_INPUT_BYTES}},
        session_id=client.session_id,
    )
    envelope["id"] = frame_id
    return json.dumps(envelope)


async def test_a_flood_waits_in_the_socket_while_the_core_is_busy_and_all_of_it_is_answered(
    slow_stack: tuple[RunningCore, RunningGateway, SlowUpstreamProvisioner],
) -> None:
    _, gateway, provisioner = slow_stack
    client = await open_raw(gateway.url)
    try:
        assert (await client.hello("tok-alice"))["type"] == "session.welcome"
        # The core is busy with this submit until the provisioner's upstream answers.
        held = await client.send(
            "job.submit",
            {"agent": "echo", "input": {}, "lease_request": {"model.use": ["tier-fast/*"]}},
            session_id=client.session_id,
        )
        await asyncio.wait_for(provisioner.asked.wait(), SAFETY)

        frame_ids = [new_ulid() for _ in range(FLOOD_FRAMES)]
        taken = 0

        async def flood() -> None:
            nonlocal taken
            for frame_id in frame_ids:
                await client.ws.send(_big_submit(client, frame_id))
                taken += 1

        sender = asyncio.create_task(flood())
        while True:
            before = taken
            done, _ = await asyncio.wait((sender,), timeout=STALL_SECONDS)
            if done or taken == before:
                break
        assert not sender.done(), "the gateway took all 128 MiB while the core was busy"
        assert taken < FLOOD_FRAMES

        provisioner.answer.set()
        await asyncio.wait_for(sender, SAFETY)
        accepted = await client.reply_to(held)
        assert accepted["type"] == "job.accepted"
        refused = []
        for _ in frame_ids:
            reply, _ = await client.recv_until(lambda f: f["type"] == "session.error")
            assert reply["payload"]["code"] == "AGENT_NOT_AVAILABLE", reply
            refused.append(reply["payload"]["request_id"])
        assert refused == frame_ids  # every one, in order
    finally:
        await client.close()


async def _open_slow_reader(url: str) -> RawClient:
    """A client whose socket takes 4 KiB at a time and that reads nothing it is not asked to."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    ws = await connect(url, sock=sock, open_timeout=SAFETY, max_size=None, max_queue=1)
    return RawClient(ws)


async def test_a_client_that_stops_reading_holds_its_jobs_output_at_the_limit(
    make_stack: StackFactory,
) -> None:
    """The job writes on (its events are durable); what waits for the client in memory
    stays under the limit, and once it reads again every byte arrives, in order."""
    limit = 2 * 1024 * 1024  # eight result-chunk frames
    stack = await make_stack(session_limits=SessionLimits(max_unsent_bytes=limit))
    size = 24 * 1024 * 1024  # more than the socket and stream buffers and the limit together
    slow = await _open_slow_reader(stack.url)
    try:
        assert (await slow.hello("tok-alice"))["type"] == "session.welcome"
        accepted = await slow.submit("report", {"bytes": size, "sections": 0})
        job_id = accepted["payload"]["job_id"]
        await wait_until_finished(stack.core, "alice", job_id)  # without the client reading
        assert 0 < await _held_for_clients(stack.core, limit) <= limit
        assert stack.core.sessions.attached_count() == 1  # not dropped either

        frames = await slow.until_terminal(job_id)
        chunks = [
            f["payload"]["body"] for f in frames if f["payload"].get("kind") == "result_chunk"
        ]
        assert sum(len(chunk["data"]) for chunk in chunks) == size  # every byte, once
        assert [chunk["chunk_seq"] for chunk in chunks] == list(range(len(chunks)))
        seqs = [f["event_seq"] for f in frames if "event_seq" in f]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert frames[-1]["type"] == "job.result"
    finally:
        slow.ws.transport.abort()


async def _held_for_clients(core: RunningCore, limit: int) -> int:
    """What the sessions hold for their clients, once something is: a sample can catch
    the session's pump between two reads of the store, with all it had read already taken
    by the transport (0); every sample is checked against `limit`."""
    for _ in range(int(SAFETY / 0.02)):
        held = core.sessions.unsent_bytes()
        assert held <= limit
        if held > 0:
            return held
        await asyncio.sleep(0.02)
    return 0


async def test_a_ping_flood_that_is_never_read_costs_the_transport_not_the_session(
    make_stack: StackFactory,
) -> None:
    """Replies cannot wait for the client the way job output does: past the limit the
    transport is dropped with HEARTBEAT_LOST and the session kept for a resume (§6.3)."""
    limit = 256 * 1024
    stack = await make_stack(session_limits=SessionLimits(max_unsent_bytes=limit))
    flooder = await _open_slow_reader(stack.url)
    resumed: RawClient | None = None
    try:
        assert (await flooder.hello("tok-alice"))["type"] == "session.welcome"
        frames = await flooder.run("echo", {"before": "the flood"})
        job_id = frames[0]["payload"]["job_id"]

        # Long nonces make large pongs: the transport's buffers (socket, HTTP/2 window)
        # fill, and the limit is passed, with fewer pings on a slow machine.
        padding = "p" * 240

        async def flood() -> None:
            for index in range(200_000):  # far more pongs than the buffers and the limit hold
                await flooder.send("session.ping", {"nonce": f"{padding}{index}"})

        sender = asyncio.create_task(flood())
        async with asyncio.timeout(SAFETY):
            while stack.core.sessions.attached_count() > 0:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)

        resumed = await open_raw(stack.url)
        welcome = await resumed.hello(resume=flooder.resume_block())
        assert welcome["type"] == "session.welcome", welcome
        assert welcome["payload"]["session_id"] == flooder.session_id
        again = await resumed.submit("echo", {"after": "the flood"})
        assert again["type"] == "job.accepted"
        assert again["payload"]["job_id"] != job_id
    finally:
        flooder.ws.transport.abort()
        if resumed is not None:
            await resumed.close()


async def test_flooding_clients_cannot_add_up_past_the_nodes_cap(
    make_stack: StackFactory,
) -> None:
    """§14: each client may leave up to `sessions.max_unsent_bytes` unread, but all of
    them together no more than about `[limits] max_unsent_bytes`: past it, the flooder
    holding more than its share loses its transport (the session is kept), while a
    client that reads what it is sent is never cut."""
    cap = 256 * 1024
    stack = await make_stack(quotas=QuotaLimits(max_unsent_bytes=cap))  # each: 64 MiB
    flooder = await _open_slow_reader(stack.url)
    reader = await open_raw(stack.url)
    try:
        assert (await flooder.hello("tok-alice"))["type"] == "session.welcome"
        assert (await reader.hello("tok-bob"))["type"] == "session.welcome"
        for index in range(40):  # so that each listing below is a reply of some 10 KiB
            assert (await flooder.submit("echo", index))["type"] == "job.accepted"

        async def flood() -> None:
            # Some 30 MiB of replies: far more than the node's cap and every buffer on the
            # way (the gRPC link's flow-control windows included) hold, and less than this
            # client's own limit (64 MiB), which alone would never cut it.
            for _ in range(3_000):
                await flooder.send("session.list_jobs", {"limit": 100})

        sender = asyncio.create_task(flood())
        async with asyncio.timeout(SAFETY):
            while stack.core.sessions.attached_count() > 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        assert stack.core.sessions.get(flooder.session_id) is not None  # kept for a resume
        frames = await reader.run("echo", {"still": "served"})
        assert frames[-1]["payload"]["result"] == {"still": "served"}
        assert stack.core.sessions.attached_count() == 1
    finally:
        flooder.ws.transport.abort()
        await reader.close()


async def test_a_long_history_goes_at_the_subscribers_pace(make_stack: StackFactory) -> None:
    """§7.6 history is read from the store only as fast as the client takes it, so a
    subscriber that pauses is neither dropped nor the cause of a growing queue."""
    limit = 256 * 1024
    stack = await make_stack(session_limits=SessionLimits(max_unsent_bytes=limit))
    events = 30_000  # ~7 MiB of frames, many times the limit
    submitter = await open_raw(stack.url)
    reader: RawClient | None = None
    try:
        await submitter.hello("tok-alice")
        frames = await submitter.run("chatty", {"events": events})
        job_id = frames[0]["payload"]["job_id"]
        # Connected only now: a slow store must not keep it past the hello timeout.
        reader = await _open_slow_reader(stack.url)
        await reader.hello("tok-alice")
        await reader.send("job.subscribe", {"job_id": job_id, "history": True})
        await asyncio.sleep(1.0)  # reads nothing while the history would pour out
        assert stack.core.sessions.attached_count() == 2  # nobody was dropped
        history = await reader.until_terminal(job_id)
        logs = [f for f in history if f["payload"].get("kind") == "log"]
        assert len(logs) == events
        assert [f["payload"]["job_seq"] for f in logs] == list(range(1, events + 1))
    finally:
        await submitter.close()
        if reader is not None:
            await reader.close()


async def test_frames_sent_after_bye_do_not_hold_up_the_close(make_stack: StackFactory) -> None:
    """Once the core has ended the stream the gateway still reads (and drops) what the
    client sends, so the client's closing frame is not stuck behind unread ones and the
    socket is let go well within the closing handshake's 10 s timeout."""
    stack = await make_stack()
    client = await open_raw(stack.url)
    await client.hello()
    await client.send("session.bye", {"reason": "done"})
    for index in range(200):  # far more than the WebSocket library queues unread
        await client.send("session.ping", {"nonce": f"late-{index}"})
    # Stuck, the close would complete only when the gateway's 10 s handshake timeout aborts it.
    code, frames = await client.closed(within=5.0)
    assert code == 1000
    assert [f["type"] for f in frames if f["type"] != "session.ping"][-1:] == ["session.bye"]


async def test_frames_sent_after_a_refused_hello_do_not_turn_the_refusal_into_a_fault(
    make_stack: StackFactory,
) -> None:
    """The core ends the stream after refusing a handshake; frames the client sent on
    regardless must not make that look like a core failure (1011) instead of a refusal."""
    stack = await make_stack()
    client = await open_raw(stack.url)
    await client.send(
        "session.hello",
        {"client": {"name": "t", "version": "1"}, "auth": {"scheme": "bearer", "token": "nope"}},
    )
    for index in range(50):
        await client.send("session.ping", {"nonce": f"late-{index}"})
    code, frames = await client.closed()
    assert [(f["type"], f["payload"]["code"]) for f in frames] == [
        ("session.error", "UNAUTHENTICATED")
    ]
    assert code == 1008
