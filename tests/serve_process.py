"""`arcp-grpc serve` as a real child process on 127.0.0.1 port 0, for end-to-end tests.

The process publishes its bound addresses through ``--ready-file``; tests
read them instead of guessing ports. Every wait is bounded, and a process a
test leaves running is killed by `stop`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.doc_blocks import run_commands

__all__ = ["ARCP_GRPC", "ServeProcess", "clean_env", "run_cli"]

ARCP_GRPC = str(Path(sys.executable).with_name("arcp-grpc"))  # the console script
_STARTUP = 30.0  # seconds; a safety net, never what a test checks


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ARCP_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCP_")}
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `arcp-grpc ARGS` to completion, capturing text output."""
    return subprocess.run(
        [ARCP_GRPC, *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=_STARTUP,
        check=False,
    )


class ServeProcess:
    """One `arcp-grpc serve ...` child; `info` is its ready-file JSON once started."""

    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.ready_file = workdir / f"ready-{time.monotonic_ns()}.json"
        self.args = ["serve", *args, "--ready-file", str(self.ready_file)]
        self.env = env or clean_env()
        self.process: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}
        self._banner: list[str] = []

    def start(self) -> dict[str, Any]:
        self.process = subprocess.Popen(
            [ARCP_GRPC, *self.args],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + _STARTUP
        while not self.ready_file.exists():
            if self.process.poll() is not None:
                _, err = self.process.communicate()
                raise AssertionError(f"serve exited with {self.process.returncode}: {err}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError("serve did not become ready")
            time.sleep(0.05)
        self.info = json.loads(self.ready_file.read_text())
        return self.info

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A client command run where `serve` runs, so it finds ./data/dev-token as a
        user following the README would; only the port-0 address is passed."""
        return run_cli(*args, "--address", self.info["grpc"], cwd=self.workdir, env=self.env)

    def banner(self) -> list[str]:
        """The lines `serve` printed on stdout before its ready file: read once, here, so
        `terminate`'s stdout is what came after them."""
        if not self._banner:
            assert self.process is not None
            assert self.process.stdout is not None
            while not self._banner or not self._banner[-1].startswith("Stop with"):
                self._banner.append(self.process.stdout.readline().rstrip("\n"))
        return self._banner

    def try_it(self, command: str) -> subprocess.CompletedProcess[str]:
        """Run the banner's "Try it" line that starts with `command` as a user pastes it
        (bash, where `serve` runs, ``ARCP_TOKEN`` set, the checkout's npm tools on PATH)."""
        (line,) = [text.strip() for text in self.banner() if text.strip().startswith(command)]
        tools = Path(__file__).resolve().parent.parent / "tools" / "node_modules" / ".bin"
        env = {**self.env, "ARCP_TOKEN": self.token, "PATH": f"{tools}:{os.environ['PATH']}"}
        return run_commands(line, self.workdir, env, _STARTUP)

    @property
    def token(self) -> str:
        return Path(self.info["token_file"]).read_text().strip()

    def terminate(self, timeout: float = _STARTUP) -> tuple[int, str, str]:
        """SIGTERM, then wait: (exit code, stdout, stderr)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=timeout)
        self.ready_file.unlink(missing_ok=True)
        return self.process.returncode, out, err

    def stop(self) -> None:
        """Kill the process if it is still running (teardown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=10)
