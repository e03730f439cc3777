"""Reading configuration values: text and TOML to typed knobs, and the checks on them.

`arcp_grpc.config` declares the knobs (its settings dataclasses) and puts a
configuration together; this module is the machinery it does that with, kept
apart so each file is one concern: parsing and coercing a value from the
environment, a ``--set`` flag or a TOML file, what is wrong with one value on its
own, the development token in the data directory, and importing agent modules.
It knows no settings class, so `config` imports it and nothing here imports
`config` back (no cycle); `config` re-exports the public names.
"""

from __future__ import annotations

import importlib
import os
import secrets
import sys
import tomllib
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.auth import parse_token_target
from arcp_grpc.demo_agents import demo_registry
from arcp_grpc.process.event_loop import resolve as resolve_event_loop
from arcp_grpc.runtime import PER_PRINCIPAL
from arcp_grpc.store.url import postgres_dsn

__all__ = [
    "DEV_TOKEN_FILE",
    "KINDS",
    "ConfigError",
    "from_text",
    "from_toml",
    "load_agents",
    "read_or_create_dev_token",
    "read_toml",
    "unreadable",
    "value_problem",
]

DEV_TOKEN_FILE = "dev-token"  # in the data directory, mode 0600


class ConfigError(Exception):
    """Configuration that cannot work; the message names the knob and its source."""


# -- typed values ------------------------------------------------------------


def from_text(hint: Any, text: str) -> Any:
    """Parse an environment or flag value for a knob of type `hint`."""
    if hint is bool:
        lowered = text.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected {KINDS[bool]}, got {text!r}")
    if hint is int or hint is float:
        try:
            return hint(text)
        except ValueError:
            raise ValueError(f"expected {KINDS[hint]}, got {text!r}") from None
    if hint == tuple[str, ...]:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    if hint == dict[str, int]:
        caps: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, number = item.partition("=")
            try:
                caps[name.strip()] = int(number)
            except ValueError:
                sep = ""
            if not sep:
                raise ValueError("expected comma-separated NAME=INTEGER pairs")
        return caps
    if hint == dict[str, str]:
        pairs: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            token, sep, principal = item.partition("=")
            if not sep:
                raise ValueError("expected comma-separated TOKEN=PRINCIPAL pairs")
            pairs[token.strip()] = principal.strip()
        return pairs
    if hint is Path:
        return Path(text)
    return text


# What a knob's type is called in an error, the same whichever source gave the value.
KINDS: dict[Any, str] = {
    bool: "a boolean (true/false)",
    int: "an integer",
    float: "a number",
    str: "a string",
    Path: "a string",
    tuple[str, ...]: "an array of strings",
    dict[str, str]: "a table of strings",
    dict[str, int]: "a table of integers",
}


def from_toml(hint: Any, value: Any) -> Any:
    """Check a TOML value against a knob's type (TOML already typed it)."""
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    wrong = ValueError(f"expected {KINDS[hint]}, got {value!r}")
    if hint == tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong
        return tuple(value)
    if hint == dict[str, str]:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise wrong
        return dict(value)
    if hint == dict[str, int]:
        if not isinstance(value, dict) or not all(type(v) is int for v in value.values()):
            raise wrong
        return dict(value)
    if hint is Path:
        if not isinstance(value, str):
            raise wrong
        return Path(value)
    if type(value) is not hint:
        raise wrong
    return value


def read_toml(path: Path, sections: Container[str], knobs: Container[str]) -> dict[str, Any]:
    """Flatten a TOML file to dotted keys (``[core] port`` → ``core.port``) for the
    tables named in `sections`, refusing any key that is not one of `knobs`."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for name, value in document.items():
        if name in sections:
            if not isinstance(value, dict):
                raise ConfigError(f"[{name}] in {path} must be a table")
            for key, item in value.items():
                flat[f"{name}.{key}"] = item
        else:
            flat[name] = value
    for key in flat:
        if key not in knobs:
            raise ConfigError(
                f"unknown configuration key {key!r} from {path} (see docs/configuration.md)"
            )
    return flat


# -- checks on one value ------------------------------------------------------


_POSITIVE = {
    "runtime.max_pending_writes",
    "runtime.revoke_attempts",
    "runtime.revoke_retry_sec",
    "sessions.resume_window_sec",
    "sessions.heartbeat_interval_sec",
    "sessions.hello_timeout_sec",
    "sessions.max_buffered_frames",
    "sessions.back_pressure_lag",
    "runtime.idempotency_ttl_sec",
    "limits.max_sessions_per_principal",
    "limits.max_running_jobs_per_principal",
    "limits.max_held_bytes_per_principal",
    "limits.max_sessions",
    "limits.max_running_jobs",
    "limits.max_held_bytes",
    "gateway.core_keepalive_timeout_sec",
    "gateway.core_probe_sec",
    "workers.wait_sec",
    "workers.event_window",
}
_LOG_LEVELS = ("debug", "info", "warning", "error")


def value_problem(key: str, value: Any, hint: Any) -> str:
    """What is wrong with the value of knob `key` (of type `hint`) on its own ("" when
    nothing is); what only the whole configuration can show is `config`'s to check."""
    if key in ("core.port", "gateway.port", "metrics.port") and not 0 <= value <= 65535:
        return f"{value} is not a port number (0-65535)"
    if (key.endswith("_bytes") or key in _POSITIVE) and not value > 0:
        return f"must be greater than 0, got {value}"
    if hint is float and not value >= 0:
        return f"must not be negative, got {value}"
    if key == "gateway.core_keepalive_sec" and not value >= 1:
        # The core answers pings more frequent than every 0.5 s with GOAWAY (`server`).
        return f"must be at least 1, got {value}"
    if key in ("gateway.path", "gateway.health_path") and not value.startswith("/"):
        return "must start with '/'"
    if key == "event_loop":
        try:
            resolve_event_loop(value)
        except ValueError as exc:
            return str(exc)
    if key == "log.level" and value not in _LOG_LEVELS:
        return f"must be one of {list(_LOG_LEVELS)}"
    if key == "log.format" and value not in ("text", "json"):
        return "must be 'text' or 'json'"
    if key == "gateway.console" and value not in ("auto", "on", "off"):
        return "must be auto, on or off"
    if key == "auth.tokens":
        if not all(token and name for token, name in value.items()):
            return "tokens and principals are non-empty"
        for target in value.values():
            try:
                parse_token_target(target)
            except ValueError as exc:
                return str(exc)
    if key == "auth.workers" and not all(token and name for token, name in value.items()):
        return "tokens and worker names are non-empty"
    if key == "limits.overrides":
        for name, cap in value.items():
            principal, _, knob = name.rpartition(".")
            if not principal or knob not in PER_PRINCIPAL:
                return f"{name!r} is not PRINCIPAL.CAP with CAP one of {list(PER_PRINCIPAL)}"
            if cap <= 0:
                return f"{name} must be greater than 0, got {cap}"
    if key == "limits.retry_after_ms" and value < 0:
        return f"must not be negative, got {value}"
    if key == "auth.dev_principal" and not value:
        return "must not be empty"
    if key == "store.url" and value and not value.startswith("sqlite:///"):
        try:
            postgres_dsn(value)
        except ValueError as exc:
            return str(exc)
    if key == "agents.modules":
        for spec in value:
            module, sep, attribute = spec.partition(":")
            if not (module and sep and attribute):
                return f"{spec!r} is not module:attr"
    return ""


def unreadable(path: str) -> str:
    """Why `path` cannot be read ("" when it can): named in the error before serving."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    return ""


# -- data directory and agents -----------------------------------------------


def read_or_create_dev_token(data_dir: Path) -> str:
    """The development token in `data_dir`, created (mode 0600) on first start, so a
    restart on the same directory keeps it."""
    path = data_dir / DEV_TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text(encoding="utf-8").strip()
        if not token:
            raise ConfigError(f"the development token file {path} is empty") from None
        return token
    token = "arcp-dev-" + secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token


def load_agents(specs: tuple[str, ...], *, demo: bool = False) -> AgentRegistry | None:
    """Import each ``module:attribute`` (an `AgentRegistry` or a callable returning one)
    and merge them; None when there are none. With `demo`, a name@version the demo
    agents already hold is refused here, before anything starts. Raises `ConfigError`
    naming ``agents.modules`` and the spec."""
    if not specs:
        return None
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `serve` runs from a checkout: local modules load
    merged = AgentRegistry()
    for spec in specs:
        _merge(merged, _load_one(spec), spec, "another agents module")
    if demo:
        _merge(demo_registry(), merged, ",".join(specs), "a demo agent (--no-demo-agents)")
    return merged


def _merge(into: AgentRegistry, other: AgentRegistry, spec: str, holder: str) -> None:
    try:
        into.merge(other)
    except ValueError as exc:
        raise ConfigError(f"agents.modules {spec!r}: {exc} by {holder}") from None


def _load_one(spec: str) -> AgentRegistry:
    def fail(problem: str) -> ConfigError:
        return ConfigError(f"agents.modules {spec!r}: {problem}")

    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        where = " (is it in the working directory or on PYTHONPATH?)"
        hint = where if isinstance(exc, ModuleNotFoundError) else ""
        raise fail(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}{hint}") from None
    try:
        target: Any = getattr(module, attribute)
    except AttributeError:
        raise fail(f"{module_name} has no {attribute!r}") from None
    if not isinstance(target, AgentRegistry) and callable(target):
        factory: Callable[[], Any] = target
        try:
            target = factory()
        except Exception as exc:
            raise fail(f"calling {attribute}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(target, AgentRegistry):
        raise fail(
            f"{attribute} is {type(target).__name__}, "
            "not an AgentRegistry or a callable returning one"
        )
    return target
