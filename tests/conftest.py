"""Shared fixtures: a real core (gRPC on 127.0.0.1) on each store: a SQLite file in
tmp_path, and a schema of its own in a real PostgreSQL server (the one named by
ARCP_TEST_POSTGRES_URL, else a throwaway cluster started for the session by
scripts/test-postgres). No test is skipped for want of PostgreSQL.

Helpers build `SubmitJob` requests, watch a job to its outcome and read the
ARCP code of a failed call, so each test states only what it checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import pytest
from google.protobuf import json_format

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.base.ids import new_id
from arcp_grpc.credentials import CredentialProvisioner
from arcp_grpc.errors import ARCPError
from arcp_grpc.grpc_status import from_rpc_error
from arcp_grpc.runtime import RuntimeObserver
from arcp_grpc.server import CoreConfig, RunningCore, open_store, start_core
from arcp_grpc.store import Store
from arcp_grpc.store.postgres.store import PostgresStore
from arcp_grpc.store.sqlite.store import SQLiteStore
from arcp_grpc.v1 import errors_pb2, events_pb2, job_service_pb2, job_service_pb2_grpc, jobs_pb2
from tests.serve_process import ServeProcess

if TYPE_CHECKING:
    from arcp_grpc.v1.job_service_pb2_grpc import JobServiceAsyncStub as Stub

__all__ = [
    "DISK_FULL",
    "SAFETY",
    "STORES",
    "TOKENS",
    "CoreFactory",
    "StoreFactory",
    "Watched",
    "arcp_error",
    "bearer",
    "break_store",
    "error_code",
    "event_kind",
    "new_stub",
    "postgres_schema",
    "stored_bytes",
    "submit_request",
    "wait_for_seq",
    "watch_all",
]

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}
SAFETY = 30.0  # seconds; a safety net only, never what a test checks


def bearer(token: str = "tok-alice") -> tuple[tuple[str, str], ...]:
    """gRPC call metadata for a bearer token."""
    return (("authorization", f"Bearer {token}"),)


# A lease that reaches a cost-bearing upstream, so a provisioner issues credentials (§9.8).
SPENDING = {"model.use": ["tier-fast/*"]}


def submit_request(
    agent: str,
    input_value: Any = None,
    *,
    key: str = "",
    lease: Mapping[str, Sequence[str]] | None = None,
    expires_at: datetime | None = None,
    max_runtime_sec: int | None = None,
    trace_id: str = "",
) -> job_service_pb2.SubmitJobRequest:
    """A `SubmitJobRequest` for `agent` with JSON `input_value`."""
    submit = jobs_pb2.JobSubmit(agent=agent, idempotency_key=key, trace_id=trace_id)
    if input_value is not None:
        json_format.ParseDict(input_value, submit.input)
    for namespace, patterns in (lease or {}).items():
        submit.lease_request.capabilities[namespace].patterns.extend(patterns)
    if expires_at is not None:
        submit.lease_constraints.expires_at.FromDatetime(expires_at)
    if max_runtime_sec is not None:
        submit.max_runtime_sec = max_runtime_sec
    return job_service_pb2.SubmitJobRequest(submit=submit)


def new_stub(channel: grpc.aio.Channel) -> Stub:
    """A typed asyncio JobService stub on `channel`."""
    return job_service_pb2_grpc.JobServiceStub(channel)


def arcp_error(exc: grpc.RpcError) -> ARCPError:
    """The ARCP error (ErrorInfo reason, retryable) a failed call carries."""
    return from_rpc_error(exc)


def error_code(error: jobs_pb2.JobError) -> str:
    """The §12 code of a job's terminal error (``TIMEOUT``, ``CANCELLED``, ...)."""
    return errors_pb2.ErrorCode.Name(error.error.code).removeprefix("ERROR_CODE_")


def event_kind(event: events_pb2.JobEvent) -> str:
    """The oneof body name of an event (``log``, ``metric``, ...)."""
    kind = event.WhichOneof("body")
    assert kind is not None
    return kind


@dataclass
class Watched:
    """Everything a WatchJob stream delivered: events in order and the outcome."""

    events: list[events_pb2.JobEvent]
    outcome: jobs_pb2.JobOutcome | None
    frames_with_outcome: int

    @property
    def seqs(self) -> list[int]:
        return [e.job_seq for e in self.events]

    def kinds(self) -> list[str]:
        return [event_kind(e) for e in self.events]

    def of(self, kind: str) -> list[events_pb2.JobEvent]:
        return [e for e in self.events if e.WhichOneof("body") == kind]


async def watch_all(
    stub: Stub,
    job_id: str,
    *,
    after_seq: int = 0,
    token: str = "tok-alice",
) -> Watched:
    """Follow `job_id` from `after_seq` until the stream ends (after the outcome)."""
    watched = Watched([], None, 0)

    async def run() -> None:
        call = stub.WatchJob(
            job_service_pb2.WatchJobRequest(job_id=job_id, after_seq=after_seq),
            metadata=bearer(token),
        )
        async for frame in call:
            watched.events.extend(frame.events)
            if frame.HasField("outcome"):
                watched.frames_with_outcome += 1
                watched.outcome = frame.outcome

    await asyncio.wait_for(run(), SAFETY)
    return watched


async def wait_for_seq(
    stub: Stub,
    job_id: str,
    predicate: Callable[[events_pb2.JobEvent], bool],
    *,
    token: str = "tok-alice",
) -> events_pb2.JobEvent:
    """Watch `job_id` until an event satisfies `predicate`; return it."""

    async def run() -> events_pb2.JobEvent:
        call = stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=job_id), metadata=bearer(token))
        try:
            async for frame in call:
                for event in frame.events:
                    if predicate(event):
                        found: events_pb2.JobEvent = event
                        return found
                if frame.HasField("outcome"):
                    break
        finally:
            call.cancel()
        raise AssertionError(f"job {job_id} ended before the awaited event")

    return await asyncio.wait_for(run(), SAFETY)


CoreFactory = Callable[..., Awaitable[RunningCore]]


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    """`serve` processes a test starts; any still running at teardown is killed."""
    started: list[ServeProcess] = []
    try:
        yield started
    finally:
        for process in started:
            process.stop()


STORES = ("sqlite", "postgres")
_REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a real PostgreSQL server for the whole session."""
    given = os.environ.get("ARCP_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    base = Path(tempfile.mkdtemp(prefix="arcp-pg."))
    base.chmod(0o755)  # the server may run as the `postgres` user
    script = str(_REPO / "scripts" / "test-postgres")
    started = subprocess.run(
        [script, "start", str(base / "pg")], capture_output=True, text=True, check=False
    )
    assert started.returncode == 0, f"could not start PostgreSQL: {started.stderr}"
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([script, "stop", str(base / "pg")], check=False)
        base.rmdir()


@contextlib.asynccontextmanager
async def postgres_schema(server: str) -> AsyncIterator[str]:
    """A store URL on a fresh schema of `server`, dropped afterwards: each test sees an
    empty database, however many ran before it."""
    schema = "t_" + secrets.token_hex(6)
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in server else "?"
        yield f"{server}{separator}search_path={schema}"
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


async def break_store(core: RunningCore) -> None:
    """Make the core's store unable to commit from now on, for real: SQLite may not add
    a page to its file (SQLITE_FULL at the next commit that needs one); PostgreSQL
    answers every write of a job or an event "disk full" (SQLSTATE 53100, from a
    trigger): a lost connection is no longer a failure there, it is reconnected."""
    store = core.store
    if isinstance(store, SQLiteStore):
        writer = store._writer
        assert writer is not None
        conn = writer.idle_connection()
        assert conn is not None
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return
    assert isinstance(store, PostgresStore)
    admin = await asyncpg.connect(store._dsn)
    try:
        await admin.execute(DISK_FULL)
    finally:
        await admin.close()


# PostgreSQL answers every write of a job or an event of the schema "disk full".
DISK_FULL = (
    "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END $$;"
    " CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE ON jobs"
    " FOR EACH ROW EXECUTE FUNCTION disk_full();"
    " CREATE TRIGGER disk_full BEFORE INSERT ON events"
    " FOR EACH ROW EXECUTE FUNCTION disk_full();"
)


async def stored_bytes(config: CoreConfig) -> bytes:
    """Everything the core's store holds, as bytes at rest: the SQLite file and its WAL,
    or every value of every row of the PostgreSQL schema (what a stolen disk or dump
    would show)."""
    if not config.store_url:
        return b"".join(p.read_bytes() for p in sorted(config.data_dir.glob("arcp.sqlite3*")))
    conn = await asyncpg.connect(config.store_url)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        parts: list[bytes] = []
        for table in tables:
            for row in await conn.fetch(f'SELECT * FROM "{table["tablename"]}"'):
                parts.extend(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
        return b"\n".join(parts)
    finally:
        await conn.close()


@pytest.fixture(params=STORES)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each core test runs on both stores (`CoreConfig.store_url`)."""
    if request.param == "sqlite":
        yield ""  # the embedded default: DATA_DIR/arcp.sqlite3
        return
    async with postgres_schema(request.getfixturevalue("postgres_server")) as url:
        yield url


StoreFactory = Callable[[], Awaitable[Store]]


@pytest.fixture
async def make_store(store_url: str, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Open stores on this test's backend; on PostgreSQL each is another node of one
    cluster (same schema). Every store still open at teardown is closed."""
    opened: list[Store] = []

    async def factory() -> Store:
        store = open_store(store_url, tmp_path, node_id=new_id("node"), label="test")
        await store.open()
        opened.append(store)
        return store

    try:
        yield factory
    finally:
        for store in opened:
            await store.close()


@pytest.fixture
def core_config(tmp_path: Path, store_url: str) -> CoreConfig:
    return CoreConfig(data_dir=tmp_path / "data", tokens=TOKENS, store_url=store_url)


@pytest.fixture
async def core(core_config: CoreConfig) -> AsyncIterator[RunningCore]:
    running = await start_core(core_config)
    try:
        yield running
    finally:
        await running.stop(grace=0.5)


@pytest.fixture
async def make_core(core_config: CoreConfig) -> AsyncIterator[CoreFactory]:
    """Start cores with extra agents, a provisioner or config overrides; each one
    still running at teardown is stopped."""
    async with AsyncExitStack() as stack:

        async def factory(
            *,
            agents: AgentRegistry | None = None,
            provisioner: CredentialProvisioner | None = None,
            observer: RuntimeObserver | None = None,
            **overrides: Any,
        ) -> RunningCore:
            running = await start_core(
                replace(core_config, **overrides),
                agents=agents,
                provisioner=provisioner,
                observer=observer,
            )

            async def stop() -> None:
                if not running.stopped:  # not stopped by the test itself
                    await running.stop(grace=0.5)

            stack.push_async_callback(stop)
            return running

        yield factory


@pytest.fixture
async def channel(core: RunningCore) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(core.grpc_address) as chan:
        yield chan


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return new_stub(channel)
