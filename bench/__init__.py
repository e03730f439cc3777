"""Benchmarks of arcp-grpc side by side with the reference ARCP runtime and the raw ceilings.

One entry point, ``python -m bench``: every server runs in its own process on 127.0.0.1, the
load generators run in this process, and the figures land in ``bench/RESULTS.md`` as medians
over repetitions with ratios to the reference measured in the same run (issue 7).
"""

from __future__ import annotations

__all__: list[str] = []
