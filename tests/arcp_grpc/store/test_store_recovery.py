"""Finding the jobs a dead process left unfinished, without an index on them.

Schema version 2 keeps a rowid mark (`recovery_from`) at or below the first
job not known to have finished; a restart scans from there. Version 1 stores
(with the old partial index) are migrated in place.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from arcp_grpc.store import JobRow, StoreUnavailable
from arcp_grpc.store.sqlite.schema import SCHEMA, SCHEMA_VERSION
from arcp_grpc.store.sqlite.store import SQLiteStore


def _row(job_id: str) -> JobRow:
    return JobRow(job_id, "alice", "echo@1.0.0", 1, time.time(), "1" * 32, "", b"s", b"a")


async def _open(path: Path) -> SQLiteStore:
    store = SQLiteStore(path)
    await store.open()
    return store


def _meta(path: Path, key: str) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])


async def test_a_restart_finds_exactly_the_unfinished_jobs(tmp_path: Path) -> None:
    path = tmp_path / "arcp.sqlite3"
    store = await _open(path)
    left_running = {"job_0010", "job_0590"}
    for index in range(600):  # ~1,200 commits: the mark is saved at several checkpoints
        job_id = f"job_{index:04d}"
        await store.create_job(_row(job_id), None, [], time.time())
        if job_id not in left_running:
            await store.finish_job(
                job_id, status=3, outcome=b"o", summary=b"s", completed_at=time.time(), last_seq=0
            )
    await store.flush()
    # The first unfinished job holds the mark back, however many finished after it.
    assert int(_meta(path, "recovery_from")) <= 11
    await store.close()

    again = await _open(path)
    try:
        assert {row.job_id for row in await again.interrupted_jobs()} == left_running
        for job_id in left_running:  # what the runtime's recovery does
            await again.finish_job(
                job_id, status=4, outcome=b"o", summary=b"s", completed_at=time.time(), last_seq=0
            )
    finally:
        await again.close()
    assert int(_meta(path, "recovery_from")) == 601  # a clean stop: nothing left to scan

    third = await _open(path)
    try:
        assert await third.interrupted_jobs() == []
    finally:
        await third.close()


async def test_a_version_1_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "arcp.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
        conn.execute("CREATE INDEX jobs_unfinished ON jobs (status) WHERE completed_at IS NULL")
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
        for index, done in enumerate([True, False, True]):
            conn.execute(
                "INSERT INTO jobs (job_id, principal, agent, status, created_at, completed_at,"
                " trace_id, parent_job_id, summary, accepted) VALUES (?, 'alice', 'echo@1.0.0',"
                " 1, ?, ?, ?, '', x'00', x'00')",
                (f"job_{index}", time.time(), time.time() if done else None, "1" * 32),
            )
    store = await _open(path)
    try:
        assert [row.job_id for row in await store.interrupted_jobs()] == ["job_1"]
    finally:
        await store.close()
    assert _meta(path, "schema_version") == SCHEMA_VERSION == "4"
    with sqlite3.connect(path) as conn:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "jobs_unfinished" not in indexes
        assert "credentials_by_job" in indexes
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # version 4: incremental
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_an_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "arcp.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '9')")
    with pytest.raises(StoreUnavailable, match="schema version 9"):
        await SQLiteStore(path).open()


async def test_a_version_2_credential_ledger_is_migrated(tmp_path: Path) -> None:
    """Version 3 keys the ledger by (credential_id, version); an unrevoked row of a
    version 2 store stays due, as version 0 (§14: nothing owed is forgotten)."""
    path = tmp_path / "arcp.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA[: SCHEMA.index("CREATE TABLE IF NOT EXISTS credentials")])
        conn.execute(
            "CREATE TABLE credentials (credential_id TEXT PRIMARY KEY, job_id TEXT NOT NULL,"
            " provisioner TEXT NOT NULL, sealed_value BLOB NOT NULL, revoked_at REAL)"
        )
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '2')")
        conn.execute("INSERT INTO meta (key, value) VALUES ('recovery_from', '1')")
        conn.execute("INSERT INTO credentials VALUES ('cred_1', 'job_1', 'dev', x'01', NULL)")
        conn.execute("INSERT INTO credentials VALUES ('cred_2', 'job_1', 'dev', x'02', 1.0)")
    store = await _open(path)
    try:
        (entry,) = await store.live_credentials()
        assert (entry.credential_id, entry.version, entry.retired) == ("cred_1", 0, False)
        assert entry.sealed_value == b"\x01"
        await store.mark_revoked("cred_1", 0)
        assert await store.live_credentials() == []
    finally:
        await store.close()
    assert _meta(path, "schema_version") == "4"
