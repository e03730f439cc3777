"""Smoke test of the benchmark harness (bench/): it runs, and its report is well formed.

The harness is run as users run it (``python -m bench``), in its smallest mode, against the
reference runtime and the raw ceilings. Nothing here depends on how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from arcp import Envelope
from arcp._messages.execution import JobSubmitPayload
from arcp._messages.session import SessionHelloPayload

from bench.loadgen.frames import hello_frame, new_ulid, submit_frame

REPO = Path(__file__).resolve().parents[2]


def test_lean_frames_are_valid_arcp_envelopes() -> None:
    """The lean generator's pre-built frames pass the reference SDK's own validation (§5.1)."""
    hello = Envelope.from_wire(json.loads(hello_frame(new_ulid(), "tok")))
    assert hello.type == "session.hello"
    assert SessionHelloPayload.model_validate(hello.payload).auth.token == "tok"
    submit = Envelope.from_wire(
        json.loads(submit_frame(new_ulid(), "sess_x", "echo", {"a": 1}, "key-1"))
    )
    assert submit.type == "job.submit"
    parsed = JobSubmitPayload.model_validate(submit.payload)
    assert (parsed.agent, parsed.input, parsed.idempotency_key) == ("echo", {"a": 1}, "key-1")


@pytest.mark.timeout(150)
def test_quick_run_against_reference_and_ceilings(tmp_path: Path) -> None:
    """A minimal run writes RESULTS.md and results.json with positive figures per column."""
    command = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--reps",
        "1",
        "--only",
        "handshake,sequential,events,chunked",
        "--targets",
        "reference,ceilings",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=140)
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["errors"] == {}
    values = results["values"]
    for column in ("ref-client", "ref-lean"):
        for metric in ("handshake_ms", "accepted_ms", "result_ms", "events_per_s"):
            assert values[column][metric][0] > 0, (column, metric)
        assert values[column]["chunk_mb_per_s"][0] > 0
    for metric in ("ws_rtt_ms", "ws_push_msgs_per_s", "ws_push_mb_per_s"):
        assert values["ws-raw"][metric][0] > 0, metric
    for metric in ("grpc_unary_ms", "grpc_stream_batched_events_per_s", "grpc_stream_mb_per_s"):
        assert values["grpc-raw"][metric][0] > 0, metric

    report = (tmp_path / "RESULTS.md").read_text()
    assert "| Metric | WS ceiling | gRPC ceiling | reference · published client |" in report
    assert "b. submit→accepted p50, ms" in report
    assert "nproc:" in report
    assert "agentruntimecontrolprotocol: 1.1.3" in report


@pytest.mark.timeout(150)
def test_quick_run_of_the_job_service_scenarios(tmp_path: Path) -> None:
    """RunJob (h) and SubmitJobs (i) run against our core, every scenario reports the
    server's CPU per unit of work next to its latencies and rates, and the issue 14 goals
    are rendered from the run's own figures (those it did not measure say so)."""
    command = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--reps",
        "1",
        "--only",
        "sequential,runjob,streamed,client",
        "--targets",
        "ours-grpc,ceilings",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=140)
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["errors"] == {}
    grpc = results["values"]["grpc"]
    for metric in (
        "accepted_ms",
        "seq_cpu_us",
        "run_accepted_ms",
        "run_result_ms",
        "run_jobs_per_s",
        "run_cpu_us",
        "streamed_jobs_per_s",
        "streamed_done_jobs_per_s",
        "streamed_cpu_us",
        "raw_submit_ms",
        "client_submit_ms",
        "client_submit_ratio",
        "raw_run_ms",
        "client_run_ms",
        "client_run_ratio",
    ):
        assert grpc[metric][0] > 0, metric
    assert grpc["run_accepted_ms"][0] <= grpc["run_result_ms"][0]
    assert results["values"]["grpc-raw"]["grpc_unary_cpu_us"][0] > 0

    report = (tmp_path / "RESULTS.md").read_text()
    assert "h. RunJob submit→result p50 (one call), ms" in report
    assert "i. SubmitJobs streamed submits/s, 200 jobs on one stream" in report
    assert "b. server CPU per job, µs" in report
    assert "j. client ÷ raw stubs, SubmitJob p50, ×" in report  # issue 25
    goals = report.split("## Issue 14 goals", 1)[1]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in goals.splitlines() if "×" in line}
    for figure in (
        "JobService SubmitJob p50 / grpc.aio unary ceiling",
        "JobService submit→result p50 (one call, RunJob) / unary ceiling",
    ):
        assert rows[figure].endswith(("| met |", "| not met |")), rows[figure]
    gateway = rows["gateway submit→accepted p50 vs reference (published client)"]
    assert "not measured in this run" in gateway  # no gateway column in this run


@pytest.mark.timeout(200)
def test_quick_run_of_the_cluster_target(tmp_path: Path) -> None:
    """1–3 nodes on PostgreSQL (the session's server, through the env the harness reads)
    run the gateway scenarios with the CPU per job beside them; the durable column runs on
    a server the harness starts, so it also has the database's work per job (issue 21)."""
    command = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--reps",
        "1",
        "--only",
        "sequential,concurrent",
        "--targets",
        "cluster",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=190)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["errors"] == {}
    for column in ("pg1-lean", "pg2-lean", "pg3-lean", "pg1d-lean"):
        for metric in ("accepted_ms", "seq_jobs_per_s", "seq_cpu_us", "conc_jobs_per_s"):
            assert results["values"][column][metric][0] > 0, (column, metric)
    durable = results["values"]["pg1d-lean"]
    # A sequential job commits at least its row and its end (the write-ahead log's
    # commit records: each a batch-function call on its own, no BEGIN … COMMIT), every
    # round trip is a statement or a transaction's control, and the database did some of
    # the work.
    assert durable["seq_db_commits"][0] >= 2
    assert durable["seq_db_round_trips"][0] >= durable["seq_db_statements"][0] >= 2
    assert durable["seq_db_cpu_us"][0] > 0
    assert "seq_db_commits" not in results["values"]["pg1-lean"]  # not its server to count
    report = (tmp_path / "RESULTS.md").read_text()
    assert "ours on PostgreSQL, 3 nodes · lean client" in report
    assert "## PostgreSQL: the database's work per job (issue 21)" in report
    assert "## Issue 21 goals" in report


@pytest.mark.timeout(150)
def test_quick_run_of_the_remote_worker_scenario(tmp_path: Path) -> None:
    """k (issue 23): an `arcp-grpc worker` joins our core and the same echo runs on both
    sides in the same run; every figure is measured and rendered (none is judged here)."""
    command = [sys.executable, "-m", "bench", "--quick", "--reps", "1", "--only", "workers"]
    command += ["--targets", "ours-grpc", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=140)
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["errors"] == {}
    figures = results["values"]["grpc"]
    for metric in ("inproc_run_ms", "remote_run_ms", "remote_jobs_per_s", "remote_worker_cpu_us"):
        assert figures[metric][0] > 0, metric
    assert (
        figures["remote_run_ratio"][0] == figures["remote_run_ms"][0] / figures["inproc_run_ms"][0]
    )
    assert "k. remote ÷ in-process, RunJob p50, ×" in (tmp_path / "RESULTS.md").read_text()
