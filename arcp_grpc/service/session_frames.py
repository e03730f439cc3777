"""Building and batching the server frames of a Connect stream, apart from its I/O.

Replies get their envelope id as they are serialised (`with_id`); sequenced frames
are built around pre-serialised bodies (`arcp_grpc.service.sessions.frame_bytes`).
What a client may see of a job is its session's `Disclosure`
(`arcp_grpc.runtime.disclosure`); frames already queued for a lagging client go out
as one batch (`drain`).
"""

from __future__ import annotations

import asyncio

from arcp_grpc.base.ids import new_ulid
from arcp_grpc.base.wire import varint
from arcp_grpc.service.outbox import Outbox
from arcp_grpc.v1 import session_service_pb2 as pb

__all__ = ["ACCEPTED", "drain", "with_id"]

# ConnectResponse field numbers (proto/arcp/v1/session_service.proto).
_FRAMES = 7
ACCEPTED = 20

_BATCH_FRAMES = 512
_FRAMES_TAG = varint(_FRAMES << 3 | 2)
_BATCH_BYTES = 1024 * 1024


def with_id(frame: pb.ConnectResponse) -> bytes:
    """`frame` with a fresh envelope id, serialised."""
    frame.id = new_ulid()
    return frame.SerializeToString()


def drain(outbound: Outbox, first: bytes) -> tuple[bytes, bool]:
    """Frames already waiting, packed into one `ConnectResponse.frames` batch: a
    lagging client costs fewer, larger gRPC messages. Returns (batch, stream ended)."""
    parts = [_FRAMES_TAG, varint(len(first)), first]
    size = len(first)
    count = 1
    while count < _BATCH_FRAMES and size < _BATCH_BYTES:
        try:
            frame = outbound.get_nowait()
        except asyncio.QueueEmpty:
            break
        if frame is None:
            return b"".join(parts), True
        parts += (_FRAMES_TAG, varint(len(frame)), frame)
        size += len(frame)
        count += 1
    return b"".join(parts), False
