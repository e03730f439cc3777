"""Agent references: ``name`` or ``name@version`` (spec §7.5).

A submit names its agent as text; the runtime parses it once, here, and
every later step works with the typed :class:`AgentRef`. Anything outside
the §7.5 grammar is rejected up front with ``INVALID_REQUEST`` so that no
odd spelling (uppercase, spaces, a second ``@``) can reach the registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from arcp_grpc.errors import InvalidRequest

__all__ = ["MAX_AGENT_REF_LENGTH", "AgentRef", "parse_agent_ref"]

#: Longest accepted ``agent`` field; the spec sets no limit, a runtime must.
MAX_AGENT_REF_LENGTH = 256

# §7.5: name ::= [a-z0-9][a-z0-9._-]*, version ::= [a-zA-Z0-9.+_-]+.
# Explicit ASCII classes (not \w) so no Unicode look-alike slips through.
_AGENT_REF = re.compile(r"([a-z0-9][a-z0-9._-]*)(?:@([a-zA-Z0-9.+_-]+))?")


@dataclass(frozen=True, slots=True)
class AgentRef:
    """A parsed agent reference; ``version`` is ``None`` for a bare name (§7.5)."""

    name: str
    version: str | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


def parse_agent_ref(text: str) -> AgentRef:
    """Parse ``name`` or ``name@version`` per the §7.5 grammar.

    Raises :class:`InvalidRequest` (details ``field: agent``) for anything
    else, including the empty string and text over
    :data:`MAX_AGENT_REF_LENGTH` characters.
    """
    if not isinstance(text, str):
        raise InvalidRequest("agent must be a string", details={"field": "agent"})
    if len(text) > MAX_AGENT_REF_LENGTH:
        raise InvalidRequest(
            f"agent is longer than {MAX_AGENT_REF_LENGTH} characters",
            details={"field": "agent"},
        )
    match = _AGENT_REF.fullmatch(text)
    if match is None:
        raise InvalidRequest(
            f"agent {text!r} is not 'name' or 'name@version' (§7.5)",
            details={"field": "agent"},
        )
    return AgentRef(match.group(1), match.group(2))
