"""Leases (§9): canonical forms, escape attempts, globs, subsetting (§9.4) and expiry (§9.5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arcp_grpc.errors import InvalidRequest, LeaseSubsetViolation, PermissionDenied
from arcp_grpc.lease.canonical import canonical_path, canonical_url
from arcp_grpc.lease.expiry import (
    LeaseClock,
    child_expiry,
    format_timestamp,
    parse_expires_at,
    parse_timestamp,
)
from arcp_grpc.lease.lease import Lease, check_subset
from arcp_grpc.lease.matchers import RESERVED_NAMESPACES
from arcp_grpc.lease.patterns import glob_match

D = Decimal
NOW = datetime(2026, 5, 13, 19, 30, tzinfo=UTC)

# --------------------------------------------------------------------------
# canonical_path


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/", "/"),
        ("/ws", "/ws"),
        ("/ws/", "/ws"),
        ("/ws//a///b", "/ws/a/b"),
        ("/ws/./a/.", "/ws/a"),
        ("/ws/a/../b", "/ws/b"),
        ("/ws/../etc/**", "/etc/**"),
        ("/../../etc", "/etc"),  # '..' above the root stays at the root
        ("/..", "/"),
        ("/ws/%2e%2e/etc", "/etc"),
        ("/ws/%2E%2e/etc", "/etc"),
        ("/ws/%252e%252e/etc", "/etc"),  # decoded until stable
        ("/ws/%25252e%25252e/etc", "/etc"),
        ("/ws%2f..%2fetc", "/etc"),
        ("/ws/..\\..\\etc", "/etc"),  # backslashes separate
        ("\\ws\\a", "/ws/a"),
        ("/ws/%61", "/ws/a"),
        ("/ws/caf%C3%A9", "/ws/café"),
        ("/ws/a b", "/ws/a b"),  # spaces are legal file names
        ("/WS/A", "/WS/A"),  # paths are case-sensitive
        ("/ws/...", "/ws/..."),  # only exactly '..' climbs
        ("/ws/..a/b..", "/ws/..a/b.."),
        ("%2fws", "/ws"),  # the decoded spelling is what counts
    ],
)
def test_canonical_path(raw: str, canonical: str) -> None:
    assert canonical_path(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ws/a",  # relative
        "./ws",
        "/ws/a\x00b",
        "/ws/%00",
        "/ws/%2500",
        "/ws/\n",
        "/ws/%0a",
        "/ws/\x7f",
        "/ws/\x85",
        "/ws/%ff",  # not UTF-8
        "/ws/%c3",
        "/%" + "25" * 9 + "2e",  # encoded more times than we peel
        "/" + "a" * 5000,
        "C:\\ws\\a",
    ],
)
def test_canonical_path_rejects(raw: str) -> None:
    with pytest.raises(InvalidRequest):
        canonical_path(raw)


_PATH_PIECES = st.sampled_from(
    ["a", "b", "ws", "..", ".", "", "%2e", "%2E%2e", "%252e", "%2f", "\\", "..\\", "x*", "**"]
)


@given(st.lists(_PATH_PIECES, max_size=12))
def test_canonical_path_is_idempotent_and_free_of_dot_segments(pieces: list[str]) -> None:
    path = canonical_path("/" + "/".join(pieces))
    assert canonical_path(path) == path
    assert path.startswith("/")
    assert "//" not in path
    assert "\\" not in path
    segments = path.split("/")[1:]
    assert ".." not in segments
    assert "." not in segments
    assert path == "/" or not path.endswith("/")


# --------------------------------------------------------------------------
# canonical_url


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("HTTPS://API.EXAMPLE.COM:443/v1/x", "https://api.example.com/v1/x"),
        ("http://h:80/", "http://h/"),
        ("http://h:443/", "http://h:443/"),  # only the scheme's own default goes
        ("https://h:80/", "https://h:80/"),
        ("https://h:8443/a", "https://h:8443/a"),
        ("wss://h:443/a", "wss://h/a"),
        ("https://h", "https://h/"),
        ("https://h?q=1", "https://h/?q=1"),
        ("https://h/a/./b/../c", "https://h/a/c"),
        ("https://h/a/%2e%2e/b", "https://h/b"),
        ("https://h/a/%252e%252e/b", "https://h/b"),
        ("https://h/a/..%2fb", "https://h/b"),
        ("https://h/a/x%2f..%2f..%2fb", "https://h/b"),
        ("https://h/a/..%5cb", "https://h/b"),
        ("https://h/../../x", "https://h/x"),
        ("https://h/a/..", "https://h/"),
        ("https://h/a/", "https://h/a/"),
        ("https://h//a//b", "https://h/a/b"),
        ("https://h/%7e%41%2D", "https://h/~A-"),
        ("https://h/a%3ab", "https://h/a%3Ab"),
        ("https://h/a%zz", "https://h/a%25zz"),
        ("https://h/ä", "https://h/%C3%A4"),
        ("https://h/a?b=%3a&c=%7e#frag", "https://h/a?b=%3A&c=~"),
        ("https://h/a?b=%2e%2e%2f", "https://h/a?b=..%2F"),  # a query is not a path
        ("https://h/a#frag", "https://h/a"),
        ("https://api.example.com./v1", "https://api.example.com/v1"),
        ("https://bücher.de/", "https://xn--bcher-kva.de/"),
        ("https://[::0001]:443/", "https://[::1]/"),
        ("https://[2001:DB8::1]:8080/x", "https://[2001:db8::1]:8080/x"),
        ("https://h:/x", "https://h/x"),  # an empty port is the default
    ],
)
def test_canonical_url(raw: str, canonical: str) -> None:
    assert canonical_url(raw) == canonical
    assert canonical_url(canonical) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "api.example.com/v1",  # no scheme
        "//api.example.com/v1",
        "https:api.example.com",
        "https:///x",  # no host
        "https://user:pw@h/",
        "https://api.example.com@evil.com/",
        "https://@h/",
        "https://h:0/",
        "https://h:99999/",
        "https://h:abc/",
        "https://h:-1/",
        "https://h /",
        " https://h/",
        "https://h/\x00",
        "https://h/a\tb",
        "https://h\\@evil.com/",
        "https://h/a\\..\\b",
        "https://h/a/%00",
        "https://h/a/%2500",
        "https://h/a%0d%0aHost:%20evil",
        "https://h/a%7f",
        "https://[::1/",
        "https://[zz::1]/",
        "https://[::1%25eth0]/",
        "https://h%2e/",
        "https://h..com/",
        "https://h_$.com/",
        "1http://h/",
        "https://h/" + "a" * 9000,
    ],
)
def test_canonical_url_rejects(raw: str) -> None:
    with pytest.raises(InvalidRequest):
        canonical_url(raw)


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


# --------------------------------------------------------------------------
# Lease.parse


def test_parse_canonicalises_sorts_and_dedupes() -> None:
    lease = Lease.parse(
        {
            "net.fetch": ["HTTPS://API.EXAMPLE.COM:443/v1/**"],
            "fs.read": ["/ws/**", "/ws/src/../**", "/tmp/*"],
            "cost.budget": ["USD:05.00", "credits:1000", "USD:5"],
            "model.use": ["tier-fast/*", "tier-fast/*"],
            "x-acme.db": ["tables/*"],
        }
    )
    assert list(lease.grants) == sorted(lease.grants)
    assert lease.to_dict() == {
        "cost.budget": ["USD:5.00", "credits:1000"],
        "fs.read": ["/ws/**", "/tmp/*"],
        "model.use": ["tier-fast/*"],
        "net.fetch": ["https://api.example.com/v1/**"],
        "x-acme.db": ["tables/*"],
    }
    assert lease.budget_amounts() == {"USD": D("5.00"), "credits": D("1000")}


def test_grants_are_read_only() -> None:
    lease = Lease.parse({"fs.read": ["/ws/**"]})
    with pytest.raises(TypeError):
        lease.grants["fs.write"] = ("/",)  # type: ignore[index]
    lease.to_dict()["fs.read"].append("/")
    assert lease.grants["fs.read"] == ("/ws/**",)


def test_equality_and_hash_follow_canonical_grants() -> None:
    a = Lease.parse({"fs.read": ["/ws/**"], "tool.call": ["x"]})
    b = Lease.parse({"tool.call": ["x"], "fs.read": ["/ws/./**", "/ws//**"]})
    c = Lease.parse({"fs.read": ["/ws/**"]})
    assert a == b
    assert hash(a) == hash(b)
    assert a != c
    assert a != {"fs.read": ["/ws/**"]}


def test_empty_namespace_is_kept() -> None:
    # An explicit empty model.use forbids models; absence is left to policy (§9.7).
    lease = Lease.parse({"model.use": []})
    assert lease.to_dict() == {"model.use": []}
    assert not lease.permits("model.use", "gpt")
    assert Lease.parse({}) != lease


@pytest.mark.parametrize(
    ("grants", "field"),
    [
        ({"fs.read": ["ws/a"]}, "lease_request.fs.read[0]"),
        ({"fs.read": ["/ok", "relative"]}, "lease_request.fs.read[1]"),
        ({"fs.write": ["/ws/a**"]}, "lease_request.fs.write[0]"),
        ({"fs.write": ["/ws/***"]}, "lease_request.fs.write[0]"),
        ({"fs.read": ["/ws/\x00"]}, "lease_request.fs.read[0]"),
        ({"fs.read": ["/ws/%00"]}, "lease_request.fs.read[0]"),
        ({"fs.read": [5]}, "lease_request.fs.read[0]"),
        ({"fs.read": "/ws/**"}, "lease_request.fs.read"),  # a string, not a list
        ({"fs.read": None}, "lease_request.fs.read"),
        ({"fs.read": ["/"] * 257}, "lease_request.fs.read"),
        ({"net.fetch": ["api.example.com/**"]}, "lease_request.net.fetch[0]"),
        ({"net.fetch": ["https:///x"]}, "lease_request.net.fetch[0]"),
        ({"net.fetch": ["https://u@h/**"]}, "lease_request.net.fetch[0]"),
        ({"net.fetch": ["https://**.example.com/"]}, "lease_request.net.fetch[0]"),
        ({"net.fetch": ["https://h/a**"]}, "lease_request.net.fetch[0]"),
        ({"net.fetch": ["*://h/"]}, "lease_request.net.fetch[0]"),
        ({"net.fetch": ["https://h:*/"]}, "lease_request.net.fetch[0]"),
        ({"model.use": [""]}, "lease_request.model.use[0]"),
        ({"model.use": ["a//b"]}, "lease_request.model.use[0]"),
        ({"model.use": ["/a"]}, "lease_request.model.use[0]"),
        ({"model.use": ["a/"]}, "lease_request.model.use[0]"),
        ({"tool.call": ["a b"]}, "lease_request.tool.call[0]"),
        ({"tool.call": ["ok", "a**"]}, "lease_request.tool.call[1]"),
        ({"agent.delegate": ["x" * 513]}, "lease_request.agent.delegate[0]"),
        ({"cost.budget": ["USD:-1"]}, "lease_request.cost.budget[0]"),
        ({"cost.budget": ["USD"]}, "lease_request.cost.budget[0]"),
        ({"cost.budget": ["USD:1", "USD:2"]}, "lease_request.cost.budget[1]"),
        ({"db.query": ["x"]}, "lease_request.db.query"),
        ({"fs.exec": ["/bin/*"]}, "lease_request.fs.exec"),
        ({"X-acme": ["x"]}, "lease_request.X-acme"),
        ({"x-": ["x"]}, "lease_request.x-"),
        ({"x-Acme": ["x"]}, "lease_request.x-Acme"),
    ],
)
def test_parse_rejects_with_field(grants: Mapping[str, Sequence[str]], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        Lease.parse(grants)
    assert info.value.details["field"] == field
    assert field in info.value.message


def test_parse_rejects_non_mappings_and_too_many_namespaces() -> None:
    for bad in (["fs.read"], "fs.read", None):
        with pytest.raises(InvalidRequest) as info:
            Lease.parse(bad)  # type: ignore[arg-type]
        assert info.value.details == {"field": "lease_request"}
    many = {f"x-n{i}": ["a"] for i in range(33)}
    with pytest.raises(InvalidRequest):
        Lease.parse(many)


def test_reserved_namespaces_are_the_spec_table() -> None:
    assert {
        "fs.read",
        "fs.write",
        "net.fetch",
        "tool.call",
        "agent.delegate",
        "cost.budget",
        "model.use",
    } == RESERVED_NAMESPACES


# --------------------------------------------------------------------------
# permits: escape attempts


WS_LEASE = Lease.parse({"fs.read": ["/ws/**"], "fs.write": ["/ws/src/*"]})


@pytest.mark.parametrize(
    "path",
    [
        "/ws/../etc/passwd",
        "/ws//..//etc",
        "/ws/%2e%2e/etc",
        "/ws/%2E%2E/%2e%2e/etc",
        "/ws/%252e%252e/etc",
        "/ws/./../x",
        "/ws/..%2f..%2fetc",
        "/ws%2f..%2fetc",
        "/ws/..\\etc\\passwd",
        "/ws\\..\\..\\etc",
        "/ws/..%5c..%5cetc",
        "/ws/a\x00/../../etc",
        "/ws/%00",
        "/ws/a%00.txt",
        "/ws/\n",
        "/wsevil/x",  # prefix is not containment
        "/ws/../wsx",
        "/WS/a",  # case-sensitive
        "ws/a",  # relative
        "",
        "/ws/%ff",
    ],
)
def test_path_escapes_are_denied(path: str) -> None:
    assert WS_LEASE.permits("fs.read", path) is False
    with pytest.raises(PermissionDenied):
        WS_LEASE.authorize("fs.read", path)


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("/ws", "/ws"),
        ("/ws/", "/ws"),
        ("/ws/a/b/c.txt", "/ws/a/b/c.txt"),
        ("/ws/a/../b", "/ws/b"),
        ("/ws//a", "/ws/a"),
        ("/ws/./a", "/ws/a"),
        ("/ws/%61", "/ws/a"),
        ("/ws/%2fetc", "/ws/etc"),  # stays inside /ws
        ("/ws/...", "/ws/..."),
    ],
)
def test_paths_inside_grant_are_permitted(path: str, canonical: str) -> None:
    assert WS_LEASE.permits("fs.read", path) is True
    assert WS_LEASE.authorize("fs.read", path) == canonical


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/ws/src/a.py", True),
        ("/ws/src/a/b.py", False),  # '*' is exactly one segment
        ("/ws/src", False),
        ("/ws/src/", False),
        ("/ws/src/../a.py", False),
        ("/ws/src/sub/../a.py", True),
        ("/ws/src/%2e%2e/a.py", False),
    ],
)
def test_single_star_write_grant(path: str, allowed: bool) -> None:
    assert WS_LEASE.permits("fs.write", path) is allowed


API_LEASE = Lease.parse({"net.fetch": ["https://api.example.com/v1/**"]})


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1/../admin",
        "https://api.example.com/v1/%2e%2e/admin",
        "https://api.example.com/v1/%2E%2E/admin",
        "https://api.example.com/v1/%252e%252e/admin",
        "https://api.example.com/v1/..%2fadmin",
        "https://api.example.com/v1/..%2Fadmin",
        "https://api.example.com/v1/..%5cadmin",
        "https://api.example.com/v1/./../admin",
        "https://api.example.com/v1/..;/admin",  # servlet path-parameter trick
        "https://api.example.com/v1/..;x=1/..;/admin",
        "HTTPS://API.EXAMPLE.COM:443/admin",
        "https://api.example.com@evil.com/v1/x",  # userinfo trick
        "https://evil.com@api.example.com/v1/x",  # userinfo is refused outright
        "https://api.example.com:443@evil.com/v1/x",
        "https://api.example.com\\@evil.com/v1/x",
        "https://api.example.com/v1\\..\\admin",
        "https://api.example.com.evil.com/v1/x",
        "https://evil.com/v1/x",
        "https://evil.com/?https://api.example.com/v1/x",
        "http://api.example.com/v1/x",  # another scheme
        "https://api.example.com:8443/v1/x",  # another port
        "https://api.example.com/v2/x",
        "https://api.example.com/v1x",
        "https://api.example.com/",
        "https://api%2eexample.com/v1/x",
        "https://api.example.com/v1/%00",
        "https://api.example.com/v1/x\n",
        " https://api.example.com/v1/x",
        "//api.example.com/v1/x",
        "api.example.com/v1/x",
    ],
)
def test_url_escapes_are_denied(url: str) -> None:
    assert API_LEASE.permits("net.fetch", url) is False
    with pytest.raises(PermissionDenied):
        API_LEASE.authorize("net.fetch", url)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://API.EXAMPLE.COM:443/v1/x", "https://api.example.com/v1/x"),
        ("https://api.example.com./v1/x", "https://api.example.com/v1/x"),
        ("https://api.example.com/v1/a/../b", "https://api.example.com/v1/b"),
        ("https://api.example.com/v1/x?q=1#frag", "https://api.example.com/v1/x?q=1"),
        ("https://api.example.com/v1", "https://api.example.com/v1"),
        ("https://api.example.com/v1/", "https://api.example.com/v1/"),
        ("https://api.example.com/v1/%7Euser", "https://api.example.com/v1/~user"),
        ("https://api.example.com/v1/a%2fb", "https://api.example.com/v1/a/b"),
    ],
)
def test_urls_inside_grant_are_permitted(url: str, canonical: str) -> None:
    assert API_LEASE.permits("net.fetch", url) is True
    assert API_LEASE.authorize("net.fetch", url) == canonical


@pytest.mark.parametrize(
    ("pattern", "url", "allowed"),
    [
        ("https://*.example.com/**", "https://a.example.com/x", True),
        ("https://*.example.com/**", "https://A.Example.com/x", True),
        ("https://*.example.com/**", "https://a.b.example.com/x", False),  # one label
        ("https://*.example.com/**", "https://example.com/x", False),
        ("https://*.example.com/**", "https://a.example.com.evil.com/", False),
        ("https://*.example.com/**", "https://evil.com/.example.com", False),
        ("https://api-*.example.com/**", "https://api-eu.example.com/", True),
        ("https://api-*.example.com/**", "https://web.example.com/", False),
        ("https://h/v1/*", "https://h/v1/x", True),
        ("https://h/v1/*", "https://h/v1/x/y", False),
        ("https://h/v1/*", "https://h/v1/a%2fb", False),  # an encoded '/' still separates
        ("https://h/v1/*", "https://h/v1", False),
        ("https://h/v1/x", "https://h/v1/x?anything=1", True),  # no query: any query
        ("https://h/v1/x?mode=read", "https://h/v1/x?mode=read", True),
        ("https://h/v1/x?mode=read", "https://h/v1/x?mode=write", False),
        ("https://h/v1/x?mode=read", "https://h/v1/x", False),
        ("https://h/v1/x?id=*", "https://h/v1/x?id=42", True),
        ("https://h/v1/x?id=*", "https://h/v1/x?id=42&admin=1", False),
        ("https://h/", "https://h", True),
        ("https://h/", "https://h/x", False),
        ("https://h/**", "https://h", True),
        ("https://[::1]/**", "https://[0:0::1]/a", True),
        ("https://h:8443/**", "https://h:8443/a", True),
        ("https://h:8443/**", "https://h/a", False),
    ],
)
def test_url_globs(pattern: str, url: str, allowed: bool) -> None:
    assert Lease.parse({"net.fetch": [pattern]}).permits("net.fetch", url) is allowed


@pytest.mark.parametrize(
    ("namespace", "patterns", "value", "allowed"),
    [
        ("model.use", ["tier-fast/*"], "tier-fast/gpt-mini", True),
        ("model.use", ["tier-fast/*"], "tier-fast/a/b", False),
        ("model.use", ["tier-fast/*"], "tier-fast", False),
        ("model.use", ["tier-fast/*"], "tier-fast/", False),
        ("model.use", ["tier-fast/*"], "tier-slow/gpt", False),
        ("model.use", ["anthropic/claude-3-haiku-*"], "anthropic/claude-3-haiku-2024", True),
        ("model.use", ["anthropic/claude-3-haiku-*"], "anthropic/claude-3-opus-2024", False),
        ("model.use", ["gpt-4o-2024-08-06"], "gpt-4o-2024-08-06", True),
        ("model.use", ["gpt-4o-2024-08-06"], "GPT-4O-2024-08-06", False),
        ("model.use", ["*"], "gpt", True),
        ("model.use", ["*"], "vendor/gpt", False),
        ("model.use", ["**"], "vendor/gpt", True),
        ("tool.call", ["search", "fetch_*"], "search", True),
        ("tool.call", ["search", "fetch_*"], "fetch_url", True),
        ("tool.call", ["search", "fetch_*"], "searchx", False),
        ("tool.call", ["search"], "search ", False),
        ("tool.call", ["search"], "search\x00", False),
        ("tool.call", ["search"], "", False),
        ("agent.delegate", ["worker"], "worker", True),
        ("agent.delegate", ["worker"], "worker@1.0.0", True),  # a bare name: any version
        ("agent.delegate", ["worker@1.0.0"], "worker@1.0.0", True),
        ("agent.delegate", ["worker@1.0.0"], "worker@2.0.0", False),
        ("agent.delegate", ["worker@1.0.0"], "worker", False),
        ("agent.delegate", ["worker@1.*"], "worker@1.2", True),
        ("agent.delegate", ["worker"], "workers@1", False),
        ("agent.delegate", ["work*"], "worker@2", True),
        ("x-acme.db", ["tables/*"], "tables/users", True),
        ("x-acme.db", ["tables/*"], "views/users", False),
        ("cost.budget", ["USD:5"], "USD:1", False),  # not an authority namespace
        ("tool.call", ["search"], "/search", False),
    ],
)
def test_name_globs(namespace: str, patterns: list[str], value: str, allowed: bool) -> None:
    assert Lease.parse({namespace: patterns}).permits(namespace, value) is allowed


def test_missing_or_unknown_namespace_permits_nothing() -> None:
    lease = Lease.parse({"fs.read": ["/**"]})
    assert lease.permits("fs.write", "/a") is False
    assert lease.permits("db.query", "x") is False
    assert lease.permits("", "/a") is False
    with pytest.raises(PermissionDenied) as info:
        lease.authorize("fs.write", "/a")
    assert info.value.details == {"namespace": "fs.write"}


def test_namespaces_do_not_leak_into_each_other() -> None:
    lease = Lease.parse({"fs.read": ["/ws/**"], "tool.call": ["*"]})
    assert lease.permits("fs.read", "/ws/a")
    assert not lease.permits("fs.write", "/ws/a")
    assert not lease.permits("tool.call", "/ws/a")


# --------------------------------------------------------------------------
# Subsetting (§9.4)


@pytest.mark.parametrize(
    ("namespace", "parent", "child", "covered"),
    [
        ("fs.read", "/ws/**", "/ws/src/**", True),
        ("fs.read", "/ws/**", "/ws/a", True),
        ("fs.read", "/ws/**", "/ws/**", True),
        ("fs.read", "/ws/**", "/ws", True),
        ("fs.read", "/ws/**", "/ws/*/x", True),
        ("fs.read", "/ws/*", "/ws/a", True),
        ("fs.read", "/ws/*", "/ws/*", True),
        ("fs.read", "/ws/*", "/ws/a*", True),
        ("fs.read", "/ws/*", "/ws/**", False),
        ("fs.read", "/ws/*", "/ws/*/x", False),
        ("fs.read", "/ws/*", "/ws", False),
        ("fs.read", "/ws/a*", "/ws/ab*", True),
        ("fs.read", "/ws/a*", "/ws/*", False),
        ("fs.read", "/ws/a*", "/ws/b", False),
        ("fs.read", "/ws/*.py", "/ws/*_test.py", True),
        ("fs.read", "/ws/*_test.py", "/ws/*.py", False),
        ("fs.read", "/ws/src", "/ws/src/**", False),
        ("fs.read", "/ws/src/**", "/ws/**", False),
        ("fs.read", "/ws/**", "/ws/../etc/**", False),
        ("fs.read", "/ws/**", "/ws/src/../../etc", False),
        ("fs.read", "/ws/**", "/ws/%2e%2e/etc", False),
        ("fs.read", "/ws/**", "/wsx/**", False),
        ("fs.read", "/**", "/anything/**", True),
        ("fs.read", "/ws/**/x", "/ws/a/b/x", True),
        ("fs.read", "/ws/**/x", "/ws/**/y/x", True),
        ("fs.read", "/ws/**/x", "/ws/**", False),
        ("fs.read", "/ws/*/**", "/ws/a/**", True),
        ("fs.read", "/ws/*/**", "/ws/**", False),
        ("net.fetch", "https://api.example.com/v1/**", "https://api.example.com/v1/u/*", True),
        ("net.fetch", "https://api.example.com/v1/**", "https://API.example.com:443/v1/x", True),
        ("net.fetch", "https://api.example.com/v1/**", "http://api.example.com/v1/x", False),
        ("net.fetch", "https://api.example.com/v1/**", "https://api.example.com/v1/../a", False),
        ("net.fetch", "https://api.example.com/v1/**", "https://api.example.com:8443/v1", False),
        ("net.fetch", "https://*.example.com/**", "https://a.example.com/x", True),
        ("net.fetch", "https://*.example.com/**", "https://*.example.com/v1/**", True),
        ("net.fetch", "https://*.example.com/**", "https://*.*.example.com/", False),
        ("net.fetch", "https://a.example.com/**", "https://*.example.com/x", False),
        ("net.fetch", "https://h/**", "https://h/x?q=1", True),
        ("net.fetch", "https://h/x?q=*", "https://h/x?q=1", True),
        ("net.fetch", "https://h/x?q=*", "https://h/x", False),  # any query is wider
        ("net.fetch", "https://h/x?q=1", "https://h/x?q=*", False),
        ("model.use", "tier-fast/*", "tier-fast/gpt-mini", True),
        ("model.use", "tier-fast/*", "tier-fast/*", True),
        ("model.use", "tier-fast/*", "tier-fast/**", False),
        ("model.use", "tier-fast/*", "tier-slow/x", False),
        ("model.use", "tier-fast/*", "*", False),
        ("model.use", "anthropic/claude-3-*", "anthropic/claude-3-opus-*", True),
        ("model.use", "anthropic/claude-3-opus-*", "anthropic/claude-3-*", False),
        ("tool.call", "*", "search", True),
        ("tool.call", "*", "a/b", False),
        ("tool.call", "**", "a/b", True),
        ("agent.delegate", "worker", "worker@1.0", True),
        ("agent.delegate", "worker", "worker@*", True),
        ("agent.delegate", "worker@1.0", "worker", False),
        ("agent.delegate", "work*", "worker@2", True),
        ("agent.delegate", "worker@1.*", "worker@1.2", True),
        ("agent.delegate", "worker@1.*", "worker@2.0", False),
        ("agent.delegate", "worker@1.*", "worker@*", False),
        ("x-acme.db", "tables/*", "tables/a", True),
        ("x-acme.db", "tables/a", "tables/*", False),
    ],
)
def test_pattern_subsets(namespace: str, parent: str, child: str, covered: bool) -> None:
    parent_lease = Lease.parse({namespace: [parent]})
    child_lease = Lease.parse({namespace: [child]})
    if covered:
        check_subset(child_lease, parent_lease, parent_remaining={})
        return
    with pytest.raises(LeaseSubsetViolation) as info:
        check_subset(child_lease, parent_lease, parent_remaining={})
    assert info.value.details["namespace"] == namespace
    assert namespace in info.value.message


def test_subset_needs_every_child_pattern_covered_by_some_parent_pattern() -> None:
    parent = Lease.parse({"fs.read": ["/a/**", "/b/*"]})
    check_subset(Lease.parse({"fs.read": ["/a/x", "/b/y"]}), parent, parent_remaining={})
    with pytest.raises(LeaseSubsetViolation) as info:
        check_subset(Lease.parse({"fs.read": ["/a/x", "/c"]}), parent, parent_remaining={})
    assert info.value.details["pattern"] == "/c"
    assert info.value.details["field"] == "lease_request.fs.read[1]"


def test_subset_names_first_offending_namespace() -> None:
    parent = Lease.parse({"fs.read": ["/ws/**"]})
    child = Lease.parse({"fs.write": ["/ws/a"], "fs.read": ["/etc"]})
    with pytest.raises(LeaseSubsetViolation) as info:
        check_subset(child, parent, parent_remaining={})
    assert info.value.details["namespace"] == "fs.read"  # sorted before fs.write


def test_namespace_parent_lacks_is_a_violation_unless_empty() -> None:
    parent = Lease.parse({"fs.read": ["/ws/**"]})
    with pytest.raises(LeaseSubsetViolation) as info:
        check_subset(Lease.parse({"net.fetch": ["https://h/"]}), parent, parent_remaining={})
    assert info.value.details == {"namespace": "net.fetch"}
    check_subset(Lease.parse({"net.fetch": []}), parent, parent_remaining={})  # grants nothing


@pytest.mark.parametrize(
    ("parent", "remaining", "child", "ok"),
    [
        (["USD:5.00"], {"USD": D("2.00")}, ["USD:2.00"], True),  # the §9.4 example
        (["USD:5.00"], {"USD": D("2.00")}, ["USD:2"], True),
        (["USD:5.00"], {"USD": D("2.00")}, ["USD:2.01"], False),
        (["USD:5.00"], {"USD": D("2.00")}, ["USD:0"], True),
        (["USD:5.00"], {"USD": D("2.00")}, ["EUR:1"], False),  # currency not in parent
        (["USD:5.00"], {}, ["USD:5.00"], True),  # nothing spent yet
        (["USD:5.00"], {}, ["USD:5.01"], False),
        (["USD:5.00"], {"USD": D("9")}, ["USD:6"], False),  # never above the grant
        (["USD:5.00"], {"USD": D("-1")}, ["USD:0"], False),  # overspent parent
        (["USD:5", "credits:10"], {"USD": D("1")}, ["credits:10", "USD:1"], True),
        ([], {}, ["USD:1"], False),
        (None, {}, ["USD:1"], False),  # parent has no cost.budget at all
        (["USD:5.00"], {"USD": D("0.1") + D("0.2")}, ["USD:0.3"], True),
    ],
)
def test_budget_subsets(
    parent: list[str] | None, remaining: dict[str, Decimal], child: list[str], ok: bool
) -> None:
    parent_lease = Lease.parse({} if parent is None else {"cost.budget": parent})
    child_lease = Lease.parse({"cost.budget": child})
    if ok:
        check_subset(child_lease, parent_lease, parent_remaining=remaining)
        return
    with pytest.raises(LeaseSubsetViolation) as info:
        check_subset(child_lease, parent_lease, parent_remaining=remaining)
    assert info.value.details["namespace"] == "cost.budget"


_NAME_PIECES = st.sampled_from(["a", "b", "*", "**", "a*", "*b", "ab"])
_VALUE_PIECES = st.sampled_from(["a", "b", "ab", "ba", "aab", "x"])


@given(
    parent=st.lists(_NAME_PIECES, min_size=1, max_size=4),
    child=st.lists(_NAME_PIECES, min_size=1, max_size=4),
    value=st.lists(_VALUE_PIECES, min_size=1, max_size=5),
)
def test_subset_is_sound(parent: list[str], child: list[str], value: list[str]) -> None:
    """Whenever a child pattern is judged covered, every name it matches the parent matches."""
    parent_lease = Lease.parse({"tool.call": ["/".join(parent)]})
    child_lease = Lease.parse({"tool.call": ["/".join(child)]})
    try:
        check_subset(child_lease, parent_lease, parent_remaining={})
    except LeaseSubsetViolation:
        return
    name = "/".join(value)
    if child_lease.permits("tool.call", name):
        assert parent_lease.permits("tool.call", name)


# --------------------------------------------------------------------------
# derive_child (§9.4, §10)

PARENT = Lease.parse(
    {
        "fs.read": ["/ws/**"],
        "model.use": ["tier-fast/*"],
        "cost.budget": ["USD:5.00", "credits:100"],
    }
)


def test_omitted_request_inherits_with_budget_capped() -> None:
    child = PARENT.derive_child(None, {"USD": D("2.00"), "credits": D("100")})
    assert child.to_dict() == {
        "cost.budget": ["USD:2.00", "credits:100"],
        "fs.read": ["/ws/**"],
        "model.use": ["tier-fast/*"],
    }
    assert child.budget_amounts() == {"USD": D("2.00"), "credits": D("100")}
    assert child.permits("fs.read", "/ws/a")


def test_overspent_parent_hands_out_zero() -> None:
    child = PARENT.derive_child(None, {"USD": D("-0.50")})
    assert child.budget_amounts() == {"USD": D("0"), "credits": D("100")}
    assert child.grants["cost.budget"] == ("USD:0", "credits:100")


def test_request_is_parsed_checked_and_bounded() -> None:
    child = PARENT.derive_child(
        {"fs.read": ["/ws/src/**"], "cost.budget": ["USD:1.00"]}, {"USD": D("2.00")}
    )
    # model.use and unnamed currencies come from the parent so nothing is unbounded.
    assert child.to_dict() == {
        "cost.budget": ["USD:1.00", "credits:100"],
        "fs.read": ["/ws/src/**"],
        "model.use": ["tier-fast/*"],
    }
    assert not child.permits("fs.read", "/ws/other")


def test_request_without_budget_inherits_remaining() -> None:
    child = PARENT.derive_child({"fs.read": ["/ws/a"]}, {"USD": D("1.25")})
    assert child.budget_amounts() == {"USD": D("1.25"), "credits": D("100")}


def test_request_model_use_is_kept_when_given() -> None:
    child = PARENT.derive_child({"model.use": ["tier-fast/mini"]}, {})
    assert child.grants["model.use"] == ("tier-fast/mini",)


@pytest.mark.parametrize(
    "request_grants",
    [
        {"fs.read": ["/etc/**"]},
        {"fs.read": ["/ws/../etc"]},
        {"fs.write": ["/ws/a"]},
        {"model.use": ["tier-slow/*"]},
        {"cost.budget": ["USD:2.01"]},
        {"cost.budget": ["EUR:1"]},
    ],
)
def test_widening_request_is_rejected(request_grants: dict[str, list[str]]) -> None:
    with pytest.raises(LeaseSubsetViolation):
        PARENT.derive_child(request_grants, {"USD": D("2.00")})


def test_malformed_request_is_invalid_not_violation() -> None:
    with pytest.raises(InvalidRequest):
        PARENT.derive_child({"fs.read": ["relative"]}, {})


def test_parent_without_budget_gives_child_none() -> None:
    parent = Lease.parse({"tool.call": ["*"]})
    assert parent.derive_child(None, {}) == parent
    assert parent.derive_child({"tool.call": ["x"]}, {}).budget_amounts() == {}


# --------------------------------------------------------------------------
# Expiry (§9.5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-13T23:42:00Z", datetime(2026, 5, 13, 23, 42, tzinfo=UTC)),
        ("2026-05-13T23:42:00+00:00", datetime(2026, 5, 13, 23, 42, tzinfo=UTC)),
        ("2026-05-13T19:30:00.000001Z", datetime(2026, 5, 13, 19, 30, 0, 1, tzinfo=UTC)),
        ("2026-05-13T23:42:00.5Z", datetime(2026, 5, 13, 23, 42, 0, 500000, tzinfo=UTC)),
        ("2026-05-13T23:42:00.123456789Z", datetime(2026, 5, 13, 23, 42, 0, 123456, tzinfo=UTC)),
        ("2028-02-29T00:00:00Z", datetime(2028, 2, 29, tzinfo=UTC)),
    ],
)
def test_parse_expires_at_valid(text: str, expected: datetime) -> None:
    parsed = parse_expires_at(text, now=NOW)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "2026-05-13T23:42:00",  # naive
        "2026-05-14T01:42:00+02:00",  # the same instant, but not UTC
        "2026-05-13T23:42:00-00:00",
        "2026-05-13T23:42:00+0000",
        "2026-05-13 23:42:00Z",
        "2026-05-13t23:42:00z",
        "2026-05-13T23:42Z",
        "2026-05-13",
        "20260513T234200Z",
        "2026-02-30T00:00:00Z",
        "2026-05-13T24:00:00Z",
        "2026-05-13T23:59:60Z",
        "2026-05-13T23:42:00.Z",
        "2026-05-13T23:42:00Z ",
        "２０２６-05-13T23:42:00Z",
        "tomorrow",
        "",
        "2026-05-13T19:30:00Z",  # equal to now: not in the future
        "2026-05-13T19:29:59.999999Z",  # past
        "1999-01-01T00:00:00Z",
    ],
)
def test_parse_expires_at_rejects(text: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_expires_at(text, now=NOW)
    assert info.value.details == {"field": "lease_constraints.expires_at"}


def test_parse_expires_at_needs_aware_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_expires_at("2026-05-13T23:42:00Z", now=NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 5, 13, 23, 42, tzinfo=UTC), "2026-05-13T23:42:00Z"),
        (datetime(2026, 5, 13, 23, 42, 0, 500000, tzinfo=UTC), "2026-05-13T23:42:00.5Z"),
        (datetime(2026, 5, 14, 1, 42, tzinfo=timezone(timedelta(hours=2))), "2026-05-13T23:42:00Z"),
    ],
)
def test_format_timestamp(moment: datetime, text: str) -> None:
    assert format_timestamp(moment) == text
    assert parse_timestamp(text) == moment


def test_format_timestamp_rejects_naive() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_timestamp(datetime(2026, 1, 1))


_T1 = datetime(2026, 5, 13, 20, tzinfo=UTC)
_T2 = datetime(2026, 5, 13, 21, tzinfo=UTC)


@pytest.mark.parametrize(
    ("child", "parent", "effective"),
    [
        (None, None, None),
        (None, _T2, _T2),  # inherited implicitly (§9.4)
        (_T1, None, _T1),
        (_T1, _T2, _T1),  # earlier is fine
        (_T2, _T2, _T2),
    ],
)
def test_child_expiry(
    child: datetime | None, parent: datetime | None, effective: datetime | None
) -> None:
    assert child_expiry(child, parent) == effective


def test_child_expiry_later_than_parent_is_violation() -> None:
    with pytest.raises(LeaseSubsetViolation) as info:
        child_expiry(_T2, _T1)
    assert info.value.details == {"field": "lease_constraints.expires_at"}
    with pytest.raises(LeaseSubsetViolation):
        child_expiry(_T1 + timedelta(microseconds=1), _T1)


def test_lease_clock_uses_monotonic_deadline() -> None:
    clock = LeaseClock(NOW + timedelta(seconds=60), NOW, 1000.0)
    assert clock.deadline == 1060.0
    assert clock.expired(1000.0) is False
    assert clock.expired(1059.999) is False
    assert clock.expired(1060.0) is True  # at expires_at: expired (§9.5)
    assert clock.expired(2000.0) is True
    assert clock.seconds_left(1000.0) == 60.0
    assert clock.seconds_left(1059.5) == 0.5
    assert clock.seconds_left(1100.0) == 0.0


def test_lease_clock_accepts_keywords_and_other_offsets() -> None:
    wall = datetime(2026, 5, 13, 21, 30, tzinfo=timezone(timedelta(hours=2)))  # == NOW
    clock = LeaseClock(NOW + timedelta(seconds=1.5), wall_now=wall, mono_now=10.0)
    assert clock.seconds_left(10.0) == 1.5


def test_lease_clock_without_expiry_never_expires() -> None:
    clock = LeaseClock(None, NOW, 5.0)
    assert clock.deadline is None
    assert clock.expired(1e12) is False
    assert clock.seconds_left(1e12) is None


def test_lease_clock_already_past_is_expired_at_once() -> None:
    clock = LeaseClock(NOW - timedelta(seconds=1), NOW, 50.0)
    assert clock.expired(50.0) is True
    assert clock.seconds_left(50.0) == 0.0


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com@evil.com/",
        "https://user:pw@api.example.com/",
        "https://api.example.com:443@evil.com/",
    ],
)
def test_userinfo_is_refused_by_name(url: str) -> None:
    with pytest.raises(InvalidRequest, match="userinfo"):
        canonical_url(url)
