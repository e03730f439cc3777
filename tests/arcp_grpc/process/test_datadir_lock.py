"""`DataDirLock`: one holder per data directory, named by pid to the next comer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from arcp_grpc.process.datadir_lock import LOCK_FILE, DataDirLock, DataDirLocked


def test_the_second_acquirer_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    held = DataDirLock.acquire(tmp_path)
    try:
        with pytest.raises(DataDirLocked) as caught:
            DataDirLock.acquire(tmp_path)  # a separate open file: flock refuses it too
        assert caught.value.pid == os.getpid()
        assert f"pid {os.getpid()}" in str(caught.value)
        assert str(tmp_path) in str(caught.value)
    finally:
        held.release()


def test_release_lets_the_next_one_in_and_a_stale_pid_is_overwritten(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text("999999999\nleft by a crashed process\n")
    first = DataDirLock.acquire(tmp_path)  # the file is there, the lock is not
    assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    first.release()
    first.release()  # idempotent
    DataDirLock.acquire(tmp_path).release()
