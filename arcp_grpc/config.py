"""Configuration for `arcp-grpc serve`: defaults < TOML file < environment < flags.

Every knob is a field of one of the section dataclasses below, so the same
table drives the TOML keys (``[core] port``), the environment variables
(``ARCP_CORE_PORT``), the ``--set core.port=7400`` flag, and the test that
checks each knob is documented in ``docs/configuration.md``. Loading is
strict: an unknown key, a value of the wrong type, a port out of range or a
TLS file that cannot be read is a `ConfigError` naming the key and where the
value came from, and `serve` exits with code 2 before binding anything.

This module declares the knobs and puts a configuration together (sources in
order of precedence, then the checks only the whole can show);
`arcp_grpc.process.config_loading` holds the machinery it uses — coercing a
value, reading TOML, the checks on one value, the dev token, agent modules —
and knows no settings class, so nothing imports this module back.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from arcp_grpc.process.config_loading import (
    DEV_TOKEN_FILE,
    ConfigError,
    from_text,
    from_toml,
    load_agents,
    read_or_create_dev_token,
    read_toml,
    unreadable,
    value_problem,
)

__all__ = [
    "DEV_TOKEN_FILE",
    "AgentsSettings",
    "AuthSettings",
    "ClusterSettings",
    "ConfigError",
    "CoreSettings",
    "GatewaySettings",
    "LimitSettings",
    "LogSettings",
    "MetricsSettings",
    "RuntimeSettings",
    "SessionSettings",
    "Settings",
    "StoreSettings",
    "WorkerSettings",
    "env_name",
    "knob_names",
    "load_agents",
    "load_settings",
    "read_or_create_dev_token",
]

_MiB = 1024 * 1024


@dataclass(frozen=True)
class CoreSettings:
    """`[core]`: the gRPC server (JobService, SessionService, health, reflection)."""

    host: str = "127.0.0.1"
    port: int = 7400
    max_message_bytes: int = 64 * _MiB
    tls_cert: str = ""  # PEM certificate chain; gRPC uses TLS when set (with tls_key)
    tls_key: str = ""
    store_key: str = ""  # base64 AES-256 key; empty: <data_dir>/store.key (created once)
    provision_credentials: bool = True


@dataclass(frozen=True)
class StoreSettings:
    """`[store]`: where the core keeps its state (`arcp_grpc.store.url`)."""

    url: str = ""  # sqlite:///PATH or postgresql://USER@HOST:PORT/DB; empty: DATA_DIR/arcp.sqlite3
    key_file: str = ""  # base64 AES-256 sealing key every node shares; empty: DATA_DIR/store.key
    sqlite_wal_bytes: int = 32 * _MiB  # SQLite: the log is checkpointed and truncated at this size
    connect_timeout_sec: float = 30.0  # PostgreSQL: how long `serve` waits for it at start


@dataclass(frozen=True)
class ClusterSettings:
    """`[cluster]`: several nodes on one PostgreSQL store (`arcp_grpc.runtime.cluster`)."""

    node_timeout_sec: float = 15.0
    heartbeat_sec: float = 3.0
    node_name: str = ""  # shown in logs and the nodes table; default: HOST:PID


@dataclass(frozen=True)
class GatewaySettings:
    """`[gateway]`: the WebSocket gateway for ARCP JSON clients."""

    host: str = "127.0.0.1"
    port: int = 7401
    path: str = "/arcp"
    health_path: str = "/healthz"
    max_frame_bytes: int = _MiB
    max_message_bytes: int = 16 * _MiB
    compression: bool = False
    reuse_port: bool = False  # SO_REUSEPORT: several `serve gateway` processes share the port
    tls_cert: str = ""  # wss when set (with tls_key)
    tls_key: str = ""
    core: str = "127.0.0.1:7400"  # `serve gateway`: the core's gRPC address
    core_tls_ca: str = ""  # PEM roots to verify the core; set: TLS to the core
    core_keepalive_sec: float = 4.0  # HTTP/2 PING interval on each core channel (>= 1)
    core_keepalive_timeout_sec: float = 4.0  # an unanswered ping (or opening) fails the core
    core_probe_sec: float = 2.0  # several cores: health probe interval of each
    console: str = "auto"  # the web console at /console: auto (on for loopback hosts), on, off


@dataclass(frozen=True)
class MetricsSettings:
    """`[metrics]`: the Prometheus scrape endpoint (`/metrics`)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 7402


@dataclass(frozen=True)
class AuthSettings:
    """`[auth]`: bearer tokens and the principals they name (§6.1)."""

    dev_token: bool = True  # generate <data_dir>/dev-token on first start and accept it
    dev_principal: str = "dev"
    tokens: dict[str, str] = field(default_factory=dict)  # token -> principal[:profile]
    # Remote workers' tokens (issue 23), a table of their own: never a client token.
    workers: dict[str, str] = field(default_factory=dict)  # token -> worker name
    compat_principals: tuple[str, ...] = ("dev",)  # principals on the SDK-compat wire profile
    plaintext_credentials: bool = False  # §14: credential values over plaintext to remote peers


@dataclass(frozen=True)
class RuntimeSettings:
    """`[runtime]`: job execution limits (`arcp_grpc.runtime.RuntimeLimits`)."""

    idempotency_ttl_sec: float = 24 * 3600.0
    chunk_bytes: int = 192 * 1024
    max_chunk_bytes: int = _MiB
    max_result_bytes: int = 256 * _MiB
    lease_grace_sec: float = 1.0
    max_pending_writes: int = 8192
    max_pending_event_bytes: int = 16 * _MiB
    revoke_attempts: int = 5
    revoke_retry_sec: float = 60.0
    shutdown_grace_sec: float = 10.0
    replay_cache_entries: int = 10_000
    replay_cache_bytes: int = 64 * _MiB
    recent_jobs: int = 512
    retention_sec: float = 7 * 24 * 3600.0  # finished jobs are purged this long after; 0: never


@dataclass(frozen=True)
class SessionSettings:
    """`[sessions]`: ARCP session limits (`arcp_grpc.service.sessions.SessionLimits`)."""

    resume_window_sec: int = 600
    heartbeat_interval_sec: int = 30
    hello_timeout_sec: float = 10.0
    max_buffered_frames: int = 100_000
    max_buffered_bytes: int = 64 * _MiB
    back_pressure_lag: int = 1_000
    max_inline_result_bytes: int = 4 * _MiB
    max_unsent_bytes: int = 64 * _MiB


@dataclass(frozen=True)
class LimitSettings:
    """`[limits]`: per-principal and global caps (§14; `arcp_grpc.runtime.quotas.QuotaLimits`)."""

    max_sessions_per_principal: int = 1_000
    max_running_jobs_per_principal: int = 1_000
    max_held_bytes_per_principal: int = 256 * _MiB
    max_sessions: int = 10_000
    max_running_jobs: int = 5_000
    max_held_bytes: int = 1024 * _MiB
    max_unsent_bytes: int = 256 * _MiB
    retry_after_ms: int = 1_000
    overrides: dict[str, int] = field(default_factory=dict)  # "PRINCIPAL.CAP" -> value


@dataclass(frozen=True)
class LogSettings:
    """`[log]`: level and format of the process log."""

    level: str = "info"
    format: str = "text"  # text (key=value) or json


@dataclass(frozen=True)
class AgentsSettings:
    """`[agents]`: which agents the core runs."""

    demo: bool = True
    modules: tuple[str, ...] = ()  # "module:attribute", an AgentRegistry or a factory


@dataclass(frozen=True)
class WorkerSettings:
    """`[workers]`: remote workers over `arcp.v1.WorkerService` (docs/workers.md)."""

    wait_sec: float = 30.0  # a remote agent's job with no connected worker fails after this
    heartbeat_sec: float = 5.0  # how often the core and a worker say they are alive
    heartbeat_timeout_sec: float = 15.0  # silence after which a worker is gone
    event_window: int = 256  # messages a worker may send before the core grants more


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one `serve` process."""

    data_dir: Path = Path("data")
    event_loop: str = "auto"  # auto (uvloop when installed), uvloop or asyncio
    core: CoreSettings = field(default_factory=CoreSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    sessions: SessionSettings = field(default_factory=SessionSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    log: LogSettings = field(default_factory=LogSettings)
    agents: AgentsSettings = field(default_factory=AgentsSettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)


_SECTIONS: dict[str, type[Any]] = {
    name: hint
    for name, hint in get_type_hints(Settings).items()
    if isinstance(hint, type) and dataclasses.is_dataclass(hint)
}
_TOP_LEVEL: dict[str, Any] = {
    name: hint for name, hint in get_type_hints(Settings).items() if name not in _SECTIONS
}


def _knobs() -> Iterator[tuple[str, Any]]:
    yield from _TOP_LEVEL.items()
    for section, cls in _SECTIONS.items():
        for name, hint in get_type_hints(cls).items():
            yield f"{section}.{name}", hint


_HINTS: dict[str, Any] = dict(_knobs())


def knob_names() -> list[str]:
    """Every configuration key, dotted (``core.port``), in declaration order."""
    return list(_HINTS)


def env_name(key: str) -> str:
    """The environment variable of a knob: ``core.port`` → ``ARCP_CORE_PORT``."""
    return "ARCP_" + key.replace(".", "_").upper()


# -- loading -----------------------------------------------------------------


def load_settings(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    flags: Sequence[tuple[str, str, str]] = (),
) -> Settings:
    """Defaults, then the TOML file, then ``ARCP_*`` variables, then `overrides`
    (text keyed by knob name, from "the command line"), then `flags` as
    (key, text, flag) in the order given. Raises `ConfigError`.

    Every given value is checked, including one a later source replaces: a typo in
    the environment or an earlier ``--set`` is an error even when a flag wins, so
    it cannot lie in wait for the day the flag is dropped. Errors read the same
    whatever the source: ``KEY (from SOURCE): problem``."""
    env = os.environ if env is None else env
    given: list[tuple[str, Any, str]] = []  # (key, typed value, source), in precedence order
    if config_file is None and env.get("ARCP_CONFIG"):
        config_file = Path(env["ARCP_CONFIG"])
    if config_file is not None:
        for key, value in read_toml(config_file, _SECTIONS, _HINTS).items():
            given.append((key, _typed(key, str(config_file), from_toml, value), str(config_file)))
    for key in _HINTS:
        name = env_name(key)
        if name in env:
            given.append((key, _typed(key, name, from_text, env[name]), name))
    texts = [(key, text, "the command line") for key, text in (overrides or {}).items()]
    for key, text, source in [*texts, *flags]:
        if key not in _HINTS:
            raise ConfigError(
                f"unknown configuration key {key!r} from {source} (see docs/configuration.md)"
            )
        given.append((key, _typed(key, source, from_text, text), source))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, value, source in given:
        problem = value_problem(key, value, _HINTS[key])
        if problem:
            raise ConfigError(f"{key} (from {source}): {problem}")
        values[key], sources[key] = value, source
    settings = _build(values)
    _validate(settings, sources)
    return settings


def _typed(key: str, source: str, parse: Callable[[Any, Any], Any], raw: Any) -> Any:
    try:
        return parse(_HINTS[key], raw)
    except ValueError as exc:
        raise ConfigError(f"{key} (from {source}): {exc}") from None


def _build(values: Mapping[str, Any]) -> Settings:
    sections: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        prefix = section + "."
        own = {k.removeprefix(prefix): v for k, v in values.items() if k.startswith(prefix)}
        sections[section] = cls(**own)
    top = {name: values[name] for name in _TOP_LEVEL if name in values}
    return Settings(**top, **sections)


# -- validation of the whole ---------------------------------------------------


def _validate(settings: Settings, sources: Mapping[str, str]) -> None:
    """What only the whole configuration can show: pairs set together, files readable."""

    def fail(key: str, problem: str) -> ConfigError:
        where = f" (from {sources[key]})" if key in sources else ""
        return ConfigError(f"{key}{where}: {problem}")

    for section in ("core", "gateway"):
        cert, key = f"{section}.tls_cert", f"{section}.tls_key"
        cert_path, key_path = _value(settings, cert), _value(settings, key)
        if bool(cert_path) != bool(key_path):
            raise fail(cert if not cert_path else key, "set tls_cert and tls_key together")
        if cert_path:
            for name, path in ((cert, cert_path), (key, key_path)):
                problem = unreadable(path)
                if problem:
                    raise fail(name, problem)
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                    cert_path, key_path
                )
            except ssl.SSLError as exc:
                raise fail(cert, f"not a usable PEM certificate and key: {exc.reason}") from None
    ca = settings.gateway.core_tls_ca
    if ca and (problem := unreadable(ca)):
        raise fail("gateway.core_tls_ca", problem)
    key_file = settings.store.key_file
    if key_file and (problem := unreadable(key_file)):
        raise fail("store.key_file", problem)
    runtime = settings.runtime
    if 0 < runtime.retention_sec < runtime.idempotency_ttl_sec:
        # A key that still replays must find its job (§7.2).
        raise fail(
            "runtime.retention_sec",
            "must be 0 (keep for ever) or at least runtime.idempotency_ttl_sec"
            f" ({runtime.idempotency_ttl_sec:g})",
        )
    shared = set(settings.auth.tokens) & set(settings.auth.workers)
    if shared:
        # A client token is never a worker token, nor the reverse (issue 23).
        raise fail("auth.workers", f"{len(shared)} token(s) also in auth.tokens; use another")
    workers = settings.workers
    if not 0 < workers.heartbeat_sec < workers.heartbeat_timeout_sec:
        raise fail(
            "workers.heartbeat_sec",
            "must be above 0 and below workers.heartbeat_timeout_sec"
            f" ({workers.heartbeat_timeout_sec:g})",
        )
    cluster = settings.cluster
    if not 0 < cluster.heartbeat_sec < cluster.node_timeout_sec:
        raise fail(
            "cluster.heartbeat_sec",
            f"must be above 0 and below cluster.node_timeout_sec ({cluster.node_timeout_sec:g})",
        )


def _value(settings: Settings, key: str) -> Any:
    if "." not in key:
        return getattr(settings, key)
    section, name = key.split(".", 1)
    return getattr(getattr(settings, section), name)
