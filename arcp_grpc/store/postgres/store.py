"""The cluster store: PostgreSQL shared by several core nodes (DESIGN.md, scale-out).

The same `Store` operations as `SQLiteStore`, plus what a cluster needs:
- a job row names the node that runs it (`owner_node`); a node finishes only
  the jobs it owns, so once a survivor has taken a dead node's jobs the dead
  node (if it was only slow) cannot overwrite their end;
- events are read by sequence from the database; `LISTEN arcp_events` wakes
  followers of jobs running on other nodes early (`wait_job`), and a poll
  bounds the wait when a notification is lost;
- a cancel for a job running elsewhere is a durable request on the job row
  plus a notification to its owner, which also polls for requests;
- each node heartbeats in `nodes`; a survivor declares a node dead with one
  conditional update and takes its running jobs in the same transaction, so
  exactly one survivor ends each.

Writes and group commit are `arcp_grpc.store.postgres.writer`'s; reads use a small
connection pool beside the writer's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from arcp_grpc.errors import InternalError
from arcp_grpc.store.postgres.schema import prepare as prepare_schema
from arcp_grpc.store.postgres.writer import EVENTS_CHANNEL, PostgresWriter
from arcp_grpc.store.protocol import (
    CredentialEntry,
    EventRow,
    IdempotencyClaim,
    IdempotencyConflict,
    JobChanges,
    JobPage,
    JobQuery,
    JobRow,
    SessionFollow,
    SessionFrame,
    SessionRow,
    StoreUnavailable,
    UnrevokedCredential,
)
from arcp_grpc.store.rows import JOB_COLUMNS, decode_cursor, encode_cursor, job_values

__all__ = ["PostgresStore"]

log = logging.getLogger("arcp_grpc.postgres_store")

CANCEL_CHANNEL = "arcp_cancel"
SESSIONS_CHANNEL = "arcp_sessions"  # "NODE SESSION_ID": NODE lost the session to another
_REASON_IN_NOTICE = 2000  # characters; the row holds the whole reason for the poll


class PostgresStore:
    """`Store` on a PostgreSQL database shared by the nodes of a cluster."""

    shared = True  # other nodes run jobs in this store too

    def __init__(self, dsn: str, *, node_id: str, label: str = "", batch_limit: int = 2048) -> None:
        self._dsn = dsn
        self.node_id = node_id
        self._label = label or node_id
        self._batch_limit = batch_limit
        self._writer: PostgresWriter | None = None
        self._write_conn: asyncpg.Connection | None = None
        self._listen_conn: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._followers: dict[str, set[_JobChanges]] = {}
        self._on_cancel: Callable[[str, str], None] = lambda _job_id, _reason: None
        self._on_session_lost: Callable[[str], None] = lambda _session_id: None

    # -- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        try:
            self._write_conn = await asyncpg.connect(self._dsn)
            await prepare_schema(self._write_conn)
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=4)
            self._listen_conn = await asyncpg.connect(self._dsn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self._close_connections()
            raise StoreUnavailable(f"cannot use the PostgreSQL store: {exc}") from None
        await self._listen_conn.add_listener(EVENTS_CHANNEL, self._on_events_notified)
        await self._listen_conn.add_listener(CANCEL_CHANNEL, self._on_cancel_notified)
        await self._write_conn.execute(
            "INSERT INTO nodes (node_id, label) VALUES ($1, $2)", self.node_id, self._label
        )
        await self._listen_conn.add_listener(SESSIONS_CHANNEL, self._on_session_notified)
        self._writer = PostgresWriter(self._write_conn, self.node_id, batch_limit=self._batch_limit)

    async def close(self) -> None:
        if self._writer is None:
            return
        await self._writer.stop()
        self._writer = None
        await self._close_connections()
        for followers in list(self._followers.values()):
            for follower in list(followers):
                follower.notify()

    async def _close_connections(self) -> None:
        for conn in (self._write_conn, self._listen_conn):
            if conn is not None and not conn.is_closed():
                await conn.close()
        if self._pool is not None:
            await self._pool.close()

    # -- the writer ------------------------------------------------------

    def set_commit_listener(self, listener: Callable[[Sequence[EventRow]], None]) -> None:
        self._writes().set_commit_listener(listener)

    def set_failure_listener(self, listener: Callable[[], None]) -> None:
        self._writes().set_failure_listener(listener)

    def write_backlog(self) -> tuple[int, int]:
        return self._writes().backlog()

    def append_event(self, event: EventRow) -> None:
        self._writes().append_event(event)

    def _writes(self) -> PostgresWriter:
        assert self._writer is not None, "store is not open"
        return self._writer

    async def flush(self) -> None:
        await self._writes().flush()

    # -- writes ----------------------------------------------------------

    async def key_check(self, sealed: bytes) -> bytes:
        async def op(conn: asyncpg.Connection) -> bytes:
            await conn.execute(
                "INSERT INTO arcp_meta (key, value) VALUES ('key_check', $1)"
                " ON CONFLICT (key) DO NOTHING",
                sealed.hex(),
            )
            stored = await conn.fetchval("SELECT value FROM arcp_meta WHERE key = 'key_check'")
            return bytes.fromhex(stored)

        result: bytes = await self._writes().write(op)
        return result

    async def create_job(
        self,
        job: JobRow,
        claim: IdempotencyClaim | None,
        credentials: Sequence[CredentialEntry],
        now: float,
    ) -> None:
        node = self.node_id

        async def op(conn: asyncpg.Connection) -> None:
            if claim is not None:
                await conn.execute(
                    "DELETE FROM idempotency WHERE principal = $1 AND key = $2"
                    " AND expires_at <= $3",
                    claim.principal,
                    claim.key,
                    now,
                )
                # The unique key decides between concurrent submits on any node (§7.2):
                # a second inserter waits for the first's commit, then finds the row.
                won = await conn.fetchval(
                    "INSERT INTO idempotency (principal, key, fingerprint, job_id, expires_at)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING job_id",
                    claim.principal,
                    claim.key,
                    claim.fingerprint,
                    job.job_id,
                    claim.expires_at,
                )
                if won is None:
                    holder = await conn.fetchrow(
                        "SELECT job_id, fingerprint FROM idempotency"
                        " WHERE principal = $1 AND key = $2",
                        claim.principal,
                        claim.key,
                    )
                    assert holder is not None
                    raise IdempotencyConflict(holder["job_id"], holder["fingerprint"])
            await conn.execute(
                f"INSERT INTO jobs ({JOB_COLUMNS}, owner_node)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                *job_values(job),
                node,
            )
            if credentials:
                await _insert_credentials(conn, credentials)

        await self._writes().write(op)

    async def finish_job(
        self,
        job_id: str,
        status: int,
        outcome: bytes,
        summary: bytes,
        completed_at: float,
        last_seq: int,
        *,
        shared: bool = False,
    ) -> None:
        """Only the owner finishes a job: once a survivor took it over, a fenced node's
        late end is dropped (the survivor's stands). `shared` needs nothing here: the
        writer groups whatever arrives while a commit is in flight."""
        node = self.node_id

        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE jobs SET status = $1, outcome = $2, summary = $3, completed_at = $4,"
                " last_seq = $5 WHERE job_id = $6 AND owner_node = $7 AND completed_at IS NULL",
                status,
                outcome,
                summary,
                completed_at,
                last_seq,
                job_id,
                node,
            )

        await self._writes().write(op, touches=job_id)

    async def mark_revoked(self, credential_id: str, version: int) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE credentials SET revoked_at = extract(epoch FROM now())"
                " WHERE credential_id = $1 AND version = $2",
                credential_id,
                version,
            )

        await self._writes().write(op)

    async def record_credentials(self, entries: Sequence[CredentialEntry]) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await _insert_credentials(conn, entries)

        await self._writes().write(op)

    async def rotate_credential(self, old_id: str, old_version: int, new: CredentialEntry) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE credentials SET retired = TRUE WHERE credential_id = $1 AND version = $2",
                old_id,
                old_version,
            )
            await _insert_credentials(conn, [new])

        await self._writes().write(op)

    async def purge_claims(self, now: float) -> int:
        async def op(conn: asyncpg.Connection) -> int:
            status = await conn.execute("DELETE FROM idempotency WHERE expires_at <= $1", now)
            return int(status.split()[-1])

        purged: int = await self._writes().write(op)
        return purged

    # -- reads -----------------------------------------------------------

    def _reads(self) -> asyncpg.Pool:
        assert self._pool is not None, "store is not open"
        return self._pool

    async def find_claim(self, principal: str, key: str, now: float) -> tuple[str, bytes] | None:
        row = await self._reads().fetchrow(
            "SELECT job_id, fingerprint FROM idempotency"
            " WHERE principal = $1 AND key = $2 AND expires_at > $3",
            principal,
            key,
            now,
        )
        return None if row is None else (row["job_id"], row["fingerprint"])

    async def get_job(self, job_id: str) -> JobRow | None:
        row = await self._reads().fetchrow(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = $1", job_id
        )
        return None if row is None else JobRow(*row)

    async def list_jobs(self, query: JobQuery) -> JobPage:
        where = ["principal = $1"]
        args: list[Any] = [query.principal]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if query.statuses:
            where.append(f"status = ANY({arg(list(query.statuses))}::int[])")
        if query.agent:
            if "@" in query.agent:
                where.append(f"agent = {arg(query.agent)}")
            else:
                where.append(f"starts_with(agent, {arg(query.agent + '@')})")
        if query.created_after is not None:
            where.append(f"created_at > {arg(query.created_after)}")
        if query.cursor:
            created_at, job_id = decode_cursor(query.cursor)
            where.append(f"(created_at, job_id) < ({arg(created_at)}, {arg(job_id)})")
        sql = (
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)}"
            f" ORDER BY created_at DESC, job_id DESC LIMIT {arg(query.limit + 1)}"
        )
        rows = [JobRow(*r) for r in await self._reads().fetch(sql, *args)]
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        cursor = encode_cursor(rows[-1]) if more and rows else ""
        return JobPage(tuple(rows), cursor)

    async def read_events(self, job_id: str, after_seq: int, limit: int) -> list[EventRow]:
        rows = await self._reads().fetch(
            "SELECT seq, blob, sealed FROM events WHERE job_id = $1 AND seq > $2"
            " ORDER BY seq LIMIT $3",
            job_id,
            after_seq,
            limit,
        )
        return [EventRow(job_id, r["seq"], r["blob"], r["sealed"]) for r in rows]

    async def interrupted_jobs(self) -> list[JobRow]:
        """A node's id is new with each process, so a restart finds nothing of its own:
        a dead process's jobs are ended by whichever node takes it over (`take_over`)."""
        rows = await self._reads().fetch(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE owner_node = $1 AND completed_at IS NULL",
            self.node_id,
        )
        return [JobRow(*r) for r in rows]

    async def last_seq(self, job_id: str) -> int:
        value = await self._reads().fetchval(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id = $1", job_id
        )
        return int(value)

    async def live_credentials(self) -> list[CredentialEntry]:
        """Unrevoked values of this node's jobs, of finished jobs, retired ones and those
        of no job (a lost idempotent race): a running job elsewhere still uses its own.
        Two nodes may both revoke a due value; revoking twice is harmless."""
        rows = await self._reads().fetch(
            "SELECT c.credential_id, c.job_id, c.provisioner, c.sealed_value, c.version,"
            " c.retired FROM credentials c LEFT JOIN jobs j ON j.job_id = c.job_id"
            " WHERE c.revoked_at IS NULL AND (c.retired OR j.job_id IS NULL"
            " OR j.completed_at IS NOT NULL OR j.owner_node = $1)",
            self.node_id,
        )
        return [CredentialEntry(*r) for r in rows]

    async def unrevoked_credentials(self) -> list[UnrevokedCredential]:
        return await unrevoked_credentials(self._reads())

    async def purge_jobs(self, finished_before: float, limit: int) -> int:
        """On a pool connection, not the writer's: a purge must not hold up the group
        commits. Nodes purging at once skip each other's rows (`SKIP LOCKED`). A failure
        is the store's (`InternalError`); the next round retries."""
        try:
            async with self._reads().acquire() as conn, conn.transaction():
                doomed: list[str] = [
                    r["job_id"]
                    for r in await conn.fetch(
                        "SELECT job_id FROM jobs j WHERE completed_at < $1 AND NOT EXISTS"
                        " (SELECT 1 FROM credentials c WHERE c.job_id = j.job_id"
                        " AND c.revoked_at IS NULL)"
                        " ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                        finished_before,
                        limit,
                    )
                ]
                if doomed:
                    await conn.execute("DELETE FROM events WHERE job_id = ANY($1)", doomed)
                    await conn.execute("DELETE FROM credentials WHERE job_id = ANY($1)", doomed)
                    await conn.execute("DELETE FROM jobs WHERE job_id = ANY($1)", doomed)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("purging finished jobs failed: %s", exc)
            raise InternalError("the store could not purge finished jobs") from None
        return len(doomed)

    async def reclaim(self) -> None:
        """Nothing to do here: autovacuum makes deleted rows' space reusable
        (`_postgres_schema`)."""

    async def disk_usage(self) -> dict[str, int]:
        """Bytes of this store's tables in the schema, with their indexes and TOAST:
        the database may hold other schemas (a cluster's WAL is the server's)."""
        value = await self._reads().fetchval(
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c"
            " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'"
        )
        return {"database": int(value)}

    # -- the cluster -----------------------------------------------------

    def changes(self, job_id: str) -> JobChanges:
        """Wake-ups for one follower of `job_id`: registered now, so a commit between
        now and its next `wait` is not missed."""
        return _JobChanges(self._followers, job_id)

    def _on_events_notified(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        for job_id in str(payload).split(","):
            for follower in self._followers.get(job_id, ()):
                follower.notify()

    def set_cancel_listener(self, listener: Callable[[str, str], None]) -> None:
        """Call `listener(job_id, reason)` when another node asks this one to cancel."""
        self._on_cancel = listener

    def _on_cancel_notified(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        node, _, rest = str(payload).partition(" ")
        job_id, _, reason = rest.partition(" ")
        if node == self.node_id:
            self._on_cancel(job_id, reason)

    async def request_cancel(self, job_id: str, reason: str) -> bool:
        """Ask the node running `job_id` to cancel it; False if the job is not running."""

        async def op(conn: asyncpg.Connection) -> str | None:
            owner: str | None = await conn.fetchval(
                "UPDATE jobs SET cancel_reason = $2 WHERE job_id = $1 AND completed_at IS NULL"
                " RETURNING owner_node",
                job_id,
                reason,
            )
            if owner is not None:
                notice = f"{owner} {job_id} {reason[:_REASON_IN_NOTICE]}"
                await conn.execute("SELECT pg_notify($1, $2)", CANCEL_CHANNEL, notice)
            return owner

        owner = await self._writes().write(op)
        return owner is not None

    async def cancel_requests(self) -> list[tuple[str, str]]:
        """(job_id, reason) of this node's running jobs that someone asked to cancel."""
        rows = await self._reads().fetch(
            "SELECT job_id, cancel_reason FROM jobs WHERE owner_node = $1"
            " AND completed_at IS NULL AND cancel_reason IS NOT NULL",
            self.node_id,
        )
        return [(r["job_id"], r["cancel_reason"]) for r in rows]

    async def heartbeat(self) -> bool:
        """Record that this node is alive; False once a survivor declared it dead (then
        it must stop running jobs: they were ended and may not be finished twice)."""

        async def op(conn: asyncpg.Connection) -> bool:
            alive = await conn.fetchval(
                "UPDATE nodes SET heartbeat_at = now() WHERE node_id = $1 AND state = 'alive'"
                " RETURNING true",
                self.node_id,
            )
            return bool(alive)

        beating: bool = await self._writes().write(op)
        return beating

    async def take_over(self, timeout_sec: float) -> list[tuple[str, list[JobRow]]]:
        """Declare dead every node silent for `timeout_sec` and take its running jobs.
        One conditional update per node decides which survivor does it. Each dead node is
        named `label/node_id` (its host:pid unless `cluster.node_name` says otherwise)."""

        async def op(conn: asyncpg.Connection) -> list[tuple[str, list[JobRow]]]:
            dead = await conn.fetch(
                "UPDATE nodes SET state = 'dead' WHERE state = 'alive' AND node_id <> $1"
                " AND heartbeat_at < now() - make_interval(secs => $2) RETURNING node_id, label",
                self.node_id,
                timeout_sec,
            )
            taken: list[tuple[str, list[JobRow]]] = []
            for record in dead:
                # Its sessions' resume windows start now: any node may resume them.
                await conn.execute(
                    "UPDATE sessions SET detached_at = extract(epoch FROM now())"
                    " WHERE node_id = $1 AND detached_at IS NULL",
                    record["node_id"],
                )
                rows = await conn.fetch(
                    f"UPDATE jobs SET owner_node = $1 WHERE owner_node = $2"
                    f" AND completed_at IS NULL RETURNING {JOB_COLUMNS}",
                    self.node_id,
                    record["node_id"],
                )
                name = f"{record['label']}/{record['node_id']}"  # host:pid, for operators
                taken.append((name, [JobRow(*r) for r in rows]))
            return taken

        taken: list[tuple[str, list[JobRow]]] = await self._writes().write(op)
        return taken

    async def leave(self) -> None:
        """A clean stop: this node's jobs are finished; it is no longer a member."""

        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE nodes SET state = 'left' WHERE node_id = $1 AND state = 'alive'",
                self.node_id,
            )
            await conn.execute(
                "UPDATE sessions SET detached_at = extract(epoch FROM now())"
                " WHERE node_id = $1 AND detached_at IS NULL",
                self.node_id,
            )

        await self._writes().write(op)

    # -- sessions ----------------------------------------------------------

    async def create_session(self, row: SessionRow) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO sessions (session_id, principal, profile, features, token_digest,"
                " generation, node_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                row.session_id,
                row.principal,
                row.profile,
                ",".join(row.features),
                row.token_digest,
                row.generation,
                self.node_id,
            )

        await self._writes().write(op)

    async def load_session(self, session_id: str) -> SessionRow | None:
        record = await self._reads().fetchrow(
            "SELECT session_id, principal, profile, features, token_digest, generation, node_id,"
            " previous_token_digest, previous_token_until FROM sessions WHERE session_id = $1",
            session_id,
        )
        if record is None:
            return None
        features = tuple(f for f in record["features"].split(",") if f)
        return SessionRow(
            record["session_id"],
            record["principal"],
            record["profile"],
            features,
            record["token_digest"],
            record["generation"],
            record["node_id"],
            record["previous_token_digest"],
            record["previous_token_until"],
        )

    async def claim_session(
        self, row: SessionRow, presented: bytes, token_digest: bytes, window_sec: float
    ) -> int | None:
        node = self.node_id

        async def op(conn: asyncpg.Connection) -> int | None:
            # The database's clock decides whether the previous token is still valid.
            generation: int | None = await conn.fetchval(
                "UPDATE sessions SET generation = generation + 1, node_id = $1,"
                " token_digest = $2, detached_at = NULL, previous_token_digest = $5,"
                " previous_token_until = extract(epoch FROM now()) + $6"
                " WHERE session_id = $3 AND generation = $4 AND (token_digest = $5"
                " OR (previous_token_digest = $5"
                " AND previous_token_until > extract(epoch FROM now())))"
                " RETURNING generation",
                node,
                token_digest,
                row.session_id,
                row.generation,
                presented,
                window_sec,
            )
            if generation is not None and row.node_id != node:
                await conn.execute(
                    "SELECT pg_notify($1, $2)", SESSIONS_CHANNEL, f"{row.node_id} {row.session_id}"
                )
            return generation

        claimed: int | None = await self._writes().write(op)
        return claimed

    async def retire_previous_token(self, session_id: str) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE sessions SET previous_token_until = 0"
                " WHERE session_id = $1 AND node_id = $2",
                session_id,
                self.node_id,
            )

        await self._writes().write(op)

    def set_session_listener(self, listener: Callable[[str], None]) -> None:
        self._on_session_lost = listener

    def _on_session_notified(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        node, _, session_id = str(payload).partition(" ")
        if node == self.node_id:
            self._on_session_lost(session_id)

    def append_session_frame(self, frame: SessionFrame) -> None:
        self._writes().append_frame(frame)

    def set_frame_listener(
        self, listener: Callable[[Sequence[SessionFrame], frozenset[str]], None]
    ) -> None:
        self._writes().set_frame_listener(listener)

    async def session_frames(self, session_id: str, after_seq: int) -> list[tuple[int, bytes]]:
        rows = await self._reads().fetch(
            "SELECT seq, frame FROM session_frames WHERE session_id = $1 AND seq > $2 ORDER BY seq",
            session_id,
            after_seq,
        )
        return [(r["seq"], r["frame"]) for r in rows]

    async def last_session_seq(self, session_id: str) -> int:
        value = await self._reads().fetchval(
            "SELECT last_seq FROM sessions WHERE session_id = $1", session_id
        )
        return int(value or 0)

    def follow_job(
        self, session_id: str, job_id: str, submitted: bool, after: int
    ) -> Awaitable[None]:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO session_jobs (session_id, job_id, submitted, after_seq)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (session_id, job_id) DO UPDATE"
                " SET submitted = session_jobs.submitted OR EXCLUDED.submitted, done = FALSE",
                session_id,
                job_id,
                submitted,
                after,
            )

        return self._writes().submit(op)

    async def unfollow_job(self, session_id: str, job_id: str) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE session_jobs SET done = TRUE WHERE session_id = $1 AND job_id = $2",
                session_id,
                job_id,
            )

        await self._writes().write(op)

    async def session_follows(self, session_id: str) -> list[SessionFollow]:
        rows = await self._reads().fetch(
            "SELECT j.job_id, j.submitted, GREATEST(j.after_seq, COALESCE(MAX(f.job_seq), 0))"
            " AS after_seq FROM session_jobs j LEFT JOIN session_frames f"
            " ON f.session_id = j.session_id AND f.job_id = j.job_id"
            " WHERE j.session_id = $1 AND NOT j.done"
            " GROUP BY j.job_id, j.submitted, j.after_seq ORDER BY j.job_id",
            session_id,
        )
        return [SessionFollow(r["job_id"], r["submitted"], r["after_seq"]) for r in rows]

    async def ack_session(self, session_id: str, seq: int) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "DELETE FROM session_frames WHERE session_id = $1 AND seq <= $2", session_id, seq
            )

        await self._writes().write(op)

    async def detach_session(self, session_id: str) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE sessions SET detached_at = extract(epoch FROM now())"
                " WHERE session_id = $1 AND node_id = $2",
                session_id,
                self.node_id,
            )

        await self._writes().write(op)

    async def delete_session(self, session_id: str) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "DELETE FROM sessions WHERE session_id = $1 AND node_id = $2",
                session_id,
                self.node_id,
            )

        await self._writes().write(op)

    async def expire_sessions(self, window_sec: float) -> int:
        async def op(conn: asyncpg.Connection) -> int:
            status = await conn.execute(
                "DELETE FROM sessions WHERE detached_at < extract(epoch FROM now()) - $1",
                window_sec,
            )
            return int(status.split()[-1])

        expired: int = await self._writes().write(op)
        return expired

    async def nodes(self) -> list[tuple[str, str, str, float]]:
        """(node_id, label, state, seconds since its heartbeat) of every known node."""
        rows = await self._reads().fetch(
            "SELECT node_id, label, state, extract(epoch FROM now() - heartbeat_at) AS silent"
            " FROM nodes ORDER BY started_at"
        )
        return [(r["node_id"], r["label"], r["state"], float(r["silent"])) for r in rows]


class _JobChanges:
    """One follower's wake-ups for one job: set by notifications, cleared by `wait`."""

    __slots__ = ("_event", "_followers", "_job_id")

    def __init__(self, followers: dict[str, set[_JobChanges]], job_id: str) -> None:
        self._event = asyncio.Event()
        self._followers = followers
        self._job_id = job_id
        followers.setdefault(job_id, set()).add(self)

    def notify(self) -> None:
        self._event.set()

    async def wait(self, poll_sec: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), poll_sec)
        self._event.clear()

    def close(self) -> None:
        followers = self._followers.get(self._job_id)
        if followers is not None:
            followers.discard(self)
            if not followers:
                del self._followers[self._job_id]


async def _insert_credentials(conn: asyncpg.Connection, entries: Sequence[CredentialEntry]) -> None:
    await conn.executemany(
        "INSERT INTO credentials (credential_id, version, job_id, provisioner, sealed_value,"
        " retired) VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (e.credential_id, e.version, e.job_id, e.provisioner, e.sealed_value, e.retired)
            for e in entries
        ],
    )


async def unrevoked_credentials(
    conn: asyncpg.Connection | asyncpg.Pool,
) -> list[UnrevokedCredential]:
    """Values due for revocation and still live on any node (§14), oldest first; a
    plain function of a connection so the operator CLI needs no store of its own."""
    rows = await conn.fetch(
        "SELECT c.credential_id, c.version, c.job_id, c.provisioner, c.minted_at,"
        " CASE WHEN j.job_id IS NULL THEN 'not accepted' WHEN c.retired THEN 'rotated'"
        " ELSE 'job ended' END"
        " FROM credentials c LEFT JOIN jobs j ON j.job_id = c.job_id"
        " WHERE c.revoked_at IS NULL"
        " AND (c.retired OR j.job_id IS NULL OR j.completed_at IS NOT NULL)"
        " ORDER BY c.minted_at, c.credential_id, c.version"
    )
    return [UnrevokedCredential(*r) for r in rows]
