"""`serve gateway --core A,B` when a core stops answering (issue 20, item 3): real core
processes on PostgreSQL, a real gateway process, real WebSocket clients.

A paused core (SIGSTOP) fails its channel's HTTP/2 keepalive: its sessions are closed
with 1011 within the keepalive bound and resume through the other core; the first
client after a core's death (SIGKILL) is served by the other core; `/healthz` names
each core and says `degraded` while one is out, `serving` once it is back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.nodes import node_process, write_cluster_config
from tests.gateway.conftest import SAFETY, open_raw
from tests.serve_process import ServeProcess

_KEEPALIVE = 1.0  # gateway.core_keepalive_sec and core_keepalive_timeout_sec here
_CLOSE_BOUND = 2 * _KEEPALIVE + 5.0  # the bound: the keepalive's, plus 5 s


class _Cluster:
    """Two cores and a gateway in front of both; a stopped core is continued at teardown."""

    def __init__(self, tmp_path: Path, store_url: str, node_timeout_sec: float) -> None:
        self.tmp_path = tmp_path
        self.config = write_cluster_config(tmp_path, store_url, node_timeout_sec=node_timeout_sec)
        self.cores = [node_process(tmp_path, self.config, name, "core") for name in ("a", "b")]
        self.started: list[ServeProcess] = []
        self.gateway: ServeProcess | None = None

    def start(self, probe_sec: float) -> ServeProcess:
        for core in self.cores:
            core.start()
            self.started.append(core)
        addresses = ",".join(core.info["grpc"] for core in self.cores)
        knobs = {
            "core_keepalive_sec": _KEEPALIVE,
            "core_keepalive_timeout_sec": _KEEPALIVE,
            "core_probe_sec": probe_sec,
        }
        flags = [arg for key, value in knobs.items() for arg in ("--set", f"gateway.{key}={value}")]
        role = ("gateway", "--core", addresses, *flags)
        self.gateway = node_process(self.tmp_path, self.config, "gw", *role)
        self.gateway.start()
        self.started.append(self.gateway)
        return self.gateway

    def signal(self, core: ServeProcess, signum: signal.Signals) -> None:
        assert core.process is not None
        os.kill(core.process.pid, signum)

    def stop(self) -> None:
        for process in self.started:
            if process.process is not None and process.process.poll() is None:
                os.kill(process.process.pid, signal.SIGCONT)
            process.stop()


@pytest.fixture
def make_cluster(tmp_path: Path, store_url: str) -> Iterator[Any]:
    made: list[_Cluster] = []

    def make(node_timeout_sec: float = 2.0) -> _Cluster:
        made.append(_Cluster(tmp_path, store_url, node_timeout_sec))
        return made[-1]

    try:
        yield make
    finally:
        for cluster in made:
            cluster.stop()


def _healthz(gateway: ServeProcess) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(gateway.info["gateway_health"], timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as failed:
        return failed.code, json.loads(failed.read())


async def _health_until(gateway: ServeProcess, status: str) -> tuple[int, dict[str, Any]]:
    async with asyncio.timeout(SAFETY):
        while True:
            code, body = await asyncio.to_thread(_healthz, gateway)
            if body.get("status") == status:
                return code, body
            await asyncio.sleep(0.2)


async def test_a_paused_cores_sessions_close_1011_and_resume_through_the_other(
    make_cluster: Any,
) -> None:
    cluster = make_cluster()
    gateway = cluster.start(probe_sec=0.5)
    on_a = await open_raw(gateway.info["gateway"])  # round-robin: the first session on A
    on_b = await open_raw(gateway.info["gateway"])
    try:
        assert (await on_a.hello())["type"] == "session.welcome"
        assert (await on_b.hello())["type"] == "session.welcome"
        accepted = await on_a.submit("counter", {"steps": 100_000, "interval": 0.05})
        job_id = accepted["payload"]["job_id"]
        await on_a.recv_until(lambda f: f.get("type") == "job.event")
        cluster.signal(cluster.cores[0], signal.SIGSTOP)
        paused_at = time.monotonic()
        code, _ = await on_a.closed()
        took = time.monotonic() - paused_at
        assert code == 1011
        assert on_a.ws.close_reason == "core unavailable"
        assert took <= _CLOSE_BOUND, f"closed {took:.1f} s after the pause"
        # The session on B is untouched; A's resumes through the gateway, on B.
        request_id = await on_b.send("session.ping", {"nonce": "p_1"})
        assert (await on_b.reply_to(request_id))["type"] == "session.pong"
        again = await open_raw(gateway.info["gateway"])
        try:
            welcome = await again.hello(resume=on_a.resume_block())
            assert welcome["type"] == "session.welcome", welcome
            ended = await again.until_terminal(job_id, within=SAFETY)
            assert ended[-1]["type"] == "job.error"
            assert ended[-1]["payload"]["code"] == "INTERNAL_ERROR"  # B ended A's job
        finally:
            await again.close()
    finally:
        await on_a.close()
        await on_b.close()


async def test_the_first_client_after_a_core_is_killed_is_served_by_the_other(
    make_cluster: Any,
) -> None:
    """Probes are an hour apart here: only the new session's own failover can save it."""
    cluster = make_cluster()
    gateway = cluster.start(probe_sec=3600)
    first = cluster.cores[0]
    assert first.process is not None
    first.process.kill()  # the round-robin's first core: the next session's choice
    first.process.wait(timeout=SAFETY)
    clients = [await open_raw(gateway.info["gateway"]) for _ in range(2)]
    try:
        for client in clients:
            welcome = await client.hello()
            assert welcome["type"] == "session.welcome", welcome
            result = await client.run("echo", {"served": True})
            assert result[-1]["payload"]["result"] == {"served": True}
    finally:
        for client in clients:
            await client.close()


async def test_a_new_client_of_a_paused_core_is_opened_on_the_other(make_cluster: Any) -> None:
    """The paused core takes the connection but never answers: after the keepalive
    timeout the hello goes to the other core."""
    cluster = make_cluster()
    gateway = cluster.start(probe_sec=3600)
    cluster.signal(cluster.cores[0], signal.SIGSTOP)
    client = await open_raw(gateway.info["gateway"])
    try:
        welcome = await asyncio.wait_for(client.hello(), _CLOSE_BOUND)
        assert welcome["type"] == "session.welcome", welcome
    finally:
        await client.close()


async def test_healthz_names_each_core_degraded_while_one_is_out(make_cluster: Any) -> None:
    """A pause shorter than the cluster's node timeout: the core comes back as itself."""
    cluster = make_cluster(node_timeout_sec=60.0)
    gateway = cluster.start(probe_sec=0.5)
    a, b = (core.info["grpc"] for core in cluster.cores)
    code, body = await _health_until(gateway, "serving")
    assert code == 200
    assert body == {
        "gateway": "ok",
        "core": "SERVING",
        "status": "serving",
        "cores": {a: "SERVING", b: "SERVING"},
    }
    cluster.signal(cluster.cores[0], signal.SIGSTOP)
    code, body = await _health_until(gateway, "degraded")
    assert code == 200  # B serves: a balancer keeps this gateway
    assert body["core"] == "SERVING"
    assert body["cores"] == {a: "UNREACHABLE", b: "SERVING"}
    cluster.signal(cluster.cores[0], signal.SIGCONT)
    code, body = await _health_until(gateway, "serving")
    assert code == 200
    assert body["cores"] == {a: "SERVING", b: "SERVING"}
