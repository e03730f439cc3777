"""The long, coverage-guided fuzz run: atheris (libFuzzer) on one target.

    .venv/bin/python -m tests.fuzz.atheris_main TARGET WORK_DIR [libFuzzer flags...]

Run it from the repository root. TARGET is a name in `tests.fuzz.targets.TARGETS`.
WORK_DIR receives the inputs libFuzzer finds interesting (start from a copy of
tests/fuzz/corpus/TARGET, so the checked-in corpus only changes when someone
decides to add to it); crashes are written as ``crash-<sha1>`` under
``-artifact_prefix``. A documented refusal
(ARCPError) is a normal outcome; any other exception is a crash, and
``-timeout=N`` makes an input running longer than N seconds a hang. Mutations
are half libFuzzer's own, half the structure-aware ones of `mutators`
(seeded by libFuzzer), so JSON and protobuf inputs stay well formed often
enough to reach the rules behind the parsers. See docs/fuzzing.md.
"""

from __future__ import annotations

import contextlib
import random
import sys

import atheris

with atheris.instrument_imports(include=["arcp_grpc", "gateway", "tests.fuzz"]):
    from tests.fuzz.mutators import mutate
    from tests.fuzz.targets import EXPECTED, TARGETS


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.atheris_main {{{','.join(TARGETS)}}} WORK_DIR ...")
    name = sys.argv[1]
    target = TARGETS[name]

    def one_input(data: bytes) -> None:
        with contextlib.suppress(*EXPECTED):
            target(data)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        if seed % 2:
            mutated: bytes = atheris.Mutate(data, max_size)
            return mutated
        return mutate(name, data, random.Random(seed), [data])[:max_size]

    # libFuzzer runs argv[0] through `sh` for -merge, -fork and -jobs: make it this command.
    command = f"{sys.executable} -m tests.fuzz.atheris_main {name}"
    atheris.Setup([command, *sys.argv[2:]], one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
