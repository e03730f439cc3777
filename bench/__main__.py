"""``python -m bench [--quick] [--reps N] [--only SCENARIO,...] [--targets TARGET,...]``."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import signal
import sys
from pathlib import Path
from types import FrameType

from bench.procs import kill_all
from bench.report import machine_info, render, versions
from bench.runner import ALL_SCENARIOS, ALL_TARGETS, Options, run
from bench.scale import FULL, QUICK

__all__ = ["main"]


def _names(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what}: {', '.join(unknown)}")
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--only",
        type=lambda t: _names(t, ALL_SCENARIOS, "scenario"),
        default=ALL_SCENARIOS,
        help=f"scenarios, comma-separated: {','.join(ALL_SCENARIOS)}",
    )
    parser.add_argument(
        "--targets",
        type=lambda t: _names(t, ALL_TARGETS, "target"),
        default=ALL_TARGETS,
        help=f"targets, comma-separated: {','.join(ALL_TARGETS)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent,
        help="directory for RESULTS.md and results.json (default: bench/)",
    )
    return parser


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds through the finally blocks that stop the servers.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the report; returns the process exit status."""
    args = _parser().parse_args(argv)
    if not 1 <= args.reps <= 20:
        raise SystemExit("--reps must be between 1 and 20")
    command = " ".join([".venv/bin/python -m bench", *(argv if argv is not None else sys.argv[1:])])
    opts = Options(
        scale=QUICK if args.quick else FULL,
        reps=args.reps,
        only=args.only,
        targets=args.targets,
        quick=args.quick,
        command=command.strip(),
    )
    atexit.register(kill_all)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = asyncio.run(run(opts))
    finally:
        kill_all()
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = render(result, opts, machine_info(), versions())
    (args.out / "RESULTS.md").write_text(markdown)
    (args.out / "results.json").write_text(json.dumps(result.to_json(), indent=1, sort_keys=True))
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
