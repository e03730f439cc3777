"""Per-principal and global caps on what callers may hold in the core (§14 SHOULD).

§14 asks a runtime to bound what one principal can make it hold, so that one
token cannot exhaust the process for everyone: sessions, running jobs, and the
bytes buffered or queued for its sessions. Each cap has a per-principal value
(with per-principal overrides) and a global one for the whole node. A refusal
is a `QuotaExceeded` naming the cap (DESIGN.md, "Quotas"); nothing already
admitted is ever taken away, so a cap bounds what a principal can *add*.

The checks here are pure functions of the counts this node keeps, so they
cost a few comparisons per hello or submit, and on one node (SQLite) they are
the whole truth. In a cluster the per-principal caps on sessions and running
jobs hold for the whole cluster: the shared store checks them again in the
statement that takes the slot and raises `OverCap`, answered with `refusal`
(the same error). The node-wide caps, and the per-principal cap on held bytes
(this process's memory), stay per node (docs/operations.md, "Quotas").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from arcp_grpc.errors import QuotaExceeded

__all__ = ["PER_PRINCIPAL", "QuotaLimits", "Quotas"]

_MiB = 1024 * 1024

# What a cap counts, in the singular and the plural, for the refusal's message.
_Noun = tuple[str, str]
_SESSIONS: _Noun = ("session", "sessions")
_JOBS: _Noun = ("running job", "running jobs")
_BYTES: _Noun = ("byte held for sessions", "bytes held for sessions")

# The caps a per-principal override may set (`[limits] overrides`).
PER_PRINCIPAL = (
    "max_sessions_per_principal",
    "max_running_jobs_per_principal",
    "max_held_bytes_per_principal",
)


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """The caps; each is a documented configuration knob (`[limits]`)."""

    max_sessions_per_principal: int = 1_000
    max_running_jobs_per_principal: int = 1_000
    max_held_bytes_per_principal: int = 256 * _MiB
    max_sessions: int = 10_000
    max_running_jobs: int = 5_000
    max_held_bytes: int = 1024 * _MiB
    # Bytes waiting in every client's outbound queue together
    # (`arcp_grpc.service.outbox.UnsentLedger`): past it, clients over half their own
    # `sessions.max_unsent_bytes` lose the transport.
    max_unsent_bytes: int = 256 * _MiB
    retry_after_ms: int = 1_000
    # "PRINCIPAL.CAP" -> value, CAP one of PER_PRINCIPAL: a principal's own caps.
    overrides: Mapping[str, int] = field(default_factory=dict)


class Quotas:
    """Checks a principal's usage against its caps and the node's."""

    def __init__(self, limits: QuotaLimits | None = None) -> None:
        self.limits = limits or QuotaLimits()
        self._overrides: dict[str, dict[str, int]] = {}
        for key, value in self.limits.overrides.items():
            principal, _, cap = key.rpartition(".")
            self._overrides.setdefault(principal, {})[cap] = value

    def cap(self, principal: str, name: str) -> int:
        """The value of per-principal cap `name` for `principal`."""
        own = self._overrides.get(principal)
        if own is not None and name in own:
            return own[name]
        value: int = getattr(self.limits, name)
        return value

    def check_session(self, principal: str, held: int, total: int) -> None:
        """Before a new session: `held` of this principal's, `total` on the node."""
        self._check(principal, "max_sessions_per_principal", held, _SESSIONS)
        self._check_global("max_sessions", total, _SESSIONS)

    def check_job(self, principal: str, running: int, total: int) -> None:
        """Before a new job: `running` of this principal's, `total` on the node."""
        self._check(principal, "max_running_jobs_per_principal", running, _JOBS)
        self._check_global("max_running_jobs", total, _JOBS)

    def check_held_bytes(self, principal: str, held: int, total: int | None = None) -> None:
        """Before a new session or job: bytes buffered or unsent for the principal's
        sessions (`held`) and, when given, for every session on the node (`total`)."""
        self._check(principal, "max_held_bytes_per_principal", held, _BYTES)
        if total is not None:
            self._check_global("max_held_bytes", total, _BYTES)

    def refusal(self, principal: str, name: str, held: int) -> QuotaExceeded:
        """The refusal of a slot the cluster's store found taken: `principal` holds
        `held` on every node against per-principal cap `name` (sessions or jobs)."""
        what = _SESSIONS if name == "max_sessions_per_principal" else _JOBS
        return self._refused(principal, name, held, what, " in the cluster")

    def _check(self, principal: str, name: str, used: int, what: _Noun) -> None:
        if used >= self.cap(principal, name):
            raise self._refused(principal, name, used, what, "")

    def _refused(
        self, principal: str, name: str, used: int, what: _Noun, where: str
    ) -> QuotaExceeded:
        cap = self.cap(principal, name)
        return QuotaExceeded.of(
            name,
            self.limits.retry_after_ms,
            f"principal {principal!r} holds {_counted(used, what)}{where},"
            f" its cap is {cap} ({name})",
        )

    def _check_global(self, name: str, used: int, what: _Noun) -> None:
        cap: int = getattr(self.limits, name)
        if used >= cap:
            raise QuotaExceeded.of(
                name,
                self.limits.retry_after_ms,
                f"the runtime holds {_counted(used, what)}, its cap is {cap} ({name})",
            )


def _counted(count: int, noun: _Noun) -> str:
    """`1 running job`, `2 running jobs`."""
    return f"{count} {noun[0] if count == 1 else noun[1]}"
