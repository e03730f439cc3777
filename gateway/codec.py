"""The gateway's pure codec: ARCP JSON frames <-> ``arcp.v1.SessionService`` frames.

No sockets, no gRPC: the WebSocket server feeds text in and out (STYLE.md,
"protocol logic apart from I/O").

* :func:`decode_client_frame` validates a client's JSON frame and returns a
  :class:`ClientFrame` holding the ``ConnectRequest`` for the core. Every bad
  input raises :class:`~arcp_grpc.errors.InvalidRequest` whose
  ``details["field"]`` names the offending field (``"$"`` for the frame as a
  whole: size, UTF-8, JSON syntax, not an object). It only parses; ordering
  rules (hello first, one hello) are the core's.
* :func:`encode_server_frame` renders a ``ConnectResponse`` in a wire profile
  (:data:`WIRE_PROFILE_SPEC` by default, or :data:`WIRE_PROFILE_SDK_COMPAT`)
  for the connection's :class:`Dialect`. Output is deterministic.
* :func:`encode_client_frame` / :func:`decode_server_frame` are the reverse
  directions, for tests and tools that drive raw frames.

Where the v1.1 text and the published Python client (agentruntimecontrolprotocol
1.1.3, read from its source) differ but one frame can satisfy both, both are
sent in every profile. Only true conflicts depend on the profile.

====================  ========================  ========================  ========================
Where                 v1.1 text                 published client 1.1.3    codec
====================  ========================  ========================  ========================
budget counters       number {"USD": 5.0}       string {"USD":            PROFILE: exact token
                      (§7.1)                    "USD:5.00"}               5.00 | "USD:5.00"
cancelled/timed-out   job.error                 job.result final_status   PROFILE; SDK form keeps
end                   CANCELLED/TIMEOUT,        cancelled/timed_out;      code/message as extra
                      final_status              job.error must be         fields
                      cancelled/timed_out       "error"
                      (§7.3, §7.4)
job.subscribed        boolean (§7.6)            integer count             PROFILE; SPEC adds
replayed                                                                  replayed_events
credential scheme     unknown ones ignored by   non-bearer fails the      SDK_COMPAT drops non-
                      clients (§9.8.1)          frame                     bearer
session close         session.close ->          session.bye, no reply;    DIALECT: bye->bye,
                      session.closed (§6.7)     bye from runtime closes   close->closed
resume                session.resume (§6.3)     session.hello +           both accepted; kept in
                                                payload.resume            Dialect
job.cancel job_id     payload (like §7.6)       envelope job_id only      either, or both when
                                                                          equal
welcome payload       no session_id,            requires both             both sent
                      accepted_at
job list entry        created_at (§6.6)         requires submitted_at     both sent
request_id            in session.jobs (§6.6)    required in jobs,         sent when set; always in
                                                subscribed; job.accepted  jobs, subscribed
                                                else FIFO
tool_call body        tool, args, call_id       name, arguments,          both names
                      (§8.2)                    tool_call_id
tool_result body      call_id, result | error   tool_call_id, output |    both names
                                                error
metric body           dimensions                attributes                both names
artifact_ref body     content_type, byte_size   media_type, size_bytes    both names
credential_rotated    body carries id and       flat id, value            flat id, value +
                      value (§9.8.2)                                      credential
event_seq             session sequence (§8.3)   envelope rejects values   sent only when > 0
                                                < 1
agent name            [a-z0-9][a-z0-9._-]*      [a-zA-Z][a-zA-Z0-9._-]*   §7.5 (uppercase refused)
                      (§7.5)
session.error         session or request error  fails every open job      as the core chooses;
                      (§12)                     handle                    noted
error for a request   session.error with        never awaits a reply to   SDK_COMPAT: the bridge
the client does not   request_id                job.cancel, unsubscribe,  logs and drops it
await                                           ack: an error there fails (UNANSWERED_TYPES)
                                                all of its jobs
====================  ========================  ========================  ========================

Field rules: JSON ``null`` where a field is optional means absent. Empty
optional strings and absent ones are the same in proto3; the codec renders
them absent. A free-form value that is top-level ``null`` (``input``,
``result``) is absent. Numbers inside free-form values must survive a double
exactly (integers within ±2^53, no NaN/Infinity, no decimals that round);
otherwise INVALID_REQUEST, never a silently different number.

Timestamps are RFC 3339 (the ISO 8601 profile of every example); rendered in
UTC with ``Z``. ``lease_constraints.expires_at`` must be UTC (§9.5); other
client timestamps may carry any offset. Timestamps the published client
requires (``accepted_at``, ``sent_at``, ``received_at``, ``completed_at``,
``ts``, ``created_at``) are always rendered, so the core must set them (an
unset one renders as the epoch, proto3's default).
"""

from __future__ import annotations

from typing import Final

from arcp_grpc.base.json_values import MAX_SAFE_INTEGER, MAX_VALUE_DEPTH
from arcp_grpc.v1 import session_pb2
from gateway._client_frames import decode_client_frame, encode_client_frame
from gateway._read_frames import decode_server_frame
from gateway._render_frames import encode_server_frame
from gateway._types import ClientFrame, CloseForm, Dialect, ResumeForm

__all__ = [
    "MAX_SAFE_INTEGER",
    "MAX_VALUE_DEPTH",
    "UNANSWERED_TYPES",
    "WIRE_PROFILE_SDK_COMPAT",
    "WIRE_PROFILE_SPEC",
    "ClientFrame",
    "CloseForm",
    "Dialect",
    "ResumeForm",
    "WireProfile",
    "decode_client_frame",
    "decode_server_frame",
    "encode_client_frame",
    "encode_server_frame",
]

UNANSWERED_TYPES: Final = frozenset(
    {"job.cancel", "job.unsubscribe", "session.ack", "session.pong"}
)
"""Client frames the published SDK sends without awaiting a reply. An error about
one must not reach it as ``session.error`` (which fails every open job of that
client), so in the SDK_COMPAT profile the gateway logs and drops it, as the
reference runtime does for a refused cancel."""

WireProfile = session_pb2.WireProfile
"""The proto enum; ``WIRE_PROFILE_UNSPECIFIED`` renders as SPEC."""

WIRE_PROFILE_SPEC: Final = session_pb2.WIRE_PROFILE_SPEC
WIRE_PROFILE_SDK_COMPAT: Final = session_pb2.WIRE_PROFILE_SDK_COMPAT
