"""The in-memory replay cache: per (principal, key), expiring, bounded (§7.2)."""

from __future__ import annotations

from arcp_grpc.runtime.replay_cache import Claimed, ReplayCache


def _claim(job: str, expires_at: float = 100.0) -> Claimed:
    return Claimed(job, b"fp-" + job.encode(), b"accepted-" + job.encode(), expires_at)


def test_a_claim_is_found_by_principal_and_key_only() -> None:
    cache = ReplayCache(10)
    cache.put("alice", "k", _claim("j1"))
    assert cache.get("alice", "k", now=1.0) == _claim("j1")
    assert cache.get("bob", "k", now=1.0) is None
    assert cache.get("alice", "other", now=1.0) is None


def test_an_expired_claim_is_gone() -> None:
    cache = ReplayCache(10)
    cache.put("alice", "k", _claim("j1", expires_at=5.0))
    assert cache.get("alice", "k", now=5.0) is None  # expiry is exclusive, like the store's
    assert cache.get("alice", "k", now=1.0) is None  # and it was dropped


def test_the_least_recently_used_claim_is_evicted_first() -> None:
    cache = ReplayCache(2)
    cache.put("alice", "a", _claim("ja"))
    cache.put("alice", "b", _claim("jb"))
    assert cache.get("alice", "a", now=1.0) is not None  # a is now the most recent
    cache.put("alice", "c", _claim("jc"))
    assert cache.get("alice", "b", now=1.0) is None
    assert cache.get("alice", "a", now=1.0) is not None
    assert cache.get("alice", "c", now=1.0) is not None


def test_capacity_zero_keeps_nothing() -> None:
    cache = ReplayCache(0)
    cache.put("alice", "k", _claim("j1"))
    assert cache.get("alice", "k", now=1.0) is None


def _sized(job: str, accepted_bytes: int) -> Claimed:
    return Claimed(job, b"f" * 32, b"a" * accepted_bytes, 100.0)


def test_bytes_bound_the_cache_not_only_entries() -> None:
    """A `JobAccepted` may be as large as the message cap: entries alone are no bound."""
    cache = ReplayCache(10_000, max_bytes=10_000)
    for index in range(50):
        cache.put("alice", f"k{index}", _sized(f"j{index}", 1_000))
    assert cache.held_bytes <= 10_000
    assert cache.get("alice", "k49", now=1.0) is not None  # the newest stay
    assert cache.get("alice", "k0", now=1.0) is None  # the oldest went


def test_an_entry_larger_than_the_budget_is_not_kept() -> None:
    cache = ReplayCache(10, max_bytes=10_000)
    cache.put("alice", "small", _sized("j1", 100))
    cache.put("alice", "huge", _sized("j2", 1_000_000))
    assert cache.get("alice", "huge", now=1.0) is None
    assert cache.get("alice", "small", now=1.0) is not None  # and nothing was evicted for it


def test_replacing_and_expiring_entries_give_their_bytes_back() -> None:
    cache = ReplayCache(10, max_bytes=100_000)
    cache.put("alice", "k", _sized("j1", 5_000))
    cache.put("alice", "k", _sized("j1", 1_000))
    assert cache.held_bytes < 2_000
    cache.put("alice", "short", Claimed("j2", b"f", b"a" * 1_000, expires_at=2.0))
    assert cache.get("alice", "short", now=3.0) is None
    assert cache.held_bytes < 2_000
