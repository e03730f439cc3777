"""``python -m bench.wal_probe [--results 24] [--mib 60]``: issue 15's disk probe, full size.

Defect 5 as reported: 24 results of 60 MB left a 1.46 GB write-ahead log next to a
4 KB database, and 2.8 GB on disk after a clean stop. The probe replays it against a
real server process (`bench.servers.ours`, default knobs: `store.sqlite_wal_bytes`
32 MiB): it runs the `report` agent ``--results`` times with ``--mib`` MiB each, one
after the other, following each job to its end over gRPC, while a thread reads the
log's size every 20 ms. After a clean stop it measures the files against the live data
(the size of ``VACUUM INTO``, a compacted copy of the same rows), then purges the first
half of the jobs and gives their pages back with the store's own `purge_jobs` and
`reclaim` (what `runtime.retention_sec` runs), and measures again.
Prints one JSON object; exit status 1 when the log passed 64 MiB or the files hold more
than the live data + 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from arcp_grpc.store.sqlite.store import SQLiteStore
from arcp_grpc.v1 import job_service_pb2, job_service_pb2_grpc, jobs_pb2
from bench.procs import kill_all, running_server
from bench.servers._common import BENCH_TOKEN

__all__ = ["main", "probe"]

_MiB = 1024 * 1024
_WAL_GOAL = 64 * _MiB
_MAX_MESSAGES = 1_000_000  # bound on one watch
_OPTIONS = (("grpc.max_receive_message_length", 64 * _MiB),)


class _Peak(threading.Thread):
    """The largest size `path` reached, read every 20 ms until stopped."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self._path = path
        self._done = threading.Event()
        self.peak = 0

    def run(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _size(self._path))

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _files(database: Path, scratch: Path) -> dict[str, int]:
    """The store's files and the live data they hold (a compacted copy's size)."""
    compact = scratch / "compact.sqlite3"
    compact.unlink(missing_ok=True)
    with sqlite3.connect(database) as conn:
        conn.execute("VACUUM INTO ?", (str(compact),))
    live = _size(compact)
    compact.unlink()
    wal = database.with_name(database.name + "-wal")
    return {"database": _size(database), "wal": _size(wal), "live": live}


async def _results(address: str, count: int, size: int) -> float:
    """Run the reports; return a time between the first half's ends and the second's."""
    metadata = (("authorization", f"Bearer {BENCH_TOKEN}"),)
    value = json_format.ParseDict({"bytes": size}, struct_pb2.Value())
    request = job_service_pb2.SubmitJobRequest(
        submit=jobs_pb2.JobSubmit(agent="report", input=value)
    )
    middle = 0.0
    async with grpc.aio.insecure_channel(address, options=_OPTIONS) as channel:
        stub: Any = job_service_pb2_grpc.JobServiceStub(channel)
        for index in range(count):
            if index == count // 2:
                middle = time.time()
            accepted = await stub.SubmitJob(request, metadata=metadata)
            watch = job_service_pb2.WatchJobRequest(job_id=accepted.accepted.job_id)
            received = 0
            async for message in stub.WatchJob(watch, metadata=metadata):
                received += 1
                if message.HasField("outcome") or received > _MAX_MESSAGES:
                    break
    return middle


async def probe(results: int, mib: int, workdir: Path) -> dict[str, Any]:
    """The whole probe in `workdir`; the figures as a dict."""
    data = workdir / "data"
    database = data / "arcp.sqlite3"
    peak = _Peak(database.with_name("arcp.sqlite3-wal"))
    peak.start()
    started = time.monotonic()
    args = ("--data-dir", str(data))
    async with running_server(
        "probe", "bench.servers.ours", workdir, lifetime_s=3600, extra_args=args
    ) as server:
        middle = await _results(server.info["grpc"], results, mib * _MiB)
    seconds = time.monotonic() - started
    wal_peak = peak.stop()
    after_stop = _files(database, workdir)
    store = SQLiteStore(database)
    await store.open()
    purged = 0
    try:
        for _ in range(results):  # bounded: each batch purges or the loop ends
            batch = await store.purge_jobs(middle, 200)
            purged += batch
            if batch == 0:
                break
        await store.reclaim()
    finally:
        await store.close()
    after_purge = _files(database, workdir)
    return {
        "results": results,
        "mib_each": mib,
        "seconds": round(seconds, 1),
        "wal_peak_bytes": wal_peak,
        "after_stop": after_stop,
        "purged_jobs": purged,
        "after_purge": after_purge,
    }


def _ok(figures: dict[str, Any]) -> bool:
    within = all(
        figures[k]["database"] + figures[k]["wal"] <= figures[k]["live"] * 1.10
        for k in ("after_stop", "after_purge")
    )
    return bool(figures["wal_peak_bytes"] < _WAL_GOAL and within)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wal_probe", description=__doc__)
    parser.add_argument("--results", type=int, default=24, help="how many results (default 24)")
    parser.add_argument("--mib", type=int, default=60, help="MiB per result (default 60)")
    args = parser.parse_args(argv)
    if not (2 <= args.results <= 1000 and 1 <= args.mib <= 256):
        raise SystemExit("--results must be 2-1000 and --mib 1-256")
    atexit.register(kill_all)
    with tempfile.TemporaryDirectory(prefix="arcp-wal-probe.") as workdir:
        figures = asyncio.run(probe(args.results, args.mib, Path(workdir)))
    sys.stdout.write(json.dumps(figures, indent=1) + "\n")
    return 0 if _ok(figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
