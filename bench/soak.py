"""``python -m bench.soak [--minutes 30] [--interval 10] [--out DIR]``: does anything grow?

Issue 15's soak scenario. One server (`bench.servers.ours`: core on a SQLite store) runs
a steady mixed load for the whole run: echo jobs (every fourth resubmitted with its
idempotency key, §7.2), `chatty` jobs of 200 log events, and `report` jobs streaming a
few MiB as result chunks (§8.4). A sampler reads, every ``--interval`` seconds, the
server's resident memory (``/proc/PID/status`` VmRSS), its open files
(``/proc/PID/fd``) and the store's two files (the database and its write-ahead log).

Retention is shortened to a tenth of the run (at least 30 s; the idempotency window to
half of that), so finished jobs are purged and their pages given back within the run
and the store reaches a steady state like a server running for weeks.

Each line is judged at the end: the first third of the run is warm-up; a line is
**flat** when the median of the last third is within its tolerance of the median of the
middle third, and the log must stay under 64 MiB (`WAL_GOAL`) at every sample. After a clean
stop no log may remain. The run writes ``SOAK.md`` and ``soak.json`` to ``--out``
(default: ``bench/``) and exits 1 when a line is not flat. It is a separate entry point
from ``python -m bench`` because it runs one server for a long time instead of
interleaving short repetitions of several columns.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from arcp_grpc.store.sqlite.store import WAL_LIMIT
from arcp_grpc.v1 import job_service_pb2, job_service_pb2_grpc, jobs_pb2
from bench.procs import kill_all, rss_mib, running_server
from bench.servers._common import BENCH_TOKEN

__all__ = ["WAL_GOAL", "Line", "Sample", "Soak", "judge", "main", "render", "run_soak"]

_MiB = 1024 * 1024
_REPORT_BYTES = 2 * _MiB
#: The log's bound, issue 15's goal: the defaults peak at `store.sqlite_wal_bytes` (32 MiB)
#: plus one group commit (`runtime.max_pending_event_bytes`, 16 MiB, plus page overhead).
WAL_GOAL = 64 * _MiB
_MAX_MESSAGES_PER_WATCH = 1_000_000  # bound on a watch, so a confused server cannot loop us
_CHANNEL_OPTIONS = (("grpc.max_receive_message_length", 64 * _MiB),)


@dataclass(frozen=True)
class Sample:
    """One reading of the server and its store, ``t`` seconds into the run."""

    t: float
    rss_mib: float
    open_files: int
    wal_bytes: int
    database_bytes: int
    jobs: int


@dataclass(frozen=True)
class Line:
    """A sampled line and its verdict: `settled` is the middle third's median, `end`
    the last third's, `limit` the highest `end` (or sample, for a bound) judged flat."""

    name: str
    settled: float
    end: float
    peak: float
    limit: float
    flat: bool


@dataclass
class Soak:
    """A whole run: its samples, the judged lines, and what a clean stop left."""

    seconds: float
    interval: float
    wal_bound: int
    retention_sec: float
    samples: list[Sample] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    wal_after_stop: int = 0
    database_after_stop: int = 0
    errors: int = 0

    @property
    def flat(self) -> bool:
        return all(line.flat for line in self.lines) and self.wal_after_stop == 0


def judge(samples: Sequence[Sample], wal_bound: int) -> list[Line]:
    """Flat or not, per line (pure: the rule the module docstring states)."""
    third = max(1, len(samples) // 3)
    middle, last = samples[third : 2 * third], samples[2 * third :]
    if not middle or not last:
        raise ValueError("too few samples to judge: at least 3 are needed")

    def line(name: str, values: Sequence[float], rel: float, slack: float) -> Line:
        settled = statistics.median(values[third : 2 * third])
        end = statistics.median(values[2 * third :])
        limit = settled * (1 + rel) + slack
        return Line(name, settled, end, max(values), limit, end <= limit)

    rss = line("rss_mib", [s.rss_mib for s in samples], 0.10, 4.0)
    files = line("open_files", [float(s.open_files) for s in samples], 0.0, 4.0)
    database = line("database_bytes", [float(s.database_bytes) for s in samples], 0.10, _MiB)
    wal = line("wal_bytes", [float(s.wal_bytes) for s in samples], 0.0, 0.0)
    # The log is judged against its bound at every sample, not against itself.
    wal = Line(wal.name, wal.settled, wal.end, wal.peak, wal_bound, wal.peak <= wal_bound)
    return [rss, files, wal, database]


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _request(agent: str, value: Any, key: str = "") -> job_service_pb2.SubmitJobRequest:
    submit = jobs_pb2.JobSubmit(
        agent=agent, input=json_format.ParseDict(value, struct_pb2.Value()), idempotency_key=key
    )
    return job_service_pb2.SubmitJobRequest(submit=submit)


class _Load:
    """Closed-loop workers, each pausing between jobs so the load stays steady and
    leaves the shared machine room; counts jobs finished and calls that failed."""

    def __init__(self, stub: Any, deadline: float) -> None:
        self._stub = stub
        self._metadata = (("authorization", f"Bearer {BENCH_TOKEN}"),)
        self._deadline = deadline
        self.jobs = 0
        self.errors = 0

    async def run(self) -> None:
        await asyncio.gather(self._echo(), self._chatty(), self._report())

    async def _job(self, request: job_service_pb2.SubmitJobRequest) -> None:
        try:
            accepted = await self._stub.SubmitJob(request, metadata=self._metadata)
            watch = job_service_pb2.WatchJobRequest(job_id=accepted.accepted.job_id)
            received = 0
            async for message in self._stub.WatchJob(watch, metadata=self._metadata):
                received += 1
                if message.HasField("outcome") or received > _MAX_MESSAGES_PER_WATCH:
                    break
            self.jobs += 1
        except grpc.aio.AioRpcError:
            self.errors += 1

    async def _echo(self) -> None:
        index = 0
        while time.monotonic() < self._deadline:
            index += 1
            key = f"soak-{index}" if index % 4 == 0 else ""
            await self._job(_request("echo", {"n": index}, key))
            if key:  # the replay of the keyed submit (§7.2)
                await self._job(_request("echo", {"n": index}, key))
            await asyncio.sleep(0.02)

    async def _chatty(self) -> None:
        while time.monotonic() < self._deadline:
            await self._job(_request("chatty", {"events": 200}))
            await asyncio.sleep(0.2)

    async def _report(self) -> None:
        while time.monotonic() < self._deadline:
            await self._job(_request("report", {"bytes": _REPORT_BYTES}))
            await asyncio.sleep(1.0)


async def run_soak(seconds: float, interval: float, workdir: Path) -> Soak:
    """Run the soak for `seconds`, sampling every `interval`; the server is stopped
    (cleanly) before the files are read one last time."""
    retention = max(30.0, seconds / 10)
    wal_limit = WAL_LIMIT
    soak = Soak(seconds, interval, WAL_GOAL, retention)
    data = workdir / "data"
    database, wal = data / "arcp.sqlite3", data / "arcp.sqlite3-wal"
    args = (
        "--data-dir",
        str(data),
        "--sqlite-wal-bytes",
        str(wal_limit),
        "--retention-sec",
        str(retention),
        "--idempotency-ttl-sec",
        str(retention / 2),
    )
    lifetime = seconds + 120
    launch = running_server(
        "soak", "bench.servers.ours", workdir, lifetime_s=lifetime, extra_args=args
    )
    async with launch as server:
        started = time.monotonic()
        address = server.info["grpc"]
        async with grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS) as channel:
            load = _Load(job_service_pb2_grpc.JobServiceStub(channel), started + seconds)
            runner = asyncio.create_task(load.run())
            for tick in range(int(seconds // interval) + 1):
                await asyncio.sleep(max(0.0, started + tick * interval - time.monotonic()))
                soak.samples.append(
                    Sample(
                        t=round(time.monotonic() - started, 1),
                        rss_mib=round(rss_mib(server.pid), 1),
                        open_files=_open_files(server.pid),
                        wal_bytes=_size(wal),
                        database_bytes=_size(database),
                        jobs=load.jobs,
                    )
                )
            await runner
            soak.errors = load.errors
    soak.wal_after_stop = _size(wal)
    soak.database_after_stop = _size(database)
    soak.lines = judge(soak.samples, soak.wal_bound)
    return soak


def render(soak: Soak) -> str:
    """SOAK.md: the verdict per line, then every sample."""
    verdict = "every line flat" if soak.flat else "NOT flat"
    out = [
        "# Soak (issue 15)",
        "",
        f"`.venv/bin/python -m bench.soak --minutes {soak.seconds / 60:g}"
        f" --interval {soak.interval:g}`: {soak.seconds / 60:g} min of mixed load (echo,"
        f" keyed replays, chatty 200 events, report {_REPORT_BYTES // _MiB} MiB streamed),"
        f" retention {soak.retention_sec:g} s, a sample every {soak.interval:g} s."
        f" Verdict: **{verdict}**; {soak.samples[-1].jobs if soak.samples else 0} jobs,"
        f" {soak.errors} failed calls.",
        "",
        "| line | middle third (median) | last third (median) | peak | flat if at most | flat |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for line in soak.lines:
        judged = "peak" if line.name == "wal_bytes" else "last third"  # see `judge`
        out.append(
            f"| {line.name} | {line.settled:,.1f} | {line.end:,.1f} | {line.peak:,.1f}"
            f" | {line.limit:,.1f} ({judged}) | {'yes' if line.flat else 'NO'} |"
        )
    out += [
        "",
        f"After the clean stop: WAL {soak.wal_after_stop:,} bytes, database"
        f" {soak.database_after_stop:,} bytes.",
        "",
        "| t (s) | RSS MiB | open files | WAL bytes | database bytes | jobs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in soak.samples:
        out.append(
            f"| {s.t:g} | {s.rss_mib:g} | {s.open_files} | {s.wal_bytes:,}"
            f" | {s.database_bytes:,} | {s.jobs} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the soak, write SOAK.md and soak.json; 0 when every line is flat."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="length (default 30)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="report dir")
    args = parser.parse_args(argv)
    if not 0.5 <= args.minutes <= 24 * 60 or not 0.5 <= args.interval <= args.minutes * 20:
        raise SystemExit("--minutes must be 0.5-1440 and give at least 3 samples")
    atexit.register(kill_all)
    with tempfile.TemporaryDirectory(prefix="arcp-soak.") as workdir:
        soak = asyncio.run(run_soak(args.minutes * 60, args.interval, Path(workdir)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "SOAK.md").write_text(render(soak))
    report = {**asdict(soak), "flat": soak.flat}
    (args.out / "soak.json").write_text(json.dumps(report, indent=1) + "\n")
    sys.stdout.write(render(soak))
    return 0 if soak.flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
