"""Load generators: the published ARCP client, a lean raw-frame client, and JobService stubs.

All three implement the same small ``Driver``/``Conn`` surface (``bench.loadgen.base``), so
every scenario runs unchanged over each wire and the figures are comparable.
"""

from __future__ import annotations

__all__: list[str] = []
