"""Small pure statistics helpers: medians, min–max, better-than-reference ratios."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "better_ratio", "summarize"]


@dataclass(frozen=True)
class Summary:
    """The median of per-repetition figures with their spread."""

    median: float
    low: float
    high: float
    count: int


def summarize(values: Sequence[float]) -> Summary:
    """Median and min–max of ``values`` (one figure per repetition)."""
    if not values:
        raise ValueError("no values to summarize")
    return Summary(statistics.median(values), min(values), max(values), len(values))


def better_ratio(value: float, reference: float, *, lower_is_better: bool) -> float:
    """How many times better than the reference ``value`` is: > 1 means faster.

    Latencies compare as ``reference / value``, rates as ``value / reference``, so one
    reading rule holds for every row of the report.
    """
    if value <= 0 or reference <= 0:
        return float("nan")
    return reference / value if lower_is_better else value / reference
