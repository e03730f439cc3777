"""The plain values every layer shares: ids, timestamps, JSON values, hand-framed protobuf
fields, agent references, request validation and the log context.

Nothing here does I/O or holds state beyond a context variable, and nothing here imports
another layer of the project: the store, the runtime, the services, the gateway and the CLI
all build on it (docs/architecture.md).
"""

from __future__ import annotations

__all__: list[str] = []
