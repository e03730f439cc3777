"""Canonical forms of the resources leases name: paths, URLs and names (§9.2, §9.3).

A lease exists for one property: **no spelling of a resource escapes a grant**.
So both the patterns and every resource checked against them are first reduced
here to one canonical form — percent-escapes decoded, ``.``/``..``/``//``
resolved, scheme and host lowercased, default ports dropped, userinfo, control
characters and NUL rejected — and only then matched segment by segment
(:mod:`arcp_grpc.lease.patterns`). Pure; whatever cannot be canonicalised is an
:class:`InvalidRequest`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from encodings import idna
from urllib.parse import quote, unquote, urlsplit

from arcp_grpc.errors import InvalidRequest

__all__ = ["Url", "canonical_path", "canonical_url", "check_name", "parse_url"]

# Bounds so a hostile lease cannot make matching or subsetting expensive.
_MAX_PATH_LENGTH = 4096
_MAX_URL_LENGTH = 8192
_MAX_NAME_LENGTH = 512
_MAX_DECODE_ROUNDS = 8

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
class Url:
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
    def build(cls, scheme: str, host: str, port: int | None, path: str, query: str | None) -> Url:
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


def parse_url(url: str) -> Url:
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
    return Url.build(scheme, host, port, _encode_rest(path, _URL_SAFE), query)


def canonical_url(url: str) -> str:
    """The one spelling of a URL that ``net.fetch`` grants match (§9.2, §9.3).

    Scheme and host are lowercased (IDNA hosts become ``xn--``), default
    ports (80 for http/ws, 443 for https/wss) and the fragment are dropped,
    percent-escapes of unreserved characters and of ``/`` and ``\\`` in the
    path are decoded (peeling nested ``%25``) before ``.``/``..`` resolve and
    ``//`` collapses, and the query is kept. Userinfo, raw backslashes,
    whitespace and control characters are rejected with :class:`InvalidRequest`.
    """
    return parse_url(url).text


def check_name(name: str) -> str:
    if not isinstance(name, str):
        raise _invalid("name must be a string")
    if not name or len(name) > _MAX_NAME_LENGTH:
        raise _invalid(f"name must have 1 to {_MAX_NAME_LENGTH} characters")
    if _CONTROL_OR_SPACE.search(name):
        raise _invalid("name contains whitespace or a control character")
    if "" in name.split("/"):
        raise _invalid(f"name {name!r} has an empty '/' segment")
    return name
