"""Fail when the working tree's proto/ breaks the published arcp.v1 contract.

Clients in every language are generated from proto/, so a renumbered or
retyped field silently corrupts their traffic. This runs ``buf breaking``
(the FILE rules of buf.yaml) against a baseline contract taken from git:

1. ``--against REF`` when given;
2. else the newest tag reachable from HEAD (a released contract);
3. else the tip of ``main``; when the working tree's proto/ is identical to
   it (CI on main's tip), its parent instead, so the latest commit's change
   is what gets checked.

With no baseline (no git, a first commit, a shallow clone, a baseline
without proto/) it says so and passes. A deliberate break before the
contract is released is let through, findings printed, when HEAD's commit
message has a ``Contract-Break: <why>`` line.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Baseline", "breaking_changes", "choose_baseline", "main"]

TOOLS_ROOT = Path(__file__).resolve().parent.parent
BUF = TOOLS_ROOT / "tools" / "node_modules" / ".bin" / "buf"
PROTO = "proto"
TRAILER = "Contract-Break:"


@dataclass(frozen=True)
class Baseline:
    """A commit whose proto/ is the contract to stay compatible with."""

    commit: str
    why: str


def _git(repo: Path, *args: str) -> str | None:
    """stdout of a git command, or None when it fails."""
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def _commit(repo: Path, ref: str) -> str | None:
    return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")


def _proto_matches(repo: Path, commit: str) -> bool:
    """Whether the working tree's proto/ (untracked files too) equals the commit's."""
    changed = subprocess.run(
        ["git", "diff", "--quiet", commit, "--", PROTO], cwd=repo, check=False
    ).returncode
    untracked = _git(repo, "ls-files", "--others", "--exclude-standard", "--", PROTO)
    return changed == 0 and not untracked


def choose_baseline(repo: Path, against: str | None) -> Baseline | str:
    """The baseline commit, or why there is none (see the module docstring)."""
    if _git(repo, "rev-parse", "--git-dir") is None:
        return f"{repo} is not a git repository"
    if against is not None:
        commit = _commit(repo, against)
        return Baseline(commit, f"--against {against}") if commit else f"no commit {against!r}"
    tag = _git(repo, "describe", "--tags", "--abbrev=0", "HEAD")
    if tag:
        commit = _commit(repo, tag)
        if commit:
            return Baseline(commit, f"the last tag {tag}")
    tip = _commit(repo, "refs/heads/main") or _commit(repo, "refs/remotes/origin/main")
    if tip is None:
        return "no main branch"
    if not _proto_matches(repo, tip):
        return Baseline(tip, "the tip of main")
    parent = _commit(repo, f"{tip}^")
    if parent is None:
        return "main has no commit before its tip (first commit or shallow clone)"
    return Baseline(parent, "the commit before main's tip (proto/ equals main's)")


def _extract(repo: Path, commit: str, dest: Path) -> bool:
    """Write the commit's proto/ under dest; False when it has none."""
    if not _git(repo, "ls-tree", "-d", commit, PROTO):
        return False
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, PROTO], cwd=repo, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return True


def breaking_changes(workspace: Path, baseline_proto: Path) -> list[str]:
    """``buf breaking`` findings of workspace's proto/ against a baseline proto/ tree.

    Runs in ``workspace`` so its buf.yaml decides the rules.
    """
    done = subprocess.run(
        [str(BUF), "breaking", PROTO, "--against", str(baseline_proto), "--error-format=json"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=False,
    )
    findings = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode not in (0, 100) or (done.returncode == 100 and not findings):
        raise RuntimeError(f"buf breaking failed ({done.returncode}):\n{done.stderr}")
    return [_describe(json.loads(line)) for line in findings]


def _describe(finding: dict[str, object]) -> str:
    """One line per finding; a deleted file's finding has no path or line."""
    where = f"{finding['path']}:{finding.get('start_line', 0)}: " if "path" in finding else ""
    return f"{where}{finding.get('type', 'BREAKING')}: {finding.get('message', '')}"


def _allowed_break(repo: Path) -> str | None:
    """The ``Contract-Break:`` reason in HEAD's message, if any."""
    message = _git(repo, "log", "-1", "--format=%B") or ""
    for line in message.splitlines():
        if line.startswith(TRAILER):
            return line.removeprefix(TRAILER).strip() or "(no reason given)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=TOOLS_ROOT, help="repository to check")
    parser.add_argument("--against", help="git ref of the baseline contract")
    args = parser.parse_args(argv)
    repo: Path = args.repo.resolve()
    baseline = choose_baseline(repo, args.against)
    if isinstance(baseline, str):
        print(f"buf breaking: nothing to compare against ({baseline}); passing")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        if not _extract(repo, baseline.commit, Path(scratch)):
            print(f"buf breaking: {baseline.why} ({baseline.commit[:12]}) has no proto/; passing")
            return 0
        findings = breaking_changes(repo, Path(scratch) / PROTO)
    where = f"{baseline.why} ({baseline.commit[:12]})"
    if not findings:
        print(f"buf breaking: proto/ is compatible with {where}")
        return 0
    print(f"buf breaking: proto/ breaks the contract of {where}:")
    for finding in findings:
        print(f"  {finding}")
    reason = _allowed_break(repo)
    if reason is not None:
        print(f"allowed by HEAD's {TRAILER} {reason}")
        return 0
    print(
        f"Keep field numbers and types; add instead of changing. A deliberate break needs a "
        f"'{TRAILER} <why>' line in the commit message."
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
