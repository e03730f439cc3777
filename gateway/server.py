"""The WebSocket gateway server: `ws://HOST:PORT/arcp`, a health path, the web console's
static files (`/console`, `gateway._console`), one bridge per socket.

Stateless by design: all session state is in the core, so any number of
gateways can front one core and a client may resume through any of them.
"""

from __future__ import annotations

import email.utils
import http
import json
import logging
import ssl
from dataclasses import dataclass

import grpc
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from arcp_grpc.service.transport_policy import Hop
from gateway._connection import CoalescingConnection
from gateway._console import SECURITY_HEADERS, ConsoleFiles, StaticFile
from gateway._console_api import API_PATH, ConsoleApi
from gateway._core_jobs import CoreJobs
from gateway.bridge import Bridge
from gateway.failover import FailoverLink
from gateway.links import CoreLink, GrpcLink, Health, Keepalive

__all__ = ["GatewayConfig", "RunningGateway", "start_gateway"]

log = logging.getLogger("gateway.server")

_MiB = 1024 * 1024


@dataclass(frozen=True)
class GatewayConfig:
    """Gateway knobs; each is documented in docs/configuration.md."""

    core_address: str  # the core's gRPC host:port; several (comma-separated) fail over
    host: str = "127.0.0.1"
    port: int = 0
    path: str = "/arcp"
    health_path: str = "/healthz"
    max_frame_bytes: int = _MiB  # larger text frames get INVALID_REQUEST, socket kept
    max_message_bytes: int = 16 * _MiB  # larger messages close the socket with 1009
    compression: bool = False  # permessage-deflate costs CPU per frame; off by default
    # SO_REUSEPORT: gateway processes bound to one port share its connections (the
    # kernel spreads them), so a machine with more cores runs one gateway per core.
    reuse_port: bool = False
    ssl_context: ssl.SSLContext | None = None  # wss when set
    core_ssl: grpc.ChannelCredentials | None = None  # TLS to the core when set
    core_keepalive: Keepalive = Keepalive()  # noqa: RUF009  frozen; pings on each core channel
    core_probe_sec: float = 2.0  # several cores: how often each one's health is probed
    console: bool = True  # serve the web console at /console


@dataclass
class RunningGateway:
    """A started gateway; `url` is what ARCP clients connect to."""

    server: Server
    link: CoreLink
    port: int
    config: GatewayConfig
    jobs: CoreJobs | None = None  # the console's JobService calls, when it is served

    @property
    def url(self) -> str:
        scheme = "wss" if self.config.ssl_context else "ws"
        return f"{scheme}://{self.config.host}:{self.port}{self.config.path}"

    async def stop(self) -> None:
        """Close every socket (clients may resume elsewhere), then the link to the core."""
        self.server.close()
        await self.server.wait_closed()
        await self.link.close()
        if self.jobs is not None:
            await self.jobs.close()


async def start_gateway(config: GatewayConfig, *, link: CoreLink | None = None) -> RunningGateway:
    """Serve ARCP over WebSocket. Frames reach the core over gRPC at
    `config.core_address`, or through `link` (a `LocalLink` when the core runs in
    this process: the embedded default)."""
    core = link or _grpc_link(config)
    console = ConsoleFiles(config.path) if config.console else None
    # The console's JSON endpoints call the core's JobService over gRPC, also in the
    # embedded process (`core_address` is then the core's own port): with the
    # browser's token, through the API any backend uses (`gateway._core_jobs`).
    jobs = (
        CoreJobs(_addresses(config), config.core_ssl, config.core_keepalive)
        if config.console
        else None
    )
    api = ConsoleApi(jobs) if jobs is not None else None

    async def handler(ws: ServerConnection) -> None:
        assert isinstance(ws, CoalescingConnection)  # serve(create_connection=...) below
        # §14: the core decides whether credentials may flow to this client; it needs
        # this hop as well as its own (`arcp_grpc.service.transport_policy`).
        peer = ws.remote_address
        client = Hop(str(peer[0]) if peer else "", config.ssl_context is not None)
        await Bridge(ws, core, client, max_frame_bytes=config.max_frame_bytes).run()

    async def process_request(ws: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == config.health_path:
            return _health(await core.health())
        if api is not None and path.startswith(API_PATH):
            authorization = request.headers.get("Authorization", "")
            status, body = await api.answer(request.path, authorization)
            answer = StaticFile((json.dumps(body) + "\n").encode(), "application/json")
            return _response(status, answer, SECURITY_HEADERS)
        if console is not None and console.owns(path):
            return _static(console.lookup(path))
        if path != config.path:
            return ws.respond(http.HTTPStatus.NOT_FOUND, f"ARCP is served at {config.path}\n")
        return None

    server = await serve(
        handler,
        config.host,
        config.port,
        process_request=process_request,
        max_size=config.max_message_bytes,
        compression="deflate" if config.compression else None,
        reuse_port=config.reuse_port,
        ssl=config.ssl_context,
        create_connection=CoalescingConnection,
    )
    port = server.sockets[0].getsockname()[1] if server.sockets else config.port
    log.info("gateway serving ARCP on %s:%d%s", config.host, port, config.path)
    return RunningGateway(server, core, port, config, jobs)


def _grpc_link(config: GatewayConfig) -> CoreLink:
    """One core, or a cluster's cores (`HOST:PORT,HOST:PORT`) with failover; a new
    session waits for its core's first answer as long as for a keepalive ping's."""
    addresses = _addresses(config)
    keepalive = config.core_keepalive
    if len(addresses) == 1:
        return GrpcLink(addresses[0], config.core_ssl, keepalive=keepalive)
    links: dict[str, CoreLink] = {
        a: GrpcLink(a, config.core_ssl, keepalive=keepalive) for a in addresses
    }
    failover = FailoverLink(
        links, open_timeout_sec=keepalive.timeout_sec, probe_sec=config.core_probe_sec
    )
    failover.start()
    return failover


def _addresses(config: GatewayConfig) -> list[str]:
    """The cores named by `core_address` (`HOST:PORT`, or several comma-separated)."""
    return [a.strip() for a in config.core_address.split(",") if a.strip()]


def _health(health: Health) -> Response:
    """200 when a core answers SERVING, 503 otherwise; the body says which. In front of
    several cores it names each and says `serving` (all in rotation), `degraded` (some:
    still 200, a balancer keeps sending clients, which the gateway routes around the
    core that is out) or `unavailable` (none: 503)."""
    serving = health.core == "SERVING"
    status = http.HTTPStatus.OK if serving else http.HTTPStatus.SERVICE_UNAVAILABLE
    body: dict[str, object] = {"gateway": "ok", "core": health.core}
    if health.cores is not None:
        up = sum(core == "SERVING" for core in health.cores.values())
        body["status"] = (
            "serving" if up == len(health.cores) else "degraded" if up else "unavailable"
        )
        body["cores"] = dict(health.cores)
    text = json.dumps(body) + "\n"
    return _response(status, StaticFile(text.encode(), "application/json"))


def _static(file: StaticFile | None) -> Response:
    """A console file with its media type and the strict security headers, or a 404."""
    if file is None:
        missing = StaticFile(b"no such console file\n", "text/plain; charset=utf-8")
        return _response(http.HTTPStatus.NOT_FOUND, missing, SECURITY_HEADERS)
    return _response(http.HTTPStatus.OK, file, SECURITY_HEADERS)


def _response(
    status: http.HTTPStatus, file: StaticFile, extra: tuple[tuple[str, str], ...] = ()
) -> Response:
    """A plain HTTP answer from the upgrade hook, with exactly one Content-Type
    (`ws.respond` would add `text/plain` first)."""
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(file.body))),
            ("Content-Type", file.content_type),
            *extra,
        ]
    )
    return Response(status.value, status.phrase, headers, file.body)
