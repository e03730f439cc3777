"""Idempotency claims held in memory, so a replay costs no store read (§7.2).

The store stays the authority: an entry is added only after its claim is
committed (at first acceptance, or read back from the store), and it expires
with the claim's window. Bounded in entries and in bytes: a `JobAccepted` can
be as large as the core's message cap allows (a wide lease, many credentials),
so a count alone would not bound memory. The least recently used go first; an
entry larger than the whole byte budget is not kept (the store answers for it).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["ENTRY_OVERHEAD", "Claimed", "ReplayCache"]

ENTRY_OVERHEAD = 256
"""Bytes counted per entry beside its strings: the tuple, the dataclass, the dict slot."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A held idempotency key: whose it is, what it was, and its original acceptance."""

    job_id: str
    fingerprint: bytes
    accepted: bytes
    expires_at: float


class ReplayCache:
    """Recent claims in memory, so a replay costs no store round trip. The store
    stays the authority: entries are added only after the claim is committed."""

    def __init__(self, capacity: int, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], tuple[Claimed, int]] = OrderedDict()
        self._bytes = 0

    @property
    def held_bytes(self) -> int:
        """What the entries cost, as counted against `max_bytes`."""
        return self._bytes

    def get(self, principal: str, key: str, now: float) -> Claimed | None:
        entry = self._entries.get((principal, key))
        if entry is None:
            return None
        claimed, size = entry
        if claimed.expires_at <= now:
            del self._entries[(principal, key)]
            self._bytes -= size
            return None
        self._entries.move_to_end((principal, key))
        return claimed

    def put(self, principal: str, key: str, claimed: Claimed) -> None:
        size = _cost(principal, key, claimed)
        if self._capacity <= 0 or size > self._max_bytes:
            return
        old = self._entries.pop((principal, key), None)
        if old is not None:
            self._bytes -= old[1]
        self._entries[(principal, key)] = (claimed, size)
        self._bytes += size
        while len(self._entries) > self._capacity or self._bytes > self._max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._bytes -= evicted


def _cost(principal: str, key: str, claimed: Claimed) -> int:
    return (
        ENTRY_OVERHEAD
        + len(principal)
        + len(key)
        + len(claimed.job_id)
        + len(claimed.fingerprint)
        + len(claimed.accepted)
    )
