"""`arcp-grpc store copy`: the operator's move from SQLite to PostgreSQL.

    arcp-grpc store copy [--from sqlite:///PATH] --to postgresql://USER@HOST:PORT/DB

The source defaults to the SQLite file in `--data-dir` (./data). Progress goes to
stderr: one redrawn line on a terminal, a line per table otherwise. Exit 0 when
every row went across, 1 when the copy was refused or failed (nothing written),
2 for a bad argument.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from arcp_grpc.store.copy import CopyError, copy_sqlite_to_postgres, open_source
from arcp_grpc.store.url import postgres_dsn, sqlite_path

__all__ = ["add_store_parser", "run_store"]

EXIT_FAILED = 1


class StoreUsageError(Exception):
    """A `store` argument that names no usable store."""


def add_store_parser(commands: Any) -> None:
    store = commands.add_parser("store", help="store maintenance (copy SQLite to PostgreSQL)")
    actions = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    copy = actions.add_parser(
        "copy",
        help="copy a stopped node's SQLite store into an empty PostgreSQL store",
        description="Jobs, event logs, unexpired idempotency claims and the credential"
        " ledger go across byte for byte; give the cluster the SQLite node's key file.",
    )
    copy.add_argument("--from", dest="source", default="", help="sqlite:///PATH (the data dir's)")
    copy.add_argument("--to", dest="target", required=True, help="postgresql://USER@HOST:PORT/DB")
    copy.add_argument("--data-dir", default="data", help="where the default source is (./data)")


def run_store(args: argparse.Namespace, out: TextIO) -> int:
    source = sqlite_path(args.source, Path(args.data_dir))
    if source is None:
        raise StoreUsageError("--from must be a sqlite:///PATH store")
    if sqlite_path(args.target, Path(args.data_dir)) is not None:
        raise StoreUsageError("--to must be a PostgreSQL store (postgresql://…)")
    try:
        dsn = postgres_dsn(args.target)
    except ValueError as exc:
        raise StoreUsageError(f"--to: {exc}") from None
    shown = _Progress(sys.stderr)
    try:
        connection = open_source(source)
        try:
            copied = asyncio.run(
                copy_sqlite_to_postgres(connection, dsn, progress=shown, now=time.time())
            )
        finally:
            connection.close()
    except CopyError as exc:
        shown.end()
        print(f"arcp-grpc: store copy refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    shown.end()
    out.write(
        f"copied {copied.jobs} jobs, {copied.events} events, {copied.claims} idempotency"
        f" claims, {copied.credentials} credentials from {source}\n"
    )
    return 0


class _Progress:
    """`what: done/total` per table, redrawn in place on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._open = False

    def __call__(self, what: str, done: int, total: int) -> None:
        line = f"{what}: {done:,}/{total:,}"
        if self._tty:
            self._stream.write("\r\033[K" + line)
            self._open = True
        elif done == total:
            self._stream.write(line + "\n")
        self._stream.flush()

    def end(self) -> None:
        if self._open:
            self._stream.write("\n")
            self._open = False
