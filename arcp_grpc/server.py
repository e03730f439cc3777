"""Start and stop the core: the gRPC server with JobService, health and reflection.

`start_core` is the one place the core is assembled, for `serve`, tests and
benchmarks alike: store, secret box, provisioner, agents, runtime, servicers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from arcp_grpc import __version__
from arcp_grpc.agents import AgentRegistry
from arcp_grpc.auth import Authenticator
from arcp_grpc.base.ids import new_id
from arcp_grpc.credentials import CredentialProvisioner, DevProvisioner
from arcp_grpc.demo_agents import demo_registry
from arcp_grpc.runtime import ClusterLimits, JobRuntime, QuotaLimits, Quotas, RuntimeLimits
from arcp_grpc.service.job_service import SERVICE_NAME as JOB_SERVICE
from arcp_grpc.service.job_service import JobServiceServicer, job_service_handler
from arcp_grpc.service.journal import SessionJournal
from arcp_grpc.service.outbox import UnsentLedger
from arcp_grpc.service.registry import SessionRegistry
from arcp_grpc.service.session_service import SERVICE_NAME as SESSION_SERVICE
from arcp_grpc.service.session_service import SessionServiceServicer, session_handler
from arcp_grpc.service.sessions import SessionLimits
from arcp_grpc.store import Store
from arcp_grpc.store.postgres.store import PostgresStore
from arcp_grpc.store.secretbox import SecretBox
from arcp_grpc.store.sqlite.store import WAL_LIMIT, SQLiteStore
from arcp_grpc.store.url import postgres_dsn, sqlite_path
from arcp_grpc.v1 import session_pb2

__all__ = ["CoreConfig", "RunningCore", "start_core"]

log = logging.getLogger("arcp_grpc.server")

_MiB = 1024 * 1024


@dataclass(frozen=True)
class CoreConfig:
    """Everything the core needs; each field is a documented configuration knob."""

    data_dir: Path
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 0
    tokens: Mapping[str, str] = field(default_factory=dict)  # bearer token -> principal
    compat_principals: frozenset[str] = frozenset()  # principals on the SDK wire profile
    # §14: send credential values over plaintext to a non-loopback peer (off: withheld).
    plaintext_credentials: bool = False
    demo_agents: bool = True
    provision_credentials: bool = True  # the built-in development provisioner (§9.8)
    store_key: str | None = None  # base64 AES-256 key; default: store_key_file
    store_key_file: Path | None = None  # default: <data_dir>/store.key (created once)
    store_url: str = ""  # sqlite:///PATH or postgresql://…; empty: <data_dir>/arcp.sqlite3
    sqlite_wal_bytes: int = WAL_LIMIT  # the SQLite log is checkpointed and cut at this size
    cluster: ClusterLimits = field(default_factory=ClusterLimits)
    max_message_bytes: int = 64 * _MiB
    tls: grpc.ServerCredentials | None = None  # gRPC over TLS when set
    limits: RuntimeLimits = field(default_factory=RuntimeLimits)
    session_limits: SessionLimits = field(default_factory=SessionLimits)
    quotas: QuotaLimits = field(default_factory=QuotaLimits)  # §14 caps, `[limits]`


@dataclass
class RunningCore:
    """A started core. `grpc_address` is where clients connect."""

    server: grpc.aio.Server
    runtime: JobRuntime
    store: Store
    port: int
    host: str
    health: health.aio.HealthServicer
    sessions: SessionRegistry
    session_service: SessionServiceServicer  # for an in-process gateway (gateway.links)
    serving: bool = True
    stopped: bool = False
    _sweeper: asyncio.Task[None] | None = field(default=None, repr=False)
    _failing: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.port}"

    def serving_status(self) -> str:
        """What the gRPC health service reports for every service, by name."""
        return "SERVING" if self.serving else "NOT_SERVING"

    def _store_failed(self) -> None:
        """Health turns NOT_SERVING: balancers and supervisors stop sending work here."""
        log.critical(
            "the store failed (see the error above): the core reports NOT_SERVING and refuses"
            " new work; restart it once the cause (a full disk?) is fixed"
        )
        self._not_serving()

    def _not_serving(self) -> None:
        self.serving = False
        self._failing = asyncio.ensure_future(self._publish_not_serving())

    async def _publish_not_serving(self) -> None:
        for service in _SERVICES:
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful: refuse new calls, let running jobs finish within `grace`, end the
        rest with a retryable INTERNAL_ERROR, then close the store cleanly."""
        self.stopped = True
        self.serving = False
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.health.enter_graceful_shutdown()
        await self.sessions.stop()
        await self.runtime.stop(grace)
        await self.server.stop(grace=1.0)
        await self.store.close()


async def start_core(
    config: CoreConfig,
    *,
    agents: AgentRegistry | None = None,
    provisioner: CredentialProvisioner | None = None,
) -> RunningCore:
    """Open the store, recover, and serve gRPC on `config.grpc_host:grpc_port`."""
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
    )
    await store.open()
    runtime = JobRuntime(
        store,
        registry,
        box,
        provisioner=provisioner,
        limits=config.limits,
        cluster_limits=config.cluster,
        quotas=Quotas(config.quotas),
    )
    try:
        await runtime.start()
    except BaseException:
        await store.close()
        raise
    auth = Authenticator.from_tokens(
        config.tokens,
        dict.fromkeys(config.compat_principals, session_pb2.WIRE_PROFILE_SDK_COMPAT),
    )
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(options=options)
    sessions = SessionRegistry(config.session_limits, UnsentLedger(config.quotas.max_unsent_bytes))
    sessions.start(lambda s: log.info("session %s expired", s.session_id))
    journal = SessionJournal(runtime.cluster, sessions) if runtime.cluster is not None else None
    info = session_pb2.PeerInfo(name="arcp-grpc", version=__version__)
    session_service = SessionServiceServicer(
        runtime, auth, sessions, info, journal, plaintext_credentials=config.plaintext_credentials
    )
    server.add_generic_rpc_handlers(
        (
            job_service_handler(
                JobServiceServicer(
                    runtime, auth, plaintext_credentials=config.plaintext_credentials
                )
            ),
            session_handler(session_service),
        )
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (JOB_SERVICE, SESSION_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{config.grpc_host}:{config.grpc_port}"
    port = (
        server.add_secure_port(address, config.tls)
        if config.tls
        else server.add_insecure_port(address)
    )
    if port == 0:
        await store.close()
        raise OSError(f"could not bind gRPC to {config.grpc_host}:{config.grpc_port}")
    await server.start()
    for service in _SERVICES:
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("core serving gRPC on %s:%d", config.grpc_host, port)
    core = RunningCore(
        server, runtime, store, port, config.grpc_host, health_servicer, sessions, session_service
    )
    if journal is not None:
        core._sweeper = asyncio.create_task(journal.sweep(), name="arcp-session-expiry")
    store.set_failure_listener(core._store_failed)
    runtime.on_fenced = core._not_serving
    return core


def open_store(
    url: str, data_dir: Path, *, node_id: str, label: str, wal_limit: int = WAL_LIMIT
) -> Store:
    """The (unopened) store `url` names (`arcp_grpc.store.url`)."""
    path = sqlite_path(url, data_dir)
    if path is not None:
        return SQLiteStore(path, wal_limit=wal_limit)
    return PostgresStore(postgres_dsn(url), node_id=node_id, label=label)


_SERVICES = ("", JOB_SERVICE, SESSION_SERVICE)  # as the gRPC health service names them
