"""The published ARCP Python client (agentruntimecontrolprotocol 1.1.3), unchanged,
against the gateway on the SDK_COMPAT wire profile (principals `sdk`, `sdk2`).

The client is used through its public API; a recording transport keeps every
JSON frame it received, so tests can also check the raw wire (for example the
idempotent replay's `job.accepted`, §7.2 and issue 4).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arcp import ClientInfo, ListJobsFilter, WebSocketTransport
from arcp._client.client import ARCPClient
from arcp._errors import LeaseExpiredError, PermissionDeniedError
from arcp._messages.execution import LeaseConstraints
from arcp._messages.session import AgentInventoryEntry, SessionResume
from arcp._version import PROVISIONED_CREDENTIAL_FEATURES, V1_1_FEATURES

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.service.sessions import SessionLimits
from tests.gateway.conftest import SAFETY, Stack, StackFactory

Frame = dict[str, Any]


class RecordingTransport:
    """A `Transport` around the client's WebSocketTransport that keeps what it received."""

    def __init__(self, inner: WebSocketTransport) -> None:
        self.inner = inner
        self.received: list[Frame] = []

    async def send(self, envelope: Frame) -> None:
        await self.inner.send(envelope)

    async def recv(self) -> Frame:
        frame = await self.inner.recv()
        self.received.append(frame)
        return frame

    async def close(self) -> None:
        await self.inner.close()

    @property
    def is_closed(self) -> bool:
        return self.inner.is_closed

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        self.inner._conn.transport.abort()

    def of_type(self, frame_type: str) -> list[Frame]:
        return [f for f in self.received if f.get("type") == frame_type]


Connect = Callable[..., Awaitable[tuple[ARCPClient, RecordingTransport]]]


@pytest.fixture
async def connect(stack: Stack) -> AsyncIterator[Connect]:
    """Connected published clients (token `tok-sdk` by default); closed at the end."""
    opened: list[ARCPClient] = []

    async def factory(
        token: str = "tok-sdk", *, url: str | None = None, **options: Any
    ) -> tuple[ARCPClient, RecordingTransport]:
        client = ARCPClient(client=ClientInfo(name="interop", version="1"), token=token, **options)
        transport = RecordingTransport(await WebSocketTransport.connect(url or stack.url))
        await client.connect(transport)
        opened.append(client)
        return client, transport

    yield factory
    for client in opened:
        await client.close()


def report_body(size: int) -> str:
    line = ("arcp report line " * 4)[:63] + "\n"
    return (line * (size // len(line) + 1))[:size]


async def drain(handle: Any) -> list[Frame]:
    return [event async for event in handle.events()]


async def test_submit_and_stream_to_result_with_progress(connect: Connect) -> None:
    client, _ = await connect()
    assert client.session_id is not None
    assert "progress" in client.negotiated_features
    handle = await client.submit(agent="counter", input={"steps": 5, "interval": 0.001})
    result = await asyncio.wait_for(handle.done, SAFETY)
    assert result.final_status == "success"
    assert result.result == {"count": 5}
    events = await drain(handle)
    kinds = [e["kind"] for e in events]
    assert kinds == ["log"] + ["progress"] * 5
    assert [e["body"]["current"] for e in events[1:]] == [1, 2, 3, 4, 5]
    assert events[-1]["body"]["total"] == 5


async def test_agent_versions_pinned_and_default(connect: Connect) -> None:
    client, _ = await connect()
    assert client.welcome is not None
    inventory = {
        a.name: a for a in client.welcome.capabilities.agents if isinstance(a, AgentInventoryEntry)
    }
    assert list(inventory["greeter"].versions) == ["1.0.0", "2.0.0"]
    pinned = await client.submit(agent="greeter@1.0.0", input={"name": "Ada"})
    default = await client.submit(agent="greeter", input={"name": "Ada"})
    assert pinned.agent_ref == "greeter@1.0.0"
    assert default.agent_ref == "greeter@2.0.0"
    assert (await pinned.done).result == {"greeting": "hello, Ada", "version": "1.0.0"}
    assert (await default.done).result == {"greeting": "Hello, Ada!", "version": "2.0.0"}


# The published client leaves these out of its default features; a client that wants
# provisioned credentials (§9.8) asks for them.
WITH_CREDENTIALS = V1_1_FEATURES + PROVISIONED_CREDENTIAL_FEATURES


async def test_idempotent_retry_replays_the_accepted_payload(connect: Connect) -> None:
    """§7.2 / issue 4: equal in every field except the per-request request_id."""
    client, transport = await connect(features=WITH_CREDENTIALS)
    lease = {"cost.budget": ["USD:5.00"], "model.use": ["tier-fast/*"]}
    first = await client.submit(
        agent="echo", input={"q": 1}, lease_request=lease, idempotency_key="retry-1"
    )
    await first.done
    retry_client, retry_transport = await connect(features=WITH_CREDENTIALS)
    second = await retry_client.submit(
        agent="echo", input={"q": 1}, lease_request=lease, idempotency_key="retry-1"
    )
    result = await asyncio.wait_for(second.done, SAFETY)  # the finished job's terminal frame
    assert result.result == {"q": 1}
    assert second.job_id == first.job_id
    assert second.credentials == first.credentials
    assert second.credentials
    (raw_first,) = transport.of_type("job.accepted")
    (raw_second,) = retry_transport.of_type("job.accepted")
    one = dict(raw_first["payload"])
    two = dict(raw_second["payload"])
    assert one.pop("request_id") != two.pop("request_id")
    assert one == two
    assert one["budget"] == {"USD": "USD:5.00"}  # the compatibility profile's form


async def test_credentials_only_for_a_client_that_negotiated_them(connect: Connect) -> None:
    """§6.2: nothing outside the negotiated features; the published client's default
    features do not include provisioned_credentials (§9.8)."""
    lease = {"model.use": ["tier-fast/*"]}
    plain, plain_transport = await connect()
    assert "provisioned_credentials" not in plain.negotiated_features
    handle = await plain.submit(agent="echo", input=1, lease_request=lease, idempotency_key="c")
    await handle.done
    assert not handle.credentials
    (accepted,) = plain_transport.of_type("job.accepted")
    assert "credentials" not in accepted["payload"]
    willing, _ = await connect(features=WITH_CREDENTIALS)
    again = await willing.submit(agent="echo", input=1, lease_request=lease, idempotency_key="c")
    assert again.job_id == handle.job_id
    assert again.credentials  # the same cached acceptance, shown in full to this client


async def test_cancel_only_by_the_submitting_session(connect: Connect) -> None:
    """§7.4: another session's cancel is refused and the job runs on. The SDK client
    awaits no reply to a cancel and turns any session.error into the failure of every
    job it has open, so in its profile the refusal is logged, not sent: the refusing
    session's own job must survive its refused cancel."""
    client, _ = await connect()
    handle = await client.submit(agent="counter", input={"steps": 1000, "interval": 0.01})
    other, other_transport = await connect()  # same principal, another session
    own = await other.submit(agent="counter", input={"steps": 20, "interval": 0.01})
    await other.cancel_job(handle.job_id)
    await other.cancel_job("job_01J00000000000000000000000")  # no such job
    result = await asyncio.wait_for(own.done, SAFETY)
    assert result.final_status == "success"
    assert not other_transport.of_type("session.error")
    assert not handle.done._fut.done()
    await client.cancel_job(handle.job_id)
    result = await asyncio.wait_for(handle.done, SAFETY)
    assert result.final_status == "cancelled"  # the SDK form: job.result


async def test_list_jobs(connect: Connect) -> None:
    client, _ = await connect()
    done = await client.submit(agent="echo", input=1)
    await done.done
    running = await client.submit(agent="counter", input={"steps": 1000, "interval": 0.01})
    listing = await client.list_jobs()
    assert {j.job_id for j in listing.jobs} == {done.job_id, running.job_id}
    only_running = await client.list_jobs(filter=ListJobsFilter(status=("pending", "running")))
    assert [j.job_id for j in only_running.jobs] == [running.job_id]
    page = await client.list_jobs(limit=1)
    assert len(page.jobs) == 1
    assert page.next_cursor
    rest = await client.list_jobs(limit=1, cursor=page.next_cursor)
    assert {page.jobs[0].job_id, rest.jobs[0].job_id} == {done.job_id, running.job_id}
    stranger, _ = await connect("tok-sdk2")
    assert (await stranger.list_jobs()).jobs == ()
    await client.cancel_job(running.job_id)
    await running.done


async def test_subscribe_from_a_second_session_with_history(connect: Connect) -> None:
    client, _ = await connect()
    handle = await client.submit(agent="counter", input={"steps": 40, "interval": 0.01})
    seen = []
    async for event in handle.events():
        seen.append(event)
        if len(seen) == 5:
            break
    observer, observer_transport = await connect()
    subscription = await observer.subscribe(handle.job_id, history=True, from_event_seq=0)
    assert subscription.replayed >= 5
    result = await asyncio.wait_for(subscription.handle.done, SAFETY)
    assert result.result == {"count": 40}
    # On the wire: every event, history first. (The client registers its
    # handle only after `subscribe()` resumes, so its read pump may drop the
    # first replayed events before the handle exists: a client-side race.)
    wire = observer_transport.of_type("job.event")
    assert [e["payload"]["job_seq"] for e in wire] == list(range(1, 42))
    events = await drain(subscription.handle)
    assert [e["kind"] for e in events] == [e["payload"]["kind"] for e in wire][-len(events) :]
    assert events[-1]["body"]["current"] == 40
    (subscribed,) = observer_transport.of_type("job.subscribed")
    first_event = observer_transport.received.index(observer_transport.of_type("job.event")[0])
    assert observer_transport.received.index(subscribed) < first_event
    stranger, _ = await connect("tok-sdk2")
    with pytest.raises(PermissionDeniedError):
        await stranger.subscribe(handle.job_id, history=True)


async def test_resume_after_a_dropped_socket(connect: Connect, stack: Stack) -> None:
    client, transport = await connect()
    assert client.welcome is not None
    session_id, token = client.welcome.session_id, client.welcome.resume_token
    handle = await client.submit(agent="counter", input={"steps": 60, "interval": 0.01})
    async for event in handle.events():
        if event["kind"] == "progress" and event["body"]["current"] == 10:
            break
    last = client.latest_event_seq
    transport.abort()
    await asyncio.sleep(0.3)  # the job goes on without a listener
    again = RecordingTransport(await WebSocketTransport.connect(stack.url))
    welcome = await client.resume(
        again,
        resume=SessionResume(session_id=session_id, resume_token=token, last_event_seq=last),
    )
    assert welcome.session_id == session_id
    assert welcome.resume_token != token
    for _ in range(500):
        if again.of_type("job.result"):
            break
        await asyncio.sleep(0.01)
    numbered = [f["event_seq"] for f in again.received if "event_seq" in f]
    assert numbered == list(range(last + 1, last + 1 + len(numbered)))
    before = {f["event_seq"] for f in transport.received if "event_seq" in f}
    assert before.isdisjoint(numbered)
    assert len(before | set(numbered)) == 62  # log + 60 progress + result
    assert again.of_type("job.result")[0]["payload"]["result"] == {"count": 60}


async def test_heartbeat_keeps_a_listening_client_connected(make_stack: StackFactory) -> None:
    stack = await make_stack(session_limits=SessionLimits(heartbeat_interval_sec=1))
    client = ARCPClient(client=ClientInfo(name="interop", version="1"), token="tok-sdk")
    transport = RecordingTransport(await WebSocketTransport.connect(stack.url))
    try:
        welcome = await client.connect(transport)
        assert welcome.heartbeat_interval_sec == 1
        handle = await client.submit(agent="counter", input={"steps": 3, "interval": 1.0})
        result = await asyncio.wait_for(handle.done, SAFETY)
        assert result.result == {"count": 3}
        assert transport.of_type("session.ping")
        assert not transport.of_type("session.error")
    finally:
        await client.close()


async def test_chunked_result_reassembles_byte_exact(connect: Connect) -> None:
    client, _ = await connect()
    handle = await client.submit(agent="report", input={"bytes": 600_000})
    result = await asyncio.wait_for(handle.done, SAFETY)
    assert result.result_size == 600_000
    data = await handle.collect_chunks()
    assert data == report_body(600_000).encode()


async def test_budget_exhaustion(connect: Connect) -> None:
    client, _ = await connect()
    handle = await client.submit(
        agent="spender",
        input={"cost_per_call": 0.5, "max_calls": 50},
        lease_request={"cost.budget": ["USD:1.00"], "tool.call": ["search"]},
    )
    assert handle.budget == {"USD": "USD:1.00"}
    result = await asyncio.wait_for(handle.done, SAFETY)
    assert result.result == {"calls": 2}
    events = await drain(handle)
    remaining = [
        e["body"]["value"]
        for e in events
        if e["kind"] == "metric" and e["body"].get("name") == "cost.budget.remaining"
    ]
    assert remaining[-1] == 0
    warnings = [e for e in events if e["kind"] == "log" and e["body"]["level"] == "warn"]
    assert "budget exhausted" in warnings[-1]["body"]["message"]


async def test_lease_expiry(make_stack: StackFactory) -> None:
    agents = AgentRegistry()

    async def poller(ctx: JobContext, input_value: Any) -> Any:
        for index in range(500):
            await ctx.call_tool("search", {"query": f"q{index}"})
            await asyncio.sleep(0.02)
        return "never"

    agents.register("poller", "1.0.0", poller)
    stack = await make_stack(agents=agents)
    client = ARCPClient(client=ClientInfo(name="interop", version="1"), token="tok-sdk")
    await client.connect(await WebSocketTransport.connect(stack.url))
    try:
        expires = (datetime.now(UTC) + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
        handle = await client.submit(
            agent="poller",
            lease_request={"tool.call": ["search"]},
            lease_constraints=LeaseConstraints(expires_at=expires),
        )
        assert handle.lease_constraints is not None
        with pytest.raises(LeaseExpiredError) as caught:
            await asyncio.wait_for(handle.done, SAFETY)
        assert caught.value.retryable is False
    finally:
        await client.close()
