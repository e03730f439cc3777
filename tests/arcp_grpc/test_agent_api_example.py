"""The documented agent example runs as printed (docs/agents.md)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

from tests.conftest import SAFETY

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello_agent.py"
GUIDE = REPO / "docs" / "agents.md"


def test_the_guide_shows_the_example_verbatim() -> None:
    """The code in the guide is the code the next test runs; they cannot drift."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    assert EXAMPLE.read_text() in blocks


async def test_the_example_runs_end_to_end() -> None:
    """`python examples/hello_agent.py`: a registered agent, a real core, a job
    submitted over gRPC and watched to its result."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), SAFETY)
    assert process.returncode == 0, stderr.decode()
    printed = json.loads(stdout)
    assert printed == {
        "agent": "hello@1.0.0",
        "events": [
            "log",
            "progress",
            "tool_call",
            "tool_result",
            "metric",
            "metric",
            "log",
            "progress",
        ],
        "result": {"agent": "hello@1.0.0", "greeting": "HELLO, ADA"},
    }
