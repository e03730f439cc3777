"""The cluster store's session journal (DESIGN.md: sessions live in the store).

A session row says which node holds the session's transport and at which
`generation`; any node can take a detached session over with one conditional
update (`claim_session`), after which the node that held it can record nothing
more (the writer stamps frames only for sessions this node still holds). Frames
are recorded before they are sent (§8.3) and dropped once acknowledged (§6.5);
a session's follows say which jobs another node must go on feeding it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from arcp_grpc.store.postgres.batch_statements import Follow
from arcp_grpc.store.postgres.connections import PostgresConnections
from arcp_grpc.store.protocol import OverCap, SessionFollow, SessionFrame, SessionRow

__all__ = ["SESSIONS_CHANNEL", "PostgresSessions"]

SESSIONS_CHANNEL = "arcp_sessions"  # "NODE SESSION_ID": NODE lost the session to another

# The sessions of principal {p} that count against its cap on every node: attached, or
# detached for less than the resume window {w} (still resumable), as a node counts those
# it holds. `sessions_by_principal` serves it.
_SESSIONS_OF_PRINCIPAL = (
    "SELECT count(*) FROM sessions WHERE principal = {p}"
    " AND (detached_at IS NULL OR detached_at > extract(epoch FROM now()) - {w})"
)


class PostgresSessions(PostgresConnections):
    """`SessionJournal` on the shared database."""

    async def create_session(self, row: SessionRow, cap: int, window_sec: float) -> None:
        """Conditional on the principal's sessions on every node, counted after the batch
        took the principal's slot lock (the writer): two nodes cannot both take the last."""
        node = self.node_id

        async def op(conn: asyncpg.Connection) -> None:
            inserted = await conn.fetchval(
                "INSERT INTO sessions (session_id, principal, profile, features, token_digest,"
                " generation, node_id) SELECT $1, $2, $3, $4, $5, $6, $7"
                f" WHERE ({_SESSIONS_OF_PRINCIPAL.format(p='$2', w='$9')}) < $8 RETURNING true",
                row.session_id,
                row.principal,
                row.profile,
                ",".join(row.features),
                row.token_digest,
                row.generation,
                node,
                cap,
                window_sec,
            )
            if inserted is None:
                raise OverCap(await _sessions_held(conn, row.principal, "", window_sec))

        await self._writes().write(op, lock=row.principal)

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
        self, row: SessionRow, presented: bytes, token_digest: bytes, window_sec: float, cap: int
    ) -> int | None:
        """The cap counts the principal's other sessions: a resume moves a session, it adds
        none to the cluster's count, so it needs no slot lock (unlike `create_session`)."""
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
                f" AND ({_SESSIONS_OF_PRINCIPAL.format(p='$8', w='$6')}"
                " AND session_id <> $3) < $7 RETURNING generation",
                node,
                token_digest,
                row.session_id,
                row.generation,
                presented,
                window_sec,
                cap,
                row.principal,
            )
            if generation is None:
                others = await _sessions_held(conn, row.principal, row.session_id, window_sec)
                if others >= cap:
                    raise OverCap(others)
            elif row.node_id != node:
                await conn.execute(
                    "SELECT pg_notify($1, $2)", SESSIONS_CHANNEL, f"{row.node_id} {row.session_id}"
                )
            return generation

        claimed: int | None = await self._writes().write(op)
        return claimed

    async def retire_previous_token(self, session_id: str) -> None:
        await self._execute(
            "UPDATE sessions SET previous_token_until = 0 WHERE session_id = $1 AND node_id = $2",
            session_id,
            self.node_id,
        )

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
        return self._writes().append_data(Follow(session_id, job_id, submitted, after))

    async def unfollow_job(self, session_id: str, job_id: str) -> None:
        await self._execute(
            "UPDATE session_jobs SET done = TRUE WHERE session_id = $1 AND job_id = $2",
            session_id,
            job_id,
        )

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
        await self._execute(
            "DELETE FROM session_frames WHERE session_id = $1 AND seq <= $2", session_id, seq
        )

    async def detach_session(self, session_id: str) -> None:
        await self._execute(
            "UPDATE sessions SET detached_at = extract(epoch FROM now())"
            " WHERE session_id = $1 AND node_id = $2",
            session_id,
            self.node_id,
        )

    async def delete_session(self, session_id: str) -> None:
        await self._execute(
            "DELETE FROM sessions WHERE session_id = $1 AND node_id = $2",
            session_id,
            self.node_id,
        )

    async def expire_sessions(self, window_sec: float) -> int:
        async def op(conn: asyncpg.Connection) -> int:
            status = await conn.execute(
                "DELETE FROM sessions WHERE detached_at < extract(epoch FROM now()) - $1",
                window_sec,
            )
            return int(status.split()[-1])

        expired: int = await self._writes().write(op)
        return expired


async def _sessions_held(
    conn: asyncpg.Connection, principal: str, other_than: str, window_sec: float
) -> int:
    """How many sessions count against `principal`'s cap, besides `other_than`."""
    held: int = await conn.fetchval(
        f"{_SESSIONS_OF_PRINCIPAL.format(p='$1', w='$3')} AND session_id <> $2",
        principal,
        other_than,
        window_sec,
    )
    return held
