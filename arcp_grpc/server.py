"""Start and stop the core: the gRPC server with JobService, health and reflection.

`start_core` is the one place the core is assembled, for `serve`, tests and
benchmarks alike: store, secret box, provisioner, agents, runtime, servicers.
Each part is handed its collaborators when it is built (the health it reports
to, the observer it feeds), never wired afterwards; each part it starts
registers its stop on one exit stack, so a start that fails half-way stops what
it started (in reverse) and a started core's `stop` is that same unwinding.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from arcp_grpc import __version__
from arcp_grpc.agents import AgentRegistry
from arcp_grpc.auth import Authenticator, Principal
from arcp_grpc.base.ids import new_id
from arcp_grpc.credentials import CredentialProvisioner, DevProvisioner
from arcp_grpc.demo_agents import demo_registry
from arcp_grpc.runtime import (
    ClusterLimits,
    JobRuntime,
    QuotaLimits,
    Quotas,
    RuntimeLimits,
    RuntimeObserver,
    WorkerLimits,
)
from arcp_grpc.service.job_service import SERVICE_NAME as JOB_SERVICE
from arcp_grpc.service.job_service import JobServiceServicer, job_service_handler
from arcp_grpc.service.journal import SessionJournal
from arcp_grpc.service.outbox import UnsentLedger
from arcp_grpc.service.registry import SessionRegistry
from arcp_grpc.service.session_service import SERVICE_NAME as SESSION_SERVICE
from arcp_grpc.service.session_service import SessionServiceServicer, session_handler
from arcp_grpc.service.sessions import SessionLimits
from arcp_grpc.service.worker_service import SERVICE_NAME as WORKER_SERVICE
from arcp_grpc.service.worker_service import WorkerServiceServicer, worker_handler
from arcp_grpc.store import Store
from arcp_grpc.store.postgres.store import PostgresStore
from arcp_grpc.store.secretbox import SecretBox
from arcp_grpc.store.sqlite.store import WAL_LIMIT, SQLiteStore
from arcp_grpc.store.url import postgres_dsn, sqlite_path
from arcp_grpc.v1 import session_pb2

__all__ = ["CoreConfig", "CoreHealth", "RunningCore", "start_core"]

log = logging.getLogger("arcp_grpc.server")

_MiB = 1024 * 1024
_SERVICES = (
    "",
    JOB_SERVICE,
    SESSION_SERVICE,
    WORKER_SERVICE,
)  # as the gRPC health service names them


@dataclass(frozen=True)
class CoreConfig:
    """Everything the core needs; each field is a documented configuration knob."""

    data_dir: Path
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 0
    tokens: Mapping[str, str] = field(default_factory=dict)  # bearer token -> principal
    # Remote workers' bearer tokens -> worker name (issue 23); never client tokens.
    worker_tokens: Mapping[str, str] = field(default_factory=dict)
    compat_principals: frozenset[str] = frozenset()  # principals on the SDK wire profile
    # §14: send credential values over plaintext to a non-loopback peer (off: withheld).
    plaintext_credentials: bool = False
    demo_agents: bool = True
    provision_credentials: bool = True  # the built-in development provisioner (§9.8)
    store_key: str | None = None  # base64 AES-256 key; default: store_key_file
    store_key_file: Path | None = None  # default: <data_dir>/store.key (created once)
    store_url: str = ""  # sqlite:///PATH or postgresql://…; empty: <data_dir>/arcp.sqlite3
    sqlite_wal_bytes: int = WAL_LIMIT  # the SQLite log is checkpointed and cut at this size
    store_connect_timeout_sec: float = 30.0  # PostgreSQL: waited for at start (then exit 75)
    cluster: ClusterLimits = field(default_factory=ClusterLimits)
    max_message_bytes: int = 64 * _MiB
    tls: grpc.ServerCredentials | None = None  # gRPC over TLS when set
    limits: RuntimeLimits = field(default_factory=RuntimeLimits)
    session_limits: SessionLimits = field(default_factory=SessionLimits)
    quotas: QuotaLimits = field(default_factory=QuotaLimits)  # §14 caps, `[limits]`
    workers: WorkerLimits = field(default_factory=WorkerLimits)  # `[workers]`


class CoreHealth:
    """What the gRPC health service reports for every service of the core.

    Built before anything runs, so the store's failure listener and the runtime's
    `on_fenced` are this object's methods from the start: a failure while the core
    is still starting is not missed, and it is never SERVING again afterwards.

    Three reasons not to serve: a failed store or a node the cluster declared dead
    (permanent: a restart is needed), a stopping core (permanent), and a shared
    store that does not answer right now (recoverable, issue 20): SERVING again as
    soon as it answers.
    """

    def __init__(self) -> None:
        self.servicer = health.aio.HealthServicer()
        self._started = False  # `serve` was called
        self._failed = False  # the store failed, the cluster fenced this node, or stopping
        self._unreachable = False  # the shared store does not answer now
        self._publishing: asyncio.Future[None] | None = None

    @property
    def serving(self) -> bool:
        """True while `serve` published SERVING and nothing since says otherwise."""
        return self._started and not self._failed and not self._unreachable

    def status(self) -> str:
        """What the gRPC health service reports for every service, by name."""
        return "SERVING" if self.serving else "NOT_SERVING"

    async def serve(self) -> None:
        """SERVING for every service, unless the core already failed while starting."""
        self._started = True
        await self._publish()

    def store_failed(self) -> None:
        """Health turns NOT_SERVING: balancers and supervisors stop sending work here."""
        log.critical(
            "the store failed (see the error above): the core reports NOT_SERVING and refuses"
            " new work; restart it once the cause (a full disk?) is fixed"
        )
        self.not_serving()

    def store_unreachable(self, lost: bool) -> None:
        """NOT_SERVING while the shared store does not answer (`lost`), SERVING again
        once it does: a database restart costs latency, not a human (issue 20)."""
        self._unreachable = lost
        if lost:
            log.error(
                "the store is unreachable: NOT_SERVING, new sessions and jobs are refused"
                " (retryable); running jobs go on and their output waits in memory"
            )
        elif self.serving:
            log.warning("the store answers again: SERVING")
        self._publishing = asyncio.ensure_future(self._publish())

    def not_serving(self) -> None:
        """NOT_SERVING for good (a failed store, a node the cluster declared dead)."""
        self._failed = True
        self._publishing = asyncio.ensure_future(self._publish())

    async def shut_down(self) -> None:
        """NOT_SERVING for the rest of the process: the core is stopping."""
        self._failed = True
        await self.servicer.enter_graceful_shutdown()

    async def _publish(self) -> None:
        # Each service gets the status current when it is set, so a failure that lands
        # while `serve` is publishing is never overwritten by a late SERVING.
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        for service in _SERVICES:
            await self.servicer.set(service, serving if self.serving else not_serving)


@dataclass
class _Grace:
    """The grace `RunningCore.stop` was given, read by the runtime's registered stop."""

    seconds: float | None = None  # None: `RuntimeLimits.shutdown_grace_sec`


@dataclass
class RunningCore:
    """A started core. `grpc_address` is where clients connect."""

    server: grpc.aio.Server
    runtime: JobRuntime
    store: Store
    port: int
    host: str
    health: CoreHealth
    sessions: SessionRegistry
    session_service: SessionServiceServicer  # for an in-process gateway (gateway.links)
    _stops: AsyncExitStack = field(repr=False)  # what `start_core` started, to unwind
    _grace: _Grace = field(repr=False)
    stopped: bool = False

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def serving(self) -> bool:
        return self.health.serving

    def serving_status(self) -> str:
        """What the gRPC health service reports for every service, by name."""
        return self.health.status()

    async def stop(self, grace: float | None = None) -> None:
        """Graceful: refuse new calls, let running jobs finish within `grace`, end the
        rest with a retryable INTERNAL_ERROR, then close the store cleanly."""
        self.stopped = True
        self._grace.seconds = grace
        await self._stops.aclose()


async def start_core(
    config: CoreConfig,
    *,
    agents: AgentRegistry | None = None,
    provisioner: CredentialProvisioner | None = None,
    observer: RuntimeObserver | None = None,
) -> RunningCore:
    """Open the store, recover, and serve gRPC on `config.grpc_host:grpc_port`.

    `observer` receives the runtime's measurements (`arcp_grpc.process.metrics`).
    Whatever was started is stopped again when a later step fails (a port in use).
    """
    registry = demo_registry() if config.demo_agents else AgentRegistry()
    if agents is not None:
        registry.merge(agents)
    if provisioner is None and config.provision_credentials:
        provisioner = DevProvisioner()
    box = (
        SecretBox.from_text(config.store_key)
        if config.store_key
        else SecretBox.from_key_file(config.store_key_file or config.data_dir / "store.key")
    )
    label = config.cluster.node_name or f"{socket.gethostname()}:{os.getpid()}"
    store = open_store(
        config.store_url,
        config.data_dir,
        node_id=new_id("node"),
        label=label,
        wal_limit=config.sqlite_wal_bytes,
        connect_timeout_sec=config.store_connect_timeout_sec,
    )
    core_health = CoreHealth()
    grace = _Grace()
    stops = AsyncExitStack()  # each part started pushes its stop; unwound in reverse
    try:
        await store.open()
        stops.push_async_callback(store.close)
        # The store's writer exists once it is open; nothing has been written yet.
        store.set_failure_listener(core_health.store_failed)
        if store.cluster is not None:
            store.cluster.set_outage_listener(core_health.store_unreachable)
        runtime = JobRuntime(
            store,
            registry,
            box,
            provisioner=provisioner,
            limits=config.limits,
            cluster_limits=replace(config.cluster, node_name=label),
            quotas=Quotas(config.quotas),
            on_fenced=core_health.not_serving,
            observer=observer,
            worker_limits=config.workers,
        )
        server = _grpc_server(config)
        # Registered before the runtime's stop, so it unwinds after it: calls in flight
        # (watchers of a job) see the jobs the runtime's grace lets finish.
        stops.push_async_callback(server.stop, 1.0)
        await runtime.start()
        stops.push_async_callback(lambda: runtime.stop(grace.seconds))
        sessions = SessionRegistry(
            config.session_limits, UnsentLedger(config.quotas.max_unsent_bytes)
        )
        sessions.start(lambda s: log.info("session %s expired", s.session_id))
        stops.push_async_callback(sessions.stop)
        journal = SessionJournal(runtime.cluster, sessions) if runtime.cluster is not None else None
        session_service = _add_services(server, config, runtime, sessions, journal, core_health)
        port = _bind(server, config)
        await server.start()
        if journal is not None:
            journal.start()
            stops.push_async_callback(journal.stop)
        await core_health.serve()
        stops.push_async_callback(core_health.shut_down)
    except BaseException:
        await stops.aclose()  # a failed start leaves nothing running, the store closed
        raise
    log.info("core serving gRPC on %s:%d", config.grpc_host, port)
    return RunningCore(
        server,
        runtime,
        store,
        port,
        config.grpc_host,
        core_health,
        sessions,
        session_service,
        stops,
        grace,
    )


def open_store(
    url: str,
    data_dir: Path,
    *,
    node_id: str,
    label: str,
    wal_limit: int = WAL_LIMIT,
    connect_timeout_sec: float = 30.0,
) -> Store:
    """The (unopened) store `url` names (`arcp_grpc.store.url`)."""
    path = sqlite_path(url, data_dir)
    if path is not None:
        return SQLiteStore(path, wal_limit=wal_limit)
    return PostgresStore(
        postgres_dsn(url), node_id=node_id, label=label, connect_timeout_sec=connect_timeout_sec
    )


def _grpc_server(config: CoreConfig) -> grpc.aio.Server:
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
        # A gateway pings its cores (HTTP/2 keepalive, `gateway.core_keepalive_sec`, at
        # least 1 s) to notice one that stops answering; gRPC's default policy answers
        # a ping more often than every 5 minutes on a quiet stream with GOAWAY.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 500),
    ]
    return grpc.aio.server(options=options)


def _add_services(
    server: grpc.aio.Server,
    config: CoreConfig,
    runtime: JobRuntime,
    sessions: SessionRegistry,
    journal: SessionJournal | None,
    core_health: CoreHealth,
) -> SessionServiceServicer:
    """JobService, SessionService, health and reflection; the session servicer is
    returned for an in-process gateway."""
    auth = Authenticator.from_tokens(
        config.tokens,
        dict.fromkeys(config.compat_principals, session_pb2.WIRE_PROFILE_SDK_COMPAT),
    )
    info = session_pb2.PeerInfo(name="arcp-grpc", version=__version__)
    plaintext = config.plaintext_credentials
    session_service = SessionServiceServicer(
        runtime, auth, sessions, info, journal, plaintext_credentials=plaintext
    )
    server.add_generic_rpc_handlers(
        (
            job_service_handler(JobServiceServicer(runtime, auth, plaintext_credentials=plaintext)),
            session_handler(session_service),
            worker_handler(
                WorkerServiceServicer(
                    runtime,
                    Authenticator(
                        {token: Principal(name) for token, name in config.worker_tokens.items()}
                    ),
                    plaintext_credentials=plaintext,
                )
            ),
        )
    )
    health_pb2_grpc.add_HealthServicer_to_server(core_health.servicer, server)
    reflection.enable_server_reflection(
        (
            JOB_SERVICE,
            SESSION_SERVICE,
            WORKER_SERVICE,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    return session_service


def _bind(server: grpc.aio.Server, config: CoreConfig) -> int:
    """The port bound; gRPC raises RuntimeError, or returns 0, when it cannot bind."""
    address = f"{config.grpc_host}:{config.grpc_port}"
    port = (
        server.add_secure_port(address, config.tls)
        if config.tls
        else server.add_insecure_port(address)
    )
    if port == 0:
        raise OSError(f"could not bind gRPC to {address}")
    return port
