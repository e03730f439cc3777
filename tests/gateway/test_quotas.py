"""Per-principal and global caps on the ARCP wire (§14 SHOULD; DESIGN.md "Quotas").

A refused session or job is `INTERNAL_ERROR`, `retryable: true`, with details
`{"reason": "QUOTA_EXCEEDED", "limit", "retry_after_ms"}` (§12 has no quota
code), and another principal is unaffected. The caps are scaled down through
their knobs (`QuotaLimits`), so "the 2,001st session" is the third here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.runtime.quotas import QuotaLimits
from tests.gateway.conftest import RawClient, StackFactory, open_raw

Frame = dict[str, Any]


def assert_quota_error(frame: Frame, limit: str, retry_after_ms: int = 1_000) -> None:
    assert frame["type"] in ("session.error", "job.error"), frame
    payload = frame["payload"]
    assert payload["code"] == "INTERNAL_ERROR"
    assert payload["retryable"] is True
    assert payload["details"] == {
        "reason": "QUOTA_EXCEEDED",
        "limit": limit,
        "retry_after_ms": retry_after_ms,
    }


async def opened(url: str, token: str) -> tuple[RawClient, Frame]:
    client = await open_raw(url)
    return client, await client.hello(token)


async def test_a_session_over_the_principal_cap_is_refused_others_unaffected(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(quotas=QuotaLimits(max_sessions_per_principal=2))
    clients: list[RawClient] = []
    try:
        for _ in range(2):
            client, welcome = await opened(stack.url, "tok-alice")
            clients.append(client)
            assert welcome["type"] == "session.welcome"
        client, refused = await opened(stack.url, "tok-alice")
        clients.append(client)
        assert_quota_error(refused, "max_sessions_per_principal")
        client, welcome = await opened(stack.url, "tok-bob")
        clients.append(client)
        assert welcome["type"] == "session.welcome"
        # A closed session frees its place (§6.7: nothing in flight, nothing to resume).
        await clients[0].send("session.close", {"reason": "done"})
        await clients[0].closed()
        client, welcome = await opened(stack.url, "tok-alice")
        clients.append(client)
        assert welcome["type"] == "session.welcome"
    finally:
        for client in clients:
            await client.close()


async def test_the_global_session_cap_holds_for_every_principal(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(quotas=QuotaLimits(max_sessions=2))
    clients: list[RawClient] = []
    try:
        for token in ("tok-alice", "tok-bob"):
            client, welcome = await opened(stack.url, token)
            clients.append(client)
            assert welcome["type"] == "session.welcome"
        client, refused = await opened(stack.url, "tok-sdk")
        clients.append(client)
        assert_quota_error(refused, "max_sessions")
    finally:
        for client in clients:
            await client.close()


def gated_agents() -> tuple[AgentRegistry, asyncio.Event]:
    """A `gate` agent that runs until the test opens the gate."""
    gate = asyncio.Event()

    async def wait_for_gate(ctx: JobContext, input_value: Any) -> Any:
        await gate.wait()
        return {"done": True}

    agents = AgentRegistry()
    agents.register("gate", "1.0.0", wait_for_gate)
    return agents, gate


async def test_a_job_over_the_running_cap_is_refused_others_unaffected(
    make_stack: StackFactory,
) -> None:
    agents, gate = gated_agents()
    stack = await make_stack(
        agents=agents, quotas=QuotaLimits(max_running_jobs_per_principal=2, retry_after_ms=250)
    )
    alice, _ = await opened(stack.url, "tok-alice")
    bob, _ = await opened(stack.url, "tok-bob")
    try:
        running = [await alice.submit("gate") for _ in range(2)]
        assert [f["type"] for f in running] == ["job.accepted", "job.accepted"]
        refused = await alice.submit("gate")
        assert refused["type"] == "session.error", refused
        assert_quota_error(refused, "max_running_jobs_per_principal", 250)
        assert (await bob.submit("gate"))["type"] == "job.accepted"
        gate.set()
        for accepted in running:
            await alice.until_terminal(accepted["payload"]["job_id"])
        # The ended jobs no longer count: the session carries on and may submit again.
        assert (await alice.submit("gate"))["type"] == "job.accepted"
    finally:
        gate.set()
        await alice.close()
        await bob.close()


async def test_a_principal_holding_too_many_bytes_is_refused_new_work(
    make_stack: StackFactory,
) -> None:
    """Bytes held for a principal's sessions (unacked results it has not taken) cap
    what it may add: a new job and a new session are refused, another principal's not."""
    stack = await make_stack(quotas=QuotaLimits(max_held_bytes_per_principal=64 * 1024))
    alice, _ = await opened(stack.url, "tok-alice")
    bob, _ = await opened(stack.url, "tok-bob")
    late: RawClient | None = None
    try:
        await alice.run("report", {"bytes": 128 * 1024})  # never acked: stays buffered
        assert_quota_error(await alice.submit("echo", 1), "max_held_bytes_per_principal")
        late, refused = await opened(stack.url, "tok-alice")
        assert_quota_error(refused, "max_held_bytes_per_principal")
        assert (await bob.submit("echo", 1))["type"] == "job.accepted"
        # Acknowledged frames leave the buffer (§6.5), and the principal may work again.
        await alice.send("session.ack", {"last_processed_seq": alice.last_seq})
        assert (await alice.submit("echo", 1))["type"] == "job.accepted"
    finally:
        for client in (alice, bob, late):
            if client is not None:
                await client.close()
