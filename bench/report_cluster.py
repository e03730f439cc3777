"""The PostgreSQL part of ``RESULTS.md`` (issue 21): what a job costs the database beside
the SQLite node, the cluster as it grows, and issue 21's goals, each from the run's medians.

Pure: it reads a `RunResult` and renders Markdown lines (`bench.report` places them).
"""

from __future__ import annotations

import math
import os

from bench.runner import RunResult
from bench.stats import summarize

__all__ = ["cluster_sections"]

SQLITE = "gw-lean"
PG1 = "pg1-lean"
DURABLE = "pg1d-lean"
_NODES = (("pg1-lean", 1), ("pg2-lean", 2), ("pg3-lean", 3))

#: (metric, row label); for the SQLite column the node's CPU is all of it (its store is inside).
_WORK_ROWS = (
    ("seq_db_round_trips", "b. database round trips per job"),
    ("seq_db_statements", "b. statements per job"),
    ("seq_db_commits", "b. commits per job"),
    ("seq_node_cpu_us", "b. node CPU per job, µs"),
    ("seq_db_cpu_us", "b. database CPU per job, µs"),
    ("conc_db_round_trips", "c. database round trips per job"),
    ("conc_db_statements", "c. statements per job"),
    ("conc_db_commits", "c. commits per job (group commit shares them)"),
    ("conc_node_cpu_us", "c. node CPU per job, µs"),
    ("conc_db_cpu_us", "c. database CPU per job, µs"),
)
_SQLITE_EQUIVALENT = {"seq_node_cpu_us": "seq_cpu_us", "conc_node_cpu_us": "conc_cpu_us"}


def _median(result: RunResult, key: str, metric: str) -> float | None:
    values = result.values.get(key, {}).get(metric)
    return summarize(values).median if values else None


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _work_table(result: RunResult, keys: list[str]) -> list[str]:
    lines = [
        "| per echo job | " + " | ".join(result.labels[k] for k in keys) + " |",
        "|" + "---|" * (len(keys) + 1),
    ]
    for metric, label in _WORK_ROWS:
        cells = []
        for key in keys:
            own = metric if key != SQLITE else _SQLITE_EQUIVALENT.get(metric, "")
            cells.append(_fmt(_median(result, key, own)) if own else "in the node")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _saturation(nodes: int, node_cores: float, db_cores: float, client_cores: float) -> str:
    """What bounds a row: the machine when its cores are all busy, else whichever part is
    nearest its own limit (a node and the load generator are one process each, one core)."""
    cores = len(os.sched_getaffinity(0))
    if node_cores + db_cores + client_cores >= 0.9 * cores:
        return f"the machine ({cores} cores busy)"
    parts = {
        "node": node_cores / nodes,
        "database": db_cores / cores,
        "load generator": client_cores,
    }
    return max(parts, key=lambda p: parts[p])


def _scale_table(result: RunResult) -> list[str]:
    lines = [
        "| nodes | concurrent jobs/s | node CPU per job, µs | database CPU per job, µs"
        " | cores busy: nodes / database / load generator | bound by |",
        "|---|---|---|---|---|---|",
    ]
    rows = 0
    for key, nodes in _NODES:
        rate = _median(result, key, "conc_jobs_per_s")
        node_us, db_us = (
            _median(result, key, "conc_node_cpu_us"),
            _median(result, key, "conc_db_cpu_us"),
        )
        shares = result.cpu.get(key, {}).get("concurrent")
        if rate is None or node_us is None or db_us is None or shares is None:
            continue
        node_cores, db_cores = rate * node_us / 1e6, rate * db_us / 1e6
        client_cores = summarize(shares["client"]).median / 100
        bound = _saturation(nodes, node_cores, db_cores, client_cores)
        lines.append(
            f"| {nodes} | {_fmt(rate)} | {_fmt(node_us)} | {_fmt(db_us)} | {node_cores:.2f} /"
            f" {db_cores:.2f} / {client_cores:.2f} | {bound} |"
        )
        rows += 1
    return lines if rows else []


#: Issue 21's goals: (figure, goal, metric, how: "ratio" to the SQLite node's same metric,
#: "inverse" its rate over ours, or "absolute"; the bound, met when ≤ it unless "min").
_GOALS = (
    (
        "CPU per echo job (node + database) / SQLite node, scenario c",
        "≤ 1.5×",
        "conc_cpu_us",
        "ratio",
        1.5,
    ),
    (
        "database round trips per echo job through a session, scenario b",
        "≤ 3",
        "seq_db_round_trips",
        "absolute",
        3.0,
    ),
    ("commits per job under concurrency, scenario c", "≤ 1", "conc_db_commits", "absolute", 1.0),
    ("concurrent jobs/s / SQLite node, scenario c", "≥ 0.7×", "conc_jobs_per_s", "min-ratio", 0.7),
    ("sequential submit→result p50 / SQLite node, scenario b", "≤ 1.5×", "result_ms", "ratio", 1.5),
)


def _goal_cell(result: RunResult, key: str, metric: str, how: str, bound: float) -> str:
    ours = _median(result, key, metric)
    if ours is None:
        return "not measured"
    if how == "absolute":
        return f"{_fmt(ours)} ({'met' if ours <= bound else 'not met'})"
    sqlite = _median(result, SQLITE, metric)
    if sqlite is None or sqlite <= 0:
        return f"{_fmt(ours)} (no SQLite figure)"
    ratio = ours / sqlite
    met = ratio >= bound if how == "min-ratio" else ratio <= bound
    return f"{ratio:.2f}× ({_fmt(ours)} vs {_fmt(sqlite)}, {'met' if met else 'not met'})"


def _goals(result: RunResult) -> list[str]:
    keys = [k for k in (PG1, DURABLE) if k in result.labels]
    lines = [
        "| figure | goal | " + " | ".join(result.labels[k] for k in keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for figure, goal, metric, how, bound in _GOALS:
        cells = [_goal_cell(result, k, metric, how, bound) for k in keys]
        lines.append(f"| {figure} | {goal} | " + " | ".join(cells) + " |")
    return lines


def cluster_sections(result: RunResult) -> list[str]:
    """The PostgreSQL sections, or nothing when the run had no cluster column."""
    pg = [k for k in result.labels if k.startswith("pg") and k in result.values]
    if not pg:
        return []
    keys = ([SQLITE] if SQLITE in result.values else []) + pg
    out = [
        "## PostgreSQL: the database's work per job (issue 21)",
        "",
        "Read around each timed section from `pg_stat_statements` on the server the harness"
        " started (`bench/pgstats.py`): a round trip is one statement call, `BEGIN` and"
        " `COMMIT` included; commits are the commit records the write-ahead log holds between"
        " the readings (`pg_waldump`: an explicit `BEGIN`…`COMMIT` or one batch-function call"
        " on its own; the nodes' heartbeats included). CPU from `/proc`: the nodes' processes,"
        " and the PostgreSQL server's (postmaster and every backend). On SQLite the store is"
        " inside the node, so its node CPU is all of it.",
        "",
        *_work_table(result, keys),
        "",
    ]
    scale = _scale_table(result)
    if scale:
        out += [
            "## PostgreSQL: the cluster as it grows (scenario c, fsync off)",
            "",
            "Cores busy = jobs/s × CPU per job (the load generator's from its own process"
            " time). On this machine every node, the database and the load generator share"
            " its cores.",
            "",
            *scale,
            "",
        ]
    out += ["## Issue 21 goals", "", *_goals(result), ""]
    return out
