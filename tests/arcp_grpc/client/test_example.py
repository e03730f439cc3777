"""The documented backend example runs as printed (docs/client.md) against a real serve."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

from tests.conftest import SAFETY
from tests.serve_process import ServeProcess, clean_env

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "backend_client.py"
GUIDE = REPO / "docs" / "client.md"


def test_the_guide_shows_the_example_verbatim() -> None:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    assert EXAMPLE.read_text() in blocks


async def test_the_example_runs_end_to_end(served: ServeProcess) -> None:
    env = clean_env(ARCP_ADDRESS=served.info["grpc"], ARCP_TOKEN=served.token, PYTHONPATH=str(REPO))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), SAFETY)
    assert process.returncode == 0, stderr.decode()
    assert json.loads(stdout) == {
        "progress": [1, 2, 3],
        "counted": {"count": 3},
        "greeting": {"greeting": "Hello, backend!", "version": "2.0.0"},
        "batch": 5,
        "missing": "JOB_NOT_FOUND",
        "agents": ["chatty", "counter", "delegator", "echo", "greeter", "report", "spender"],
    }
