"""Run every selected column and ceiling for N repetitions, each on fresh server processes.

Repetitions interleave the columns (rep 1 of every column, then rep 2, ...) so that noise
from other work on a shared machine lands on all of them alike; ratios are therefore taken
between figures measured in the same run. Every scenario has a timeout, and the whole run
has a deadline after which the remaining scenarios are recorded as skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.pgstats import DatabaseMeter, Recorder, per_unit
from bench.procs import cpu_seconds, running_server
from bench.scale import Scale
from bench.scenarios import JOB_API_SCENARIOS, SCENARIOS, Figures, ServerCpu, rss_rounds
from bench.targets import Column
from bench.targets.ceilings import CEILING_SCENARIOS, CEILINGS, Ceiling
from bench.targets.cluster import DATABASES, POSTGRES_ENV
from bench.targets.cluster import columns as cluster_columns
from bench.targets.ours import columns as ours_columns
from bench.targets.reference import columns as reference_columns

__all__ = ["ALL_SCENARIOS", "ALL_TARGETS", "Options", "RunResult", "all_columns", "run"]

ALL_SCENARIOS = (*SCENARIOS, "rss")
ALL_TARGETS = ("ceilings", "reference", "ours-gateway", "ours-grpc", "cluster")


@dataclass(frozen=True)
class Options:
    """What to run; ``command`` is recorded verbatim in the report."""

    scale: Scale
    reps: int
    only: tuple[str, ...]
    targets: tuple[str, ...]
    quick: bool
    command: str


@dataclass
class RunResult:
    """Per-repetition figures, CPU shares and failures, keyed by column (or ceiling) key."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    cpu: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    baselines: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    elapsed_s: float = 0.0

    def add(self, key: str, figures: Figures) -> None:
        for metric, value in figures.items():
            self.values.setdefault(key, {}).setdefault(metric, []).append(value)

    def add_cpu(self, key: str, scenario: str, server_pct: float, client_pct: float) -> None:
        shares = self.cpu.setdefault(key, {}).setdefault(scenario, {"server": [], "client": []})
        shares["server"].append(server_pct)
        shares["client"].append(client_pct)

    def fail(self, key: str, message: str) -> None:
        self.errors.setdefault(key, []).append(message)

    def to_json(self) -> dict[str, Any]:
        return {
            "values": self.values,
            "cpu": self.cpu,
            "errors": self.errors,
            "unavailable": self.unavailable,
            "labels": self.labels,
            "baselines": self.baselines,
            "elapsed_s": self.elapsed_s,
        }


def all_columns() -> list[Column]:
    """Every runtime column in report order."""
    return [*reference_columns(), *ours_columns(), *cluster_columns()]


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class _Clock:
    """The run deadline: each scenario's timeout is capped by what is left of it."""

    def __init__(self, deadline_s: float, scenario_timeout_s: float) -> None:
        self._end = time.monotonic() + deadline_s
        self._scenario = scenario_timeout_s

    def budget(self) -> float:
        return min(self._scenario, self._end - time.monotonic())


async def _measured(
    result: RunResult,
    key: str,
    scenario: str,
    server: ServerCpu,
    clock: _Clock,
    work: Callable[[], Awaitable[Figures]],
) -> bool:
    """Run one scenario under its timeout; record figures and CPU shares, or the failure
    (then False)."""
    budget = clock.budget()
    if budget <= 1:
        result.fail(key, f"{scenario}: skipped, run deadline reached")
        return False
    server_cpu, client_cpu, wall = server(), time.process_time(), time.perf_counter()
    try:
        figures = await asyncio.wait_for(work(), timeout=budget)
    except Exception as exc:  # recorded in the report; one failure must not stop the run
        result.fail(key, f"{scenario}: {type(exc).__name__}: {exc}")
        _log(f"{key} {scenario} failed: {type(exc).__name__}: {exc}")
        return False
    wall = time.perf_counter() - wall
    result.add(key, figures)
    result.add_cpu(
        key,
        scenario,
        (server() - server_cpu) / wall * 100,
        (time.process_time() - client_cpu) / wall * 100,
    )
    _log(f"{key} {scenario}: " + ", ".join(f"{k}={v:.4g}" for k, v in figures.items()))
    return True


def _bind(
    scenario: str, driver: Any, scale: Scale, server: ServerCpu
) -> Callable[[], Awaitable[Figures]]:
    return lambda: SCENARIOS[scenario](driver, scale, server)


def _server_cpu(pid: int) -> ServerCpu:
    """CPU seconds of the server's process tree (for the cluster columns on a PostgreSQL
    server this run started, `Recorder` adds the database's: its work per job is the
    server's as much as SQLite's, which runs inside the core, is)."""
    return lambda: cpu_seconds(pid)


def _cpu_for(column: Column, pid: int) -> ServerCpu:
    """The nodes' CPU, and for a cluster column on a server this run started, the
    database's too, with its statement counts (`bench.pgstats`)."""
    meter = _DATABASES.get(column.database)
    return Recorder(pid, meter) if meter is not None else _server_cpu(pid)


async def _run_column(
    column: Column, opts: Options, workdir: Path, result: RunResult, clock: _Clock
) -> None:
    lifetime = opts.scale.run_deadline_s + 120
    scenarios = [
        s for s in opts.only if s in SCENARIOS and (column.job_api or s not in JOB_API_SCENARIOS)
    ]
    if scenarios:
        try:
            async with running_server(
                column.key,
                column.server_module,
                workdir,
                lifetime_s=lifetime,
                extra_args=column.server_args(workdir),
            ) as server:
                driver = column.make_driver(server.info)
                cpu = _cpu_for(column, server.pid)
                for scenario in scenarios:
                    first = len(cpu.readings) if isinstance(cpu, Recorder) else 0
                    done = await _measured(
                        result,
                        column.key,
                        scenario,
                        cpu,
                        clock,
                        _bind(scenario, driver, opts.scale, cpu),
                    )
                    if done and isinstance(cpu, Recorder):
                        # The first and last readings are `_measured`'s, around the
                        # whole scenario; the scenario's own bracket its timed section.
                        own = cpu.readings[first + 1 : -1]
                        result.add(column.key, per_unit(scenario, opts.scale, own, cpu.meter))
        except Exception as exc:  # a server that cannot start is a finding, not a crash
            result.fail(column.key, f"server: {type(exc).__name__}: {exc}")
    if "rss" in opts.only and column.measures_rss:
        try:
            async with running_server(
                column.key + "-rss",
                column.server_module,
                workdir,
                lifetime_s=lifetime,
                extra_args=column.server_args(workdir),
            ) as server:
                driver = column.make_driver(server.info)
                pid = server.pid
                await _measured(
                    result,
                    column.key,
                    "rss",
                    _server_cpu(pid),
                    clock,
                    lambda: rss_rounds(driver, opts.scale, pid),
                )
        except Exception as exc:
            result.fail(column.key, f"rss server: {type(exc).__name__}: {exc}")


async def _run_ceiling(
    ceiling: Ceiling, opts: Options, workdir: Path, result: RunResult, clock: _Clock
) -> None:
    parts: set[str] = set().union(*(CEILING_SCENARIOS[s] for s in opts.only))
    if not parts:
        return
    try:
        async with running_server(
            ceiling.key,
            ceiling.server_module,
            workdir,
            lifetime_s=opts.scale.run_deadline_s + 120,
        ) as server:
            info, pid = server.info, server.pid
            await _measured(
                result,
                ceiling.key,
                "ceilings",
                _server_cpu(pid),
                clock,
                lambda: ceiling.measure(info, opts.scale, parts, _server_cpu(pid)),
            )
    except Exception as exc:
        result.fail(ceiling.key, f"server: {type(exc).__name__}: {exc}")


#: The PostgreSQL servers this run started, by `Column.database`: the cluster columns'
#: server CPU and statement counts include theirs; a server given by the environment may
#: serve others, so not it.
_DATABASES: dict[str, DatabaseMeter] = {}

#: Loaded in every server the harness starts, for the statement counts (`bench.pgstats`).
_STATEMENT_STATS = "-c shared_preload_libraries=pg_stat_statements"


@contextlib.contextmanager
def _postgres(needed: set[str], workdir: Path) -> Iterator[None]:
    """The PostgreSQL servers the cluster columns need (`DATABASES`): each the one the
    environment names, else a throwaway one (`scripts/test-postgres`) stopped at the end."""
    with contextlib.ExitStack() as stack:
        for database in sorted(needed):
            stack.enter_context(_one_postgres(database, workdir))
        yield


@contextlib.contextmanager
def _one_postgres(database: str, workdir: Path) -> Iterator[None]:
    env, settings = DATABASES[database]
    given = os.environ.get(env) or (
        os.environ.get("ARCP_TEST_POSTGRES_URL") if env == POSTGRES_ENV else None
    )
    if given:
        os.environ[env] = given
        yield
        return
    base = workdir / f"postgres-{database}"
    base.mkdir()
    workdir.chmod(0o755)  # the server runs as the unprivileged `postgres` user under root
    base.chmod(0o755)
    script = str(Path(__file__).resolve().parent.parent / "scripts" / "test-postgres")
    started = subprocess.run(
        [script, "start", str(base / "pg")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ARCP_TEST_POSTGRES_SETTINGS": f"{settings} {_STATEMENT_STATS}"},
    )
    if started.returncode != 0:
        raise RuntimeError(f"could not start PostgreSQL for the cluster target: {started.stderr}")
    os.environ[env] = started.stdout.strip()
    _log(f"PostgreSQL ({database}) for the cluster target: {os.environ[env]}")
    pid_file = base / "pg" / "data" / "postmaster.pid"
    _DATABASES[database] = DatabaseMeter(os.environ[env], int(pid_file.read_text().split()[0]))
    try:
        yield
    finally:
        _DATABASES.pop(database).close()
        subprocess.run([script, "stop", str(base / "pg")], check=False)
        del os.environ[env]


async def run(opts: Options) -> RunResult:
    """Measure every selected target ``opts.reps`` times and return the raw figures."""
    result = RunResult(started_at=time.time())
    clock = _Clock(opts.scale.run_deadline_s, opts.scale.scenario_timeout_s)
    columns = [c for c in all_columns() if c.target in opts.targets]
    for column in columns:
        result.labels[column.key] = column.label
        if column.baseline is not None:
            result.baselines[column.key] = column.baseline
        if column.unavailable is not None:
            result.unavailable[column.key] = column.unavailable
            _log(f"{column.key}: not available yet: {column.unavailable}")
    ceilings = list(CEILINGS) if "ceilings" in opts.targets else []
    for ceiling in ceilings:
        result.labels[ceiling.key] = ceiling.label
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="arcp-bench-") as tmp,
        _postgres({c.database for c in columns if c.database}, Path(tmp)),
    ):
        workdir = Path(tmp)
        for rep in range(1, opts.reps + 1):
            _log(f"repetition {rep}/{opts.reps}")
            for ceiling in ceilings:
                await _run_ceiling(ceiling, opts, workdir, result, clock)
            for column in columns:
                if column.unavailable is None:
                    await _run_column(column, opts, workdir, result, clock)
    result.elapsed_s = time.perf_counter() - start
    return result
