"""The runtime's caps and windows (`[runtime]` in the configuration), each with its spec
section: the one place a reader finds every bound the runtime enforces.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RuntimeLimits"]


@dataclass(frozen=True, slots=True)
class RuntimeLimits:
    """Caps and windows; every field is a documented configuration knob."""

    chunk_bytes: int = 192 * 1024  # base64 of 192 KiB is 256 KiB: frames stay far below 1 MiB
    max_chunk_bytes: int = 1024 * 1024  # §14: cap on one result chunk
    max_result_bytes: int = 256 * 1024 * 1024  # §14: cap on one streamed result
    idempotency_ttl_sec: float = 24 * 3600.0  # §7.2: how long a key replays
    lease_grace_sec: float = 1.0  # §14: bounded grace before an expired job is ended
    max_pending_writes: int = 8192  # back-pressure: emitters wait beyond this
    max_pending_event_bytes: int = 16 * 1024 * 1024  # or beyond this many bytes of events
    revoke_attempts: int = 5  # §9.8.2: tries before a revocation waits for the next sweep
    revoke_retry_sec: float = 60.0  # §14: how often unrevoked credentials are retried
    shutdown_grace_sec: float = 10.0  # how long running jobs get to finish on stop
    replay_cache_entries: int = 10_000  # idempotency claims kept in memory for fast replay
    replay_cache_bytes: int = 64 * 1024 * 1024  # and the bytes they may hold together
    recent_jobs: int = 512  # small finished jobs kept in memory for the followers that come next
    retention_sec: float = 7 * 24 * 3600.0  # finished jobs are purged this long after; 0: never
