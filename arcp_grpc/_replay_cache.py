"""Idempotency claims held in memory, so a replay costs no store read (§7.2).

The store stays the authority: an entry is added only after its claim is
committed (at first acceptance, or read back from the store), and it expires
with the claim's window. Bounded: the least recently used entries go first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["Claimed", "ReplayCache"]


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

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, str], Claimed] = OrderedDict()

    def get(self, principal: str, key: str, now: float) -> Claimed | None:
        claimed = self._entries.get((principal, key))
        if claimed is None:
            return None
        if claimed.expires_at <= now:
            del self._entries[(principal, key)]
            return None
        self._entries.move_to_end((principal, key))
        return claimed

    def put(self, principal: str, key: str, claimed: Claimed) -> None:
        if self._capacity <= 0:
            return
        self._entries[(principal, key)] = claimed
        self._entries.move_to_end((principal, key))
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
