"""Gateway fixtures: a real core and gateway on 127.0.0.1 port 0, and a raw-frame client.

`RawClient` speaks ARCP JSON over a plain `websockets` connection and builds
valid envelopes (ULID ids, `arcp: "1.1"`), so a test states only the frames
it cares about. Every wait is bounded by `SAFETY`, a safety net that never
decides what a test checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.base.ids import new_ulid
from arcp_grpc.runtime import Disclosure
from arcp_grpc.runtime.quotas import QuotaLimits
from arcp_grpc.server import CoreConfig, RunningCore, start_core
from arcp_grpc.service.sessions import SessionLimits
from gateway.links import LocalLink
from gateway.server import GatewayConfig, RunningGateway, start_gateway
from tests.arcp_grpc.worker.conftest import (
    WORKER_TOKEN,
    WorkerProcess,
    serving_workers,
    start_worker,
)
from tests.conftest import postgres_schema
from tests.gateway.console_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SAFETY_MS,
    Deployment,
    deployed,
    sign_in,
)
from tests.serve_process import ServeProcess

__all__ = [
    "ALL_FEATURES",
    "COMPAT_PRINCIPALS",
    "SAFETY",
    "TOKENS",
    "RawClient",
    "Stack",
    "StackFactory",
    "WorkerStarter",
    "open_raw",
    "seqs",
    "wait_until_finished",
]

# alice and bob are on the spec profile; sdk and sdk2 on the compatibility one.
TOKENS = {"tok-alice": "alice", "tok-bob": "bob", "tok-sdk": "sdk", "tok-sdk2": "sdk2"}
COMPAT_PRINCIPALS = frozenset({"sdk", "sdk2"})
SAFETY = 20.0  # seconds; a safety net only, never what a test checks
ALL_FEATURES = (
    "heartbeat",
    "ack",
    "list_jobs",
    "subscribe",
    "lease_expires_at",
    "cost.budget",
    "model.use",
    "provisioned_credentials",
    "progress",
    "result_chunk",
    "agent_versions",
)
TERMINAL = ("job.result", "job.error")


async def wait_until_finished(core: RunningCore, principal: str, job_id: str) -> None:
    """Return once `job_id` has an outcome (whoever is or is not reading its events)."""
    async with asyncio.timeout(SAFETY):
        while (await core.runtime.get(Disclosure(principal, frozenset()), job_id))[1] is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@dataclass
class Stack:
    """A running core and the gateways in front of it."""

    core: RunningCore
    gateways: list[RunningGateway]
    factory: StackFactory

    @property
    def gateway(self) -> RunningGateway:
        return self.gateways[0]

    @property
    def url(self) -> str:
        return self.gateway.url

    async def add_gateway(self, **overrides: Any) -> RunningGateway:
        """Another gateway process-equivalent on a new port, same core."""
        gateway = await self.factory.gateway(self.core, **overrides)
        self.gateways.append(gateway)
        return gateway


@dataclass
class StackFactory:
    """Starts cores and gateways; everything still running at teardown is stopped."""

    tmp_path: Path
    stack: AsyncExitStack
    link: str = "grpc"  # how a stack's first gateway reaches its core: "grpc" or "local"
    postgres: str = ""  # a PostgreSQL server: each core gets a fresh schema (a cluster store)
    _count: int = 0

    async def gateway(
        self, core: RunningCore, *, local: bool = False, **overrides: Any
    ) -> RunningGateway:
        gateway = await start_gateway(
            GatewayConfig(core_address=core.grpc_address, port=0, **overrides),
            link=LocalLink(core) if local else None,
        )
        stopped = False
        original = gateway.stop

        async def stop_once() -> None:
            nonlocal stopped
            if not stopped:
                stopped = True
                await original()

        gateway.stop = stop_once  # type: ignore[method-assign]
        self.stack.push_async_callback(stop_once)
        return gateway

    async def __call__(
        self,
        *,
        agents: AgentRegistry | None = None,
        session_limits: SessionLimits | None = None,
        quotas: QuotaLimits | None = None,
        tokens: Mapping[str, str] | None = None,
        **gateway_overrides: Any,
    ) -> Stack:
        self._count += 1
        store_url = ""
        if self.postgres:
            store_url = await self.stack.enter_async_context(postgres_schema(self.postgres))
        config = CoreConfig(
            data_dir=self.tmp_path / f"core{self._count}",
            tokens=TOKENS if tokens is None else tokens,
            compat_principals=COMPAT_PRINCIPALS,
            session_limits=session_limits or SessionLimits(),
            quotas=quotas or QuotaLimits(),
            store_url=store_url,
        )
        core = await start_core(config, agents=agents)

        async def stop_core() -> None:
            if not core.stopped:  # not stopped by the test itself
                await core.stop(grace=0.5)

        self.stack.push_async_callback(stop_core)
        gateway = await self.gateway(core, local=self.link == "local", **gateway_overrides)
        return Stack(core, [gateway], self)


@pytest.fixture(params=["grpc", "local", "postgres"])
async def make_stack(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[StackFactory]:
    """Every gateway test runs three times: the gateway reaching the core over gRPC (split
    deployments) and in process (the embedded default, `gateway.links.LocalLink`), both on
    SQLite; and over gRPC to a core on PostgreSQL, where sessions live in the store."""
    postgres = request.getfixturevalue("postgres_server") if request.param == "postgres" else ""
    link = "grpc" if request.param == "postgres" else request.param
    async with AsyncExitStack() as stack:
        yield StackFactory(tmp_path, stack, link=link, postgres=postgres)


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    return await make_stack()


Frame = dict[str, Any]


def seqs(frames: list[Frame]) -> list[int]:
    """The session sequence numbers (§8.3) that `frames` carry, in order."""
    return [f["event_seq"] for f in frames if "event_seq" in f]


@dataclass
class RawClient:
    """One WebSocket speaking raw ARCP JSON; remembers every frame it received."""

    ws: ClientConnection
    received: list[Frame] = field(default_factory=list)
    session_id: str = ""
    resume_token: str = ""
    last_seq: int = 0
    answer_pings: bool = True
    _pending: list[Frame] = field(default_factory=list)

    # -- sending -----------------------------------------------------------

    @staticmethod
    def envelope(frame_type: str, payload: Any = None, **fields: Any) -> Frame:
        env: Frame = {"arcp": "1.1", "id": new_ulid(), "type": frame_type}
        env.update(fields)
        env["payload"] = {} if payload is None else payload
        return env

    async def send(self, frame_type: str, payload: Any = None, **fields: Any) -> str:
        """Send a valid envelope; returns its id (the reply's `request_id`)."""
        env = self.envelope(frame_type, payload, **fields)
        await self.ws.send(json.dumps(env))
        return str(env["id"])

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    # -- receiving ---------------------------------------------------------

    async def recv(self, within: float = SAFETY) -> Frame:
        """The next frame (pings are answered and skipped when `answer_pings`)."""
        while True:
            if self._pending:
                return self._pending.pop(0)
            text = await asyncio.wait_for(self.ws.recv(), within)
            frame = json.loads(text)
            assert isinstance(frame, dict)
            self.received.append(frame)
            seq = frame.get("event_seq")
            if isinstance(seq, int) and seq > self.last_seq:
                self.last_seq = seq
            if frame.get("type") == "session.ping" and self.answer_pings:
                await self.send("session.pong", {"ping_nonce": frame["payload"]["nonce"]})
                continue
            return frame

    async def recv_until(
        self, predicate: Callable[[Frame], bool], within: float = SAFETY
    ) -> tuple[Frame, list[Frame]]:
        """Frames up to and including the first matching one: (match, skipped before it)."""
        skipped: list[Frame] = []

        async def run() -> Frame:
            while True:
                frame = await self.recv()
                if predicate(frame):
                    return frame
                skipped.append(frame)

        return await asyncio.wait_for(run(), within), skipped

    async def reply_to(self, request_id: str) -> Frame:
        """The frame whose `payload.request_id` is `request_id`; others are kept for later."""
        frame, skipped = await self.recv_until(
            lambda f: f.get("payload", {}).get("request_id") == request_id
        )
        self._pending.extend(skipped)
        return frame

    async def closed(self, within: float = SAFETY) -> tuple[int | None, list[Frame]]:
        """Read until the server closes; returns (close code, frames read meanwhile)."""
        frames: list[Frame] = []

        async def run() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for text in self.ws:
                    frames.append(json.loads(text))

        await asyncio.wait_for(run(), within)
        return self.ws.close_code, frames

    # -- conveniences ------------------------------------------------------

    async def hello(
        self,
        token: str | None = "tok-alice",
        *,
        features: Sequence[str] = ALL_FEATURES,
        resume: Frame | None = None,
    ) -> Frame:
        """Send `session.hello`; returns the reply (welcome or error)."""
        payload: Frame = {
            "client": {"name": "raw-test", "version": "1"},
            "capabilities": {"encodings": ["json"], "features": list(features)},
        }
        if token is not None:
            payload["auth"] = {"scheme": "bearer", "token": token}
        if resume is not None:
            payload["resume"] = resume
        request_id = await self.send("session.hello", payload)
        reply = await self.recv()
        self._learn(reply)
        assert reply.get("payload", {}).get("request_id", request_id) == request_id
        return reply

    def _learn(self, reply: Frame) -> None:
        if reply["type"] == "session.welcome":
            self.session_id = reply["payload"]["session_id"]
            self.resume_token = reply["payload"]["resume_token"]

    async def resume_frame(self, frame: Frame) -> Frame:
        """Send a prepared `session.resume` payload; returns the reply."""
        await self.send("session.resume", frame)
        reply = await self.recv()
        self._learn(reply)
        return reply

    def resume_block(self, last_seq: int | None = None) -> Frame:
        return {
            "session_id": self.session_id,
            "resume_token": self.resume_token,
            "last_event_seq": self.last_seq if last_seq is None else last_seq,
        }

    async def submit(self, agent: str, input_value: Any = None, **payload: Any) -> Frame:
        """`job.submit`; returns the reply (accepted or error) correlated by request_id."""
        body: Frame = {"agent": agent, **payload}
        if input_value is not None:
            body["input"] = input_value
        request_id = await self.send("job.submit", body)
        return await self.reply_to(request_id)

    async def until_terminal(self, job_id: str, within: float = SAFETY) -> list[Frame]:
        """Frames up to and including `job_id`'s terminal frame."""
        frame, skipped = await self.recv_until(
            lambda f: f.get("type") in TERMINAL and f.get("job_id") == job_id, within
        )
        return [*skipped, frame]

    async def run(self, agent: str, input_value: Any = None, **payload: Any) -> list[Frame]:
        """Submit and read to the terminal frame; returns [accepted, ..., terminal]."""
        accepted = await self.submit(agent, input_value, **payload)
        assert accepted["type"] == "job.accepted", accepted
        return [accepted, *await self.until_terminal(accepted["payload"]["job_id"])]

    async def close(self) -> None:
        await self.ws.close()


async def open_raw(url: str) -> RawClient:
    return RawClient(await connect(url, open_timeout=SAFETY, max_size=None, max_queue=None))


RawFactory = Callable[..., Awaitable[RawClient]]


@pytest.fixture
async def raw(stack: Stack) -> AsyncIterator[RawFactory]:
    """Open raw clients on the stack's gateway, optionally with a hello; all closed at the end."""
    clients: list[RawClient] = []

    async def factory(
        token: str | None = "tok-alice",
        *,
        url: str | None = None,
        hello: bool = True,
        **kwargs: Any,
    ) -> RawClient:
        client = await open_raw(url or stack.url)
        clients.append(client)
        if hello:
            welcome = await client.hello(token, **kwargs)
            assert welcome["type"] == "session.welcome", welcome
        return client

    yield factory
    for client in clients:
        await client.close()


# -- the console in a browser (tests/gateway/console_browser.py) --------------


@pytest.fixture(params=["embedded", "split"])
async def deployment(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Deployment]:
    """A deployment the console is served from; `cluster` needs PostgreSQL."""
    if request.param != "cluster":
        with deployed(request.param, tmp_path) as running:
            yield running
        return
    async with postgres_schema(request.getfixturevalue("postgres_server")) as url:
        with deployed("cluster", tmp_path, url) as running:
            yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def page_errors() -> Iterator[list[str]]:
    """Script errors of the test's pages: none may happen."""
    errors: list[str] = []
    yield errors
    assert errors == []


@pytest.fixture
async def page(browser: Browser, deployment: Deployment, page_errors: list[str]) -> Page:
    """A signed-in console showing the job list."""
    page = await sign_in(browser, deployment, page_errors)
    await expect(page.locator("#jobs")).to_be_visible(timeout=SAFETY_MS)
    return page


# -- remote workers beside an embedded serve (the Workers page, issue 23) -----

WorkerStarter = Callable[..., Awaitable[WorkerProcess]]


@pytest.fixture
def worker_serve(tmp_path: Path) -> Iterator[ServeProcess]:
    """An embedded `serve` child (core, gateway, console) that admits one worker token,
    `WORKER_TOKEN` for worker `worker-a` (`ARCP_AUTH_WORKERS`)."""
    with serving_workers(tmp_path, ARCP_AUTH_WORKERS=f"{WORKER_TOKEN}=worker-a") as serve:
        yield serve


@pytest.fixture
async def start_workers(worker_serve: ServeProcess) -> AsyncIterator[WorkerStarter]:
    """Start real `arcp-grpc worker` children against `worker_serve`, each returned once
    registered; every one still running is killed at the end."""
    started: list[WorkerProcess] = []

    async def start(*extra: str) -> WorkerProcess:
        core = worker_serve.info["grpc"]
        worker = await asyncio.to_thread(start_worker, core, WORKER_TOKEN, *extra)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        await asyncio.to_thread(worker.stop)
