"""Segment globs, the pattern language of lease grants (§9.2).

Globs work on segments (``/`` separates them; in a URL host, ``.``
separates labels): ``*`` alone matches exactly one non-empty segment, ``*``
inside a segment matches any run of characters within it, and ``**`` (only
as a whole path segment) matches any number of segments, zero included.
The same matcher decides §9.3 (does a pattern match a resource) and §9.4
(does a parent pattern cover a child pattern), in time polynomial in the
segments however many ``**`` a hostile pattern has. Nothing is
canonicalised here: callers do that first (:mod:`arcp_grpc.lease.canonical`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from arcp_grpc.errors import InvalidRequest

__all__ = [
    "Segment",
    "check_glob_segments",
    "compile_segments",
    "cover_one",
    "glob_match",
    "match_one",
    "sequence_match",
]


@dataclass(frozen=True, slots=True)
class Segment:
    """One compiled glob segment: a literal, ``*``, a partial glob, or ``**``."""

    text: str
    multi: bool
    regex: re.Pattern[str] | None

    @classmethod
    def compile(cls, text: str) -> Segment:
        if text == "**":
            return cls(text, True, None)
        if "*" not in text:
            return cls(text, False, None)
        if text == "*":
            return cls(text, False, re.compile(r"[^/]+"))
        body = "[^/]*".join(re.escape(piece) for piece in text.split("*"))
        return cls(text, False, re.compile(body))

    def matches(self, value: str) -> bool:
        """Whether this (non-``**``) segment matches one literal value segment."""
        if self.regex is None:
            return self.text == value
        return self.regex.fullmatch(value) is not None

    def covers(self, child: str) -> bool:
        """Whether every segment ``child`` (itself a glob, not ``**``) matches, this matches.

        Matching the child's text with its ``*`` taken literally is sound:
        this pattern's literal characters are never ``*``, so each of the
        child's stars lies inside one of this pattern's stars, which can
        absorb whatever the child's star stands for.
        """
        if child == "**":
            return False
        return self.matches(child)


def sequence_match(
    patterns: Sequence[Segment],
    values: Sequence[str],
    accept: Callable[[Segment, str], bool],
) -> bool:
    """Segment-sequence glob matching, ``**`` matching any number of segments.

    Dynamic programming over suffixes: O(len(patterns) * len(values)),
    never exponential however many ``**`` a pattern has.
    """
    if not any(segment.multi for segment in patterns):
        return len(patterns) == len(values) and all(
            accept(segment, value) for segment, value in zip(patterns, values, strict=True)
        )
    count = len(values)
    following = [False] * count + [True]
    for segment in reversed(patterns):
        current = [False] * (count + 1)
        if segment.multi:
            current[count] = following[count]
            for index in range(count - 1, -1, -1):
                current[index] = following[index] or current[index + 1]
        else:
            for index in range(count - 1, -1, -1):
                current[index] = following[index + 1] and accept(segment, values[index])
        following = current
    return following[0]


def match_one(segment: Segment, value: str) -> bool:
    return segment.matches(value)


def cover_one(segment: Segment, child: str) -> bool:
    return segment.covers(child)


def compile_segments(segments: Iterable[str]) -> tuple[Segment, ...]:
    return tuple(Segment.compile(segment) for segment in segments)


def glob_match(pattern: str, value: str) -> bool:
    """Match ``value`` against ``pattern``, both split into ``/`` segments.

    ``*`` alone matches one non-empty segment, ``*`` inside a segment any
    characters within it, ``**`` any number of segments (zero included).
    No canonicalisation happens here; :class:`Lease` canonicalises first.
    """
    return sequence_match(compile_segments(pattern.split("/")), value.split("/"), match_one)


def check_glob_segments(segments: Iterable[str], what: str) -> None:
    for segment in segments:
        if "**" in segment and segment != "**":
            raise InvalidRequest(f"{what}: '**' must be a whole segment, not {segment!r}")
