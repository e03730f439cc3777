"""A principal's caps hold for the whole cluster (§14 SHOULD; DESIGN.md "Quotas"; issue
20 item 4): two `serve` nodes on one PostgreSQL, over real sockets.

Caps here: 3 sessions and 5 running jobs per principal, 4 sessions per node. A
principal holds at most its cap of sessions and running jobs over both nodes, the
sessions it moves by resume included; a resume counts against the receiving node's
cap like a hello (the node never holds more than its cap, so other principals are
still admitted); nodes racing for the last slot admit exactly the cap. A refusal is
the usual one: `INTERNAL_ERROR`, retryable, QUOTA_EXCEEDED naming the cap over ARCP,
`RESOURCE_EXHAUSTED` over gRPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tests.cluster.nodes import Cluster, running_cluster, write_cluster_config
from tests.conftest import arcp_error, bearer, new_stub, postgres_schema, submit_request
from tests.gateway.conftest import RawClient, open_raw
from tests.gateway.test_quotas import Frame, assert_quota_error
from tests.serve_process import ServeProcess

_LIMITS = """
[limits]
max_sessions_per_principal = 3
max_running_jobs_per_principal = 5
max_sessions = 4
"""
_LONG = {"steps": 1000, "interval": 0.1}  # runs past the test; ends with its node


@pytest.fixture
async def cluster(tmp_path: Path, postgres_server: str) -> AsyncIterator[Cluster]:
    async with postgres_schema(postgres_server) as url:
        config = write_cluster_config(tmp_path, url, node_timeout_sec=4.0, extra=_LIMITS)
        with running_cluster(tmp_path, config) as nodes:
            yield nodes


@pytest.fixture
async def clients() -> AsyncIterator[list[RawClient]]:
    """Every client a test opens, closed at its end."""
    opened: list[RawClient] = []
    yield opened
    for client in opened:
        await client.close()


async def _hello(
    clients: list[RawClient], node: ServeProcess, token: str, resume: Frame | None = None
) -> tuple[RawClient, Frame]:
    client = await open_raw(node.info["gateway"])
    clients.append(client)
    return client, await client.hello(token, resume=resume)


async def test_sessions_are_capped_over_both_nodes_resumes_included(
    cluster: Cluster, clients: list[RawClient]
) -> None:
    a, b = cluster.a, cluster.b
    welcomed = [await _hello(clients, node, "tok-alice") for node in (a, b, b)]
    assert [w["type"] for _, w in welcomed] == ["session.welcome"] * 3
    for node in (a, b):  # her fourth, on either node
        _, refused = await _hello(clients, node, "tok-alice")
        assert_quota_error(refused, "max_sessions_per_principal")
    for node in (a, a, b):  # bob is still admitted on both: A now holds 3 sessions
        _, welcome = await _hello(clients, node, "tok-bob")
        assert welcome["type"] == "session.welcome"

    # Alice moves her B-sessions to A: the first makes 4 on A, its cap; the second
    # would make 5 and is refused there, and stays resumable where it was.
    (_, _), (first, _), (second, _) = welcomed
    for moved in (first, second):
        await moved.close()
    _, resumed = await _hello(clients, a, "tok-alice", resume=first.resume_block())
    assert resumed["type"] == "session.welcome", resumed
    _, refused = await _hello(clients, a, "tok-alice", resume=second.resume_block())
    assert_quota_error(refused, "max_sessions")
    _, refused = await _hello(clients, a, "tok-bob")
    assert_quota_error(refused, "max_sessions")  # A is full: its own cap, rightly
    _, resumed = await _hello(clients, b, "tok-alice", resume=second.resume_block())
    assert resumed["type"] == "session.welcome", resumed
    # Moved or not, alice's sessions are still three: no fourth anywhere.
    _, refused = await _hello(clients, b, "tok-alice")
    assert_quota_error(refused, "max_sessions_per_principal")


async def test_running_jobs_are_capped_over_both_nodes(
    cluster: Cluster, clients: list[RawClient]
) -> None:
    async with cluster.grpc(cluster.a) as chan_a, cluster.grpc(cluster.b) as chan_b:
        stub_a, stub_b = new_stub(chan_a), new_stub(chan_b)
        alice, _ = await _hello(clients, cluster.a, "tok-alice")
        for _ in range(3):
            assert (await alice.submit("counter", _LONG))["type"] == "job.accepted"
        for _ in range(2):
            await stub_b.SubmitJob(submit_request("counter", _LONG), metadata=bearer())
        assert_quota_error(await alice.submit("counter", _LONG), "max_running_jobs_per_principal")
        for stub in (stub_a, stub_b):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.SubmitJob(submit_request("counter", _LONG), metadata=bearer())
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert arcp_error(refused.value).details["limit"] == "max_running_jobs_per_principal"
        for stub in (stub_a, stub_b):  # bob is still admitted on both
            bobs = bearer("tok-bob")
            await stub.SubmitJob(submit_request("counter", {"steps": 1}), metadata=bobs)


async def test_nodes_racing_for_the_last_running_slot_admit_exactly_one(
    cluster: Cluster,
) -> None:
    """Four of alice's five slots taken, then ten submits at once over both nodes."""
    async with cluster.grpc(cluster.a) as chan_a, cluster.grpc(cluster.b) as chan_b:
        stubs = new_stub(chan_a), new_stub(chan_b)
        for i in range(4):
            await stubs[i % 2].SubmitJob(submit_request("counter", _LONG), metadata=bearer())

        async def submit(i: int) -> bool:
            request = submit_request("counter", _LONG)
            try:
                await stubs[i % 2].SubmitJob(request, metadata=bearer())
            except grpc.aio.AioRpcError as refused:
                return refused.code() != grpc.StatusCode.RESOURCE_EXHAUSTED  # fails the test
            return True

        admitted = await asyncio.gather(*(submit(i) for i in range(10)))
        assert sum(admitted) == 1
