"""Leases: capability grants, their matching, subsetting and expiry (spec §9).

A lease maps namespaces to glob patterns (§9.2). Everything an agent does
through the runtime is checked against it (§9.3), so the one property this
module exists for is: **no spelling of a resource escapes a grant**. Both
the patterns and every resource checked against them are first reduced to
one canonical form — percent-escapes decoded, ``.``/``..``/``//`` resolved,
scheme and host lowercased, default ports dropped, userinfo, control
characters and NUL rejected — and only then matched segment by segment.
Callers should act on the canonical resource :meth:`Lease.authorize`
returns, so that what was checked is exactly what is touched.

Pattern kinds by namespace:

.. code-block:: text

    fs.read, fs.write                 path globs     /ws/src/**
    net.fetch                         URL globs      https://*.example.com/v1/**
    tool.call, agent.delegate,        name globs     tier-fast/*
      model.use, x-<anything>
    cost.budget                       amounts        USD:5.00   (see _budget)

Globs work on segments (``/`` separates them; in a URL host, ``.``
separates labels): ``*`` alone matches exactly one non-empty segment, ``*``
inside a segment matches any run of characters within it, and ``**`` (only
as a whole path segment) matches any number of segments, zero included.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from encodings import idna
from types import MappingProxyType
from urllib.parse import quote, unquote, urlsplit

from arcp_grpc.errors import InvalidRequest, LeaseSubsetViolation, PermissionDenied
from arcp_grpc.lease.budget import format_amount, parse_amount

__all__ = [
    "BUDGET_NAMESPACE",
    "NAME_NAMESPACES",
    "PATH_NAMESPACES",
    "RESERVED_NAMESPACES",
    "URL_NAMESPACES",
    "Lease",
    "LeaseClock",
    "canonical_path",
    "canonical_url",
    "check_subset",
    "child_expiry",
    "format_timestamp",
    "glob_match",
    "parse_expires_at",
    "parse_timestamp",
]

PATH_NAMESPACES = frozenset({"fs.read", "fs.write"})
URL_NAMESPACES = frozenset({"net.fetch"})
NAME_NAMESPACES = frozenset({"tool.call", "agent.delegate", "model.use"})
BUDGET_NAMESPACE = "cost.budget"
#: The §9.2 table; anything else must be a vendor ``x-`` namespace.
RESERVED_NAMESPACES = PATH_NAMESPACES | URL_NAMESPACES | NAME_NAMESPACES | {BUDGET_NAMESPACE}

# Bounds so a hostile lease cannot make matching or subsetting expensive.
_MAX_NAMESPACES = 32
_MAX_PATTERNS = 256
_MAX_PATH_LENGTH = 4096
_MAX_URL_LENGTH = 8192
_MAX_NAME_LENGTH = 512
_MAX_DECODE_ROUNDS = 8

_VENDOR_NAMESPACE = re.compile(r"x-[a-z0-9][a-z0-9._-]{0,62}")
# C0 controls, DEL and C1 controls: never part of a resource anyone grants.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f\s]")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_HOST_LABEL = re.compile(r"[a-z0-9_*-]+")
_PORT = re.compile(r"[0-9]{1,5}")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# Percent-escapes a URL path decodes before resolving dot segments: the
# unreserved set (RFC 3986 §2.3, decoding them never changes meaning) plus
# "/" and "\" (which some servers treat as "/"), so ".." and separators
# cannot hide behind escapes. Nested "%25" layers are peeled as well.
_URL_ESCAPE = re.compile(r"%(?:25)*([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_URL_DECODED = _UNRESERVED | {"/", "\\"}
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# An escaped control character in a path (even under "%25" layers) would
# reach a server as NUL or a line break; paths never need one.
_ESCAPED_CONTROL = re.compile(r"%(?:25)*(?:[01][0-9A-Fa-f]|7[Ff])")
_QUERY_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# Characters kept as they are in a canonical path or query; everything else
# (non-ASCII, quotes, ...) is percent-encoded as UTF-8.
_URL_SAFE = "/:@!$&'()*+,;=%-._~"
_URL_QUERY_SAFE = _URL_SAFE + "?"


# --------------------------------------------------------------------------
# Canonical forms


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message)


def _decode_until_stable(text: str, decode: Callable[[str], str]) -> str:
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = decode(text)
        if decoded == text:
            return text
        text = decoded
    raise _invalid("resource is percent-encoded too many times")


def _strict_unquote(text: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise _invalid("resource has percent-escapes that are not UTF-8") from None


def _resolve_dots(segments: Iterable[str]) -> list[str]:
    """Posix dot-segment resolution; ``..`` above the root stays at the root."""
    stack: list[str] = []
    for segment in segments:
        if segment in ("", "."):
            continue
        if segment == "..":
            if stack:
                stack.pop()
            continue
        stack.append(segment)
    return stack


def canonical_path(path: str) -> str:
    """The one spelling of a filesystem path that leases match (§9.2, §9.3).

    Percent-escapes are decoded until nothing changes (so ``%252e`` is
    ``.``), backslashes count as separators, ``//`` collapses, ``.`` and
    ``..`` resolve posix-style with ``..`` at the root staying there, and a
    trailing ``/`` goes. Relative paths, control characters (NUL included)
    and escapes that are not UTF-8 are rejected with :class:`InvalidRequest`.
    """
    if not isinstance(path, str):
        raise _invalid("path must be a string")
    if len(path) > _MAX_PATH_LENGTH:
        raise _invalid(f"path is longer than {_MAX_PATH_LENGTH} characters")
    decoded = _decode_until_stable(path, _strict_unquote)
    if _CONTROL.search(decoded):
        raise _invalid("path contains a control character")
    decoded = decoded.replace("\\", "/")
    if not decoded.startswith("/"):
        raise _invalid(f"path {path!r} is not absolute")
    return "/" + "/".join(_resolve_dots(decoded.split("/")))


@dataclass(frozen=True, slots=True)
class _Url:
    """A canonical URL and the parts leases match; ``port`` is ``None`` when default."""

    text: str
    scheme: str
    host: str
    port: int | None
    path: str
    query: str | None
    labels: tuple[str, ...]
    segments: tuple[str, ...]

    @classmethod
    def build(cls, scheme: str, host: str, port: int | None, path: str, query: str | None) -> _Url:
        text = f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"
        if query is not None:
            text += f"?{query}"
        segments = tuple(segment for segment in path.split("/") if segment)
        return cls(text, scheme, host, port, path, query, tuple(host.split(".")), segments)


def _decode_url_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    if char in _URL_DECODED:
        return "/" if char == "\\" else char
    return match.group(0).upper()


def _decode_url_escapes(text: str) -> str:
    return _URL_ESCAPE.sub(_decode_url_escape, text)


def _normalise_query_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else match.group(0).upper()


def _canonical_query(query: str) -> str:
    # Only RFC 3986 §6.2.2 normalisations: a query is data, not a path.
    return _encode_rest(_QUERY_ESCAPE.sub(_normalise_query_escape, query), _URL_QUERY_SAFE)


def _encode_rest(text: str, safe: str) -> str:
    return quote(_LONE_PERCENT.sub("%25", text), safe=safe)


def _canonical_host(host: str) -> str:
    if host.startswith("["):
        if not host.endswith("]") or "%" in host:  # no zone ids either
            raise _invalid("URL has a malformed IPv6 host")
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise _invalid("URL has a malformed IPv6 host") from None
    # One trailing dot names the same host (an FQDN); more is malformed.
    host = host.removesuffix(".")
    labels = host.split(".")
    canonical: list[str] = []
    for label in labels:
        if not label.isascii():
            try:
                label = idna.ToASCII(label).decode("ascii")
            except UnicodeError:
                raise _invalid("URL host is not a valid internationalised name") from None
        label = label.lower()
        if not _HOST_LABEL.fullmatch(label):
            raise _invalid(f"URL host label {label!r} is not allowed")
        canonical.append(label)
    return ".".join(canonical)


def _split_authority(netloc: str) -> tuple[str, int | None]:
    if "@" in netloc:
        # userinfo is where "https://good.example@evil.example/" hides.
        raise _invalid("URL must not contain userinfo")
    host, port_text = netloc, ""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end == -1:
            raise _invalid("URL has a malformed IPv6 host")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _invalid("URL has a malformed authority")
        port_text = rest[1:]
    elif ":" in netloc:
        host, port_text = netloc.rsplit(":", 1)
    if not host:
        raise _invalid("URL has no host")
    if not port_text:
        return host, None
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise _invalid(f"URL port {port_text!r} is not a port number")
    return host, int(port_text)


def _url_dot_segment(segment: str) -> str:
    # Servlet containers read "..;x" as "..": a path parameter cannot hide a dot segment.
    head = segment.split(";", 1)[0]
    return head if head in (".", "..") else segment


def _parse_url(url: str) -> _Url:
    if not isinstance(url, str):
        raise _invalid("URL must be a string")
    if len(url) > _MAX_URL_LENGTH:
        raise _invalid(f"URL is longer than {_MAX_URL_LENGTH} characters")
    # Raw backslashes and whitespace are not URL characters (RFC 3986), and
    # HTTP clients disagree about them; refuse rather than guess.
    if _CONTROL_OR_SPACE.search(url) or "\\" in url:
        raise _invalid("URL contains whitespace, a control character or a backslash")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _invalid(f"URL {url!r} is malformed") from None
    scheme = parts.scheme.lower()
    if not _SCHEME.fullmatch(scheme) or not url[len(scheme) :].startswith("://"):
        raise _invalid(f"URL {url!r} needs a scheme and a host")
    raw_host, port = _split_authority(parts.netloc)
    host = _canonical_host(raw_host)
    if port is not None and _DEFAULT_PORTS.get(scheme) == port:
        port = None
    path = _decode_until_stable(parts.path or "/", _decode_url_escapes)
    if _ESCAPED_CONTROL.search(path):
        raise _invalid("URL path contains an escaped control character")
    trailing = path.endswith(("/", "/.", "/..")) or path in (".", "..")
    segments = _resolve_dots(_url_dot_segment(segment) for segment in path.split("/"))
    path = "/" + "/".join(segments) + ("/" if trailing and segments else "")
    query = _canonical_query(parts.query) if parts.query else None
    return _Url.build(scheme, host, port, _encode_rest(path, _URL_SAFE), query)


def canonical_url(url: str) -> str:
    """The one spelling of a URL that ``net.fetch`` grants match (§9.2, §9.3).

    Scheme and host are lowercased (IDNA hosts become ``xn--``), default
    ports (80 for http/ws, 443 for https/wss) and the fragment are dropped,
    percent-escapes of unreserved characters and of ``/`` and ``\\`` in the
    path are decoded (peeling nested ``%25``) before ``.``/``..`` resolve and
    ``//`` collapses, and the query is kept. Userinfo, raw backslashes,
    whitespace and control characters are rejected with :class:`InvalidRequest`.
    """
    return _parse_url(url).text


# --------------------------------------------------------------------------
# Segment globs


@dataclass(frozen=True, slots=True)
class _Segment:
    """One compiled glob segment: a literal, ``*``, a partial glob, or ``**``."""

    text: str
    multi: bool
    regex: re.Pattern[str] | None

    @classmethod
    def compile(cls, text: str) -> _Segment:
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


def _sequence_match(
    patterns: Sequence[_Segment],
    values: Sequence[str],
    accept: Callable[[_Segment, str], bool],
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


def _match_one(segment: _Segment, value: str) -> bool:
    return segment.matches(value)


def _cover_one(segment: _Segment, child: str) -> bool:
    return segment.covers(child)


def _compile_segments(segments: Iterable[str]) -> tuple[_Segment, ...]:
    return tuple(_Segment.compile(segment) for segment in segments)


def glob_match(pattern: str, value: str) -> bool:
    """Match ``value`` against ``pattern``, both split into ``/`` segments.

    ``*`` alone matches one non-empty segment, ``*`` inside a segment any
    characters within it, ``**`` any number of segments (zero included).
    No canonicalisation happens here; :class:`Lease` canonicalises first.
    """
    return _sequence_match(_compile_segments(pattern.split("/")), value.split("/"), _match_one)


def _check_glob_segments(segments: Iterable[str], what: str) -> None:
    for segment in segments:
        if "**" in segment and segment != "**":
            raise _invalid(f"{what}: '**' must be a whole segment, not {segment!r}")


# --------------------------------------------------------------------------
# Compiled patterns, one kind per namespace family


@dataclass(frozen=True, slots=True)
class _Split:
    """A canonical path or name resource, split once into its segments."""

    text: str
    segments: tuple[str, ...]


class _Matcher:
    """A compiled lease pattern of one namespace family.

    ``parse_value`` canonicalises a resource once per check; ``matches``
    then runs against that parsed value for each pattern of the namespace.
    """

    __slots__ = ()
    text: str

    def __init__(self, pattern: str) -> None:
        raise NotImplementedError

    @staticmethod
    def parse_value(resource: str) -> _Split | _Url:
        raise NotImplementedError

    def matches(self, value: _Split | _Url) -> bool:
        raise NotImplementedError

    def covers(self, child: _Matcher) -> bool:
        raise NotImplementedError


def _path_segments(path: str) -> tuple[str, ...]:
    return tuple(segment for segment in path.split("/") if segment)


class _PathMatcher(_Matcher):
    __slots__ = ("segments", "text")

    def __init__(self, pattern: str) -> None:
        self.text = canonical_path(pattern)
        raw = _path_segments(self.text)
        _check_glob_segments(raw, "path pattern")
        self.segments = _compile_segments(raw)

    @staticmethod
    def parse_value(resource: str) -> _Split | _Url:
        path = canonical_path(resource)
        return _Split(path, _path_segments(path))

    def matches(self, value: _Split | _Url) -> bool:
        return _sequence_match(self.segments, value.segments, _match_one)

    def covers(self, child: _Matcher) -> bool:
        if not isinstance(child, _PathMatcher):
            return False
        return _sequence_match(self.segments, [s.text for s in child.segments], _cover_one)


class _UrlMatcher(_Matcher):
    __slots__ = ("host", "path", "query", "text", "url")

    def __init__(self, pattern: str) -> None:
        self.url = _parse_url(pattern)
        self.text = self.url.text
        _check_glob_segments(self.url.labels, "URL pattern host")
        if "**" in self.url.labels:
            raise _invalid("URL pattern host: '**' is not allowed, use '*' per label")
        _check_glob_segments(self.url.segments, "URL pattern path")
        self.host = _compile_segments(self.url.labels)
        self.path = _compile_segments(self.url.segments)
        self.query = None if self.url.query is None else _compile_query(self.url.query)

    @staticmethod
    def parse_value(resource: str) -> _Split | _Url:
        url = _parse_url(resource)
        if "*" in url.host:
            raise _invalid("URL host contains '*'")
        return url

    def _accepts(self, url: _Url, accept: Callable[[_Segment, str], bool]) -> bool:
        if url.scheme != self.url.scheme or url.port != self.url.port:
            return False
        if not _sequence_match(self.host, url.labels, accept):
            return False
        if not _sequence_match(self.path, url.segments, accept):
            return False
        # A pattern without a query grants every query of its paths.
        if self.query is None:
            return True
        return url.query is not None and self.query.fullmatch(url.query) is not None

    def matches(self, value: _Split | _Url) -> bool:
        return isinstance(value, _Url) and self._accepts(value, _match_one)

    def covers(self, child: _Matcher) -> bool:
        return isinstance(child, _UrlMatcher) and self._accepts(child.url, _cover_one)


def _compile_query(query: str) -> re.Pattern[str]:
    # '*' in a query pattern stands for any run of characters within one
    # parameter (never across '&').
    return re.compile("[^&]*".join(re.escape(piece) for piece in query.split("*")))


def _check_name(name: str) -> str:
    if not isinstance(name, str):
        raise _invalid("name must be a string")
    if not name or len(name) > _MAX_NAME_LENGTH:
        raise _invalid(f"name must have 1 to {_MAX_NAME_LENGTH} characters")
    if _CONTROL_OR_SPACE.search(name):
        raise _invalid("name contains whitespace or a control character")
    if "" in name.split("/"):
        raise _invalid(f"name {name!r} has an empty '/' segment")
    return name


class _NameMatcher(_Matcher):
    __slots__ = ("segments", "text")

    def __init__(self, pattern: str) -> None:
        self.text = _check_name(pattern)
        raw = pattern.split("/")
        _check_glob_segments(raw, "name pattern")
        self.segments = _compile_segments(raw)

    @staticmethod
    def parse_value(resource: str) -> _Split | _Url:
        name = _check_name(resource)
        return _Split(name, tuple(name.split("/")))

    def matches(self, value: _Split | _Url) -> bool:
        return _sequence_match(self.segments, value.segments, _match_one)

    def covers(self, child: _Matcher) -> bool:
        if not isinstance(child, _NameMatcher):
            return False
        return _sequence_match(self.segments, child.text.split("/"), _cover_one)


class _AgentMatcher(_NameMatcher):
    """``agent.delegate`` names: a pattern without ``@`` grants every version (§7.5)."""

    __slots__ = ()

    def matches(self, value: _Split | _Url) -> bool:
        if super().matches(value):
            return True
        name, at, _ = value.text.partition("@")
        return bool(at) and "@" not in self.text and self._accepts_name(name, _match_one)

    def covers(self, child: _Matcher) -> bool:
        if super().covers(child):
            return True
        name, at, _ = child.text.partition("@")
        return bool(at) and "@" not in self.text and self._accepts_name(name, _cover_one)

    def _accepts_name(self, name: str, accept: Callable[[_Segment, str], bool]) -> bool:
        return _sequence_match(self.segments, name.split("/"), accept)


def _matcher_class(namespace: str) -> type[_Matcher] | None:
    if namespace in PATH_NAMESPACES:
        return _PathMatcher
    if namespace in URL_NAMESPACES:
        return _UrlMatcher
    if namespace == "agent.delegate":
        return _AgentMatcher
    if namespace in NAME_NAMESPACES or _VENDOR_NAMESPACE.fullmatch(namespace):
        return _NameMatcher
    return None


# --------------------------------------------------------------------------
# The lease


def _violation(message: str, **details: str) -> LeaseSubsetViolation:
    return LeaseSubsetViolation(f"{message} (§9.4)", details=details)


class Lease:
    """An immutable, validated, canonical lease (§9.1, §9.2).

    Build one with :meth:`parse` (a client's ``lease_request``) or
    :meth:`derive_child` (a delegation, §9.4). Patterns are stored in their
    canonical spelling, namespaces sorted, duplicates removed, so the
    effective lease echoed in ``job.accepted`` is deterministic.
    """

    __slots__ = ("_budget", "_grants", "_matchers")

    def __init__(
        self,
        grants: Mapping[str, tuple[str, ...]],
        matchers: Mapping[str, tuple[_Matcher, ...]],
        budget: Mapping[str, Decimal],
    ) -> None:
        """Internal: use :meth:`parse` or :meth:`derive_child`."""
        self._grants = MappingProxyType({ns: grants[ns] for ns in sorted(grants)})
        self._matchers = dict(matchers)
        self._budget = dict(budget)

    @classmethod
    def parse(cls, grants: Mapping[str, Sequence[str]]) -> Lease:
        """Validate and canonicalise a ``lease_request`` (§9.2).

        Unknown namespaces (neither reserved nor ``x-``), malformed patterns
        and two different amounts for one currency raise
        :class:`InvalidRequest` whose ``details.field`` points at the
        offender, e.g. ``lease_request.fs.read[1]``.
        """
        if not isinstance(grants, Mapping):
            raise InvalidRequest(
                "lease_request must be an object", details={"field": "lease_request"}
            )
        if len(grants) > _MAX_NAMESPACES:
            raise InvalidRequest(
                f"lease_request has more than {_MAX_NAMESPACES} namespaces",
                details={"field": "lease_request"},
            )
        canonical: dict[str, tuple[str, ...]] = {}
        matchers: dict[str, tuple[_Matcher, ...]] = {}
        budget: dict[str, Decimal] = {}
        for namespace in sorted(grants, key=str):
            patterns = _pattern_list(namespace, grants[namespace])
            if namespace == BUDGET_NAMESPACE:
                canonical[namespace], budget = _parse_budget(patterns)
                matchers[namespace] = ()
                continue
            klass = _matcher_class(namespace)
            if klass is None:
                field = f"lease_request.{namespace}"
                raise InvalidRequest(
                    f"{field}: namespace {namespace!r} is neither reserved (§9.2) "
                    "nor 'x-' prefixed",
                    details={"field": field},
                )
            compiled: dict[str, _Matcher] = {}
            for index, pattern in enumerate(patterns):
                try:
                    matcher = klass(pattern)
                except InvalidRequest as exc:
                    raise _field_error(namespace, index, exc.message) from None
                compiled.setdefault(matcher.text, matcher)
            canonical[namespace] = tuple(compiled)
            matchers[namespace] = tuple(compiled.values())
        return cls(canonical, matchers, budget)

    @property
    def grants(self) -> Mapping[str, tuple[str, ...]]:
        """Canonical patterns per namespace; namespaces sorted, pattern order kept."""
        return self._grants

    def to_dict(self) -> dict[str, list[str]]:
        """The lease as plain JSON-ready data, for ``job.accepted`` (§7.1)."""
        return {namespace: list(patterns) for namespace, patterns in self._grants.items()}

    def budget_amounts(self) -> dict[str, Decimal]:
        """``cost.budget`` as currency → amount (§9.6); empty without a budget."""
        return dict(self._budget)

    def permits(self, namespace: str, resource: str) -> bool:
        """Whether the lease covers ``resource`` in ``namespace`` (§9.3).

        The resource is canonicalised exactly as patterns were; a resource
        that cannot be canonicalised (relative path, NUL, userinfo, ...) and
        a namespace the lease lacks are both simply not permitted.
        ``cost.budget`` is not an authority namespace and permits nothing.
        """
        matchers = self._matchers.get(namespace)
        if not matchers:
            return False
        try:
            value = matchers[0].parse_value(resource)
        except InvalidRequest:
            return False
        return any(matcher.matches(value) for matcher in matchers)

    def authorize(self, namespace: str, resource: str) -> str:
        """Check ``resource`` (§9.3) and return the canonical form to act on.

        Raises :class:`PermissionDenied` when not covered. Acting on the
        returned spelling, not the caller's, guarantees the operation touches
        exactly what the lease was checked against.
        """
        matchers = self._matchers.get(namespace)
        if not matchers:
            raise PermissionDenied(
                f"the lease grants nothing in {namespace!r} (§9.3)",
                details={"namespace": namespace},
            )
        try:
            value = matchers[0].parse_value(resource)
        except InvalidRequest as exc:
            raise PermissionDenied(
                f"{namespace} resource rejected: {exc.message} (§9.3)",
                details={"namespace": namespace},
            ) from None
        if not any(matcher.matches(value) for matcher in matchers):
            raise PermissionDenied(
                f"{namespace} {resource!r} is not covered by the lease (§9.3)",
                details={"namespace": namespace, "resource": resource},
            )
        return value.text

    def derive_child(
        self,
        request: Mapping[str, Sequence[str]] | None,
        parent_remaining: Mapping[str, Decimal],
    ) -> Lease:
        """The lease of a delegated job, ``self`` being the delegating job's (§9.4, §10).

        ``parent_remaining`` is what the parent may still hand out per
        currency (``BudgetCounters.available()``). Without a request the
        child inherits this lease with each budget capped at the remaining
        amount. A request is parsed and must be a subset
        (:func:`check_subset`); then two bounds are filled in from the
        parent so that no runtime default can widen the child: budget
        currencies the child did not name are inherited (capped), so every
        cost the child reports is also charged to the parent; and
        ``model.use`` is inherited when the child omits it, because an
        absent ``model.use`` may mean "any model" by policy (§9.7).
        """
        inherited_budget = _capped_budget(self._budget, parent_remaining)
        if request is None:
            grants = dict(self._grants)
            matchers = dict(self._matchers)
            budget = inherited_budget
        else:
            child = Lease.parse(request)
            check_subset(child, self, parent_remaining=parent_remaining)
            grants = dict(child._grants)
            matchers = dict(child._matchers)
            budget = {**inherited_budget, **child._budget}
            if "model.use" in self._grants and "model.use" not in grants:
                grants["model.use"] = self._grants["model.use"]
                matchers["model.use"] = self._matchers["model.use"]
        if BUDGET_NAMESPACE in self._grants or BUDGET_NAMESPACE in grants:
            budget = {currency: budget[currency] for currency in sorted(budget)}
            grants[BUDGET_NAMESPACE] = tuple(
                f"{currency}:{format_amount(amount)}" for currency, amount in budget.items()
            )
            matchers[BUDGET_NAMESPACE] = ()
        return Lease(grants, matchers, budget)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Lease):
            return NotImplemented
        return self._grants == other._grants

    def __hash__(self) -> int:
        return hash(tuple(self._grants.items()))

    def __repr__(self) -> str:
        return f"Lease({self.to_dict()!r})"


def _field_error(namespace: str, index: int, message: str) -> InvalidRequest:
    field = f"lease_request.{namespace}[{index}]"
    return InvalidRequest(f"{field}: {message}", details={"field": field})


def _pattern_list(namespace: object, patterns: object) -> Sequence[str]:
    if not isinstance(namespace, str):
        raise InvalidRequest("lease namespaces must be strings", details={"field": "lease_request"})
    field = f"lease_request.{namespace}"
    # A bare string is a Sequence too; "fs.read": "/ws/**" is a client bug.
    if isinstance(patterns, str | bytes) or not isinstance(patterns, Sequence):
        raise InvalidRequest(f"{field} must be a list of strings", details={"field": field})
    if len(patterns) > _MAX_PATTERNS:
        raise InvalidRequest(
            f"{field} has more than {_MAX_PATTERNS} patterns", details={"field": field}
        )
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            raise _field_error(namespace, index, "pattern must be a string")
    return patterns


def _parse_budget(patterns: Sequence[str]) -> tuple[tuple[str, ...], dict[str, Decimal]]:
    budget: dict[str, Decimal] = {}
    texts: dict[str, str] = {}
    for index, pattern in enumerate(patterns):
        try:
            currency, amount = parse_amount(pattern)
        except InvalidRequest as exc:
            raise _field_error(BUDGET_NAMESPACE, index, exc.message) from None
        if currency in budget:
            # A repeat of the same amount is a duplicate; another is ambiguous.
            if budget[currency] != amount:
                raise _field_error(
                    BUDGET_NAMESPACE, index, f"a second, different amount for {currency!r}"
                )
            continue
        budget[currency] = amount
        texts[currency] = f"{currency}:{format_amount(amount)}"
    return tuple(texts.values()), budget


def _budget_limit(granted: Decimal, remaining: Decimal | None) -> Decimal:
    return granted if remaining is None or granted <= remaining else remaining


def _capped_budget(
    budget: Mapping[str, Decimal], remaining: Mapping[str, Decimal]
) -> dict[str, Decimal]:
    capped: dict[str, Decimal] = {}
    for currency, granted in budget.items():
        limit = _budget_limit(granted, remaining.get(currency))
        # An overspent parent hands out nothing, not a negative amount.
        capped[currency] = limit if limit > 0 else Decimal(0)
    return capped


def check_subset(child: Lease, parent: Lease, *, parent_remaining: Mapping[str, Decimal]) -> None:
    """Raise :class:`LeaseSubsetViolation` unless ``child`` ⊆ ``parent`` (§9.4).

    Every child pattern must be covered by one parent pattern of the same
    namespace (pattern contains pattern, decided conservatively: when in
    doubt, not covered). A child budget must name only parent currencies and
    stay within what the parent has left (``parent_remaining``, or the
    parent's granted amount for a currency missing from it). Namespaces are
    checked in sorted order; the error names the first offender.
    """
    for namespace, patterns in child.grants.items():
        if namespace == BUDGET_NAMESPACE:
            _check_budget_subset(child, parent, parent_remaining)
            continue
        if not patterns:
            continue
        parent_matchers = parent._matchers.get(namespace)
        if parent_matchers is None:
            raise _violation(
                f"the parent lease grants nothing in {namespace!r}", namespace=namespace
            )
        for index, matcher in enumerate(child._matchers[namespace]):
            if not any(candidate.covers(matcher) for candidate in parent_matchers):
                raise _violation(
                    f"{namespace} {matcher.text!r} is not covered by the parent lease",
                    namespace=namespace,
                    pattern=matcher.text,
                    field=f"lease_request.{namespace}[{index}]",
                )


def _check_budget_subset(
    child: Lease, parent: Lease, parent_remaining: Mapping[str, Decimal]
) -> None:
    for currency, amount in child.budget_amounts().items():
        granted = parent._budget.get(currency)
        if granted is None:
            raise _violation(
                f"cost.budget currency {currency!r} is not in the parent's budget",
                namespace=BUDGET_NAMESPACE,
                pattern=f"{currency}:{format_amount(amount)}",
            )
        limit = _budget_limit(granted, parent_remaining.get(currency))
        if amount > limit:
            raise _violation(
                f"cost.budget {currency}:{format_amount(amount)} exceeds the parent's "
                f"remaining {currency}:{format_amount(limit)}",
                namespace=BUDGET_NAMESPACE,
                pattern=f"{currency}:{format_amount(amount)}",
            )


# --------------------------------------------------------------------------
# Expiry (§9.5)

_EXPIRES_FIELD = "lease_constraints.expires_at"
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(Z|\+00:00)"
)


def _expiry_error(message: str) -> InvalidRequest:
    return InvalidRequest(message, details={"field": _EXPIRES_FIELD})


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 UTC timestamp (``Z`` or ``+00:00``) into an aware datetime.

    §9.5 requires UTC; any other offset, a naive time, or a date that does
    not exist raises :class:`InvalidRequest` on ``lease_constraints.expires_at``.
    Fractions beyond microseconds are truncated.
    """
    if not isinstance(text, str) or len(text) > 64:
        raise _expiry_error("expires_at must be an RFC 3339 UTC timestamp string")
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise _expiry_error(f"expires_at {text!r} is not an RFC 3339 UTC timestamp (§9.5)")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micro = int((match.group(7) or "0").ljust(6, "0")[:6])
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError:
        raise _expiry_error(f"expires_at {text!r} is not a valid date and time") from None


def format_timestamp(moment: datetime) -> str:
    """The canonical RFC 3339 spelling: UTC, ``Z``, fraction only when non-zero."""
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_expires_at(text: str, *, now: datetime) -> datetime:
    """Validate ``lease_constraints.expires_at`` at submission (§9.5).

    It must be a UTC RFC 3339 timestamp strictly after ``now`` (an aware
    datetime the caller supplies); anything else is :class:`InvalidRequest`.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    moment = parse_timestamp(text)
    if moment <= now:
        raise _expiry_error(f"expires_at {text!r} is not in the future (§9.5)")
    return moment


def child_expiry(child: datetime | None, parent: datetime | None) -> datetime | None:
    """A delegated lease's effective expiry: never later than the parent's (§9.4).

    A child without one inherits the parent's; a later one is a
    :class:`LeaseSubsetViolation`.
    """
    if parent is None:
        return child
    if child is None:
        return parent
    if child > parent:
        raise LeaseSubsetViolation(
            f"expires_at {format_timestamp(child)} is after the parent's "
            f"{format_timestamp(parent)} (§9.4)",
            details={"field": _EXPIRES_FIELD},
        )
    return child


class LeaseClock:
    """A lease deadline on the monotonic clock (§9.5, §14).

    The wall-clock ``expires_at`` is converted once, at construction, into a
    monotonic deadline, so later wall-clock steps (NTP, operator changes)
    cannot shorten or extend a lease. Clocks are injected; nothing here reads
    the time.
    """

    __slots__ = ("_deadline", "expires_at")

    def __init__(self, expires_at: datetime | None, wall_now: datetime, mono_now: float) -> None:
        self.expires_at = expires_at
        self._deadline: float | None = None
        if expires_at is not None:
            remaining: timedelta = expires_at - wall_now
            self._deadline = mono_now + remaining.total_seconds()

    @property
    def deadline(self) -> float | None:
        """The monotonic time at which the lease expires, or ``None`` for never."""
        return self._deadline

    def expired(self, mono_now: float) -> bool:
        """True at or after the deadline (§9.5: "at or after ``expires_at``")."""
        return self._deadline is not None and mono_now >= self._deadline

    def seconds_left(self, mono_now: float) -> float | None:
        """Seconds until expiry (0.0 once expired), or ``None`` without a deadline."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - mono_now)
