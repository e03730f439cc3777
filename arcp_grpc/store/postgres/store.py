"""The cluster store: PostgreSQL shared by several core nodes (DESIGN.md, scale-out).

The same `Store` operations as `SQLiteStore`, plus what a cluster needs. This
module is the facade, with the jobs and their events; each other concern is a
module of its own, all working through `PostgresConnections` (`connections`):
- jobs and events (here): a job row names the node that runs it (`owner_node`)
  and only that node finishes it; events are read by sequence from the database,
  and `LISTEN arcp_events` wakes followers of jobs running on other nodes early
  (`changes`), while a poll bounds the wait when a notification is lost;
- the credential ledger (`credentials`, §14);
- the session journal (`sessions`): sessions, their frames and follows;
- cluster membership (`membership`): heartbeats, takeover, cancel requests;
- remote workers across nodes (`handoffs`): who holds which, jobs handed between nodes.

Writes and group commit are `arcp_grpc.store.postgres.writer`'s; reads use a small
connection pool beside the writer's connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import asyncpg

from arcp_grpc.store.postgres.batch_function import EVENTS_CHANNEL
from arcp_grpc.store.postgres.batch_statements import Create, Finish, apply
from arcp_grpc.store.postgres.credentials import PostgresCredentials, insert_credentials
from arcp_grpc.store.postgres.driver_errors import DRIVER_ERRORS
from arcp_grpc.store.postgres.handoffs import HANDOFF_CHANNEL, PostgresHandoffs
from arcp_grpc.store.postgres.listener import Listener
from arcp_grpc.store.postgres.membership import CANCEL_CHANNEL, PostgresMembership
from arcp_grpc.store.postgres.reconnect import connect_within
from arcp_grpc.store.postgres.schema import prepare as prepare_schema
from arcp_grpc.store.postgres.sessions import SESSIONS_CHANNEL, PostgresSessions
from arcp_grpc.store.postgres.writer import PostgresWriter
from arcp_grpc.store.protocol import (
    CredentialEntry,
    EventRow,
    Handoff,
    IdempotencyClaim,
    JobPage,
    JobQuery,
    JobRow,
    StoreUnavailable,
)
from arcp_grpc.store.rows import JOB_COLUMNS, job_page, list_jobs_statement

__all__ = ["PostgresStore"]


class PostgresStore(PostgresCredentials, PostgresSessions, PostgresMembership, PostgresHandoffs):
    """`Store` on a PostgreSQL database shared by the nodes of a cluster."""

    @property
    def cluster(self) -> PostgresStore:
        """Other nodes run jobs in this store too: it is its own `ClusterStore`."""
        return self

    # -- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        """Connect (waiting up to `store.connect_timeout_sec` for a database that is not
        up yet: `StoreWaitExpired`), prepare the schema, join the cluster."""
        try:
            self._write_conn = await connect_within(
                self._connect, self._connect_timeout_sec, _where(self._dsn)
            )
            await prepare_schema(self._write_conn)
            await self._open_pool()
            self._listener = Listener(
                self._connect,
                [
                    (EVENTS_CHANNEL, self._followers.notified),
                    (CANCEL_CHANNEL, self._on_cancel_notified),
                    (SESSIONS_CHANNEL, self._on_session_notified),
                    (HANDOFF_CHANNEL, self._on_handoff_notified),
                ],
                self._followers.wake_all,
            )
            await self._listener.open()
            await self._write_conn.execute(
                "INSERT INTO nodes (node_id, label) VALUES ($1, $2)", self.node_id, self._label
            )
        except StoreUnavailable:
            await self._close_connections()
            raise
        except DRIVER_ERRORS as exc:
            await self._close_connections()
            raise StoreUnavailable(f"cannot use the PostgreSQL store: {exc}") from None
        self._writer = PostgresWriter(
            self._write_conn, self.node_id, connect=self._connect, batch_limit=self._batch_limit
        )

    async def close(self) -> None:
        if self._writer is None:
            return
        await self._writer.stop()
        self._write_conn = self._writer.connection  # a new one after each reconnect
        self._writer = None
        await self._close_connections()
        self._followers.wake_all()

    # -- the writer ------------------------------------------------------

    def set_commit_listener(self, listener: Callable[[Sequence[EventRow]], None]) -> None:
        self._writes().set_commit_listener(listener)

    def set_failure_listener(self, listener: Callable[[], None]) -> None:
        self._writes().set_failure_listener(listener)

    def write_backlog(self) -> tuple[int, int]:
        return self._writes().backlog()

    def reachable(self) -> bool:
        return self._writes().reachable()

    def set_outage_listener(self, listener: Callable[[bool], None]) -> None:
        self._writes().set_outage_listener(listener)

    def append_event(self, event: EventRow) -> None:
        self._writes().append_event(event)

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
        *,
        running_cap: int | None = None,
        handoff: Handoff | None = None,
    ) -> None:
        """The batch function creates the job (`batch_function`: the claim, the fence and,
        with `running_cap`, the count of the principal's running jobs on every node, made
        after the batch took the principal's slot lock, so two nodes cannot both take the
        last slot). A plain job is data in the batch; one with credentials or a handoff (or
        a text PostgreSQL cannot keep, refused as this request's own error) is a request
        that calls the function and then writes the rest. With `handoff`, the job is
        owned by the node it names from the start, told on `arcp_handoff` at the commit
        (`arcp_grpc.store.postgres.handoffs`); this node's fence still decides."""
        owner = handoff.node_id if handoff is not None else self.node_id
        create = Create(job, owner, claim, now, running_cap)
        if not credentials and handoff is None and not _holds_nul(job, claim):
            error = await self._writes().append_data(create)
            if error is not None:
                raise error
            return
        node = self.node_id

        async def op(conn: asyncpg.Connection) -> None:
            error = (await apply(conn, node, creates=[create])).created[job.job_id]
            if error is not None:
                raise error  # the writer rolls back what the request wrote
            if credentials:
                await insert_credentials(conn, credentials)
            if handoff is not None:
                await conn.execute(
                    "INSERT INTO job_handoffs (job_id, node_id, input, max_runtime_sec)"
                    " VALUES ($1, $2, $3, $4)",
                    job.job_id,
                    owner,
                    handoff.input,
                    handoff.max_runtime_sec,
                )
                await conn.execute(
                    "SELECT pg_notify($1, $2)", HANDOFF_CHANNEL, f"{owner} {job.job_id}"
                )

        await self._writes().write(op, lock=job.principal if running_cap is not None else "")

    async def finish_job(
        self,
        job_id: str,
        *,
        status: int,
        outcome: bytes,
        summary: bytes,
        completed_at: float,
        last_seq: int,
    ) -> bool:
        """Only the owner finishes a job: once a survivor took it over, a fenced node's
        late end is refused (False; the survivor's stands). One statement also answers
        True for this very end already recorded (the same outcome bytes: the write
        applied again after a reconnect), so a re-applied batch is not taken for a loss.
        Data, not a request: the batch function writes it with the batch's events and
        frames (`batch_statements`), so a job's end and its terminal frame can share
        one round trip."""
        end = Finish(job_id, status, outcome, summary, completed_at, last_seq)
        held: bool = await self._writes().append_data(end)
        return held

    async def purge_claims(self, now: float) -> int:
        async def op(conn: asyncpg.Connection) -> int:
            status = await conn.execute("DELETE FROM idempotency WHERE expires_at <= $1", now)
            return int(status.split()[-1])

        purged: int = await self._writes().write(op)
        return purged

    # -- reads -----------------------------------------------------------

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
        sql, args = list_jobs_statement(query, _numbered)
        rows = await self._reads().fetch(sql, *args)
        return job_page([JobRow(*r) for r in rows], query.limit)

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

    async def purge_jobs(self, finished_before: float, limit: int) -> int:
        """On a pool connection, not the writer's: a purge must not hold up the group
        commits. Nodes purging at once skip each other's rows (`SKIP LOCKED`). A failure
        is the store's (`StoreFailed`, from `Reads`); the next round retries."""
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


def _where(dsn: str) -> str:
    """The database for the log: host, port and name, never the password."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


def _numbered(n: int) -> str:
    """asyncpg's parameter style."""
    return f"${n}"


def _holds_nul(job: JobRow, claim: IdempotencyClaim | None) -> bool:
    """Whether a text of the job or its claim holds NUL, which PostgreSQL text cannot keep:
    such a creation goes as a request, so the refusal is its own (`StoreRejected`), not
    the whole batch's."""
    texts = (job.job_id, job.principal, job.agent, job.trace_id, job.parent_job_id)
    return any("\x00" in t for t in texts) or (
        claim is not None and ("\x00" in claim.key or "\x00" in claim.principal)
    )
