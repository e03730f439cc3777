"""Canonical forms (§9.2, §9.3): paths and URLs reduce to one spelling, escapes included."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arcp_grpc.errors import InvalidRequest
from arcp_grpc.lease.canonical import canonical_path, canonical_url

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
