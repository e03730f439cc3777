"""Issue 20: a database restart costs nothing but latency. Two real `serve` nodes on a
PostgreSQL server of this module's own (`tests.own_postgres`), which the tests stop
and start again on the same port, and whose backends they terminate.

- The database stopped for 1 s, and for longer than `cluster.node_timeout_sec`,
  while jobs run on both nodes with watchers on the other node: both nodes are
  NOT_SERVING meanwhile and refuse submits and hellos with a retryable error (gRPC
  UNAVAILABLE, ARCP INTERNAL_ERROR with reason STORE_UNREACHABLE; no traceback);
  both are SERVING again within 5 s of the database accepting connections; no
  node is declared dead; every job finishes normally; every watcher gets every
  event exactly once.
- Only node A's connections terminated (`pg_terminate_backend` by
  `application_name`): A reconnects; its clients get every frame and the terminal.
- `serve` started while the database is down waits `store.connect_timeout_sec`,
  then exits 75; it starts normally if the database comes up within the window.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from arcp_grpc.errors import StoreUnreachable
from arcp_grpc.store.postgres.reconnect import application_name
from tests.cluster.nodes import node_process, write_cluster_config
from tests.conftest import DISK_FULL, Watched, arcp_error, bearer, new_stub, submit_request
from tests.conftest import watch_all as _watch_all
from tests.gateway.conftest import open_raw
from tests.own_postgres import OwnPostgres
from tests.serve_process import ServeProcess, run_cli

_TIMEOUT = 2.5  # cluster.node_timeout_sec: the long outage lasts longer than this
_SERVING_BOUND = 5.0  # s after the database accepts connections (the bound)
_WITHIN = 30.0  # s: a safety net for every wait, never what a test checks
_STEPS = 40  # progress events of each job, 0.1 s apart


@pytest.fixture(scope="module")
def database() -> Iterator[OwnPostgres]:
    own = OwnPostgres()
    try:
        yield own
    finally:
        own.remove()


@pytest.fixture
async def store_url(database: OwnPostgres) -> AsyncIterator[str]:
    """A fresh schema; made and dropped on connections of their own (the database
    restarts in between)."""
    schema = "t_" + secrets.token_hex(6)
    await _admin(database.url, f"CREATE SCHEMA {schema}")
    try:
        yield f"{database.url}?search_path={schema}"
    finally:
        await _admin(database.url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Path:
    return write_cluster_config(
        tmp_path, store_url, node_timeout_sec=_TIMEOUT, store_extra="connect_timeout_sec = 20"
    )


def _node(tmp_path: Path, config: Path, name: str, *extra: str) -> ServeProcess:
    node = node_process(tmp_path, config, name)
    node.args[-2:-2] = extra  # before --ready-file
    return node


@pytest.fixture
def nodes(tmp_path: Path, config: Path) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    a, b = _node(tmp_path, config, "a"), _node(tmp_path, config, "b")
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


async def _status(node: ServeProcess) -> str:
    async with grpc.aio.insecure_channel(node.info["grpc"]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def _until_status(status: str, *nodes: ServeProcess) -> float:
    """Seconds until every node reports `status`."""
    started = time.monotonic()
    while [await _status(n) for n in nodes] != [status] * len(nodes):
        assert time.monotonic() - started < _WITHIN, f"not {status} within {_WITHIN} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _submit(node: ServeProcess) -> str:
    async with grpc.aio.insecure_channel(node.info["grpc"]) as channel:
        reply = await new_stub(channel).SubmitJob(
            submit_request("counter", {"steps": _STEPS, "interval": 0.1}), metadata=bearer()
        )
        return str(reply.accepted.job_id)


async def _watch(node: ServeProcess, job_id: str) -> Watched:
    async with grpc.aio.insecure_channel(node.info["grpc"]) as channel:
        return await _watch_all(new_stub(channel), job_id)


async def _node_states(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        return {r["label"]: r["state"] for r in await conn.fetch("SELECT label, state FROM nodes")}
    finally:
        await conn.close()


def _finished_once_each(watched: Sequence[Watched]) -> None:
    """Every job ended with its result; each watcher saw each event exactly once."""
    for seen in watched:
        assert seen.outcome is not None
        assert seen.outcome.WhichOneof("outcome") == "result"
        assert seen.seqs == list(range(1, len(seen.seqs) + 1))
        assert len(seen.of("progress")) == _STEPS


async def _refused_retryably(node: ServeProcess) -> None:
    """A submit and a hello during the outage: a retryable refusal, never INTERNAL."""
    with pytest.raises(grpc.RpcError) as failed:
        await _submit(node)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    error = arcp_error(failed.value)
    assert isinstance(error, StoreUnreachable)
    assert error.retryable
    client = await open_raw(node.info["gateway"])
    try:
        reply = await client.hello()
        assert reply["type"] != "session.welcome"
        payload = reply["payload"]
        assert payload["retryable"] is True
        assert payload["details"]["reason"] == "STORE_UNREACHABLE"
    finally:
        await client.close()


@pytest.mark.parametrize("outage_sec", [1.0, 2 * _TIMEOUT], ids=["1s", "past-node-timeout"])
async def test_a_database_restart_costs_nothing_but_latency(
    nodes: tuple[ServeProcess, ServeProcess],
    database: OwnPostgres,
    store_url: str,
    outage_sec: float,
) -> None:
    a, b = nodes
    jobs = [(a, await _submit(a)), (b, await _submit(b)), (a, await _submit(a))]
    # Each job watched through the other node: its events come from the database.
    watchers = [asyncio.ensure_future(_watch(b if n is a else a, job)) for n, job in jobs]
    local = asyncio.ensure_future(_watch(a, jobs[0][1]))  # and one through its own node
    await asyncio.sleep(0.8)  # the jobs are running, their events flowing

    stopped = time.monotonic()
    await asyncio.to_thread(database.stop)
    await _until_status("NOT_SERVING", a, b)
    await _refused_retryably(a)
    await asyncio.sleep(max(0.0, outage_sec - (time.monotonic() - stopped)))
    await asyncio.to_thread(database.start)  # returns once it accepts connections
    back = await _until_status("SERVING", a, b)

    watched = await asyncio.gather(*watchers, local)
    _finished_once_each(watched)
    assert back <= _SERVING_BOUND
    assert await _node_states(store_url) == {"node-a": "alive", "node-b": "alive"}
    for node in (a, b):
        code, _, err = node.terminate()
        assert code == 0
        assert "Traceback" not in err, err


async def test_one_nodes_connections_terminated_it_reconnects_and_its_clients_get_everything(
    nodes: tuple[ServeProcess, ServeProcess], store_url: str
) -> None:
    a, b = nodes
    client = await open_raw(a.info["gateway"])
    try:
        assert (await client.hello())["type"] == "session.welcome"
        accepted = await client.submit("counter", {"steps": _STEPS, "interval": 0.1})
        job_on_ws = accepted["payload"]["job_id"]
        job = await _submit(a)
        watchers = [
            asyncio.ensure_future(_watch(a, job)),
            asyncio.ensure_future(_watch(b, job)),
        ]
        await asyncio.sleep(0.8)
        admin = await asyncpg.connect(store_url)
        try:
            node_id = await admin.fetchval("SELECT node_id FROM nodes WHERE label = 'node-a'")
            cut = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1",
                application_name(node_id),
            )
        finally:
            await admin.close()
        assert cut >= 3  # its writer's, its listener's, its pool's
        frames = await client.until_terminal(job_on_ws, within=_WITHIN)
        assert frames[-1]["type"] == "job.result"
        progress = [f for f in frames if f.get("payload", {}).get("kind") == "progress"]
        assert len(progress) == _STEPS
        seqs = [f["event_seq"] for f in frames if "event_seq" in f]
        assert seqs == sorted(set(seqs))  # none repeated, in order
        _finished_once_each(await asyncio.gather(*watchers))
        assert await _status(a) == "SERVING"
        assert await _node_states(store_url) == {"node-a": "alive", "node-b": "alive"}
    finally:
        await client.close()


async def test_a_store_that_fails_for_good_ends_its_sessions_transports(
    nodes: tuple[ServeProcess, ServeProcess], store_url: str
) -> None:
    """A node whose store refuses every write (a full disk) can record no frame, so it
    sends none: it ends its sessions' transports within seconds (never a silent
    socket), and the client resumes through another node."""
    a, _ = nodes
    client = await open_raw(a.info["gateway"])
    try:
        assert (await client.hello())["type"] == "session.welcome"
        await client.submit("counter", {"steps": _STEPS, "interval": 0.1})
        await client.recv_until(lambda f: f.get("type") == "job.event")  # flowing
        failed = time.monotonic()
        await _admin(store_url, DISK_FULL)
        code, _ = await client.closed(within=_WITHIN)
        closed = time.monotonic() - failed
    finally:
        await client.close()
    assert code is not None
    assert closed < 2 * _SERVING_BOUND  # the 5 s, with slack for a loaded machine


def test_serve_waits_for_a_database_that_is_down_then_exits_75(
    tmp_path: Path, config: Path, database: OwnPostgres
) -> None:
    database.stop()
    try:
        started = time.monotonic()
        done = run_cli(
            *_node(tmp_path, config, "late", "--set", "store.connect_timeout_sec=2").args[:-2],
            cwd=tmp_path,
        )
        waited = time.monotonic() - started
    finally:
        database.start()
    assert done.returncode == 75, done.stderr
    assert "waiting for the store at 127.0.0.1" in done.stderr
    assert "did not answer within store.connect_timeout_sec (2 s)" in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert waited >= 2.0


def test_serve_starts_when_the_database_comes_up_within_the_window(
    tmp_path: Path, config: Path, database: OwnPostgres
) -> None:
    database.stop()
    later = threading.Timer(2.0, database.start)
    later.start()
    node = _node(tmp_path, config, "patient")
    try:
        node.start()  # waits for its ready file: the node started once the database did
        assert node.process is not None
        assert node.process.poll() is None
    finally:
        later.join()
        node.stop()
