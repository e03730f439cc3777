"""A Node.js client built from generated TypeScript stubs calls the real core.

The contract's promise to polyglot backends (issue 8) is only proved by a
non-Python client: ``client.test.ts`` uses protoc-gen-es stubs and Connect's
gRPC transport to list agents, submit with a bearer token, watch to the
outcome, replay an idempotent submit (§7.2), read DUPLICATE_KEY from
``google.rpc.ErrorInfo`` (§12) and cancel a running job (§7.4).

This wrapper installs the pinned npm lockfile (skipped when node_modules
already matches it), generates the stubs into the git-ignored ``gen/``,
type-checks the client, starts the core in-process on 127.0.0.1 port 0 and
runs the client with ``node --test``, whose TAP summary it checks.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from google.rpc import error_details_pb2

from arcp_grpc.server import CoreConfig, start_core
from tests.polyglot.node_project import (
    SETUP_TIMEOUT,
    generate,
    npm_ci,
    require_node,
    typecheck,
)

__all__: list[str] = []

HERE = Path(__file__).resolve().parent
TOKEN = "tok-alice"
# The client's own tests (client.test.ts); the summary must count them all.
NODE_TESTS = 10
# A bound for the client's run; a hung client fails the test instead of hanging CI.
NODE_TIMEOUT = 120.0


def _generate_stubs() -> None:
    """protoc-gen-es stubs of proto/ plus google.rpc.ErrorInfo into gen/ts."""
    # googleapis-common-protos (a grpcio-status dependency) ships the .proto
    # next to its Python module; staging it keeps generation offline.
    staged = HERE / "gen" / "googleapis" / "google" / "rpc"
    shutil.rmtree(staged.parent.parent, ignore_errors=True)
    staged.mkdir(parents=True)
    shutil.copy(Path(error_details_pb2.__file__).with_name("error_details.proto"), staged)
    generate(HERE)


@pytest.fixture(scope="module")
def node_client() -> Path:
    """The Node client, installed, with fresh stubs, type-checked."""
    require_node()
    npm_ci(HERE)
    _generate_stubs()
    typecheck(HERE)
    return HERE


def _tap_summary(output: str) -> dict[str, int]:
    """The ``# name N`` counters that close a TAP run of ``node --test``."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^# (\w+) (\d+)$", output, re.MULTILINE)}


@pytest.mark.timeout(SETUP_TIMEOUT + NODE_TIMEOUT)
async def test_node_client_against_core(node_client: Path, tmp_path: Path) -> None:
    """Every scenario of client.test.ts passes against an in-process core."""
    core = await start_core(CoreConfig(data_dir=tmp_path, grpc_port=0, tokens={TOKEN: "alice"}))
    try:
        env = {**os.environ, "ARCP_GRPC_ADDRESS": core.grpc_address, "ARCP_TOKEN": TOKEN}
        env["NO_COLOR"] = "1"
        proc = await asyncio.create_subprocess_exec(
            "node",
            "--import",
            "tsx",
            "--test",
            "--test-reporter=tap",
            "client.test.ts",
            cwd=node_client,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            raw, _ = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            pytest.fail(f"the Node client did not finish within {NODE_TIMEOUT:.0f} s")
    finally:
        await core.stop()

    output = raw.decode(errors="replace")
    sys.stdout.write(output)  # shown with -s or on failure: node's own summary
    summary = _tap_summary(output)
    assert proc.returncode == 0, f"node --test exited {proc.returncode}"
    assert summary.get("tests") == NODE_TESTS, summary
    assert summary.get("pass") == NODE_TESTS, summary
    assert summary.get("fail") == 0, summary
