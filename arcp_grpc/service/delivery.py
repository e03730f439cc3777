"""One job's events into one session's `event_seq` space (§8.3).

A `JobDelivery` holds what following one job for one session needs: the
frame header (encoded once), the filters for features the client did not
negotiate (§6.2), the reassembly of a chunked result for a client without
`result_chunk`, and the back-pressure signal (§6.5). It is fed either by a
pump task that follows the job from the store and its feed (a subscription,
a replay), or directly by the job's feed as events commit (`LiveDelivery`,
the session that submitted the job): no task, no wake-up per batch.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence

from arcp_grpc import tracing
from arcp_grpc.base.stamps import stamp
from arcp_grpc.base.wire import only_field
from arcp_grpc.errors import InternalError
from arcp_grpc.runtime import JobFeed, is_rotation
from arcp_grpc.service.sessions import FrameHeader, Session
from arcp_grpc.v1 import events_pb2, jobs_pb2

__all__ = ["Fallback", "JobDelivery", "LiveDelivery"]

# ConnectResponse field numbers (proto/arcp/v1/session_service.proto).
_EVENT, _RESULT, _JOB_ERROR = 23, 24, 25
_OUTCOME_ERROR = 2  # JobOutcome.error (proto/arcp/v1/jobs.proto)
_FRAME_HEAD = 128  # about what a frame adds to its event's bytes (ids, seq): room is approximate


class JobDelivery:
    """Delivers one job's committed events, then its terminal frame, to a session.
    `submitter`: the principal that submitted the job, which decides with the session's
    `Disclosure` whether its `credential_rotated` events may go out (§9.8.2, §14).
    Its span, in the job's trace (§11), lasts until the terminal frame is queued, as the
    child of `traceparent` (the span that asked for the job: the gateway's submit) when
    given; a delivery cut short (unsubscribed, the session gone) is not exported."""

    def __init__(
        self, session: Session, job_id: str, trace_id: str, submitter: str, traceparent: str = ""
    ) -> None:
        self._span = tracing.span("arcp.deliver", trace_id=trace_id, traceparent=traceparent)
        self._span.set("arcp.job_id", job_id)
        self._span.set("arcp.session_id", session.session_id)
        self.session = session
        self.header = FrameHeader(session.session_id, job_id=job_id, trace_id=trace_id)
        features = session.features
        self._filtering = not {"progress", "result_chunk"} <= features
        self._hide_secrets = not session.shown.rotations(submitter)
        self._chunks_ok = "result_chunk" in features
        self._inline = _Inline(session.limits.max_inline_result_bytes)
        self.job_seq = 0  # of the last event handled

    def deliver(self, blobs: Sequence[bytes], first_seq: int) -> int:
        """Deliver `blobs` (consecutive events from `job_seq` `first_seq`) in order,
        stopping before the first one the client has no room for (`Session.room_bytes`).
        Returns how many were handled."""
        session, header = self.session, self.header
        count = len(blobs)
        room = session.room_bytes()
        if room < sum(map(len, blobs)) + count * _FRAME_HEAD:  # rare: close to the limit
            count = _fitting(blobs, room)
            blobs = blobs[:count]
        for job_seq, blob in enumerate(blobs, first_seq):
            self.job_seq = job_seq
            if self._hide_secrets and is_rotation(blob):
                continue  # a credential value this client may not see (`Disclosure`)
            if self._filtering and not self._keep(blob):
                continue
            session.deliver(header, _EVENT, blob, job_seq)
            self._maybe_back_pressure()
        return count

    def on_outcome(self, outcome: bytes) -> None:
        field_number, body = _terminal(outcome, self._inline, self._chunks_ok)
        self.session.deliver(self.header, field_number, body, self.job_seq, terminal=True)
        self._span.set("arcp.job_seq", self.job_seq)
        self._span.end()
        # Only running jobs need to be told apart by who submitted them (to cancel one);
        # a session that lives for days must not remember every job it ever ran.
        self.session.submitted.discard(self.header.job_id)

    def _keep(self, blob: bytes) -> bool:
        """§6.2: never send a feature the client did not negotiate."""
        event = events_pb2.JobEvent.FromString(blob)
        kind = event.WhichOneof("body")
        if kind == "progress":
            return "progress" in self.session.features
        if kind == "result_chunk" and not self._chunks_ok:
            self._inline.add(event.result_chunk)
            return False
        return True

    def _maybe_back_pressure(self) -> None:
        """§6.5: a status event tells a lagging consumer to catch up and ack."""
        session = self.session
        if (
            "ack" not in session.features
            or session.back_pressure_signalled
            or session.lag() <= session.limits.back_pressure_lag
        ):
            return
        session.back_pressure_signalled = True
        event = events_pb2.JobEvent(job_id=self.header.job_id)  # job_seq 0: not in the log
        stamp(event.ts)
        event.status.phase = "back_pressure"
        event.status.message = f"{session.lag()} events are not acknowledged"
        session.deliver(self.header, _EVENT, event.SerializeToString(), self.job_seq)


#: Starts a pump that goes on after `job_seq` with the given delivery (its filters and
#: partial state carry over) and takes this delivery's place among the session's followers.
Fallback = Callable[[int, JobDelivery], None]


class LiveDelivery:
    """Feeds a `JobDelivery` straight from the job's feed as events commit, from the
    job's first event, for as long as the client keeps up. Once its transport is half
    full or gone, the rest comes from a pump (`fallback`, given the same delivery) that
    reads the store at the client's pace: a job may produce faster than its client
    reads without either queueing without bound or losing the client's place (§6.5)."""

    def __init__(self, delivery: JobDelivery, feed: JobFeed, fallback: Fallback) -> None:
        self._delivery = delivery
        self._feed = feed
        self._fallback = fallback
        self._seq = feed.committed_seq  # job_seq of the last event handed to us
        feed.listen(self)
        delivery.session.followers.add(delivery.header.job_id, self)

    def on_events(self, blobs: Sequence[bytes]) -> None:
        handled = self._delivery.deliver(blobs, self._seq + 1)
        self._seq += handled
        if handled < len(blobs):
            self._feed.unlisten(self)  # the pump reads the rest of this batch on
            self._fallback(self._seq, self._delivery)

    def on_outcome(self, outcome: bytes) -> None:
        self._forget()
        self._delivery.on_outcome(outcome)

    def cancel(self) -> bool:
        """Stop delivering (the session expired or is closing its followers)."""
        self._feed.unlisten(self)
        self._forget()
        return True

    def _forget(self) -> None:
        self._delivery.session.followers.forget(self._delivery.header.job_id, self)


def _fitting(blobs: Sequence[bytes], room: int) -> int:
    """How many of `blobs`, from the first, may go out while `room` lasts."""
    for index, blob in enumerate(blobs):
        if room < 0:
            return index
        room -= len(blob) + _FRAME_HEAD
    return len(blobs)


class _Inline:
    """Reassembles a chunked result for a client without `result_chunk` (§6.2)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.encoding = events_pb2.CHUNK_ENCODING_UTF8
        self.overflow = False

    def add(self, chunk: events_pb2.ResultChunkEvent) -> None:
        self.encoding = chunk.encoding
        if len(self.data) + len(chunk.data) > self.cap:
            self.overflow = True
            self.data.clear()
        elif not self.overflow:
            self.data += chunk.data


def _terminal(outcome_bytes: bytes, inline: _Inline, chunks_ok: bool) -> tuple[int, bytes]:
    """The terminal frame's field and body. Usually the stored bytes of the outcome's
    member as they are; only a chunked result for a client without `result_chunk`
    is rebuilt (inline, §6.2)."""
    member, body = only_field(outcome_bytes)
    if member == _OUTCOME_ERROR:
        return _JOB_ERROR, body
    if chunks_ok:
        return _RESULT, body
    result = jobs_pb2.JobResult.FromString(body)
    if not result.HasField("streamed"):
        return _RESULT, body
    if inline.overflow:
        failed = jobs_pb2.JobError(
            job_id=result.job_id,
            final_status=jobs_pb2.JOB_STATUS_ERROR,
            completed_at=result.completed_at,
        )
        failed.error.CopyFrom(
            InternalError(
                f"the result is larger than {inline.cap} bytes and the client did not"
                " negotiate result_chunk (§8.4)"
            ).to_proto()
        )
        return _JOB_ERROR, failed.SerializeToString(deterministic=True)
    if inline.encoding == events_pb2.CHUNK_ENCODING_BASE64:
        result.value.string_value = base64.b64encode(bytes(inline.data)).decode()
    else:
        result.value.string_value = bytes(inline.data).decode()
    return _RESULT, result.SerializeToString(deterministic=True)
