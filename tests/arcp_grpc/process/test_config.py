"""Configuration loading: precedence (defaults < TOML < ARCP_* < flags), strict
validation that names the knob and its source, every knob documented, the
development token, agents modules, and structured log records."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.base.logs import ContextFilter, JsonFormatter, KeyValueFormatter, bind
from arcp_grpc.config import (
    ConfigError,
    LimitSettings,
    RuntimeSettings,
    SessionSettings,
    Settings,
    env_name,
    knob_names,
    load_agents,
    load_settings,
    read_or_create_dev_token,
)
from arcp_grpc.process import event_loop
from arcp_grpc.runtime import RuntimeLimits
from arcp_grpc.runtime.quotas import QuotaLimits
from arcp_grpc.service.sessions import SessionLimits

DOCS = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "arcp.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_documented_embedded_default() -> None:
    settings = load_settings(env={})
    assert settings == Settings()
    assert (settings.core.port, settings.gateway.port, settings.metrics.port) == (7400, 7401, 7402)
    assert settings.core.host == settings.gateway.host == "127.0.0.1"
    assert settings.data_dir == Path("data")


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path: Path) -> None:
    config = _toml(
        tmp_path,
        '[core]\nport = 1111\n[gateway]\nport = 2222\n[log]\nlevel = "debug"\n'
        "[runtime]\nidempotency_ttl_sec = 60\n",
    )
    env = {"ARCP_CORE_PORT": "3333", "ARCP_LOG_LEVEL": "warning"}
    settings = load_settings(config_file=config, env=env, overrides={"core.port": "4444"})
    assert settings.core.port == 4444  # flag
    assert settings.log.level == "warning"  # environment
    assert settings.gateway.port == 2222  # file
    assert settings.runtime.idempotency_ttl_sec == 60.0  # file, an integer read as seconds
    assert settings.metrics.port == 7402  # default


def test_arcp_config_names_the_file(tmp_path: Path) -> None:
    config = _toml(tmp_path, 'data_dir = "/srv/arcp"\n')
    assert load_settings(env={"ARCP_CONFIG": str(config)}).data_dir == Path("/srv/arcp")


def test_environment_values_of_every_shape() -> None:
    settings = load_settings(
        env={
            "ARCP_AUTH_TOKENS": "t-1=alice, t-2=bob",
            "ARCP_AUTH_COMPAT_PRINCIPALS": "alice,bob",
            "ARCP_AGENTS_DEMO": "off",
            "ARCP_AGENTS_MODULES": "a.b:registry,c:make",
            "ARCP_DATA_DIR": "/var/lib/arcp",
            "ARCP_SESSIONS_HEARTBEAT_INTERVAL_SEC": "5",
        }
    )
    assert settings.auth.tokens == {"t-1": "alice", "t-2": "bob"}
    assert settings.auth.compat_principals == ("alice", "bob")
    assert settings.agents.demo is False
    assert settings.agents.modules == ("a.b:registry", "c:make")
    assert settings.data_dir == Path("/var/lib/arcp")
    assert settings.sessions.heartbeat_interval_sec == 5


@pytest.mark.parametrize(
    ("toml", "env", "overrides", "message"),
    [
        ("[core]\nport = '7400'\n", {}, {}, "core.port (from "),
        ("[core]\nport = 7400\nhots = 'x'\n", {}, {}, "unknown configuration key 'core.hots'"),
        ("[wat]\nx = 1\n", {}, {}, "unknown configuration key 'wat'"),
        ("core = 1\n", {}, {}, "[core] in "),
        ("[core\n", {}, {}, "is not valid TOML"),
        ("", {"ARCP_METRICS_PORT": "-1"}, {}, "metrics.port (from ARCP_METRICS_PORT): -1 is not"),
        ("", {"ARCP_GATEWAY_COMPRESSION": "maybe"}, {}, "gateway.compression (from ARCP_"),
        ("", {}, {"core.prot": "1"}, "unknown configuration key 'core.prot'"),
        ("", {}, {"runtime.idempotency_ttl_sec": "0"}, "runtime.idempotency_ttl_sec (from the"),
        ("", {}, {"runtime.shutdown_grace_sec": "-1"}, "must not be negative"),
        ("", {}, {"log.format": "xml"}, "log.format"),
        ("", {}, {"gateway.path": "arcp"}, "gateway.path"),
        ("", {}, {"agents.modules": "no-colon"}, "is not module:attr"),
        ("", {}, {"auth.tokens": "t1"}, "TOKEN=PRINCIPAL"),
        ("[auth.tokens]\nt1 = 'alice:skd'\n", {}, {}, "auth.tokens (from "),  # a profile typo
        ("", {"ARCP_AUTH_TOKENS": "t1=:sdk"}, {}, "PRINCIPAL:PROFILE"),
        ("", {}, {"core.tls_cert": "cert.pem"}, "core.tls_key: set tls_cert and tls_key together"),
        ("", {}, {"gateway.core_tls_ca": "/nonexistent/ca.pem"}, "cannot read /nonexistent"),
        ("", {"ARCP_EVENT_LOOP": "trio"}, {}, "event_loop (from ARCP_EVENT_LOOP): 'trio' is not"),
        ("event_loop = 1\n", {}, {}, "event_loop (from "),
        # A key that still replays (§7.2) must find its job: retention covers the TTL.
        ("", {}, {"runtime.retention_sec": "3600"}, "runtime.retention_sec (from the command"),
        ("", {}, {"runtime.retention_sec": "-1"}, "must not be negative"),
        ("", {}, {"store.sqlite_wal_bytes": "0"}, "store.sqlite_wal_bytes (from the command"),
        # A client token is never a worker token (issue 23).
        (
            "",
            {"ARCP_AUTH_TOKENS": "t1=alice", "ARCP_AUTH_WORKERS": "t1=pool"},
            {},
            "auth.workers (from ARCP_AUTH_WORKERS): 1 token(s) also in auth.tokens",
        ),
        ("", {"ARCP_AUTH_WORKERS": "w1="}, {}, "auth.workers (from ARCP_AUTH_WORKERS)"),
        ("", {}, {"workers.heartbeat_sec": "20"}, "workers.heartbeat_sec (from the command"),
        ("", {}, {"workers.event_window": "0"}, "workers.event_window (from the command"),
    ],
)
def test_bad_values_name_the_key_and_source(
    tmp_path: Path, toml: str, env: dict[str, str], overrides: dict[str, str], message: str
) -> None:
    config = _toml(tmp_path, toml) if toml else None
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=config, env=env, overrides=overrides)
    assert message in str(caught.value)


def test_retention_may_be_off_or_cover_the_idempotency_window() -> None:
    keep = load_settings(env={}, overrides={"runtime.retention_sec": "0"})
    assert keep.runtime.retention_sec == 0
    short = {"runtime.idempotency_ttl_sec": "60", "runtime.retention_sec": "60"}
    assert load_settings(env={}, overrides=short).runtime.retention_sec == 60
    assert load_settings(env={}).runtime.retention_sec == 7 * 24 * 3600  # the default


def test_a_type_error_reads_the_same_from_every_source(tmp_path: Path) -> None:
    """The TOML file, the environment, `--set` and a flag: one message shape."""
    config = _toml(tmp_path, "[core]\nport = 'abc'\n")
    messages = []
    for kwargs in (
        {"config_file": config},
        {"env": {"ARCP_CORE_PORT": "abc"}},
        {"flags": [("core.port", "abc", "--set")]},
        {"flags": [("core.port", "abc", "--grpc-port")]},
    ):
        with pytest.raises(ConfigError) as caught:
            load_settings(**{"env": {}, **kwargs})  # type: ignore[arg-type]
        messages.append(str(caught.value))
    assert messages == [
        f"core.port (from {config}): expected an integer, got 'abc'",
        "core.port (from ARCP_CORE_PORT): expected an integer, got 'abc'",
        "core.port (from --set): expected an integer, got 'abc'",
        "core.port (from --grpc-port): expected an integer, got 'abc'",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"flags": [("core.port", "abc", "--set"), ("core.port", "0", "--grpc-port")]},
            "core.port (from --set): expected an integer, got 'abc'",
        ),
        (
            {"env": {"ARCP_CORE_PORT": "70000"}, "flags": [("core.port", "0", "--grpc-port")]},
            "core.port (from ARCP_CORE_PORT): 70000 is not a port number",
        ),
        (
            {"env": {"ARCP_LOG_LEVEL": "loud"}, "overrides": {"log.level": "info"}},
            "log.level (from ARCP_LOG_LEVEL): must be one of",
        ),
    ],
)
def test_a_value_another_source_overrides_is_still_checked(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**{"env": {}, **kwargs})
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("choice", ["auto", "uvloop", "asyncio"])
def test_the_event_loop_runs_what_was_chosen(choice: str) -> None:
    settings = load_settings(env={"ARCP_EVENT_LOOP": choice})
    assert settings.event_loop == choice

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    expected = {"auto": "uvloop", "uvloop": "uvloop", "asyncio": "asyncio"}[choice]
    assert event_loop.run(loop_module(), settings.event_loop).startswith(expected)


def test_a_pem_that_is_not_a_certificate_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"core\.tls_cert .*not a usable PEM"):
        load_settings(env={}, overrides={"core.tls_cert": str(junk), "core.tls_key": str(junk)})


def test_every_knob_is_documented_with_its_environment_variable() -> None:
    text = DOCS.read_text()
    missing = [k for k in knob_names() if f"`{k}`" not in text or env_name(k) not in text]
    assert missing == []


def test_runtime_and_session_knobs_mirror_the_core_limits() -> None:
    """A limit added to the core without a knob (or the reverse) fails here."""
    for settings_cls, limits_cls in (
        (RuntimeSettings, RuntimeLimits),
        (SessionSettings, SessionLimits),
        (LimitSettings, QuotaLimits),
    ):
        assert dataclasses.asdict(settings_cls()) == dataclasses.asdict(limits_cls())


def test_per_principal_caps_from_a_table_or_pairs(tmp_path: Path) -> None:
    """`[limits.overrides]` in TOML, or PRINCIPAL.CAP=N pairs in the environment (§14)."""
    config = _toml(
        tmp_path,
        "[limits]\nmax_sessions = 50\n[limits.overrides]\n"
        '"batch.max_running_jobs_per_principal" = 4000\n',
    )
    settings = load_settings(config_file=config, env={})
    assert settings.limits.max_sessions == 50
    assert settings.limits.overrides == {"batch.max_running_jobs_per_principal": 4000}
    env = {
        "ARCP_LIMITS_OVERRIDES": "a.max_sessions_per_principal=3, b.max_held_bytes_per_principal=9"
    }
    assert load_settings(env=env).limits.overrides == {
        "a.max_sessions_per_principal": 3,
        "b.max_held_bytes_per_principal": 9,
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alice.max_sessions=3", "is not PRINCIPAL.CAP"),  # a node-wide cap
        ("max_sessions_per_principal=3", "is not PRINCIPAL.CAP"),  # no principal
        ("alice.max_sessions_per_principal=0", "must be greater than 0"),
        ("alice.max_sessions_per_principal=x", "NAME=INTEGER"),
    ],
)
def test_a_bad_per_principal_cap_names_the_knob(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as refused:
        load_settings(env={"ARCP_LIMITS_OVERRIDES": text})
    assert "limits.overrides (from ARCP_LIMITS_OVERRIDES)" in str(refused.value)


def test_dev_token_is_private_and_survives_a_restart(tmp_path: Path) -> None:
    token = read_or_create_dev_token(tmp_path)
    assert (tmp_path / "dev-token").stat().st_mode & 0o777 == 0o600
    assert read_or_create_dev_token(tmp_path) == token
    assert len(token) > 40


def _write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str) -> None:
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))


_AGENTS = """
from arcp_grpc.process import event_loop
from arcp_grpc.agents import AgentRegistry

async def hello(ctx, value):
    return {"hello": value}

registry = AgentRegistry()
registry.register("hello", "1.0.0", hello)

def make():
    other = AgentRegistry()
    other.register("made", "2.0.0", hello)
    return other

not_a_registry = 42
"""


def test_agents_load_from_a_registry_or_a_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_module(tmp_path, monkeypatch, "cfg_agents", _AGENTS)
    merged = load_agents(("cfg_agents:registry", "cfg_agents:make"))
    assert isinstance(merged, AgentRegistry)
    assert {a.name for a in merged.inventory()} == {"hello", "made"}
    assert load_agents(()) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cfg_agents2:missing", "cfg_agents2 has no 'missing'"),
        ("cfg_agents2:not_a_registry", "not_a_registry is int, not an AgentRegistry"),
        ("cfg_nowhere:registry", "cannot import 'cfg_nowhere': ModuleNotFoundError"),
        ("cfg_nowhere:registry", "in the working directory or on PYTHONPATH"),
        ("cfg_broken:registry", "cannot import 'cfg_broken': ZeroDivisionError"),
    ],
)
def test_agents_that_cannot_load_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, message: str
) -> None:
    _write_module(tmp_path, monkeypatch, "cfg_agents2", _AGENTS)
    _write_module(tmp_path, monkeypatch, "cfg_broken", "1 / 0\n")
    with pytest.raises(ConfigError) as caught:
        load_agents((spec,))
    assert str(caught.value).startswith(f"agents.modules {spec!r}: ")
    assert message in str(caught.value)


_CLASH = """
from arcp_grpc.agents import AgentRegistry


async def fake_echo(ctx, input_value):
    return input_value


registry = AgentRegistry()
registry.register("echo", "1.0.0", fake_echo)
"""


def test_an_agent_that_clashes_with_a_demo_agent_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_module(tmp_path, monkeypatch, "cfg_clash", _CLASH)
    with pytest.raises(ConfigError) as caught:
        load_agents(("cfg_clash:registry",), demo=True)
    assert str(caught.value) == (
        "agents.modules 'cfg_clash:registry': agent echo@1.0.0 is already registered "
        "by a demo agent (--no-demo-agents)"
    )
    assert load_agents(("cfg_clash:registry",), demo=False) is not None


async def test_log_records_carry_the_bound_ids() -> None:
    """Ids bound in a task reach its records (and not another task's)."""
    records: list[logging.LogRecord] = []

    async def job() -> None:
        bind(job_id="job_1", trace_id="trace_1")
        bind(session_id="sess_1")
        records.append(_record("in the job"))

    await asyncio.create_task(job())
    records.append(_record("outside"))
    inside = json.loads(JsonFormatter().format(records[0]))
    assert inside["message"] == "in the job"
    assert (inside["job_id"], inside["session_id"], inside["trace_id"]) == (
        "job_1",
        "sess_1",
        "trace_1",
    )
    assert "job_id" not in json.loads(JsonFormatter().format(records[1]))
    line = KeyValueFormatter().format(records[0])
    assert line.endswith("in the job job_id=job_1 session_id=sess_1 trace_id=trace_1")


def _record(message: str) -> logging.LogRecord:
    record = logging.LogRecord("arcp_grpc.test", logging.INFO, __file__, 1, message, None, None)
    ContextFilter().filter(record)
    return record


def test_setup_routes_logs_in_the_chosen_format() -> None:
    from arcp_grpc.base.logs import setup

    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup("warning", "json", stream)
        logging.getLogger("arcp_grpc.test").info("hidden")
        logging.getLogger("arcp_grpc.test").warning("shown", extra={"job_id": "job_x"})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["level"], e["message"], e.get("job_id")) for e in entries] == [
        ("warning", "shown", "job_x")
    ]


_FORGED = "\n2026-01-01T00:00:00 CRITICAL arcp_grpc.runtime forged"


def test_no_input_can_forge_a_text_log_line() -> None:
    """A newline (or a Unicode line separator) in a message or an id stays in its record."""
    record = _record("agent x" + _FORGED)
    record.trace_id = "abc" + _FORGED + "\u2028\r\x85"
    line = KeyValueFormatter().format(record)
    assert len(line.splitlines()) == 1
    assert "\\u000a2026-01-01T00:00:00 CRITICAL" in line
    assert line.endswith("forged\\u2028\\u000d\\u0085")


def test_a_traceback_is_indented_under_its_record() -> None:
    try:
        raise ValueError("bad" + _FORGED)
    except ValueError:
        record = logging.LogRecord(
            "arcp_grpc.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    ContextFilter().filter(record)
    record.job_id = "job_1"
    head, *rest = KeyValueFormatter().format(record).split("\n")
    assert head.endswith("failed job_id=job_1")
    assert rest
    assert all(line.startswith("  ") for line in rest)
    assert any("ValueError: bad" in line for line in rest)


def test_json_records_are_one_line_whatever_they_quote() -> None:
    record = _record("sep\u2028arator" + _FORGED)
    record.trace_id = "t\x85"
    text = JsonFormatter().format(record)
    assert len(text.splitlines()) == 1
    entry = json.loads(text)
    assert entry["message"] == "sep\u2028arator" + _FORGED
    assert entry["trace_id"] == "t\x85"
