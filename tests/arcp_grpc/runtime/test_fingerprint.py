"""Submit fingerprints decide idempotent replay vs DUPLICATE_KEY (§7.2)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arcp_grpc.errors import InvalidRequest
from arcp_grpc.runtime.fingerprint import canonical_json, submit_fingerprint

BASE: dict[str, Any] = {
    "agent": "code-refactor@2.0.0",
    "input_json": {"repo": "myapp", "steps": [1, 2, 3], "opts": {"dry": True, "n": 0.5}},
    "lease_request": {
        "fs.read": ["/workspace/myapp/**"],
        "fs.write": ["/workspace/myapp/src/**"],
        "cost.budget": ["USD:5.00"],
    },
    "lease_constraints_expires_at": "2026-05-13T23:42:00Z",
    "max_runtime_sec": 1800,
}


def fingerprint(**changes: Any) -> bytes:
    return submit_fingerprint(**{**BASE, **changes})


def test_is_sha256_and_deterministic() -> None:
    assert len(fingerprint()) == 32
    assert fingerprint() == fingerprint()


@pytest.mark.parametrize(
    "changes",
    [
        {"agent": "code-refactor"},  # bare name vs pinned version (§7.5)
        {"agent": "code-refactor@2.0.1"},
        {"agent": "Code-refactor@2.0.0"},
        {"input_json": {"repo": "myapp", "steps": [1, 2, 3], "opts": {"dry": True}}},
        {"input_json": {"repo": "myapp", "steps": [3, 2, 1], "opts": {"dry": True, "n": 0.5}}},
        {"input_json": {"repo": "other", "steps": [1, 2, 3], "opts": {"dry": True, "n": 0.5}}},
        {"input_json": {"repo": "myapp", "steps": [1, 2, 3], "opts": {"dry": 1, "n": 0.5}}},
        {"input_json": None},
        {"input_json": "myapp"},
        {"lease_request": {}},
        {
            "lease_request": {  # pattern order is the client's statement
                "fs.read": ["/workspace/myapp/**"],
                "fs.write": ["/workspace/myapp/src/**"],
                "cost.budget": ["USD:5.01"],
            }
        },
        {
            "lease_request": {
                "fs.read": ["/workspace/myapp/**"],
                "fs.write": ["/workspace/myapp/src/**", "/tmp/**"],
                "cost.budget": ["USD:5.00"],
            }
        },
        {
            "lease_request": {
                "fs.read": ["/workspace/myapp/**"],
                "fs.write": ["/workspace/myapp/src/**"],
            }
        },
        {
            "lease_request": {  # the same patterns under another namespace
                "fs.read": ["/workspace/myapp/src/**"],
                "fs.write": ["/workspace/myapp/**"],
                "cost.budget": ["USD:5.00"],
            }
        },
        {"lease_constraints_expires_at": None},
        {"lease_constraints_expires_at": "2026-05-13T23:42:01Z"},
        {"lease_constraints_expires_at": "2026-05-13T23:42:00+02:00"},  # kept verbatim
        {"max_runtime_sec": None},
        {"max_runtime_sec": 0},
        {"max_runtime_sec": 1801},
    ],
)
def test_each_parameter_changed_alone_changes_fingerprint(changes: dict[str, Any]) -> None:
    assert fingerprint(**changes) != fingerprint()


def test_none_and_zero_runtime_differ() -> None:
    assert fingerprint(max_runtime_sec=None) != fingerprint(max_runtime_sec=0)


def test_pattern_order_matters_but_namespace_order_does_not() -> None:
    reordered_namespaces = dict(reversed(list(BASE["lease_request"].items())))
    assert fingerprint(lease_request=reordered_namespaces) == fingerprint()
    a = fingerprint(lease_request={"fs.read": ["/a", "/b"]})
    b = fingerprint(lease_request={"fs.read": ["/b", "/a"]})
    assert a != b


@pytest.mark.parametrize(
    "text",
    [
        '{"repo":"myapp","steps":[1,2,3],"opts":{"dry":true,"n":0.5}}',
        '{"opts": {"n": 0.5, "dry": true}, "steps": [1, 2, 3], "repo": "myapp"}',
        '{\n  "steps": [1,2,3],\n  "repo": "myapp",\n  "opts": {"dry": true, "n": 5e-1}\n}',
        '{"repo":"my\\u0061pp","steps":[1.0,2,3.0],"opts":{"dry":true,"n":0.50}}',
    ],
)
def test_same_json_in_any_spelling_gives_same_fingerprint(text: str) -> None:
    assert fingerprint(input_json=json.loads(text)) == fingerprint()


@pytest.mark.parametrize(
    ("expires", "same_as"),
    [
        ("2026-05-13T23:42:00+00:00", "2026-05-13T23:42:00Z"),
        ("2026-05-13T23:42:00.000Z", "2026-05-13T23:42:00Z"),
        ("2026-05-13T23:42:00.500000+00:00", "2026-05-13T23:42:00.5Z"),
    ],
)
def test_expiry_spellings_of_one_instant_agree(expires: str, same_as: str) -> None:
    assert fingerprint(lease_constraints_expires_at=expires) == fingerprint(
        lease_constraints_expires_at=same_as
    )


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ({"b": 1, "a": [True, None, "x"]}, b'{"a":[true,null,"x"],"b":1}'),
        ({"z": {"y": 1, "x": 2}}, b'{"z":{"x":2,"y":1}}'),
        ("é✓", '"é✓"'.encode()),  # UTF-8, not \\u escapes
        (1.0, b"1"),  # integral floats are integers: 1 and 1.0 are one input
        (-0.0, b"0"),
        (0.5, b"0.5"),
        (1e15, b"1000000000000000"),
        (1e20, b"1e+20"),
        (2.0**53, b"9007199254740992.0"),  # past 2**53 a float stays a float
        (10**30, b"1000000000000000000000000000000"),
        ((1, 2), b"[1,2]"),
        ([], b"[]"),
        ({}, b"{}"),
    ],
)
def test_canonical_json(value: object, encoded: bytes) -> None:
    assert canonical_json(value) == encoded


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        {"a": float("-inf")},
        {1: "x"},
        {"a": {b"k": 1}},
        b"bytes",
        {1, 2},
        object(),
        pytest.param(10**5000, id="past-the-int-to-text-limit"),
    ],
)
def test_canonical_json_rejects_non_json(value: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        canonical_json(value)
    assert info.value.details == {"field": "input"}


def test_canonical_json_rejects_deep_nesting() -> None:
    value: object = 1
    for _ in range(300):
        value = [value]
    with pytest.raises(InvalidRequest):
        canonical_json(value)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_json)
def test_canonical_json_survives_reformatting(value: object) -> None:
    """Any re-spelling of the same JSON (indent, key order) canonicalises identically."""
    respelled = json.loads(json.dumps(value, indent=2, sort_keys=False))
    assert canonical_json(respelled) == canonical_json(value)
    assert canonical_json(json.loads(canonical_json(value))) == canonical_json(value)
