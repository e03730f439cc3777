"""Render a run as ``RESULTS.md``: machine, versions, command, and the side-by-side tables.

Pure apart from ``machine_info``/``versions``, which read ``/proc`` and package metadata.
Every figure is the median over repetitions with its min–max; every non-reference column
also shows its "better than reference" factor (> 1 is faster or leaner), taken against the
reference column driven by the same kind of client in the same run.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from arcp_grpc.process.event_loop import resolve as resolve_event_loop
from bench.report_cluster import cluster_sections
from bench.runner import Options, RunResult
from bench.scenarios import LOWER_IS_BETTER
from bench.stats import Summary, better_ratio, summarize

__all__ = ["machine_info", "render", "versions"]

_PACKAGES = (
    "agentruntimecontrolprotocol",
    "arcp-grpc",
    "websockets",
    "grpcio",
    "protobuf",
    "uvloop",
)

#: (metric, row label, WebSocket ceiling metric(s), gRPC ceiling metric(s)). Every latency
#: and rate is followed by the server CPU its scenario cost per unit of work.
_ROWS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("handshake_ms", "a. session handshake, ms", ("ws_connect_ms",), ("grpc_connect_ms",)),
    ("handshake_cpu_us", "a. server CPU per handshake, µs", (), ()),
    ("accepted_ms", "b. submit→accepted p50, ms", ("ws_rtt_ms",), ("grpc_unary_ms",)),
    ("result_ms", "b. submit→result p50, ms", ("ws_rtt_ms",), ("grpc_unary_ms",)),
    ("seq_jobs_per_s", "b. sequential jobs/s, 1 session", ("ws_rtt_per_s",), ("grpc_unary_per_s",)),
    ("seq_cpu_us", "b. server CPU per job, µs", ("ws_rtt_cpu_us",), ("grpc_unary_cpu_us",)),
    (
        "conc_jobs_per_s",
        "c. concurrent jobs/s, {sessions}",
        ("ws_rtt_conc_per_s", "ws_pipelined_msgs_per_s"),
        ("grpc_unary_conc_per_s",),
    ),
    (
        "conc_cpu_us",
        "c. server CPU per job, µs",
        ("ws_rtt_conc_cpu_us",),
        ("grpc_unary_conc_cpu_us",),
    ),
    ("first_submit_ms", "d. first keyed submit→accepted, ms", ("ws_rtt_ms",), ("grpc_unary_ms",)),
    ("replay_ms", "d. idempotent replay→accepted, ms", ("ws_rtt_ms",), ("grpc_unary_ms",)),
    ("replay_speedup", "d. replay speed-up over first submit, ×", (), ()),
    ("idem_cpu_us", "d. server CPU per keyed job and its replay, µs", (), ()),
    (
        "events_per_s",
        "e. events/s, one job of {events} events",
        ("ws_push_msgs_per_s", "ws_push_msgs_per_s_nodeflate"),
        ("grpc_stream_msgs_per_s", "grpc_stream_batched_events_per_s"),
    ),
    ("events_cpu_us", "e. server CPU per event, µs", (), ()),
    (
        "chunk_mb_per_s",
        "f. chunked result MiB/s, {mib} MiB",
        ("ws_push_mb_per_s", "ws_push_mb_per_s_nodeflate"),
        ("grpc_stream_mb_per_s",),
    ),
    ("chunk_cpu_us", "f. server CPU per MiB of result, µs", (), ()),
    ("rss_last_mib", "g. server RSS after last round, MiB", (), ()),
    ("rss_growth_pct", "g. RSS growth round 1→last, %", (), ()),
    ("run_accepted_ms", "h. RunJob submit→accepted (1st message) p50, ms", (), ("grpc_unary_ms",)),
    (
        "run_result_ms",
        "h. RunJob submit→result p50 (one call), ms",
        (),
        ("grpc_unary_ms", "grpc_stream2_ms"),
    ),
    ("run_jobs_per_s", "h. RunJob sequential jobs/s, 1 channel", (), ("grpc_unary_per_s",)),
    ("run_cpu_us", "h. server CPU per RunJob job, µs", (), ("grpc_unary_cpu_us",)),
    (
        "streamed_jobs_per_s",
        "i. SubmitJobs streamed submits/s, {jobs} jobs on one stream",
        (),
        ("grpc_unary_conc_per_s",),
    ),
    ("streamed_done_jobs_per_s", "i. SubmitJobs jobs/s until all {jobs} finished", (), ()),
    ("streamed_cpu_us", "i. server CPU per streamed job (to its end), µs", (), ()),
    ("raw_submit_ms", "j. SubmitJob p50 through raw stubs, ms", (), ("grpc_unary_ms",)),
    ("client_submit_ms", "j. SubmitJob p50 through arcp_grpc.client, ms", (), ()),
    ("client_submit_ratio", "j. client ÷ raw stubs, SubmitJob p50, ×", (), ()),
    ("raw_run_ms", "j. RunJob submit→result p50 through raw stubs, ms", (), ()),
    ("client_run_ms", "j. RunJob submit→result p50 through arcp_grpc.client, ms", (), ()),
    ("client_run_ratio", "j. client ÷ raw stubs, RunJob p50, ×", (), ()),
    ("inproc_run_ms", "k. RunJob p50, echo in the core, ms", (), ()),
    ("remote_run_ms", "k. RunJob p50, echo on an arcp-grpc worker, ms", (), ()),
    ("remote_run_ratio", "k. remote ÷ in-process, RunJob p50, ×", (), ()),
    ("inproc_jobs_per_s", "k. sequential jobs/s, echo in the core", (), ()),
    ("remote_jobs_per_s", "k. sequential jobs/s, echo on a worker", (), ()),
    ("remote_jobs_ratio", "k. remote ÷ in-process, jobs/s, ×", (), ()),
    ("inproc_core_cpu_us", "k. core CPU per job, echo in the core, µs", (), ()),
    ("remote_core_cpu_us", "k. core CPU per job, echo on a worker, µs", (), ()),
    ("remote_worker_cpu_us", "k. worker CPU per job, µs", (), ()),
    ("remote_core_cpu_ratio", "k. remote ÷ in-process, core CPU per job, ×", (), ()),
)

_CEILING_NOTES = {
    "ws_connect_ms": "WebSocket connect (TCP + upgrade), no ARCP",
    "ws_rtt_ms": "one submit-sized frame echoed, p50 round trip",
    "ws_rtt_per_s": "sequential round trips/s on one connection",
    "ws_rtt_conc_per_s": "round trips/s, 8 connections in closed loop",
    "ws_pipelined_msgs_per_s": "echoed frames/s, one connection, sender never waits",
    "ws_push_msgs_per_s": "server→client 300-char frames/s",
    "ws_push_mb_per_s": "server→client 64 KiB base64 frames, application MiB/s",
    "ws_push_msgs_per_s_nodeflate": "as ws_push_msgs_per_s, permessage-deflate off",
    "ws_push_mb_per_s_nodeflate": "as ws_push_mb_per_s, permessage-deflate off",
    "grpc_connect_ms": "new channel + first unary call",
    "grpc_unary_ms": "unary echo of a submit-sized message, p50",
    "grpc_unary_per_s": "unary calls/s, one caller",
    "grpc_unary_conc_per_s": "unary calls/s, 8 channels in closed loop",
    "grpc_stream_msgs_per_s": "server stream, 1 event per message, events/s",
    "grpc_stream_batched_events_per_s": "server stream, 32 events per message, events/s",
    "grpc_stream_mb_per_s": "server stream of 48 KiB result_chunk messages, MiB/s",
    "ws_rtt_cpu_us": "server CPU per sequential round trip, µs",
    "ws_rtt_conc_cpu_us": "server CPU per round trip, 8 connections, µs",
    "grpc_unary_cpu_us": "server CPU per sequential unary call, µs",
    "grpc_stream2_ms": "one call streaming two messages (RunJob's shape: acceptance, outcome), p50",
    "grpc_unary_conc_cpu_us": "server CPU per unary call, 8 channels, µs",
}


def machine_info() -> dict[str, str]:
    """nproc, CPU model, memory and load: what the figures were measured on."""
    cpu_model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "CPU": cpu_model,
        "memory": memory,
        "load average at end (1/5/15 min)": load,
        "OS": platform.platform(),
        "Python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    """Installed versions of the packages that decide the figures, and the git commit."""
    out: dict[str, str] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    out["arcp-grpc commit"] = commit
    out["event loop"] = (
        f"ours and the raw ceilings on {resolve_event_loop('auto')} (what `arcp-grpc serve`"
        " picks by default); the reference on asyncio's own, as it ships"
    )
    return out


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _one_line(message: str, limit: int = 300) -> str:
    """Failure text fit for one Markdown list item (gRPC errors span several lines)."""
    flat = " ".join(message.split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _summary(result: RunResult, key: str, metric: str) -> Summary | None:
    values = result.values.get(key, {}).get(metric)
    return summarize(values) if values else None


def _cell(summary: Summary | None) -> str:
    if summary is None:
        return "—"
    if summary.count == 1:
        return _fmt(summary.median)
    return f"{_fmt(summary.median)} ({_fmt(summary.low)}–{_fmt(summary.high)})"


def _column_cell(result: RunResult, key: str, metric: str) -> str:
    if key in result.unavailable:
        return "not available yet"
    summary = _summary(result, key, metric)
    text = _cell(summary)
    baseline = result.baselines.get(key)
    if summary is None or baseline is None or metric == "rss_growth_pct":
        return text
    reference = _summary(result, baseline, metric)
    if reference is None:
        return text
    ratio = better_ratio(
        summary.median, reference.median, lower_is_better=metric in LOWER_IS_BETTER
    )
    return f"{text} **{_fmt(ratio)}×**"


def _ceiling_cell(result: RunResult, key: str, metrics: tuple[str, ...]) -> str:
    parts = [_cell(_summary(result, key, m)) for m in metrics]
    return " / ".join(parts) if parts else ""


def _main_table(result: RunResult, opts: Options, keys: list[str]) -> list[str]:
    scale = opts.scale
    header = ["Metric", "WS ceiling", "gRPC ceiling", *(result.labels[k] for k in keys)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric, label, ws, grpc in _ROWS:
        cells = [_column_cell(result, k, metric) for k in keys]
        if all(c in ("—", "not available yet") for c in cells):
            continue
        title = label.format(
            sessions=f"{scale.sessions} sessions × {scale.jobs_per_session} jobs",
            jobs=f"{scale.sessions * scale.jobs_per_session:,}",
            events=f"{scale.events:,}",
            mib=f"{scale.chunk_bytes / 2**20:g}",
        )
        row = [title, _ceiling_cell(result, "ws-raw", ws), _ceiling_cell(result, "grpc-raw", grpc)]
        lines.append("| " + " | ".join([*row, *cells]) + " |")
    return lines


def _rss_table(result: RunResult, opts: Options, keys: list[str]) -> list[str]:
    rounds = [f"rss_r{i}_mib" for i in range(1, opts.scale.rss_rounds + 1)]
    with_rss = [k for k in keys if _summary(result, k, "rss_r1_mib") is not None]
    if not with_rss:
        return []
    header = [
        "Column",
        "start",
        *(f"round {i}" for i in range(1, len(rounds) + 1)),
        "growth r1→last",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in with_rss:
        cells = [_cell(_summary(result, key, m)) for m in ("rss_start_mib", *rounds)]
        growth = _cell(_summary(result, key, "rss_growth_pct"))
        lines.append("| " + " | ".join([result.labels[key], *cells, growth + " %"]) + " |")
    return lines


def _cpu_table(result: RunResult, keys: list[str]) -> list[str]:
    scenarios = [
        "handshake",
        "sequential",
        "concurrent",
        "idempotent",
        "events",
        "chunked",
        "runjob",
        "streamed",
        "ceilings",
    ]
    present = [s for s in scenarios if any(s in result.cpu.get(k, {}) for k in keys)]
    if not present:
        return []
    header = ["Column", *present]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in keys:
        cpu = result.cpu.get(key, {})
        if not cpu:
            continue
        cells = []
        for scenario in present:
            shares = cpu.get(scenario)
            if shares is None:
                cells.append("—")
                continue
            server = summarize(shares["server"]).median
            client = summarize(shares["client"]).median
            cells.append(f"{server:.0f} % / {client:.0f} %")
        lines.append("| " + " | ".join([result.labels[key], *cells]) + " |")
    return lines


def _goals(result: RunResult) -> list[str]:
    """Issue 7 goals, evaluated only where the figures exist."""

    def median(key: str, metric: str) -> float | None:
        summary = _summary(result, key, metric)
        return summary.median if summary else None

    def check(ours: float | None, ref: float | None, factor: float, lower: bool) -> str:
        if ours is None or ref is None:
            return "not measurable yet"
        ratio = better_ratio(ours, ref, lower_is_better=lower)
        verdict = "met" if ratio >= factor else "not met"
        return f"{verdict} ({_fmt(ratio)}× the reference)"

    lines = [
        "- Through the gateway with the published client, submit→accepted ≤ the reference: "
        + check(median("gw-client", "accepted_ms"), median("ref-client", "accepted_ms"), 1, True),
        "- Concurrent jobs/s ≥ 1.5× the reference: "
        + check(
            median("gw-client", "conc_jobs_per_s"),
            median("ref-client", "conc_jobs_per_s"),
            1.5,
            False,
        ),
        "- Events/s ≥ 2× the reference: "
        + check(
            median("gw-client", "events_per_s"), median("ref-client", "events_per_s"), 2, False
        ),
        "- Chunked result MiB/s ≥ 2× the reference: "
        + check(
            median("gw-client", "chunk_mb_per_s"), median("ref-client", "chunk_mb_per_s"), 2, False
        ),
    ]
    for key, label in (("gw-client", "gateway"), ("grpc", "JobService")):
        speedup = median(key, "replay_speedup")
        state = (
            "not measurable yet"
            if speedup is None
            else (f"{'met' if speedup >= 3 else 'not met'} ({_fmt(speedup)}×)")
        )
        lines.append(f"- Idempotent replay ≥ 3× faster than a first submit ({label}): {state}")
    for key, label in (("gw-lean", "gateway"), ("grpc", "JobService")):
        growth = median(key, "rss_growth_pct")
        state = (
            "not measurable yet"
            if growth is None
            else (f"{'met' if growth <= 10 else 'not met'} ({_fmt(growth)} %)")
        )
        lines.append(f"- Server RSS after the last round within 10 % of round 1 ({label}): {state}")
    ref_speedup = median("ref-client", "replay_speedup")
    ref_growth = median("ref-lean", "rss_growth_pct")
    if ref_speedup is not None or ref_growth is not None:
        lines.append(
            "- For context, the reference itself: replay speed-up "
            f"{_fmt(ref_speedup) if ref_speedup is not None else 'n/a'}×, RSS growth "
            f"{_fmt(ref_growth) if ref_growth is not None else 'n/a'} %."
        )
    return lines


#: Issue 14's goals: (figure, goal text, ours (key, metric), against (key, metric), how the
#: two compare, the bound). "ratio" is ours / against (met when ≤ bound: latency or CPU over
#: a ceiling or the reference); "better" is ``better_ratio`` (met when ≥ bound: > 1 is better).
_JOB_PATH_GOALS: tuple[tuple[str, str, tuple[str, str], tuple[str, str], str, float], ...] = (
    (
        "JobService SubmitJob p50 / grpc.aio unary ceiling",
        "≤ 1.2×",
        ("grpc", "accepted_ms"),
        ("grpc-raw", "grpc_unary_ms"),
        "ratio",
        1.2,
    ),
    (
        "JobService submit→result p50 (one call, RunJob) / unary ceiling",
        "≤ 1.5×",
        ("grpc", "run_result_ms"),
        ("grpc-raw", "grpc_unary_ms"),
        "ratio",
        1.5,
    ),
    (
        "JobService streamed submits jobs/s vs the reference's concurrent jobs/s (lean client)",
        "≥ 1.0×",
        ("grpc", "streamed_jobs_per_s"),
        ("ref-lean", "conc_jobs_per_s"),
        "better",
        1.0,
    ),
    (
        "gateway submit→accepted p50 vs reference (published client)",
        "≥ 1.0×",
        ("gw-client", "accepted_ms"),
        ("ref-client", "accepted_ms"),
        "better",
        1.0,
    ),
    (
        "gateway concurrent jobs/s (8×500) vs reference (published client)",
        "≥ 1.0×",
        ("gw-client", "conc_jobs_per_s"),
        ("ref-client", "conc_jobs_per_s"),
        "better",
        1.0,
    ),
    (
        "server CPU per echo job vs reference (scenario c, lean client)",
        "≤ 1.0×",
        ("gw-lean", "conc_cpu_us"),
        ("ref-lean", "conc_cpu_us"),
        "ratio",
        1.0,
    ),
)


def _job_path_goals(result: RunResult) -> list[str]:
    """Issue 14 goals as a table, each computed from this run's medians, or "not measured"
    when a figure it needs was not part of the run."""
    lines = [
        "| figure | goal | measured | verdict |",
        "|---|---|---|---|",
    ]
    for figure, goal, (key, metric), (other, other_metric), how, bound in _JOB_PATH_GOALS:
        ours, against = _summary(result, key, metric), _summary(result, other, other_metric)
        if ours is None or against is None:
            lines.append(f"| {figure} | {goal} | not measured in this run | — |")
            continue
        if how == "ratio":
            value = ours.median / against.median
            met = value <= bound
        else:
            value = better_ratio(
                ours.median, against.median, lower_is_better=metric in LOWER_IS_BETTER
            )
            met = value >= bound
        measured = f"{_fmt(value)}× ({_fmt(ours.median)} vs {_fmt(against.median)})"
        lines.append(f"| {figure} | {goal} | {measured} | {'met' if met else 'not met'} |")
    return lines


def render(result: RunResult, opts: Options, machine: dict[str, str], vers: dict[str, str]) -> str:
    """The whole ``RESULTS.md`` for one run."""
    keys = [k for k in result.labels if k not in ("ws-raw", "grpc-raw")]
    when = dt.datetime.fromtimestamp(result.started_at, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    scale = opts.scale
    out = [
        "# Benchmark results",
        "",
        f"Generated by `bench/` on {when} in {result.elapsed_s:.0f} s.",
        "",
        f"Command: `{opts.command}`",
        "",
        f"Mode: {'quick' if opts.quick else 'full'}, {opts.reps} repetitions, each on fresh "
        f"server processes; scenarios: {', '.join(opts.only)}.",
        "",
        "## Machine and versions",
        "",
        *(f"- {k}: {v}" for k, v in machine.items()),
        *(f"- {k}: {v}" for k, v in vers.items()),
        "",
        "The machine was shared with other workers during the run, so absolute figures are "
        "noisy; the ratios compare columns measured in the same run, interleaved repetition by "
        "repetition.",
        "",
        "## How to read",
        "",
        "- Each cell: median over repetitions (min–max). Per repetition, latencies are the p50 "
        "over all jobs of that repetition; rates are total work / wall time.",
        "- **N×** after a figure: how many times better than the reference column driven by the "
        "same kind of client (published client vs. published client, lean vs. lean; the gRPC "
        "column against the reference with the lean client). > 1 means faster (lower latency, "
        "higher rate) or leaner.",
        "- WebSocket figures use the `websockets` defaults the reference runtime and client use, "
        "including permessage-deflate; the push ceilings are also given with it off.",
        "- The ceiling columns show the same figure for the bare transport (raw `websockets`, "
        "raw grpc.aio) with messages of the same size and no runtime logic: the distance to the "
        "limit. Where two ceilings are shown they are listed in the table below.",
        f"- Sizes: {scale.handshakes} handshakes, {scale.sequential_jobs} sequential jobs, "
        f"{scale.sessions} sessions × {scale.jobs_per_session} jobs, {scale.idempotent_pairs} "
        f"idempotent pairs, {scale.events:,} events, {scale.chunk_bytes / 2**20:g} MiB result in "
        f"48 KiB chunks (base64 on the JSON wire), {scale.rss_rounds} memory rounds of "
        f"{scale.rss_jobs_per_round} jobs + {scale.rss_events_per_round} events + one streamed "
        f"result of {scale.rss_report_bytes_per_round / 2**20:g} MiB.",
        "",
        "## Results",
        "",
        *_main_table(result, opts, keys),
        "",
    ]
    if result.unavailable:
        out += ["## Not available yet", ""]
        out += [f"- {result.labels[k]}: {reason}" for k, reason in result.unavailable.items()]
        out += [""]
    rss = _rss_table(result, opts, keys)
    if rss:
        out += ["## Server memory over rounds (VmRSS, MiB)", "", *rss, ""]
    ceiling_lines = []
    for key in ("ws-raw", "grpc-raw"):
        for metric, values in result.values.get(key, {}).items():
            note = _CEILING_NOTES.get(metric, "")
            ceiling_lines.append(f"| {metric} | {_cell(summarize(values))} | {note} |")
    if ceiling_lines:
        out += ["## Transport ceilings", "", "| Ceiling | Value | What |", "|---|---|---|"]
        out += [*ceiling_lines, ""]
    cpu = _cpu_table(result, [*keys, "ws-raw", "grpc-raw"])
    if cpu:
        out += [
            "## CPU share during each scenario (server % / load generator %)",
            "",
            "100 % is one core. A load generator near 100 % means the client, not the server, "
            "set the pace.",
            "",
            *cpu,
            "",
        ]
    out += ["## Issue 7 goals", "", *_goals(result), ""]
    out += ["## Issue 14 goals", "", *_job_path_goals(result), ""]
    out += cluster_sections(result)
    if result.errors:
        out += ["## Failures and skips", ""]
        for key, messages in result.errors.items():
            out += [f"- {result.labels.get(key, key)}: {_one_line(m)}" for m in messages]
        out += [""]
    return "\n".join(out)
