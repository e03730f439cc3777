"""A PostgreSQL server of a test's own, which the test may stop and start again on the
same port (never the shared one): made by `scripts/test-postgres`, driven with
`pg_ctl` as the server's owner (`postgres` when the tests run as root).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["OwnPostgres"]

_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "test-postgres"
_PG_CTL_WAIT = "60"  # seconds pg_ctl waits for a start or a stop


class OwnPostgres:
    """`start`ed once; then `stop` (fast shutdown: sessions are ended) and `start`
    again as often as the test needs; `remove` at the end."""

    def __init__(self) -> None:
        self._base = Path(tempfile.mkdtemp(prefix="arcp-own-pg."))
        self._base.chmod(0o755)  # the server may run as the `postgres` user
        self._dir = self._base / "pg"
        made = subprocess.run(
            [str(_SCRIPT), "start", str(self._dir)], capture_output=True, text=True, check=False
        )
        assert made.returncode == 0, f"could not start PostgreSQL: {made.stderr}"
        self.url = made.stdout.strip()
        self.port = urlsplit(self.url).port
        self._bin = _bindir()

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self._dir} -c fsync=off"
            " -c full_page_writes=off -c max_connections=400"
        )
        self._pg_ctl("-l", str(self._dir / "server.log"), "start", "-o", options)

    def remove(self) -> None:
        subprocess.run([str(_SCRIPT), "stop", str(self._dir)], check=False, capture_output=True)
        self._base.rmdir()

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self._bin / "pg_ctl"), "-D", str(self._dir / "data"), "-w"]
        command += ["-t", _PG_CTL_WAIT, *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"pg_ctl {args[-1]}: {done.stderr}"


def _bindir() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    assert versions, "PostgreSQL is not installed (scripts/test-postgres installs it)"
    return versions[-1]
