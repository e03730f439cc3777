"""The store interface: everything the core must not lose.

Jobs, their event logs (written before delivery), the idempotency cache of
sealed `JobAccepted` bytes (§7.2) and the ledger of unrevoked credentials
(§9.8.2, §14). `SQLiteStore` is the embedded implementation; a PostgreSQL
one implements the same protocol.

One small protocol per concern: `JobStore` (jobs, events, claims, retention),
`CredentialStore` (the ledger), `SessionStore` (a cluster's session journal) and
`ClusterMembership` (nodes, takeover, cancels across nodes). `Store` is what
every store has; `ClusterStore` adds what only a shared store has. Whether a
store is shared is said, not guessed: `Store.cluster` is the store itself as a
`ClusterStore`, or None for a single node (an `isinstance` check against a
25-member protocol would run a store missing one method as a single node).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ClusterMembership",
    "ClusterStore",
    "CredentialEntry",
    "CredentialStore",
    "EventRow",
    "HandedOff",
    "Handoff",
    "IdempotencyClaim",
    "IdempotencyConflict",
    "JobChanges",
    "JobPage",
    "JobQuery",
    "JobRow",
    "JobStore",
    "NodeNotAlive",
    "NodeRow",
    "OverCap",
    "SessionFollow",
    "SessionFrame",
    "SessionRow",
    "SessionStore",
    "Store",
    "StoreUnavailable",
    "StoreWaitExpired",
    "UnrevokedCredential",
]


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job as stored. `summary` is a serialised `JobSummary` without credentials;
    `accepted` is the sealed `JobAccepted` bytes; `outcome` a `JobOutcome` once ended."""

    job_id: str
    principal: str
    agent: str
    status: int
    created_at: float
    trace_id: str
    parent_job_id: str
    summary: bytes
    accepted: bytes
    last_seq: int = 0
    completed_at: float | None = None
    outcome: bytes | None = None


@dataclass(frozen=True, slots=True)
class NodeRow:
    """A cluster node as the `nodes` table records it, with its running jobs counted."""

    node_id: str
    label: str
    state: str  # `alive`, `left` or `dead`
    silent_sec: float  # since its last heartbeat, by the database's clock
    running_jobs: int


@dataclass(frozen=True, slots=True)
class EventRow:
    """One event of a job's log: `blob` is `JobEvent` bytes, sealed when `sealed`."""

    job_id: str
    seq: int
    blob: bytes
    sealed: bool = False


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """The (principal, key) a job claims at creation (§7.2)."""

    principal: str
    key: str
    fingerprint: bytes
    expires_at: float


@dataclass(frozen=True, slots=True)
class CredentialEntry:
    """One minted credential value not yet revoked at its upstream (§14).

    A row per value, not per credential: a rotation (§9.8.2) keeps the credential
    `id` and mints a new value, so the new value is a new `version` and the old
    row stays, `retired`, until its revocation is confirmed. Overwriting the row
    would forget a value whose revocation failed. `retired` rows are due for
    revocation whatever their job's state; the others once their job has ended.
    """

    credential_id: str
    job_id: str
    provisioner: str
    sealed_value: bytes
    version: int = 0
    retired: bool = False


@dataclass(frozen=True, slots=True)
class UnrevokedCredential:
    """What an operator sees of a value that should be revoked and is not (§14):
    no value, so listing needs neither the store key nor access to secrets."""

    credential_id: str
    version: int
    job_id: str
    provisioner: str
    minted_at: float
    why: str  # "job ended", "rotated", "not accepted" (lost an idempotent race)


@dataclass(frozen=True, slots=True)
class JobQuery:
    """A principal-scoped listing request (§6.6)."""

    principal: str
    statuses: tuple[int, ...] = ()
    agent: str = ""
    created_after: float | None = None
    limit: int = 100
    cursor: str = ""


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of jobs, newest first."""

    jobs: tuple[JobRow, ...]
    next_cursor: str


@dataclass(frozen=True, slots=True)
class Handoff:
    """A job created by this node for another one to run: its owner from the start
    (`owner_node`), because a remote worker hosting its agent is connected there
    (issue 23, docs/workers.md). `input` is the job's input, sealed (a
    `google.protobuf.Value`); the owner claims it once (`ClusterMembership.claim_handoff`)."""

    node_id: str
    input: bytes
    max_runtime_sec: int | None


@dataclass(frozen=True, slots=True)
class HandedOff:
    """A job handed to this node, claimed: its row, its sealed input and runtime limit,
    and the cancel someone asked for before the claim (or None)."""

    job: JobRow
    input: bytes
    max_runtime_sec: int | None
    cancel_reason: str | None


class IdempotencyConflict(Exception):
    """Another job already holds the (principal, key); carries the holder's id."""

    def __init__(self, job_id: str, fingerprint: bytes) -> None:
        super().__init__(job_id)
        self.job_id = job_id
        self.fingerprint = fingerprint


class OverCap(Exception):
    """A per-principal cap, counted over the whole cluster in the statement that would
    have taken the slot, is reached: the principal already holds `held`. Nothing of the
    request was written (the runtime answers with `QuotaExceeded`, DESIGN.md "Quotas")."""

    def __init__(self, held: int) -> None:
        super().__init__(held)
        self.held = held


class JobStore(Protocol):
    """Jobs and their events, idempotency claims and retention. Writes from one process
    are applied in call order."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def key_check(self, sealed: bytes) -> bytes:
        """Keep `sealed` (a known plaintext sealed with this node's key) unless the store
        holds one already; return the one it holds. A node whose key cannot open it must
        not start: it could neither read the sealed rows nor write ones the others read."""

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
        """Insert the job, its idempotency claim and its credentials atomically.

        Raises `IdempotencyConflict` when an unexpired claim on the same
        (principal, key) exists; then nothing is written. An expired claim
        is replaced.

        `running_cap` (the principal's `max_running_jobs_per_principal`; None for a
        child, which its root's admission already counted): a shared store inserts
        the job only while the principal's running jobs on every node are fewer, in
        the same statement, and raises `OverCap` otherwise. A single node's store
        ignores it: the node's own counts, checked before, are the whole count.

        A shared store raises `NodeNotAlive` when this node is no longer alive in
        the cluster (a survivor declared it dead): nothing is written, in the same
        statements, so no dead node ever creates a job.

        `handoff` (a shared store only): the job is owned from the start by the node it
        names, which is told (`set_handoff_listener`) and claims it to run it.
        """

    async def find_claim(self, principal: str, key: str, now: float) -> tuple[str, bytes] | None:
        """(job_id, fingerprint) of an unexpired claim, else None."""

    def set_commit_listener(self, listener: Callable[[Sequence[EventRow]], None]) -> None:
        """Call `listener` on the event loop with each batch of events once committed."""

    def set_failure_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener` on the event loop, once, when a write fails and the store
        stops accepting writes (a full disk, an I/O error)."""

    def append_event(self, event: EventRow) -> None:
        """Queue an event for the next group commit; the commit listener reports it."""

    def write_backlog(self) -> tuple[int, int]:
        """Writes queued and not yet committed, and the bytes of the events among them
        (for back-pressure: a few large result chunks weigh more than many log lines)."""

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
        """Record the terminal state; ordered after every event appended before it. How
        it is batched with other writes is the store's business (group commit).

        True when the store now holds this end: written now, or found already written
        with the same outcome bytes (the same write applied again after a reconnect).
        False when the job was not this node's to finish (a survivor took it over and
        recorded its own end, which stands): the caller must publish the recorded end,
        never its own. A single node's store always finishes its jobs."""

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""

    async def get_job(self, job_id: str) -> JobRow | None: ...

    async def list_jobs(self, query: JobQuery) -> JobPage: ...

    async def read_events(self, job_id: str, after_seq: int, limit: int) -> list[EventRow]: ...

    async def interrupted_jobs(self) -> list[JobRow]:
        """Jobs left pending or running by a previous process."""

    async def last_seq(self, job_id: str) -> int:
        """The highest stored `job_seq` of a job (0 when it has none)."""

    async def purge_claims(self, now: float) -> int:
        """Delete expired idempotency claims; returns how many."""

    async def purge_jobs(self, finished_before: float, limit: int) -> int:
        """Delete up to `limit` jobs that ended before `finished_before`, with their
        events and their (revoked) credentials; returns how many. Never a running job,
        nor one holding a credential not yet revoked (the sweep still needs it, §14);
        an implementation may keep a few more (SQLite keeps the newest job)."""

    async def reclaim(self) -> None:
        """Give the space of purged rows back, without holding the event loop."""

    async def disk_usage(self) -> dict[str, int]:
        """Bytes the store takes on disk, by part (``database``, ``wal``), for the
        `arcp_store_bytes` gauge."""


class CredentialStore(Protocol):
    """The ledger of minted credential values not yet revoked at their upstream (§14)."""

    async def live_credentials(self) -> list[CredentialEntry]:
        """Unrevoked values this node may revoke: retired ones, those of ended jobs,
        and those of its own running jobs (the caller skips the jobs it runs)."""

    async def unrevoked_credentials(self) -> list[UnrevokedCredential]:
        """Every value due for revocation and not yet revoked, on any node (§14)."""

    async def record_credentials(self, entries: Sequence[CredentialEntry]) -> None:
        """Record minted values that belong to no stored job (a submit that lost an
        idempotent race), before anything tries to revoke them (§14)."""

    async def mark_revoked(self, credential_id: str, version: int) -> None: ...

    async def rotate_credential(self, old_id: str, old_version: int, new: CredentialEntry) -> None:
        """In one transaction: retire the value (`old_id`, `old_version`) and record `new`
        (the same id, next version, or a new id) (§9.8.2). The old value stays until its
        revocation is confirmed."""


class Store(JobStore, CredentialStore, Protocol):
    """Durable state of the core: what every store has."""

    @property
    def cluster(self) -> ClusterStore | None:
        """This store as one several nodes share, or None when this node is alone: the
        runtime follows, cancels and takes over jobs across nodes only through it."""


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A session as a cluster stores it (§6): enough for any node to take it over.
    `generation` counts attaches; `node_id` is the node holding its transport."""

    session_id: str
    principal: str
    profile: int
    features: tuple[str, ...]
    token_digest: bytes
    generation: int
    node_id: str
    # The token the last resume was made with and until when (epoch seconds) it stays
    # valid; 0 once the client used the resumed session (DESIGN.md "Resume tokens").
    previous_token_digest: bytes = b""
    previous_token_until: float = 0.0


@dataclass(frozen=True, slots=True)
class SessionFrame:
    """One sequenced frame of a session (§8.3), recorded before it is sent: the
    `ConnectResponse` bytes, and which job (and `job_seq`) it carries, so another node
    can go on following that job from there. `terminal`: the job's last frame."""

    session_id: str
    seq: int
    job_id: str
    job_seq: int
    terminal: bool
    frame: bytes


@dataclass(frozen=True, slots=True)
class SessionFollow:
    """A job a session follows and has not seen end: whether the session submitted it,
    and the `job_seq` after which its next frame comes."""

    job_id: str
    submitted: bool
    after_seq: int


class JobChanges(Protocol):
    """A follower's subscription to one job's commits on any node. Commits after it was
    made are not missed; a lost notification costs at most the poll interval."""

    async def wait(self, poll_sec: float) -> None:
        """Return once the job may have changed since the last `wait`, or after `poll_sec`."""

    def close(self) -> None: ...


class NodeNotAlive(Exception):
    """This node is not alive in the cluster (a survivor declared it dead, or it left):
    the store refused to create a job for it. Nothing was written; the submitter may
    retry on another node."""


class StoreUnavailable(Exception):
    """This node cannot use the configured store: written with another sealing key,
    of a newer schema, refusing the credentials. `serve` exits 2 with the message."""


class StoreWaitExpired(StoreUnavailable):
    """The store did not answer within `store.connect_timeout_sec` at start: a
    database that is restarting or not up yet. `serve` exits 75 (EX_TEMPFAIL), so
    its supervisor starts it again."""


class ClusterMembership(Protocol):
    """A node's part in a cluster: what it needs to follow, cancel and outlive jobs that
    run on the other nodes (DESIGN.md, scale-out)."""

    node_id: str

    def changes(self, job_id: str) -> JobChanges:
        """Wake-ups for a follower of `job_id`, which may run on another node."""

    def set_cancel_listener(self, listener: Callable[[str, str], None]) -> None:
        """Call `listener(job_id, reason)` when another node asks this one to cancel."""

    def reachable(self) -> bool:
        """Whether the shared store answers now; while it does not, writes wait in
        memory and reads raise a transient `StoreFailed` (issue 20)."""

    def set_outage_listener(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(True)` when the store stops answering, `listener(False)` when
        it answers again."""

    async def request_cancel(self, job_id: str, reason: str) -> bool:
        """Record a cancel for the node running `job_id`; False if it is not running."""

    async def cancel_requests(self) -> list[tuple[str, str]]:
        """(job_id, reason) of this node's running jobs someone asked to cancel."""

    async def heartbeat(self) -> bool:
        """Record this node alive; False once a survivor declared it dead."""

    async def take_over(self, timeout_sec: float) -> list[tuple[str, list[JobRow]]]:
        """Declare nodes silent for `timeout_sec` dead and take their running jobs."""

    async def leave(self) -> None:
        """Leave the cluster cleanly (at a graceful stop)."""

    async def nodes(self) -> list[NodeRow]:
        """Every known node, oldest first, with the jobs running on it."""

    async def publish_workers(self, listing: bytes) -> None:
        """Record the remote workers connected to this node (an opaque listing)."""

    async def peer_workers(self) -> list[tuple[str, bytes, float]]:
        """(node_id, listing, epoch seconds it was recorded) of every other live node."""

    def set_handoff_listener(self, listener: Callable[[str], None]) -> None:
        """Call `listener(job_id)` when another node hands this one a job (`Handoff`)."""

    async def handoffs(self) -> list[str]:
        """The jobs handed to this node and not claimed yet (a missed notification)."""

    async def claim_handoff(self, job_id: str) -> HandedOff | None:
        """Take a job handed to this node, once, while this node is alive and still owns
        the job unfinished; None otherwise (claimed, or taken over by a survivor)."""


class SessionStore(Protocol):
    """A cluster's session journal (DESIGN.md: sessions live in the store): enough for
    any node to take a session over and resume it (§6.5, §8.3)."""

    async def create_session(self, row: SessionRow, cap: int, window_sec: float) -> None:
        """Record a new session, attached to this node, only while its principal holds
        fewer than `cap` sessions on every node (attached, or detached for less than
        `window_sec`, still resumable); else raise `OverCap` (§14)."""

    async def load_session(self, session_id: str) -> SessionRow | None:
        """The session, unless it is unknown or expired."""

    async def claim_session(
        self, row: SessionRow, presented: bytes, token_digest: bytes, window_sec: float, cap: int
    ) -> int | None:
        """Attach the session to this node if it is still at `row`'s generation and the
        token `presented` (its digest) is its current one, or the previous one while that
        is valid: `token_digest` becomes current, `presented` the previous one, valid for
        `window_sec`; the next generation is returned. From then on the node that held it
        can record no frame. None if it changed meanwhile. A resume counts like a hello:
        raises `OverCap` when the principal holds `cap` other sessions already (§14)."""

    async def retire_previous_token(self, session_id: str) -> None:
        """The client used the session it resumed here: the token it resumed with dies."""

    def set_session_listener(self, listener: Callable[[str], None]) -> None:
        """Call `listener(session_id)` when another node takes over a session held here."""

    def append_session_frame(self, frame: SessionFrame) -> None:
        """Queue a frame for the next group commit; recorded only while this node holds
        the session. The frame listener reports which were recorded."""

    def set_frame_listener(
        self, listener: Callable[[Sequence[SessionFrame], frozenset[str]], None]
    ) -> None:
        """Call `listener(recorded, lost_sessions)` after each commit with session frames:
        the frames recorded, in order, and the sessions another node took meanwhile."""

    async def session_frames(self, session_id: str, after_seq: int) -> list[tuple[int, bytes]]:
        """(seq, frame) of the session's recorded frames after `after_seq`, in order (the
        oldest may have been dropped once acknowledged or past the session's limits)."""

    async def last_session_seq(self, session_id: str) -> int:
        """The highest seq ever recorded for the session."""

    def follow_job(
        self, session_id: str, job_id: str, submitted: bool, after: int
    ) -> Awaitable[None]:
        """Record that the session follows `job_id` from `after` (its submit, a subscribe);
        queued at once, ahead of any frame of that job, so a caller need not wait."""

    async def unfollow_job(self, session_id: str, job_id: str) -> None: ...

    async def session_follows(self, session_id: str) -> list[SessionFollow]:
        """The jobs the session follows whose terminal frame it has not been sent."""

    async def ack_session(self, session_id: str, seq: int) -> None:
        """The client processed frames up to `seq` (§6.5): they need not be kept."""

    async def detach_session(self, session_id: str) -> None:
        """The session's transport left this node; its resume window starts now."""

    async def delete_session(self, session_id: str) -> None: ...

    async def expire_sessions(self, window_sec: float) -> int:
        """Delete sessions detached for longer than `window_sec`; returns how many."""


class ClusterStore(Store, ClusterMembership, SessionStore, Protocol):
    """A store several nodes share (PostgreSQL): `Store` plus membership and sessions."""
