"""Run `serve`: core, gateway and metrics in one process, until SIGTERM or SIGINT.

The embedded default starts all three on loopback; ``serve core`` and
``serve gateway`` start one half each for split deployments. Shutdown order
is the one that loses nothing: the gateway closes its sockets first (clients
may resume through another gateway), then the core refuses new work, gives
running jobs the grace period, ends the rest with a retryable
INTERNAL_ERROR and closes the store (`RunningCore.stop`), then the metrics
endpoint goes. A clean stop exits 0.

A node the cluster declared dead (it was paused or cut off from the database for
longer than `cluster.node_timeout_sec`) may never serve again under its identity:
its transports are closed (WebSocket 1011, gRPC UNAVAILABLE) so its clients resume
elsewhere, it stops as above and exits `EXIT_FENCED` (75, EX_TEMPFAIL), which the
shipped systemd unit restarts; the new process joins as a new node.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
import os
import signal
import ssl
from collections.abc import Awaitable
from dataclasses import asdict
from pathlib import Path
from typing import Literal, TextIO, TypeVar

import grpc

from arcp_grpc import __version__, tracing
from arcp_grpc.agents import AgentRegistry
from arcp_grpc.base import logs as logging_setup
from arcp_grpc.config import DEV_TOKEN_FILE, ConfigError, Settings, read_or_create_dev_token
from arcp_grpc.process.datadir_lock import DataDirLock, DataDirLocked
from arcp_grpc.process.metrics import Metrics, MetricsServer, serve_metrics
from arcp_grpc.runtime import ClusterLimits, QuotaLimits, RuntimeLimits, WorkerLimits
from arcp_grpc.server import CoreConfig, RunningCore, start_core
from arcp_grpc.service.sessions import SessionLimits
from arcp_grpc.store import StoreUnavailable, StoreWaitExpired
from arcp_grpc.store.secretbox import StoreKeyError
from arcp_grpc.store.url import describe as describe_store
from gateway._console import CONSOLE_PATH
from gateway.links import Keepalive, LocalLink
from gateway.server import GatewayConfig, RunningGateway, start_gateway

__all__ = [
    "EXIT_FENCED",
    "Role",
    "StartupError",
    "StoreNotReady",
    "console_enabled",
    "core_config",
    "gateway_config",
    "run",
]

log = logging.getLogger("arcp_grpc.serve")

Role = Literal["all", "core", "gateway"]
EX_TEMPFAIL = 75  # sysexits.h: start again later; the shipped systemd unit restarts on it
EXIT_FENCED = EX_TEMPFAIL  # declared dead by the cluster: start again as a new node
# How long a fenced node's transports get to send their closes (1011, UNAVAILABLE)
# before the gateway's own stop would close what is left as "going away" (1001).
_FENCED_CLOSE_SEC = 0.5
T = TypeVar("T")


class StartupError(Exception):
    """The process could not start (a port in use, an unreachable directory); the
    message names the address and the knob that sets it. Exit 2: the configuration
    must change."""

    exit_code = 2


class StoreNotReady(StartupError):
    """The store did not answer within `store.connect_timeout_sec`: exit 75
    (EX_TEMPFAIL, sysexits.h), which the shipped systemd unit restarts on."""

    exit_code = EX_TEMPFAIL


def core_config(settings: Settings) -> CoreConfig:
    """The core's configuration; creates the data directory and the dev token."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"data_dir: cannot create {settings.data_dir}: {exc.strerror}") from None
    tokens = dict(settings.auth.tokens)
    if settings.auth.dev_token:
        tokens[read_or_create_dev_token(settings.data_dir)] = settings.auth.dev_principal
    if not tokens:
        raise ConfigError("auth: no bearer tokens; enable auth.dev_token or set auth.tokens")
    core = settings.core
    tls = None
    if core.tls_cert:
        key_pair = (Path(core.tls_key).read_bytes(), Path(core.tls_cert).read_bytes())
        tls = grpc.ssl_server_credentials([key_pair])
    return CoreConfig(
        data_dir=settings.data_dir,
        grpc_host=core.host,
        grpc_port=core.port,
        tokens=tokens,
        worker_tokens=dict(settings.auth.workers),
        compat_principals=frozenset(settings.auth.compat_principals),
        plaintext_credentials=settings.auth.plaintext_credentials,
        demo_agents=settings.agents.demo,
        provision_credentials=core.provision_credentials,
        store_key=core.store_key or None,
        store_key_file=Path(settings.store.key_file) if settings.store.key_file else None,
        store_url=settings.store.url,
        sqlite_wal_bytes=settings.store.sqlite_wal_bytes,
        store_connect_timeout_sec=settings.store.connect_timeout_sec,
        cluster=ClusterLimits(**asdict(settings.cluster)),
        max_message_bytes=core.max_message_bytes,
        limits=RuntimeLimits(**asdict(settings.runtime)),
        session_limits=SessionLimits(**asdict(settings.sessions)),
        quotas=QuotaLimits(**asdict(settings.limits)),
        workers=WorkerLimits(**asdict(settings.workers)),
        tls=tls,
    )


def gateway_config(settings: Settings, core_address: str) -> GatewayConfig:
    """The gateway's configuration; TLS to the core uses `core_tls_ca`, or in the
    embedded process the core's own certificate."""
    gw = settings.gateway
    context = None
    if gw.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(gw.tls_cert, gw.tls_key)
    roots = gw.core_tls_ca or settings.core.tls_cert
    core_ssl = grpc.ssl_channel_credentials(Path(roots).read_bytes()) if roots else None
    return GatewayConfig(
        core_address=core_address,
        host=gw.host,
        port=gw.port,
        path=gw.path,
        health_path=gw.health_path,
        max_frame_bytes=gw.max_frame_bytes,
        max_message_bytes=gw.max_message_bytes,
        compression=gw.compression,
        reuse_port=gw.reuse_port,
        ssl_context=context,
        core_ssl=core_ssl,
        core_keepalive=Keepalive(gw.core_keepalive_sec, gw.core_keepalive_timeout_sec),
        core_probe_sec=gw.core_probe_sec,
        console=console_enabled(gw.console, gw.host),
    )


def console_enabled(setting: str, host: str) -> bool:
    """`gateway.console`: on, off, or auto = on only when the gateway binds loopback, so
    a gateway exposed to a network serves no page unless asked to."""
    if setting != "auto":
        return setting == "on"
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def run(
    settings: Settings,
    role: Role,
    *,
    agents: AgentRegistry | None,
    ready_file: Path | None,
    out: TextIO,
) -> int:
    """Serve until SIGTERM/SIGINT, then stop gracefully; the process exit code."""
    logging_setup.setup(settings.log.level, settings.log.format)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    log.info("event loop: %s.%s", type(loop).__module__, type(loop).__name__)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, stop, signum)
    core: RunningCore | None = None
    gateway: RunningGateway | None = None
    metrics_server: MetricsServer | None = None
    data_lock: DataDirLock | None = None
    traces: tracing.Tracing | None = None
    fenced = False
    try:
        try:
            traces = tracing.configure()  # the OTEL_* variables (docs/operations.md, "Traces")
        except tracing.TracingConfigError as exc:
            raise ConfigError(str(exc)) from None
        if role != "gateway":
            data_lock = _lock_data_dir(settings)
            config = core_config(settings)
            metrics = Metrics()
            try:
                core = await _bind(
                    "gRPC",
                    "core",
                    settings.core.host,
                    settings.core.port,
                    start_core(config, agents=agents, observer=metrics),
                )
            except StoreWaitExpired as exc:
                where = describe_store(settings.store.url, settings.data_dir)
                raise StoreNotReady(f"store {where}: {exc}") from None
            except StoreUnavailable as exc:
                where = describe_store(settings.store.url, settings.data_dir)
                raise StartupError(f"store {where}: {exc}") from None
            except StoreKeyError as exc:
                raise ConfigError(f"{_key_setting(settings)}: {exc}") from None
            metrics.watch_sessions(core.sessions)
            metrics.watch_store(core.store)
            if settings.metrics.enabled:
                metrics_server = _serve_metrics(metrics, settings)
        if role != "core":
            address = core.grpc_address if core else settings.gateway.core
            gw = gateway_config(settings, address)
            # Embedded: the gateway reaches the core in process (same frames, same
            # servicer, no HTTP/2 hop); `serve gateway` talks gRPC to a remote core.
            link = LocalLink(core) if core is not None else None
            starting = start_gateway(gw, link=link)
            gateway = await _bind("the gateway", "gateway", gw.host, gw.port, starting)
        info = _addresses(settings, core, gateway, metrics_server)
        _banner(out, info, settings, role)
        if ready_file is not None:
            _write_ready(ready_file, info)
        fenced = await _stopped_or_fenced(stop, core)
        if fenced:
            log.critical(
                "this node was declared dead by the cluster: its clients were sent to"
                " other nodes; stopping, exit %d (EX_TEMPFAIL) so that a supervisor starts"
                " it again as a new node",
                EXIT_FENCED,
            )
            await asyncio.sleep(_FENCED_CLOSE_SEC)
        log.info("shutting down (grace %.1fs)", settings.runtime.shutdown_grace_sec)
    finally:
        if gateway is not None:
            await gateway.stop()
        if core is not None:
            await core.stop(settings.runtime.shutdown_grace_sec)
        if metrics_server is not None:
            metrics_server.stop()
        if traces is not None:
            traces.shutdown()  # after the core: the runs' last spans are ended by then
        if data_lock is not None:
            data_lock.release()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    if fenced:
        return EXIT_FENCED
    log.info("stopped cleanly")
    return 0


async def _stopped_or_fenced(stop: asyncio.Event, core: RunningCore | None) -> bool:
    """Wait for SIGTERM/SIGINT, or for the cluster to fence this node; True for a fence."""
    if core is None:
        await stop.wait()
        return False
    stopping = asyncio.ensure_future(stop.wait())
    fence = asyncio.ensure_future(core.runtime.lease.until_fenced())
    try:
        await asyncio.wait((stopping, fence), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        fence.cancel()
    return fence.done() and not fence.cancelled()


def _lock_data_dir(settings: Settings) -> DataDirLock:
    """One core per data directory, locked before anything in it is read or written
    (the dev token, the store's start-up recovery): a second `serve` exits with 2."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return DataDirLock.acquire(settings.data_dir)
    except DataDirLocked as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        raise ConfigError(f"data_dir: cannot lock {settings.data_dir}: {exc.strerror}") from None


def _key_setting(settings: Settings) -> str:
    """The setting a store key came from: the key itself wins over its file."""
    return "core.store_key" if settings.core.store_key else "store.key_file"


def _on_signal(stop: asyncio.Event, signum: int) -> None:
    if stop.is_set():
        log.warning("%s again: still shutting down", signal.Signals(signum).name)
        return
    log.info("%s received", signal.Signals(signum).name)
    stop.set()


async def _bind(what: str, section: str, host: str, port: int, starting: Awaitable[T]) -> T:
    """Await a start coroutine; a bind failure becomes a `StartupError` naming the
    address and its knobs. gRPC reports a failed bind as a RuntimeError without the
    reason (its C core logs that, and the CLI silences those logs)."""
    try:
        return await starting
    except (OSError, RuntimeError) as exc:
        raise _bind_failure(what, section, host, port, exc) from None


def _bind_failure(what: str, section: str, host: str, port: int, exc: Exception) -> StartupError:
    if isinstance(exc, OSError) and exc.errno != errno.EADDRINUSE:
        reason = exc.strerror or str(exc)
    else:
        reason = "the port is in use (or the address is not this machine's)"
    return StartupError(
        f"cannot serve {what} on {host}:{port}: {reason}; "
        f"choose another with {section}.port or {section}.host (0 = any free port)"
    )


def _serve_metrics(metrics: Metrics, settings: Settings) -> MetricsServer:
    host, port = settings.metrics.host, settings.metrics.port
    try:
        return serve_metrics(metrics, host, port)
    except OSError as exc:
        raise _bind_failure("metrics", "metrics", host, port, exc) from None


def _addresses(
    settings: Settings,
    core: RunningCore | None,
    gateway: RunningGateway | None,
    metrics: MetricsServer | None,
) -> dict[str, object]:
    info: dict[str, object] = {"pid": os.getpid(), "version": __version__}
    if core is not None:
        info["grpc"] = core.grpc_address
        info["grpc_tls"] = bool(settings.core.tls_cert)
        info["data_dir"] = str(settings.data_dir.resolve())
        info["store"] = describe_store(settings.store.url, settings.data_dir.resolve())
        if settings.auth.dev_token:
            info["token_file"] = str((settings.data_dir / DEV_TOKEN_FILE).resolve())
    if gateway is not None:
        info["gateway"] = gateway.url
        scheme = "https" if settings.gateway.tls_cert else "http"
        host = gateway.config.host
        info["gateway_health"] = f"{scheme}://{host}:{gateway.port}{settings.gateway.health_path}"
        if gateway.config.console:
            info["console"] = f"{scheme}://{host}:{gateway.port}{CONSOLE_PATH}"
    if metrics is not None:
        info["metrics"] = metrics.url
    return info


def _banner(out: TextIO, info: dict[str, object], settings: Settings, role: Role) -> None:
    """Ready-to-paste connection instructions (stdout; logs go to stderr)."""
    lines = [f"arcp-grpc {__version__} serving ({role})"]
    if "grpc" in info:
        lines.append(f"  gRPC (JobService, SessionService):  {info['grpc']}")
    if "gateway" in info:
        lines.append(f"  ARCP over WebSocket:                 {info['gateway']}")
    if "console" in info:
        lines.append(f"  web console:                         {info['console']}")
    if "metrics" in info:
        lines.append(f"  Prometheus metrics:                  {info['metrics']}")
    if "data_dir" in info:
        lines.append(f"  data directory:                      {info['data_dir']}")
    if "store" in info:
        lines.append(f"  store:                               {info['store']}")
    if "token_file" in info:
        token_file = info["token_file"]
        grpc_address = info["grpc"]
        # With TLS the client must trust the core: --ca names the CA that signed
        # core.tls_cert (the certificate itself when it is self-signed).
        ca = f" --ca {settings.core.tls_cert}" if info.get("grpc_tls") else ""
        # Plain gRPC with buf curl (server reflection): the project's pinned npm tool,
        # installable where grpcurl is not (neither Debian nor PyPI ships it).
        curl_tls = (
            f"--cacert {settings.core.tls_cert} https" if ca else "--http2-prior-knowledge http"
        )
        lines += [
            f"  development token (principal {settings.auth.dev_principal!r}): {token_file}",
            "",
            "Try it:",
            f"  export ARCP_TOKEN=$(cat {token_file}) ARCP_ADDRESS={grpc_address}",
            f"  arcp-grpc agents{ca}",
            f"""  arcp-grpc submit counter --input '{{"steps": 5}}' --watch{ca}""",
            f"  buf curl --protocol grpc {curl_tls}://{grpc_address}/arcp.v1.JobService/ListAgents"
            ' -H "authorization: Bearer $ARCP_TOKEN"',
            "  (buf: tools/node_modules/.bin/buf in a checkout, after `cd tools && npm ci`)",
        ]
        if ca:
            lines.append(
                "  (--ca, --cacert: the CA that signed the core's certificate; here the "
                "certificate)"
            )
    lines.append("Stop with Ctrl-C or SIGTERM.")
    out.write("\n".join(lines) + "\n")
    out.flush()


def _write_ready(path: Path, info: dict[str, object]) -> None:
    """Atomically publish the bound addresses (for scripts and tests using port 0)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
