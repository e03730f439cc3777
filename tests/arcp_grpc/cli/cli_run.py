"""Running the CLI in-process against a test's core, and reading its ``--json`` lines."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from arcp_grpc.cli.main import main
from arcp_grpc.server import RunningCore

__all__ = ["cli", "json_lines"]


async def cli(core: RunningCore, *args: str, token: str = "tok-alice") -> int:
    """`arcp-grpc ARGS` in a worker thread (it is synchronous; the core is on this loop)."""
    argv = [*args, "--address", core.grpc_address, "--token", token]
    return await asyncio.to_thread(main, argv)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
