"""`arcp-grpc serve` as a real child process on 127.0.0.1 port 0, for end-to-end tests.

The process publishes its bound addresses through ``--ready-file``; tests
read them instead of guessing ports. Every wait is bounded, and a process a
test leaves running is killed by `stop`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["ARCP_GRPC", "ServeProcess", "clean_env", "cluster_config", "cluster_node", "run_cli"]

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


def cluster_config(
    directory: Path, store_url: str, *, node_timeout_sec: float, store_extra: str = ""
) -> Path:
    """One configuration file for every node of a test cluster: the store, its shared
    key, the tokens of alice and bob, a short node timeout and a quick heartbeat."""
    key_file = directory / "cluster.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    config = directory / "cluster.toml"
    config.write_text(
        f"""
[auth]
dev_token = false
tokens = {{ "tok-alice" = "alice", "tok-bob" = "bob" }}
[store]
url = "{store_url}"
key_file = "{key_file}"
{store_extra}
[cluster]
node_timeout_sec = {node_timeout_sec}
heartbeat_sec = 0.25
"""
    )
    return config


def cluster_node(directory: Path, config: Path, name: str, *args: str) -> ServeProcess:
    """A `serve` node (`args` may name a role) of the cluster `config` describes, named
    `node-NAME`, working in DIRECTORY/NAME, on ports 0, without metrics."""
    workdir = directory / name
    workdir.mkdir()
    return ServeProcess(
        workdir,
        *args,
        "--config",
        str(config),
        "--grpc-port",
        "0",
        "--gateway-port",
        "0",
        "--no-metrics",
        "--set",
        f"cluster.node_name=node-{name}",
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
