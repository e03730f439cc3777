"""The in-memory replay cache: per (principal, key), expiring, bounded (§7.2)."""

from __future__ import annotations

from arcp_grpc._replay_cache import Claimed, ReplayCache


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
