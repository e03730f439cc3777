"""`arcp-grpc`, the command line: `serve`, the gRPC client commands and the operator tools.

The top of the import graph: nothing in the project imports it (docs/architecture.md).
"""

from __future__ import annotations

__all__: list[str] = []
