"""The WebSocket gateway: ARCP JSON frames to and from the core's gRPC SessionService."""

from __future__ import annotations

__all__: list[str] = []
