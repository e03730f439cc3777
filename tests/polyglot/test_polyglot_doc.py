"""docs/polyglot.md, followed as written on a fresh copy of the repository (issue 24).

A newcomer runs the README's first command (``./scripts/serve``, which makes
``.venv/``) and then the doc's steps; so does this test, so the doc cannot rot
again. Every fenced block after a ``<!-- doc-test: run -->`` marker runs with
bash, in document order, from the root of a copy of the checkout (its tracked
and unignored files: what a clone of this commit holds, no ``.venv``, no
``node_modules``, no ``gen/``); a block after ``<!-- doc-test: file NAME -->``
is saved as NAME there, exactly as a reader would paste it. The only thing the
test adds is ``ARCP_ADDRESS``, because its ``serve`` listens on a free port
rather than on 7400. The TypeScript example is among the steps: it has to list
the agents, run jobs and read ``DUPLICATE_KEY`` from the error details.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doc_blocks import marked_blocks, run_commands
from tests.serve_process import clean_env

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "polyglot.md"
# Bounds, never what the test checks: `scripts/serve` installs the package into a new
# venv on its first start, and the steps run `npm ci`, pip and buf.
SERVE_READY = 300.0
STEP_TIMEOUT = 300.0


def test_the_doc_marks_generation_and_the_typescript_example() -> None:
    """The markers are where the test expects them: a reworded doc still gets run."""
    steps = marked_blocks(DOC.read_text(), "doc-test")
    commands = "\n".join(step.body for step in steps if not step.name)
    assert re.search(r"^tools/node_modules/\.bin/buf generate\s*(#.*)?$", commands, re.MULTILINE)
    assert "npx tsx client.mts" in commands
    assert [step.name for step in steps if step.name] == ["client.mts"]


def _fresh_copy(target: Path) -> Path:
    """The checkout's tracked and unignored files (uncommitted edits included) in `target`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():  # tools/node_modules is a link
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture
def served_copy(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A fresh copy with ``./scripts/serve`` running in it: (its root, the gRPC address)."""
    root = _fresh_copy(tmp_path / "arcp-grpc")
    ready = tmp_path / "ready.json"
    ports = ("--grpc-port", "0", "--gateway-port", "0", "--no-metrics", "--ready-file", str(ready))
    log = tmp_path / "serve.log"  # a file, not a pipe nobody reads while the steps run
    with log.open("w") as sink:
        serve = subprocess.Popen(
            ["./scripts/serve", *ports], cwd=root, env=clean_env(), stdout=sink, stderr=sink
        )
    try:
        deadline = time.monotonic() + SERVE_READY
        while not ready.exists():
            if serve.poll() is not None:
                pytest.fail(f"./scripts/serve exited {serve.returncode}: {log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"./scripts/serve was not ready within {SERVE_READY:.0f} s")
            time.sleep(0.2)
        address = re.search(r'"grpc": "([^"]+)"', ready.read_text())
        assert address is not None
        yield root, address[1]
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()


@pytest.mark.timeout(SERVE_READY + 4 * STEP_TIMEOUT)
def test_every_step_runs_as_written(served_copy: tuple[Path, str]) -> None:
    root, address = served_copy
    env = clean_env(ARCP_ADDRESS=address)
    env.pop("VIRTUAL_ENV", None)  # a reader's shell has not activated ours
    outputs: list[str] = []
    for step in marked_blocks(DOC.read_text(), "doc-test"):
        if step.name:
            (root / step.name).write_text(step.body)
            continue
        done = run_commands(step.body, root, env, STEP_TIMEOUT)
        assert done.returncode == 0, f"{step.body}\nexited {done.returncode}:\n{done.stderr}"
        outputs.append(done.stdout)

    # buf generate wrote every language, gRPC-less Python with its own protoc included.
    for made in (
        "gen/ts/arcp/v1/job_service_pb.ts",
        "gen/python/arcp/v1/job_service_pb2.py",
        "gen/java/dev/arcp/v1/JobServiceProto.java",
        "gen/ts-googleapis/google/rpc/error_details_pb.ts",
    ):
        assert (root / made).is_file(), made
    # The TypeScript example ran against the copy's serve (the last step).
    printed = outputs[-1].splitlines()
    assert printed[0] == "agents: chatty counter delegator echo greeter report spender"
    assert printed[1].startswith("submitted job_")
    assert printed[1].endswith("replay: false")
    assert "{ hi: 1 }" in printed
    assert "ended result" in printed
    assert printed[-1] == "true DUPLICATE_KEY"
    assert not (root / "package.json").exists()  # --no-save: the checkout stays clean
    assert os.access(root / "node_modules" / ".bin" / "tsx", os.X_OK)
