"""Timestamps on the hot path.

`Timestamp.GetCurrentTime` goes through `datetime` and `calendar.timegm`
(about 4 µs, several times the cost of the rest of a small event), and
`FromNanoseconds` re-validates a value the clock cannot get wrong. Every
job and every event is stamped, so this sets the two fields directly.
"""

from __future__ import annotations

import time

from google.protobuf import timestamp_pb2

__all__ = ["stamp"]

_NANOS_PER_SECOND = 1_000_000_000


def stamp(ts: timestamp_pb2.Timestamp, ns: int | None = None) -> None:
    """Set `ts` to `ns` nanoseconds since the Unix epoch, now by default."""
    ts.seconds, ts.nanos = divmod(time.time_ns() if ns is None else ns, _NANOS_PER_SECOND)
