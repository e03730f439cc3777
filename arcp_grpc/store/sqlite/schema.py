"""The SQLite store's schema, its version, and the migrations between versions.

Version 2 dropped the partial index of unfinished jobs. It cost a page write
in both commits of every job (5-8 % of the server's CPU per job through
the gateway) to serve one query, at startup. Recovery instead scans jobs
from a persisted rowid mark, `recovery_from`, kept at or below the first
job not known to have finished (see `SQLiteStore`); rowids only grow, since
the newest job is never deleted (`SQLiteStore.purge_jobs` keeps it).

Version 3 keys the credential ledger by (credential_id, version): one row per
minted value, so a rotation adds a row and retires the old one instead of
overwriting it, and a value whose revocation failed is never forgotten
(§9.8.2, §14). `minted_at` tells operators how long a value has been live.

Version 4 lets finished jobs be purged and their space given back:
the file uses `auto_vacuum=INCREMENTAL`, which SQLite takes only before the
first table exists or through a `VACUUM` (the migration runs one: it rewrites
the file once and needs about its size free beside it), and credentials get an
index by job so a purge finds a job's credentials without a scan. A new file
takes the setting when the store connects, before WAL mode writes its header.
"""

from __future__ import annotations

import sqlite3

from arcp_grpc.store.protocol import StoreUnavailable

__all__ = ["SCHEMA_VERSION", "prepare", "recovery_mark"]

SCHEMA_VERSION = "4"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    agent TEXT NOT NULL,
    status INTEGER NOT NULL,
    created_at REAL NOT NULL,
    completed_at REAL,
    trace_id TEXT NOT NULL,
    parent_job_id TEXT NOT NULL,
    summary BLOB NOT NULL,
    accepted BLOB NOT NULL,
    outcome BLOB,
    last_seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_principal ON jobs (principal, created_at DESC, job_id DESC);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    blob BLOB NOT NULL,
    sealed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    job_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (principal, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS credentials (
    credential_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    provisioner TEXT NOT NULL,
    sealed_value BLOB NOT NULL,
    retired INTEGER NOT NULL DEFAULT 0,
    minted_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    revoked_at REAL,
    PRIMARY KEY (credential_id, version)
) WITHOUT ROWID;
"""
# Made by the version 4 migration on older files; with the schema on new ones.
_CREDENTIALS_BY_JOB = "CREATE INDEX IF NOT EXISTS credentials_by_job ON credentials (job_id)"


def prepare(conn: sqlite3.Connection) -> None:
    """Create the schema, or bring an older one up to date (one transaction per step)."""
    conn.executescript(SCHEMA)
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
    )
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('recovery_from', '1')")
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    if version == "1":
        _v1_to_v2(conn)
        version = "2"
    if version == "2":
        _v2_to_v3(conn)
        version = "3"
    if version == "3":
        _v3_to_v4(conn)
    elif version != SCHEMA_VERSION:
        raise StoreUnavailable(f"store schema version {version} is not {SCHEMA_VERSION}")
    conn.execute(_CREDENTIALS_BY_JOB)


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    first = conn.execute("SELECT MIN(rowid) FROM jobs WHERE completed_at IS NULL").fetchone()[0]
    if first is None:
        first = conn.execute("SELECT COALESCE(MAX(rowid), 0) + 1 FROM jobs").fetchone()[0]
    conn.execute("DROP INDEX IF EXISTS jobs_unfinished")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'recovery_from'", (str(first),))
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.execute("COMMIT")


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    # `CREATE TABLE IF NOT EXISTS` above kept the version 2 table: rebuild it.
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("ALTER TABLE credentials RENAME TO credentials_v2")
    conn.execute(SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS credentials") :])
    conn.execute(
        "INSERT INTO credentials (credential_id, version, job_id, provisioner, sealed_value,"
        " revoked_at) SELECT credential_id, 0, job_id, provisioner, sealed_value, revoked_at"
        " FROM credentials_v2"
    )
    conn.execute("DROP TABLE credentials_v2")
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.execute("COMMIT")


def _v3_to_v4(conn: sqlite3.Connection) -> None:
    """`credentials_by_job` is made in `prepare`; the file is rewritten
    once with incremental auto-vacuum (a `VACUUM` runs outside any transaction). In WAL
    mode the rewrite passes through the log, so the log is truncated right after."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")


def recovery_mark(conn: sqlite3.Connection) -> int:
    """The rowid from which unfinished jobs may exist (a lower bound)."""
    return int(conn.execute("SELECT value FROM meta WHERE key = 'recovery_from'").fetchone()[0])
