"""The bounded fuzz run of every `./scripts/test`: each target over its checked-in
corpus plus a fixed number of deterministic mutations of it.

Zero crashes (an exception other than the documented ARCPError refusals) and zero
hangs: a per-input CPU-time bound (SIGPROF, so pytest-timeout's SIGALRM is left
alone) turns a runaway input into a failure naming it, where a quadratic parser
would otherwise only show up as a slow suite. The bound is a hang detector set a
thousand times above the usual cost of one input, not a speed check. The long,
coverage-guided run is atheris (`tests/fuzz/atheris_main.py`, docs/fuzzing.md).
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.fuzz.mutators import mutate
from tests.fuzz.targets import EXPECTED, TARGETS

CORPUS = Path(__file__).parent / "corpus"
MUTATIONS = 5000  # per target; fixed, so a failure reproduces
HANG_CPU_SECONDS = 2.0


class _Hang(Exception):
    """An input exceeded the per-input CPU-time bound."""


def _on_prof(signum: int, frame: FrameType | None) -> None:
    raise _Hang


def corpus(target: str) -> list[bytes]:
    return [path.read_bytes() for path in sorted((CORPUS / target).iterdir())]


def inputs(target: str) -> Iterator[bytes]:
    seeds = corpus(target)
    yield from seeds
    rng = random.Random(f"arcp-fuzz-{target}")
    for _ in range(MUTATIONS):
        yield mutate(target, rng.choice(seeds), rng, seeds)


def run_one(target: Callable[[bytes], None], data: bytes) -> str | None:
    """None when the target returned or refused as documented, else what went wrong."""
    signal.setitimer(signal.ITIMER_PROF, HANG_CPU_SECONDS)
    try:
        target(data)
    except EXPECTED:
        return None
    except _Hang:
        return f"hang: more than {HANG_CPU_SECONDS} s of CPU"
    except Exception as exc:
        return f"crash: {type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    return None


@pytest.fixture
def prof_alarm() -> Iterator[None]:
    previous = signal.signal(signal.SIGPROF, _on_prof)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


@pytest.mark.usefixtures("prof_alarm")
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_no_crash_and_no_hang(name: str) -> None:
    target = TARGETS[name]
    failures: list[str] = []
    count = 0
    for data in inputs(name):
        count += 1
        problem = run_one(target, data)
        if problem is not None:
            failures.append(f"{problem}\n    input: {data[:300]!r}")
    assert count == len(corpus(name)) + MUTATIONS
    assert not failures, f"{len(failures)} of {count} inputs:\n" + "\n".join(failures[:10])


def test_the_hand_written_seeds_reach_past_the_parser() -> None:
    """A corpus every target refuses at once would fuzz nothing but the parser: the
    hand-written seeds (named `*.json` / `*.bin`; the rest are atheris finds, named by
    their SHA-1) are valid inputs, with a few deliberate exceptions."""
    for name, target in TARGETS.items():
        seeds = [p.read_bytes() for p in (CORPUS / name).iterdir() if p.suffix]
        accepted = sum(_accepts(target, seed) for seed in seeds)
        assert accepted >= len(seeds) - 2, name


def _accepts(target: Callable[[bytes], None], data: bytes) -> bool:
    try:
        target(data)
    except EXPECTED:
        return False
    return True
