"""Two `serve` processes on one PostgreSQL database: a cluster of two nodes, each with
its core and its gateway, everything over real sockets (DESIGN.md, scale-out).

Any node serves any job and any session: a client that drops its socket on A
resumes through B and gets every event exactly once (§6.3, §8.3), a subscriber on
B follows a job running on A to its terminal frame (§7.6), a cancel through B
stops a job on A (§7.4), identical keyed submits spread over both nodes make
one job with byte-identical replies (§7.2), and when A is killed with SIGKILL,
B ends A's running jobs with a retryable INTERNAL_ERROR within
`cluster.node_timeout_sec` while it keeps serving, and A's sessions resume on B.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from arcp_grpc.v1 import job_service_pb2 as pb
from arcp_grpc.v1 import jobs_pb2
from tests.conftest import (
    bearer,
    error_code,
    new_stub,
    postgres_schema,
    submit_request,
    wait_for_seq,
    watch_all,
)
from tests.gateway.conftest import SAFETY, RawClient, open_raw
from tests.serve_process import ServeProcess, cluster_node
from tests.serve_process import cluster_config as write_cluster_config

_SUBMIT = "/arcp.v1.JobService/SubmitJob"  # called raw: the reply bytes are compared
_TIMEOUT = 2.0  # cluster.node_timeout_sec for these nodes: a kill is noticed quickly


@dataclass
class Cluster:
    a: ServeProcess
    b: ServeProcess

    def grpc(self, node: ServeProcess) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(node.info["grpc"])


@pytest.fixture
async def store_url(postgres_server: str) -> AsyncIterator[str]:
    async with postgres_schema(postgres_server) as url:
        yield url


@pytest.fixture
def cluster_config(tmp_path: Path, store_url: str) -> Path:
    """One configuration for every node: the store, its shared key, the tokens."""
    return write_cluster_config(tmp_path, store_url, node_timeout_sec=_TIMEOUT)


@pytest.fixture
def cluster(tmp_path: Path, cluster_config: Path) -> Iterator[Cluster]:
    nodes = [cluster_node(tmp_path, cluster_config, name) for name in ("a", "b")]
    try:
        for node in nodes:
            node.start()
        yield Cluster(*nodes)
    finally:
        for node in nodes:
            node.stop()


def _cancel(job_id: str, reason: str = "") -> pb.CancelJobRequest:
    return pb.CancelJobRequest(cancel=jobs_pb2.JobCancel(job_id=job_id, reason=reason))


async def _ended_retryably_then_serves(client: RawClient, job_id: str) -> list[dict[str, Any]]:
    """Read `job_id` to its end, a retryable INTERNAL_ERROR once a survivor took its dead
    node's jobs; then run a job on the survivor. Returns the frames up to that end."""
    frames = await client.until_terminal(job_id, within=5 * _TIMEOUT + SAFETY)
    ended = frames[-1]
    assert ended["type"] == "job.error"
    assert ended["payload"]["code"] == "INTERNAL_ERROR"
    assert ended["payload"]["retryable"] is True
    fresh = await client.run("echo", {"on": "b"})
    assert fresh[-1]["payload"]["result"] == {"on": "b"}
    return frames


def _job_seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["payload"]["job_seq"] for f in frames if f["type"] == "job.event"]


async def test_a_session_dropped_on_a_resumes_through_b_with_every_event_once(
    cluster: Cluster,
) -> None:
    client = await open_raw(cluster.a.info["gateway"])
    assert (await client.hello())["type"] == "session.welcome"
    accepted = await client.submit("counter", {"steps": 40, "interval": 0.03})
    job_id = accepted["payload"]["job_id"]
    await client.recv_until(lambda f: f.get("payload", {}).get("job_seq") == 5)
    seen_on_a = [f for f in client.received if f.get("event_seq")]
    await client.close()  # the socket drops mid-job; the job runs on, on A

    again = await open_raw(cluster.b.info["gateway"])
    try:
        welcome = await again.hello(resume=client.resume_block())
        assert welcome["type"] == "session.welcome", welcome
        assert welcome["payload"]["session_id"] == client.session_id
        rest = await again.until_terminal(job_id)
    finally:
        await again.close()
    frames = seen_on_a + rest
    assert rest[-1]["type"] == "job.result"
    assert rest[-1]["payload"]["result"] == {"count": 40}
    # Every event exactly once, in order, across the two nodes; the session's numbering
    # goes on where A left it, gap-free (§8.3).
    assert _job_seqs(frames) == list(range(1, len(_job_seqs(frames)) + 1))
    seqs = [f["event_seq"] for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_a_lost_welcome_on_b_leaves_the_token_valid_on_a_until_the_new_one_is_used(
    cluster: Cluster,
) -> None:
    """DESIGN.md "Resume tokens" across nodes: the previous token lives in the sessions
    row, so a resume on A after a welcome lost on B works, and once the client uses the
    session, no node accepts the old token."""
    client = await open_raw(cluster.a.info["gateway"])
    clients = [client]
    try:
        assert (await client.hello())["type"] == "session.welcome"
        await client.close()

        async def resume(node: ServeProcess, block: dict[str, Any]) -> tuple[RawClient, Any]:
            again = await open_raw(node.info["gateway"])
            clients.append(again)
            return again, await again.hello(resume=block)

        lost, welcome = await resume(cluster.b, client.resume_block())
        assert welcome["type"] == "session.welcome", welcome
        await lost.close()  # its new token never reached the client
        used, welcome = await resume(cluster.a, client.resume_block())
        assert welcome["type"] == "session.welcome", welcome
        request_id = await used.send("session.ping", {"nonce": "p_1"})
        assert (await used.reply_to(request_id))["type"] == "session.pong"
        await used.close()
        _, refused = await resume(cluster.b, client.resume_block())
        assert refused["payload"]["code"] == "UNAUTHENTICATED", refused
        _, welcome = await resume(cluster.b, used.resume_block())
        assert welcome["type"] == "session.welcome", welcome
    finally:
        for each in clients:
            await each.close()


async def test_a_session_of_a_killed_node_resumes_through_b(cluster: Cluster) -> None:
    """SIGKILL of A: its client resumes through B, receives what it missed and its job's
    end (a retryable INTERNAL_ERROR once B has taken A's jobs), then works on there."""
    client = await open_raw(cluster.a.info["gateway"])
    assert (await client.hello())["type"] == "session.welcome"
    accepted = await client.submit("counter", {"steps": 100_000, "interval": 0.01})
    job_id = accepted["payload"]["job_id"]
    await client.recv_until(lambda f: f.get("payload", {}).get("job_seq") == 3)
    seen_on_a = [f for f in client.received if f.get("event_seq")]
    assert cluster.a.process is not None
    cluster.a.process.kill()
    cluster.a.process.wait(timeout=SAFETY)
    await client.closed()

    again = await open_raw(cluster.b.info["gateway"])
    try:
        welcome = await again.hello(resume=client.resume_block())
        assert welcome["type"] == "session.welcome", welcome
        rest = await _ended_retryably_then_serves(again, job_id)
    finally:
        await again.close()
    frames = seen_on_a + rest
    assert _job_seqs(frames) == list(range(1, len(_job_seqs(frames)) + 1))
    seqs = [f["event_seq"] for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_a_subscriber_on_b_follows_a_job_running_on_a(cluster: Cluster) -> None:
    client_a = await open_raw(cluster.a.info["gateway"])
    client_b = await open_raw(cluster.b.info["gateway"])
    try:
        assert (await client_a.hello())["type"] == "session.welcome"
        assert (await client_b.hello())["type"] == "session.welcome"
        accepted = await client_a.submit("counter", {"steps": 12, "interval": 0.05})
        job_id = accepted["payload"]["job_id"]
        request_id = await client_b.send(
            "job.subscribe", {"job_id": job_id, "history": True, "from_event_seq": 0}
        )
        subscribed = await client_b.reply_to(request_id)
        assert subscribed["type"] == "job.subscribed", subscribed
        on_b = await client_b.until_terminal(job_id)
        on_a = await client_a.until_terminal(job_id)
    finally:
        await client_a.close()
        await client_b.close()
    assert on_b[-1]["type"] == "job.result"
    assert on_b[-1]["payload"]["result"] == {"count": 12}
    events_b = [f["payload"]["job_seq"] for f in on_b if f["type"] == "job.event"]
    events_a = [f["payload"]["job_seq"] for f in on_a if f["type"] == "job.event"]
    assert events_b == events_a == list(range(1, len(events_a) + 1))  # in order, each once
    seqs = [f["event_seq"] for f in on_b]
    assert seqs == sorted(set(seqs))  # B's own session numbering: gap-free, increasing


async def test_a_cancel_through_b_stops_a_job_on_a(cluster: Cluster) -> None:
    async with cluster.grpc(cluster.a) as chan_a, cluster.grpc(cluster.b) as chan_b:
        stub_a, stub_b = new_stub(chan_a), new_stub(chan_b)
        request = submit_request("counter", {"steps": 10_000, "interval": 0.02})
        job_id = (await stub_a.SubmitJob(request, metadata=bearer())).accepted.job_id
        await wait_for_seq(stub_a, job_id, lambda e: e.job_seq >= 2)
        with pytest.raises(grpc.aio.AioRpcError) as foreign:  # §6.6: not bob's to see
            await stub_b.CancelJob(_cancel(job_id), metadata=bearer("tok-bob"))
        assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
        await stub_b.CancelJob(_cancel(job_id, "from b"), metadata=bearer())
        watched = await watch_all(stub_b, job_id)
    assert watched.outcome is not None
    assert watched.outcome.error.final_status == jobs_pb2.JOB_STATUS_CANCELLED
    assert "from b" in watched.outcome.error.error.message


async def test_identical_keyed_submits_over_both_nodes_make_one_job(cluster: Cluster) -> None:
    """§7.2 across nodes: 50 concurrent submits, 25 through each node, one job, and every
    `SubmitJob` reply byte-identical (the cached acceptance, never rebuilt)."""
    async with cluster.grpc(cluster.a) as chan_a, cluster.grpc(cluster.b) as chan_b:
        raw_a: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = chan_a.unary_unary(_SUBMIT)
        raw_b: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = chan_b.unary_unary(_SUBMIT)
        body = submit_request(
            "counter", {"steps": 3}, key="K-cluster", lease={"model.use": ["tier-fast/*"]}
        ).SerializeToString()
        replies = await asyncio.gather(
            *((raw_a if i % 2 else raw_b)(body, metadata=bearer()) for i in range(50))
        )
        listed = await new_stub(chan_b).ListJobs(pb.ListJobsRequest(), metadata=bearer())
    assert len(set(replies)) == 1
    accepted = pb.SubmitJobResponse.FromString(replies[0]).accepted
    assert accepted.credentials  # provisioned once, replayed everywhere with the same value
    assert [job.job_id for job in listed.jobs] == [accepted.job_id]


async def test_b_ends_a_killed_nodes_jobs_and_keeps_serving(cluster: Cluster) -> None:
    async with cluster.grpc(cluster.a) as chan_a:
        stub_a = new_stub(chan_a)
        request = submit_request("counter", {"steps": 100_000, "interval": 0.01})
        job_id = (await stub_a.SubmitJob(request, metadata=bearer())).accepted.job_id
        seen = await wait_for_seq(stub_a, job_id, lambda e: e.job_seq >= 3)
    assert cluster.a.process is not None
    cluster.a.process.kill()  # SIGKILL: no goodbye, no last heartbeat
    cluster.a.process.wait(timeout=SAFETY)
    async with cluster.grpc(cluster.b) as chan_b:
        stub_b = new_stub(chan_b)
        watched = await asyncio.wait_for(watch_all(stub_b, job_id), 5 * _TIMEOUT + SAFETY)
        assert watched.outcome is not None
        assert error_code(watched.outcome.error) == "INTERNAL_ERROR"
        assert watched.outcome.error.error.retryable is True
        assert watched.seqs[: seen.job_seq] == list(range(1, seen.job_seq + 1))
        got = await stub_b.GetJob(pb.GetJobRequest(job_id=job_id), metadata=bearer())
        assert got.job.status == jobs_pb2.JOB_STATUS_ERROR
        # B serves on: a new job runs to its end.
        fresh = (
            await stub_b.SubmitJob(submit_request("echo", {"still": "here"}), metadata=bearer())
        ).accepted
        after = await watch_all(stub_b, fresh.job_id)
    assert after.outcome is not None
    assert after.outcome.result.final_status == jobs_pb2.JOB_STATUS_SUCCESS


async def test_a_gateway_in_front_of_two_cores_fails_over(
    tmp_path: Path, cluster_config: Path
) -> None:
    """`serve gateway --core A,B`: when A dies its client's socket closes; the client's
    next socket through the same gateway reaches B, where A's job is seen ending."""
    cores = [cluster_node(tmp_path, cluster_config, name, "core") for name in ("a", "b")]
    started: list[ServeProcess] = []
    try:
        for core in cores:
            core.start()
            started.append(core)
        addresses = ",".join(core.info["grpc"] for core in cores)
        gateway = cluster_node(tmp_path, cluster_config, "gw", "gateway", "--core", addresses)
        gateway.start()
        started.append(gateway)
        client = await open_raw(gateway.info["gateway"])
        assert (await client.hello())["type"] == "session.welcome"
        accepted = await client.submit("counter", {"steps": 100_000, "interval": 0.01})
        job_id = accepted["payload"]["job_id"]
        await client.recv_until(lambda f: f.get("type") == "job.event")
        first = cores[0].process
        assert first is not None
        first.kill()  # the round-robin's first core served the first session
        first.wait(timeout=SAFETY)
        code, _ = await client.closed()
        assert code == 1011  # the core is gone: the socket drops, the client reconnects

        again = await open_raw(gateway.info["gateway"])
        try:
            assert (await again.hello())["type"] == "session.welcome"
            request_id = await again.send("job.subscribe", {"job_id": job_id})
            subscribed = await again.reply_to(request_id)
            assert subscribed["type"] == "job.subscribed", subscribed
            await _ended_retryably_then_serves(again, job_id)
        finally:
            await again.close()
    finally:
        for process in started:
            process.stop()
