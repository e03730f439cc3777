"""The gRPC edge of the core: the JobService and SessionService servicers, ARCP sessions
and their journal, event delivery into sessions, and the transport policy for secrets.

Servicers are adapters (STYLE.md): they translate RPCs to runtime calls and map failures to
statuses once; they own no job state (docs/architecture.md).
"""

from __future__ import annotations

__all__: list[str] = []
