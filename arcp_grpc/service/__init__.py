"""The gRPC edge of the core: the JobService and SessionService servicers, ARCP sessions
and their journal, event delivery into sessions, and the transport policy for secrets.

SessionService, from the edge down: `session_service` (the servicer) makes a
`connection.ConnectStream` per stream, which dispatches to `lifecycle` (hello, resume,
close) and `session_jobs` (the job frames), building frames with `session_frames`.
A `sessions.Session` is composed of a `replay.ReplayBuffer`, `resume_tokens.ResumeTokens`
and its `Followers`; `registry` holds the sessions, `outbox` queues each transport's
frames, `journal` keeps a cluster's sessions in the store, `delivery` feeds jobs in.

Servicers are adapters (STYLE.md): they translate RPCs to runtime calls and map failures to
statuses once; they own no job state (docs/architecture.md).
"""

from __future__ import annotations

__all__: list[str] = []
