"""A WebSocket connection that sends a batch of messages in one write.

A chatty job through the gateway is bound by syscalls: `websockets` writes
every frame of every message separately. This connection joins whatever one
flush produces into a single `transport.write`, and `send_texts` queues a
whole batch (the frames of one `ConnectResponse.frames` message) before that
flush, so a lagging client costs one syscall per batch instead of per event.

With no extension negotiated (permessage-deflate is off by default) a server
text frame is two to ten header bytes and the payload (RFC 6455 §5.2, never
masked), so `send_texts` writes them itself: `websockets` builds a `Frame`
object per message and runs its checks, a third of the gateway's cost for a
small event. With an extension, or mid-way through a fragmented message, the
library does it as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Sequence

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

__all__ = ["CoalescingConnection", "text_frame"]


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
        protocol = self.protocol
        if (
            protocol.state is State.OPEN
            and not protocol.extensions
            and not protocol.expect_continuation_frame
            and not self.paused
            and not self.transport.is_closing()
        ):
            # The common case, without `send_context`: its generator-based context
            # manager cost more than the frames' own encoding. Its exit is done here:
            # the write (no drain wait, the transport is not paused), and on a failed
            # write the same end as its own.
            protocol.writes.append(_text_frames(texts))
            try:
                self.send_data()
            except Exception as exc:
                self.set_connection_exc(exc)
                self.transport.abort()
                await asyncio.shield(self.connection_lost_waiter)
                raise self.close_exc from None
            return
        async with self.send_context():
            if protocol.extensions or protocol.expect_continuation_frame:
                for text in texts:
                    protocol.send_text(text.encode())
            else:
                protocol.writes.append(_text_frames(texts))


def _text_frames(texts: Sequence[str]) -> bytes:
    return b"".join([text_frame(t.encode()) for t in texts])


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame (a server's, RFC 6455 §5.2)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 0x10000:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload
