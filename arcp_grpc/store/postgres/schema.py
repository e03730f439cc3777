"""The PostgreSQL store's schema, its recorded version, and the migrations.

Several nodes may start at once against an empty database, so the schema is
prepared under a transaction-scoped advisory lock: the first creates it, the
others find it made. The version lives in `arcp_meta`; a database written by
a newer runtime is refused rather than guessed at.

Beside what the SQLite schema holds, a cluster needs ownership made explicit
(DESIGN.md, "Storage and scale-out"): `jobs.owner_node` names the node that
runs a job, `jobs.cancel_reason` is a durable cancel request for its owner,
and `nodes` holds each node's heartbeat and whether a survivor has declared it
dead (which fences it: a fenced node may no longer finish or heartbeat).
Sessions live here too, so any node can resume one: `sessions` (token digest,
features, the attach generation and the node holding the transport),
`session_frames` (each sequenced frame, recorded before it is sent) and
`session_jobs` (the jobs a session follows and has not seen end).

Version 2 keys the credential ledger by (credential_id, version), one row per
minted value (see `arcp_grpc.store.sqlite.schema`, version 3, for why). The
migration keeps every existing row as version 0; a node still running
version 1 code keeps working meanwhile (its inserts get the defaults).

The retention purge (issue 15) finds finished jobs by `jobs_finished` and their
credentials by `credentials_by_job`; both are created if missing, so the
version does not change for them (an older node ignores them). So are
`jobs_running_by_principal` and `sessions_by_principal`, which count what a
principal holds on every node when a job or a session takes a slot under its
cap (DESIGN.md "Quotas").

Remote workers across nodes (issue 23, `arcp_grpc.store.postgres.handoffs`) add
`node_workers` (the workers each node holds) and `job_handoffs` (a job created by one
node for another to run, until that one claims it); like the indexes above they are
created if missing and leave the version alone (an older node never reads them).

The group commit's server-side function (`batch_function`) is
created or replaced with the schema; its name carries its own version, so it too
leaves the schema's alone.

PostgreSQL gives the space of deleted rows back to its tables through
autovacuum: the files do not shrink, but the pages are reused, so they stop
growing once the purge keeps pace.
"""

from __future__ import annotations

import asyncpg

from arcp_grpc.store.postgres.batch_function import BATCH_FUNCTION
from arcp_grpc.store.protocol import StoreUnavailable

__all__ = ["SCHEMA_VERSION", "prepare"]

SCHEMA_VERSION = "2"
_LOCK = 0x41524350  # "ARCP": serialises schema preparation across nodes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS arcp_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    agent TEXT NOT NULL,
    status INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    completed_at DOUBLE PRECISION,
    trace_id TEXT NOT NULL,
    parent_job_id TEXT NOT NULL,
    summary BYTEA NOT NULL,
    accepted BYTEA NOT NULL,
    outcome BYTEA,
    last_seq INTEGER NOT NULL DEFAULT 0,
    owner_node TEXT NOT NULL,
    cancel_reason TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_principal ON jobs (principal, created_at DESC, job_id DESC);
CREATE INDEX IF NOT EXISTS jobs_running ON jobs (owner_node) WHERE completed_at IS NULL;
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    blob BYTEA NOT NULL,
    sealed BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS idempotency (
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint BYTEA NOT NULL,
    job_id TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE TABLE IF NOT EXISTS credentials (
    credential_id TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    job_id TEXT NOT NULL,
    provisioner TEXT NOT NULL,
    sealed_value BYTEA NOT NULL,
    retired BOOLEAN NOT NULL DEFAULT FALSE,
    minted_at DOUBLE PRECISION NOT NULL DEFAULT extract(epoch FROM now()),
    revoked_at DOUBLE PRECISION,
    PRIMARY KEY (credential_id, version)
);
CREATE INDEX IF NOT EXISTS credentials_live ON credentials (job_id) WHERE revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS credentials_by_job ON credentials (job_id);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (completed_at) WHERE completed_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    profile INTEGER NOT NULL,
    features TEXT NOT NULL,
    token_digest BYTEA NOT NULL,
    -- The token the last resume was made with, valid until previous_token_until (epoch
    -- seconds) or until the client used the resumed session (then 0): DESIGN.md.
    previous_token_digest BYTEA NOT NULL DEFAULT ''::bytea,
    previous_token_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    detached_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL DEFAULT extract(epoch FROM now())
);
CREATE INDEX IF NOT EXISTS sessions_detached ON sessions (detached_at)
    WHERE detached_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS sessions_by_node ON sessions (node_id);
CREATE INDEX IF NOT EXISTS sessions_by_principal ON sessions (principal);
CREATE INDEX IF NOT EXISTS jobs_running_by_principal ON jobs (principal)
    WHERE completed_at IS NULL;
CREATE TABLE IF NOT EXISTS session_frames (
    session_id TEXT NOT NULL REFERENCES sessions ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    job_seq INTEGER NOT NULL,
    frame BYTEA NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS session_jobs (
    session_id TEXT NOT NULL REFERENCES sessions ON DELETE CASCADE,
    job_id TEXT NOT NULL,
    submitted BOOLEAN NOT NULL,
    after_seq INTEGER NOT NULL,
    done BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (session_id, job_id)
);
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    state TEXT NOT NULL DEFAULT 'alive' CHECK (state IN ('alive', 'left', 'dead'))
);
CREATE TABLE IF NOT EXISTS node_workers (
    node_id TEXT PRIMARY KEY,
    listing BYTEA NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS job_handoffs (
    job_id TEXT PRIMARY KEY REFERENCES jobs ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    input BYTEA NOT NULL,
    max_runtime_sec INTEGER
);
"""

_V1_TO_V2 = """
ALTER TABLE credentials
    ADD COLUMN version INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN retired BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN minted_at DOUBLE PRECISION NOT NULL DEFAULT extract(epoch FROM now()),
    DROP CONSTRAINT credentials_pkey,
    ADD PRIMARY KEY (credential_id, version);
UPDATE arcp_meta SET value = '2' WHERE key = 'schema_version';
"""


async def prepare(conn: asyncpg.Connection) -> None:
    """Create the schema, or check that an existing one is this runtime's version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        await conn.execute(_SCHEMA)
        await conn.execute(BATCH_FUNCTION)
        await conn.execute(
            "INSERT INTO arcp_meta (key, value) VALUES ('schema_version', $1)"
            " ON CONFLICT (key) DO NOTHING",
            SCHEMA_VERSION,
        )
        version = await conn.fetchval("SELECT value FROM arcp_meta WHERE key = 'schema_version'")
        if version == "1":
            await conn.execute(_V1_TO_V2)
            version = SCHEMA_VERSION
    if version != SCHEMA_VERSION:
        raise StoreUnavailable(
            f"the PostgreSQL store has schema version {version}; this runtime knows"
            f" {SCHEMA_VERSION} (upgrade the runtime on every node)"
        )
