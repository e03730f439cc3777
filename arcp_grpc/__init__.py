"""arcp-grpc: an ARCP v1.1 runtime whose core is a gRPC service.

The contract lives in ``proto/arcp/v1`` and its generated Python stubs in
``arcp_grpc.v1``. Errors are the typed tree in ``arcp_grpc.errors``.
"""

from __future__ import annotations

from arcp_grpc.errors import ARCPError

__all__ = ["ARCPError", "__version__"]

__version__ = "0.1.0"
