"""Setting up a Node.js project of the repository for a test: its pinned npm lockfile
installed (skipped when node_modules already matches it), its protoc-gen-es stubs
generated with buf, and the TypeScript type-checked. Shared by the Node client
(tests/polyglot) and the TypeScript worker (examples/worker-ts)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["BUF", "ROOT", "SETUP_TIMEOUT", "generate", "npm_ci", "require_node", "run", "typecheck"]

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "tools" / "node_modules" / ".bin" / "buf"
# A bound for each setup step; a hung step fails the test instead of hanging CI.
SETUP_TIMEOUT = 300.0


def require_node() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required: the Node.js tests are acceptance tests")


def run(cmd: list[str], cwd: Path) -> None:
    """Run a setup step; its output is shown only when it fails."""
    done = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=SETUP_TIMEOUT, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")


def npm_ci(project: Path) -> None:
    """``npm ci`` of the project's pinned lockfile, skipped when node_modules matches it."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((project / name).read_bytes())
    wanted = digest.hexdigest()
    stamp = project / "node_modules" / ".arcp-lock.sha256"
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], project)
    stamp.write_text(wanted)


def generate(project: Path) -> None:
    """The project's stubs, by its buf.gen.yaml (run from the repository root)."""
    run([str(BUF), "generate", "--template", str(project / "buf.gen.yaml")], ROOT)


def typecheck(project: Path) -> None:
    run([str(project / "node_modules" / ".bin" / "tsc"), "--noEmit", "-p", str(project)], project)
