"""`arcp_store_bytes` (issue 15): the store's size on disk, read at scrape time on
the store's event loop while the scrape waits in its own thread; and what
`arcp_jobs_submitted_total` counts (issue 24)."""

from __future__ import annotations

import asyncio
import re
import urllib.request

import grpc

from arcp_grpc.client import Client
from arcp_grpc.process.metrics import Metrics, serve_metrics
from arcp_grpc.server import RunningCore
from arcp_grpc.store.sqlite.store import SQLiteStore
from tests.conftest import CoreFactory, bearer, new_stub, submit_request, watch_all

_SAMPLE = re.compile(r'^arcp_store_bytes\{part="(\w+)"\} (\S+)$', re.MULTILINE)


async def _scrape(url: str) -> dict[str, float]:
    """GET /metrics from another thread, as Prometheus would: the loop stays free to
    answer the store's part of the scrape."""

    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
            return body.decode()

    text = await asyncio.get_running_loop().run_in_executor(None, get)
    return {part: float(value) for part, value in _SAMPLE.findall(text)}


async def test_store_bytes_follow_what_the_store_holds(core: RunningCore) -> None:
    metrics = Metrics()
    metrics.watch_store(core.store)
    server = serve_metrics(metrics, "127.0.0.1", 0)
    try:
        before = await _scrape(server.url)
        async with grpc.aio.insecure_channel(core.grpc_address) as channel:
            stub = new_stub(channel)
            submitted = await stub.SubmitJob(
                submit_request("report", {"bytes": 2 * 1024 * 1024}), metadata=bearer()
            )
            await watch_all(stub, submitted.accepted.job_id)
        await core.store.flush()
        after = await _scrape(server.url)
    finally:
        server.stop()
    if isinstance(core.store, SQLiteStore):
        assert set(after) == {"database", "wal"}  # the file and its write-ahead log
    else:
        assert set(after) == {"database"}  # the schema's tables, indexes and TOAST
    assert sum(after.values()) > sum(before.values()) > 0


async def test_delegated_children_count_as_submitted_like_they_count_as_finished(
    make_core: CoreFactory,
) -> None:
    """A delegator and its child are two jobs to both counters (§10), so a dashboard's
    submitted - finished is the work in flight; a replay is still not a new job."""
    metrics = Metrics()
    core = await make_core(observer=metrics)
    async with await Client.connect(core.grpc_address, token="tok-alice") as client:
        for _ in range(2):
            outcome = await client.run(
                "delegator", {"hi": 1}, idempotency_key="k", lease={"agent.delegate": ["echo"]}
            )
            assert outcome.ok
    sample = metrics.registry.get_sample_value
    assert sample("arcp_jobs_submitted_total") == 2
    assert sample("arcp_jobs_finished_total", {"status": "success"}) == 2
    assert sample("arcp_idempotency_hits_total") == 1
