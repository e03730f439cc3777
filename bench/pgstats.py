"""What a PostgreSQL column's jobs cost the database (issue 21): statements, round trips and
commits per job, and the server CPU split between the nodes and the database.

The counts come from `pg_stat_statements` on the throwaway server the harness starts
(`bench.runner`, loaded with `shared_preload_libraries`): it counts every statement when
it ends, so a reading just before and just after the timed section brackets exactly that
section's work (`pg_stat_database`'s counters are flushed by each backend up to 10 s late,
so they cannot). Each asyncpg call (`execute`, `fetch…`) is one round trip and one entry,
and so are the `BEGIN` and `COMMIT` of an explicit transaction; the only call that is one
round trip for several entries is `executemany`, rare on the hot path. So:

- statements: every call but the transaction control (`BEGIN`, `COMMIT`, savepoints);
- round trips: every call (an upper bound by the few `executemany` rows, a lower one by
  the `Parse` of a statement a connection prepares for the first time, which the cache
  of prepared statements makes rare once warm);
- commits: the commit records in the write-ahead log between the two readings' positions
  (`pg_waldump --stats`): one per transaction that wrote, whether it ran as an explicit
  `BEGIN` … `COMMIT` or as one statement on its own (the batch function's usual case),
  and none for a read or a savepoint. The nodes' heartbeats count: they are writes.

The readings go through one `psql` process held open for the run, so taking one costs a
query, not a connection; its own statements are left out of the sums.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.procs import cpu_seconds
from bench.scale import Scale

__all__ = ["DatabaseMeter", "Reading", "Recorder", "per_unit", "psql_binary"]

_QUERY = (
    "SELECT coalesce(sum(calls), 0),"
    " coalesce(sum(calls) FILTER (WHERE query ~* '^\\s*(begin|commit|rollback|savepoint|release"
    "|start transaction)'), 0),"
    " pg_current_wal_insert_lsn()"
    " FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%';"
)
_END = "__arcp_bench_end__"

#: How many units of work each scenario's timed section does, and its metric prefix.
UNITS: dict[str, tuple[str, Callable[[Scale], int]]] = {
    "handshake": ("handshake", lambda s: s.handshakes),
    "sequential": ("seq", lambda s: s.sequential_jobs),
    "concurrent": ("conc", lambda s: s.sessions * s.jobs_per_session),
    "idempotent": ("idem", lambda s: s.idempotent_pairs),
}


def psql_binary() -> str:
    """The newest installed PostgreSQL's `psql` (the one `scripts/test-postgres` uses)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"), key=lambda p: p.parts[-3])
    return str(found[-1]) if found else "psql"


@dataclass(frozen=True)
class Reading:
    """Counters at one moment: node and database CPU seconds, statement calls."""

    node_cpu: float
    db_cpu: float
    calls: int
    control: int
    lsn: str


class DatabaseMeter:
    """One PostgreSQL server this run started: its postmaster's process tree (every
    backend is its child) and its `pg_stat_statements`, read through a held-open psql."""

    def __init__(self, url: str, postmaster_pid: int) -> None:
        self.url = url
        self.pid = postmaster_pid
        self._psql = subprocess.Popen(
            [psql_binary(), url, "-X", "-A", "-t", "-q", "-F", " "],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._ask("CREATE EXTENSION IF NOT EXISTS pg_stat_statements;")

    def _ask(self, sql: str) -> list[str]:
        assert self._psql.stdin is not None
        assert self._psql.stdout is not None
        self._psql.stdin.write(f"{sql}\n\\echo {_END}\n")
        self._psql.stdin.flush()
        lines = []
        while (line := self._psql.stdout.readline()) and line.strip() != _END:
            lines.append(line.strip())
        if not line:
            raise RuntimeError(f"psql ended: {' '.join(lines)}")
        return lines

    def statements(self) -> tuple[int, int, str]:
        """All calls and transaction-control calls so far, and the log's position."""
        rows = [line for line in self._ask(_QUERY) if line]
        calls, control, lsn = rows[-1].split()
        return int(calls), int(control), lsn

    def commits(self, start: str, end: str) -> int:
        """The commit records the log holds from `start` to `end` (the server's data
        directory is its postmaster's working directory)."""
        data = Path(f"/proc/{self.pid}/cwd").resolve()
        waldump = str(Path(psql_binary()).with_name("pg_waldump"))
        out = subprocess.run(
            [waldump, "--stats=record", "-p", str(data / "pg_wal"), "-s", start, "-e", end],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return sum(
            int(line.split()[1])
            for line in out.splitlines()
            if line.startswith("Transaction/COMMIT ")
        )

    def close(self) -> None:
        if self._psql.stdin is not None:
            self._psql.stdin.close()
        try:
            self._psql.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._psql.kill()


class Recorder:
    """A scenario's `ServerCpu` for a PostgreSQL column: returns node + database CPU as
    before, and keeps a `Reading` per call; a scenario reads the CPU just before and just
    after its timed section, so the last two of its readings bracket it."""

    def __init__(self, node_pid: int, meter: DatabaseMeter) -> None:
        self._node = node_pid
        self.meter = meter
        self.readings: list[Reading] = []

    def __call__(self) -> float:
        calls, control, lsn = self.meter.statements()
        node, db = cpu_seconds(self._node), cpu_seconds(self.meter.pid)
        self.readings.append(Reading(node, db, calls, control, lsn))
        return node + db


def per_unit(
    scenario: str, scale: Scale, readings: list[Reading], meter: DatabaseMeter
) -> dict[str, float]:
    """Per unit of the scenario's work, between the last two readings: statements, round
    trips, commits, node and database CPU µs. Empty for a scenario without a unit count."""
    if scenario not in UNITS or len(readings) < 2:
        return {}
    prefix, units_of = UNITS[scenario]
    units = units_of(scale)
    before, after = readings[-2], readings[-1]
    calls = after.calls - before.calls
    control = after.control - before.control
    return {
        f"{prefix}_db_statements": (calls - control) / units,
        f"{prefix}_db_round_trips": calls / units,
        f"{prefix}_db_commits": meter.commits(before.lsn, after.lsn) / units,
        f"{prefix}_node_cpu_us": (after.node_cpu - before.node_cpu) / units * 1e6,
        f"{prefix}_db_cpu_us": (after.db_cpu - before.db_cpu) / units * 1e6,
    }
