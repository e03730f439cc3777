"""Hooks the runtime calls at the moments operators measure; no-ops by default.

The runtime imports only this base class, so it carries no metrics library;
`arcp_grpc.process.metrics.Metrics` overrides the hooks. Each hook is O(1) and runs on
the event loop: no I/O, no locks.
"""

from __future__ import annotations

__all__ = ["RuntimeObserver"]


class RuntimeObserver:
    """Called by `JobRuntime`; override what you measure."""

    def submitted(self, seconds: float, *, replay: bool) -> None:
        """A submit was answered: a new job, or an idempotent replay (§7.2)."""

    def delegated(self) -> None:
        """A running job started a delegated child (§10): a new job, not submitted."""

    def launched(self) -> None:
        """A job (submitted or delegated) started running."""

    def finished(self, status: int) -> None:
        """A job reached a terminal `JobStatus`."""

    def events_committed(self, count: int) -> None:
        """`count` job events were written to the store."""

    def revocation_failed(self) -> None:
        """A credential value could not be revoked after every attempt (§14)."""

    def credentials_unrevoked(self, count: int) -> None:
        """After a sweep: `count` values due for revocation are still live (§14)."""
