"""`arcp-grpc`: run the runtime (`serve`) and talk to it over gRPC.

    arcp-grpc serve [core|gateway] [--config FILE] [--grpc-port N] ...
    arcp-grpc submit AGENT [--input JSON] [--key K] [--watch] [--lease JSON] [--max-runtime N]
    arcp-grpc watch JOB [--after N]
    arcp-grpc get JOB
    arcp-grpc jobs [--status S] [--agent A] [--limit N]
    arcp-grpc cancel JOB [--reason TEXT]
    arcp-grpc agents
    arcp-grpc workers
    arcp-grpc store copy [--from sqlite:///PATH] --to postgresql://USER@HOST:PORT/DB
    arcp-grpc credentials --unrevoked [--config FILE] [--data-dir DIR] [--store URL]
    arcp-grpc worker --core HOST:PORT[,HOST:PORT...] --token TOKEN --agents MODULE:ATTR

Exit codes: 0 success, 1 error, 2 usage or configuration, 3 cancelled,
4 timed out, 75 `serve` found no store within `store.connect_timeout_sec`, or the
cluster declared the node dead (EX_TEMPFAIL: start it again), 130 interrupted,
141 output closed (see `arcp_grpc.cli.client`).
Configuration and ARCP errors print one line naming the problem, never a
stack trace; with ``--json`` that line is a JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, TextIO

# gRPC's C core writes its own log lines to stderr (a failed bind, every failed TLS
# handshake); the CLI reports those failures itself in one line. The variable is
# read when grpc is first imported, so it is set before that; a user's own
# GRPC_VERBOSITY (say, debug) still wins.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from arcp_grpc import __version__
from arcp_grpc.cli.client import (
    EXIT_INTERRUPTED,
    EXIT_PIPE_CLOSED,
    EXIT_USAGE,
    ClientError,
    Connection,
)
from arcp_grpc.cli.store import StoreUsageError, add_store_parser, run_store
from arcp_grpc.cli.worker import add_worker_parser, run_worker_command
from arcp_grpc.config import ConfigError, load_agents, load_settings
from arcp_grpc.process import event_loop
from arcp_grpc.worker import WorkerRefused

__all__ = ["build_parser", "main"]

# serve flag -> configuration key; `--set KEY=VALUE` reaches every other knob.
_SERVE_FLAGS: dict[str, str] = {
    "data_dir": "data_dir",
    "store": "store.url",
    "store_key_file": "store.key_file",
    "grpc_host": "core.host",
    "grpc_port": "core.port",
    "gateway_host": "gateway.host",
    "gateway_port": "gateway.port",
    "metrics_host": "metrics.host",
    "metrics_port": "metrics.port",
    "core": "gateway.core",
    "tls_cert": "core.tls_cert",
    "tls_key": "core.tls_key",
    "gateway_tls_cert": "gateway.tls_cert",
    "gateway_tls_key": "gateway.tls_key",
    "core_tls_ca": "gateway.core_tls_ca",
    "console": "gateway.console",
    "log_level": "log.level",
    "log_format": "log.format",
    "shutdown_grace": "runtime.shutdown_grace_sec",
}


class UsageError(Exception):
    """A bad command line; argparse would print usage and exit, we report it like any
    other error (one line, or a JSON object with ``--json``)."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("arcp-grpc").strip()  # "jobs", or "" at the top
        raise UsageError(f"{command}: {message}" if command else message, self.format_usage())


def _integer(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [minimum, maximum], refused in one line
    (protobuf would raise a ValueError deep in the call for a negative uint)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(
                f"must be between {minimum} and {maximum}, got {value}"
            )
        return value

    return parse


_UINT32, _UINT64 = 2**32 - 1, 2**64 - 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="arcp-grpc",
        description="An ARCP v1.1 runtime: gRPC core, WebSocket gateway, and a CLI client.",
    )
    parser.add_argument("--version", action="version", version=f"arcp-grpc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(commands)
    add_store_parser(commands)
    add_worker_parser(commands)

    client = _Parser(add_help=False)
    group = client.add_argument_group("connection (flags > ARCP_* environment > defaults)")
    group.add_argument("--address", help="core gRPC address (ARCP_ADDRESS; 127.0.0.1:7400)")
    group.add_argument("--token", help="bearer token (ARCP_TOKEN; else DATA_DIR/dev-token)")
    group.add_argument("--data-dir", help="where to find dev-token (ARCP_DATA_DIR; ./data)")
    group.add_argument("--ca", help="PEM roots: use TLS to the core (ARCP_TLS_CA)")
    group.add_argument("--json", action="store_true", help="machine-readable JSON lines")

    submit = commands.add_parser("submit", parents=[client], help="submit a job")
    submit.add_argument("agent", help="agent name, optionally name@version")
    submit.add_argument("--input", help="the job input as JSON")
    submit.add_argument("--key", default="", help="idempotency key (§7.2)")
    submit.add_argument("--lease", default="", help='lease request: {"ns": ["pattern", ...]}')
    submit.add_argument(
        "--max-runtime", type=_integer(1, _UINT32), help="max_runtime_sec (§7.3), at least 1"
    )
    submit.add_argument("--watch", action="store_true", help="follow the job to its end")

    watch = commands.add_parser("watch", parents=[client], help="follow a job's events")
    watch.add_argument("job_id")
    watch.add_argument(
        "--after", type=_integer(0, _UINT64), default=0, help="events after this job_seq"
    )

    get = commands.add_parser(
        "get", parents=[client], help="a job's status and outcome (no event replay)"
    )
    get.add_argument("job_id")

    jobs = commands.add_parser("jobs", parents=[client], help="list your jobs, newest first")
    jobs.add_argument("--status", default="", help="success, error, running, ...")
    jobs.add_argument("--agent", default="", help="only this agent")
    jobs.add_argument("--limit", type=_integer(1, 100_000), default=20, help="at most (20)")

    cancel = commands.add_parser("cancel", parents=[client], help="cancel a job")
    cancel.add_argument("job_id")
    cancel.add_argument("--reason", default="", help="why (shown in the job's error)")

    commands.add_parser("agents", parents=[client], help="list agents and versions")
    commands.add_parser(
        "workers", parents=[client], help="list connected remote workers, their agents and slots"
    )
    _credentials_parser(commands)
    return parser


def _credentials_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    ledger = commands.add_parser(
        "credentials",
        help="operators: credential values due for revocation and still live (§14)",
        description="Reads the store itself (the same --config, ARCP_* and flags as serve),"
        " so it works while the core is down; shows no credential value.",
    )
    ledger.add_argument(
        "--unrevoked", action="store_true", required=True, help="list unrevoked values"
    )
    ledger.add_argument("--config", type=Path, help="TOML configuration file (ARCP_CONFIG)")
    ledger.add_argument("--data-dir", help="the data directory of a SQLite store (./data)")
    ledger.add_argument("--store", help="sqlite:///PATH or postgresql://... (ARCP_STORE_URL)")
    ledger.add_argument("--json", action="store_true", help="machine-readable JSON lines")


def _serve_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run core + gateway (or one of them)",
        description="Flags override ARCP_* environment variables, which override the "
        "--config file, which overrides the defaults (docs/configuration.md).",
    )
    serve.add_argument(
        "role",
        nargs="?",
        choices=("core", "gateway"),
        help="run only the core or only the gateway (default: both, one process)",
    )
    serve.add_argument("--config", type=Path, help="TOML configuration file (ARCP_CONFIG)")
    serve.add_argument("--data-dir", help="SQLite, key file and dev token (./data)")
    serve.add_argument(
        "--store", help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB (ARCP_STORE_URL)"
    )
    serve.add_argument(
        "--store-key-file", help="sealing key shared by a cluster's nodes (ARCP_STORE_KEY_FILE)"
    )
    serve.add_argument("--grpc-host", help="core bind address (127.0.0.1)")
    serve.add_argument("--grpc-port", help="core gRPC port (7400; 0 = any free port)")
    serve.add_argument("--gateway-host", help="gateway bind address (127.0.0.1)")
    serve.add_argument("--gateway-port", help="gateway WebSocket port (7401; 0 = any)")
    serve.add_argument("--metrics-host", help="metrics bind address (127.0.0.1)")
    serve.add_argument("--metrics-port", help="Prometheus /metrics port (7402; 0 = any)")
    serve.add_argument("--no-metrics", action="store_true", help="no metrics endpoint")
    serve.add_argument("--core", help="serve gateway: the core's HOST:PORT")
    serve.add_argument(
        "--agents",
        action="append",
        metavar="MODULE:ATTR",
        help="user agents: an AgentRegistry or a callable returning one (repeatable)",
    )
    serve.add_argument("--no-demo-agents", action="store_true", help="do not load demo agents")
    serve.add_argument("--tls-cert", help="PEM certificate chain for gRPC")
    serve.add_argument("--tls-key", help="PEM private key for gRPC")
    serve.add_argument("--gateway-tls-cert", help="PEM certificate chain for wss")
    serve.add_argument("--gateway-tls-key", help="PEM private key for wss")
    serve.add_argument("--core-tls-ca", help="serve gateway: PEM roots to verify the core")
    serve.add_argument(
        "--console", help="web console at /console: auto (on for loopback), on, off (auto)"
    )
    serve.add_argument("--log-level", help="debug, info, warning, error (info)")
    serve.add_argument("--log-format", help="text (key=value) or json (text)")
    serve.add_argument("--shutdown-grace", help="seconds running jobs get on SIGTERM (10)")
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any configuration key, e.g. --set runtime.idempotency_ttl_sec=3600",
    )
    serve.add_argument("--ready-file", type=Path, help="write the bound addresses as JSON here")


def _serve_flags(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(key, text, flag) for every configuration value on the command line: `--set`
    first, then the dedicated flags, which win; `load_settings` checks each one."""
    given: list[tuple[str, str, str]] = []
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        given.append((key.strip(), value, "--set"))
    for dest, key in _SERVE_FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            given.append((key, value, "--" + dest.replace("_", "-")))
    if args.agents:
        given.append(("agents.modules", ",".join(args.agents), "--agents"))
    if args.no_demo_agents:
        given.append(("agents.demo", "false", "--no-demo-agents"))
    if args.no_metrics:
        given.append(("metrics.enabled", "false", "--no-metrics"))
    return given


def _serve(args: argparse.Namespace, out: TextIO) -> int:
    from arcp_grpc.process import serve as _serve  # grpc and the runtime load only for `serve`

    settings = load_settings(config_file=args.config, flags=_serve_flags(args))
    role: _serve.Role = args.role or "all"
    agents = None
    if role != "gateway":
        agents = load_agents(settings.agents.modules, demo=settings.agents.demo)
    try:
        return event_loop.run(
            _serve.run(settings, role, agents=agents, ready_file=args.ready_file, out=out),
            settings.event_loop,
        )
    except _serve.StartupError as exc:
        print(f"arcp-grpc: {exc}", file=sys.stderr)
        return exc.exit_code  # 2: choose another port; 75: the store is not up yet


def _credentials(args: argparse.Namespace, out: TextIO) -> int:
    """List what the credential ledger still owes (`arcp_grpc.cli.ledger_report`)."""
    from arcp_grpc.cli.ledger_report import unrevoked
    from arcp_grpc.store import StoreUnavailable

    given = (("data_dir", args.data_dir, "--data-dir"), ("store.url", args.store, "--store"))
    settings = load_settings(
        config_file=args.config, flags=[(k, v, f) for k, v, f in given if v is not None]
    )
    try:
        due = event_loop.run(unrevoked(settings.store.url, settings.data_dir))
    except StoreUnavailable as exc:
        raise ClientError(str(exc), code="UNAVAILABLE") from None
    for entry in due:
        minted = datetime.fromtimestamp(entry.minted_at, UTC).isoformat(timespec="seconds")
        if args.json:
            row = {"type": "credential", **asdict(entry), "minted_at": minted}
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
        else:
            out.write(
                f"{entry.credential_id} v{entry.version} job={entry.job_id}"
                f" provisioner={entry.provisioner} minted={minted} due: {entry.why}\n"
            )
    if not args.json:
        out.write(f"{len(due)} unrevoked credential value(s)\n")
    return 0


def _client(args: argparse.Namespace, out: TextIO) -> int:
    from arcp_grpc.cli import client

    conn = Connection.resolve(
        address=args.address, token=args.token, data_dir=args.data_dir, ca_file=args.ca
    )
    if args.command == "submit":
        return client.submit(
            conn,
            out,
            agent=args.agent,
            input_json=args.input,
            key=args.key,
            lease_json=args.lease,
            max_runtime=args.max_runtime,
            watch_after=args.watch,
            json_lines=args.json,
        )
    if args.command == "watch":
        return client.watch(conn, out, job_id=args.job_id, after=args.after, json_lines=args.json)
    if args.command == "get":
        return client.get(conn, out, job_id=args.job_id, json_lines=args.json)
    if args.command == "jobs":
        return client.jobs(
            conn, out, status=args.status, agent=args.agent, limit=args.limit, json_lines=args.json
        )
    if args.command == "cancel":
        return client.cancel(
            conn, out, job_id=args.job_id, reason=args.reason, json_lines=args.json
        )
    if args.command == "workers":
        return client.workers(conn, out, json_lines=args.json)
    return client.agents(conn, out, json_lines=args.json)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script; returns the exit code (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    out = sys.stdout
    json_lines = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
        if args.command == "serve":
            return _serve(args, out)
        if args.command == "store":
            return run_store(args, out)
        if args.command == "credentials":
            return _credentials(args, out)
        if args.command == "worker":
            return run_worker_command(args)
        return _client(args, out)
    except UsageError as exc:
        if not json_lines:
            sys.stderr.write(exc.usage)
        return _fail(out, json_lines, "USAGE", str(exc), EXIT_USAGE)
    except ConfigError as exc:
        return _fail(out, json_lines, "CONFIGURATION", f"configuration error: {exc}", EXIT_USAGE)
    except StoreUsageError as exc:
        return _fail(out, json_lines, "USAGE", str(exc), EXIT_USAGE)
    except ClientError as exc:
        return _fail(out, json_lines, exc.code, str(exc), exc.exit_code)
    except WorkerRefused as exc:  # no other core will take the token either
        return _fail(out, json_lines, exc.code, exc.message, EXIT_USAGE)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`arcp-grpc jobs | head -1`): nothing more to say, and
        # nowhere to say it; stdout points at /dev/null so the exit flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE_CLOSED


def _fail(out: TextIO, json_lines: bool, code: str, message: str, exit_code: int) -> int:
    """One line on stderr, or with ``--json`` one object on stdout beside the others
    (docs/configuration.md, "The CLI client")."""
    if json_lines:
        error = {"type": "error", "code": code, "message": message, "exit_code": exit_code}
        out.write(json.dumps(error, separators=(",", ":")) + "\n")
        out.flush()
    else:
        print(f"arcp-grpc: {message}", file=sys.stderr)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
