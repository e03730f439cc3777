"""Compiled lease patterns, one kind per namespace family (§9.2).

The §9.2 table decides how a namespace's patterns are read:

.. code-block:: text

    fs.read, fs.write                 path globs     /ws/src/**
    net.fetch                         URL globs      https://*.example.com/v1/**
    tool.call, agent.delegate,        name globs     tier-fast/*
      model.use, x-<anything>
    cost.budget                       amounts        USD:5.00   (see budget)

A matcher canonicalises its pattern once, when the lease is parsed; a
resource is canonicalised once per check (``parse_value``) and then tried
against each pattern of the namespace (``matches``, §9.3). ``covers``
decides pattern-contains-pattern for delegation (§9.4), conservatively:
when in doubt, not covered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from arcp_grpc.errors import InvalidRequest
from arcp_grpc.lease.canonical import Url, canonical_path, check_name, parse_url
from arcp_grpc.lease.patterns import (
    Segment,
    check_glob_segments,
    compile_segments,
    cover_one,
    match_one,
    sequence_match,
)

__all__ = [
    "BUDGET_NAMESPACE",
    "NAME_NAMESPACES",
    "PATH_NAMESPACES",
    "RESERVED_NAMESPACES",
    "URL_NAMESPACES",
    "Matcher",
    "matcher_class",
]

PATH_NAMESPACES = frozenset({"fs.read", "fs.write"})
URL_NAMESPACES = frozenset({"net.fetch"})
NAME_NAMESPACES = frozenset({"tool.call", "agent.delegate", "model.use"})
BUDGET_NAMESPACE = "cost.budget"
#: The §9.2 table; anything else must be a vendor ``x-`` namespace.
RESERVED_NAMESPACES = PATH_NAMESPACES | URL_NAMESPACES | NAME_NAMESPACES | {BUDGET_NAMESPACE}

_VENDOR_NAMESPACE = re.compile(r"x-[a-z0-9][a-z0-9._-]{0,62}")


@dataclass(frozen=True, slots=True)
class _Split:
    """A canonical path or name resource, split once into its segments."""

    text: str
    segments: tuple[str, ...]


class Matcher:
    """A compiled lease pattern of one namespace family.

    ``parse_value`` canonicalises a resource once per check; ``matches``
    then runs against that parsed value for each pattern of the namespace.
    """

    __slots__ = ()
    text: str

    def __init__(self, pattern: str) -> None:
        raise NotImplementedError

    @staticmethod
    def parse_value(resource: str) -> _Split | Url:
        raise NotImplementedError

    def matches(self, value: _Split | Url) -> bool:
        raise NotImplementedError

    def covers(self, child: Matcher) -> bool:
        raise NotImplementedError


def _path_segments(path: str) -> tuple[str, ...]:
    return tuple(segment for segment in path.split("/") if segment)


class _PathMatcher(Matcher):
    __slots__ = ("segments", "text")

    def __init__(self, pattern: str) -> None:
        self.text = canonical_path(pattern)
        raw = _path_segments(self.text)
        check_glob_segments(raw, "path pattern")
        self.segments = compile_segments(raw)

    @staticmethod
    def parse_value(resource: str) -> _Split | Url:
        path = canonical_path(resource)
        return _Split(path, _path_segments(path))

    def matches(self, value: _Split | Url) -> bool:
        return sequence_match(self.segments, value.segments, match_one)

    def covers(self, child: Matcher) -> bool:
        if not isinstance(child, _PathMatcher):
            return False
        return sequence_match(self.segments, [s.text for s in child.segments], cover_one)


class _UrlMatcher(Matcher):
    __slots__ = ("host", "path", "query", "text", "url")

    def __init__(self, pattern: str) -> None:
        self.url = parse_url(pattern)
        self.text = self.url.text
        check_glob_segments(self.url.labels, "URL pattern host")
        if "**" in self.url.labels:
            raise InvalidRequest("URL pattern host: '**' is not allowed, use '*' per label")
        check_glob_segments(self.url.segments, "URL pattern path")
        self.host = compile_segments(self.url.labels)
        self.path = compile_segments(self.url.segments)
        self.query = None if self.url.query is None else _compile_query(self.url.query)

    @staticmethod
    def parse_value(resource: str) -> _Split | Url:
        url = parse_url(resource)
        if "*" in url.host:
            raise InvalidRequest("URL host contains '*'")
        return url

    def _accepts(self, url: Url, accept: Callable[[Segment, str], bool]) -> bool:
        if url.scheme != self.url.scheme or url.port != self.url.port:
            return False
        if not sequence_match(self.host, url.labels, accept):
            return False
        if not sequence_match(self.path, url.segments, accept):
            return False
        # A pattern without a query grants every query of its paths.
        if self.query is None:
            return True
        return url.query is not None and self.query.fullmatch(url.query) is not None

    def matches(self, value: _Split | Url) -> bool:
        return isinstance(value, Url) and self._accepts(value, match_one)

    def covers(self, child: Matcher) -> bool:
        return isinstance(child, _UrlMatcher) and self._accepts(child.url, cover_one)


def _compile_query(query: str) -> re.Pattern[str]:
    # '*' in a query pattern stands for any run of characters within one
    # parameter (never across '&').
    return re.compile("[^&]*".join(re.escape(piece) for piece in query.split("*")))


class _NameMatcher(Matcher):
    __slots__ = ("segments", "text")

    def __init__(self, pattern: str) -> None:
        self.text = check_name(pattern)
        raw = pattern.split("/")
        check_glob_segments(raw, "name pattern")
        self.segments = compile_segments(raw)

    @staticmethod
    def parse_value(resource: str) -> _Split | Url:
        name = check_name(resource)
        return _Split(name, tuple(name.split("/")))

    def matches(self, value: _Split | Url) -> bool:
        return sequence_match(self.segments, value.segments, match_one)

    def covers(self, child: Matcher) -> bool:
        if not isinstance(child, _NameMatcher):
            return False
        return sequence_match(self.segments, child.text.split("/"), cover_one)


class _AgentMatcher(_NameMatcher):
    """``agent.delegate`` names: a pattern without ``@`` grants every version (§7.5)."""

    __slots__ = ()

    def matches(self, value: _Split | Url) -> bool:
        if super().matches(value):
            return True
        name, at, _ = value.text.partition("@")
        return bool(at) and "@" not in self.text and self._accepts_name(name, match_one)

    def covers(self, child: Matcher) -> bool:
        if super().covers(child):
            return True
        name, at, _ = child.text.partition("@")
        return bool(at) and "@" not in self.text and self._accepts_name(name, cover_one)

    def _accepts_name(self, name: str, accept: Callable[[Segment, str], bool]) -> bool:
        return sequence_match(self.segments, name.split("/"), accept)


def matcher_class(namespace: str) -> type[Matcher] | None:
    if namespace in PATH_NAMESPACES:
        return _PathMatcher
    if namespace in URL_NAMESPACES:
        return _UrlMatcher
    if namespace == "agent.delegate":
        return _AgentMatcher
    if namespace in NAME_NAMESPACES or _VENDOR_NAMESPACE.fullmatch(namespace):
        return _NameMatcher
    return None
