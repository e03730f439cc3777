"""The one listing builder both stores use (§6.6): the same statement on SQLite and
PostgreSQL, parameters numbered in the driver's style and in the order they are passed."""

from __future__ import annotations

import re

from arcp_grpc.store import JobQuery, JobRow
from arcp_grpc.store.rows import encode_cursor, job_page, list_jobs_statement


def _row(job_id: str, created_at: float) -> JobRow:
    return JobRow(job_id, "alice", "echo@1.0.0", 3, created_at, "1" * 32, "", b"s", b"a")


def test_both_styles_write_one_statement_with_the_same_parameters() -> None:
    cursor = encode_cursor(_row("job_b", 20.0))
    query = JobQuery("alice", statuses=(2, 3), agent="echo", created_after=5.0, cursor=cursor)
    qmark, qargs = list_jobs_statement(query, lambda _n: "?")
    numbered, nargs = list_jobs_statement(query, lambda n: f"${n}")
    assert qargs == nargs == ["alice", 2, 3, len("echo@"), "echo@", 5.0, 20.0, "job_b", 101]
    assert re.sub(r"\$\d+", "?", numbered) == qmark
    assert re.findall(r"\$(\d+)", numbered) == [str(n) for n in range(1, len(nargs) + 1)]


def test_a_versioned_agent_matches_exactly() -> None:
    sql, args = list_jobs_statement(JobQuery("alice", agent="echo@1.0.0"), lambda _n: "?")
    assert "agent = ?" in sql
    assert args == ["alice", "echo@1.0.0", 101]


def test_the_extra_row_says_whether_a_next_page_exists() -> None:
    rows = [_row(f"job_{i}", 100.0 - i) for i in range(3)]
    full = job_page(rows, 2)
    assert full.jobs == tuple(rows[:2])
    assert full.next_cursor == encode_cursor(rows[1])
    assert job_page(rows[:2], 2).next_cursor == ""
