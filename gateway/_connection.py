"""A WebSocket connection that sends a batch of messages in one write.

A chatty job through the gateway is bound by syscalls: `websockets` writes
every frame of every message separately. This connection joins whatever one
flush produces into a single `transport.write`, and `send_texts` queues a
whole batch (the frames of one `ConnectResponse.frames` message) before that
flush, so a lagging client costs one syscall per batch instead of per event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from websockets.asyncio.server import ServerConnection

__all__ = ["CoalescingConnection"]


class CoalescingConnection(ServerConnection):
    """`ServerConnection` with coalesced writes and batch sends."""

    def send_data(self) -> None:
        chunks = self.protocol.data_to_send()
        payload = b"".join(chunk for chunk in chunks if chunk)
        if payload:
            self.transport.write(payload)
        if chunks and not chunks[-1]:
            # The protocol asked for end-of-stream: half-close as the base class does.
            if self.transport.can_write_eof():
                with contextlib.suppress(Exception):
                    self.transport.write_eof()
            else:
                self.transport.close()

    async def send_texts(self, texts: Sequence[str]) -> None:
        """Send several text messages, in order, flushed together."""
        async with self.send_context():
            for text in texts:
                self.protocol.send_text(text.encode())
