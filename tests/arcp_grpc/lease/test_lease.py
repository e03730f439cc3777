"""Leases (§9): parsing, escape attempts through matching, subsetting (§9.4) and delegation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arcp_grpc.errors import InvalidRequest, LeaseSubsetViolation, PermissionDenied
from arcp_grpc.lease.lease import Lease, check_subset
from arcp_grpc.lease.matchers import RESERVED_NAMESPACES

D = Decimal

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
