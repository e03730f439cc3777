"""Agent reference parsing follows the §7.5 grammar exactly."""

from __future__ import annotations

import pytest

from arcp_grpc.base.agentref import MAX_AGENT_REF_LENGTH, AgentRef, parse_agent_ref
from arcp_grpc.errors import InvalidRequest


@pytest.mark.parametrize(
    ("text", "name", "version"),
    [
        ("echo", "echo", None),
        ("echo@1.0.0", "echo", "1.0.0"),
        ("code-refactor@2.0.0", "code-refactor", "2.0.0"),  # §7.1 example
        ("0agent", "0agent", None),
        ("a.b_c-d", "a.b_c-d", None),
        ("x@1.0.0+build_7-RC", "x", "1.0.0+build_7-RC"),  # version allows A-Z . + _ -
        ("x@latest", "x", "latest"),
        ("a" * MAX_AGENT_REF_LENGTH, "a" * MAX_AGENT_REF_LENGTH, None),
    ],
)
def test_valid_refs_parse(text: str, name: str, version: str | None) -> None:
    ref = parse_agent_ref(text)
    assert ref == AgentRef(name, version)
    assert str(ref) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "@1.0",  # no name
        "echo@",  # empty version
        "echo@1@2",  # two '@'
        "Echo",  # uppercase name
        "ECHO@1.0",
        "-echo",  # name must start with [a-z0-9]
        ".echo",
        "_echo",
        "echo agent",  # space
        " echo",
        "echo ",
        "echo\n",  # '$' would accept a trailing newline; fullmatch must not
        "echo@1.0\n",
        "echo@1 0",
        "echo/sub",
        "echo@1/2",
        "échο",  # non-ASCII look-alikes
        "echo@１",  # full-width digit
        "a" * (MAX_AGENT_REF_LENGTH + 1),
        "a@" + "1" * MAX_AGENT_REF_LENGTH,
    ],
)
def test_invalid_refs_rejected_on_agent_field(text: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_agent_ref(text)
    assert info.value.details == {"field": "agent"}
    assert info.value.code == "INVALID_REQUEST"


def test_non_string_rejected() -> None:
    with pytest.raises(InvalidRequest):
        parse_agent_ref(42)  # type: ignore[arg-type]


def test_str_round_trips() -> None:
    assert str(AgentRef("echo")) == "echo"
    assert str(AgentRef("echo", "2")) == "echo@2"


def test_ref_is_immutable_and_hashable() -> None:
    ref = AgentRef("echo", "1")
    with pytest.raises(AttributeError):
        ref.name = "other"  # type: ignore[misc]
    assert {ref, AgentRef("echo", "1")} == {ref}
