"""Building and batching the server frames of a Connect stream, apart from its I/O.

Replies get their envelope id as they are serialised (`with_id`); sequenced frames
are built around pre-serialised bodies (`arcp_grpc.service.sessions.frame_bytes`).
What a client did not negotiate never reaches it (§6.2: `scrub`, `accepted_for`),
and frames already queued for a lagging client go out as one batch (`drain`).
"""

from __future__ import annotations

import asyncio

from arcp_grpc.base.ids import new_ulid
from arcp_grpc.base.wire import varint
from arcp_grpc.service.delivery import CREDENTIALS_FEATURE
from arcp_grpc.service.outbox import Outbox
from arcp_grpc.v1 import jobs_pb2
from arcp_grpc.v1 import session_service_pb2 as pb

__all__ = ["ACCEPTED", "accepted_for", "drain", "scrub", "with_id"]

# ConnectResponse field numbers (proto/arcp/v1/session_service.proto).
_FRAMES = 7
ACCEPTED = 20

_ACCEPTANCE_FEATURES = frozenset({CREDENTIALS_FEATURE, "cost.budget"})  # what JobAccepted may hold

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


def scrub(summary: jobs_pb2.JobSummary, features: frozenset[str]) -> None:
    """§6.2: no credentials or budgets to a client that did not negotiate them."""
    if CREDENTIALS_FEATURE not in features:
        del summary.credentials[:]
    if "cost.budget" not in features:
        summary.budget.clear()


def accepted_for(features: frozenset[str], accepted: bytes) -> bytes:
    """The cached acceptance as a session with `features` may see it: the bytes
    themselves when it negotiated every feature they use (or they use none), else the
    same message without those fields (deterministic, so a replay to the same client
    is still identical, §7.2)."""
    if features >= _ACCEPTANCE_FEATURES:
        return accepted
    message = jobs_pb2.JobAccepted.FromString(accepted)
    hidden = False
    if message.credentials and CREDENTIALS_FEATURE not in features:
        del message.credentials[:]
        hidden = True
    if message.budget and "cost.budget" not in features:
        message.budget.clear()
        hidden = True
    return message.SerializeToString(deterministic=True) if hidden else accepted
