"""The fenced blocks a document marks for its test, so docs are run as written.

A block preceded by ``<!-- PREFIX: run -->`` is commands (run with bash from the
repository root, or wherever the test stands in for it); one preceded by
``<!-- PREFIX: file NAME -->`` is a file a reader saves as NAME. The markers are
HTML comments: invisible where the Markdown is rendered.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Block", "marked_blocks", "run_commands"]


@dataclass(frozen=True)
class Block:
    """One marked block: commands to run (`name` empty), or a file to save as `name`."""

    name: str
    body: str


def marked_blocks(text: str, prefix: str) -> list[Block]:
    """The blocks of `text` marked ``<!-- PREFIX: ... -->``, in document order."""
    marked = re.compile(
        rf"^<!-- {re.escape(prefix)}: (?:run|file (?P<name>\S+)) -->\n```\w*\n(?P<body>.*?)^```$",
        re.MULTILINE | re.DOTALL,
    )
    return [Block(m["name"] or "", m["body"]) for m in marked.finditer(text)]


def run_commands(
    commands: str, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Commands as a reader pastes them into bash, stopping at the first that fails."""
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
