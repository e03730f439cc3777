"""Who may act on a job or a session: one function per action, the only place that
compares principals.

Each function takes plain facts (the caller's principal name, the owner's, what the
caller already knows about the job) and returns, or raises the error the spec names.
Both services and the runtime call them; so does `Disclosure` for "the submitter
only" (§14). The policy is the spec's default, "same principal only" (§14); a
deployment policy that lets other principals observe would change `observes` and
`authorize_subscribe`, nothing else.

- get, list, watch a job: the submitting principal; else JOB_NOT_FOUND (§6.6, §14).
- subscribe to a job: the submitting principal; another principal's job
  PERMISSION_DENIED, no such job JOB_NOT_FOUND (§7.6, §14).
- cancel a job over JobService (no sessions), and in the runtime: the submitting
  principal; else JOB_NOT_FOUND (§7.4, §6.6).
- cancel a job from a session: the session that submitted it (a resumed session is
  that session, §7.7); another principal's job JOB_NOT_FOUND; a running job of
  another session, subscribed or not, PERMISSION_DENIED (§7.4, §7.6, §14); an ended
  job of the same principal goes on to the runtime's "already ended" answer.
- resume a session: the principal that opened it; else UNAUTHENTICATED (§6.3).
- see credential values and rotations: the submitting principal only, otherwise
  redacted, never refused (§7.6, §14; `arcp_grpc.runtime.disclosure`).

Why a subscribe answers PERMISSION_DENIED where a get answers JOB_NOT_FOUND: the
spec draws that line itself. §6.6 says implementations "MUST NOT leak job existence
across principals not authorized to know about them", and introspection (get, list,
watch, and cancel, which would otherwise confirm a job id) follows it. §7.6 says, of
subscription alone, "Unauthorized subscription returns `PERMISSION_DENIED`"; it is
the more specific rule for that frame, and §14 asks for every subscribe decision to
be logged for audit, which `authorize_subscribe` does. A job id that names no job
is still JOB_NOT_FOUND there.

A resume with the wrong principal answers UNAUTHENTICATED with the same message as a
wrong token: §6.3 names no code, and the answer must not tell a caller whether the
session exists under another principal.
"""

from __future__ import annotations

import logging

from arcp_grpc.errors import JobNotFound, PermissionDenied, Unauthenticated

__all__ = [
    "authorize_cancel",
    "authorize_observe",
    "authorize_resume",
    "authorize_session_cancel",
    "authorize_subscribe",
    "is_submitter",
    "observes",
]

log = logging.getLogger("arcp_grpc.access")


def is_submitter(caller: str, submitter: str) -> bool:
    """The caller is the principal that submitted the job (§7.6, §14: credential
    values, rotations and cancel authority follow the submitter only)."""
    return caller == submitter


def observes(caller: str, owner: str | None) -> bool:
    """The caller may know the job exists and read it (get, list, watch): by the §14
    default, its submitting principal only. `owner` None: there is no such job."""
    return owner is not None and is_submitter(caller, owner)


def authorize_observe(caller: str, job_id: str, owner: str | None) -> None:
    """Get, list or watch a job (§6.6). Not visible → JOB_NOT_FOUND: an answer that
    never tells another principal the job exists ("MUST NOT leak job existence")."""
    if not observes(caller, owner):
        raise _not_found(job_id)


def authorize_subscribe(caller: str, job_id: str, owner: str | None) -> None:
    """Subscribe to a job (§7.6). No such job → JOB_NOT_FOUND; another principal's
    job → PERMISSION_DENIED, as §7.6 requires of an unauthorised subscription (§14:
    "same principal only" by default). Every decision is logged with the subscriber,
    the job, its principal and the outcome (§14, cross-session subscription audit)."""
    if owner is None:
        raise _not_found(job_id)
    allowed = observes(caller, owner)
    log.info(
        "subscribe %s: %s to job %s of %s",
        "allowed" if allowed else "denied",
        caller,
        job_id,
        owner,
    )
    if not allowed:
        raise PermissionDenied(
            "subscribing to another principal's job is not permitted (§14)",
            details={"job_id": job_id},
        )


def authorize_cancel(caller: str, job_id: str, owner: str | None) -> None:
    """Cancel a job where there are no sessions (JobService, the runtime): the
    submitting principal only (§7.4). Another principal's job → JOB_NOT_FOUND, as for
    a get (§6.6): a cancel must not confirm that a job id exists."""
    if not observes(caller, owner):
        raise _not_found(job_id)


def authorize_session_cancel(job_id: str, *, submitted_here: bool, ended: bool) -> None:
    """Cancel from a session, once `authorize_cancel` passed for its principal (or
    `submitted_here`, which implies it). §7.4: "the submitting session MAY send
    `job.cancel`"; §7.6, §14: subscribing to a job (or being another session of the
    same principal) confers no cancel authority → PERMISSION_DENIED. A resumed
    session is the same session and keeps it (§7.7). An ended job is let through:
    the runtime answers as for any cancel that came too late."""
    if submitted_here or ended:
        return
    raise PermissionDenied(
        "only the session that submitted a job may cancel it (§7.4, §7.6)",
        details={"job_id": job_id},
    )


def authorize_resume(caller: str, owner: str) -> None:
    """Resume a session (§6.3): the principal that opened it only. Otherwise
    UNAUTHENTICATED, worded as for a wrong token, so a resume never tells whether the
    session exists under another principal."""
    if caller != owner:
        raise Unauthenticated("the resume token or principal does not match the session")


def _not_found(job_id: str) -> JobNotFound:
    return JobNotFound(f"job {job_id!r} not found", details={"job_id": job_id})
