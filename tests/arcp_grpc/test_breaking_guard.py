"""scripts/check_breaking.py fails an incompatible change to the contract.

Each test copies buf.yaml and proto/ into a fresh git repository on branch
``main``, edits the copy, and runs the real script (and so the real
``buf breaking``) on it: renumbering or retyping a field must fail, adding
must pass, and a missing baseline must pass with a reason.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_breaking.py"
JOB_SERVICE = Path("proto/arcp/v1/job_service.proto")
WATCH_REQUEST = """message WatchJobRequest {
  // The job to watch.
  string job_id = 1;
  // Deliver events with `job_seq` greater than this; 0 for all.
  uint64 after_seq = 2;
}"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=guard", "-c", "user.email=guard@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def _commit(repo: Path, message: str) -> None:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A one-commit repository on main holding today's contract."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    assert WATCH_REQUEST in (tmp_path / JOB_SERVICE).read_text(), "fixture text drifted"
    _git(tmp_path, "init", "-q", "-b", "main")
    _commit(tmp_path, "contract")
    return tmp_path


def _edit(repo: Path, old: str, new: str) -> None:
    path = repo / JOB_SERVICE
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _check(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--repo", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_renumbered_field_fails(repo: Path) -> None:
    _edit(repo, "uint64 after_seq = 2;", "uint64 after_seq = 3;")
    done = _check(repo)
    assert done.returncode == 1, done.stdout
    assert "the tip of main" in done.stdout
    assert "FIELD_NO_DELETE" in done.stdout  # field 2 is gone


def test_retyped_field_fails(repo: Path) -> None:
    _edit(repo, "uint64 after_seq = 2;", "string after_seq = 2;")
    done = _check(repo)
    assert done.returncode == 1, done.stdout
    assert "FIELD_SAME_TYPE" in done.stdout
    assert "after_seq" in done.stdout


def test_additive_change_passes(repo: Path) -> None:
    _edit(
        repo,
        "  uint64 after_seq = 2;\n}",
        "  uint64 after_seq = 2;\n  // Stop after this many events; 0 means no limit.\n"
        "  uint32 max_events = 3;\n}",
    )
    done = _check(repo)
    assert done.returncode == 0, done.stdout
    assert "compatible with the tip of main" in done.stdout


def test_committed_break_on_main_is_checked_against_the_parent(repo: Path) -> None:
    """CI runs on main's tip: the latest commit's change is what gets checked."""
    _edit(repo, "uint64 after_seq = 2;", "int32 after_seq = 2;")
    _commit(repo, "retype after_seq")
    done = _check(repo)
    assert done.returncode == 1, done.stdout
    assert "the commit before main's tip" in done.stdout


def test_contract_break_trailer_lets_a_deliberate_break_through(repo: Path) -> None:
    _edit(repo, "uint64 after_seq = 2;", "int32 after_seq = 2;")
    _commit(repo, "retype after_seq\n\nContract-Break: pre-release cleanup")
    done = _check(repo)
    assert done.returncode == 0, done.stdout
    assert "FIELD_SAME_TYPE" in done.stdout
    assert "pre-release cleanup" in done.stdout


def test_last_tag_is_the_baseline(repo: Path) -> None:
    _git(repo, "tag", "v0.1.0")
    _edit(repo, "uint64 after_seq = 2;", "uint64 after_seq = 4;")
    _commit(repo, "renumber after_seq")
    (repo / "NOTES").write_text("a later commit that does not touch proto/\n")
    _commit(repo, "notes")
    done = _check(repo)
    assert done.returncode == 1, done.stdout
    assert "the last tag v0.1.0" in done.stdout


def test_no_previous_commit_passes_with_a_reason(repo: Path) -> None:
    done = _check(repo)
    assert done.returncode == 0, done.stdout
    assert "nothing to compare against" in done.stdout
    assert "first commit" in done.stdout


def test_the_repository_contract_passes() -> None:
    """The guard as scripts/test runs it, on this repository."""
    done = _check(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_finding_without_a_path_is_described_not_a_crash() -> None:
    """buf reports a deleted file's (or a whole module's) break with no path or line."""
    spec = importlib.util.spec_from_file_location("check_breaking", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    check_breaking = importlib.util.module_from_spec(spec)
    sys.modules["check_breaking"] = check_breaking  # its dataclasses look themselves up
    spec.loader.exec_module(check_breaking)
    assert check_breaking._describe({"type": "FILE_NO_DELETE", "message": "gone"}) == (
        "FILE_NO_DELETE: gone"
    )
    assert check_breaking._describe(
        {"path": "a.proto", "start_line": 3, "type": "FIELD_NO_DELETE", "message": "x"}
    ) == ("a.proto:3: FIELD_NO_DELETE: x")
