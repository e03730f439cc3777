"""Segment globs (§9.2): ``*``, partial ``*`` and ``**``, matched in polynomial time."""

from __future__ import annotations

import pytest

from arcp_grpc.lease.patterns import glob_match

# --------------------------------------------------------------------------
# glob_match


@pytest.mark.parametrize(
    ("pattern", "value", "matched"),
    [
        ("a/*/c", "a/b/c", True),
        ("a/*/c", "a/b/x/c", False),
        ("a/*/c", "a//c", False),  # '*' needs a non-empty segment
        ("a/**/c", "a/c", True),  # '**' matches zero segments
        ("a/**/c", "a/b/x/c", True),
        ("a/**/c", "a/b/x/d", False),
        ("a/**", "a", True),
        ("a/**/**/b", "a/b", True),
        ("a/**/b/**/c", "a/x/b/y/z/c", True),
        ("a/**/b/**/c", "a/x/y/z/c", False),
        ("*", "x", True),
        ("*", "", False),
        ("*", "x/y", False),
        ("x*", "x", True),
        ("x*", "xyz", True),
        ("x*", "yx", False),
        ("*x*", "abxcd", True),
        ("claude-3-opus-*", "claude-3-opus-2024", True),
        ("claude-3-opus-*", "claude-3-haiku", False),
        ("tier-fast/*", "tier-fast/gpt-mini", True),
        ("tier-fast/*", "tier-fast/a/b", False),
        ("a.b", "axb", False),  # '.' is literal, not a regex
        ("a+", "aa", False),
        ("[ab]", "a", False),  # no character classes
        ("?", "a", False),  # no '?' wildcard
    ],
)
def test_glob_match(pattern: str, value: str, matched: bool) -> None:
    assert glob_match(pattern, value) is matched


def test_glob_match_is_polynomial_with_many_double_stars() -> None:
    pattern = "/".join(["**"] * 40 + ["z"])
    value = "/".join(["a"] * 200)
    assert glob_match(pattern, value) is False  # returns promptly; no backtracking blow-up
