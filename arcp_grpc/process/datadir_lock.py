"""One `serve` per data directory: an exclusive lock taken before the store is touched.

Two cores on one SQLite file do not fail loudly: the second one's start-up
recovery marks the first one's running jobs as interrupted, then both write
the same file. So `serve` takes ``fcntl.flock`` on ``<data_dir>/serve.lock``
first, and writes its pid into the file once it holds the lock; a second
process finds the lock held, reads the holder's pid and stops without writing
anything. The kernel drops the lock when the holder exits, however it exits,
so a crash never leaves a stale lock behind (the file, and an old pid in it,
may stay: only the lock counts).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["LOCK_FILE", "DataDirLock", "DataDirLocked"]

LOCK_FILE = "serve.lock"


class DataDirLocked(Exception):
    """Another process holds the data directory; ``pid`` is its pid when known."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "a process whose pid is not recorded yet"
        super().__init__(
            f"data_dir {data_dir} is in use by another arcp-grpc serve ({holder}); stop it,"
            " or give this one another data_dir"
        )
        self.pid = pid


class DataDirLock:
    """The held lock; `release` (or the process's exit) frees it."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Lock `data_dir` (which must exist) or raise :class:`DataDirLocked`."""
        path = data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirLocked(data_dir.resolve(), pid) from None
        except BaseException:
            os.close(fd)
            raise
        # Overwrite, then cut: the file is never empty, and its first line is a pid.
        record = f"{os.getpid()}\n".encode()
        os.pwrite(fd, record, 0)
        os.ftruncate(fd, len(record))
        return cls(fd, path)

    def release(self) -> None:
        """Unlock; the file stays (removing it would race with a process opening it)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    first = os.pread(fd, 32, 0).decode("ascii", "replace").split("\n", 1)[0].strip()
    return int(first) if first.isdigit() else None
