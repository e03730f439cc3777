"""One `serve` process: what it starts (core, gateway, metrics), its event loop, its data
directory lock and its metrics endpoint.

It wires the layers below it together; only the CLI is above it (docs/architecture.md).
"""

from __future__ import annotations

__all__: list[str] = []
