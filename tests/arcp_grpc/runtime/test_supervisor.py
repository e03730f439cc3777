"""A node's background loops outlive any error of a round (issue 20): a store read that
raises the driver's own error, not an ARCP one, is logged with the loop's name, retried
after a bounded, jittered backoff, and the loop goes on; `stop` leaves no task behind.

The heartbeat is the loop that matters most: a node whose membership loop died stops
heartbeating, is declared dead by its peers, and never learns it to fence itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.base.ids import new_id
from arcp_grpc.errors import StoreUnreachable
from arcp_grpc.runtime import ClusterLimits, JobRuntime, RuntimeLimits, Supervisor
from arcp_grpc.runtime.supervisor import retry_delay
from arcp_grpc.store.postgres import PostgresStore
from arcp_grpc.store.secretbox import SecretBox
from arcp_grpc.store.sqlite import SQLiteStore
from tests.conftest import SAFETY, postgres_schema

_FAILURES = 3


class _DriverError(RuntimeError):
    """Stands for an error of the database driver: not an `ARCPError`."""


class _Failures:
    """Raises `_DriverError` for the first `count` calls, then lets them through and
    sets `recovered`."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.recovered = asyncio.Event()

    def check(self) -> None:
        if self.left > 0:
            self.left -= 1
            raise _DriverError("connection reset by peer")
        self.recovered.set()


class _FlakyPostgres(PostgresStore):
    """A real PostgreSQL store whose cancel-request read fails a few times."""

    def __init__(self, dsn: str, failures: _Failures) -> None:
        super().__init__(dsn, node_id=new_id("node"), label="flaky")
        self.failures = failures

    async def cancel_requests(self) -> list[tuple[str, str]]:
        self.failures.check()
        return await super().cancel_requests()


class _FlakySQLite(SQLiteStore):
    """A real SQLite store whose claim purge fails a few times."""

    def __init__(self, path: Path, failures: _Failures) -> None:
        super().__init__(path)
        self.failures = failures

    async def purge_claims(self, now: float) -> int:
        self.failures.check()
        return await super().purge_claims(now)


def _loop_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def _heartbeat_at(url: str, node_id: str) -> datetime:
    conn = await asyncpg.connect(url)
    try:
        at: datetime = await conn.fetchval(
            "SELECT heartbeat_at FROM nodes WHERE node_id = $1", node_id
        )
        return at
    finally:
        await conn.close()


@pytest.fixture
async def store_url(postgres_server: str) -> AsyncIterator[str]:
    async with postgres_schema(postgres_server) as url:
        yield url


async def test_the_heartbeat_survives_a_driver_error_and_keeps_the_node_alive(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    failures = _Failures(_FAILURES)
    store = _FlakyPostgres(store_url, failures)
    before = _loop_tasks()
    await store.open()
    runtime = JobRuntime(
        store,
        AgentRegistry(),
        SecretBox(os.urandom(32)),
        cluster_limits=ClusterLimits(node_timeout_sec=30.0, heartbeat_sec=0.05),
    )
    try:
        with caplog.at_level(logging.WARNING, logger="arcp_grpc.runtime"):
            await runtime.start()
            await asyncio.wait_for(failures.recovered.wait(), SAFETY)
            after_failures = await _heartbeat_at(store_url, store.node_id)

            async def beats_again() -> None:
                while True:  # polled: the row is another process's view of this node
                    if await _heartbeat_at(store_url, store.node_id) > after_failures:
                        return
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(beats_again(), SAFETY)  # `nodes` still shows it alive
            await runtime.stop(grace=0)
    finally:
        await store.close()
    reports = [r for r in caplog.records if "arcp-cluster-member" in r.getMessage()]
    assert [r.levelno for r in reports] == [logging.ERROR, logging.WARNING]
    failed, works = reports
    assert failed.exc_info is not None
    assert failed.exc_info[0] is _DriverError  # once, with the exception, for 3 failures
    assert "works again after 3 failures" in works.getMessage()
    assert _loop_tasks() == before  # stopped means ended: no loop left running


async def test_the_purge_survives_a_driver_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failures = _Failures(1)
    store = _FlakySQLite(tmp_path / "arcp.sqlite3", failures)
    await store.open()
    limits = RuntimeLimits(idempotency_ttl_sec=1.0)  # a purge round every second
    runtime = JobRuntime(store, AgentRegistry(), SecretBox(os.urandom(32)), limits=limits)
    try:
        with caplog.at_level(logging.ERROR, logger="arcp_grpc.runtime"):
            await runtime.start()
            await asyncio.wait_for(failures.recovered.wait(), SAFETY)
            await runtime.stop(grace=0)
    finally:
        await store.close()
    assert any(
        "arcp-store-purge" in r.getMessage() and r.exc_info and r.exc_info[0] is _DriverError
        for r in caplog.records
    )


async def test_a_loop_that_keeps_failing_reports_once_and_stops_when_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds = 0
    failing = asyncio.Event()

    async def step() -> bool:
        nonlocal rounds
        rounds += 1
        if rounds >= 20:
            failing.set()
        raise _DriverError("the database is down")

    loops = Supervisor()
    before = _loop_tasks()
    with caplog.at_level(logging.ERROR, logger="arcp_grpc.runtime"):
        loops.every("flapping", 0.001, step, backoff_limit=0.001)
        await asyncio.wait_for(failing.wait(), SAFETY)
        await loops.stop()
    assert len([r for r in caplog.records if "flapping" in r.getMessage()]) == 1
    assert _loop_tasks() == before


@pytest.mark.parametrize(
    ("error", "traceback"),
    [(StoreUnreachable("the store is unreachable"), False), (_DriverError("bug?"), True)],
)
async def test_an_unreachable_store_is_one_line_other_errors_carry_their_traceback(
    caplog: pytest.LogCaptureFixture, error: Exception, traceback: bool
) -> None:
    """Issue 20: a database restart is a state the log says in one line, not a bug."""
    failed = asyncio.Event()

    async def step() -> bool:
        failed.set()
        raise error

    loops = Supervisor()
    with caplog.at_level(logging.ERROR, logger="arcp_grpc.runtime"):
        loops.every("reader", 0.001, step)
        await asyncio.wait_for(failed.wait(), SAFETY)
        await loops.stop()
    (report,) = [r for r in caplog.records if "reader" in r.getMessage()]
    assert str(error) in report.getMessage()
    assert (report.exc_info is not None) is traceback


async def test_a_step_that_has_nothing_more_to_do_ends_its_loop() -> None:
    calls = 0

    async def once() -> bool:
        nonlocal calls
        calls += 1
        return False

    loops = Supervisor()
    loops.every("once", 0.001, once)
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "once"]
    await asyncio.wait_for(task, SAFETY)  # ended by itself, not by `stop`
    assert calls == 1
    await loops.stop()


def test_the_wait_after_failures_doubles_up_to_its_limit_with_jitter() -> None:
    assert retry_delay(3.0, 1, 60.0, 1.0) == 3.0
    assert retry_delay(3.0, 3, 60.0, 1.0) == 12.0
    assert retry_delay(3.0, 10, 60.0, 1.0) == 60.0
    assert retry_delay(3.0, 10_000, 60.0, 0.5) == 30.0  # jittered, and no overflow
    assert retry_delay(3.0, 5, 3.0, 0.5) == 1.5  # a heartbeat never waits past its interval
